import { CordonError, toPointer } from '../errors.js';

export type JsonErrorCode =
  'JSON_TOO_LARGE' | 'JSON_ENCODING' | 'JSON_SYNTAX' | 'JSON_DUPLICATE_KEY' | 'JSON_TOO_DEEP';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

export interface StrictJsonOptions {
  /** Largest accepted input, in bytes (UTF-8). */
  maxBytes?: number;
  /** Deepest accepted nesting of arrays and objects. */
  maxDepth?: number;
  /** When given, filled with the line and column of every value, keyed by JSON pointer. */
  locations?: Map<string, { line: number; column: number }>;
}

const DEFAULTS = { maxBytes: 1024 * 1024, maxDepth: 64 };
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parse JSON strictly (RFC 8259 plus I-JSON, RFC 7493): duplicate object keys, lone surrogates,
 * numbers that overflow to Infinity, a byte-order mark, invalid UTF-8, excessive nesting and
 * oversized input are errors with a stable code. `JSON.parse` keeps the last of duplicate keys
 * silently; when two parsers disagree about a signed document, that is an attack.
 *
 * @example
 * parseStrictJson('{"a":1,"a":2}'); // throws CordonError JSON_DUPLICATE_KEY at /a
 */
export function parseStrictJson(
  input: string | Uint8Array,
  options: StrictJsonOptions = {},
): JsonValue {
  const opts = { ...DEFAULTS, ...options };
  let text: string;
  if (typeof input === 'string') {
    // Cheap upper bound first: UTF-8 never needs more than 3 bytes per UTF-16 unit.
    if (
      input.length > opts.maxBytes ||
      (input.length * 3 > opts.maxBytes && Buffer.byteLength(input) > opts.maxBytes)
    ) {
      throw tooLarge(Buffer.byteLength(input), opts.maxBytes);
    }
    text = input;
  } else {
    if (input.byteLength > opts.maxBytes) throw tooLarge(input.byteLength, opts.maxBytes);
    try {
      text = decoder.decode(input);
    } catch (cause) {
      throw new CordonError('JSON_ENCODING', 'input is not valid UTF-8', {
        hint: 'save the file as UTF-8 without a byte-order mark',
        cause,
      });
    }
  }
  if (text.charCodeAt(0) === 0xfeff) {
    throw new CordonError('JSON_ENCODING', 'input starts with a byte-order mark', {
      hint: 'save the file as UTF-8 without a byte-order mark',
    });
  }
  return new Parser(text, opts.maxDepth, options.locations).parseDocument();
}

function tooLarge(size: number, max: number): CordonError {
  return new CordonError('JSON_TOO_LARGE', `input is ${size} bytes; the limit is ${max}`, {
    hint: 'a manifest this large is almost certainly a mistake; split or shorten it',
  });
}

