import http from 'node:http';
import net from 'node:net';
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { CordonError, isCordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import {
  CheckRequestSchema,
  CloseRequestSchema,
  DecideRequestSchema,
  describeIssues,
  EmitTestRequestSchema,
  EventsRequestSchema,
  isEventsRequest,
  MAX_BODY_BYTES,
  MAX_EVENT_BYTES,
  OpenSessionRequestSchema,
  QuarantineRequestSchema,
  ReloadRequestSchema,
  SessionStateRequestSchema,
  type CheckRequest,
  type StatusResponse,
  type WatchMessage,
} from '../protocol/daemon.js';
import {
  encodeFrame,
  FrameReader,
  MAX_REQUEST_FRAME,
  readRequest,
  WIRE_MAGIC,
  WireError,
  type WireRequest,
} from '../protocol/wire.js';
import { checkSocketPath } from './paths.js';
import type { Peer } from './peer.js';
import { OVERSIZE, type EndpointService } from './service.js';

/** What the HTTP layer needs besides the service. */
export interface ServerHooks {
  readonly peerOf: (socket: net.Socket) => Peer;
  readonly status: (peer: Peer) => StatusResponse;
  readonly check: (peer: Peer, body: CheckRequest) => Promise<Record<string, unknown>>;
  readonly reload: (peer: Peer) => Promise<string>;
  readonly emitTest: (count: number) => Promise<Record<string, unknown>>;
  readonly records: (peer: Peer, after: number, limit: number) => Record<string, unknown>;
  readonly stop: (peer: Peer) => void;
  /** Every request, for the idle timer. */
  readonly onActivity: () => void;
  readonly onDiagnostic: (m: string) => void;
}

type Schema<T> = {
  safeParse(
    v: unknown,
  ): { success: true; data: T } | { success: false; error: Parameters<typeof describeIssues>[0] };
};

/** Open connections one ordinary user may hold (root and administrators are not limited). */
export const MAX_CONNECTIONS_PER_USER = 512;

/** HTTP status for an error code: the caller's fault (4xx) or the service's (5xx). */
function statusFor(code: string): number {
  if (code === 'SESSION_UNAUTHORIZED') return 401;
  if (code === 'DAEMON_FORBIDDEN') return 403;
  if (code === 'SESSION_NOT_FOUND' || code === 'NOT_FOUND') return 404;
  if (code === 'METHOD_NOT_ALLOWED') return 405;
  if (code === 'EVENTS_PENDING') return 409;
  if (code === 'BODY_TOO_LARGE') return 413;
  if (code === 'DAEMON_BUSY') return 429;
  if (code === 'INTERNAL') return 500;
  if (code.startsWith('AUDIT_')) return 503;
  return 400;
}

/** One request, whichever transport brought it (HTTP, or a frame of the framed transport). */
interface Exchange {
  readonly method: string;
  /** The path, with its query. */
  readonly url: string;
  /** The session capability the request carries, when it is well formed. */
  readonly capability: string | undefined;
  /** The body's size in bytes as declared (HTTP Content-Length; the frame's length). */
  readonly size: number;
  body(): Promise<unknown>;
  /** Answer; `close` ends the connection after it (the rest of a refused body is not read). */
  reply(status: number, body: unknown, opts?: { close?: boolean; sent?: () => void }): void;
  /** A long-lived stream of messages (the watch), ended when the caller goes. */
  stream(onClose: () => void): (msg: WatchMessage) => void;
}

/** The error answer for any failure: its code, message, hint and where. */
function errorAnswer(e: unknown): {
  status: number;
  body: Record<string, unknown>;
  close: boolean;
} {
  const err = isCordonError(e)
    ? e
    : new CordonError('INTERNAL', `internal error: ${(e as Error).message}`, {
        hint: 'see the service log',
      });
  return {
    status: statusFor(err.code),
    body: {
      ok: false,
      code: err.code,
      message: err.message,
      ...(err.hint === undefined ? {} : { hint: err.hint }),
      ...(err.file === undefined ? {} : { file: err.file }),
      ...(err.pointer === undefined ? {} : { pointer: err.pointer }),
    },
    close: err.code === 'BODY_TOO_LARGE',
  };
}

function httpExchange(req: http.IncomingMessage, res: http.ServerResponse): Exchange {
  return {
    method: req.method ?? '',
    url: req.url ?? '',
    capability: bearer(req),
    size: Number(req.headers['content-length'] ?? MAX_EVENT_BYTES + 1),
    body: () => readJson(req),
    reply(status, body, opts = {}) {
      if (res.headersSent || res.destroyed) return;
      const text = JSON.stringify(body) + '\n';
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        'cache-control': 'no-store',
        ...(opts.close === true ? { connection: 'close' } : {}),
      });
      if (opts.sent !== undefined) res.on('finish', opts.sent);
      res.end(text);
    },
    stream(onClose) {
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      // The stream is long-lived: no request deadline, a ping keeps dead peers detectable.
      req.socket.setTimeout(0);
      res.on('close', onClose);
      return (msg) => {
        if (!res.destroyed) res.write(JSON.stringify(msg) + '\n');
      };
    },
  };
}

