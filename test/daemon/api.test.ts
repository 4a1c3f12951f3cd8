import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileActivityEvent } from '../../src/audit/events.js';
import { MAX_BODY_BYTES } from '../../src/protocol/daemon.js';
import { encodeFrame, FrameReader, WIRE_MAGIC } from '../../src/protocol/wire.js';
import { BIN, sandboxEnv, type SandboxEnv } from '../sandbox/harness.js';
import {
  exec,
  request,
  startEnvDaemon,
  stopDaemonProcess,
  type ApiAnswer,
  type DaemonProcess,
} from './harness.js';

// Hostile callers on the local API. The daemon runs as its own process (as systemd or a client
// would start it); every attack is followed by a status request that must still be answered.
let s: SandboxEnv;
let d: DaemonProcess | undefined;
let socket: string;
let manifest: string;

beforeAll(async () => {
  s = sandboxEnv('api');
  manifest = s.sign({ commandsAllowed: ['/usr/bin/true'] });
  ({ daemon: d, socket } = await startEnvDaemon(s));
});
afterAll(async () => {
  await stopDaemonProcess(d);
  rmSync(s.dir, { recursive: true, force: true });
});

/** Write raw bytes on a fresh connection; resolve with everything the daemon sent back. */
function raw(
  chunks: readonly (string | Buffer)[],
  opts: { delayMs?: number; end?: boolean } = {},
): Promise<{ data: string; closedBy: 'server' | 'client' }> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let data = '';
    let done = false;
    c.on('data', (b: Buffer) => (data += b.toString('latin1')));
    c.on('error', (e: Error & { code?: string }) => {
      // The daemon may close while bytes are still on the way: what it answered counts.
      if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e);
    });
    c.on('close', () => {
      done = true;
      resolve({ data, closedBy: 'server' });
    });
    c.on('connect', () => {
      void (async () => {
        for (const chunk of chunks) {
          if (done) return;
          c.write(chunk);
          if (opts.delayMs !== undefined) await new Promise((r) => setTimeout(r, opts.delayMs));
        }
        if (opts.end === true && !done) c.end();
      })();
    });
  });
}

/** The status line and JSON body of a raw HTTP answer. */
function parseRaw(text: string): { status: number; body: Record<string, unknown> } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  const start = text.indexOf('\r\n\r\n');
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text.slice(start + 4)) as Record<string, unknown>;
  } catch {
    // no body
  }
  return { status, body };
}

