/**
 * Which endpoint service a client talks to, and the on-demand start of a user daemon; the
 * transport itself is ./wire-client.ts. Loaded by every client verb, so
 * it imports little: no policy, no proxy, no zod classic.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CordonDirs } from '../env.js';
import { CordonError } from '../errors.js';
import { packageFile } from '../package-files.js';
import { ensurePrivateDir, SYSTEM_PATHS, userRuntimeDir, userSocket } from './paths.js';
import { DaemonClient, DaemonError, type DaemonVia } from './wire-client.js';

export { DaemonClient, DaemonError };
export type { DaemonClientErrorCode } from './wire-client.js';

/** Which daemon a client talks to, and whether it may start one. */
export interface DaemonTarget {
  readonly socket: string;
  /** How the socket was chosen (for messages). */
  readonly via: DaemonVia;
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
  if (!mayStart(env, target, opts)) return client;
  if (existsSync(target.socket) && (await client.connects())) return client;
  await startAndWait(env, target, client);
  return client;
}

/**
 * As connectDaemon, with the client's first request as the probe: when the socket is there the
 * request goes out at once, with no round trip before it, and `answer` is its answer. Only when
 * nothing answered it (no daemon listening, or an on-demand one that stopped as the request
 * came) is a user daemon started, as connectDaemon does, and the request sent once more. A
 * request that went out and timed out is not sent again: a daemon may be working on it.
 */
export async function connectDaemonWith<T>(
  env: NodeJS.ProcessEnv,
  home: string,
  dirs: CordonDirs,
  first: (client: DaemonClient) => Promise<T>,
  opts: { autostart?: boolean; systemSocket?: string } = {},
): Promise<{ client: DaemonClient; answer: Promise<T> }> {
  const target = daemonTarget(env, home, dirs, opts.systemSocket);
  const client = new DaemonClient(target);
  if (!mayStart(env, target, opts)) return { client, answer: first(client) };
  if (!existsSync(target.socket)) {
    await startAndWait(env, target, client);
    return { client, answer: first(client) };
  }
  const answer = first(client).catch(async (e: unknown) => {
    if (!(e instanceof DaemonError) || e.code !== 'DAEMON_UNREACHABLE' || e.timedOut) throw e;
    await startAndWait(env, target, client);
    return first(client);
  });
  return { client, answer };
}

function mayStart(
  env: NodeJS.ProcessEnv,
  target: DaemonTarget,
  opts: { autostart?: boolean },
): boolean {
  return target.via === 'user' && opts.autostart !== false && env['CORDON_NO_AUTOSTART'] !== '1';
}

/** Start a user daemon and wait until it answers (or say why it could not start). */
async function startAndWait(
  env: NodeJS.ProcessEnv,
  target: DaemonTarget,
  client: DaemonClient,
): Promise<void> {
  const started = startUserDaemon(env, target);
  // The daemon takes its lock, opens the log, then listens: a few hundred ms on a cold start.
  const deadline = Date.now() + 15_000;
  for (let wait = 10; Date.now() < deadline; wait = Math.min(wait * 2, 100)) {
    await sleep(wait);
    if (existsSync(target.socket) && (await client.connects())) return;
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
