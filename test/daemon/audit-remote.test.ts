import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxEnv, type SandboxEnv } from '../sandbox/harness.js';
import { startDaemonProcess, stopDaemonProcess, type DaemonProcess } from './harness.js';

// The system service's log is not readable by the users it serves: `cordon audit tail` then
// reads records through the service. Here a daemon named by CORDON_SOCKET stands for it.
let s: SandboxEnv;
let d: DaemonProcess | undefined;
let socket: string;

beforeAll(async () => {
  s = sandboxEnv('audit-remote');
  socket = join(s.dir, 'svc.sock');
  d = await startDaemonProcess(
    socket,
    ['--policy-dir', join(s.cordonHome, 'policy'), '--state-dir', join(s.cordonHome, 'state')],
    { env: s.env },
  );
});
afterAll(async () => {
  await stopDaemonProcess(d);
  rmSync(s.dir, { recursive: true, force: true });
});

describe('audit tail through the endpoint service', () => {
  it('gives the same records as reading the log, filtered the same way', async () => {
    const viaService = { ...s.env, CORDON_SOCKET: socket };
    const emit = await s.cordon(['audit', 'emit-test', '--count', '40'], { env: viaService });
    expect(emit.code, emit.stderr).toBe(0);
    const remote = await s.cordon(['audit', 'tail', '-n', '7', '--json'], { env: viaService });
    expect(remote.code, remote.stderr).toBe(0);
    const local = await s.cordon(['audit', 'tail', '-n', '7', '--json'], { env: s.env });
    expect(local.code, local.stderr).toBe(0);
    const events = (r: { stdout: string }): unknown[] =>
      (JSON.parse(r.stdout) as { events: unknown[] }).events;
    expect(events(remote)).toHaveLength(7);
    expect(events(remote)).toEqual(events(local));
    // --where filters apply to what the service sends.
    const filtered = await s.cordon(['audit', 'tail', '-n', '100', '--where', 'class_uid=1001'], {
      env: viaService,
    });
    expect(filtered.code, filtered.stderr).toBe(0);
    const lines = filtered.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toMatch(/File System Activity/);
  });
});
