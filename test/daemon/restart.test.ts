import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userSocket } from '../../src/daemon/paths.js';
import { startUpstreams, type Upstreams } from '../egress/harness.js';
import { sandboxEnv, startAgent, type SandboxEnv } from '../sandbox/harness.js';
import {
  request,
  startDaemonProcess,
  stopDaemonProcess,
  until,
  type DaemonProcess,
} from './harness.js';

// Clients against a daemon that is not there, and one killed under a running session and
// started again (as systemd's Restart=always does).
let s: SandboxEnv;
let up: Upstreams;
let manifest: string;
const daemons: DaemonProcess[] = [];

beforeAll(async () => {
  s = sandboxEnv('restart');
  up = await startUpstreams(s.dir);
  mkdirSync(join(s.home, 'Work'));
  manifest = s.sign({
    writePaths: ['~/Work/**'],
    networkScopes: [`http://127.0.0.1:${up.httpPort}`],
    commandsAllowed: ['/usr/bin/bash', '/usr/bin/curl', '/usr/bin/sleep', '/usr/bin/touch'],
  });
});
afterAll(async () => {
  for (const d of daemons) await stopDaemonProcess(d);
  await up.close();
  rmSync(s.dir, { recursive: true, force: true });
});

function daemonArgs(): string[] {
  return ['--policy-dir', join(s.cordonHome, 'policy'), '--state-dir', join(s.cordonHome, 'state')];
}

describe('clients when the daemon is down', () => {
  it('cordon run refuses (125) naming the socket and how to start the daemon; nothing runs', async () => {
    const ran = join(s.home, 'Work/ran');
    const socket = userSocket(s.env, s.home, {
      policyDir: join(s.cordonHome, 'policy'),
      stateDir: join(s.cordonHome, 'state'),
    });
    const r = await s.cordon(['run', '--manifest', manifest, '--', 'touch', ran], {
      env: { ...s.env, CORDON_NO_AUTOSTART: '1' },
    });
    expect(r.code, r.stderr).toBe(125);
    expect(r.stderr).toMatch(/DAEMON_UNREACHABLE/);
    expect(r.stderr).toContain(socket);
    expect(r.stderr).toMatch(/cordon daemon/);
    expect(existsSync(ran)).toBe(false);
    expect(existsSync(socket)).toBe(false);

    // A socket file left by a killed daemon: nobody answers on it, same refusal.
    const stale = join(s.dir, 'stale', 'd.sock');
    const d = await startDaemonProcess(stale, daemonArgs(), { env: s.env });
    d.child.kill('SIGKILL');
    await d.exited;
    expect(existsSync(stale)).toBe(true);
    const r2 = await s.cordon(['run', '--manifest', manifest, '--', 'touch', ran], {
      env: { ...s.env, CORDON_SOCKET: stale },
    });
    expect(r2.code, r2.stderr).toBe(125);
    expect(r2.stderr).toMatch(/DAEMON_UNREACHABLE/);
    expect(r2.stderr).toContain(stale);
    expect(r2.stderr).toMatch(/unset CORDON_SOCKET/);
    expect(existsSync(ran)).toBe(false);
  });
});

describe('a daemon killed under a running session', () => {
  it('cuts its egress at once, the agent runs on, events wait in order, and a restarted daemon takes the session back', async () => {
    // Its own runtime directory: the sandbox hides the daemon's (and all below it).
    const socket = join(s.dir, 'rt', 'd.sock');
    const env = { ...s.env, CORDON_SOCKET: socket };
    const first = await startDaemonProcess(socket, daemonArgs(), { env: s.env });
    daemons.push(first);
    const url = `http://127.0.0.1:${up.httpPort}/`;
    const a = await startAgent(
      env,
      manifest,
      [
        `curl -s -m 5 -o /dev/null -w 'before=%{http_code}\\n' ${url}`,
        'echo ready',
        'while [ ! -e ~/Work/go-1 ]; do sleep 0.05; done',
        `curl -s -m 5 -o /dev/null -w 'down=%{http_code}\\n' ${url}`,
        // Processes started while the daemon is away: their events must arrive, once, in order.
        'for k in 1 2 3; do sleep 1.$((k + 4)); done',
        'echo alive',
        'while [ ! -e ~/Work/go-2 ]; do sleep 0.05; done',
        `curl -s -m 5 -o /dev/null -w 'after=%{http_code}\\n' ${url}`,
      ].join('\n'),
    );
    expect(a.stdout()).toContain('before=200');
    const listed = await request(socket, 'GET', '/v1/sessions');
    const id = (listed.body['sessions'] as { id: string }[])[0]?.id ?? '';
    expect(id).not.toBe('');

    first.child.kill('SIGKILL');
    await first.exited;
    writeFileSync(join(s.home, 'Work/go-1'), '');
    await until(
      () => (a.stdout().includes('alive') ? true : undefined),
      'the agent running on',
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}: ${a.stdout()} ${a.stderr()}`);
    });
    // No route: the proxy died with the daemon; nothing reached the upstream another way.
    expect(a.stdout()).toMatch(/^down=(000|502|503)$/m);
    expect(a.child.exitCode).toBe(null);
    expect(a.stderr()).toMatch(/lost the cordon daemon/);

    const second = await startDaemonProcess(socket, daemonArgs(), { env: s.env });
    daemons.push(second);
    const back = await until(async () => {
      const r = await request(socket, 'GET', '/v1/sessions');
      const mine = (r.body['sessions'] as { id: string; attached: boolean; state: string }[]).find(
        (x) => x.id === id,
      );
      return mine?.attached === true ? mine : undefined;
    }, 'the session re-attached');
    expect(back.state).toBe('running');
    writeFileSync(join(s.home, 'Work/go-2'), '');
    expect(await a.closed, a.stderr()).toBe(0);
    expect(a.stdout()).toContain('after=200');
    expect(a.stderr()).toMatch(/re-attached/);

    // Every event of the session's client: its sequence numbers 1..n, each once, in log order.
    const events = s
      .events()
      .filter((e) => (e['actor'] as { session?: { uid?: string } }).session?.uid === id);
    const seqs = events
      .map((e) => (e['unmapped'] as { client_seq?: number } | undefined)?.client_seq)
      .filter((x): x is number => x !== undefined);
    expect(seqs.length).toBeGreaterThan(3);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    const outage = events
      .map((e) => (e['process'] as { cmd_line?: string } | undefined)?.cmd_line ?? '')
      .filter((c) => /^sleep 1\.[567]$/.test(c));
    expect(outage).toEqual(['sleep 1.5', 'sleep 1.6', 'sleep 1.7']);
    // The session ended normally, and the log verifies.
    expect(events.some((e) => e['activity_name'] === 'Terminate')).toBe(true);
    const verify = await s.cordon(['audit', 'verify'], { env });
    expect(verify.code === 0 || verify.code === 4, verify.stdout + verify.stderr).toBe(true);
    expect(verify.stdout + verify.stderr).not.toMatch(/damage|broken|mismatch/i);
  });
});
