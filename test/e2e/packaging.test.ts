import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'dist/cli/bin.js');

function cordon(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('packaging', () => {
  it('does not ship the V8 code cache (it names the files of the machine that made it)', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const [pack] = JSON.parse(r.stdout) as { files: { path: string }[] }[];
    const files = (pack?.files ?? []).map((f) => f.path);
    expect(files).toContain('dist/cli/cordon.cjs');
    expect(files).toContain('dist/cli/bin.js');
    // The package's `cordon` (CommonJS) and `cordon run`'s own bundle.
    expect(files).toContain('dist/cli/bin.cjs');
    expect(files).toContain('dist/cli/cordon-run.cjs');
    expect(files).toContain('LICENSE');
    expect(files.filter((f) => f.includes('.cache'))).toEqual([]);
  });

  it('a code cache made under another path is not used, and is remade for this one', () => {
    // The package at one path, then moved (a copied install, an npx cache): V8 would keep the
    // first path in every stack trace if the old cache were used.
    const base = mkdtempSync(join(tmpdir(), 'cordon-pkg-'));
    try {
      symlinkSync(join(root, 'node_modules'), join(base, 'node_modules'));
      const a = join(base, 'a');
      mkdirSync(join(a, 'cli'), { recursive: true });
      for (const f of ['bin.js', 'cordon.cjs'])
        copyFileSync(join(root, 'dist/cli', f), join(a, 'cli', f));
      const run = (dir: string): string => {
        const r = spawnSync(process.execPath, [join(dir, 'cli/bin.js'), '--version'], {
          encoding: 'utf8',
        });
        expect(r.status, r.stderr).toBe(0);
        return readFileSync(join(dir, 'cli/cordon.cjs.cache')).toString('latin1');
      };
      expect(run(a).startsWith(`${join(a, 'cli/cordon.cjs')}\0`)).toBe(true);
      const b = join(base, 'b');
      renameSync(a, b);
      const moved = run(b);
      expect(moved.startsWith(`${join(b, 'cli/cordon.cjs')}\0`)).toBe(true);
      expect(moved).not.toContain(join(a, 'cli'));
      // A cache without the header (as earlier versions wrote it) is ignored and replaced too.
      writeFileSync(join(b, 'cli/cordon.cjs.cache'), 'not a cache');
      expect(run(b).startsWith(`${join(b, 'cli/cordon.cjs')}\0`)).toBe(true);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('cordon completion', () => {
  it('bash: the script parses, and completes verbs, sub-verbs and options from the program', () => {
    const r = cordon(['completion', 'bash']);
    expect(r.status, r.stderr).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'cordon-completion-'));
    try {
      const script = join(dir, 'cordon.bash');
      writeFileSync(script, r.stdout);
      expect(spawnSync('bash', ['-n', script], { encoding: 'utf8' }).status).toBe(0);
      // Complete as bash does: COMP_WORDS and COMP_CWORD set, the function fills COMPREPLY.
      const complete = (...words: string[]): string[] => {
        const s = spawnSync(
          'bash',
          [
            '-c',
            `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _cordon; printf '%s\\n' "\${COMPREPLY[@]}"; complete -p cordon`,
            'bash',
            script,
            ...words,
          ],
          { encoding: 'utf8' },
        );
        expect(s.status, s.stderr).toBe(0);
        const lines = s.stdout.trim().split('\n');
        expect(lines.pop()).toBe('complete -o bashdefault -o default -F _cordon cordon');
        return lines.filter((l) => l !== '');
      };
      expect(complete('cordon', 'au')).toEqual(['audit']);
      expect(complete('cordon', 'manifest', 've')).toEqual(['verify']);
      expect(complete('cordon', 'audit', 'verify', 've')).toEqual([]);
      expect(complete('cordon', 'audit', 'tail', '--nd')).toEqual(['--ndjson']);
      expect(complete('cordon', '--state-dir', '/tmp/s', 'ps', '--j')).toEqual(['--json']);
      expect(complete('cordon', 'revoke', 'manifest', '--re')).toEqual(['--reason']);
      expect(complete('cordon', 'completion', '--')).toEqual(['--help']);
      // A value (a file) after --manifest, and the agent's own words after --: bash's default.
      expect(complete('cordon', 'run', '--manifest', '')).toEqual([]);
      expect(complete('cordon', 'run', '--manifest', 'm.json', '--', 'ba')).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('zsh and fish scripts name every verb; an unknown shell is a usage error', () => {
    const zsh = cordon(['completion', 'zsh']);
    expect(zsh.status).toBe(0);
    expect(zsh.stdout).toMatch(/^#compdef cordon\n/);
    expect(zsh.stdout).toContain('bashcompinit');
    const fish = cordon(['completion', 'fish']);
    expect(fish.status).toBe(0);
    for (const verb of ['audit', 'manifest', 'run', 'quarantine', 'completion'])
      expect(fish.stdout).toMatch(new RegExp(`-a '[^']*\\b${verb}\\b`));
    expect(fish.stdout).toContain(
      "complete -c cordon -n '__fish_seen_subcommand_from audit; and __fish_seen_subcommand_from tail' -l ndjson",
    );
    expect(cordon(['completion', 'tcsh']).status).toBe(2);
  });
});