const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const PLAIN_RUN = /[^"\\\u0000-\u001f\ud800-\udfff]+/y;

class Parser {
  private pos = 0;
  private readonly path: (string | number)[] = [];

  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
    private readonly locations: Map<string, { line: number; column: number }> | undefined,
  ) {}

  private where(): { line: number; column: number } {
    const before = this.text.slice(0, this.pos);
    return { line: before.split('\n').length, column: this.pos - before.lastIndexOf('\n') };
  }

  parseDocument(): JsonValue {
    this.ws();
    const value = this.value(0);
    this.ws();
    if (this.pos !== this.text.length) this.fail('unexpected data after the JSON value');
    return value;
  }

  private fail(message: string, code: JsonErrorCode = 'JSON_SYNTAX'): never {
    const { line, column } = this.where();
    const hints: Record<JsonErrorCode, string> = {
      JSON_SYNTAX: 'fix the JSON syntax at that spot',
      JSON_DUPLICATE_KEY:
        'keep one of the two keys; duplicate keys are read differently by different parsers',
      JSON_TOO_DEEP: 'flatten the document',
      JSON_TOO_LARGE: 'shorten the document',
      JSON_ENCODING: 'save the file as UTF-8',
    };
    throw new CordonError(code, `${message} at line ${line}, column ${column}`, {
      pointer: toPointer(this.path),
      hint: hints[code],
    });
  }

  private ws(): void {
    const t = this.text;
    let p = this.pos;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) p++;
      else break;
    }
    this.pos = p;
  }

  private value(depth: number): JsonValue {
    if (this.locations !== undefined) this.locations.set(toPointer(this.path), this.where());
    const c = this.text[this.pos];
    switch (c) {
      case '{':
        return this.object(depth + 1);
      case '[':
        return this.array(depth + 1);
      case '"':
        return this.string();
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      case undefined:
        return this.fail('unexpected end of input');
      default:
        if (c === '-' || (c >= '0' && c <= '9')) return this.number();
        return this.fail(`unexpected character ${JSON.stringify(c)}`);
    }
  }

  private literal<T extends JsonValue>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail('invalid literal');
    this.pos += word.length;
    return value;
  }

  private number(): number {
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.text);
    if (!m) return this.fail('invalid number');
    const n = Number(m[0]);
    if (!Number.isFinite(n)) this.fail('number out of range');
    this.pos += m[0].length;
    return n;
  }

  private string(): string {
    const t = this.text;
    let p = this.pos + 1;
    let out = '';
    let start = p;
    for (;;) {
      // Skip a run of ordinary characters in one step (most strings have no escapes).
      PLAIN_RUN.lastIndex = p;
      if (PLAIN_RUN.test(t)) p = PLAIN_RUN.lastIndex;
      const c = t.charCodeAt(p);
      if (Number.isNaN(c)) {
        this.pos = p;
        this.fail('unterminated string');
      }
      if (c === 0x22) break;
      if (c < 0x20) {
        this.pos = p;
        this.fail('control character in string (escape it)');
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = t.charCodeAt(p + 1);
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          p += 2;
          continue;
        }
        this.pos = p;
        this.fail('lone surrogate in string');
      }
      if (c === 0x5c) {
        out += t.slice(start, p);
        const e = t[p + 1];
        p += 2;
        switch (e) {
          case '"':
            out += '"';
            break;
          case '\\':
            out += '\\';
            break;
          case '/':
            out += '/';
            break;
          case 'b':
            out += '\b';
            break;
          case 'f':
            out += '\f';
            break;
          case 'n':
            out += '\n';
            break;
          case 'r':
            out += '\r';
            break;
          case 't':
            out += '\t';
            break;
          case 'u': {
            const unit = this.hex4(p);
            p += 4;
            if (unit >= 0xd800 && unit <= 0xdbff) {
              if (t[p] !== '\\' || t[p + 1] !== 'u') {
                this.pos = p;
                this.fail('lone surrogate escape in string');
              }
              const low = this.hex4(p + 2);
              if (low < 0xdc00 || low > 0xdfff) {
                this.pos = p;
                this.fail('lone surrogate escape in string');
              }
              p += 6;
              out += String.fromCharCode(unit, low);
            } else if (unit >= 0xdc00 && unit <= 0xdfff) {
              this.pos = p;
              this.fail('lone surrogate escape in string');
            } else {
              out += String.fromCharCode(unit);
            }
            break;
          }
          default:
            this.pos = p - 1;
            this.fail('invalid escape in string');
        }
        start = p;
        continue;
      }
      p++;
    }
    out += t.slice(start, p);
    this.pos = p + 1;
    return out;
  }

  private hex4(p: number): number {
    const h = this.text.slice(p, p + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) {
      this.pos = p;
      this.fail('invalid \\u escape');
    }
    return parseInt(h, 16);
  }

  private array(depth: number): JsonValue[] {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`, 'JSON_TOO_DEEP');
    this.pos++;
    const out: JsonValue[] = [];
    this.ws();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.path.push(out.length);
      this.ws();
      out.push(this.value(depth));
      this.path.pop();
      this.ws();
      const c = this.text[this.pos];
      if (c === ',') {
        this.pos++;
        continue;
      }
      if (c === ']') {
        this.pos++;
        return out;
      }
      this.fail("expected ',' or ']'");
    }
  }

  private object(depth: number): { [k: string]: JsonValue } {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`, 'JSON_TOO_DEEP');
    this.pos++;
    const out: { [k: string]: JsonValue } = {};
    this.ws();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.text[this.pos] !== '"') this.fail('expected a string key');
      const key = this.string();
      if (Object.prototype.hasOwnProperty.call(out, key)) {
        this.path.push(key);
        this.fail(`duplicate key ${JSON.stringify(key)}`, 'JSON_DUPLICATE_KEY');
      }
      this.ws();
      if (this.text[this.pos] !== ':') this.fail("expected ':'");
      this.pos++;
      this.ws();
      this.path.push(key);
      const v = this.value(depth);
      this.path.pop();
      // A "__proto__" key must stay data, never a prototype: plain assignment would set the prototype.
      if (key === '__proto__') {
        Object.defineProperty(out, key, {
          value: v,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      } else {
        out[key] = v;
      }
      this.ws();
      const c = this.text[this.pos];
      if (c === ',') {
        this.pos++;
        continue;
      }
      if (c === '}') {
        this.pos++;
        return out;
      }
      this.fail("expected ',' or '}'");
    }
  }
}
