/**
 * The endpoint service's client transport: requests over the framed transport
 * (src/protocol/wire.ts) on its Unix socket, answers checked. It imports only node:net, the error
 * type and the frame format (no zod at load, no child processes, no file system), so a process
 * that asks one decision and exits (an agent hook) starts fast.
 */
import net from 'node:net';
import { CordonError, type CordonCode } from '../errors.js';
import { errorAnswer, type AnswerCheck } from '../protocol/answers.js';
import type { ErrorBody } from '../protocol/daemon.js';
import { describeIssues } from '../protocol/issues.js';
import { FrameReader, MAX_RESPONSE_FRAME, readResponse, WIRE_MAGIC } from '../protocol/wire.js';

export type DaemonClientErrorCode = 'DAEMON_UNREACHABLE' | 'DAEMON_PROTOCOL';

/** How a client chose the daemon's socket (for messages). */
export type DaemonVia = 'CORDON_SOCKET' | 'system' | 'user';

export class DaemonError extends CordonError {
  /** The status the daemon answered with, as HTTP's (0 when it did not answer). */
  readonly status: number;
  /**
   * DAEMON_UNREACHABLE only: the request went out and waited its whole time without an answer
   * (a daemon may be working on it), rather than finding no daemon or a connection that ended.
   */
  timedOut = false;
  constructor(
    status: number,
    code: CordonCode,
    message: string,
    hint?: string,
    where: { file?: string | undefined; pointer?: string | undefined } = {},
  ) {
    super(code, message, {
      ...(hint === undefined ? {} : { hint }),
      ...(where.file === undefined ? {} : { file: where.file }),
      ...(where.pointer === undefined ? {} : { pointer: where.pointer }),
    });
    this.status = status;
  }
}

/** An answer as it came: its status and body. */
interface Answer {
  readonly status: number;
  readonly body: unknown;
}

interface Waiter {
  readonly resolve: (a: Answer) => void;
  readonly reject: (e: Error) => void;
  /** A stream (the watch) gets every frame with its id until the connection ends. */
  readonly stream?: (a: Answer) => void;
}

/**
 * One framed connection to the daemon (src/protocol/wire.ts): requests are sent as they come and
 * answered by id. While nothing is in flight the connection does not keep the process alive.
 */
class WireConnection {
  readonly #socket: net.Socket;
  readonly #reader = new FrameReader(MAX_RESPONSE_FRAME);
  readonly #waiters = new Map<number, Waiter>();
  #nextId = 1;
  #ended: Error | undefined;

