import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, initPolicyAs } from './harness.js';

// Agents run as ordinary users; under root (CI), the whole flow runs as `nobody` via setpriv.
const NOBODY = 65534;
const asRoot = process.getuid?.() === 0;
const dir = mkdtempSync(join(tmpdir(), 'cordon-unpriv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function asUser(args: string[], env: Record<string, string>): ReturnType<typeof spawnSync> {
  const cmd = [process.execPath, BIN, ...args];
  return asRoot
    ? spawnSync(
        'setpriv',
        [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...cmd],
        { env, encoding: 'utf8' },
      )
    : spawnSync(cmd[0] ?? '', cmd.slice(1), { env, encoding: 'utf8' });
}

describe('cordon run as an ordinary user', () => {
  it('builds the same sandbox without privileges: grants, noexec and Landlock hold', () => {
    const home = join(dir, 'home');
    mkdirSync(join(home, 'Work/out'), { recursive: true });
    writeFileSync(join(home, 'Work/readme.txt'), 'readable\n');
    if (asRoot) {
      chmodSync(dir, 0o755);
      for (const p of [
        home,
        join(home, 'Work'),
        join(home, 'Work/out'),
        join(home, 'Work/readme.txt'),
      ])
        chownSync(p, NOBODY, NOBODY);
    }
    const env = {
      PATH: '/usr/bin:/bin',
      HOME: home,
      CORDON_HOME: join(home, '.cordon'),
    };
    const ok = (args: string[]): void => {
      const r = asUser(args, env);
      expect(r.status, String(r.stderr)).toBe(0);
    };
    initPolicyAs(home, ok, asRoot ? NOBODY : undefined);
    const m = join(home, 'm.json');
    writeFileSync(
      m,
      JSON.stringify({
        apiVersion: 'cordon.dev/v1',
        agentName: 'unprivileged',
        version: '1.0.0',
        role: 'developer',
        dataClassification: 'internal',
        owner: 'o@example.com',
        notAfter: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
        readPaths: ['~/Work/**'],
        writePaths: ['~/Work/out/**'],
        commandsAllowed: ['/usr/bin/bash', '/usr/bin/cat', '/usr/bin/id', '/usr/bin/readlink'],
      }),
    );
    if (asRoot) chownSync(m, NOBODY, NOBODY);
    ok(['manifest', 'sign', m, '--key', join(home, '.cordon/policy/keys/k.key')]);
    const r = asUser(
      [
        'run',
        '--manifest',
        join(home, 'm.signed.json'),
        '--',
        'bash',
        '-c',
        [
          'id -u',
          'cat ~/Work/readme.txt',
          'echo x > ~/Work/out/o && echo write=$?',
          'echo x > ~/Work/no 2>/dev/null; echo write_ro=$?',
          // The home directory lies under /tmp: a write outside the grants must not vanish.
          'echo x > ~/stray 2>/dev/null; echo write_home=$?',
          'cat /usr/bin/cat > /tmp/c; /tmp/c /etc/hostname 2>/dev/null; echo tmp_exec=$?',
          '/lib64/ld-linux-x86-64.so.2 /tmp/c /etc/hostname 2>/dev/null; echo loader=$?',
          'cat /run/cordon/sandbox >/dev/null 2>&1; echo landlock=$?',
          'cat ~/.cordon/policy/trust.json >/dev/null 2>&1; echo trust=$?',
        ].join('\n'),
      ],
      env,
    );
    expect(r.status, String(r.stderr)).toBe(0);
    const out = String(r.stdout);
    expect(out.split('\n')[0]).toBe(String(asRoot ? NOBODY : process.getuid?.()));
    expect(out).toContain('readable');
    expect(out).toMatch(/^write=0$/m);
    expect(out).toMatch(/^write_ro=1$/m);
    expect(out).toMatch(/^write_home=1$/m);
    expect(out).toMatch(/^tmp_exec=126$/m);
    expect(out).not.toMatch(/^loader=0$/m);
    expect(out).toMatch(/^landlock=1$/m);
    expect(out).toMatch(/^trust=1$/m);

    // On a terminal, the session gets a pseudo-terminal of its own, unprivileged too.
    const user = asRoot ? `setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups -- ` : '';
    const inside = 'test -t 0 && echo in-tty=yes; echo in=$(readlink /proc/$$/fd/0)';
    const onTty = spawnSync(
      'script',
      [
        '-qec',
        `echo out=$(readlink /proc/self/fd/0); ${user}${process.execPath} ${BIN} run --manifest ${join(home, 'm.signed.json')} -- bash -c '${inside}'`,
        '/dev/null',
      ],
      { env, encoding: 'utf8' },
    );
    expect(onTty.status, onTty.stdout + onTty.stderr).toBe(0);
    const v = (k: string): string => new RegExp(`${k}=(\\S*)`).exec(onTty.stdout)?.[1] ?? '';
    expect(v('in-tty'), onTty.stdout).toBe('yes');
    expect(v('out')).toMatch(/^\/dev\/pts\/\d+$/);
    expect(v('in')).not.toBe('');
    expect(v('in')).not.toBe(v('out'));
  });
});