/** POST a body as given (not re-encoded) on a fresh connection. */
async function postText(
  path: string,
  body: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await raw([
    `POST ${path} HTTP/1.1\r\nHost: cordon\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  ]);
  return parseRaw(r.data);
}

/** The daemon still answers, and is the same process. */
async function stillServing(): Promise<void> {
  const r = await request(socket, 'GET', '/v1/status');
  expect(r.status).toBe(200);
  expect(r.body['pid']).toBe(d?.child.pid);
}

function errorOf(r: ApiAnswer | { status: number; body: Record<string, unknown> }): {
  status: number;
  code: unknown;
  hasMessage: boolean;
} {
  const message = r.body['message'];
  return {
    status: r.status,
    code: r.body['code'],
    hasMessage: typeof message === 'string' && message.length > 0,
  };
}

function openBody(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    manifest: readFileSync(manifest).toString('base64'),
    manifestPath: manifest,
    command: ['/usr/bin/true'],
    cwd: '/',
    ...extra,
  };
}

/** The frames in bytes the daemon sent on a framed connection. */
function wireAnswers(bytes: Buffer): Record<string, unknown>[] {
  return new FrameReader(1 << 26).push(bytes).map((f) => f.value as Record<string, unknown>);
}

/**
 * Frames (or raw bytes) after the magic on a fresh framed connection. Resolves with the answers
 * once `want` of them came (the client then closes) or the daemon closed the connection.
 */
function wire(
  chunks: readonly (Buffer | Record<string, unknown>)[],
  want = Infinity,
): Promise<{ answers: Record<string, unknown>[]; closedBy: 'server' | 'client' }> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    const reader = new FrameReader(1 << 26);
    const answers: Record<string, unknown>[] = [];
    let closedBy: 'server' | 'client' = 'server';
    c.on('data', (b: Buffer) => {
      for (const f of reader.push(b)) answers.push(f.value as Record<string, unknown>);
      if (answers.length >= want) {
        closedBy = 'client';
        c.destroy();
      }
    });
    c.on('error', (e: Error & { code?: string }) => {
      if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e);
    });
    c.on('close', () => resolve({ answers, closedBy }));
    c.on('connect', () => {
      c.write(WIRE_MAGIC);
      for (const chunk of chunks) c.write(Buffer.isBuffer(chunk) ? chunk : encodeFrame(chunk));
    });
  });
}

/** A frame header declaring `len` bytes, then `body`. */
function framed(body: string | Buffer, len = Buffer.byteLength(body)): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(len, 0);
  return Buffer.concat([head, Buffer.isBuffer(body) ? body : Buffer.from(body)]);
}

describe('the local API against malformed and hostile requests', () => {
  it('refuses malformed JSON and unknown fields with a code and a message naming the field', async () => {
    const bad = await postText('/v1/sessions', '{"manifest": "x", ');
    expect(errorOf(bad)).toEqual({ status: 400, code: 'REQUEST_INVALID', hasMessage: true });
    expect(bad.body['message']).toMatch(/not JSON/);
    // Duplicate keys are refused too: no last-one-wins between what is checked and what is used.
    const dup = await postText(
      '/v1/sessions',
      JSON.stringify(openBody()).replace(/^\{/, '{"command":["/usr/bin/true"],'),
    );
    expect(errorOf(dup)).toEqual({ status: 400, code: 'REQUEST_INVALID', hasMessage: true });
    expect(dup.body['message']).toMatch(/duplicate/i);

    // A body that names the caller: strict schemas refuse what they do not know.
    const claims = await request(socket, 'POST', '/v1/sessions', openBody({ uid: 0, pid: 1 }));
    expect(errorOf(claims)).toEqual({ status: 400, code: 'REQUEST_INVALID', hasMessage: true });
    expect(claims.body['message']).toMatch(/unknown field\(s\) uid, pid/);
    const wrongType = await request(socket, 'POST', '/v1/sessions', openBody({ command: 'true' }));
    expect(errorOf(wrongType).code).toBe('REQUEST_INVALID');
    expect(wrongType.body['message']).toMatch(/^command: expected array/);
    const notObject = await request(socket, 'POST', '/v1/sessions', [1, 2, 3]);
    expect(errorOf(notObject).code).toBe('REQUEST_INVALID');
    await stillServing();
  });

  it('refuses an oversized body, declared or chunked, before reading it all', async () => {
    const big = Buffer.alloc(MAX_BODY_BYTES + 1, 0x20);
    // Declared: refused on the header alone.
    const declared = await raw([
      `POST /v1/sessions HTTP/1.1\r\nHost: cordon\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n`,
    ]);
    expect(errorOf(parseRaw(declared.data))).toEqual({
      status: 413,
      code: 'BODY_TOO_LARGE',
      hasMessage: true,
    });
    // Without a length (chunked): refused once the limit is passed, the rest not waited for.
    const chunk = Buffer.alloc(256 * 1024, 0x20);
    const pieces: (string | Buffer)[] = [
      'POST /v1/sessions HTTP/1.1\r\nHost: cordon\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
    ];
    for (let n = 0; n <= MAX_BODY_BYTES / chunk.length + 4; n++)
      pieces.push(`${chunk.length.toString(16)}\r\n`, chunk, '\r\n');
    const chunked = await raw(pieces);
    expect(errorOf(parseRaw(chunked.data))).toEqual({
      status: 413,
      code: 'BODY_TOO_LARGE',
      hasMessage: true,
    });
    // A chunked body that never ends after the limit is not waited for either.
    const endless = await raw(pieces.slice(0, -3));
    expect(parseRaw(endless.data).status).toBe(413);
    await stillServing();
  });

  it('times out a slow-loris client without holding up anyone else', async () => {
    const line = 'GET /v1/status HTTP/1.1\r\nHost: cordon\r\nX-Slow: ' + 'a'.repeat(400);
    let answeredMeanwhile = 0;
    let lorisOpen = true;
    const loris = raw(line.split(''), { delayMs: 25 }).then((r) => {
      lorisOpen = false;
      return r;
    });
    // While the slow client dribbles its headers, others are served.
    for (let i = 0; i < 5; i++) {
      const r = await request(socket, 'GET', '/v1/status');
      if (r.status === 200 && lorisOpen) answeredMeanwhile++;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(answeredMeanwhile).toBe(5);
    const r = await loris;
    expect(errorOf(parseRaw(r.data))).toEqual({
      status: 408,
      code: 'REQUEST_INVALID',
      hasMessage: true,
    });
    // A connection that never says anything is closed too.
    const silent = await raw([]);
    expect(silent.closedBy).toBe('server');
    await stillServing();
  });

  it('refuses oversized headers, a non-HTTP byte stream and a TLS handshake with an error', async () => {
    const overflow = await raw([
      `GET /v1/status HTTP/1.1\r\nHost: cordon\r\nX-Big: ${'a'.repeat(32 * 1024)}\r\n\r\n`,
    ]);
    expect(errorOf(parseRaw(overflow.data))).toEqual({
      status: 431,
      code: 'REQUEST_INVALID',
      hasMessage: true,
    });
    const garbage = await raw([Buffer.from([1, 2, 3, 0xff, 0xfe, 13, 10, 13, 10])]);
    expect(errorOf(parseRaw(garbage.data))).toEqual({
      status: 400,
      code: 'REQUEST_INVALID',
      hasMessage: true,
    });
    // A NUL first is the framed transport's start; anything but its magic after it is refused
    // in that transport, and the connection closed.
    const nul = await raw([Buffer.from([0, 1, 2, 3, 0xff, 0xfe, 13, 10, 13, 10])]);
    expect(nul.closedBy).toBe('server');
    const [refusal, ...more] = wireAnswers(Buffer.from(nul.data, 'latin1'));
    expect(more).toEqual([]);
    expect([refusal?.['id'], refusal?.['status']]).toEqual([0, 400]);
    expect((refusal?.['body'] as Record<string, unknown>)['code']).toBe('DAEMON_PROTOCOL');
    // The start of a TLS ClientHello.
    const tls = await raw([Buffer.from('16030100a5010000a10303', 'hex'), Buffer.alloc(200, 7)]);
    expect(parseRaw(tls.data).status).toBe(400);
    // Request smuggling: both a length and chunked encoding.
    const smuggle = await raw([
      'POST /v1/reload HTTP/1.1\r\nHost: cordon\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    ]);
    expect(parseRaw(smuggle.data).status).toBe(400);
    await stillServing();
  });

  it('answers an unknown path 404 and a wrong method 405, each with its code', async () => {
    expect(errorOf(await request(socket, 'GET', '/v1/nope'))).toEqual({
      status: 404,
      code: 'NOT_FOUND',
      hasMessage: true,
    });
    expect(errorOf(await request(socket, 'GET', '/v2/status')).code).toBe('NOT_FOUND');
    expect(errorOf(await request(socket, 'GET', '/v1/status/../reload')).status).toBe(404);
    expect(errorOf(await request(socket, 'GET', '/v1/reload'))).toEqual({
      status: 405,
      code: 'METHOD_NOT_ALLOWED',
      hasMessage: true,
    });
    expect(errorOf(await request(socket, 'DELETE', '/v1/sessions')).code).toBe(
      'METHOD_NOT_ALLOWED',
    );
    expect(errorOf(await request(socket, 'POST', '/v1/status', {})).code).toBe(
      'METHOD_NOT_ALLOWED',
    );
    await stillServing();
  });

  it('refuses a session’s calls with a forged, another session’s or a malformed capability', async () => {
    const one = await request(socket, 'POST', '/v1/sessions', openBody());
    const two = await request(socket, 'POST', '/v1/sessions', openBody());
    expect(one.status, one.raw).toBe(200);
    expect(two.status, two.raw).toBe(200);
    const id = one.body['session'] as string;
    const capOne = one.body['capability'] as string;
    const capTwo = two.body['capability'] as string;
    const events = { events: [{ seq: 1, event: { class_uid: 1007 } }] };
    const forged = [
      undefined,
      `Bearer ${capTwo}`,
      `Bearer ${'A'.repeat(capOne.length)}`,
      `Bearer ${capOne.slice(0, -1)}`,
      `Bearer ${capOne}x`,
      `bearer ${capOne}`,
      `Basic ${Buffer.from(`x:${capOne}`).toString('base64')}`,
      `Bearer ${capOne} ${capOne}`,
      'Bearer',
    ];
    for (const auth of forged) {
      const r = await request(
        socket,
        'POST',
        `/v1/sessions/${id}/events`,
        events,
        auth === undefined ? {} : { authorization: auth },
      );
      expect(errorOf(r), String(auth)).toEqual({
        status: 401,
        code: 'SESSION_UNAUTHORIZED',
        hasMessage: true,
      });
    }
    // Session two's capability does not close session one, nor one's close two.
    const close = await request(
      socket,
      'POST',
      `/v1/sessions/${id}/close`,
      {},
      { authorization: `Bearer ${capTwo}` },
    );
    expect(close.status).toBe(401);
    // Not a session id at all: no route, not a lookup.
    const notId = await request(socket, 'POST', `/v1/sessions/../../v1/stop/events`, events, {
      authorization: `Bearer ${capOne}`,
    });
    expect(notId.status).toBe(404);
    // The real capability works, and the events of the refused calls were never recorded.
    const ok = await request(
      socket,
      'POST',
      `/v1/sessions/${id}/close`,
      {},
      { authorization: `Bearer ${capOne}` },
    );
    expect(ok.status, ok.raw).toBe(200);
    const ok2 = await request(
      socket,
      'POST',
      `/v1/sessions/${two.body['session'] as string}/close`,
      {},
      { authorization: `Bearer ${capTwo}` },
    );
    expect(ok2.status).toBe(200);
    expect(
      s.events().filter((e) => (e['actor'] as { session?: { uid?: string } }).session?.uid === id),
    ).toEqual([]);
    await stillServing();
  });

  it('refuses events out of order, and answers an unknown session like a forged capability', async () => {
    const one = await request(socket, 'POST', '/v1/sessions', openBody());
    expect(one.status, one.raw).toBe(200);
    const id = one.body['session'] as string;
    const auth = { authorization: `Bearer ${one.body['capability'] as string}` };
    const gap = await request(
      socket,
      'POST',
      `/v1/sessions/${id}/events`,
      { events: [{ seq: 2, event: { class_uid: 1007 } }] },
      auth,
    );
    expect(errorOf(gap)).toEqual({ status: 400, code: 'EVENT_SEQUENCE_GAP', hasMessage: true });
    const unknown = await request(
      socket,
      'POST',
      `/v1/sessions/00000000-0000-0000-0000-000000000000/close`,
      {},
      auth,
    );
    expect(errorOf(unknown).code).toBe('SESSION_UNAUTHORIZED');
    expect((await request(socket, 'POST', `/v1/sessions/${id}/close`, {}, auth)).status).toBe(200);
    await stillServing();
  });

  it('closes a session behind its events only once they are durable, and refuses a close that overtook them', async () => {
    const one = await request(socket, 'POST', '/v1/sessions', openBody());
    expect(one.status, one.raw).toBe(200);
    const id = one.body['session'] as string;
    const capability = one.body['capability'] as string;
    const auth = { authorization: `Bearer ${capability}` };
    const event = (seq: number): Record<string, unknown> => ({
      seq,
      event: fileActivityEvent(
        { productVersion: '0', device: { hostname: 'h' }, actor: { name: 'a' }, time: 1 },
        { activity: 'read', path: `/w/pipelined-${seq}` },
      ),
    });
    // A close naming events the service has not been sent: refused, and the session stays open.
    const early = await request(socket, 'POST', `/v1/sessions/${id}/close`, { lastSeq: 1 }, auth);
    expect(errorOf(early)).toEqual({ status: 409, code: 'EVENTS_PENDING', hasMessage: true });
    // The events and the close in one write on one connection: both answered, the close after
    // the events are in the log.
    const both = await wire(
      [
        {
          id: 1,
          method: 'POST',
          path: `/v1/sessions/${id}/events`,
          capability,
          body: { events: [event(1), event(2)] },
        },
        {
          id: 2,
          method: 'POST',
          path: `/v1/sessions/${id}/close`,
          capability,
          body: { lastSeq: 2 },
        },
      ],
      2,
    );
    const byId = new Map(both.answers.map((a) => [a['id'], a]));
    expect(byId.get(1)?.['status']).toBe(200);
    expect((byId.get(1)?.['body'] as { acked?: number }).acked).toBe(2);
    expect(byId.get(2)?.['status'], JSON.stringify(byId.get(2))).toBe(200);
    const paths = s
      .events()
      .filter((e) => (e['actor'] as { session?: { uid?: string } }).session?.uid === id)
      .map((e) => (e['file'] as { path?: string } | undefined)?.path);
    expect(paths).toEqual(['/w/pipelined-1', '/w/pipelined-2']);
    // Closed: the session is gone.
    const after = await request(socket, 'POST', `/v1/sessions/${id}/close`, {}, auth);
    expect(errorOf(after).code).toBe('SESSION_UNAUTHORIZED');
    await stillServing();
  });

  it('serves 1000 concurrent connections', async () => {
    const sockets: net.Socket[] = [];
    // Hold 1000 connections open at once, then ask on each of them.
    await Promise.all(
      Array.from(
        { length: 1000 },
        () =>
          new Promise<void>((resolve, reject) => {
            const c = net.connect(socket, () => resolve());
            c.on('error', reject);
            sockets.push(c);
          }),
      ),
    );
    const answers = await Promise.all(
      sockets.map(
        (c) =>
          new Promise<number>((resolve) => {
            let t = '';
            c.on('data', (b: Buffer) => {
              t += b.toString();
              if (t.includes('\r\n\r\n') && t.endsWith('\n')) {
                resolve(parseRaw(t).status);
                c.destroy();
              }
            });
            c.on('close', () => resolve(parseRaw(t).status));
            c.write('GET /v1/status HTTP/1.1\r\nHost: cordon\r\n\r\n');
          }),
      ),
    );
    expect(answers.filter((x) => x === 200).length).toBe(1000);
    await stillServing();
  });

  it('refuses to start on a socket path that is not a socket, too long, or in a directory others may write', async () => {
    const start = (sock: string, state: string): ReturnType<typeof exec> =>
      exec(
        [
          process.execPath,
          BIN,
          'daemon',
          '--socket',
          sock,
          '--policy-dir',
          join(s.cordonHome, 'policy'),
          '--state-dir',
          join(s.dir, state),
        ],
        { env: s.env, killAfterMs: 15_000 },
      );
    mkdirSync(join(s.dir, 'plain'), { mode: 0o700 });
    writeFileSync(join(s.dir, 'plain', 'd.sock'), 'not a socket');
    const file = await start(join(s.dir, 'plain', 'd.sock'), 'st1');
    expect(file.code).not.toBe(0);
    expect(file.stderr).toMatch(/DAEMON_SOCKET_INVALID/);
    expect(readFileSync(join(s.dir, 'plain', 'd.sock'), 'utf8')).toBe('not a socket');
    const long = await start(join(s.dir, 'l'.repeat(120), 'd.sock'), 'st2');
    expect(long.code).not.toBe(0);
    expect(long.stderr).toMatch(/DAEMON_SOCKET_PATH_TOO_LONG/);
    // A runtime directory another user could have planted, or anyone may write to.
    mkdirSync(join(s.dir, 'open'), { mode: 0o777 });
    chmodSync(join(s.dir, 'open'), 0o777);
    const open = await start(join(s.dir, 'open', 'd.sock'), 'st3');
    expect(open.code).not.toBe(0);
    expect(open.stderr).toMatch(/DAEMON_DIR_UNSAFE/);
    // A socket the kernel will not create (procfs takes no new files, not even root's).
    const proc = await exec(
      [
        process.execPath,
        BIN,
        'daemon',
        '--system',
        '--socket',
        '/proc/cordon-test.sock',
        '--runtime-dir',
        join(s.dir, 'rt4'),
        '--policy-dir',
        join(s.cordonHome, 'policy'),
        '--state-dir',
        join(s.dir, 'st4'),
      ],
      { env: s.env, killAfterMs: 15_000 },
    );
    expect(proc.code).not.toBe(0);
    expect(proc.stderr).toMatch(/DAEMON_LISTEN_FAILED/);
    await stillServing();
  });

  it('a client talking to something that is not the daemon says so', async () => {
    const other = join(s.dir, 'other', 'd.sock');
    mkdirSync(join(s.dir, 'other'), { mode: 0o700 });
    // Something else on the socket, and a daemon of an older version (it speaks only HTTP).
    for (const [answer, expected] of [
      ['hello, I am not cordon\n', /DAEMON_PROTOCOL.*not a cordon daemon/],
      ['HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n', /DAEMON_PROTOCOL.*older version/],
      // The service's own refusal of a connection over the caller's limit, sent before the
      // client said which transport it speaks, is read as that refusal.
      [
        'HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\r\n{"ok":false,"code":"DAEMON_BUSY","message":"uid 1 already has 512 connections open to the service","hint":"close some"}',
        /DAEMON_BUSY.*512 connections/,
      ],
    ] as const) {
      const impostor = net.createServer((c) => {
        c.on('error', () => undefined);
        c.once('data', () => c.write(answer, () => setTimeout(() => c.destroy(), 500)));
      });
      await new Promise<void>((r) => impostor.listen(other, r));
      try {
        const r = await exec([process.execPath, BIN, 'daemon', 'status'], {
          env: { ...s.env, CORDON_SOCKET: other },
          killAfterMs: 15_000,
        });
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(expected);
      } finally {
        await new Promise((r) => impostor.close(r));
      }
    }
  });

  it('refuses a second daemon on the same state directory, and does not take over a live socket', async () => {
    const args = (sock: string): string[] => [
      BIN,
      'daemon',
      '--socket',
      sock,
      '--policy-dir',
      join(s.cordonHome, 'policy'),
      '--state-dir',
      join(s.cordonHome, 'state'),
    ];
    const second = await exec([process.execPath, ...args(join(s.dir, 'second.sock'))], {
      env: s.env,
      killAfterMs: 15_000,
    });
    expect(second.signal).toBe(null);
    expect(second.code).not.toBe(0);
    expect(second.stderr).toMatch(/error\[DAEMON_RUNNING\]: another cordon daemon is serving/);
    expect(second.stderr).toContain(join(s.cordonHome, 'state'));
    // Another state directory, but the live daemon's socket: refused, the socket left alone.
    const other = join(s.dir, 'other-state');
    const hijack = await exec(
      [
        process.execPath,
        BIN,
        'daemon',
        '--socket',
        socket,
        '--policy-dir',
        join(s.cordonHome, 'policy'),
        '--state-dir',
        other,
      ],
      { env: s.env, killAfterMs: 15_000 },
    );
    expect(hijack.signal).toBe(null);
    expect(hijack.code).not.toBe(0);
    expect(hijack.stderr).toMatch(/error\[DAEMON_RUNNING\]: another daemon answers on/);
    expect(hijack.stderr).toContain(socket);
    await stillServing();
  });
});

// The system service's log is not readable by the users it serves: `cordon audit tail` then
// reads records through the service. The daemon named by CORDON_SOCKET stands for it.
describe('the framed transport against malformed and hostile frames', () => {
  const code = (a: Record<string, unknown> | undefined): unknown =>
    (a?.['body'] as Record<string, unknown> | undefined)?.['code'];

  it('answers requests by id, several in flight, to the same routes as HTTP', async () => {
    const r = await wire(
      [
        { id: 7, method: 'GET', path: '/v1/status' },
        { id: 8, method: 'GET', path: '/v1/nope' },
        { id: 9, method: 'GET', path: '/v1/reload' },
      ],
      3,
    );
    const byId = new Map(r.answers.map((a) => [a['id'], a]));
    expect(byId.get(7)?.['status']).toBe(200);
    expect((byId.get(7)?.['body'] as Record<string, unknown>)['pid']).toBe(d?.child.pid);
    expect([byId.get(8)?.['status'], code(byId.get(8))]).toEqual([404, 'NOT_FOUND']);
    expect([byId.get(9)?.['status'], code(byId.get(9))]).toEqual([405, 'METHOD_NOT_ALLOWED']);
  });

  it('serves one user’s large requests over many connections, past its budget of bodies in flight', async () => {
    // 4 connections × 4 requests of 12 MiB: 192 MiB from one user, over its 64 MiB budget (and
    // at most 48 MiB being read at once, under the service-wide limit on that).
    const pad = 'x'.repeat(12 * 1024 * 1024);
    const runs = await Promise.all(
      Array.from({ length: 4 }, () =>
        wire(
          Array.from({ length: 4 }, (_, i) => ({
            id: i + 1,
            method: 'POST',
            path: '/v1/check',
            body: { pad },
          })),
          4,
        ),
      ),
    );
    for (const r of runs) {
      expect(r.answers.map((a) => a['id']).sort()).toEqual([1, 2, 3, 4]);
      expect(r.answers.every((a) => code(a) === 'REQUEST_INVALID')).toBe(true);
    }
    await stillServing();
  }, 60_000);

  it('refuses a frame declared too large before reading it, and closes', async () => {
    const r = await wire([framed('{', 200 * 1024 * 1024)]);
    expect(r.closedBy).toBe('server');
    expect(code(r.answers[0])).toBe('WIRE_FRAME_TOO_LARGE');
    await stillServing();
  });

  it('refuses frames that are not JSON, not UTF-8, too deep, or hold what strict JSON refuses', async () => {
    const bad = [
      framed('{"id":1,"method":"GET",'),
      framed(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])),
      framed(
        '{"id":1,"method":"GET","path":"/v1/status","body":' +
          '['.repeat(80) +
          ']'.repeat(80) +
          '}',
      ),
      framed('{"id":1,"method":"GET","path":"/v1/status","body":{"a":"\\ud800"}}'),
      framed('{"id":1,"method":"GET","path":"/v1/status","body":{"\\udc00":1}}'),
      framed('{"id":1,"method":"GET","path":"/v1/status","body":{"n":1e400}}'),
    ];
    for (const frame of bad) {
      const r = await wire([frame]);
      expect(r.closedBy).toBe('server');
      expect(r.answers).toHaveLength(1);
      expect(r.answers[0]?.['id']).toBe(0);
      expect(code(r.answers[0])).toBe('WIRE_FRAME_INVALID');
    }
    await stillServing();
  });

  it('refuses an envelope without an id, a method or a path', async () => {
    for (const env of [
      { method: 'GET', path: '/v1/status' },
      { id: -1, method: 'GET', path: '/v1/status' },
      { id: 1, method: 'DELETE', path: '/v1/status' },
      { id: 1, method: 'GET', path: 'v1/status' },
      { id: 1, method: 'GET', path: '/v1/status', capability: 7 },
    ]) {
      const r = await wire([env]);
      expect(r.closedBy).toBe('server');
      expect(code(r.answers[0])).toBe('WIRE_FRAME_INVALID');
    }
    await stillServing();
  });

  it('bounds the requests in flight on one connection', async () => {
    const frames = Array.from({ length: 300 }, (_, i) => ({
      id: i + 1,
      method: 'GET',
      path: '/v1/status',
    }));
    const r = await wire([Buffer.concat(frames.map((f) => encodeFrame(f)))], 300);
    const busy = r.answers.filter((a) => code(a) === 'DAEMON_BUSY');
    expect(busy.length).toBe(300 - 256);
    expect(busy.every((a) => a['status'] === 429)).toBe(true);
    expect(r.answers.filter((a) => a['status'] === 200)).toHaveLength(256);
  });

  it('refuses a session’s calls with a forged or malformed capability, and the connection goes on', async () => {
    const one = await request(socket, 'POST', '/v1/sessions', openBody());
    const id = one.body['session'] as string;
    const cap = one.body['capability'] as string;
    const decide = { requests: [{ kind: 'exec', path: '/usr/bin/true', argv: ['/usr/bin/true'] }] };
    const r = await wire(
      [
        { id: 1, method: 'POST', path: `/v1/sessions/${id}/decide`, body: decide },
        {
          id: 2,
          method: 'POST',
          path: `/v1/sessions/${id}/decide`,
          capability: 'x'.repeat(43),
          body: decide,
        },
        {
          id: 3,
          method: 'POST',
          path: `/v1/sessions/${id}/decide`,
          capability: `${cap}\n`,
          body: decide,
        },
        { id: 4, method: 'POST', path: `/v1/sessions/${id}/decide`, capability: cap, body: decide },
        { id: 5, method: 'POST', path: `/v1/sessions/${id}/close`, capability: cap, body: {} },
      ],
      5,
    );
    const byId = new Map(r.answers.map((a) => [a['id'], a]));
    for (const n of [1, 2, 3]) expect(code(byId.get(n))).toBe('SESSION_UNAUTHORIZED');
    expect(byId.get(4)?.['status']).toBe(200);
    const decisions = (byId.get(4)?.['body'] as { decisions: { effect: string }[] }).decisions;
    expect(decisions.map((x) => x.effect)).toEqual(['allow']);
    expect(byId.get(5)?.['status']).toBe(200);
  });

  it('closes a connection whose frame is begun and not finished in time', async () => {
    const t0 = Date.now();
    const r = await wire([Buffer.from([0, 0, 0, 100]), Buffer.from('{"id":1,')]);
    expect(r.closedBy).toBe('server');
    expect(code(r.answers[0])).toBe('REQUEST_INVALID');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(9_000);
    await stillServing();
  }, 30_000);
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
