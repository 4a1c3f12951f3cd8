import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MAX_EVENT_BYTES } from '../../src/protocol/daemon.js';
import {
  encodeFrame,
  FrameReader,
  MAX_REQUEST_FRAME,
  MAX_RESPONSE_FRAME,
  WIRE_MAGIC,
} from '../../src/protocol/wire.js';
import { EGRESS_SOCKET_NAME, sessionEgressDir } from '../../src/daemon/paths.js';
import { SANDBOX_EGRESS_DIR } from '../../src/sandbox/linux/plan.js';
import { sandboxEnv, type SandboxEnv } from '../sandbox/harness.js';
import {
  request,
  startDaemonProcess,
  stopDaemonProcess,
  until,
  type ApiAnswer,
  type DaemonProcess,
} from './harness.js';

// The framed transport attacked the way a hostile local user would: from this process (root,
// an administrator of the service) where the attack needs no limit to be lifted, and as another
// uid (setpriv, uid 65534) where it is about what an ordinary user may do. The daemon runs as
// its own process; after each attack it must still answer, as the same process.
let s: SandboxEnv;
let d: DaemonProcess | undefined;
let pub: string;
let socket: string;
let manifest: string;
const NOBODY = 65534;

beforeAll(async () => {
  s = sandboxEnv('wire-attack');
  manifest = s.sign({ commandsAllowed: ['/usr/bin/true'] });
  // A directory other users may enter (not write): the socket is opened to them below, as the
  // system service's is.
  pub = mkdtempSync(join(tmpdir(), 'cordon-wire-attack-'));
  chmodSync(pub, 0o755);
  socket = join(pub, 'api.sock');
  d = await startDaemonProcess(
    socket,
    ['--policy-dir', join(s.cordonHome, 'policy'), '--state-dir', join(s.cordonHome, 'state')],
    { env: s.env },
  );
  chmodSync(socket, 0o666);
});
afterAll(async () => {
  await stopDaemonProcess(d);
  rmSync(s.dir, { recursive: true, force: true });
  rmSync(pub, { recursive: true, force: true });
});

/** The daemon still answers, and is the same process. */
async function stillServing(): Promise<void> {
  const r = await request(socket, 'GET', '/v1/status');
  expect(r.status).toBe(200);
  expect(r.body['pid']).toBe(d?.child.pid);
}

/** The daemon's resident memory now, in bytes (from the kernel, not its own account). */
function rss(): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${d?.child.pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN) * 1024;
}

const codeOf = (body: unknown): unknown => (body as Record<string, unknown> | undefined)?.['code'];

/** A framed connection kept open: send frames or bytes, read answers as they come. */
interface Conn {
  readonly sock: net.Socket;
  readonly answers: { id: number; status: number; body: unknown }[];
  send(...frames: (Record<string, unknown> | Buffer)[]): void;
  /** Resolves once `n` answers came (or rejects when the connection closed before). */
  next(n: number): Promise<void>;
  closed: Promise<void>;
}

function connect(opts: { magic?: boolean } = {}): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socket);
    const reader = new FrameReader(1 << 27);
    const answers: Conn['answers'] = [];
    let wake = (): void => undefined;
    let ended = false;
    sock.on('data', (b: Buffer) => {
      for (const f of reader.push(b)) answers.push(f.value as Conn['answers'][number]);
      wake();
    });
    sock.on('error', () => undefined);
    const closed = new Promise<void>((r) =>
      sock.on('close', () => {
        ended = true;
        wake();
        r();
      }),
    );
    const conn: Conn = {
      sock,
      answers,
      closed,
      send(...frames) {
        for (const f of frames) sock.write(Buffer.isBuffer(f) ? f : encodeFrame(f));
      },
      next(n) {
        return new Promise((res, rej) => {
          const check = (): void => {
            if (answers.length >= n) res();
            else if (ended) rej(new Error(`closed after ${answers.length} of ${n} answers`));
            else wake = check;
          };
          check();
        });
      },
    };
    sock.once('connect', () => {
      if (opts.magic !== false) sock.write(WIRE_MAGIC);
      resolve(conn);
    });
    sock.once('error', reject);
  });
}

/** One request on a fresh framed connection. */
async function wireRequest(
  method: string,
  path: string,
  body?: unknown,
  capability?: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const c = await connect();
  c.send({
    id: 1,
    method,
    path,
    ...(capability === undefined ? {} : { capability }),
    ...(body === undefined ? {} : { body }),
  });
  await c.next(1);
  c.sock.destroy();
  const a = c.answers[0];
  return { status: a?.status ?? 0, body: (a?.body ?? {}) as Record<string, unknown> };
}

/** Bytes written raw on a fresh connection; what came back once the daemon closed it. */
function raw(chunks: readonly Buffer[], delayMs = 0): Promise<Buffer> {
  return new Promise((resolve) => {
    const c = net.connect(socket);
    const got: Buffer[] = [];
    c.on('data', (b: Buffer) => got.push(b));
    c.on('error', () => undefined);
    c.on('close', () => resolve(Buffer.concat(got)));
    c.on('connect', () => {
      void (async () => {
        for (const chunk of chunks) {
          if (c.destroyed) return;
          c.write(chunk);
          if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
        }
      })();
    });
  });
}

function openBody(): Record<string, unknown> {
  return {
    manifest: readFileSync(manifest).toString('base64'),
    manifestPath: manifest,
    command: ['/usr/bin/true'],
    cwd: '/',
  };
}

