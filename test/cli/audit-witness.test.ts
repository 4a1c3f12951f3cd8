import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// The witness as the README tells an administrator to set it up: a file the writer's user may
// only append to (`chattr +a`, which only root can clear). The writer runs as `nobody`.
const NOBODY = 65534;
const BIN = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'bin.js');
const dir = mkdtempSync(join(tmpdir(), 'cordon-witness-'));
const witness = join(dir, 'witness', 'audit.ndjson');
afterAll(() => {
  spawnSync('chattr', ['-a', witness]);
  rmSync(dir, { recursive: true, force: true });
});

function asNobody(args: string[], env: Record<string, string>) {
  return spawnSync(
    'setpriv',
    [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...args],
    { env, encoding: 'utf8' },
  );
}

describe('checkpoint witness kept append-only by root', () => {
  it('the writer (an ordinary user) appends to it but cannot take it back, so its own cut-and-restore of the log is found', () => {
    // Preconditions: root to set the attribute, chattr, setpriv and a built CLI.
    expect(process.getuid?.(), 'runs as root (CI)').toBe(0);
    for (const b of ['/usr/bin/chattr', '/usr/bin/setpriv']) expect(existsSync(b), b).toBe(true);
    expect(existsSync(BIN), 'npm run build first').toBe(true);
    const home = join(dir, 'home');
    mkdirSync(home);
    mkdirSync(join(dir, 'witness'));
    chmodSync(dir, 0o755);
    chownSync(home, NOBODY, NOBODY);
    writeFileSync(witness, '');
    chownSync(witness, NOBODY, NOBODY);
    chmodSync(witness, 0o600);
    const attr = spawnSync('chattr', ['+a', witness], { encoding: 'utf8' });
    expect(attr.status, attr.stderr).toBe(0);
    const env = { PATH: '/usr/bin:/bin', HOME: home, CORDON_HOME: join(home, '.cordon') };
    const cordon = (...args: string[]) => asNobody([process.execPath, BIN, ...args], env);
    expect(cordon('init').status).toBe(0);
    writeFileSync(
      join(home, '.cordon', 'policy', 'audit.json'),
      JSON.stringify({
        apiVersion: 'cordon.dev/v1',
        kind: 'AuditConfig',
        witness: { path: witness },
      }),
    );
    expect(cordon('audit', 'emit-test', '--count', '40').status).toBe(0);
    const audit = join(home, '.cordon', 'state', 'audit');
    const seg = join(audit, 'segments', readdirSync(join(audit, 'segments'))[0]!);
    const saved = join(home, 'saved');
    expect(asNobody(['mkdir', saved], env).status).toBe(0);
    expect(asNobody(['cp', seg, join(audit, 'checkpoint.json'), saved], env).status).toBe(0);
    expect(cordon('audit', 'emit-test', '--count', '40').status).toBe(0);
    expect(readFileSync(witness, 'utf8').trim().split('\n')).toHaveLength(2);
    const proven = cordon('audit', 'verify');
    expect(proven.status, proven.stdout).toBe(0);
    expect(proven.stdout).toMatch(/completeness vs witness .*: proven through record 81/);

    // The writer's user cuts the log back and restores the earlier state...
    const restore = asNobody(
      [
        'cp',
        join(
          saved,
          readdirSync(saved).find((f) => f.startsWith('seg-'))!,
        ),
        seg,
      ],
      env,
    );
    expect(restore.status, restore.stderr).toBe(0);
    expect(asNobody(['cp', join(saved, 'checkpoint.json'), audit], env).status).toBe(0);
    // ... and cannot take the witness back: no truncating, rewriting, replacing or removing it.
    expect(asNobody(['truncate', '-s', '0', witness], env).status).not.toBe(0);
    expect(asNobody(['sh', '-c', `echo > ${witness}`], env).status).not.toBe(0);
    expect(asNobody(['rm', '-f', witness], env).status).not.toBe(0);
    expect(asNobody(['chattr', '-a', witness], env).status).not.toBe(0);
    const cut = cordon('audit', 'verify');
    expect(cut.status, cut.stdout).toBe(1);
    expect(cut.stdout).toMatch(/DAMAGE \(truncated\) at record 42: the log ends at record 41/);
  });
});
