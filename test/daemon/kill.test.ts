import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fileActivityEvent } from '../../src/audit/events.js';
import { clientContext } from '../../src/daemon/client-session.js';
import { DaemonClient, DaemonError } from '../../src/daemon/client.js';
import { EventsResponseSchema, OpenSessionResponseSchema } from '../../src/protocol/daemon.js';
import { BIN, ROOT, sandboxEnv } from '../sandbox/harness.js';

// The durability promise of the endpoint service, tested the hard way: a real daemon, eight
// real client processes (the ClientSession `cordon run` uses) appending events as fast as they
// can, and the daemon SIGKILLed at a random moment, restarted, again and again. An event the
// daemon acknowledged must be in the log after every crash, and every event exactly once in
// the end although clients resend what was not acknowledged. The log verifies after crashes
// and at the end, with completeness proven against a witness file.

const WRITERS = 8;
const ROUNDS = 32;
const WRITER = join(ROOT, 'test/fixtures/daemon-writer.mjs');

const env = sandboxEnv('kill');
const policyDir = join(env.cordonHome, 'policy');
const stateDir = join(env.cordonHome, 'state');
const socket = join(env.dir, 'run', 'd.sock');
const witness = join(env.dir, 'witness.ndjson');
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(env.dir, { recursive: true, force: true });
});

interface Daemon {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  stderr(): string;
}

/** Start the daemon in the foreground, as systemd would, and wait until it serves. */
async function startDaemon(): Promise<Daemon> {
  const child = spawn(
    process.execPath,
    [BIN, 'daemon', '--socket', socket, '--policy-dir', policyDir, '--state-dir', stateDir],
    { env: env.env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(child);
  let err = '';
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('cordond: serving')) resolve();
    });
    void exited.then(() => reject(new Error(`the daemon exited while starting:\n${err}`)));
  });
  return { child, exited, stderr: () => err };
}

interface Writer {
  readonly child: ChildProcess;
  session: string;
  /** Highest client sequence number the daemon acknowledged (all below it too). */
  acked: number;
  final: { issued: number; acked: number; failed: string[] } | undefined;
  readonly done: Promise<void>;
}

function startWriter(manifest: string): Promise<Writer> {
  const child = spawn(process.execPath, [WRITER, socket, manifest, env.home], {
    env: env.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    let buf = '';
    const w: Writer = {
      child,
      session: '',
      acked: 0,
      final: undefined,
      done: new Promise<void>((r) => child.on('exit', () => r())),
    };
    void w.done.then(() => {
      if (w.session === '') reject(new Error(`writer exited: ${err}`));
    });
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('session ')) {
          w.session = line.slice(8);
          resolve(w);
        } else if (line.startsWith('ack ')) w.acked = Number(line.slice(4));
        else if (line.startsWith('{')) w.final = JSON.parse(line) as Writer['final'];
      }
    });
  });
}

/**
 * The log's records as they are on disk, read incrementally: complete lines only (a torn tail
 * left by the crash is cut by the next daemon, and is never an acknowledged record).
 */
class LogReader {
  readonly #offsets = new Map<string, number>();
  /** session id → client seq → times seen. */
  readonly seen = new Map<string, Map<number, number>>();
  records = 0;

  read(): void {
    const segs = join(stateDir, 'audit', 'segments');
    for (const f of readdirSync(segs).sort()) {
      const file = join(segs, f);
      let pos = this.#offsets.get(file) ?? 0;
      const size = statSync(file).size;
      if (size <= pos) continue;
      const buf = Buffer.alloc(size - pos);
      const fd = openSync(file, 'r');
      try {
        readSync(fd, buf, 0, buf.length, pos);
      } finally {
        closeSync(fd);
      }
      const end = buf.lastIndexOf(0x0a) + 1;
      for (const line of buf.subarray(0, end).toString('utf8').split('\n')) {
        if (line === '') continue;
        this.records++;
        const e = (
          JSON.parse(line) as {
            event: { actor?: { session?: { uid?: string } }; unmapped?: { client_seq?: number } };
          }
        ).event;
        const id = e.actor?.session?.uid;
        const seq = e.unmapped?.client_seq;
        if (id === undefined || seq === undefined) continue;
        const m = this.seen.get(id) ?? new Map<number, number>();
        this.seen.set(id, m);
        m.set(seq, (m.get(seq) ?? 0) + 1);
      }
      pos += end;
      this.#offsets.set(file, pos);
    }
  }

