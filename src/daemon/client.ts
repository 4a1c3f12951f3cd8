/**
 * The thin client of the endpoint service: HTTP over its Unix socket, answers checked with the
 * protocol's schemas, and the on-demand start of a user daemon. Loaded by every client verb, so
 * it imports little: no policy, no proxy, no zod classic.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, realpathSync } from 'node:fs';
import http from 'node:http';
import { dirname, join } from 'node:path';
import type { CordonDirs } from '../env.js';
import { CordonError, type CordonCode } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import { packageFile } from '../package-files.js';
import { ErrorBodySchema, describeIssues, WatchMessageSchema } from '../protocol/daemon.js';
import type { WatchMessage } from '../protocol/daemon.js';
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
  /** The HTTP status the daemon answered with (0 when it did not answer). */
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

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** One connection-reusing client of one daemon socket. */
export class DaemonClient {
  readonly socket: string;
  readonly #via: DaemonTarget['via'];

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
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socket,
          agent,
          method,
          path,
          headers: {
            host: 'cordon',
            ...(payload === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': payload.length }),
            ...(opts.capability === undefined
              ? {}
              : { authorization: `Bearer ${opts.capability}` }),
          },
          timeout: opts.timeoutMs ?? 60_000,
        },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('error', (e) => reject(this.unreachable(e)));
          res.on('end', () => {
            let value: unknown;
            try {
              value = parseStrictJson(Buffer.concat(parts), { maxBytes: 64 * 1024 * 1024 });
            } catch (e) {
              reject(
                new DaemonError(
                  res.statusCode ?? 0,
                  'DAEMON_PROTOCOL',
                  `the daemon's answer is not JSON: ${(e as Error).message}`,
                  'is another program listening on the socket?',
                ),
              );
              return;
            }
            if (res.statusCode !== 200) {
              const err = ErrorBodySchema.safeParse(value);
              reject(
                err.success
                  ? new DaemonError(
                      res.statusCode ?? 0,
                      // The daemon answers with the codes of its CordonErrors (one build).
                      err.data.code as CordonCode,
                      err.data.message,
                      err.data.hint,
                      { file: err.data.file, pointer: err.data.pointer },
                    )
                  : new DaemonError(
                      res.statusCode ?? 0,
                      'DAEMON_PROTOCOL',
                      `HTTP ${res.statusCode} without an error body`,
                    ),
              );
              return;
            }
            const r = schema.safeParse(value);
            if (!r.success)
              reject(
                new DaemonError(
                  200,
                  'DAEMON_PROTOCOL',
                  `the daemon's answer does not match the protocol: ${describeIssues(r.error)}`,
                  'use a client and daemon of the same version',
                ),
              );
            else resolve(r.data);
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (e) => reject(this.unreachable(e)));
      req.end(payload);
    });
  }

  /**
   * Follow a session's watch stream. `onMessage` gets each control message; `onEnd` is called
   * once when the stream ends (the daemon stopped or restarted): reconnect then.
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
    const req = http.request(
      {
        socketPath: this.socket,
        method: 'GET',
        path: `/v1/sessions/${session}/watch`,
        headers: { host: 'cordon', authorization: `Bearer ${capability}` },
        // Its own connection: a pooled one would be held for the session's life.
        agent: false,
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          end(`HTTP ${res.statusCode}`);
          return;
        }
        res.setEncoding('utf8');
        let buf = '';
        res.on('data', (d: string) => {
          buf += d;
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            try {
              const m = WatchMessageSchema.safeParse(parseStrictJson(line));
              if (m.success) onMessage(m.data);
            } catch {
              // not a message
            }
          }
        });
        res.on('end', () => end('the stream ended'));
        res.on('error', (e) => end(e.message));
        res.on('close', () => end('the stream closed'));
      },
    );
    req.on('error', (e) => end(e.message));
    req.end();
    return () => {
      ended = true;
      req.destroy();
    };
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Does anything answer on the socket? */
async function answers(client: DaemonClient): Promise<boolean> {
  try {
    await client.request('GET', '/v1/status', undefined, {
      safeParse: (v: unknown) => ({ success: true as const, data: v }),
    });
    return true;
  } catch (e) {
    if (e instanceof DaemonError && e.code !== 'DAEMON_UNREACHABLE') return true;
    return false;
  }
}

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
  if (existsSync(target.socket) && (await answers(client))) return client;
  const started = startUserDaemon(env, target);
  // The daemon takes its lock, opens the log, then listens: a few hundred ms on a cold start.
  const deadline = Date.now() + 15_000;
  for (let wait = 10; Date.now() < deadline; wait = Math.min(wait * 2, 100)) {
    await sleep(wait);
    if (existsSync(target.socket) && (await answers(client))) return client;
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
