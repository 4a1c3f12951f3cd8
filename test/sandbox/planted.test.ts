import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BIN, sandboxEnv, type RunResult, type SandboxEnv, removeEnv } from './harness.js';

// An agent prepares the next session: in session 1 (a write grant) it turns a path the next
// launch mounts into a symbolic link; session 2 must not show the link's target. Session 1 is
// still running when session 2 starts (on another state directory, as a second user session
// would be): the check at session 1's exit, which moves such plants aside, has not run yet, so
// only the launch stands between the link and session 2.
let s: SandboxEnv;
let outside: string;
const CREDS = 'https://alice:ghp_planted_credential@github.com';
const KEY = '-----BEGIN OPENSSH PRIVATE KEY----- planted-test-key';
const DOCS = 'private document, never granted';
const OUTSIDE = 'outside every grant';
const TOOLS = [
  '/usr/bin/bash',
  '/usr/bin/cat',
  '/usr/bin/ln',
  '/usr/bin/mkdir',
  '/usr/bin/ls',
  '/usr/bin/sleep',
  '/usr/bin/touch',
];

beforeAll(() => {
  s = sandboxEnv('planted');
  const h = s.home;
  writeFileSync(join(h, '.git-credentials'), CREDS + '\n');
  mkdirSync(join(h, '.ssh'));
  writeFileSync(join(h, '.ssh/id_rsa'), KEY + '\n');
  mkdirSync(join(h, 'proj'));
  mkdirSync(join(h, 'Documents'));
  writeFileSync(join(h, 'Documents/secret.txt'), DOCS + '\n');
  outside = join(s.dir, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret.txt'), OUTSIDE + '\n');
});
afterAll(() => removeEnv(s));

/** The launch event of the last session, and its sandbox warnings. */
function lastLaunchWarnings(): string[] {
  const launches = s
    .events()
    .filter(
      (e) =>
        (e['unmapped'] as { sandbox?: unknown } | undefined)?.sandbox !== undefined &&
        e['activity_id'] === 1,
    );
  const last = launches.at(-1) as { unmapped: { sandbox: { warnings: string[] } } } | undefined;
  expect(last, 'a launch event').toBeDefined();
  return last?.unmapped.sandbox.warnings ?? [];
}

async function session(manifest: string, script: string): Promise<RunResult> {
  const r = await s.bash(manifest, script);
  expect(r.code, r.stderr).toBe(0);
  return r;
}

let planters = 0;
/**
 * Session 1 runs `plant`, then stays running until `whileRunning` (session 2) is done.
 */
async function planted(
  manifest: string,
  plant: string,
  whileRunning: () => Promise<void>,
): Promise<void> {
  const n = ++planters;
  const ready = join(s.home, 'proj', `.planted-${n}`);
  const done = join(s.home, 'proj', `.done-${n}`);
  const first = s.cordon([
    'run',
    '--state-dir',
    join(s.dir, `state-${n}`),
    '--manifest',
    manifest,
    '--',
    'bash',
    '-c',
    `${plant}\ntouch ${ready}\nwhile [ ! -e ${done} ]; do sleep 0.05; done`,
  ]);
  let exited = false;
  void first.then(() => (exited = true));
  const end = Date.now() + 20_000;
  while (!existsSync(ready) && !exited && Date.now() < end)
    await new Promise((r) => setTimeout(r, 20));
  expect(existsSync(ready), 'session 1 planted its link').toBe(true);
  try {
    await whileRunning();
  } finally {
    writeFileSync(done, '');
    const r = await first;
    expect(r.code, r.stderr).toBe(0);
  }
}

function check(manifest: string, args: string[]): number | null {
  return spawnSync(process.execPath, [BIN, 'check', '--manifest', manifest, ...args], {
    env: s.env,
    encoding: 'utf8',
  }).status;
}

describe('links planted for the next session', () => {
  // Signed afresh for each test: a device never goes back to an older manifest version.
  let repoManifest = '';
  beforeEach(() => {
    repoManifest = s.sign({
      dataClassification: 'public',
      readPaths: ['~/**'],
      writePaths: ['~/proj/**'],
      commandsAllowed: TOOLS,
    });
  });

  it('.git/config -> ../../../.git-credentials: the next session does not see the credentials', async () => {
    const h = s.home;
    await planted(
      repoManifest,
      [
        `mkdir -p ${h}/proj/r1/.git`,
        `ln -s ../../../.git-credentials ${h}/proj/r1/.git/config`,
      ].join('\n'),
      async () => {
        const r = await session(
          repoManifest,
          [`cat ${h}/proj/r1/.git/config`, `cat ${h}/.git-credentials`, 'true'].join('\n'),
        );
        expect(r.stdout).not.toContain('ghp_planted_credential');
        expect(lastLaunchWarnings().join('\n')).toContain(`${h}/proj/r1/.git/config`);
      },
    );
  });

  it('.git/hooks -> ../../../.ssh: the next session does not see the SSH key', async () => {
    const h = s.home;
    await planted(
      repoManifest,
      [`mkdir -p ${h}/proj/r2/.git`, `ln -s ../../../.ssh ${h}/proj/r2/.git/hooks`].join('\n'),
      async () => {
        const r = await session(
          repoManifest,
          [`cat ${h}/proj/r2/.git/hooks/id_rsa`, `cat ${h}/.ssh/id_rsa`, 'true'].join('\n'),
        );
        expect(r.stdout).not.toContain('planted-test-key');
        expect(lastLaunchWarnings().join('\n')).toContain(`${h}/proj/r2/.git/hooks`);
      },
    );
  });

  it('.git/hooks climbing to /etc: the next session still sees only the listed /etc files', async () => {
    const h = s.home;
    // A file of /etc the sandbox does not list (and shadow, which root could read).
    const hidden = ['/etc/debian_version', '/etc/hostname', '/etc/shadow'].filter(existsSync);
    expect(hidden.length, 'files in /etc that the sandbox does not show').toBeGreaterThan(0);
    const gitDir = `${h}/proj/r3/.git`;
    // Exactly as many `..` as reach the root: bubblewrap resolves it inside the new root.
    const climb = '../'.repeat(gitDir.split('/').length - 1) + 'etc';
    await planted(
      repoManifest,
      [`mkdir -p ${gitDir}`, `ln -s ${climb} ${gitDir}/hooks`].join('\n'),
      async () => {
        const r = await session(
          repoManifest,
          [...hidden.map((f) => `cat ${f} >/dev/null 2>&1; echo "${f}=$?"`), 'true'].join('\n'),
        );
        for (const f of hidden) expect(r.stdout, f).not.toContain(`${f}=0`);
        expect(lastLaunchWarnings().join('\n')).toContain(`${gitDir}/hooks`);
      },
    );
  });

  it('a missing denied file turned into a link (~/.bashrc -> .git-credentials) shows nothing in the next session', async () => {
    const h = s.home;
    const m = s.sign({
      dataClassification: 'public',
      readPaths: ['~/**'],
      writePaths: ['~/**'],
      commandsAllowed: TOOLS,
    });
    expect(existsSync(join(h, '.bashrc'))).toBe(false);
    await planted(m, `ln -s .git-credentials ${h}/.bashrc`, async () => {
      const r = await session(
        m,
        [`cat ${h}/.bashrc`, `cat ${h}/.git-credentials`, 'true'].join('\n'),
      );
      expect(r.stdout).not.toContain('ghp_planted_credential');
      expect(lastLaunchWarnings().join('\n')).toContain(`${h}/.bashrc`);
      rmSync(join(h, '.bashrc'));
    });
  });

  it('a grant path created as ~/proj/reference -> ../Documents is not mounted, as `cordon check` denies it', async () => {
    const h = s.home;
    const m = s.sign({
      dataClassification: 'internal',
      readPaths: ['~/proj/**', '~/proj/reference/**'],
      writePaths: ['~/proj/**'],
      commandsAllowed: TOOLS,
    });
    await planted(m, `ln -s ../Documents ${h}/proj/reference`, async () => {
      const r = await session(
        m,
        [`cat ${h}/proj/reference/secret.txt`, `cat ${h}/Documents/secret.txt`, 'true'].join('\n'),
      );
      expect(r.stdout).not.toContain(DOCS);
      expect(check(m, ['read', `${h}/proj/reference/secret.txt`])).toBe(1);
      expect(lastLaunchWarnings().join('\n')).toMatch(
        /proj\/reference.*symbolic link.*not mounted/,
      );
      expect(readFileSync(join(h, 'Documents/secret.txt'), 'utf8')).toBe(DOCS + '\n');
    });
  });

  it('an allowed command in a write grant turned into a link (bin/fmt -> /usr/bin/id) does not make its target runnable', async () => {
    const h = s.home;
    mkdirSync(join(h, 'proj/bin'), { recursive: true });
    const fmt = join(h, 'proj/bin/fmt');
    const m = s.sign({
      dataClassification: 'public',
      readPaths: ['~/**'],
      writePaths: ['~/proj/**'],
      commandsAllowed: [...TOOLS, fmt],
    });
    expect(TOOLS).not.toContain('/usr/bin/id');
    await planted(m, `ln -s /usr/bin/id ${fmt}`, async () => {
      const r = await session(
        m,
        [`${fmt} >/dev/null 2>&1; echo "fmt=$?"`, `/usr/bin/id >/dev/null 2>&1; echo "id=$?"`].join(
          '\n',
        ),
      );
      expect(r.stdout).toMatch(/^fmt=[1-9]/m);
      expect(r.stdout).toMatch(/^id=[1-9]/m);
      expect(lastLaunchWarnings().join('\n')).toContain(`${fmt}: ${fmt} is a symbolic link`);
    });
  });

  it('a link to a file outside every grant is not mounted through a mask either', async () => {
    const h = s.home;
    await planted(
      repoManifest,
      [`mkdir -p ${h}/proj/r4/.git`, `ln -s ${outside}/secret.txt ${h}/proj/r4/.git/config`].join(
        '\n',
      ),
      async () => {
        const r = await session(
          repoManifest,
          [`cat ${h}/proj/r4/.git/config`, `cat ${outside}/secret.txt`, 'true'].join('\n'),
        );
        expect(r.stdout).not.toContain(OUTSIDE);
      },
    );
  });
});
