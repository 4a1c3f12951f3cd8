import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');

/** Every module reachable from `entry` through static imports, and the node: builtins they use. */
function graph(entry: string): { files: Set<string>; builtins: Set<string> } {
  const files = new Set<string>();
  const builtins = new Set<string>();
  const visit = (file: string): void => {
    if (files.has(file)) return;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm)) {
      const spec = m[1] ?? '';
      if (spec.startsWith('node:')) builtins.add(spec);
      else if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
    }
  };
  visit(entry);
  return { files, builtins };
}

describe('public entry points', () => {
  it('the root entry, cordon/manifest and cordon/policy pull in no process, network or file I/O', () => {
    for (const entry of ['index.ts', 'manifest/index.ts', 'policy/index.ts']) {
      const { builtins, files } = graph(join(src, entry));
      expect(
        [...builtins].filter((b) => /child_process|net|http|fs|dgram|tls|worker/.test(b)),
        entry,
      ).toEqual([]);
      expect(
        [...files].some((f) => f.includes('/cli/') || f.includes('/store/')),
        entry,
      ).toBe(false);
    }
  });

  it('cordon/egress is an adapter: network I/O yes, the CLI no; its wire parser does no I/O', () => {
    const { builtins, files } = graph(join(src, 'egress/index.ts'));
    expect(builtins.has('node:net')).toBe(true);
    expect([...files].some((f) => f.includes('/cli/'))).toBe(false);
    expect([...graph(join(src, 'egress/client-hello.ts')).builtins]).toEqual([]);
  });

  it('the check itself sees I/O when it is there', () => {
    expect(graph(join(src, 'store/files.ts')).builtins.has('node:fs')).toBe(true);
  });

  it('index files name their exports (no export *)', () => {
    for (const entry of ['index.ts', 'manifest/index.ts', 'egress/index.ts'])
      expect(readFileSync(join(src, entry), 'utf8')).not.toMatch(/export \*/);
  });
});
