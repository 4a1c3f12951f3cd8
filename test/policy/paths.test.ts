import { posix } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normaliseRequestPath } from '../../src/policy/paths.js';

describe('normaliseRequestPath', () => {
  it('agrees with POSIX normalisation on random absolute paths (property)', () => {
    const path = fc
      .array(fc.constantFrom('/', '.', '..', 'a', 'b', '.x', '...'), { maxLength: 14 })
      .map((parts) => '/' + parts.join(''));
    fc.assert(
      fc.property(path, (p) => {
        const expected = posix.normalize(p).replace(/(.)\/$/, '$1');
        const got = normaliseRequestPath(p);
        // Paths that land in /proc or /dev aliases are refused instead; none can be built here.
        expect(got).toBe(expected);
      }),
      { numRuns: 5000 },
    );
  });

  it('refuses what it cannot judge', () => {
    expect(normaliseRequestPath('a/b')).toBe('relative');
    expect(normaliseRequestPath('/a\tb')).toBe('control');
    expect(normaliseRequestPath('/a\u200eb')).toBe('control');
    expect(normaliseRequestPath('/cafe\u0301')).toBe('not-nfc');
    expect(normaliseRequestPath('/café')).toBe('/café');
    expect(normaliseRequestPath('/proc/self/../self/cwd/x')).toBe('proc-alias');
    expect(normaliseRequestPath('/' + 'a'.repeat(4100))).toBe('too-long');
  });
});