async function openSession(): Promise<{ id: string; cap: string }> {
  const r = await request(socket, 'POST', '/v1/sessions', openBody());
  expect(r.status, r.raw).toBe(200);
  return { id: r.body['session'] as string, cap: r.body['capability'] as string };
}

const DECIDE = { requests: [{ kind: 'exec', path: '/usr/bin/true', argv: ['/usr/bin/true'] }] };

/** A frame header declaring `len` bytes, then `body`. */
function framed(body: string | Buffer, len = Buffer.byteLength(body)): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(len, 0);
  return Buffer.concat([head, Buffer.isBuffer(body) ? body : Buffer.from(body)]);
}

describe('the frame reader', () => {
  it('joins a large frame sent in small pieces once, not once per piece', () => {
    // A status request padded to 8 MiB, in 4 KiB writes (what a hostile client controls).
    const frame = encodeFrame({
      id: 1,
      method: 'GET',
      path: '/v1/status',
      body: { pad: 'x'.repeat(8 * 1024 * 1024) },
    });
    const copied = { bytes: 0 };
    const concat = Buffer.concat.bind(Buffer);
    const spy = vi.spyOn(Buffer, 'concat').mockImplementation((list, total) => {
      const out = concat(list, total);
      copied.bytes += out.length;
      return out;
    });
    const reader = new FrameReader(MAX_REQUEST_FRAME);
    const frames: unknown[] = [];
    try {
      for (let i = 0; i < frame.length; i += 4096)
        frames.push(...reader.push(frame.subarray(i, i + 4096)));
    } finally {
      spy.mockRestore();
    }
    expect(frames).toHaveLength(1);
    expect(reader.held).toBe(0);
    // Joining at every piece copies the frame about 1,000 times over (~8 GiB); once is its size.
    expect(copied.bytes).toBeLessThanOrEqual(2 * frame.length);
  });
});

describe('identity on the framed transport is what HTTP gives', () => {
  it('answers every tricky path, capability and body the same on both transports', async () => {
    const mine = await openSession();
    const other = await openSession();
    const upper = mine.id.toUpperCase();
    const cases: { method: string; path: string; cap?: string; body?: unknown }[] = [
      { method: 'POST', path: `/v1/sessions/${mine.id}/decide`, cap: mine.cap, body: DECIDE },
      // Another session's capability for this session, and this one's for the other.
      { method: 'POST', path: `/v1/sessions/${mine.id}/decide`, cap: other.cap, body: DECIDE },
      { method: 'POST', path: `/v1/sessions/${other.id}/decide`, cap: mine.cap, body: DECIDE },
      // Path tricks: nothing is normalised, so none of them reaches another session.
      {
        method: 'POST',
        path: `/v1/sessions/${mine.id}/../${other.id}/decide`,
        cap: mine.cap,
        body: DECIDE,
      },
      {
        method: 'POST',
        path: `/v1/sessions/${other.id}/./decide`,
        cap: mine.cap,
        body: DECIDE,
      },
      { method: 'POST', path: `/v1/sessions/${mine.id}/decide/`, cap: mine.cap, body: DECIDE },
      { method: 'POST', path: `//v1/sessions/${mine.id}/decide`, cap: mine.cap, body: DECIDE },
      { method: 'POST', path: `/v1/sessions/${upper}/decide`, cap: mine.cap, body: DECIDE },
      {
        method: 'POST',
        path: `/v1/sessions/${mine.id.replace(/^./, (c) => `%${c.charCodeAt(0).toString(16)}`)}/decide`,
        cap: mine.cap,
        body: DECIDE,
      },
      { method: 'POST', path: `/v1/sessions/${mine.id}/DECIDE`, cap: mine.cap, body: DECIDE },
      { method: 'POST', path: `/V1/sessions/${mine.id}/decide`, cap: mine.cap, body: DECIDE },
      // A query string is not part of the route, on either transport.
      {
        method: 'POST',
        path: `/v1/sessions/${mine.id}/decide?session=${other.id}`,
        cap: mine.cap,
        body: DECIDE,
      },
      {
        method: 'POST',
        path: `/v1/sessions/${other.id}/decide?capability=${mine.cap}`,
        cap: mine.cap,
        body: DECIDE,
      },
      // Identities and capabilities in a body count for nothing.
      {
        method: 'POST',
        path: `/v1/sessions/${mine.id}/decide`,
        body: { ...DECIDE, capability: mine.cap, uid: 0 },
      },
      { method: 'GET', path: '/v1/status?uid=0&admin=true' },
      { method: 'GET', path: '/v1/status/' },
      { method: 'GET', path: '/v1/stat%75s' },
    ];
    const seen: string[] = [];
    for (const c of cases) {
      const h = await request(
        socket,
        c.method,
        c.path,
        c.body,
        c.cap === undefined ? {} : { authorization: `Bearer ${c.cap}` },
      );
      const w = await wireRequest(c.method, c.path, c.body, c.cap);
      const summary = (r: { status: number; body: Record<string, unknown> }): unknown[] => [
        r.status,
        codeOf(r.body),
        (r.body['decisions'] as { effect: string }[] | undefined)?.map((x) => x.effect),
      ];
      expect(summary(w), `${c.method} ${c.path} (framed vs HTTP)`).toEqual(summary(h));
      seen.push(summary(w).slice(0, 2).join(' '));
    }
    // Only the session's own path with its own capability is allowed (the query is ignored).
    expect(seen).toEqual([
      '200 ',
      '401 SESSION_UNAUTHORIZED',
      '401 SESSION_UNAUTHORIZED',
      '404 NOT_FOUND',
      '404 NOT_FOUND',
      '404 NOT_FOUND',
      '404 NOT_FOUND',
      '404 NOT_FOUND',
      '404 NOT_FOUND',
      '404 NOT_FOUND',
      '404 NOT_FOUND',
      '200 ',
      '401 SESSION_UNAUTHORIZED',
      '401 SESSION_UNAUTHORIZED',
      '200 ',
      '404 NOT_FOUND',
      '404 NOT_FOUND',
    ]);
    // Paths HTTP cannot carry at all (spaces, line breaks, NUL): not found, and still serving.
    for (const p of [
      `/v1/sessions/${mine.id}/decide HTTP/1.1\r\nAuthorization: Bearer ${mine.cap}`,
      `/v1/sessions/${mine.id}/decide\n`,
      `/v1/status\0`,
      `/v1/sessions/${mine.id}\u2028/decide`,
    ]) {
      const w = await wireRequest('POST', p, DECIDE, mine.cap);
      expect([w.status, codeOf(w.body)], JSON.stringify(p)).toEqual([404, 'NOT_FOUND']);
    }
    await stillServing();
  });
});

