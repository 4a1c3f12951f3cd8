/**
 * The thin client of the endpoint service: the framed transport over its Unix socket, answers checked with the
 * protocol's schemas, and the on-demand start of a user daemon. Loaded by every client verb, so
 * it imports little: no policy, no proxy, no zod classic.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, realpathSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import type { CordonDirs } from '../env.js';
import { CordonError, type CordonCode } from '../errors.js';
import { packageFile } from '../package-files.js';
import { ErrorBodySchema, describeIssues, WatchMessageSchema } from '../protocol/daemon.js';
import type { WatchMessage } from '../protocol/daemon.js';
import { FrameReader, MAX_RESPONSE_FRAME, readResponse, WIRE_MAGIC } from '../protocol/wire.js';
import { ensurePrivateDir, SYSTEM_PATHS, userRuntimeDir, userSocket } from './paths.js';

type Schema<T> = {
  safeParse(
    v: unknown,
  ): { success: true; data: T } | { success: false; error: Parameters<typeof describeIssues>[0] };
};

export type DaemonClientErrorCode = 'DAEMON_UNREACHABLE' | 'DAEMON_PROTOCOL';

/** Which daemon a client talks to, and whether it may start one. */
export interface DaemonTarget {
  readonly socket: string;
  /** How the socket was chosen (for messages). */
  readonly via: 'CORDON_SOCKET' | 'system' | 'user';
  readonly dirs: CordonDirs;
}

/**
 * The daemon for this client: `CORDON_SOCKET` when set; else the system service when the machine
 * has one (its socket exists — then a client never starts its own); else the user's daemon for
 * these directories.
 */
export function daemonTarget(
  env: NodeJS.ProcessEnv,
  home: string,
  dirs: CordonDirs,
  systemSocket: string = SYSTEM_PATHS.socket,
): DaemonTarget {
  const explicit = env['CORDON_SOCKET'];
  const system = existsSync(systemSocket);
  // On a machine with a system service, an environment variable must not route the user's
  // agents to a daemon of the user's own (with a trust store of the user's own): that would
  // widen what the organisation's signed policy allows.
  if (system && explicit !== undefined && explicit !== '' && explicit !== systemSocket)
    throw new CordonError(
      'DAEMON_OPTION_FORBIDDEN',
      `CORDON_SOCKET=${explicit}: this machine has a system service (${systemSocket}), which every client uses`,
      { hint: 'unset CORDON_SOCKET' },
    );
  if (explicit !== undefined && explicit !== '')
    return { socket: explicit, via: 'CORDON_SOCKET', dirs };
  if (system) return { socket: systemSocket, via: 'system', dirs };
  const socket = userSocket(env, home, dirs);
  // The user daemon's directories must be this user's own before anything is said to what
  // listens there: another user may have created /tmp/cordon-<uid> first and serve a daemon of
  // theirs in it. Absent ones are made private when a daemon is started.
  for (const dir of new Set([userRuntimeDir(env), dirname(socket)]))
    if (existsSync(dir)) ensurePrivateDir(dir);
  return { socket, via: 'user', dirs };
}