  constructor(path: string, onEnd: () => void) {
    this.#socket = net.createConnection({ path });
    this.#socket.write(WIRE_MAGIC);
    this.#socket.unref();
    let first = true;
    this.#socket.on('data', (chunk: Buffer) => {
      if (first && chunk.subarray(0, 5).toString('latin1') === 'HTTP/') {
        this.#end(httpAnswer(path, chunk.toString('utf8')));
        return;
      }
      first = false;
      let frames: { value: unknown }[];
      const notDaemon = (why: string): DaemonError =>
        new DaemonError(
          0,
          'DAEMON_PROTOCOL',
          `what answers on ${path} is not a cordon daemon of this version: ${why}`,
          'is another program listening on the socket?',
        );
      try {
        frames = this.#reader.push(chunk);
      } catch (e) {
        this.#end(notDaemon((e as Error).message));
        return;
      }
      for (const { value } of frames) {
        const a = readResponse(value);
        if (a === undefined) {
          this.#end(notDaemon('an answer without an id and a status'));
          return;
        }
        // Id 0: about the connection itself (refused, or a frame it could not read).
        if (a.id === 0) {
          for (const w of this.#waiters.values()) w.resolve(a);
          this.#waiters.clear();
          this.#socket.destroy();
          continue;
        }
        const w = this.#waiters.get(a.id);
        if (w === undefined) continue;
        if (w.stream !== undefined) {
          w.stream(a);
          continue;
        }
        this.#waiters.delete(a.id);
        if (this.#waiters.size === 0) this.#socket.unref();
        w.resolve(a);
      }
    });
    this.#socket.on('error', (e) => this.#end(e));
    this.#socket.on('close', () => {
      this.#end(new Error('the connection closed'));
      onEnd();
    });
  }

  get ended(): boolean {
    return this.#ended !== undefined;
  }

  /** Send one request (its body already JSON, or a value to serialise). */
  send(
    req: { method: string; path: string; capability?: string },
    body: string | undefined,
    waiter: Omit<Waiter, 'resolve' | 'reject'> = {},
  ): { answer: Promise<Answer>; cancel: () => void } {
    const id = this.#nextId++;
    const answer = new Promise<Answer>((resolve, reject) => {
      if (this.#ended !== undefined) {
        reject(this.#ended);
        return;
      }
      this.#waiters.set(id, { resolve, reject, ...waiter });
      const head = JSON.stringify({ id, ...req });
      const json = body === undefined ? head : `${head.slice(0, -1)},"body":${body}}`;
      const bytes = Buffer.from(json, 'utf8');
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32BE(bytes.length, 0);
      this.#socket.ref();
      this.#socket.write(len);
      this.#socket.write(bytes);
    });
    return {
      answer,
      cancel: () => {
        this.#waiters.delete(id);
        if (this.#waiters.size === 0) this.#socket.unref();
      },
    };
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #end(e: Error): void {
    this.#ended ??= e;
    for (const w of this.#waiters.values()) w.reject(e);
    this.#waiters.clear();
    this.#socket.destroy();
  }
}

/** One client of one daemon socket, over one framed connection (opened again when it ends). */
export class DaemonClient {
  readonly socket: string;
  readonly #via: DaemonVia;
  #conn: WireConnection | undefined;

  constructor(target: { readonly socket: string; readonly via: DaemonVia }) {
    this.socket = target.socket;
    this.#via = target.via;
  }

  /** The error for a daemon that does not answer: names the socket and how to start it. */
  unreachable(cause: unknown): DaemonError {
    const how =
      this.#via === 'system'
        ? 'start the system service: `systemctl start cordond` (or ask your administrator)'
        : this.#via === 'CORDON_SOCKET'
          ? 'start the daemon CORDON_SOCKET names, or unset CORDON_SOCKET'
          : 'start it with `cordon daemon` (clients start it on demand unless CORDON_NO_AUTOSTART is set)';
    const e = new DaemonError(
      0,
      'DAEMON_UNREACHABLE',
      `the cordon daemon does not answer on ${this.socket} (${(cause as Error).message})`,
      how,
    );
    return e;
  }

  #connection(): WireConnection {
    if (this.#conn === undefined || this.#conn.ended) {
      const conn = new WireConnection(this.socket, () => {
        if (this.#conn === conn) this.#conn = undefined;
      });
      this.#conn = conn;
    }
    return this.#conn;
  }

  /**
   * Whether a daemon answers on the socket: one round trip on the connection then kept for use.
   * An answer, not just an accepted connection: a request is what tells an on-demand daemon it is
   * not idle, so one that was about to stop for idleness stays.
   */
  async connects(): Promise<boolean> {
    try {
      await this.request('GET', '/v1/status', undefined, {
        safeParse: (v: unknown) => ({ success: true as const, data: v }),
      });
      return true;
    } catch (e) {
      return e instanceof DaemonError && e.code !== 'DAEMON_UNREACHABLE';
    }
  }

  /**
   * One request. Resolves with the parsed answer; rejects with the daemon's own error (its code
   * and hint), or DAEMON_UNREACHABLE when nothing answered.
   */
  request<T>(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    schema: AnswerCheck<T>,
    opts: { capability?: string; timeoutMs?: number } = {},
  ): Promise<T> {
    return this.requestJson(
      method,
      path,
      body === undefined ? undefined : JSON.stringify(body),
      schema,
      opts,
    );
  }

  /** As request(), with the body already serialised as JSON. */
  requestJson<T>(
    method: 'GET' | 'POST',
    path: string,
    bodyJson: string | undefined,
    schema: AnswerCheck<T>,
    opts: { capability?: string; timeoutMs?: number } = {},
  ): Promise<T> {
    const sent = this.#connection().send(
      { method, path, ...(opts.capability === undefined ? {} : { capability: opts.capability }) },
      bodyJson,
    );
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        sent.cancel();
        const e = this.unreachable(new Error('timed out'));
        e.timedOut = true;
        reject(e);
      }, opts.timeoutMs ?? 60_000);
      timer.unref();
      sent.answer.then(
        (a) => {
          clearTimeout(timer);
          try {
            resolve(answerOf(a, schema));
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e instanceof DaemonError ? e : this.unreachable(e));
        },
      );
    });
  }

  /**
   * Follow a session's watch stream (on a connection of its own). `onMessage` gets each control
   * message; `onEnd` is called once when the stream ends (the daemon stopped or restarted):
   * reconnect then.
   */
  watch<M>(
    session: string,
    capability: string,
    schema: AnswerCheck<M>,
    onMessage: (m: M) => void,
    onEnd: (why: string) => void,
  ): () => void {
    let ended = false;
    const end = (why: string): void => {
      if (ended) return;
      ended = true;
      onEnd(why);
    };
    const conn = new WireConnection(this.socket, () => end('the stream closed'));
    const sent = conn.send(
      { method: 'GET', path: `/v1/sessions/${session}/watch`, capability },
      undefined,
      {
        stream: (a) => {
          if (a.status !== 200) {
            end(`status ${a.status}`);
            conn.destroy();
            return;
          }
          const m = schema.safeParse(a.body);
          if (m.success) onMessage(m.data);
        },
      },
    );
    sent.answer.then(
      (a) => end(`status ${a.status}`),
      (e: unknown) => end((e as Error).message),
    );
    return () => {
      ended = true;
      conn.destroy();
    };
  }
}