describe('every route on both transports', () => {
  it('gives the same status and code for each route with a wrong method, no body or a bad one', async () => {
    // Each transport gets a session of its own (some of these close or quarantine it).
    const run = async (via: 'http' | 'wire'): Promise<string[]> => {
      const one = await openSession();
      const routes: [string, string][] = [
        ['GET', '/v1/status'],
        ['GET', '/v1/sessions'],
        ['POST', '/v1/sessions'],
        ['POST', '/v1/check'],
        ['GET', '/v1/audit/records?after=x'],
        ['POST', '/v1/audit/emit-test'],
        ['POST', '/v1/reload'],
        ['GET', '/v1/stop'],
        ['GET', '/v1'],
        ['GET', '/'],
        ...['decide', 'events', 'state', 'reload', 'quarantine', 'close'].map(
          (a): [string, string] => ['POST', `/v1/sessions/${one.id}/${a}`],
        ),
        ['POST', `/v1/sessions/${one.id}/watch`],
        ['GET', `/v1/sessions/${one.id}/decide`],
        ['GET', `/v1/sessions/${one.id}/nope`],
      ];
      const out: string[] = [];
      for (const [method, path] of routes)
        for (const body of [undefined, { unknownField: 1 }, []]) {
          if (method === 'GET' && body !== undefined) continue;
          const r =
            via === 'http'
              ? await request(socket, method, path, body, { authorization: `Bearer ${one.cap}` })
              : await wireRequest(method, path, body, one.cap);
          out.push(
            `${method} ${path.replace(one.id, 'ID')} ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(codeOf(r.body) ?? '')}`,
          );
        }
      return out;
    };
    const viaHttp = await run('http');
    const viaWire = await run('wire');
    expect(viaWire).toEqual(viaHttp);
    // The admin-only routes answered this administrator, and nothing was let through unchecked.
    expect(viaHttp.filter((l) => / 200 ""$/.test(l)).length).toBeGreaterThan(3);
    await stillServing();
  }, 60_000);
});