/** Body bytes being read across all connections: many slow large bodies cannot exhaust memory. */
let inFlight = 0;
const MAX_IN_FLIGHT = 64 * 1024 * 1024;

/** Read a JSON body of at most MAX_BODY_BYTES; a larger one is refused before it is read. */
async function readJson(req: http.IncomingMessage): Promise<unknown> {
  let held = 0;
  try {
    return await readJsonCounted(req, (n) => {
      held += n;
      inFlight += n;
      if (inFlight > MAX_IN_FLIGHT)
        throw new CordonError(
          'BODY_TOO_LARGE',
          'the service is reading too many large bodies now',
          {
            hint: 'try again shortly, with fewer requests or events per call',
          },
        );
    });
  } finally {
    inFlight -= held;
  }
}

async function readJsonCounted(
  req: http.IncomingMessage,
  count: (n: number) => void,
): Promise<unknown> {
  const tooLarge = (what: string): CordonError =>
    new CordonError('BODY_TOO_LARGE', `${what}; at most ${MAX_BODY_BYTES}`, {
      hint: 'send fewer requests or events per call',
    });
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > MAX_BODY_BYTES) throw tooLarge(`the body is ${declared} bytes`);
  // Stop reading at the limit without destroying the request: the 413 must still reach the
  // caller, and its connection is then closed (see sendError) rather than drained.
  const parts: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      try {
        count(chunk.length);
      } catch (e) {
        req.off('data', onData);
        req.pause();
        reject(e instanceof Error ? e : new Error('body refused'));
        return;
      }
      if (size > MAX_BODY_BYTES) {
        req.off('data', onData);
        req.pause();
        reject(tooLarge(`the body exceeds ${MAX_BODY_BYTES} bytes`));
        return;
      }
      parts.push(chunk);
    };
    req.on('data', onData);
    req.once('end', resolve);
    req.once('error', reject);
  });
  if (size === 0) return {};
  try {
    return parseStrictJson(Buffer.concat(parts, size), { maxBytes: MAX_BODY_BYTES, maxDepth: 64 });
  } catch (e) {
    throw new CordonError('REQUEST_INVALID', `the body is not JSON: ${(e as Error).message}`, {
      hint: 'send one JSON object (Content-Type: application/json)',
    });
  }
}

function parse<T>(schema: Schema<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (!r.success)
    throw new CordonError('REQUEST_INVALID', describeIssues(r.error), {
      hint: 'see the API schemas in src/protocol/daemon.ts',
    });
  return r.data;
}

function bearer(req: http.IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (h === undefined) return undefined;
  const m = /^Bearer ([A-Za-z0-9_-]{16,128})$/.exec(h);
  return m?.[1];
}

const ROUTE =
  /^\/v1\/sessions\/([0-9a-f-]{36})\/(decide|events|watch|close|quarantine|state|reload)$/;

/** The API server: its socket's listener, and how to stop it. */
export interface ApiServer {
  readonly server: net.Server;
  /** Stop accepting; close every connection now. */
  close(): void;
}

/** Wire connections: requests one connection may have in flight. */
const MAX_PENDING_PER_CONNECTION = 256;
/**
 * Bytes of records in one page of /v1/audit/records (each string at most doubles when encoded
 * in the answer: a page and one record over it stay under the client's MAX_RESPONSE_FRAME).
 */
const MAX_RECORDS_PAGE_BYTES = 16 * 1024 * 1024;
/** Wire connections: watch streams one connection may carry. */
const MAX_STREAMS_PER_CONNECTION = 1;
/** Wire connections: answer bytes written and not yet read by the client, before reading stops. */
const MAX_UNREAD_ANSWERS = 1024 * 1024;

