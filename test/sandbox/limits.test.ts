import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BIN,
  probeResults,
  ROOT,
  sandboxEnv,
  type SandboxEnv,
  initPolicyAs,
  removeEnv,
} from './harness.js';

// Agents run as ordinary users; under root (CI), the ordinary user is `nobody` via setpriv.
const NOBODY = 65534;
const asRoot = process.getuid?.() === 0;

let s: SandboxEnv;
let manifest: string;
beforeAll(() => {
  s = sandboxEnv('limits');
  manifest = s.sign({
    commandsAllowed: ['/usr/bin/bash', '/usr/bin/cat', '/usr/bin/head', s.probe],
  });
});
afterAll(() => removeEnv(s));

/** The size option of the tmpfs mounted at `dir`, from the sandbox's /proc/self/mountinfo. */
function tmpfsSize(mountinfo: string, dir: string): string | undefined {
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f[4] === dir && line.includes(' - tmpfs ')) return /size=(\d+k)/.exec(line)?.[1];
  }
  return undefined;
}

describe('scratch space', () => {
  it('/tmp, /var/tmp and /dev/shm are 1 GiB each by default, not half the RAM', async () => {
    const r = await s.bash(manifest, 'cat /proc/self/mountinfo');
    expect(r.code, r.stderr).toBe(0);
    for (const dir of ['/tmp', '/var/tmp', '/dev/shm'])
      expect(tmpfsSize(r.stdout, dir), dir).toBe(`${1024 * 1024}k`);
  });

  it('--max-tmp-size bounds each: writing beyond it fails with ENOSPC', async () => {
    const r = await s.bash(
      manifest,
      [
        'for d in /tmp /var/tmp /dev/shm; do',
        '  head -c 1536K /dev/zero > $d/small; echo "small$d=$?"',
        '  head -c 3M /dev/zero > $d/big; echo "big$d=$?"',
        'done',
        'true',
      ],
      ['--max-tmp-size', '2M'],
    );
    expect(r.code, r.stderr).toBe(0);
    for (const d of ['/tmp', '/var/tmp', '/dev/shm']) {
      expect(r.stdout).toContain(`small${d}=0`);
      expect(r.stdout).toContain(`big${d}=1`);
    }
    expect(r.stderr.match(/No space left on device/g)?.length).toBe(3);
    for (const bad of ['0', '512K', 'lots']) {
      const b = await s.bash(manifest, 'true', ['--max-tmp-size', bad]);
      expect(b.code, bad).toBe(125);
      expect(b.stderr).toContain('--max-tmp-size');
    }
  });
});

describe('--max-processes', () => {
  it('is refused under root, which RLIMIT_NPROC does not bind (125, names the flag and the fix)', async () => {
    // The precondition: this test is about root (CI runs the suite as root).
    expect(asRoot, 'run the sandbox tests as root (setpriv needs it too)').toBe(true);
    const launches = (): number =>
      s.events().filter((e) => e['status_code'] === 'SANDBOX_STARTED').length;
    const before = launches();
    const r = await s.bash(manifest, 'true', ['--max-processes', '20']);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain('SANDBOX_LIMIT_UNENFORCEABLE');
    expect(r.stderr).toMatch(/--max-processes cannot be enforced for root/);
    expect(r.stderr).toMatch(/fix: run cordon as an ordinary user/);
    // Refused before anything started.
    expect(launches()).toBe(before);
  });

  it('bounds a fork bomb of an ordinary user: fork fails with EAGAIN', () => {
    expect(asRoot, 'run the sandbox tests as root (setpriv needs it too)').toBe(true);
    // Everything as `nobody`, in a directory of its own.
    const dir = mkdtempSync(join(tmpdir(), 'cordon-nproc-'));
    try {
      chmodSync(dir, 0o755);
      const home = join(dir, 'home');
      mkdirSync(home);
      const probe = join(dir, 'probe');
      const cc = spawnSync('gcc', ['-O1', '-o', probe, join(ROOT, 'test/sandbox/probe.c')], {
        encoding: 'utf8',
      });
      expect(cc.status, cc.stderr).toBe(0);
      for (const p of [home, probe]) chownSync(p, NOBODY, NOBODY);
      const env = { PATH: '/usr/bin:/bin', HOME: home, CORDON_HOME: join(home, '.cordon') };
      const asNobody = (args: string[]): ReturnType<typeof spawnSync> =>
        spawnSync(
          'setpriv',
          [
            `--reuid=${NOBODY}`,
            `--regid=${NOBODY}`,
            '--clear-groups',
            '--',
            process.execPath,
            BIN,
            ...args,
          ],
          { env, encoding: 'utf8' },
        );
      const ok = (args: string[]): void => {
        const r = asNobody(args);
        expect(r.status, String(r.stderr)).toBe(0);
      };
      initPolicyAs(home, ok, NOBODY);
      const m = join(home, 'm.json');
      writeFileSync(
        m,
        JSON.stringify({
          apiVersion: 'cordon.dev/v1',
          agentName: 'forker',
          version: '1.0.0',
          role: 'developer',
          dataClassification: 'internal',
          owner: 'o@example.com',
          notAfter: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
          commandsAllowed: [probe],
        }),
      );
      chownSync(m, NOBODY, NOBODY);
      ok(['manifest', 'sign', m, '--key', join(home, '.cordon/policy/keys/k.key')]);
      const signed = join(home, 'm.signed.json');
      const run = (extra: string[]): Record<string, string> => {
        const r = asNobody([
          'run',
          '--manifest',
          signed,
          ...extra,
          '--',
          probe,
          'fork-bomb',
          '500',
        ]);
        expect(r.status, String(r.stderr)).toBe(0);
        return probeResults(String(r.stdout));
      };
      // The control: without the limit, the same program forks all 500.
      expect(run([])['fork-bomb']).toBe('ok');
      const bounded = asNobody([
        'run',
        '--manifest',
        signed,
        '--max-processes',
        '30',
        '--',
        probe,
        'fork-bomb',
        '500',
      ]);
      expect(bounded.status, String(bounded.stderr)).toBe(0);
      const line = String(bounded.stdout).trim();
      const m2 = /^fork-bomb EAGAIN (\d+)$/m.exec(line);
      expect(m2, line).not.toBeNull();
      expect(Number(m2?.[1])).toBeLessThan(30);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
