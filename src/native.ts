import { createRequire } from 'node:module';
import { CordonError } from './errors.js';
import { packageFile } from './package-files.js';

export type NativeErrorCode = 'NATIVE_UNAVAILABLE';

/** The kernel's record of who is at the other end of a connected Unix-domain socket. */
export interface PeerCredentials {
  /** The peer's process id, as seen from this process's pid namespace (never 0). */
  pid: number;
  /** The peer's effective uid when it connected. */
  uid: number;
  /** The peer's effective gid when it connected. */
  gid: number;
}

interface NativeAddon {
  lockExclusive(fd: number): boolean;
  peerCredentials(fd: number): PeerCredentials;
}

let addon: NativeAddon | undefined;

/**
 * Cordon's Node-API addon (`build/Release/cordon_native.node`, built at install from
 * native/cordon-native.c), loaded on first use from the package root, so it is found from
 * `dist/`, from the single-file CLI bundle and from the sources alike. A missing addon is an
 * error: there is no weaker fallback for what it provides.
 */
function native(): NativeAddon {
  if (addon !== undefined) return addon;
  const file = packageFile('build', 'Release', 'cordon_native.node');
  try {
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (e) {
    throw new CordonError('NATIVE_UNAVAILABLE', `cannot load Cordon's native addon ${file}`, {
      file,
      hint: 'it is built at install: run `npm rebuild cordon` (in a checkout: `node scripts/build-native.mjs`; needs a C compiler and node-gyp)',
      cause: e,
    });
  }
  return addon;
}

/**
 * Take an exclusive flock(2) on an open descriptor without waiting: true when taken, false when
 * another open file description holds it. The kernel drops the lock when the descriptor's last
 * copy is closed, however the holder ends (SIGKILL, crash, full disk), so a lock can never be
 * left behind and never needs to be taken over.
 *
 * @example
 * const fd = openSync(lockFile, 'a');
 * if (!lockExclusive(fd)) throw new Error('busy');
 */
export function lockExclusive(fd: number): boolean {
  return native().lockExclusive(fd);
}

/**
 * The credentials of the process at the other end of a connected Unix-domain stream socket,
 * from getsockopt(SO_PEERCRED): the kernel records them when the peer calls connect(2), so
 * nothing the peer sends can change them. They are the peer's at connect time: a peer that
 * later changes uid or hands the descriptor to another process keeps the identity it connected
 * with, and its pid may have been reused once it has exited (the uid is the identity; the pid
 * is for the record).
 *
 * Throws (an Error whose `code` is the errno name, all-or-nothing) for a descriptor that is not
 * a socket (ENOTSOCK), not AF_UNIX (EAFNOSUPPORT: the kernel would answer with the overflow
 * uid, an ordinary user's number), a datagram socket (EPROTOTYPE), a listening or unconnected
 * socket (ENOTCONN) or a peer whose pid this process cannot see (ESRCH).
 *
 * @example
 * server.on('connection', (s) => {
 *   const { uid } = peerCredentials((s as unknown as { _handle: { fd: number } })._handle.fd);
 * });
 */
export function peerCredentials(fd: number): PeerCredentials {
  return native().peerCredentials(fd);
}