describe('transport confusion on one connection', () => {
  it('refuses an HTTP request after frames, and frames after an HTTP request, closing each', async () => {
    const c = await connect();
    c.send({ id: 1, method: 'GET', path: '/v1/status' });
    await c.next(1);
    expect(c.answers[0]?.status).toBe(200);
    // "GET " read as a frame length is over a gigabyte: refused before anything more is read.
    c.sock.write('GET /v1/status HTTP/1.1\r\nHost: cordon\r\n\r\n');
    await c.closed;
    expect(c.answers[1]?.id).toBe(0);
    expect(codeOf(c.answers[1]?.body)).toBe('WIRE_FRAME_TOO_LARGE');

    // HTTP kept alive, then the magic and a frame: a malformed HTTP request, answered and closed.
    const back = await raw([
      Buffer.from('GET /v1/status HTTP/1.1\r\nHost: cordon\r\n\r\n'),
      Buffer.concat([WIRE_MAGIC, encodeFrame({ id: 1, method: 'GET', path: '/v1/status' })]),
    ]);
    const text = back.toString('latin1');
    expect(text.startsWith('HTTP/1.1 200 ')).toBe(true);
    expect(text).toMatch(/HTTP\/1\.1 400 [^]*REQUEST_INVALID/);
    expect(text).not.toContain('"id":1');
    await stillServing();
  });

  it('refuses another version of the magic, and drops a connection that stops inside it', async () => {
    const other = await raw([
      Buffer.concat([
        Buffer.from('\0cordon2', 'latin1'),
        encodeFrame({ id: 1, method: 'GET', path: '/v1/status' }),
      ]),
    ]);
    const answers = new FrameReader(1 << 20).push(other);
    expect(answers.map((a) => codeOf((a.value as { body: unknown }).body))).toEqual([
      'DAEMON_PROTOCOL',
    ]);
    // Half the magic, then nothing: closed by the daemon (after its first-bytes deadline).
    const half = await raw([Buffer.from('\0cor', 'latin1')]);
    expect(half.length).toBe(0);
    await stillServing();
  }, 30_000);

  it('reads the magic and a frame sent one byte at a time', async () => {
    const bytes = Buffer.concat([
      WIRE_MAGIC,
      encodeFrame({ id: 3, method: 'GET', path: '/v1/status' }),
    ]);
    const c = await connect({ magic: false });
    for (const b of bytes) {
      c.sock.write(Buffer.from([b]));
      await new Promise((r) => setTimeout(r, 2));
    }
    await c.next(1);
    expect([c.answers[0]?.id, c.answers[0]?.status]).toEqual([3, 200]);
    c.sock.destroy();
  });

  it('refuses a frame of length 0, takes one of exactly the limit, refuses one byte more', async () => {
    const zero = await connect();
    zero.send(framed(''));
    await zero.closed;
    expect(codeOf(zero.answers[0]?.body)).toBe('WIRE_FRAME_INVALID');

    const prefix = '{"id":5,"method":"GET","path":"/v1/status","body":{"pad":"';
    const suffix = '"}}';
    const pad = 'x'.repeat(MAX_REQUEST_FRAME - prefix.length - suffix.length);
    const exact = await connect();
    exact.send(framed(prefix + pad + suffix));
    await exact.next(1);
    expect([exact.answers[0]?.id, exact.answers[0]?.status]).toEqual([5, 200]);
    exact.sock.destroy();

    // Declared one byte over: refused on its header, before any of it is sent.
    const over = await connect();
    over.send(framed(prefix, MAX_REQUEST_FRAME + 1));
    await over.closed;
    expect(codeOf(over.answers[0]?.body)).toBe('WIRE_FRAME_TOO_LARGE');
    await stillServing();
  });

  it('bounds half frames across connections by the service-wide in-flight limit', async () => {
    // Five connections each send 15 MiB of a 16 MiB frame and stop: 75 MiB would be held.
    const conns: Conn[] = [];
    const piece = Buffer.alloc(15 * 1024 * 1024, 0x20);
    for (let i = 0; i < 5; i++) {
      const c = await connect();
      c.send(framed(Buffer.alloc(0), 16 * 1024 * 1024), piece);
      conns.push(c);
    }
    const refused = await until(
      () => conns.find((c) => c.answers.length > 0),
      'a connection refused for the service-wide bound',
    );
    expect(codeOf(refused.answers[0]?.body)).toBe('WIRE_FRAME_TOO_LARGE');
    expect(String((refused.answers[0]?.body as Record<string, unknown>)['message'])).toMatch(
      /too many large bodies/,
    );
    await stillServing();
    for (const c of conns) c.sock.destroy();
    // The bound is given back when they go: a large frame is read again.
    const prefix = '{"id":1,"method":"GET","path":"/v1/status","body":{"pad":"';
    const big = await connect();
    big.send(framed(prefix + 'x'.repeat(15 * 1024 * 1024) + '"}}'));
    await big.next(1);
    expect(big.answers[0]?.status).toBe(200);
    big.sock.destroy();
  }, 60_000);
});

describe('a framed connection that never pauses', () => {
  it('is not cut off when its frames follow each other for longer than one frame’s deadline', async () => {
    // Every write ends inside a frame, so after every read the daemon holds the start of the
    // next: for 12 s, never an empty buffer (each frame itself is finished at once).
    const frames = Array.from({ length: 121 }, (_, i) =>
      encodeFrame({ id: i + 1, method: 'GET', path: '/v1/status' }),
    );
    const c = await connect();
    const half = (f: Buffer | undefined): number => Math.floor((f?.length ?? 0) / 2);
    c.send(frames[0]?.subarray(0, half(frames[0])) ?? Buffer.alloc(0));
    for (let i = 0; i < frames.length - 1; i++) {
      await new Promise((r) => setTimeout(r, 100));
      if (c.sock.destroyed) break;
      const f = frames[i] ?? Buffer.alloc(0);
      const g = frames[i + 1] ?? Buffer.alloc(0);
      c.send(Buffer.concat([f.subarray(half(f)), g.subarray(0, half(g))]));
    }
    const last = frames[frames.length - 1] ?? Buffer.alloc(0);
    c.send(last.subarray(half(last)));
    await c.next(frames.length);
    expect(c.answers.filter((a) => a.status === 200)).toHaveLength(frames.length);
    expect(c.sock.destroyed).toBe(false);
    c.sock.destroy();
  }, 60_000);
});

describe('what a connection holds after a large frame', () => {
  it('does not pin a large frame read behind the first bytes of the next', async () => {
    // Each connection sends a 16 MiB request, then 2 bytes of another and waits: the service
    // holds 2 bytes for each (its account says so), not the 16 MiB the bytes came in with.
    const prefix = '{"id":1,"method":"GET","path":"/v1/status","body":{"pad":"';
    const frame = framed(prefix + 'x'.repeat(16 * 1024 * 1024 - prefix.length - 3) + '"}}');
    const N = 24;
    const before = rss();
    const conns: Conn[] = [];
    for (let i = 0; i < N; i++) {
      const c = await connect();
      c.send(Buffer.concat([frame, Buffer.from([0, 0])]));
      await c.next(1);
      expect(c.answers[0]?.status).toBe(200);
      conns.push(c);
    }
    await stillServing();
    const grown = rss() - before;
    for (const c of conns) c.sock.destroy();
    expect(grown).toBeLessThan((N * 16 * 1024 * 1024) / 2);
    await stillServing();
  }, 120_000);
});

