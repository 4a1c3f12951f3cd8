import { CordonError } from '../errors.js';

/**
 * RFC 8785 JSON Canonicalization Scheme. Numbers use ECMAScript's Number-to-String (which is
 * what the RFC specifies), strings use JSON.stringify's escaping (the RFC's rules: only `"`,
 * `\`, and control characters are escaped, lower-case hex), and object keys are sorted by
 * UTF-16 code units. Values JSON cannot represent faithfully (NaN, Infinity, lone surrogates,
 * undefined, functions, non-plain objects) are errors, never silently dropped.
 *
 * @example
 * canonicalize({ b: 1, a: [true, null] }); // '{"a":[true,null],"b":1}'
 */
export function canonicalize(value: unknown): string {
  const parts: string[] = [];
  write(value, parts, 0);
  return parts.join('');
}

/** Canonical form as UTF-8 bytes. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalize(value), 'utf8');
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function fail(message: string): never {
  throw new CordonError('CANONICAL_UNREPRESENTABLE', message, {
    hint: 'canonical JSON accepts only finite numbers, well-formed strings, arrays and plain objects',
  });
}

function writeString(s: string, parts: string[]): void {
  if (LONE_SURROGATE.test(s)) fail('string contains a lone surrogate');
  parts.push(JSON.stringify(s));
}

function write(value: unknown, parts: string[], depth: number): void {
  if (depth > 256) fail('value nests deeper than 256 levels');
  switch (typeof value) {
    case 'string':
      writeString(value, parts);
      return;
    case 'number':
      if (!Number.isFinite(value)) fail(`number ${String(value)} has no JSON form`);
      // -0 serialises as 0, as the RFC requires; String(-0) is "0".
      parts.push(String(value));
      return;
    case 'boolean':
      parts.push(value ? 'true' : 'false');
      return;
    case 'object': {
      if (value === null) {
        parts.push('null');
        return;
      }
      if (Array.isArray(value)) {
        parts.push('[');
        for (let i = 0; i < value.length; i++) {
          if (i > 0) parts.push(',');
          write(value[i], parts, depth + 1);
        }
        parts.push(']');
        return;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) fail('only plain objects have a JSON form');
      const obj = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, exactly what RFC 8785 section 3.2.3 asks for.
      const keys = Object.keys(obj).sort();
      parts.push('{');
      let first = true;
      for (const k of keys) {
        const v = obj[k];
        if (v === undefined) fail(`key ${JSON.stringify(k)} has an undefined value`);
        if (!first) parts.push(',');
        first = false;
        writeString(k, parts);
        parts.push(':');
        write(v, parts, depth + 1);
      }
      parts.push('}');
      return;
    }
    case 'undefined':
    case 'function':
    case 'symbol':
    case 'bigint':
      fail(`a ${typeof value} has no JSON form`);
  }
}
