import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { EXIT, exitCodeFor } from '../src/cli/context.js';
import { CordonError, type CordonCode } from '../src/errors.js';
import { ManifestInvalidError } from '../src/manifest/parse.js';

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

  it('codes are checked by the compiler: one outside the domain unions does not compile', () => {
    // @ts-expect-error -- a code is declared in its domain's union in src/errors.ts first
    const e = new CordonError('NOT_A_DECLARED_CODE', 'x');
    expect(e.code).toBe('NOT_A_DECLARED_CODE');
    const code: CordonCode = 'MANIFEST_EXPIRED';
    expect(new CordonError(code, 'x').withFile('/m.json').code).toBe('MANIFEST_EXPIRED');
  });

  it('every code has an exit class: usage, environment or invalid input', () => {
    expect(exitCodeFor('USAGE')).toBe(EXIT.USAGE);
    expect(exitCodeFor('RESOLVE_ENTRY_INVALID')).toBe(EXIT.USAGE);
    expect(exitCodeFor('FILE_NOT_FOUND')).toBe(EXIT.ENVIRONMENT);
    expect(exitCodeFor('AUDIT_LOG_LOCKED')).toBe(EXIT.ENVIRONMENT);
    expect(exitCodeFor('MANIFEST_EXPIRED')).toBe(EXIT.INVALID);
    expect(exitCodeFor('CONFIG_INVALID')).toBe(EXIT.INVALID);
    // A lint rule's code refuses a manifest at signing.
    expect(exitCodeFor('PATH_HOME_GRANT')).toBe(EXIT.INVALID);
  });

  it('instanceof keeps working for the base class and its subclasses', () => {
    const e: unknown = new ManifestInvalidError([
      { code: 'MANIFEST_TYPE', pointer: '/version', message: 'expected string' },
    ]);
    expect(e instanceof CordonError).toBe(true);
    expect(e instanceof ManifestInvalidError && e.issues.length).toBe(1);
    expect(new CordonError('USAGE', 'x') instanceof ManifestInvalidError).toBe(false);
    expect(new Error('x') instanceof CordonError).toBe(false);
  });
});