export class DaemonError extends CordonError {
  /** The status the daemon answered with, as HTTP's (0 when it did not answer). */
  readonly status: number;
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
        this.#end(
          new DaemonError(
            0,
            'DAEMON_PROTOCOL',
            `the daemon on ${path} answers only HTTP: it is an older version of Cordon`,
            'stop it (`systemctl restart cordond`, or end its `cordon daemon` process) and run the command again',
          ),
        );
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

  /** Resolves once connected; rejects when nothing listens. */
  ready(): Promise<void> {
    if (this.#ended !== undefined) return Promise.reject(this.#ended);
    if (!this.#socket.connecting) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#socket.once('connect', () => resolve());
      this.#socket.once('close', () => reject(this.#ended ?? new Error('the connection closed')));
    });
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
  readonly #via: DaemonTarget['via'];
  #conn: WireConnection | undefined;

  constructor(target: Pick<DaemonTarget, 'socket' | 'via'>) {
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

  /** Whether something accepts connections on the socket (the connection is kept for use). */
  async connects(): Promise<boolean> {
    try {
      await this.#connection().ready();
      return true;
    } catch {
      return false;
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
    schema: Schema<T>,
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
    schema: Schema<T>,
    opts: { capability?: string; timeoutMs?: number } = {},
  ): Promise<T> {
    const sent = this.#connection().send(
      { method, path, ...(opts.capability === undefined ? {} : { capability: opts.capability }) },
      bodyJson,
    );
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        sent.cancel();
        reject(this.unreachable(new Error('timed out')));
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
  watch(
    session: string,
    capability: string,
    onMessage: (m: WatchMessage) => void,
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
          const m = WatchMessageSchema.safeParse(a.body);
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
function answerOf<T>(a: Answer, schema: Schema<T>): T {
  if (a.status !== 200) {
    const err = ErrorBodySchema.safeParse(a.body);
    throw err.success
      ? new DaemonError(a.status, err.data.code as CordonCode, err.data.message, err.data.hint, {
          file: err.data.file,
          pointer: err.data.pointer,
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

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A client of the daemon for these directories. A user daemon that does not answer is started
 * (detached, its output in `daemon.log` beside the socket) and waited for, the way gpg-agent is;
 * a system service or a CORDON_SOCKET daemon never is: the client refuses instead.
 */
export async function connectDaemon(
  env: NodeJS.ProcessEnv,
  home: string,
  dirs: CordonDirs,
  opts: { autostart?: boolean; systemSocket?: string } = {},
): Promise<DaemonClient> {
  const target = daemonTarget(env, home, dirs, opts.systemSocket);
  const client = new DaemonClient(target);
  if (target.via !== 'user' || opts.autostart === false || env['CORDON_NO_AUTOSTART'] === '1')
    return client;
  if (existsSync(target.socket) && (await client.connects())) return client;
  const started = startUserDaemon(env, target);
  // The daemon takes its lock, opens the log, then listens: a few hundred ms on a cold start.
  const deadline = Date.now() + 15_000;
  for (let wait = 10; Date.now() < deadline; wait = Math.min(wait * 2, 100)) {
    await sleep(wait);
    if (existsSync(target.socket) && (await client.connects())) return client;
    // A daemon that could not start says why in its log; another one that won the race to
    // start is fine (it answers at the next look).
    if (started.exitCode !== null && started.exitCode !== 0) {
      const why = startFailure(target, started.logOffset);
      if (why !== undefined && why.code !== 'DAEMON_RUNNING') throw why;
    }
  }
  throw client.unreachable(
    new Error(`started a daemon, but it did not answer within 15 s (see ${logFile(target)})`),
  );
}

function logFile(target: DaemonTarget): string {
  return join(dirname(target.socket), 'daemon.log');
}

/**
 * The script this `cordon` was started from, when it is Cordon's CLI (so a daemon it starts runs
 * the same code), else the package's own `cordon` bin.
 */
function cliEntry(): string {
  const script = process.argv[1];
  if (script !== undefined && /\/cli\/(main|bin)\.js$/.test(realOr(script))) return script;
  return packageFile('dist', 'cli', 'bin.js');
}

function realOr(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/** The error a daemon that failed to start wrote to its log (`error[CODE]: message`). */
function startFailure(target: DaemonTarget, offset: number): CordonError | undefined {
  let text: string;
  try {
    text = readFileSync(logFile(target)).subarray(offset).toString('utf8');
  } catch {
    return undefined;
  }
  const m =
    /error\[([A-Z_]+)\]: (.*)(?:\n {2}file: (.*))?(?:\n {2}field: .*)?(?:\n {2}fix: (.*))?/.exec(
      text,
    );
  if (m === null) return undefined;
  return new CordonError(
    m[1] as CordonError['code'],
    `the cordon daemon could not start: ${m[2] ?? ''}`,
    {
      ...(m[3] === undefined ? {} : { file: m[3] }),
      hint: m[4] ?? `see ${logFile(target)}`,
    },
  );
}

function startUserDaemon(
  env: NodeJS.ProcessEnv,
  target: DaemonTarget,
): { readonly exitCode: number | null; readonly logOffset: number } {
  ensurePrivateDir(userRuntimeDir(env));
  ensurePrivateDir(dirname(target.socket));
  const out = openSync(logFile(target), 'a', 0o600);
  const state = { exitCode: null as number | null, logOffset: fstatSync(out).size };
  try {
    const child = spawn(
      process.execPath,
      [
        cliEntry(),
        'daemon',
        '--on-demand',
        '--policy-dir',
        target.dirs.policyDir,
        '--state-dir',
        target.dirs.stateDir,
        '--socket',
        target.socket,
        // Session egress sockets under the user's runtime directory itself: short paths.
        '--runtime-dir',
        userRuntimeDir(env),
      ],
      { detached: true, stdio: ['ignore', out, out], env, cwd: '/' },
    );
    child.on('exit', (code) => (state.exitCode = code ?? 1));
    child.unref();
  } finally {
    closeSync(out);
  }
  return state;
}
