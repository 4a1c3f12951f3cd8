import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, initPolicyAs } from './harness.js';

// The planted-link attack as agents really run: an ordinary user, two sessions at once.
const NOBODY = 65534;
const asRoot = process.getuid?.() === 0;
const dir = mkdtempSync(join(tmpdir(), 'cordon-planted-unpriv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const CREDS = 'https://bob:ghp_unprivileged_plant@github.com';

function userCmd(args: string[]): [string, string[]] {
  const cmd = [process.execPath, BIN, ...args];
  return asRoot
    ? ['setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...cmd]]
    : [cmd[0] ?? '', cmd.slice(1)];
}

function asUser(args: string[], env: Record<string, string>): ReturnType<typeof spawnSync> {
  const [c, a] = userCmd(args);
  return spawnSync(c, a, { env, encoding: 'utf8' });
}

describe('links planted for the next session, as an ordinary user', () => {
  it('.git/config -> ../../../.git-credentials planted by a running session shows nothing in the next', async () => {
    const home = join(dir, 'home');
    mkdirSync(join(home, 'proj'), { recursive: true });
    writeFileSync(join(home, '.git-credentials'), CREDS + '\n');
    if (asRoot) {
      chmodSync(dir, 0o755);
      for (const p of [home, join(home, 'proj'), join(home, '.git-credentials')])
        chownSync(p, NOBODY, NOBODY);
    }
    const env = { PATH: '/usr/bin:/bin', HOME: home, CORDON_HOME: join(home, '.cordon') };
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
        agentName: 'planted-unprivileged',
        version: '1.0.0',
        role: 'developer',
        dataClassification: 'public',
        owner: 'o@example.com',
        notAfter: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
        readPaths: ['~/**'],
        writePaths: ['~/proj/**'],
        commandsAllowed: [
          '/usr/bin/bash',
          '/usr/bin/cat',
          '/usr/bin/ln',
          '/usr/bin/mkdir',
          '/usr/bin/sleep',
          '/usr/bin/touch',
        ],
      }),
    );
    if (asRoot) chownSync(m, NOBODY, NOBODY);
    ok(['manifest', 'sign', m, '--key', join(home, '.cordon/policy/keys/k.key')]);
    const signed = join(home, 'm.signed.json');

    const ready = join(home, 'proj/.planted');
    const done = join(home, 'proj/.done');
    const [c, a] = userCmd([
      'run',
      '--state-dir',
      join(home, 'state-1'),
      '--manifest',
      signed,
      '--',
      'bash',
      '-c',
      [
        `mkdir -p ${home}/proj/repo/.git`,
        `ln -s ../../../.git-credentials ${home}/proj/repo/.git/config`,
        `touch ${ready}`,
        `while [ ! -e ${done} ]; do sleep 0.05; done`,
      ].join('\n'),
    ]);
    const first = spawn(c, a, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let firstErr = '';
    first.stderr.on('data', (d: Buffer) => (firstErr += d.toString()));
    const firstDone = new Promise<number | null>((r) => first.on('close', (code) => r(code)));
    const end = Date.now() + 20_000;
    while (!existsSync(ready) && first.exitCode === null && Date.now() < end)
      await new Promise((r) => setTimeout(r, 20));
    expect(existsSync(ready), firstErr).toBe(true);
    try {
      const r = asUser(
        [
          'run',
          '--manifest',
          signed,
          '--',
          'bash',
          '-c',
          `cat ${home}/proj/repo/.git/config; cat ${home}/.git-credentials; id -u >/dev/null; true`,
        ],
        env,
      );
      expect(r.status, String(r.stderr)).toBe(0);
      expect(String(r.stdout)).not.toContain('ghp_unprivileged_plant');
      expect(String(r.stderr)).toContain(`${home}/proj/repo/.git/config`);
    } finally {
      writeFileSync(done, '');
      if (asRoot) chownSync(done, NOBODY, NOBODY);
    }
    expect(await firstDone, firstErr).toBe(0);
  });
});
