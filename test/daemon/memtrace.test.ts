import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxEnv, type SandboxEnv } from '../sandbox/harness.js';
import { request, startDaemonProcess, stopDaemonProcess, until } from './harness.js';

// CORDON_DAEMON_MEMTRACE: the daemon's memory, once a second, in a form that tells a leak (the
// live heap growing) from V8 or malloc holding on to memory (committed space growing).
let s: SandboxEnv;

beforeAll(() => {
  s = sandboxEnv('memtrace');
});
afterAll(() => {
  rmSync(s.dir, { recursive: true, force: true });
});

interface Line {
  t: number;
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  spaces: Record<string, [number, number]>;
  smaps: { rss: number; anonymous: number; file: number };
  handles: Record<string, number>;
  sessions: number;
}

const lines = (file: string): Line[] =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Line)
    : [];

const dirs = (): string[] => [
  '--policy-dir',
  join(s.cordonHome, 'policy'),
  '--state-dir',
  join(s.cordonHome, 'state'),
];

describe('CORDON_DAEMON_MEMTRACE', () => {
  it('writes where the memory is once a second while the daemon runs, and stops with it', async () => {
    const file = join(s.dir, 'memtrace.jsonl');
    const d = await startDaemonProcess(join(s.dir, 'm.sock'), dirs(), {
      env: { ...s.env, CORDON_DAEMON_MEMTRACE: file },
    });
    try {
      await until(() => (lines(file).length >= 3 ? true : undefined), 'three memtrace lines');
    } finally {
      await stopDaemonProcess(d);
    }
    const got = lines(file);
    for (const [i, l] of got.entries()) {
      // One clock with node's --trace-gc lines: seconds since the process started.
      expect(l.t).toBeGreaterThan(0);
      if (i > 0) expect(l.t).toBeGreaterThan(got[i - 1]?.t ?? Infinity);
      expect(l.rss).toBeGreaterThan(10 * 1024 * 1024);
      expect(l.heapUsed).toBeLessThanOrEqual(l.heapTotal);
      expect(l.arrayBuffers).toBeLessThanOrEqual(l.external);
      // V8's spaces: committed and used, the old and young generations among them.
      expect(l.spaces['old_space']?.[0]).toBeGreaterThan(0);
      expect(l.spaces['new_space']?.[0]).toBeGreaterThan(0);
      // The kernel's view: resident = anonymous + file-backed, and the V8 heap is anonymous.
      expect(l.smaps.rss).toBeGreaterThan(0);
      expect(l.smaps.anonymous + l.smaps.file).toBe(l.smaps.rss);
      expect(l.smaps.anonymous).toBeGreaterThan(l.heapUsed / 2);
      expect(l.sessions).toBe(0);
      expect(Object.values(l.handles).every((n) => Number.isInteger(n) && n > 0)).toBe(true);
    }
    // Gone with the daemon: nothing more is written.
    const n = lines(file).length;
    await new Promise((r) => setTimeout(r, 1500));
    expect(lines(file).length).toBe(n);
  });

  it('a file that cannot be written does not stop the daemon serving', async () => {
    const socket = join(s.dir, 'n.sock');
    const d = await startDaemonProcess(socket, dirs(), {
      env: { ...s.env, CORDON_DAEMON_MEMTRACE: join(s.dir, 'no-such-dir', 'memtrace.jsonl') },
    });
    try {
      await new Promise((r) => setTimeout(r, 1500));
      const r = await request(socket, 'GET', '/v1/status');
      expect(r.status).toBe(200);
      expect(existsSync(join(s.dir, 'no-such-dir'))).toBe(false);
    } finally {
      await stopDaemonProcess(d);
    }
  });
});
