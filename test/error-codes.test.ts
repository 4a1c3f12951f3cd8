import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

// Upper-case identifiers in the source that are not error codes.
const NOT_CODES = new Set([
  'CORDON_HOME',
  'CORDON_POLICY_DIR',
  'CORDON_STATE_DIR',
  'XDG_CONFIG_HOME',
  'XDG_STATE_HOME',
  // Node's own code for a write to a closed stream.
  'ERR_STREAM_DESTROYED',
]);

describe('error codes', () => {
  it('every code the source can produce appears in a test', () => {
    const codes = new Set<string>();
    for (const f of walk(join(root, 'src')).filter((p) => p.endsWith('.ts'))) {
      for (const m of readFileSync(f, 'utf8').matchAll(/'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)'/g))
        if (!NOT_CODES.has(m[1]!)) codes.add(m[1]!);
    }
    expect(codes.size).toBeGreaterThan(80);
    const tests = walk(join(root, 'test'))
      // test/data holds third-party data (the OCSF schema), not tests: a code found there is untested.
      .filter(
        (p) =>
          /\.(ts|json)$/.test(p) &&
          !p.endsWith('error-codes.test.ts') &&
          !p.startsWith(join(root, 'test', 'data')),
      )
      .map((p) => readFileSync(p, 'utf8'))
      .join('\n');
    expect([...codes].filter((c) => !tests.includes(c)).sort()).toEqual([]);
  });
});
