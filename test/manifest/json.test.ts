import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CordonError } from '../../src/errors.js';
import { parseStrictJson } from '../../src/manifest/json.js';
import { errorCode } from '../helpers.js';

const code = errorCode;

describe('parseStrictJson', () => {
  it('parses what JSON.parse parses, identically', () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        expect(parseStrictJson(text)).toEqual(JSON.parse(text));
      }),
      { numRuns: 500 },
    );
  });

  it('rejects duplicate keys, at any depth, naming the pointer', () => {
    expect(code(() => parseStrictJson('{"a":1,"a":2}'))).toBe('JSON_DUPLICATE_KEY');
    try {
      parseStrictJson('{"x":[{"readPaths":[],"readPaths":["/"]}]}');
      expect.unreachable();
    } catch (e) {
      expect((e as CordonError).code).toBe('JSON_DUPLICATE_KEY');
      expect((e as CordonError).pointer).toBe('/x/0/readPaths');
    }
    // Escapes that spell the same key are the same key.
    expect(code(() => parseStrictJson('{"ab":1,"a\\u0062":2}'))).toBe('JSON_DUPLICATE_KEY');
  });

  it('keeps __proto__ as data, never as a prototype', () => {
    const v = parseStrictJson('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.keys(v)).toEqual(['__proto__']);
  });

  it('rejects invalid UTF-8, a BOM, lone surrogates, overflowing numbers', () => {
    expect(code(() => parseStrictJson(Buffer.from([0x22, 0xc3, 0x28, 0x22])))).toBe(
      'JSON_ENCODING',
    );
    expect(code(() => parseStrictJson(Buffer.from('\ufeff{}')))).toBe('JSON_ENCODING');
    expect(code(() => parseStrictJson('"\\ud800"'))).toBe('JSON_SYNTAX');
    expect(code(() => parseStrictJson('"\\udc00\\ud800"'))).toBe('JSON_SYNTAX');
    expect(code(() => parseStrictJson('1e400'))).toBe('JSON_SYNTAX');
    expect(parseStrictJson('"\\ud83d\\ude00"')).toBe('😀');
  });

  it('rejects JSON that JSON.parse also rejects, with a position', () => {
    for (const bad of [
      '',
      '{',
      '[1,]',
      '{"a":1,}',
      '01',
      '"\t"',
      "{'a':1}",
      'nul',
      '1 2',
      '{"a" 1}',
      '-',
      '1.',
      '.5',
      '"\\x"',
    ]) {
      expect(() => {
        JSON.parse(bad);
      }, bad).toThrow();
      expect(
        code(() => parseStrictJson(bad)),
        bad,
      ).toBe('JSON_SYNTAX');
    }
    expect(() => parseStrictJson('{\n  "a": tru\n}')).toThrow(/line 2, column 8/);
  });

  it('caps size and depth', () => {
    expect(code(() => parseStrictJson('[' + '1,'.repeat(100) + '1]', { maxBytes: 50 }))).toBe(
      'JSON_TOO_LARGE',
    );
    expect(code(() => parseStrictJson(Buffer.alloc(100, 0x20), { maxBytes: 50 }))).toBe(
      'JSON_TOO_LARGE',
    );
    expect(code(() => parseStrictJson('['.repeat(65) + ']'.repeat(65)))).toBe('JSON_TOO_DEEP');
    expect(parseStrictJson('['.repeat(64) + ']'.repeat(64))).toBeDefined();
  });

  it('never crashes on random bytes: it parses or throws a coded error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          parseStrictJson(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(CordonError);
          expect((e as CordonError).code).toMatch(/^JSON_/);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
