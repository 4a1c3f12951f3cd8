import type { Socket } from 'node:net';
import { readFileSync } from 'node:fs';
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

/** An address as /proc/net/tcp{,6} writes it, decoded: `127.0.0.1`, `::1`, `::ffff:127.0.0.1`. */
function procAddress(hex: string): string | undefined {
  const word = (h: string): number[] =>
    // Each 32-bit word is in the host's (little-endian) byte order.
    [6, 4, 2, 0].map((i) => parseInt(h.slice(i, i + 2), 16));
  if (hex.length === 8) return word(hex).join('.');
  if (hex.length !== 32) return undefined;
  const bytes = [0, 8, 16, 24].flatMap((i) => word(hex.slice(i, i + 8)));
  if (bytes.slice(0, 15).every((b) => b === 0) && bytes[15] === 1) return '::1';
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff)
    return `::ffff:${bytes.slice(12).join('.')}`;
  return undefined;
}

/**
 * The uid owning the client end of a loopback TCP connection this process accepted, from the
 * kernel's socket table (/proc/net/tcp and tcp6, the way identd answers): the entry whose local
 * end is the connection's remote end and whose remote end is ours. Undefined when it cannot be
 * established (not loopback, another network namespace, already closed): refuse then.
 */
export function tcpPeerUid(socket: Socket, procNet = '/proc/net'): number | undefined {
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (remoteAddress === undefined || localAddress === undefined) return undefined;
  const norm = (a: string): string => a.replace(/^::ffff:(?=\d+\.)/, '');
  const client = `${norm(remoteAddress)}:${remotePort}`;
  const server = `${norm(localAddress)}:${localPort}`;
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`${procNet}/${file}`, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const [local, remote, uid] = [f[1], f[2], f[7]];
      if (local === undefined || remote === undefined || uid === undefined) continue;
      const end = (x: string): string | undefined => {
        const [a, p] = x.split(':');
        const addr = a === undefined ? undefined : procAddress(a);
        return addr === undefined || p === undefined
          ? undefined
          : `${norm(addr)}:${parseInt(p, 16)}`;
      };
      if (end(local) === client && end(remote) === server) return Number(uid);
    }
  }
  return undefined;
}