/** Request bodies one user's requests in flight may hold, over all its framed connections. */
export const MAX_BODIES_PER_USER = 64 * 1024 * 1024;

/**
 * The bytes of request bodies each user's requests in flight hold. A framed connection reads
 * its next request only while its user has room for it (a frame is at most MAX_REQUEST_FRAME,
 * well under the budget, so a user with nothing in flight always has room): one user's many
 * connections, each with requests waiting (on a full disk, say), cannot make the service hold
 * more than this of theirs.
 */
export class BodyBudget {
  readonly #max: number;
  readonly #used = new Map<number, number>();
  readonly #waiting = new Map<number, Set<() => void>>();

  constructor(max: number) {
    this.#max = max;
  }

  used(uid: number): number {
    return this.#used.get(uid) ?? 0;
  }

  /** Take `size` for `uid` if it fits; false if it does not (call `whenFree` to wait). */
  take(uid: number, size: number): boolean {
    const used = this.used(uid);
    if (used > 0 && used + size > this.#max) return false;
    this.#used.set(uid, used + size);
    return true;
  }

  give(uid: number, size: number): void {
    const left = this.used(uid) - size;
    if (left > 0) this.#used.set(uid, left);
    else this.#used.delete(uid);
    const waiting = this.#waiting.get(uid);
    if (waiting === undefined) return;
    this.#waiting.delete(uid);
    for (const wake of waiting) wake();
  }

  /** Call `wake` once, the next time some of `uid`'s budget is given back; returns a cancel. */
  whenFree(uid: number, wake: () => void): () => void {
    let set = this.#waiting.get(uid);
    if (set === undefined) this.#waiting.set(uid, (set = new Set()));
    set.add(wake);
    return () => set.delete(wake);
  }
}
/** How long a connection may take to say which transport it speaks, or to finish a frame. */
const FIRST_BYTES_MS = 5_000;
const FRAME_MS = 10_000;

/**
 * The local API server on a Unix socket: HTTP/1.1, or the framed transport of
 * src/protocol/wire.ts (a connection that starts with WIRE_MAGIC), both to the same routes.
 * Every connection's peer is established from the kernel before a byte is read; one that cannot
 * be is closed. Bodies are bounded, slow clients time out, and any failure is an error answer,
 * never a crash of the service.
 */
export function createApiServer(service: EndpointService, hooks: ServerHooks): ApiServer {
  const peers = new WeakMap<net.Socket, Peer>();
  const http1 = http.createServer({
    maxHeaderSize: 16 * 1024,
    headersTimeout: 5_000,
    requestTimeout: 30_000,
    keepAliveTimeout: 30_000,
    connectionsCheckingInterval: 1_000,
    insecureHTTPParser: false,
    joinDuplicateHeaders: false,
  });
  // node:http starts its header and request deadlines when its server starts listening; this
  // one never listens itself (it is handed connections), so it is told it does.
  http1.emit('listening');
  const bodies = new BodyBudget(MAX_BODIES_PER_USER);
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ pauseOnConnect: true });
  server.maxConnections = 4096;
  // Connections per ordinary user: one user holding every slot (idle or slow connections up to
  // maxConnections) would lock every other user, and their sessions' clients, out.
  const open = new Map<number, number>();
  server.on('connection', (socket: net.Socket) => {
    let peer: Peer;
    try {
      peer = hooks.peerOf(socket);
    } catch (e) {
      hooks.onDiagnostic(`refused a connection: ${(e as Error).message}`);
      socket.destroy();
      return;
    }
    socket.on('error', () => undefined);
    if (!service.isAdmin(peer)) {
      const n = open.get(peer.uid) ?? 0;
      if (n >= MAX_CONNECTIONS_PER_USER) {
        refuseBusy(socket, peer.uid, n);
        return;
      }
      open.set(peer.uid, n + 1);
      socket.once('close', () => {
        const left = (open.get(peer.uid) ?? 1) - 1;
        if (left > 0) open.set(peer.uid, left);
        else open.delete(peer.uid);
      });
    }
    peers.set(socket, peer);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // Which transport: the first bytes tell (HTTP starts with a method's letter).
    let first = Buffer.alloc(0);
    const idle = setTimeout(() => socket.destroy(), FIRST_BYTES_MS);
    const onFirst = (chunk: Buffer): void => {
      first = Buffer.concat([first, chunk]);
      if (first[0] === WIRE_MAGIC[0] && first.length < WIRE_MAGIC.length) return;
      clearTimeout(idle);
      socket.off('data', onFirst);
      if (first[0] !== WIRE_MAGIC[0]) {
        // HTTP: the bytes read go back to the stream, and node:http takes the connection.
        socket.pause();
        socket.unshift(first);
        http1.emit('connection', socket);
        socket.resume();
        return;
      }
      if (!first.subarray(0, WIRE_MAGIC.length).equals(WIRE_MAGIC)) {
        socket.end(
          encodeFrame({
            id: 0,
            status: 400,
            body: {
              ok: false,
              code: 'DAEMON_PROTOCOL',
              message: 'unknown framed-transport version',
              hint: 'use a client of the same version as the service',
            },
          }),
        );
        return;
      }
      serveWire(socket, peer, first.subarray(WIRE_MAGIC.length));
    };
    socket.on('data', onFirst);
    socket.resume();
  });

  function refuseBusy(socket: net.Socket, uid: number, n: number): void {
    const body = JSON.stringify({
      ok: false,
      code: 'DAEMON_BUSY',
      message: `uid ${uid} already has ${n} connections open to the service`,
      hint: 'close some connections, or wait for requests in flight to finish',
    });
    // Answered at once, before the client has said which transport it speaks, so in HTTP (the
    // framed client reads an HTTP 429 as this refusal); closed as soon as the answer is out, not
    // when the client gets round to it: a refused connection must not hold a descriptor.
    socket.end(
      `HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      () => socket.destroy(),
    );
  }

  http1.on('clientError', (err: Error & { code?: string }, socket: net.Socket) => {
    if (socket.writable && err.code !== 'ECONNRESET') {
      const body = JSON.stringify({
        ok: false,
        code: 'REQUEST_INVALID',
        message: `malformed request (${err.code ?? err.message})`,
      });
      socket.end(
        `HTTP/1.1 ${err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400} Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    } else socket.destroy();
  });
  http1.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    // Pipelined requests are served one at a time: node:http parses every request in a chunk it
    // reads and queues their answers in memory until the client reads the ones before. A
    // request is served once the answer before it has gone to the kernel (node:http then hands
    // this answer the socket), so a client that asks and never reads holds one answer, not one
    // per request it sent.
    if (res.socket === null) res.once('socket', () => serveHttp(req, res));
    else serveHttp(req, res);
  });
  function serveHttp(req: http.IncomingMessage, res: http.ServerResponse): void {
    hooks.onActivity();
    const peer = peers.get(req.socket);
    if (peer === undefined) {
      req.socket.destroy();
      return;
    }
    const ex = httpExchange(req, res);
    route(ex, peer).catch((e: unknown) => {
      if (!isCordonError(e)) hooks.onDiagnostic(`request ${req.method} ${req.url}: ${String(e)}`);
      const a = errorAnswer(e);
      ex.reply(a.status, a.body, { close: a.close });
    });
  }

  /** The framed transport on one connection: each frame a request, answered by its id. */
  function serveWire(socket: net.Socket, peer: Peer, rest: Buffer): void {
    const reader = new FrameReader(MAX_REQUEST_FRAME);
    let held = 0;
    let pending = 0;
    let slow: NodeJS.Timeout | undefined;
    const write = (v: unknown): void => {
      if (!socket.destroyed && socket.writable) socket.write(encodeFrame(v));
    };
    const account = (finished: boolean): void => {
      inFlight += reader.held - held;
      held = reader.held;
      // A frame begun must be finished in time, as an HTTP body must. Each frame has its own
      // deadline: a client whose frames follow each other without pause (what is held after a
      // read is then always the start of the next one) is not cut off after the first 10 s.
      if (finished && slow !== undefined) {
        clearTimeout(slow);
        slow = undefined;
      }
      if (held > 0 && slow === undefined) {
        slow = setTimeout(
          () => fatal('REQUEST_INVALID', 'a frame was not finished in time'),
          FRAME_MS,
        );
        slow.unref();
      } else if (held === 0 && slow !== undefined) {
        clearTimeout(slow);
        slow = undefined;
      }
    };
    const fatal = (code: string, message: string): void => {
      // Nothing more is read or served on this connection (a late frame after an expired one
      // would otherwise still be acted on, unanswered).
      socket.off('data', onData);
      queue.length = 0;
      write({ id: 0, status: 400, body: { ok: false, code, message } });
      socket.end();
      socket.destroySoon();
    };
    socket.once('close', () => {
      clearTimeout(slow);
      inFlight -= held;
      held = 0;
    });
    // Requests read and not yet started: frames are taken from the socket only while the
    // answers already written are being read, as node:http does for pipelined requests. A
    // client that sends requests and never reads the answers would otherwise have the service
    // hold every answer in memory.
    const queue: { req: WireRequest; size: number }[] = [];
    let waiting = false;
    const drain = (): void => {
      while (queue.length > 0) {
        if (socket.destroyed) return;
        if (socket.writableLength > MAX_UNREAD_ANSWERS) {
          if (!waiting) {
            waiting = true;
            socket.pause();
            socket.once('drain', () => {
              waiting = false;
              socket.resume();
              drain();
            });
          }
          return;
        }
        const next = queue[0];
        if (next === undefined) return;
        if (!bodies.take(peer.uid, next.size)) {
          // Its user's requests hold their budget: read nothing more here until some finish.
          if (!waiting) {
            waiting = true;
            socket.pause();
            cancelWait = bodies.whenFree(peer.uid, () => {
              cancelWait = undefined;
              waiting = false;
              if (socket.destroyed) return;
              socket.resume();
              drain();
            });
          }
          return;
        }
        queue.shift();
        dispatch(next.req, next.size);
      }
    };
    let cancelWait: (() => void) | undefined;
    socket.once('close', () => cancelWait?.());
    const onData = (chunk: Buffer): void => {
      let frames: { value: unknown; size: number }[];
      try {
        frames = reader.push(chunk);
        account(frames.length > 0);
        if (inFlight > MAX_IN_FLIGHT)
          throw new WireError(
            'WIRE_FRAME_TOO_LARGE',
            'the service is reading too many large bodies now',
          );
      } catch (e) {
        socket.off('data', onData);
        fatal(e instanceof WireError ? e.code : 'REQUEST_INVALID', (e as Error).message);
        return;
      }
      for (const frame of frames) {
        const req = readRequest(frame.value);
        if (typeof req === 'string') {
          // The frames before it are answered (as far as the client reads); none after it.
          socket.off('data', onData);
          drain();
          queue.length = 0;
          fatal('WIRE_FRAME_INVALID', req);
          return;
        }
        queue.push({ req, size: frame.size });
      }
      drain();
    };
    // A watch stream holds its connection, as it holds an HTTP connection: one per connection,
    // so a user's streams stay bounded by its connections (each stream is a timer and a
    // listener for as long as the connection lives).
    let streams = 0;
    const dispatch = (req: WireRequest, size: number): void => {
      hooks.onActivity();
      let done = false;
      const ex: Exchange = {
        method: req.method,
        url: req.path,
        capability:
          req.capability !== undefined && /^[A-Za-z0-9_-]{16,128}$/.test(req.capability)
            ? req.capability
            : undefined,
        size,
        body: () => Promise.resolve(req.body ?? {}),
        reply(status, body, opts = {}) {
          if (done) return;
          // Encoded before it counts as answered: an answer that cannot be encoded (a string
          // too long for JSON.stringify) is then answered with the error instead of never.
          const frame = encodeFrame({ id: req.id, status, body });
          done = true;
          if (!socket.destroyed && socket.writable) socket.write(frame);
          if (opts.sent !== undefined) socket.write('', opts.sent);
        },
        stream(onClose) {
          if (streams >= MAX_STREAMS_PER_CONNECTION)
            throw new CordonError('DAEMON_BUSY', 'this connection already carries a stream', {
              hint: 'open another connection for each stream',
            });
          streams++;
          done = true;
          if (socket.destroyed) setImmediate(onClose);
          else socket.once('close', onClose);
          return (msg) => write({ id: req.id, status: 200, body: msg });
        },
      };
      if (pending >= MAX_PENDING_PER_CONNECTION) {
        const a = errorAnswer(
          new CordonError('DAEMON_BUSY', `${pending} requests are in flight on this connection`, {
            hint: 'wait for answers before sending more, or open another connection',
          }),
        );
        ex.reply(a.status, a.body);
        bodies.give(peer.uid, size);
        return;
      }
      pending++;
      route(ex, peer)
        .catch((e: unknown) => {
          if (!isCordonError(e))
            hooks.onDiagnostic(`request ${req.method} ${req.path}: ${String(e)}`);
          const a = errorAnswer(e);
          ex.reply(a.status, a.body);
        })
        .finally(() => {
          pending--;
          // Done when its route returns (a watch stream goes on without holding its body).
          bodies.give(peer.uid, size);
        });
    };
    socket.on('data', onData);
    if (rest.length > 0) onData(rest);
  }

  async function route(ex: Exchange, peer: Peer): Promise<void> {
    const url = ex.url.split('?')[0] ?? '';
    const method = ex.method;
    const want = (m: string): void => {
      if (method !== m)
        throw new CordonError('METHOD_NOT_ALLOWED', `${url} takes ${m}, not ${method}`, {
          hint: `use ${m}`,
        });
    };
    if (url === '/v1/status') {
      want('GET');
      ex.reply(200, hooks.status(peer));
      return;
    }
    if (url === '/v1/sessions') {
      if (method === 'GET') {
        ex.reply(200, { ok: true, sessions: service.list(peer) });
        return;
      }
      want('POST');
      const body = parse(OpenSessionRequestSchema, await ex.body());
      ex.reply(200, await service.open(peer, body));
      return;
    }
    if (url === '/v1/check') {
      want('POST');
      ex.reply(200, await hooks.check(peer, parse(CheckRequestSchema, await ex.body())));
      return;
    }
    if (url === '/v1/audit/records') {
      want('GET');
      const q = new URLSearchParams(ex.url.split('?')[1] ?? '');
      const after = Number(q.get('after') ?? '0');
      const limit = Number(q.get('limit') ?? '1000');
      if (!Number.isSafeInteger(after) || after < 0 || !Number.isSafeInteger(limit) || limit < 1)
        throw new CordonError('REQUEST_INVALID', 'after and limit must be whole numbers', {
          hint: 'e.g. /v1/audit/records?after=0&limit=1000',
        });
      // A page is bounded in bytes too: records are up to MAX_EVENT_BYTES each, and a page of
      // them over the framed client's MAX_RESPONSE_FRAME would leave every reader of the log
      // (`cordon audit tail`, administrators' included) unable to get past them. When the page
      // asked for is larger, the records that fit (at least one) are asked for instead.
      let page = hooks.records(peer, after, Math.min(limit, 10_000));
      const shown = page['records'] as readonly string[];
      let bytes = 0;
      let fit = 0;
      while (fit < shown.length) {
        bytes += Buffer.byteLength(shown[fit] ?? '');
        if (fit > 0 && bytes > MAX_RECORDS_PAGE_BYTES) break;
        fit++;
      }
      if (fit < shown.length) page = hooks.records(peer, after, fit);
      ex.reply(200, page);
      return;
    }
    if (url === '/v1/audit/emit-test') {
      want('POST');
      adminOnly(peer, 'write synthetic events');
      const body = parse(EmitTestRequestSchema, await ex.body());
      ex.reply(200, await hooks.emitTest(body.count));
      return;
    }
    if (url === '/v1/reload') {
      want('POST');
      adminOnly(peer, 'reload the service');
      ex.reply(200, { ok: true, message: await hooks.reload(peer) });
      return;
    }
    if (url === '/v1/stop') {
      want('POST');
      adminOnly(peer, 'stop the service');
      ex.reply(200, { ok: true, message: 'stopping' }, { sent: () => hooks.stop(peer) });
      return;
    }
    const m = ROUTE.exec(url);
    if (m === null)
      throw new CordonError('NOT_FOUND', `no such endpoint: ${method} ${url}`, {
        hint: 'see the API in the README (endpoints under /v1/)',
      });
    const id = m[1] ?? '';
    const action = m[2] ?? '';
    if (action === 'quarantine') {
      want('POST');
      const body = parse(QuarantineRequestSchema, await ex.body());
      const t0 = performance.now();
      const s = service.visible(peer, id);
      const reason =
        body.reason ?? `quarantined by uid ${peer.uid} (pid ${peer.pid}) through the service`;
      if (body.evidence === true) {
        ex.reply(200, await service.quarantineWithEvidence(s, reason, t0, body.out));
        return;
      }
      await service.quarantine(s, reason);
      ex.reply(200, { ok: true, session: service.info(s) });
      return;
    }
    // Everything else is the session's own client: it holds the capability.
    const s = service.authorize(id, ex.capability);
    if (s.uid !== peer.uid)
      throw new CordonError(
        'SESSION_UNAUTHORIZED',
        `session ${id} belongs to uid ${s.uid}, not the caller (uid ${peer.uid})`,
        { hint: "only the session's own client may do this" },
      );
    switch (action) {
      case 'decide': {
        want('POST');
        const body = parse(DecideRequestSchema, await ex.body());
        ex.reply(200, { ok: true, decisions: service.decide(s, body.requests) });
        return;
      }
      case 'events': {
        want('POST');
        const raw = await ex.body();
        const body = isEventsRequest(raw) ? raw : parse(EventsRequestSchema, raw);
        // Only a body large enough may hold an event too large: each is then measured, and one
        // over the limit is recorded as refused (the client's sequence goes on). An event is
        // measured as the service writes it, and JSON.stringify may write a number longer than it
        // was sent (`1e20` is 21 characters): at most 5.25 times as long, so a body under a
        // sixth of the limit cannot hold an event over it.
        const large = ex.size * 6 > MAX_EVENT_BYTES;
        const events = large
          ? body.events.map((e) => {
              const size = Buffer.byteLength(JSON.stringify(e.event));
              return size > MAX_EVENT_BYTES ? { seq: e.seq, event: { [OVERSIZE]: size } } : e;
            })
          : body.events;
        ex.reply(200, { ok: true, ...(await service.appendEvents(s, peer, events)) });
        return;
      }
      case 'state': {
        want('POST');
        service.setState(s, parse(SessionStateRequestSchema, await ex.body()));
        ex.reply(200, { ok: true, session: service.info(s) });
        return;
      }
      case 'close': {
        want('POST');
        const body = parse(CloseRequestSchema, await ex.body());
        if (body.lastSeq !== undefined) await service.settled(s, body.lastSeq);
        const destinations = service.destinations(s);
        await service.close(s);
        ex.reply(200, { ok: true, destinations });
        return;
      }
      case 'reload': {
        want('POST');
        const body = parse(ReloadRequestSchema, await ex.body());
        ex.reply(200, { ok: true, ...service.reload(s, Buffer.from(body.manifest, 'base64')) });
        return;
      }
      case 'watch': {
        want('GET');
        const ends: (() => void)[] = [];
        const write = ex.stream(() => {
          for (const end of ends) end();
        });
        const stop = service.watch(s, write);
        const ping = setInterval(() => write({ type: 'ping' }), 10_000);
        ends.push(stop, () => clearInterval(ping));
        ping.unref();
        return;
      }
      default:
        throw new CordonError('NOT_FOUND', `no such endpoint: ${url}`, { hint: 'see the README' });
    }
  }

  function adminOnly(peer: Peer, what: string): void {
    if (!service.isAdmin(peer))
      throw new CordonError(
        'DAEMON_FORBIDDEN',
        `uid ${peer.uid} may not ${what}: it needs root or membership of the service's admin group`,
        { hint: 'run it as root, or as a member of the cordon-admin group' },
      );
  }

  return {
    server,
    close(): void {
      server.close();
      http1.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** Whether a process accepts connections on a Unix socket now. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/**
 * Listen on the API socket: a stale socket (no daemon behind it) is replaced; one a daemon still
 * answers on (another state directory's, started with the same --socket) is left to it.
 */
export async function listenSocket(server: net.Server, path: string, mode: number): Promise<void> {
  checkSocketPath(path);
  if (existsSync(path)) {
    const st = lstatSync(path);
    if (!st.isSocket())
      throw new CordonError('DAEMON_SOCKET_INVALID', `${path} exists and is not a socket`, {
        file: path,
        hint: 'remove it and start the service again',
      });
    if (await answers(path))
      throw new CordonError('DAEMON_RUNNING', `another daemon answers on ${path}`, {
        file: path,
        hint: 'stop it first (`cordon daemon stop`), or give this one another --socket',
      });
    unlinkSync(path);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(
        new CordonError('DAEMON_LISTEN_FAILED', `cannot listen on ${path}: ${e.message}`, {
          file: path,
          hint: 'check the runtime directory',
          cause: e,
        }),
      ),
    );
    // Node's default backlog (511) refuses a burst of clients with EAGAIN; the kernel caps this
    // at net.core.somaxconn.
    server.listen({ path, backlog: 4096 }, () => resolve());
  });
  chmodSync(path, mode);
}
