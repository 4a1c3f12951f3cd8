import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRecordLine, readAfter } from '../../src/audit/reader.js';
import { auditPaths } from '../../src/audit/store.js';
import { startUpstreams, type Upstreams } from '../egress/harness.js';
import { validManifest } from '../helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'dist/cli/main.js');
const SOON = new Date(Date.now() + 300 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');
const MIB = 1024 * 1024;
let up: Upstreams;
let demo: string;
let env: Record<string, string>;
/** An upstream that reads whole uploads, counts them, and never answers. */
let sink: http.Server;
let sinkPort = 0;
let sinkReceived = 0;

type Ev = Record<string, unknown>;
const get = (e: Ev, path: string): unknown =>
  path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], e);

function cordon(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function events(): Ev[] {
  const out: Ev[] = [];
  readAfter(auditPaths(join(demo, 'home/state')), 0, (line) => {
    out.push(parseRecordLine(line).event);
    return true;
  });
  return out;
}

function startProxy(manifest: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [
      bin,
      'proxy',
      '--manifest',
      manifest,
      '--listen',
      '127.0.0.1:0',
      '--resolve',
      'app.test=127.0.0.1',
      '--resolve',
      'secure.test=127.0.0.1',
    ],
    { env },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m !== null) resolve({ child, url: m[1] ?? '' });
    });
    child.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${err}`)));
  });
}

const exited = (c: ChildProcess): Promise<unknown> =>
  new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(0) : c.on('exit', r)));

/** The pid of the endpoint service, if one answers. */
function daemonPid(): number | undefined {
  const r = cordon(['daemon', 'status', '--json']);
  return r.status === 0 ? (JSON.parse(r.stdout) as { pid: number }).pid : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(cond: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  demo = mkdtempSync(join(tmpdir(), 'cordon-proxy-crash-'));
  up = await startUpstreams(demo);
  sink = http.createServer((req) => {
    req.on('data', (c: Buffer) => (sinkReceived += c.length));
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  sinkPort = (sink.address() as { port: number }).port;
  env = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: demo,
    CORDON_HOME: join(demo, 'home'),
    // The endpoint service (started on demand by the first client) hosts the proxy.
    XDG_RUNTIME_DIR: join(demo, 'run'),
    CORDON_DAEMON_IDLE_SECONDS: '5',
  };
  for (const args of [
    ['init'],
    ['keys', 'generate', '--name', 'sec'],
    [
      'keys',
      'trust',
      '--name',
      'sec',
      '--pub',
      join(demo, 'home/policy/keys/sec.pub'),
      '--purpose',
      'manifest',
    ],
  ])
    expect(cordon(args).status).toBe(0);
  // Enforcement runs under the organisation's guardrails: one of the examples, enabled.
  copyFileSync(
    join(root, 'examples/guardrails/sensitive-writes.cedar'),
    join(demo, 'home/policy/guardrails/sensitive-writes.cedar'),
  );
  // Traffic is reported every second (the shortest interval allowed), so the crash ends below
  // carry the bytes of the last report.
  mkdirSync(join(demo, 'home/policy'), { recursive: true });
  writeFileSync(
    join(demo, 'home/policy/proxy.json'),
    JSON.stringify({
      apiVersion: 'cordon.dev/v1',
      kind: 'ProxyConfig',
      limits: { reportIntervalMs: 1000 },
    }),
  );
});
afterAll(async () => {
  const pid = daemonPid();
  if (pid !== undefined) {
    cordon(['daemon', 'stop']);
    await until(() => !alive(pid), 10_000);
  }
  sink.closeAllConnections();
  await new Promise<void>((r) => sink.close(() => r()));
  await up.close();
  rmSync(demo, { recursive: true, force: true });
});

describe('the endpoint service hosting a cordon proxy killed with SIGKILL mid-transfer', () => {
  it('a 6 MB plain-HTTP upload and a tunnel that moved 10 MB: the decision was recorded, the restarted service records a crash end with the bytes last reported; the log verifies', async () => {
    const file = join(demo, 'm.json');
    writeFileSync(
      file,
      JSON.stringify(
        validManifest({
          version: '1.0.0',
          notAfter: SOON,
          networkScopes: [
            `http://app.test:${sinkPort}`,
            `http://127.0.0.1:${sinkPort}`,
            `https://secure.test:${up.httpsPort}`,
            `https://127.0.0.1:${up.httpsPort}`,
          ],
        }),
      ),
    );
    const signed = cordon([
      'manifest',
      'sign',
      file,
      '--key',
      join(demo, 'home/policy/keys/sec.key'),
    ]);
    expect(signed.status, signed.stderr).toBe(0);
    const manifest = join(demo, 'm.signed.json');
    const p = await startProxy(manifest);

    const upload = join(demo, 'upload.bin');
    writeFileSync(upload, Buffer.alloc(6 * MIB, 7));
    // curl as an agent runs it: a plain-HTTP upload the server never answers, and an HTTPS
    // download slowed down so that the tunnel is still open when the proxy dies.
    const curls = [
      spawn('curl', [
        '-s',
        '-o',
        '/dev/null',
        '-x',
        p.url,
        '--data-binary',
        `@${upload}`,
        `http://app.test:${sinkPort}/upload`,
      ]),
      spawn('curl', [
        '-s',
        '-o',
        '/dev/null',
        '-x',
        p.url,
        '--cacert',
        up.ca,
        '--limit-rate',
        '4M',
        `https://secure.test:${up.httpsPort}/bytes?n=${200 * MIB}`,
      ]),
    ];
    for (const c of curls) c.on('error', (e) => expect.fail(`curl: ${e.message}`));

    // Wait until the whole upload reached the server and both transfers were reported.
    const reported = (): { x?: Ev; t?: Ev } => {
      const out: { x?: Ev; t?: Ev } = {};
      for (const e of events()) {
        if (e['class_uid'] !== 4001 || e['activity_id'] !== 6) continue;
        if (get(e, 'unmapped.http_request_uid') !== undefined) {
          if ((get(e, 'cumulative_traffic.bytes_out') as number) >= 6 * MIB) out.x = e;
        } else if ((get(e, 'cumulative_traffic.bytes_in') as number) >= 10 * MIB) out.t = e;
      }
      return out;
    };
    await until(() => sinkReceived >= 6 * MIB);
    await until(() => {
      const r = reported();
      return r.x !== undefined && r.t !== undefined;
    });
    // The proxy runs in the endpoint service: that is what crashes.
    const service = daemonPid();
    if (service === undefined) throw new Error('no endpoint service answers');
    expect(service).not.toBe(p.child.pid);
    process.kill(service, 'SIGKILL');
    await until(() => !alive(service), 10_000);
    for (const c of curls) c.kill();
    await Promise.all(curls.map(exited));
    const before = events();
    const { x: xReport, t: tReport } = reported();
    const requestUid = get(xReport!, 'unmapped.http_request_uid');
    const tunnelUid = get(tReport!, 'connection_info.uid');

    // The exchange's decision was durable before anything was forwarded.
    const decision = before.find(
      (e) => e['class_uid'] === 4002 && get(e, 'http_request.uid') === requestUid,
    );
    expect(decision).toMatchObject({ disposition: 'Allowed', activity_name: 'Post' });
    expect(decision?.['traffic']).toBeUndefined();
    expect(
      before.some(
        (e) =>
          e['class_uid'] === 4001 &&
          e['activity_id'] === 1 &&
          get(e, 'connection_info.uid') === tunnelUid,
      ),
    ).toBe(true);

    // The next writer (the restarted service, started by the next client) ends both as
    // ENDED_BY_CRASH with the last report.
    const ps = cordon(['ps', '--json']);
    expect(ps.status, ps.stderr).toBe(0);
    const restarted = daemonPid();
    expect(restarted).toBeDefined();
    expect(restarted).not.toBe(service);
    // The standalone proxy's client waited for the service: the restarted service took its
    // session back (its client is alive), so it is listed again.
    expect(alive(p.child.pid!)).toBe(true);
    expect(
      (JSON.parse(ps.stdout) as { sessions: { kind: string; clientPid: number }[] }).sessions,
    ).toMatchObject([{ kind: 'proxy', clientPid: p.child.pid }]);
    const after = events().slice(before.length);
    const xEnd = after.find(
      (e) => e['class_uid'] === 4002 && get(e, 'http_request.uid') === requestUid,
    );
    expect(xEnd).toMatchObject({
      status_code: 'ENDED_BY_CRASH',
      cumulative_traffic: { bytes_out: get(xReport!, 'cumulative_traffic.bytes_out') },
      actor: { session: { uid: get(decision!, 'actor.session.uid') } },
    });
    expect(get(xEnd!, 'cumulative_traffic.bytes_out')).toBe(6 * MIB);
    const lastTunnelReport = before
      .filter((e) => e['activity_id'] === 6 && get(e, 'connection_info.uid') === tunnelUid)
      .at(-1);
    const tEnd = after.find(
      (e) =>
        e['class_uid'] === 4001 &&
        e['activity_name'] === 'Close' &&
        get(e, 'connection_info.uid') === tunnelUid,
    );
    expect(tEnd).toMatchObject({
      status_code: 'ENDED_BY_CRASH',
      cumulative_traffic: {
        bytes_in: get(lastTunnelReport!, 'cumulative_traffic.bytes_in'),
        bytes_out: get(lastTunnelReport!, 'cumulative_traffic.bytes_out'),
      },
      tls: { sni: 'secure.test' },
    });
    expect(get(tEnd!, 'cumulative_traffic.bytes_in')).toBeGreaterThanOrEqual(10 * MIB);
    // Ended once: the proxy's own end, and a third service, find nothing left open.
    const n = events().length;
    p.child.kill('SIGTERM');
    await exited(p.child);
    const open = (): number =>
      (JSON.parse(cordon(['ps', '--json']).stdout) as { sessions: unknown[] }).sessions.length;
    await until(() => open() === 0);
    const second = daemonPid();
    if (second !== undefined) {
      process.kill(second, 'SIGKILL');
      await until(() => !alive(second), 10_000);
    }
    const third = await startProxy(manifest);
    third.child.kill('SIGTERM');
    await exited(third.child);
    expect(
      events()
        .slice(n)
        .filter((e) => e['status_code'] === 'ENDED_BY_CRASH'),
    ).toEqual([]);

    // Intact (exit 4 only says that no witness proves completeness here).
    const verify = cordon(['audit', 'verify']);
    expect(verify.status, verify.stdout + verify.stderr).toBe(4);
    expect(verify.stdout).toMatch(/chain intact/);
    expect(verify.stdout).not.toMatch(/DAMAGE|BROKEN|FAIL/i);
  }, 120_000);
});
