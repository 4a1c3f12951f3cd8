import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EGRESS_SOCKET_NAME, sessionEgressDir } from '../../src/daemon/paths.js';
import { startUpstreams, type Upstreams } from '../egress/harness.js';
import { validManifest } from '../helpers.js';
import { sandboxEnv, startAgent, type SandboxEnv } from '../sandbox/harness.js';
import {
  request,
  sleep,
  startDaemonProcess,
  stopDaemonProcess,
  until,
  type DaemonProcess,
} from './harness.js';

// A policy change reaching a running session: the manifest or its key revoked, the key removed
// from the trust store, the manifest expiring. Egress is denied at once and the session is
// quarantined, with an event saying why. Times are printed, not asserted (the bench has them).
let s: SandboxEnv;
let up: Upstreams;
let d: DaemonProcess | undefined;
let socket: string;
let env: Record<string, string>;
const latencies: Record<string, number[]> = {};
const answers: Record<string, string[]> = {};

beforeAll(async () => {
  s = sandboxEnv('revoke');
  up = await startUpstreams(s.dir);
  socket = join(s.dir, 'rt', 'd.sock');
  env = { ...s.env, CORDON_SOCKET: socket };
  d = await startDaemonProcess(
    socket,
    ['--policy-dir', join(s.cordonHome, 'policy'), '--state-dir', join(s.cordonHome, 'state')],
    { env: s.env },
  );
});
afterAll(async () => {
  for (const [what, xs] of Object.entries(latencies))
    process.stderr.write(
      `time to deny egress after ${what}: ${xs.map((x) => x.toFixed(0)).join(', ')} ms (${(answers[what] ?? []).join('; ')})\n`,
    );
  await stopDaemonProcess(d);
  await up.close();
  rmSync(s.dir, { recursive: true, force: true });
});

const URL_OF = (): string => `http://127.0.0.1:${up.httpPort}/`;

function sign(extra: Record<string, unknown> = {}): string {
  return s.sign({
    networkScopes: [`http://127.0.0.1:${up.httpPort}`],
    commandsAllowed: ['/usr/bin/bash', '/usr/bin/curl', '/usr/bin/sleep'],
    ...extra,
  });
}

/** One proxied request through a session's egress socket: the status and Cordon's decision. */
function probe(egress: string): Promise<{ status: number; decision: string; at: number }> {
  return new Promise((resolve) => {
    const c = net.connect(egress);
    let t = '';
    c.on('connect', () =>
      c.write(
        `GET ${URL_OF()} HTTP/1.1\r\nHost: 127.0.0.1:${up.httpPort}\r\nConnection: close\r\n\r\n`,
      ),
    );
    c.on('data', (b: Buffer) => (t += b.toString()));
    c.on('error', () => undefined);
    c.on('close', () =>
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(t)?.[1] ?? 0),
        decision: /^x-cordon-decision: (.*)$/im.exec(t)?.[1]?.trim() ?? '',
        at: Date.now(),
      }),
    );
  });
}

interface Running {
  readonly id: string;
  readonly egress: string;
  readonly agent: Awaited<ReturnType<typeof startAgent>>;
  /** Resolves with the first answer through the egress socket that is not a 200. */
  readonly firstDenied: Promise<{ status: number; decision: string; at: number }>;
  stop(): void;
}

/** An agent making requests, and a probe asking through its egress socket every few ms. */
async function running(manifest: string): Promise<Running> {
  const agent = await startAgent(
    env,
    manifest,
    `curl -s -o /dev/null -w 'first=%{http_code}\\n' ${URL_OF()}; echo ready; while true; do curl -s -m 2 -o /dev/null ${URL_OF()}; sleep 0.1; done`,
  );
  expect(agent.stdout()).toContain('first=200');
  const r = await request(socket, 'GET', '/v1/sessions');
  const mine = (r.body['sessions'] as { id: string; state: string }[]).find(
    (x) => x.state === 'running',
  );
  const id = mine?.id ?? '';
  const egress = join(sessionEgressDir(join(s.dir, 'rt'), id), EGRESS_SOCKET_NAME);
  let stopped = false;
  const firstDenied = (async () => {
    for (;;) {
      const p = await probe(egress);
      if (p.status !== 200 || stopped) return p;
      await sleep(5);
    }
  })();
  expect((await probe(egress)).status).toBe(200);
  return { id, egress, agent, firstDenied, stop: () => (stopped = true) };
}