  /** Acknowledged numbers missing from the log, and numbers written more than once. */
  check(writers: readonly Writer[], acked: readonly number[]): string[] {
    const problems: string[] = [];
    writers.forEach((w, i) => {
      const m = this.seen.get(w.session) ?? new Map<number, number>();
      const upTo = acked[i] ?? 0;
      let missing = 0;
      for (let s = 1; s <= upTo; s++) if (!m.has(s)) missing++;
      if (missing > 0) problems.push(`writer ${i}: ${missing} acknowledged event(s) missing`);
      for (const [s, n] of m)
        if (n > 1) problems.push(`writer ${i}: event ${s} is in the log ${n} times`);
    });
    return problems;
  }
}

/** `cordon audit verify`: its exit code and what it printed. */
function verify(): { code: number | null; out: string } {
  const r = spawnSync(
    process.execPath,
    [BIN, 'audit', 'verify', '--policy-dir', policyDir, '--state-dir', stateDir],
    { env: env.env, encoding: 'utf8' },
  );
  return { code: r.status, out: r.stdout + r.stderr };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('the endpoint service under SIGKILL', () => {
  it(`loses no acknowledged event and writes none twice: ${WRITERS} writing clients, ${ROUNDS} crashes at random moments, the log verifies`, async () => {
    // Every signed checkpoint also goes to a witness file, so verification proves the log
    // complete (exit 0), not only intact.
    writeFileSync(
      join(policyDir, 'audit.json'),
      JSON.stringify({
        apiVersion: 'cordon.dev/v1',
        kind: 'AuditConfig',
        witness: { path: witness },
      }),
    );
    writeFileSync(witness, '');
    const manifest = env.sign({ commandsAllowed: ['/usr/bin/true'] });
    let daemon = await startDaemon();
    const writers = await Promise.all(Array.from({ length: WRITERS }, () => startWriter(manifest)));
    expect(new Set(writers.map((w) => w.session)).size).toBe(WRITERS);
    const log = new LogReader();
    const verified: number[] = [];
    let acknowledged = 0;

    for (let round = 1; round <= ROUNDS; round++) {
      // Every writer is writing (its acknowledgements move) before the next crash.
      const before = writers.map((w) => w.acked);
      await until(`round ${round}: every writer acknowledged again`, () =>
        writers.every((w, i) => w.acked > (before[i] ?? 0)),
      );
      await sleep(Math.floor(Math.random() * 400));
      daemon.child.kill('SIGKILL');
      await daemon.exited;
      // What each writer had been told was durable before the daemon died.
      const acked = writers.map((w) => w.acked);
      acknowledged = acked.reduce((a, b) => a + b, 0);
      log.read();
      expect(log.check(writers, acked), `round ${round}`).toEqual([]);
      // The crashed log as it is (a torn tail is only a warning), every few rounds.
      if (round % 4 === 0) {
        const v = verify();
        expect(v.code, `round ${round}: ${v.out}`).toBe(0);
        verified.push(round);
      }
      daemon = await startDaemon();
    }

    // The writers finish: every event they issued is acknowledged, then the daemon stops.
    for (const w of writers) w.child.stdin?.end('stop\n');
    await Promise.all(writers.map((w) => w.done));
    const stop = spawnSync(process.execPath, [BIN, 'daemon', 'stop', '--socket', socket], {
      env: env.env,
      encoding: 'utf8',
    });
    expect(stop.status, stop.stderr).toBe(0);
    await daemon.exited;

    const finals = writers.map((w) => w.final);
    for (const f of finals) {
      expect(f?.failed).toEqual([]);
      expect(f?.acked).toBe(f?.issued);
    }
    log.read();
    const issued = finals.map((f) => f?.issued ?? 0);
    expect(log.check(writers, issued)).toEqual([]);
    // Exactly the issued events, no more: nothing beyond them either.
    writers.forEach((w, i) => {
      const m = log.seen.get(w.session);
      expect(m?.size, `writer ${i}`).toBe(issued[i]);
    });
    expect(Math.min(...issued)).toBeGreaterThan(1000);
    const v = verify();
    expect(v.code, v.out).toBe(0);
    expect(v.out).toMatch(/completeness vs witness .*: proven through record \d+/);
    expect(daemon.stderr()).not.toMatch(/internal error/i);
    console.log(
      `kill test: ${ROUNDS} crashes, ${issued.reduce((a, b) => a + b, 0)} events from ${WRITERS} clients (${acknowledged} acknowledged before the last crash), ${log.records} records, verified after crashes ${verified.join(', ')} and at the end`,
    );
  }, 600_000);

  it('acknowledges a batch in order: resends are skipped, an event it cannot store is recorded as refused in its place, a gap is refused after what precedes it', async () => {
    const manifest = env.sign({ commandsAllowed: ['/usr/bin/true'] });
    const daemon = await startDaemon();
    const client = new DaemonClient({ socket, via: 'CORDON_SOCKET' });
    const opened = await client.request(
      'POST',
      '/v1/sessions',
      {
        manifest: readFileSync(manifest).toString('base64'),
        manifestPath: manifest,
        command: ['/usr/bin/true'],
        cwd: '/',
        home: env.home,
      },
      OpenSessionResponseSchema,
    );
    const ev = (n: number): Record<string, unknown> =>
      fileActivityEvent(
        { ...clientContext(), time: Date.now() },
        { activity: 'read', path: `/w/${n}` },
      );
    const send = (events: { seq: number; event: Record<string, unknown> }[]) =>
      client.request(
        'POST',
        `/v1/sessions/${opened.session}/events`,
        { events },
        EventsResponseSchema,
        {
          capability: opened.capability,
        },
      );
    // 2: a class a client may not append (refused by the service); 3: an event the log refuses
    // (it claims a log sequence number of its own).
    const r1 = await send([
      { seq: 1, event: ev(1) },
      { seq: 2, event: { ...ev(2), class_uid: 4001 } },
      { seq: 3, event: { ...ev(3), metadata: { sequence: 7, version: '1.4.0' } } },
      { seq: 4, event: ev(4) },
    ]);
    expect(r1.acked).toBe(4);
    // A resend of what was acknowledged, then new events: only the new ones are written.
    expect((await send([2, 3, 4, 5].map((seq) => ({ seq, event: ev(seq) })))).acked).toBe(5);
    // A gap: refused, but the events before it are durable and acknowledged.
    const gap = await send([
      { seq: 6, event: ev(6) },
      { seq: 8, event: ev(8) },
    ]).catch((e: unknown) => e);
    expect(gap).toBeInstanceOf(DaemonError);
    expect((gap as DaemonError).code).toBe('EVENT_SEQUENCE_GAP');
    expect((await send([6, 7].map((seq) => ({ seq, event: ev(seq) })))).acked).toBe(7);
    daemon.child.kill('SIGTERM');
    await daemon.exited;

    const mine = env
      .events()
      .filter(
        (e) =>
          (e['actor'] as { session?: { uid?: string } } | undefined)?.session?.uid ===
          opened.session,
      )
      .filter(
        (e) => (e['unmapped'] as { client_seq?: number } | undefined)?.client_seq !== undefined,
      );
    const seqs = mine.map((e) => (e['unmapped'] as { client_seq: number }).client_seq);
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7]);
    const refused = (i: number) =>
      (mine[i] as { api?: { operation?: string }; class_uid?: number }) ?? {};
    expect(refused(1).class_uid).toBe(6003);
    expect(refused(1).api?.operation).toMatch(/^event 2 refused: class_uid 4001/);
    expect(refused(2).class_uid).toBe(6003);
    expect(refused(2).api?.operation).toMatch(/^event 3 refused: .*metadata\.sequence/);
    expect(mine[3]?.['class_uid']).toBe(1001);
  });
});