describe('the size of an event, as the service writes it', () => {
  it('refuses an event sent small that is over the limit once written, on both transports', async () => {
    // `1e20` is 4 bytes sent and 21 written: a body under the limit, an event five times over.
    const count = Math.floor((MAX_EVENT_BYTES - 1024) / 5);
    const event = `{"class_uid":1007,"unmapped":{"n":[${'1e20,'.repeat(count - 1)}1e20]}}`;
    expect(Buffer.byteLength(event)).toBeLessThan(MAX_EVENT_BYTES);
    expect(JSON.stringify(JSON.parse(event)).length).toBeGreaterThan(4 * MAX_EVENT_BYTES);
    for (const via of ['http', 'wire'] as const) {
      const one = await openSession();
      const head = await request(socket, 'GET', '/v1/status');
      const after = (head.body['log'] as { seq: number }).seq;
      const body = `{"events":[{"seq":1,"event":${event}}]}`;
      const path = `/v1/sessions/${one.id}/events`;
      let answer: { status: number; body: unknown };
      if (via === 'http') {
        const text = (
          await raw([
            Buffer.from(
              `POST ${path} HTTP/1.1\r\nHost: cordon\r\nAuthorization: Bearer ${one.cap}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
            ),
          ])
        ).toString('utf8');
        answer = {
          status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]),
          body: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as unknown,
        };
      } else {
        const c = await connect();
        c.send(
          framed(
            `{"id":1,"method":"POST","path":"${path}","capability":"${one.cap}","body":${body}}`,
          ),
        );
        await c.next(1);
        c.sock.destroy();
        answer = c.answers[0] ?? { status: 0, body: {} };
      }
      // Acknowledged (the client's sequence goes on) and recorded as refused, not as sent.
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      const page = await request(socket, 'GET', `/v1/audit/records?after=${after}&limit=100`);
      const records = page.body['records'] as string[];
      expect(records.length).toBeGreaterThan(0);
      for (const r of records) expect(Buffer.byteLength(r), via).toBeLessThan(MAX_EVENT_BYTES);
      expect(records.some((r) => r.includes('event 1 refused'))).toBe(true);
    }
    await stillServing();
  }, 120_000);
});

describe('large records read through the service', () => {
  it('pages them so that every reader of the log can get past them', async () => {
    // A session's client (any user, for its own session) appends ten events of 7 MiB each.
    const one = await openSession();
    const pad = 'x'.repeat(7 * 1024 * 1024);
    for (let seq = 1; seq <= 10; seq++) {
      const r = await request(
        socket,
        'POST',
        `/v1/sessions/${one.id}/events`,
        { events: [{ seq, event: { class_uid: 1007, unmapped: { pad } } }] },
        { authorization: `Bearer ${one.cap}` },
      );
      expect(r.status, r.raw.slice(0, 300)).toBe(200);
    }
    const head = await request(socket, 'GET', '/v1/status');
    const last = (head.body['log'] as { seq: number }).seq;
    // One page as the framed client asks for it fits in a frame it accepts, and says where to
    // go on from.
    const c = await connect();
    c.send({
      id: 1,
      method: 'GET',
      path: `/v1/audit/records?after=${Math.max(0, last - 12)}&limit=5000`,
    });
    await c.next(1);
    c.sock.destroy();
    const page = c.answers[0]?.body as { records: string[]; next: number; head: number };
    expect(c.answers[0]?.status, JSON.stringify(c.answers[0]).slice(0, 300)).toBe(200);
    expect(page.records.length).toBeGreaterThan(0);
    expect(page.records.length).toBeLessThan(10);
    expect(page.next).toBeLessThan(page.head);
    expect(Buffer.byteLength(JSON.stringify(c.answers[0]))).toBeLessThan(MAX_RESPONSE_FRAME);
    // `cordon audit tail` through the service reads past them.
    const tail = await s.cordon(['audit', 'tail', '-n', '3', '--json'], {
      env: { ...s.env, CORDON_SOCKET: socket },
    });
    expect(tail.code, tail.stderr).toBe(0);
    expect((JSON.parse(tail.stdout) as { events: unknown[] }).events).toHaveLength(3);
    await stillServing();
  }, 180_000);
});

describe('a client that never reads its answers', () => {
  /** Records enough that one page of them is a few megabytes. */
  async function bigPages(): Promise<{ path: string; bytes: number }> {
    const head = await request(socket, 'GET', '/v1/status');
    const after = (head.body['log'] as { seq: number }).seq;
    const r = await request(socket, 'POST', '/v1/audit/emit-test', { count: 4000 });
    expect(r.status, r.raw).toBe(200);
    const path = `/v1/audit/records?after=${after}&limit=4000`;
    const page = await request(socket, 'GET', path);
    expect(page.status).toBe(200);
    expect(page.raw.length).toBeGreaterThan(1024 * 1024);
    return { path, bytes: page.raw.length };
  }

  it('on the framed transport, the service stops reading its requests and holds little', async () => {
    const { path, bytes: pageBytes } = await bigPages();
    const N = 200;
    const before = rss();
    const c = await connect();
    // Each small request asks for a page of megabytes; none of the answers is read.
    c.sock.pause();
    c.send(
      Buffer.concat(
        Array.from({ length: N }, (_, i) => encodeFrame({ id: i + 1, method: 'GET', path })),
      ),
    );
    // Another caller is answered, after the daemon took in what it would of those requests.
    await stillServing();
    const grown = rss() - before;
    // Unbounded, the service would hold N pages (hundreds of megabytes) for this one connection.
    expect(N * pageBytes).toBeGreaterThan(300 * 1024 * 1024);
    expect(grown).toBeLessThan(120 * 1024 * 1024);
    // Once the client reads, every request is answered.
    c.sock.resume();
    await c.next(N);
    expect(new Set(c.answers.map((a) => a.id)).size).toBe(N);
    expect(c.answers.every((a) => a.status === 200)).toBe(true);
    c.sock.destroy();
    await stillServing();
  }, 120_000);

  it('over HTTP, pipelined requests are held back the same way', async () => {
    const { path } = await bigPages();
    const N = 200;
    const before = rss();
    const sock = net.connect(socket);
    await new Promise((r) => sock.once('connect', r));
    sock.pause();
    sock.write(`GET ${path} HTTP/1.1\r\nHost: cordon\r\n\r\n`.repeat(N));
    await stillServing();
    expect(rss() - before).toBeLessThan(120 * 1024 * 1024);
    sock.destroy();
    await stillServing();
  }, 120_000);
});

describe('watch streams on the framed transport', () => {
  it('carries one stream per connection, as HTTP does; more are refused 429', async () => {
    const one = await openSession();
    const c = await connect();
    const watch = (id: number): Record<string, unknown> => ({
      id,
      method: 'GET',
      path: `/v1/sessions/${one.id}/watch`,
      capability: one.cap,
    });
    c.send(watch(1), watch(2), watch(3));
    await c.next(3);
    const byId = (id: number): { status: number; body: unknown }[] =>
      c.answers.filter((a) => a.id === id);
    expect(byId(1).map((a) => (a.body as Record<string, unknown>)['type'])).toEqual(['attached']);
    for (const id of [2, 3]) {
      expect(byId(id)).toHaveLength(1);
      expect([byId(id)[0]?.status, codeOf(byId(id)[0]?.body)]).toEqual([429, 'DAEMON_BUSY']);
    }
    // Ordinary requests go on beside the stream.
    c.send({ id: 4, method: 'GET', path: '/v1/status' });
    await until(() => (byId(4).length > 0 ? true : undefined), 'the status answer');
    expect(byId(4)[0]?.status).toBe(200);
    // A quarantine reaches the one stream, once.
    const q = await request(socket, 'POST', `/v1/sessions/${one.id}/quarantine`, {
      reason: 'test',
    });
    expect(q.status, q.raw).toBe(200);
    await until(
      () => (byId(1).some((a) => codeOf(a.body) === 'SESSION_QUARANTINED') ? true : undefined),
      'the quarantine order on the stream',
    );
    expect(c.answers.filter((a) => codeOf(a.body) === 'SESSION_QUARANTINED')).toHaveLength(1);
    c.sock.destroy();
    await stillServing();
  });

  it('ends a stream whose client half-closes, and keeps serving', async () => {
    const one = await openSession();
    const c = await connect();
    c.send({ id: 1, method: 'GET', path: `/v1/sessions/${one.id}/watch`, capability: one.cap });
    await c.next(1);
    c.sock.end();
    // The daemon ends its side too: the connection does not linger half open.
    await c.closed;
    const q = await request(socket, 'POST', `/v1/sessions/${one.id}/quarantine`, {
      reason: 'after the stream went',
    });
    expect(q.status, q.raw).toBe(200);
    await stillServing();
  });
});

/** Run a script as uid 65534 (no account, no groups): an ordinary local user. */
function asNobody(script: string, args: string[]): Promise<{ code: number | null; out: string }> {
  const file = join(pub, `attack-${Math.random().toString(36).slice(2)}.cjs`);
  writeFileSync(file, script, { mode: 0o644 });
  return new Promise((resolve, reject) => {
    const child = spawn(
      'setpriv',
      [
        `--reuid=${NOBODY}`,
        `--regid=${NOBODY}`,
        '--clear-groups',
        '--',
        process.execPath,
        file,
        socket,
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' } },
    );
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

// A tiny framed client in plain CommonJS (the uid it runs as cannot read the worktree).
const CLIENT = `
const net = require('node:net');
const MAGIC = Buffer.from('\\0cordon1', 'latin1');
function frame(v) {
  const j = Buffer.from(JSON.stringify(v));
  const h = Buffer.alloc(4);
  h.writeUInt32BE(j.length);
  return Buffer.concat([h, j]);
}
function conn(path, magic = true) {
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    let buf = Buffer.alloc(0);
    const waiters = [];
    s.answers = [];
    s.raw = '';
    s.on('data', (b) => {
      s.raw += b.toString('latin1');
      buf = Buffer.concat([buf, b]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const n = buf.readUInt32BE(0);
        try { s.answers.push(JSON.parse(buf.subarray(4, 4 + n).toString())); } catch { break; }
        buf = buf.subarray(4 + n);
      }
      for (const w of waiters.splice(0)) w();
    });
    s.gone = new Promise((r) => s.on('close', () => { for (const w of waiters.splice(0)) w(); r(); }));
    s.errors = [];
    s.on('error', (e) => s.errors.push(e.code));
    s.answer = (n) => new Promise((r) => {
      const check = () => (s.answers.length >= n || s.destroyed ? r() : waiters.push(check));
      check();
    });
    s.once('connect', () => { if (magic) s.write(MAGIC); resolve(s); });
    s.once('error', reject);
  });
}
`;

describe('an ordinary user (another uid) on the framed transport', () => {
  it('holds at most 512 connections, framed or idle after the magic; one more is refused at once', async () => {
    const r = await asNobody(
      CLIENT +
        `
(async () => {
  const path = process.argv[2];
  const open = [];
  // 512 framed connections, each proven counted by an answer; half then sit idle forever.
  for (let i = 0; i < 512; i++) {
    const s = await conn(path);
    if (i % 2 === 0) { s.write(frame({ id: 1, method: 'GET', path: '/v1/status' })); await s.answer(1); }
    open.push(s);
  }
  // The next is answered 429 and closed by the daemon, before it says a word.
  const more = await conn(path, false);
  await more.gone;
  console.log('extra ' + JSON.stringify(more.raw.split('\\r\\n')[0]) + ' ' + (more.raw.includes('DAEMON_BUSY') ? 'busy' : 'not-busy') + ' ' + more.errors.join());
  console.log('still-open ' + open.filter((s) => !s.destroyed).length);
  for (const s of open) s.destroy();
  await Promise.all(open.map((s) => s.gone));
  // Given back when they close: a new connection is served.
  await new Promise((r) => setTimeout(r, 200));
  const again = await conn(path);
  again.write(frame({ id: 9, method: 'GET', path: '/v1/status' }));
  await again.answer(1);
  console.log('again ' + again.answers[0].id + ' ' + again.answers[0].status);
  again.destroy();
})().catch((e) => { console.log('error ' + e.message); process.exit(1); });
`,
      [],
    );
    expect(r.code, r.out).toBe(0);
    expect(r.out, d?.log()).toContain('extra "HTTP/1.1 429 Too Many Requests" busy');
    expect(r.out).toContain('still-open 512');
    expect(r.out).toContain('again 9 200');
    await stillServing();
  }, 120_000);

  it('records its own uid and pid on its events, whatever they claim', async () => {
    const r = await asNobody(
      CLIENT +
        `
(async () => {
  const [path, manifest, manifestPath] = process.argv.slice(2);
  const s = await conn(path);
  s.write(frame({ id: 1, method: 'POST', path: '/v1/sessions',
    body: { manifest, manifestPath, command: ['/usr/bin/true'], cwd: '/' } }));
  await s.answer(1);
  const open = s.answers[0];
  if (open.status !== 200) { console.log('open ' + JSON.stringify(open)); process.exit(1); }
  const { session, capability } = open.body;
  s.write(frame({ id: 2, method: 'POST', path: '/v1/sessions/' + session + '/events', capability,
    body: { events: [{ seq: 1, event: { class_uid: 1007, activity_id: 1,
      actor: { user: { uid: '0', name: 'root' }, process: { pid: 1, name: 'init' }, session: { uid: 'other' } },
      unmapped: { marker: 'claims-root' } } }] } }));
  await s.answer(2);
  s.write(frame({ id: 3, method: 'GET', path: '/v1/audit/records?after=0&limit=10000' }));
  await s.answer(3);
  const mine = s.answers[2].body.records.map((l) => JSON.parse(l)).filter((x) => JSON.stringify(x).includes('claims-root'));
  for (const rec of mine) console.log('recorded ' + JSON.stringify(rec.event.actor));
  console.log('me ' + process.pid + ' ' + session);
  s.write(frame({ id: 4, method: 'POST', path: '/v1/sessions/' + session + '/close', capability, body: {} }));
  await s.answer(4);
  s.destroy();
})().catch((e) => { console.log('error ' + e.message); process.exit(1); });
`,
      [readFileSync(manifest).toString('base64'), manifest],
    );
    expect(r.code, r.out).toBe(0);
    const me = /^me (\d+) (\S+)$/m.exec(r.out);
    const recorded = [...r.out.matchAll(/^recorded (.*)$/gm)].map(
      (x) => JSON.parse(x[1] ?? '{}') as Record<string, { uid?: string; pid?: number }>,
    );
    expect(recorded).toHaveLength(1);
    expect(recorded[0]?.['user']?.uid).toBe(String(NOBODY));
    expect(recorded[0]?.['process']?.pid).toBe(Number(me?.[1]));
    expect(recorded[0]?.['session']?.uid).toBe(me?.[2]);
    await stillServing();
  }, 60_000);

  it('gains nothing from another user’s capability, a body naming uid 0, or admin routes', async () => {
    const root = await openSession();
    const r = await asNobody(
      CLIENT +
        `
(async () => {
  const [path, id, cap] = process.argv.slice(2);
  const s = await conn(path);
  const reqs = [
    { id: 1, method: 'POST', path: '/v1/sessions/' + id + '/decide', capability: cap,
      body: { requests: [{ kind: 'exec', path: '/usr/bin/true', argv: ['/usr/bin/true'] }] } },
    { id: 2, method: 'POST', path: '/v1/sessions/' + id + '/events', capability: cap,
      body: { events: [{ seq: 1, event: { class_uid: 1007, actor: { user: { uid: '0' } } } }], uid: 0 } },
    { id: 3, method: 'POST', path: '/v1/sessions/' + id + '/close', capability: cap, body: { uid: 0 } },
    { id: 4, method: 'POST', path: '/v1/sessions/' + id + '/quarantine', body: { reason: 'x' } },
    { id: 10, method: 'POST', path: '/v1/sessions/' + id + '/quarantine', body: { uid: 0, reason: 'x' } },
    { id: 11, method: 'GET', path: '/v1/sessions/' + id + '/watch', capability: cap },
    { id: 5, method: 'POST', path: '/v1/reload', body: { uid: 0, admin: true } },
    { id: 6, method: 'POST', path: '/v1/stop', body: { uid: 0 } },
    { id: 7, method: 'POST', path: '/v1/audit/emit-test', body: { count: 1 } },
    { id: 8, method: 'GET', path: '/v1/sessions?uid=0' },
    { id: 9, method: 'GET', path: '/v1/status' },
  ];
  for (const q of reqs) s.write(frame(q));
  await s.answer(reqs.length);
  for (const a of s.answers.sort((x, y) => x.id - y.id))
    console.log('answer ' + a.id + ' ' + a.status + ' ' + (a.body.code ?? '') +
      (a.id === 8 ? ' root-listed=' + a.body.sessions.some((x) => x.id === id) : '') +
      (a.id === 9 ? ' caller=' + a.body.caller.uid + ':' + a.body.caller.admin : ''));
  s.destroy();
})().catch((e) => { console.log('error ' + e.message); process.exit(1); });
`,
      [root.id, root.cap],
    );
    expect(r.code, r.out).toBe(0);
    for (const line of [
      'answer 1 401 SESSION_UNAUTHORIZED',
      'answer 2 401 SESSION_UNAUTHORIZED',
      'answer 3 401 SESSION_UNAUTHORIZED',
      'answer 4 404 SESSION_NOT_FOUND',
      'answer 5 403 DAEMON_FORBIDDEN',
      'answer 6 403 DAEMON_FORBIDDEN',
      'answer 7 403 DAEMON_FORBIDDEN',
      'answer 8 200  root-listed=false',
      `answer 9 200  caller=${NOBODY}:false`,
      'answer 10 400 REQUEST_INVALID',
      'answer 11 401 SESSION_UNAUTHORIZED',
    ])
      expect(r.out).toContain(line);
    // The session is untouched: its own client still decides, and it is not quarantined.
    const mine: ApiAnswer = await request(
      socket,
      'POST',
      `/v1/sessions/${root.id}/decide`,
      DECIDE,
      { authorization: `Bearer ${root.cap}` },
    );
    expect(mine.status, mine.raw).toBe(200);
    const listed = await request(socket, 'GET', '/v1/sessions');
    const info = (listed.body['sessions'] as { id: string; quarantinedAt?: string }[]).find(
      (x) => x.id === root.id,
    );
    expect(info).toBeDefined();
    expect(info?.quarantinedAt).toBeUndefined();
    await stillServing();
  }, 60_000);
});

describe('a sandboxed agent and the service', () => {
  it('finds neither the service’s socket, another session’s egress nor a descriptor to either, and cannot make a Unix socket', async () => {
    const m = s.sign({
      commandsAllowed: ['/usr/bin/bash', '/usr/bin/ls', '/usr/bin/readlink', '/usr/bin/perl'],
    });
    // This file's daemon (named by CORDON_SOCKET; its socket is in a directory others may enter).
    const apiSocket = socket;
    const runtime = pub;
    // Another session of the same user is open, with its egress directory in the service's
    // runtime directory: the agent sees its own session's directory only.
    const other = await openSession();
    const otherDir = sessionEgressDir(pub, other.id);
    expect(existsSync(join(otherDir, EGRESS_SOCKET_NAME))).toBe(true);
    const r = await s.cordon(
      [
        'run',
        '--manifest',
        m,
        '--',
        'bash',
        '-c',
        [
          // Only shell builtins and the allowed commands: every descriptor the agent holds.
          'for f in /proc/self/fd/*; do echo "fd ${f##*/} $(readlink "$f")"; done',
          `[ -e ${apiSocket} ] && echo api-socket-visible || echo api-socket-hidden`,
          `perl -MSocket -e 'if (socket(my $s, PF_UNIX, SOCK_STREAM, 0)) { print "unix-socket: ok\\n" } else { print "unix-socket: $!\\n" }'`,
          // A connected pair is the one Unix socket allowed: connect() on it does not reach a path.
          `perl -MSocket -e 'socketpair(my $a, my $b, AF_UNIX, SOCK_STREAM, 0) or die; if (connect($a, pack_sockaddr_un("${apiSocket}"))) { print "pair-connect: ok\\n" } else { print "pair-connect: $!\\n" }'`,
          `for f in ${runtime}/* ${runtime}/.[!.]*; do [ -e "$f" ] && echo "runtime-entry: $f"; done`,
          `[ -e ${otherDir} ] && echo other-session-visible || echo other-session-hidden`,
          `for f in ${SANDBOX_EGRESS_DIR}/* ${SANDBOX_EGRESS_DIR}/.[!.]*; do [ -e "$f" ] && echo "egress-entry: $f"; done`,
          'echo done',
        ].join('\n'),
      ],
      { env: { ...s.env, CORDON_SOCKET: socket } },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('done');
    expect(r.stdout).toContain('api-socket-hidden');
    expect(r.stdout).toContain('other-session-hidden');
    // Nothing of the service's runtime directory; of its own session, the egress socket only.
    expect(r.stdout).not.toMatch(/^runtime-entry:/m);
    expect([...r.stdout.matchAll(/^egress-entry: (.*)$/gm)].map((x) => x[1])).toEqual([
      join(SANDBOX_EGRESS_DIR, EGRESS_SOCKET_NAME),
    ]);
    expect(r.stdout).toMatch(/^unix-socket: Address family not supported/m);
    expect(r.stdout).toMatch(/^pair-connect: (No such file|Transport endpoint is already)/m);
    // No descriptor beyond stdio is a socket (the run client's connections to the service are
    // not inherited).
    const fds = [...r.stdout.matchAll(/^fd (\d+) (.*)$/gm)].map((x) => [Number(x[1]), x[2]]);
    expect(fds.length).toBeGreaterThan(2);
    expect(fds.filter(([n, t]) => Number(n) > 2 && String(t).startsWith('socket:'))).toEqual([]);
  }, 120_000);
});
