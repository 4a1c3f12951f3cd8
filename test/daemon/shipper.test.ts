import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAuditConfig } from '../../src/audit/config.js';
import type { AuditLog } from '../../src/audit/log.js';
import { readCursor } from '../../src/audit/sinks/runner.js';
import { syntheticEvents } from '../../src/audit/synthetic.js';
import { ContinuousShipper, type ContinuousSinkStatus } from '../../src/daemon/shipper.js';
import { parseStrictJson } from '../../src/manifest/json.js';
import { openLog } from '../audit/helpers.js';
import { ctx } from '../audit/samples.js';
import { tempDir } from '../helpers.js';

// The daemon's continuous shippers against a real SIEM receiver process (test/fixtures): records
// appended to a real audit log arrive as they are appended; a receiver that is down makes the lag
// grow and be reported while nothing is dropped; a receiver back catches up in order.

const fixture = join(import.meta.dirname, '..', 'fixtures', 'siem-receiver.mjs');
const children: ChildProcess[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function startReceiver(port: number, out: string, env: Record<string, string> = {}) {
  return new Promise<{ port: number; child: ChildProcess }>((resolve, reject) => {
    const child = spawn(process.execPath, [fixture, 'hec', String(port), out, '', 'hec-token'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    });
    children.push(child);
    child.stdout.once('data', (d: Buffer) => resolve({ port: Number(d.toString().trim()), child }));
    child.once('exit', (code) => reject(new Error(`receiver exited ${code ?? ''}`)));
  });
}

function kill(c: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (c.exitCode !== null || c.signalCode !== null) {
      r();
      return;
    }
    c.removeAllListeners('exit');
    c.once('exit', () => r());
    c.kill('SIGKILL');
  });
}

/** Seqs the receiver stored, in the order it stored them. */
const seqsIn = (file: string): number[] =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .slice(0, -1)
        .filter(Boolean)
        .map((l) => (parseStrictJson(l) as { metadata: { sequence: number } }).metadata.sequence)
    : [];

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function hec(name: string, port: number, extra: object = {}): object {
  return {
    name,
    type: 'splunk-hec',
    url: `http://127.0.0.1:${port}`,
    token: 'hec-token',
    batchSize: 20,
    timeoutMs: 2000,
    ...extra,
  };
}

function setup(sinks: object[]): {
  log: AuditLog;
  shipper: (over?: { pollMs?: number }) => ContinuousShipper;
  append: (n: number) => Promise<void>;
  events: string[];
} {
  const stateDir = tempDir();
  const log = openLog(stateDir);
  const config = parseAuditConfig(
    JSON.stringify({
      apiVersion: 'cordon.dev/v1',
      kind: 'AuditConfig',
      retry: { initialMs: 50, maxMs: 400 },
      sinks,
    }),
    'audit.json',
  );
  const next = syntheticEvents(ctx);
  const events: string[] = [];
  const shippers: ContinuousShipper[] = [];
  cleanups.push(async () => {
    for (const s of shippers) await s.stop();
    await log.close();
  });
  return {
    log,
    events,
    shipper: (over = {}) => {
      const s = new ContinuousShipper({
        paths: log.paths,
        config,
        durableSeq: () => log.durableHead.seq,
        // Slow by default: what arrives promptly was woken by kick(), not found by the poll.
        pollMs: over.pollMs ?? 3_600_000,
        onEvent: (sink, what, detail) => events.push(`${sink} ${what} ${detail}`),
      });
      shippers.push(s);
      return s;
    },
    append: async (n) => {
      const s = shippers[shippers.length - 1];
      for (let i = 0; i < n; i++) {
        await log.append(next());
        s?.kick();
      }
    },
  };
}

const one = (s: ContinuousShipper): ContinuousSinkStatus => s.status()[0]!;

