/**
 * Reads the TLS ClientHello at the start of a CONNECT tunnel, so the proxy can compare the
 * server name the client will ask for (SNI) with the host it asked to reach, before any byte
 * goes upstream. Pure: takes bytes, returns a value.
 *
 * Strict on purpose: a ClientHello that a TLS server would reject, or that could be read two
 * ways (two server_name extensions, two names in one), is refused rather than guessed at.
 */

export type ClientHelloResult =
  | { readonly status: 'incomplete' }
  | { readonly status: 'invalid'; readonly reason: string }
  | { readonly status: 'ok'; readonly hello: ClientHello };

export interface ClientHello {
  /** The host_name from server_name, lower case without a trailing dot; undefined when absent. */
  readonly sni: string | undefined;
  /** Highest version offered: 'TLS 1.3', 'TLS 1.2', ... */
  readonly version: string;
  readonly alpn: readonly string[];
  /** The client sent an encrypted_client_hello extension: the real name is encrypted. */
  readonly ech: boolean;
  /** Bytes of the TLS records that carried the ClientHello. */
  readonly length: number;
}

/** A ClientHello (even with post-quantum key shares) is a few KiB; refuse absurd ones. */
export const CLIENT_HELLO_MAX_BYTES = 64 * 1024;

const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;
const EXT_SUPPORTED_VERSIONS = 0x002b;
const EXT_ECH = 0xfe0d;
const HOST_NAME = /^(?=.{1,253}$)(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$/;

function versionName(v: number): string {
  switch (v) {
    case 0x0304:
      return 'TLS 1.3';
    case 0x0303:
      return 'TLS 1.2';
    case 0x0302:
      return 'TLS 1.1';
    case 0x0301:
      return 'TLS 1.0';
    default:
      return `0x${v.toString(16).padStart(4, '0')}`;
  }
}

const invalid = (reason: string): ClientHelloResult => ({ status: 'invalid', reason });

/**
 * Parse the ClientHello from the first bytes a client sent into a tunnel. Returns `incomplete`
 * while more bytes are needed (the message may span several records and TCP segments).
 *
 * @example
 * const r = parseClientHello(firstBytes);
 * if (r.status === 'ok' && r.hello.sni !== 'api.example.com') refuse();
 */
export function parseClientHello(buf: Uint8Array): ClientHelloResult {
  // Reassemble the handshake message from consecutive handshake records.
  const parts: Uint8Array[] = [];
  let have = 0;
  let need = -1;
  let off = 0;
  while (need === -1 || have < need) {
    if (buf.length < off + 5) return { status: 'incomplete' };
    if (buf[off] !== HANDSHAKE)
      return invalid(
        off === 0 ? 'the tunnel does not start with a TLS handshake' : 'record is not a handshake',
      );
    if (buf[off + 1] !== 0x03) return invalid('not a TLS record');
    const len = ((buf[off + 3] ?? 0) << 8) | (buf[off + 4] ?? 0);
    if (len === 0 || len > 16384 + 2048) return invalid('TLS record length out of range');
    if (off + 5 + len > CLIENT_HELLO_MAX_BYTES) return invalid('ClientHello is too large');
    if (buf.length < off + 5 + len) return { status: 'incomplete' };
    parts.push(buf.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    if (need === -1) {
      // The 4-byte handshake header itself may be split across records.
      if (have < 4) continue;
      const head = concat(parts, Math.min(have, 4));
      if (head[0] !== CLIENT_HELLO) return invalid('first handshake message is not a ClientHello');
      need = 4 + (((head[1] ?? 0) << 16) | ((head[2] ?? 0) << 8) | (head[3] ?? 0));
      if (need > CLIENT_HELLO_MAX_BYTES) return invalid('ClientHello is too large');
    }
  }
  const msg = concat(parts, have).subarray(4, need);
  const hello = parseBody(msg);
  if (typeof hello === 'string') return invalid(hello);
  return { status: 'ok', hello: { ...hello, length: off } };
}

function concat(parts: readonly Uint8Array[], n: number): Uint8Array {
  if (parts.length === 1 && (parts[0]?.length ?? 0) >= n)
    return (parts[0] ?? new Uint8Array()).subarray(0, n);
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    if (at >= n) break;
    const take = Math.min(p.length, n - at);
    out.set(p.subarray(0, take), at);
    at += take;
  }
  return out;
}

/** A bounds-checked reader; every read past the end throws, caught once in parseBody. */
class Reader {
  private at = 0;
  constructor(private readonly b: Uint8Array) {}
  get left(): number {
    return this.b.length - this.at;
  }
  u8(): number {
    if (this.at + 1 > this.b.length) throw new RangeError('truncated');
    return this.b[this.at++] ?? 0;
  }
  u16(): number {
    return (this.u8() << 8) | this.u8();
  }
  bytes(n: number): Uint8Array {
    if (this.at + n > this.b.length) throw new RangeError('truncated');
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  vec8(): Uint8Array {
    return this.bytes(this.u8());
  }
  vec16(): Uint8Array {
    return this.bytes(this.u16());
  }
}

function parseBody(msg: Uint8Array): Omit<ClientHello, 'length'> | string {
  try {
    const r = new Reader(msg);
    const legacy = r.u16();
    r.bytes(32); // random
    if (r.vec8().length > 32) return 'session id longer than 32 bytes';
    const suites = r.vec16();
    if (suites.length === 0 || suites.length % 2 !== 0) return 'bad cipher suite list';
    if (r.vec8().length === 0) return 'no compression methods';
    let sni: string | undefined;
    let versions: number[] = [];
    let alpn: string[] = [];
    let ech = false;
    if (r.left > 0) {
      const exts = new Reader(r.vec16());
      if (r.left !== 0) return 'bytes after the extensions';
      const seen = new Set<number>();
      while (exts.left > 0) {
        const type = exts.u16();
        const data = exts.vec16();
        if (seen.has(type)) return `extension ${type} appears twice`;
        seen.add(type);
        if (type === EXT_SERVER_NAME) {
          const got = serverName(data);
          if (got.startsWith('!')) return got.slice(1);
          sni = got;
        } else if (type === EXT_SUPPORTED_VERSIONS) {
          const v = new Reader(data).vec8();
          versions = [];
          for (let i = 0; i + 1 < v.length; i += 2)
            versions.push(((v[i] ?? 0) << 8) | (v[i + 1] ?? 0));
        } else if (type === EXT_ALPN) {
          const list = new Reader(new Reader(data).vec16());
          alpn = [];
          while (list.left > 0) alpn.push(Buffer.from(list.vec8()).toString('latin1'));
        } else if (type === EXT_ECH) {
          ech = true;
        }
      }
    }
    // GREASE values (0x?a?a) are ignored when picking the highest version.
    const real = versions.filter((v) => (v & 0x0f0f) !== 0x0a0a);
    const top = real.length > 0 ? Math.max(...real) : legacy;
    return { sni, version: versionName(top), alpn, ech };
  } catch {
    return 'ClientHello is truncated';
  }
}

/** The one host_name in a server_name extension, or `!reason`. */
function serverName(data: Uint8Array): string {
  const r = new Reader(data);
  const list = new Reader(r.vec16());
  if (r.left !== 0) return '!bytes after the server name list';
  let name: string | undefined;
  while (list.left > 0) {
    const type = list.u8();
    const value = list.vec16();
    if (type !== 0) continue; // only host_name (0) is defined; others are ignored by servers
    if (name !== undefined) return '!more than one server name';
    name = Buffer.from(value).toString('latin1');
  }
  if (name === undefined) return '!server_name extension without a host name';
  const lower = name.toLowerCase();
  const host = lower.endsWith('.') ? lower.slice(0, -1) : lower;
  if (!HOST_NAME.test(host)) return '!server name is not a valid host name';
  return host;
}
