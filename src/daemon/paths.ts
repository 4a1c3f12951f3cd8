import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultDirs, type CordonDirs } from '../env.js';
import { CordonError } from '../errors.js';

/**
 * Where the endpoint service lives. Two modes:
 * - `system`: a dedicated service user; policy in /etc/cordon (root-owned), state in
 *   /var/lib/cordon (the service user's, 0700), socket under /run/cordon. The governed users can
 *   neither read nor change the log, the device key or the session records.
 * - `user`: the user's own daemon with the XDG directories, started on demand by clients.
 */
export type DaemonMode = 'user' | 'system';

export interface DaemonPaths {
  readonly mode: DaemonMode;
  readonly dirs: CordonDirs;
  /** Holds the API socket and each session's egress socket directory. */
  readonly runtimeDir: string;
  readonly socket: string;
}

export const SYSTEM_PATHS = {
  policyDir: '/etc/cordon',
  stateDir: '/var/lib/cordon',
  runtimeDir: '/run/cordon',
  socket: '/run/cordon/daemon.sock',
} as const;

/** The service user and the group whose members administer the daemon (system mode). */
export const SERVICE_USER = 'cordon';
export const ADMIN_GROUP = 'cordon-admin';

/** The user's runtime directory for Cordon: `$XDG_RUNTIME_DIR/cordon`, else `/tmp/cordon-<uid>`. */
export function userRuntimeDir(env: NodeJS.ProcessEnv): string {
  const xdg = env['XDG_RUNTIME_DIR'];
  if (xdg !== undefined && xdg.startsWith('/')) return join(xdg, 'cordon');
  return `/tmp/cordon-${process.getuid?.() ?? 0}`;
}

/**
 * The user-mode socket for a state directory: the default directories share one socket name; any
 * other state directory gets its own (gpg-agent does the same for a non-default home).
 */
export function userSocket(env: NodeJS.ProcessEnv, home: string, dirs: CordonDirs): string {
  const runtime = userRuntimeDir(env);
  // The plain XDG directories (no CORDON_HOME, CORDON_POLICY_DIR, CORDON_STATE_DIR) share one
  // name; any other pair of directories has a daemon of its own.
  const xdg = defaultDirs(
    { XDG_CONFIG_HOME: env['XDG_CONFIG_HOME'], XDG_STATE_HOME: env['XDG_STATE_HOME'] },
    home,
  );
  if (xdg.stateDir === dirs.stateDir && xdg.policyDir === dirs.policyDir)
    return join(runtime, 'daemon.sock');
  const h = createHash('sha256').update(`${dirs.policyDir}\0${dirs.stateDir}`).digest('hex');
  return join(runtime, `d.${h.slice(0, 16)}`, 'daemon.sock');
}

/**
 * Make (or check) a directory that only its owner may use: created 0700, never through a
 * symbolic link, owned by this process's user. Another user's directory at the path (planted in
 * /tmp) is refused, not used.
 */
export function ensurePrivateDir(dir: string, mode = 0o700): void {
  mkdirSync(dir, { recursive: true, mode });
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0)
    throw new CordonError(
      'DAEMON_DIR_UNSAFE',
      `${dir} is not a directory of this user's that only it can write (${st.isSymbolicLink() ? 'a symbolic link' : `owner ${st.uid}, mode ${(st.mode & 0o777).toString(8)}`})`,
      { file: dir, hint: `remove ${dir} (someone else may have planted it) and start again` },
    );
}

/**
 * Directory of one session's egress socket, bound read-only into its sandbox. Named by the first
 * 64 bits of the session's random id: a Unix socket path has at most 107 bytes, and runtime
 * directories can be long.
 */
export function sessionEgressDir(runtimeDir: string, session: string): string {
  return join(runtimeDir, 's', session.replaceAll('-', '').slice(0, 16));
}

export const EGRESS_SOCKET_NAME = 'egress.sock';

/** The longest path a Unix socket can be bound at (sun_path holds 108 bytes with its NUL). */
export const SOCKET_PATH_MAX = 107;

/** Refuse a socket path the kernel would silently cut short. */
export function checkSocketPath(path: string): void {
  if (Buffer.byteLength(path) > SOCKET_PATH_MAX)
    throw new CordonError(
      'DAEMON_SOCKET_PATH_TOO_LONG',
      `${path} is ${Buffer.byteLength(path)} bytes; a Unix socket path has at most ${SOCKET_PATH_MAX}`,
      {
        file: path,
        hint: 'use a shorter runtime directory (XDG_RUNTIME_DIR, --runtime-dir or --socket)',
      },
    );
}

/** A user's name and home from the local user database (/etc/passwd), by uid. */
export function passwdEntry(uid: number): { name: string; home: string } | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[2] === String(uid) && f[0] !== undefined) return { name: f[0], home: f[5] ?? '' };
    }
  } catch {
    // no user database: the caller names the user by uid
  }
  return undefined;
}
