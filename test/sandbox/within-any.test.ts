import { join, normalize, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isWithin, withinAny } from '../../src/sandbox/linux/plan.js';

// The planner masks a mandatory deny when it lies inside anything shown to the sandbox. It asks
// with a set look-up per directory above the deny (withinAny); the plain question is
// `shown.some((v) => isWithin(deny, v))`. Every path the planner compares is made by join,
// resolve or realpath (normalised, absolute, no trailing slash): for those, the two agree.

// Segments as paths are made of: short names that collide often, dots, names with odd bytes.
const segment = fc.oneof(
  fc.constantFrom('a', 'b', 'ab', 'a.b', '.ssh', '.git', 'home', 'u', 'etc', '..', '.', ''),
  fc.string({ minLength: 1, maxLength: 3 }).filter((s) => !s.includes('/')),
);
// A deny as the planner makes one: join of a root (`/` or a home, which may end in a slash:
// `~/**` with HOME=/home/u/ keeps it) and segments, or resolve/realpath of a path.
const planned = fc
  .tuple(fc.constantFrom('/', '/home/u', '/home/u/', '/a'), fc.array(segment, { maxLength: 5 }))
  .map(([root, segs]) => join(root, ...segs));
// What is shown: realpath results (grants, runtime directories) and fixed /etc paths, normalised
// with no trailing slash, as resolve gives.
const resolved = fc.array(segment, { maxLength: 5 }).map((segs) => resolve('/', ...segs));

describe('withinAny', () => {
  it('answers as isWithin over every shown path, for paths the planner makes', () => {
    const deny = fc.oneof(planned, resolved);
    fc.assert(
      fc.property(fc.array(resolved, { maxLength: 6 }), deny, (shown, p) => {
        expect(withinAny(shown)(p)).toBe(shown.some((v) => isWithin(p, v)));
      }),
      { numRuns: 5000 },
    );
  });

  it('agrees on the edges: the root, a path and its own prefix, siblings sharing a prefix', () => {
    const cases: [string[], string, boolean][] = [
      [['/'], '/', true],
      [['/'], '/home/u/.ssh', true],
      [['/home/u'], '/home/u', true],
      [['/home/u'], '/home/user/.ssh', false],
      [['/home/user'], '/home/u', false],
      [['/home/u/.ssh/id'], '/home/u/.ssh', false],
      [['/etc/ssl'], '/etc/ssl/private', true],
      [[], '/', false],
      [['/home/u'], '/home/u/', true],
      [['/home'], '/home/u/', true],
    ];
    for (const [shown, p, want] of cases) {
      expect(withinAny(shown)(p), `${p} in ${shown.join(',')}`).toBe(want);
      expect(shown.some((v) => isWithin(p, v))).toBe(want);
    }
    // Where the two differ, on paths the planner does not make, withinAny masks more: a shown
    // directory written with a trailing slash still holds what lies in it.
    expect(withinAny(['/home/u/'])('/home/u/.ssh')).toBe(true);
    expect(isWithin('/home/u/.ssh', '/home/u/')).toBe(false);
  });

  it('ends, and answers as isWithin after normalising, for any string', () => {
    const any = fc.string({ maxLength: 12, unit: fc.constantFrom('/', '.', 'a', 'b') });
    fc.assert(
      fc.property(fc.array(any, { maxLength: 4 }), any, (shown, p) => {
        const norm = (x: string): string => (x === '' ? '.' : normalize(x).replace(/(.)\/$/, '$1'));
        // Terminates on anything; on normalised input it is the plain question.
        withinAny(shown)(p);
        const ns = shown.map(norm).filter((x) => x.startsWith('/'));
        const np = norm(p);
        if (np.startsWith('/')) expect(withinAny(ns)(np)).toBe(ns.some((v) => isWithin(np, v)));
      }),
      { numRuns: 5000 },
    );
  });
});
