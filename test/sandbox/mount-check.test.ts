import { spawn } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  openSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planSandbox } from '../../src/sandbox/linux/plan.js';
import { validManifest } from '../helpers.js';
import { ROOT } from './harness.js';

// The launch plans every mount on link-free paths, but a session that is running at the same
// time with a write grant can swap a planned path for a link after the plan and before
// bubblewrap mounts it. The helper (pid 1 inside) checks each mount point before anything else
// runs; these tests make that swap at exactly that moment.
const CREDS = 'https://alice:ghp_swapped_credential@github.com';
let dir: string;
let home: string;
let server: Server;
const socket = (): string => join(dir, 'egress.sock');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cordon-mountcheck-'));
  home = join(dir, 'home');
  mkdirSync(join(home, 'proj/repo/.git'), { recursive: true });
  writeFileSync(join(home, '.git-credentials'), CREDS + '\n');
  writeFileSync(join(home, 'proj/repo/.git/config'), '[core]\n');
  server = createServer();
  await new Promise<void>((r) => server.listen(socket(), r));
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

/** Plan, let `between` change the disk, then run bubblewrap with the plan as cordon run does. */
async function launch(
  between: () => void,
): Promise<{ code: number | null; out: string; err: string; status: string }> {
  const plan = planSandbox({
    manifest: validManifest({
      dataClassification: 'public',
      readPaths: ['~/**'],
      writePaths: ['~/proj/**'],
      commandsAllowed: ['/usr/bin/cat'],
    }),
    home,
    cwd: home,
    command: ['/usr/bin/cat', join(home, 'proj/repo/.git/config')],
    agentRuntimes: [],
    hidden: [],
    helperPath: join(ROOT, 'build/Release/cordon-sandbox'),
    egressDir: dir,
    parentEnv: { PATH: '/usr/bin' },
    session: 'mount-check',
    limits: {},
  });
  between();
  // The files the plan copies into the sandbox follow the six descriptors, as cordon run passes them.
  const copies = plan.copies.map((p) => openSync(p, 'r'));
  const child = spawn('bwrap', plan.bwrapArgs as string[], {
    env: plan.env,
    stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe', ...copies],
  });
  for (const fd of copies) closeSync(fd);
  let out = '';
  let err = '';
  let status = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  // The sandbox closes its ends when it stops; a reset there is expected.
  for (const s of child.stdio) s?.on('error', () => undefined);
  (child.stdio[4] as Readable).on('data', (d: Buffer) => (status += d.toString()));
  (child.stdio[3] as Readable).resume();
  (child.stdio as unknown as (Writable | null)[])[5]?.end('g');
  const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
  return { code, out, err, status };
}

describe('the helper checks every mount point before the agent starts', () => {
  it('runs the agent when nothing changed (control)', async () => {
    const r = await launch(() => undefined);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('[core]');
  });

  it('stops, with nothing run, when a planned mount point became a link to credentials', async () => {
    const config = join(home, 'proj/repo/.git/config');
    const r = await launch(() => {
      unlinkSync(config);
      symlinkSync('../../../.git-credentials', config);
    });
    expect(r.code).toBe(125);
    expect(r.status).toContain('"step":"mounts"');
    expect(r.out).toBe('');
    unlinkSync(config);
    writeFileSync(config, '[core]\n');
  });

  it('stops when a granted directory was swapped for another between plan and mount', async () => {
    const proj = join(home, 'proj');
    const r = await launch(() => {
      // Same path, another directory (the old one kept, so its inode is not reused): the
      // planned device and inode no longer match.
      renameSync(proj, join(dir, 'proj-old'));
      mkdirSync(join(proj, 'repo/.git'), { recursive: true });
      writeFileSync(join(proj, 'repo/.git/config'), '[core]\n');
    });
    expect(r.code).toBe(125);
    expect(r.status).toContain('"step":"mounts"');
    expect(r.out).toBe('');
  });
});
