import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canonicalize,
  canonicalizeSlow,
  canonicalizeWellFormed,
} from '../../src/manifest/canonical.js';
import { parseStrictJson } from '../../src/manifest/json.js';

function fromBits(hex: string): number {
  const b = Buffer.from(hex, 'hex');
  return b.readDoubleBE(0);
}

describe('canonicalize (RFC 8785)', () => {
  it('matches the RFC example of section 3.2.2', () => {
    const input =
      '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}';
    expect(canonicalize(parseStrictJson(input))).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it('sorts keys by UTF-16 code units (RFC section 3.2.3)', () => {
    const input =
      '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control","\\u00f6":"Latin Small Letter O With Diaeresis"}';
    // Read the keys from the text: JS objects list integer-like keys ("1") first, whatever the text says.
    const out = canonicalize(parseStrictJson(input));
    const keys = [...out.matchAll(/"((?:[^"\\]|\\.)*)":/g)].map(
      (m) => JSON.parse(`"${m[1] ?? ''}"`) as string,
    );
    expect(keys).toEqual(['\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33']);
    // Locale-independent: French collation would order these differently.
    expect(canonicalize({ peach: 1, péché: 2, pêche: 3, sin: 4 })).toBe(
      '{"peach":1,"péché":2,"pêche":3,"sin":4}',
    );
  });

  it('formats numbers as in RFC 8785 appendix B', () => {
    const cases: [string, string][] = [
      ['0000000000000000', '0'],
      ['8000000000000000', '0'],
      ['0000000000000001', '5e-324'],
      ['8000000000000001', '-5e-324'],
      ['7fefffffffffffff', '1.7976931348623157e+308'],
      ['ffefffffffffffff', '-1.7976931348623157e+308'],
      ['4340000000000000', '9007199254740992'],
      ['c340000000000000', '-9007199254740992'],
      ['4430000000000000', '295147905179352830000'],
      ['44b52d02c7e14af5', '9.999999999999997e+22'],
      ['44b52d02c7e14af6', '1e+23'],
      ['44b52d02c7e14af7', '1.0000000000000001e+23'],
      ['444b1ae4d6e2ef4e', '999999999999999700000'],
      ['444b1ae4d6e2ef4f', '999999999999999900000'],
      ['444b1ae4d6e2ef50', '1e+21'],
      ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
      ['3eb0c6f7a0b5ed8d', '0.000001'],
      ['41b3de4355555553', '333333333.3333332'],
      ['41b3de4355555554', '333333333.33333325'],
      ['41b3de4355555555', '333333333.3333333'],
      ['41b3de4355555556', '333333333.3333334'],
      ['41b3de4355555557', '333333333.33333343'],
      ['becbf647612f3696', '-0.0000033333333333333333'],
      ['43143ff3c1cb0959', '1424953923781206.2'],
    ];
    for (const [bits, text] of cases) expect(canonicalize(fromBits(bits)), bits).toBe(text);
    expect(() => canonicalize(fromBits('7fffffffffffffff'))).toThrow(/NaN/);
    expect(() => canonicalize(fromBits('7ff0000000000000'))).toThrow(/Infinity/);
  });

  it('refuses what has no faithful JSON form', () => {
    expect(() => canonicalize({ a: undefined })).toThrow(
      expect.objectContaining({ code: 'CANONICAL_UNREPRESENTABLE' }),
    );

    expect(() => canonicalize('\ud800')).toThrow(/lone surrogate/);
    expect(() => canonicalize(new Date())).toThrow(/plain objects/);
    expect(() => canonicalize(1n)).toThrow();
  });

  it('is idempotent and round-trips (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const once = canonicalize(v);
        const parsed = parseStrictJson(once);
        expect(canonicalize(parsed)).toBe(once);
        // Same value as JSON.parse of the standard serialisation (-0 becomes 0 in both).
        expect(parsed).toEqual(JSON.parse(JSON.stringify(v)));
      }),
      { numRuns: 1000 },
    );
  });

  it('the JSON.stringify fast path agrees with the key-by-key serialiser (property)', () => {
    // Values with keys already sorted take the fast path; unsorted ones, integer-like keys,
    // surrogate pairs, -0 and nesting must give the same text either way.
    const sortedDeep = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(sortedDeep);
      if (typeof v !== 'object' || v === null) return v;
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) out[k] = sortedDeep((v as Record<string, unknown>)[k]);
      return out;
    };
    const value = fc.jsonValue({ maxDepth: 4 });
    fc.assert(
      fc.property(value, fc.boolean(), (v, sort) => {
        const x = sort ? sortedDeep(v) : v;
        expect(canonicalize(x)).toBe(canonicalizeSlow(x));
      }),
      { numRuns: 3000 },
    );
    for (const x of [
      { b: 1, a: 2 },
      { '10': 1, '9': 2 },
      { a: -0 },
      ['\ud83d\ude00'],
      { '\u00e9': 1, z: 2 },
    ]) {
      expect(canonicalize(x)).toBe(canonicalizeSlow(x));
    }
    // Values whose strings were checked on receipt take the path without the surrogate scan:
    // the same form, paired surrogates included; keys out of order take the exact path.
    const anyUnits = fc.jsonValue({ maxDepth: 4, stringUnit: 'binary' });
    fc.assert(
      fc.property(anyUnits, fc.boolean(), (v, sort) => {
        const x = sort ? sortedDeep(v) : v;
        // JSON.stringify escapes a lone surrogate (and only a lone one): such values are not
        // well-formed, the case the caller rules out.
        if (/\\ud[89a-f]/i.test(JSON.stringify(x))) return;
        const outcome = (f: (y: unknown) => string): string => {
          try {
            return f(x);
          } catch (e) {
            return `refused: ${(e as Error).message}`;
          }
        };
        expect(outcome(canonicalizeWellFormed)).toBe(outcome(canonicalizeSlow));
      }),
      { numRuns: 3000 },
    );
    expect(canonicalizeWellFormed({ b: ['\ud83d\ude00'], a: 1 })).toBe(
      '{"a":1,"b":["\ud83d\ude00"]}',
    );
    expect(() => canonicalize({ a: ['\ud800'] })).toThrow(/lone surrogate/);
    expect(() => canonicalize({ a: [undefined] })).toThrow();
    expect(() => canonicalize({ a: NaN })).toThrow(/NaN/);
  });
});