/** A daemon's answer checked: the value the schema admits, or the daemon's error. */
function answerOf<T>(a: Answer, schema: AnswerCheck<T>): T {
  if (a.status !== 200) {
    const err = errorBody(a.body);
    throw err !== undefined
      ? new DaemonError(a.status, err.code as CordonCode, err.message, err.hint, {
          file: err.file,
          pointer: err.pointer,
        })
      : new DaemonError(a.status, 'DAEMON_PROTOCOL', `status ${a.status} without an error body`);
  }
  const r = schema.safeParse(a.body);
  if (!r.success)
    throw new DaemonError(
      200,
      'DAEMON_PROTOCOL',
      `the daemon's answer does not match the protocol: ${describeIssues(r.error)}`,
      'use a client and daemon of the same version',
    );
  return r.data;
}

/**
 * An HTTP answer on a framed connection: the service refusing a connection over the caller's
 * limit before it knew the transport (429 with its error body), or a daemon of an older version
 * that speaks only HTTP.
 */
function httpAnswer(path: string, text: string): DaemonError {
  const status = Number(/^HTTP\/1\.[01] (\d{3}) /.exec(text)?.[1] ?? 0);
  const at = text.indexOf('\r\n\r\n');
  let body: unknown;
  try {
    // An error body from the service itself; whatever fails to parse is the older-daemon case.
    // eslint-disable-next-line no-restricted-syntax
    body = at < 0 ? undefined : JSON.parse(text.slice(at + 4));
  } catch {
    body = undefined;
  }
  const err = status === 429 ? errorBody(body) : undefined;
  if (err !== undefined)
    return new DaemonError(status, err.code as CordonCode, err.message, err.hint);
  return new DaemonError(
    0,
    'DAEMON_PROTOCOL',
    `the daemon on ${path} answers only HTTP: it is an older version of Cordon`,
    'stop it (`systemctl restart cordond`, or end its `cordon daemon` process) and run the command again',
  );
}

/** An error answer's fields, when the body is ErrorBodySchema's (checked without zod). */
function errorBody(v: unknown): ErrorBody | undefined {
  const r = errorAnswer.safeParse(v);
  return r.success ? r.data : undefined;
}