describe('ContinuousShipper', () => {
  it('records appended to a real audit log reach the receiver as they are appended, in order', async () => {
    const out = join(tempDir(), 'hec.ndjson');
    const { port } = await startReceiver(0, out);
    const { log, shipper, append } = setup([hec('splunk', port)]);
    const s = shipper();
    s.start();
    expect(one(s)).toMatchObject({ name: 'splunk', delivered: 0, pending: 0, state: 'idle' });
    await append(5);
    await until(() => seqsIn(out).length >= 5, 10_000, 'the first records');
    await append(45);
    const head = log.durableHead.seq;
    expect(head).toBe(50);
    await until(() => one(s).pending === 0 && seqsIn(out).length >= head, 10_000, 'all 50');
    expect(seqsIn(out)).toEqual(range(head));
    const st = one(s);
    expect(st).toMatchObject({ delivered: head, pending: 0, failures: 0, state: 'idle' });
    expect(st.oldestPendingSeconds).toBeUndefined();
    expect(Date.parse(st.lastDeliveredAt ?? '')).toBeGreaterThan(Date.now() - 60_000);
    // The cursor on disk says the same as the status.
    expect(readCursor(log.paths, 'splunk').seq).toBe(head);
  });

  it('a receiver that is down: the lag grows and is reported, appends go on, nothing is dropped; back, it catches up in order', async () => {
    const out = join(tempDir(), 'hec.ndjson');
    const first = await startReceiver(0, out);
    const { log, shipper, append, events } = setup([hec('splunk', first.port)]);
    const s = shipper();
    s.start();
    await append(10);
    await until(() => one(s).delivered === 10, 10_000, 'the first 10');
    await kill(first.child);

    // Appends are durable at once while the sink is down: the writer never waits for a sink.
    await append(30);
    expect(log.durableHead.seq).toBe(40);
    await until(() => one(s).state === 'retrying', 10_000, 'a failed attempt');
    const down = one(s);
    expect(down.delivered).toBe(10);
    expect(down.pending).toBe(30);
    expect(down.lastError).toMatch(/ECONNREFUSED/);
    expect(down.consecutiveFailures).toBeGreaterThan(0);
    expect(down.oldestPendingSeconds).toBeGreaterThanOrEqual(0);
    // Lag in records and in seconds keeps growing while it stays down.
    await sleep(1600);
    await append(10);
    const later = one(s);
    expect(later.pending).toBe(40);
    expect(later.delivered).toBe(10);
    expect(later.oldestPendingSeconds).toBeGreaterThanOrEqual(1);
    expect(later.failures).toBeGreaterThan(down.failures - 1);
    expect(events.some((e) => e.startsWith('splunk failed'))).toBe(true);
    // Nothing moved past what the receiver acknowledged.
    expect(readCursor(log.paths, 'splunk').seq).toBe(10);
    expect(seqsIn(out)).toEqual(range(10));

    await startReceiver(first.port, out);
    const head = log.durableHead.seq;
    await until(() => one(s).pending === 0, 15_000, 'the catch-up');
    expect(seqsIn(out)).toEqual(range(head));
    expect(one(s)).toMatchObject({ delivered: head, consecutiveFailures: 0, state: 'idle' });
  });

  it('stop() waits for the send in flight and leaves the cursor on disk; a new shipper resumes without gap or duplicate', async () => {
    const out = join(tempDir(), 'hec.ndjson');
    // The receiver takes 400 ms to acknowledge each batch, so stop() meets a send in flight.
    const { port } = await startReceiver(0, out, { DELAY_MS: '400' });
    const { log, shipper, append } = setup([hec('splunk', port)]);
    const s = shipper();
    s.start();
    await append(30);
    await until(() => seqsIn(out).length >= 20, 10_000, 'the first batch stored');
    await s.stop();
    const stopped = one(s);
    expect(stopped.state).toBe('stopped');
    // The batch in flight was acknowledged and recorded before stop() returned.
    expect(readCursor(log.paths, 'splunk').seq).toBe(stopped.delivered);
    expect(stopped.delivered).toBe(seqsIn(out).length);
    // After stop, nothing is sent any more, kicks included.
    s.kick();
    await append(5);
    await sleep(600);
    expect(seqsIn(out)).toHaveLength(stopped.delivered);

    const again = shipper();
    again.start();
    await append(1);
    const head = log.durableHead.seq;
    await until(() => one(again).pending === 0, 15_000, 'the rest');
    expect(seqsIn(out)).toEqual(range(head));
  });

  it('stop() during a backoff returns without waiting for the next attempt', async () => {
    const out = join(tempDir(), 'hec.ndjson');
    const { port, child } = await startReceiver(0, out);
    await kill(child);
    const { shipper, append } = setup([hec('splunk', port)]);
    const s = shipper();
    s.start();
    await append(3);
    await until(() => one(s).state === 'retrying', 10_000, 'a failed attempt');
    await s.stop();
    expect(one(s)).toMatchObject({ state: 'stopped', delivered: 0, pending: 3 });
  });

  it('one shipper per sink: a sink whose loop fails (token file missing) is reported and restarted while the other ships', async () => {
    const dir = tempDir();
    const goodOut = join(dir, 'good.ndjson');
    const badOut = join(dir, 'bad.ndjson');
    const good = await startReceiver(0, goodOut);
    const bad = await startReceiver(0, badOut);
    const tokenFile = join(dir, 'hec.token');
    const { log, shipper, append, events } = setup([
      hec('good', good.port),
      hec('bad', bad.port, { token: undefined, tokenFile }),
    ]);
    const s = shipper({ pollMs: 100 });
    s.start();
    await append(25);
    await until(() => s.status()[0]!.pending === 0, 10_000, 'the good sink');
    expect(seqsIn(goodOut)).toEqual(range(25));
    await until(() => s.status()[1]!.state === 'retrying', 10_000, 'the bad sink failing');
    const broken = s.status()[1]!;
    expect(broken.lastError).toContain(tokenFile);
    expect(broken.pending).toBe(25);
    expect(broken.delivered).toBe(0);
    expect(seqsIn(badOut)).toEqual([]);
    // Fixed: the restarted loop delivers everything, from the first record.
    writeFileSync(tokenFile, 'hec-token\n');
    await until(() => s.status()[1]!.pending === 0, 15_000, 'the bad sink recovering');
    expect(seqsIn(badOut)).toEqual(range(log.durableHead.seq));
    expect(s.status()[1]).toMatchObject({ state: 'idle', delivered: 25 });
    expect(events.some((e) => e.startsWith('bad restarted'))).toBe(true);
  });

  it('a kick is cheap: a burst of appends goes out in a few batches, not one request per record', async () => {
    const out = join(tempDir(), 'hec.ndjson');
    const { port } = await startReceiver(0, out);
    const { log, shipper, events } = setup([hec('splunk', port, { batchSize: 500 })]);
    const s = shipper();
    s.start();
    const next = syntheticEvents(ctx, 7);
    // 200 appends, each followed by a kick, without waiting for each to be durable.
    await Promise.all(
      Array.from({ length: 200 }, () => {
        const p = log.append(next());
        s.kick();
        return p;
      }),
    );
    s.kick();
    await until(() => one(s).pending === 0, 10_000, 'the burst');
    expect(seqsIn(out)).toEqual(range(200));
    expect(events.filter((e) => e.startsWith('splunk delivered')).length).toBeLessThanOrEqual(3);
  });
});
