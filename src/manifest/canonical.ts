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
  // JSON.stringify produces exactly the RFC 8785 form when every object's keys already come in
  // code-unit order, every number is finite, every value has a JSON form and no string holds a
  // surrogate (JSON.stringify would escape a lone one; JCS refuses it). Checking that is far
  // cheaper than building the string in script, so values built in canonical order take the
  // fast path; anything else is serialised key by key below.
  if (ready(value, 0)) {
    const s = JSON.stringify(value);
    if (!SURROGATE.test(s)) return s;
  }
  return write(value, 0);
}

// A surrogate, or JSON.stringify's escape of a lone one (a literal "\\ud8.." in a string also
// matches; it merely takes the slow path).
const SURROGATE = /[\ud800-\udfff]|\\ud[89a-f]/;

/** Whether JSON.stringify(value) is already canonical (see {@link canonicalize}). */
function ready(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object': {
      if (value === null) return true;
      if (depth > 256) return false;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (!ready(value[i], depth + 1)) return false;
        return true;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      let prev: string | undefined;
      for (const k in value) {
        if (prev !== undefined && !(prev < k)) return false;
        prev = k;
        if (!ready((value as Record<string, unknown>)[k], depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/**
 * RFC 8785 form of a value the caller knows is already in canonical key order with only finite
 * numbers (for example, audit events from the builders): skips the order check. A surrogate
 * still takes the exact path.
 */
export function canonicalizeOrdered(value: unknown): string {
  const s = JSON.stringify(value);
  return SURROGATE.test(s) ? write(value, 0) : s;
}

/**
 * RFC 8785 form of a value whose every string and key is already known to be well-formed UTF-16
 * (checked where it was received, as the endpoint service's transports do): JSON.stringify's
 * output when its keys come in code-unit order, without scanning that output for surrogates.
 * A lone surrogate here would be written escaped, and the record would then fail verification.
 */
export function canonicalizeWellFormed(value: unknown): string {
  return ready(value, 0) ? JSON.stringify(value) : write(value, 0);
}

/** The key-by-key serialiser alone, without the fast path (for tests that compare the two). */
export function canonicalizeSlow(value: unknown): string {
  return write(value, 0);
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

/** Characters that need more than `"…"` around the string: escapes, and surrogates to check. */
const NEEDS_CARE = /["\\\u0000-\u001f\ud800-\udfff]/;

function writeString(s: string): string {
  // Most strings (paths, names, ids) need no escaping: skip JSON.stringify and the surrogate scan.
  if (!NEEDS_CARE.test(s)) return '"' + s + '"';
  if (LONE_SURROGATE.test(s)) fail('string contains a lone surrogate');
  return JSON.stringify(s);
}

// One string built with += (V8 ropes) is faster than collecting parts and joining them.
function write(value: unknown, depth: number): string {
  if (depth > 256) fail('value nests deeper than 256 levels');
  switch (typeof value) {
    case 'string':
      return writeString(value);
    case 'number':
      if (!Number.isFinite(value)) fail(`number ${String(value)} has no JSON form`);
      // -0 serialises as 0, as the RFC requires; String(-0) is "0".
      return String(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ',';
          out += write(value[i], depth + 1);
        }
        return out + ']';
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) fail('only plain objects have a JSON form');
      const obj = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, exactly what RFC 8785 section 3.2.3 asks for.
      const keys = Object.keys(obj).sort();
      let out = '{';
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i] as string;
        const v = obj[k];
        if (v === undefined) fail(`key ${JSON.stringify(k)} has an undefined value`);
        if (i > 0) out += ',';
        out += writeString(k) + ':' + write(v, depth + 1);
      }
      return out + '}';
    }
    case 'undefined':
    case 'function':
    case 'symbol':
    case 'bigint':
      fail(`a ${typeof value} has no JSON form`);
  }
}
