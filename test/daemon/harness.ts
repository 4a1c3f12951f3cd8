import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { BIN, type SandboxEnv } from '../sandbox/harness.js';

/** What a process left behind. */
export interface Exited {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run a program to its end without blocking this process (the test's servers keep serving). */
export function exec(
  argv: readonly string[],
  opts: SpawnOptions & { killAfterMs?: number } = {},
): Promise<Exited> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] ?? '', argv.slice(1), {
      ...opts,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    // A process that should have ended (a daemon that should have been refused) is not left
    // behind when it did not.
    const timer =
      opts.killAfterMs === undefined
        ? undefined
        : setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The prefix that runs a command as `user` with its own groups (setpriv, no login, no systemd). */
export function as(user: string): string[] {
  return ['setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--'];
}

/** An answer of the daemon's API. */
export interface ApiAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly raw: string;
}

/**
 * One API request with curl over the Unix socket, run as `prefix` (e.g. `as('cordon-ta')`),
 * so the daemon sees that user in the socket's peer credentials.
 */
export async function curl(
  prefix: readonly string[],
  socket: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<ApiAnswer> {
  const argv = [
    ...prefix,
    'curl',
    '-sS',
    '--max-time',
    '30',
    '--unix-socket',
    socket,
    '-X',
    method,
    '-w',
    '\n%{http_code}',
    ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
    ...(body === undefined
      ? []
      : ['-H', 'content-type: application/json', '--data-binary', JSON.stringify(body)]),
    `http://cordon${path}`,
  ];
  const r = await exec(argv);
  const nl = r.stdout.lastIndexOf('\n');
  const raw = r.stdout.slice(0, nl);
  const status = Number(r.stdout.slice(nl + 1));
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    // not JSON: the caller asserts on raw
  }
  return { status, body: parsed, raw: raw + r.stderr };
}

/** One API request from this process (root, or the test's own user). */
export function request(
  socket: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<ApiAnswer> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath: socket,
        method,
        path,
        agent: false,
        headers: {
          host: 'cordon',
          ...(payload === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': payload.length }),
          ...headers,
        },
      },
      (res) => {
        let raw = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (raw += d));
        res.on('end', () => {
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(raw) as Record<string, unknown>;
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, raw });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll until `get` returns a value (or throw after `ms`). */
export async function until<T>(
  get: () => T | undefined | Promise<T | undefined>,
  what: string,
  ms = 20_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A daemon running as a process of its own, the way systemd would run it. */
export interface DaemonProcess {
  readonly child: ChildProcess;
  readonly socket: string;
  /** Its stderr so far. */
  readonly log: () => string;
  readonly exited: Promise<Exited>;
}

/**
 * Start `cordon daemon ARGS` (as `prefix`) and wait until its socket answers `/v1/status`. The
 * daemon is not detached: a test that ends kills it with its process group.
 */
export async function startDaemonProcess(
  socket: string,
  args: readonly string[],
  opts: { prefix?: readonly string[]; env?: Record<string, string> } = {},
): Promise<DaemonProcess> {
  const argv = [
    ...(opts.prefix ?? []),
    process.execPath,
    BIN,
    'daemon',
    '--socket',
    socket,
    ...args,
  ];
  const child = spawn(argv[0] ?? '', argv.slice(1), {
    env: opts.env ?? { PATH: '/usr/bin:/bin', HOME: '/nonexistent', LANG: 'C.UTF-8' },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: '/',
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<Exited>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err })),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  await until(async () => {
    if (gone) throw new Error(`the daemon exited before it answered: ${err}`);
    if (!existsSync(socket)) return undefined;
    try {
      const r = await request(socket, 'GET', '/v1/status');
      return r.status === 200 ? true : undefined;
    } catch {
      return undefined;
    }
  }, `the daemon on ${socket}`);
  return { child, socket, log: () => err, exited };
}

/** Stop a daemon process (SIGTERM) and wait for it. */
export async function stopDaemonProcess(d: DaemonProcess | undefined): Promise<void> {
  if (d === undefined || d.child.exitCode !== null || d.child.signalCode !== null) return;
  d.child.kill('SIGTERM');
  await d.exited;
}

/** A sandbox environment's daemon, as its own process, on a socket in the environment's directory. */
export async function startEnvDaemon(
  s: SandboxEnv,
): Promise<{ daemon: DaemonProcess; socket: string }> {
  const socket = join(s.dir, 'api.sock');
  const daemon = await startDaemonProcess(
    socket,
    ['--policy-dir', join(s.cordonHome, 'policy'), '--state-dir', join(s.cordonHome, 'state')],
    { env: s.env },
  );
  return { daemon, socket };
}