/** After the change: egress denied, the agent killed, `cordon run` out, the event recorded. */
async function expectCutOff(
  r: Running,
  what: string,
  since: number,
  reason: RegExp,
): Promise<void> {
  const denied = await r.firstDenied;
  (latencies[what] ??= []).push(denied.at - since);
  (answers[what] ??= []).push(`${denied.status} ${denied.decision}`);
  // Denied by the proxy (deny-all) or, once the client has ended the session, no proxy at all.
  expect([403, 0]).toContain(denied.status);
  if (denied.status === 403) expect(denied.decision).toMatch(/code=[A-Z_]+/);
  const code = await r.agent.closed;
  expect(code).not.toBe(0);
  expect(r.agent.stderr()).toMatch(/quarantined/);
  const ev = await until(
    () =>
      s
        .events()
        .find(
          (e) =>
            e['status_code'] === 'MANIFEST_NO_LONGER_VALID' &&
            (e['actor'] as { session?: { uid?: string } }).session?.uid === r.id,
        ),
    'the quarantine event',
  );
  expect(ev['status_detail']).toMatch(reason);
  expect(ev['disposition']).toBeDefined();
  // Nothing of the session is left running.
  await until(async () => {
    const l = await request(socket, 'GET', '/v1/sessions');
    return (l.body['sessions'] as { id: string }[]).some((x) => x.id === r.id) ? undefined : true;
  }, 'the session to end');
}

const ORG_KEY = (): string => join(s.cordonHome, 'policy/keys/org.key');
const TRIALS = Number(process.env['CORDON_REVOKE_TRIALS'] ?? 3);

describe('policy changes reaching running sessions', () => {
  it(
    'a revoked manifest: egress denied, the session quarantined, the event says why',
    async () => {
      for (let i = 0; i < TRIALS; i++) {
        const manifest = sign();
        const r = await running(manifest);
        const rv = await s.cordon(
          ['revoke', 'manifest', manifest, '--key', ORG_KEY(), '--reason', `trial ${i}`],
          { env },
        );
        expect(rv.code, rv.stderr).toBe(0);
        const written = statSync(join(s.cordonHome, 'policy/revocations.json')).mtimeMs;
        await expectCutOff(r, 'a manifest revocation', written, /MANIFEST_REVOKED|revoked/i);
      }
    },
    60_000 + TRIALS * 10_000,
  );

  it('a revoked signing key: every session under it is cut off', async () => {
    // A key of its own, so that the other tests' manifests stay valid.
    const ok = async (args: string[]): Promise<void> => {
      const r = await s.cordon(args, { env });
      expect(r.code, r.stderr).toBe(0);
    };
    const keys = join(s.cordonHome, 'policy/keys');
    await ok(['keys', 'generate', '--name', 'k2']);
    await ok([
      'keys',
      'trust',
      '--name',
      'k2',
      '--pub',
      join(keys, 'k2.pub'),
      '--purpose',
      'manifest',
    ]);
    const unsigned = join(s.dir, 'k2-agent.json');
    writeFileSync(
      unsigned,
      JSON.stringify(
        validManifest({
          agentName: 'under-k2',
          version: '2.0.0',
          notAfter: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
          networkScopes: [`http://127.0.0.1:${up.httpPort}`],
          commandsAllowed: ['/usr/bin/bash', '/usr/bin/curl', '/usr/bin/sleep'],
        }),
      ),
    );
    await ok(['manifest', 'sign', unsigned, '--key', join(keys, 'k2.key')]);
    const manifest = join(s.dir, 'k2-agent.signed.json');
    const [r1, r2] = [await running(manifest), await running(manifest)];
    await ok(['revoke', 'key', 'k2', '--key', ORG_KEY(), '--reason', 'leaked']);
    const written = statSync(join(s.cordonHome, 'policy/revocations.json')).mtimeMs;
    await expectCutOff(r1, 'a key revocation', written, /KEY_REVOKED|revoked/i);
    await expectCutOff(r2, 'a key revocation', written, /KEY_REVOKED|revoked/i);
  });

  it('a key removed from the trust store', async () => {
    const manifest = sign();
    const r = await running(manifest);
    const trust = join(s.cordonHome, 'policy/trust.json');
    const t = JSON.parse(readFileSync(trust, 'utf8')) as { keys: { name: string }[] };
    const before = t.keys.length;
    t.keys = t.keys.filter((k) => k.name !== 'sec');
    expect(t.keys.length).toBe(before - 1);
    // As configuration management writes it: beside, then renamed over.
    writeFileSync(`${trust}.new`, JSON.stringify(t, null, 2));
    const at = Date.now();
    renameSync(`${trust}.new`, trust);
    await expectCutOff(r, 'a trust-store change', at, /UNTRUSTED|not trusted|unknown key/i);
  });

  it('a manifest whose notAfter passes during the session', async () => {
    // Re-trust the key the previous test removed.
    const again = await s.cordon(
      [
        'keys',
        'trust',
        '--name',
        'sec',
        '--pub',
        join(s.cordonHome, 'policy/keys/sec.pub'),
        '--purpose',
        'manifest',
      ],
      { env },
    );
    expect(again.code, again.stderr).toBe(0);
    const notAfter = new Date(Math.ceil((Date.now() + 8_000) / 1000) * 1000);
    const manifest = sign({ notAfter: notAfter.toISOString().replace(/\.\d+Z$/, 'Z') });
    const r = await running(manifest);
    expect(Date.now()).toBeLessThan(notAfter.getTime());
    await expectCutOff(r, 'expiry', notAfter.getTime(), /EXPIRED|expired|notAfter/i);
  });
});
