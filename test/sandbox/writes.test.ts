import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, sandboxEnv, type SandboxEnv } from './harness.js';

let s: SandboxEnv;
let manifest: string;
const made: string[] = [];
beforeAll(() => {
  s = sandboxEnv('writes');
  manifest = s.sign({
    writePaths: ['~/Work/**'],
    commandsAllowed: ['/usr/bin/bash', '/usr/bin/cat', '/usr/bin/mkdir'],
  });
});
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
  rmSync(s.dir, { recursive: true, force: true });
});

/** Outcome lines `name=exit-status` printed by a test script. */
function statuses(out: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const m of out.matchAll(/^(\S+)=(\S*)$/gm)) r[m[1] ?? ''] = m[2] ?? '';
  return r;
}

// A write outside the grants that succeeded inside would land in the sandbox's memory and vanish
// at exit while the agent reports success: it must fail, wherever the home directory lies.
describe.each([
  ['under /tmp', tmpdir()],
  ['under /var/tmp', '/var/tmp'],
  ['outside scratch space', '/var/lib'],
])('a home directory %s', (_name, base) => {
  it('takes writes only in the grants; the rest fails (EROFS/EACCES), scratch space works', async () => {
    const root = mkdtempSync(join(base, 'cordon-writes-'));
    made.push(root);
    const home = join(root, 'home');
    mkdirSync(join(home, 'Work'), { recursive: true });
    const r = await runCli(
      [
        'run',
        '--manifest',
        manifest,
        '--',
        'bash',
        '-c',
        [
          'echo x > ~/not-granted.txt; echo home_file=$?',
          'mkdir ~/newdir; echo home_dir=$?',
          'echo x > ~/Work/granted.txt; echo granted=$?',
          'mkdir ~/Work/sub && echo y > ~/Work/sub/f; echo granted_dir=$?',
          // The directories on the way to the home directory.
          `echo x > ${root}/beside-home.txt; echo above_home=$?`,
          `mkdir ${root}/newdir; echo above_home_dir=$?`,
          'echo x > /at-root.txt; echo root=$?',
          // Scratch space off the way to the home directory stays usable.
          'echo s > /tmp/scratch.txt && cat /tmp/scratch.txt; echo tmp=$?',
          'mkdir /tmp/d && echo s > /tmp/d/f; echo tmp_dir=$?',
          'echo s > /var/tmp/scratch.txt; echo var_tmp=$?',
          'echo s > /dev/shm/scratch; echo shm=$?',
        ].join('\n'),
      ],
      { env: { ...s.env, HOME: home } },
    );
    expect(r.code, r.stderr).toBe(0);
    const st = statuses(r.stdout);
    for (const k of ['home_file', 'home_dir', 'above_home', 'above_home_dir', 'root'])
      expect(`${k}=${st[k]}`).toBe(`${k}=1`);
    for (const k of ['granted', 'granted_dir', 'tmp', 'tmp_dir', 'var_tmp', 'shm'])
      expect(`${k}=${st[k]}`).toBe(`${k}=0`);
    expect(r.stderr).toMatch(/Read-only file system|Permission denied/);
    // What succeeded reached the host; what failed left nothing.
    expect(readFileSync(join(home, 'Work/granted.txt'), 'utf8')).toBe('x\n');
    expect(readFileSync(join(home, 'Work/sub/f'), 'utf8')).toBe('y\n');
    expect(existsSync(join(home, 'not-granted.txt'))).toBe(false);
    expect(existsSync(join(home, 'newdir'))).toBe(false);
  });
});

describe('a grant under /tmp, the home directory elsewhere', () => {
  it('takes writes in the grant; the directories on the way to it are read-only', async () => {
    const home = mkdtempSync(join('/var/lib', 'cordon-writes-'));
    made.push(home);
    const proj = join(s.dir, 'projects/app');
    mkdirSync(proj, { recursive: true });
    const m = s.sign({
      writePaths: [`${proj}/**`],
      commandsAllowed: ['/usr/bin/bash'],
    });
    const r = await runCli(
      [
        'run',
        '--manifest',
        m,
        '--',
        'bash',
        '-c',
        [
          `echo x > ${proj}/kept.txt; echo granted=$?`,
          `echo x > ${s.dir}/projects/beside.txt; echo beside=$?`,
          `echo x > ${s.dir}/above.txt; echo above=$?`,
          'echo x > ~/home.txt; echo home=$?',
          'echo s > /tmp/scratch.txt; echo tmp=$?',
        ].join('\n'),
      ],
      { env: { ...s.env, HOME: home } },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(statuses(r.stdout)).toMatchObject({
      granted: '0',
      beside: '1',
      above: '1',
      home: '1',
      tmp: '0',
    });
    expect(readFileSync(join(proj, 'kept.txt'), 'utf8')).toBe('x\n');
  });
});
