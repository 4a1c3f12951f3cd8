import type { Socket } from 'node:net';
import { CordonError } from '../errors.js';
import { peerCredentials } from '../native.js';

export type PeerErrorCode = 'PEER_UNKNOWN';

/** Who is calling the daemon: the kernel's record of the process that connected. */
export interface Peer {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * The identity of the process at the other end of a connection the daemon accepted, from the
 * socket's peer credentials (SO_PEERCRED). It is the only identity the daemon trusts: a uid or
 * pid in a request body is ignored. When it cannot be established (the socket is already
 * closed, it is not a Unix-domain stream socket, the peer's pid is invisible from here) this
 * throws PEER_UNKNOWN and the daemon must refuse the connection; a missing native addon throws
 * NATIVE_UNAVAILABLE, which refuses it too.
 *
 * Node exposes no API for this; the descriptor is read from the socket's libuv handle, which
 * exists for as long as the socket is open.
 *
 * @example
 * net.createServer((socket) => {
 *   let peer: Peer;
 *   try { peer = peerOf(socket); } catch { socket.destroy(); return; }
 * });
 */
export function peerOf(socket: Socket): Peer {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0)
    throw new CordonError(
      'PEER_UNKNOWN',
      'cannot identify the caller: the connection has no open descriptor (closed, or not a socket the daemon accepted)',
    );
  try {
    const { pid, uid, gid } = peerCredentials(fd);
    return { pid, uid, gid };
  } catch (e) {
    if (e instanceof CordonError) throw e;
    const why = e instanceof Error ? e.message : String(e);
    throw new CordonError('PEER_UNKNOWN', `cannot identify the caller: ${why}`, {
      hint: 'the daemon accepts only local Unix-domain stream connections whose peer it can see',
      cause: e,
    });
  }
}
