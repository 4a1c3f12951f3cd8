/**
 * IP address parsing in every notation an HTTP client or resolver accepts, and the ranges an
 * agent must never reach unless a manifest names the address as an IP literal.
 */

export interface IpAddress {
  readonly version: 4 | 6;
  /** 4 or 16 bytes. */
  readonly bytes: readonly number[];
  /** Canonical text: dotted quad, or RFC 5952 IPv6. */
  readonly text: string;
}

/**
 * Parse an IPv4 address the way the WHATWG URL parser and inet_aton do: 1 to 4 parts, each
 * decimal, octal (leading 0) or hex (0x); the last part fills the remaining bytes. Returns
 * undefined for anything that is not such an address.
 */
export function parseIpv4Any(s: string): IpAddress | undefined {
  const t = s.endsWith('.') ? s.slice(0, -1) : s;
  if (t === '') return undefined;
  const parts = t.split('.');
  if (parts.length > 4) return undefined;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0[xX][0-9a-fA-F]*$/.test(p)) n = p.length === 2 ? 0 : parseInt(p.slice(2), 16);
    else if (/^0[0-7]+$/.test(p)) n = parseInt(p.slice(1), 8);
    else if (/^(0|[1-9]\d*)$/.test(p)) n = Number(p);
    else return undefined;
    if (!Number.isFinite(n)) return undefined;
    nums.push(n);
  }
  const last = nums.pop() ?? 0;
  if (nums.some((n) => n > 255)) return undefined;
  if (last >= 256 ** (4 - nums.length)) return undefined;
  let value = last;
  nums.forEach((n, i) => {
    value += n * 256 ** (3 - i);
  });
  const bytes = [(value >>> 24) & 255, (value >>> 16) & 255, (value >>> 8) & 255, value & 255];
  return { version: 4, bytes, text: bytes.join('.') };
}

/** Parse an IPv6 address (brackets and a zone id are accepted and dropped). */
export function parseIpv6(s: string): IpAddress | undefined {
  let t = s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
  const zone = t.indexOf('%');
  if (zone !== -1) t = t.slice(0, zone);
  if (!t.includes(':') || !/^[0-9a-fA-F:.]+$/.test(t)) return undefined;
  let host: string;
  try {
    host = new URL(`http://[${t}]/`).hostname;
  } catch {
    return undefined;
  }
  const text = host.slice(1, -1);
  return { version: 6, bytes: ipv6Bytes(text), text };
}

/** Parse any IP notation; undefined when `s` is a name. */
export function parseIpAny(s: string): IpAddress | undefined {
  return s.includes(':') ? parseIpv6(s) : parseIpv4Any(s);
}

export type AddressClass =
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'cgnat'
  | 'multicast'
  | 'metadata'
  | 'broadcast'
  | 'reserved';

/**
 * Addresses an agent must never reach unless a manifest names them as IP literals. The one
 * table for the decision point, lint and the Cedar translation. Order matters: the first match
 * names the class (metadata before link-local).
 */
export const INTERNAL_RANGES: readonly { readonly cidr: string; readonly cls: AddressClass }[] = [
  { cidr: '169.254.169.254/32', cls: 'metadata' },
  { cidr: '169.254.170.2/32', cls: 'metadata' },
  { cidr: '100.100.100.200/32', cls: 'metadata' },
  { cidr: '192.0.0.192/32', cls: 'metadata' },
  { cidr: '0.0.0.0/8', cls: 'unspecified' },
  { cidr: '127.0.0.0/8', cls: 'loopback' },
  { cidr: '10.0.0.0/8', cls: 'private' },
  { cidr: '172.16.0.0/12', cls: 'private' },
  { cidr: '192.168.0.0/16', cls: 'private' },
  { cidr: '169.254.0.0/16', cls: 'link-local' },
  { cidr: '100.64.0.0/10', cls: 'cgnat' },
  { cidr: '224.0.0.0/4', cls: 'multicast' },
  { cidr: '255.255.255.255/32', cls: 'broadcast' },
  { cidr: '240.0.0.0/4', cls: 'reserved' },
  { cidr: '192.0.0.0/24', cls: 'reserved' },
  { cidr: '198.18.0.0/15', cls: 'reserved' },
  // Documentation (TEST-NET-1..3) and the deprecated 6to4 relay anycast: never a real service.
  { cidr: '192.0.2.0/24', cls: 'reserved' },
  { cidr: '198.51.100.0/24', cls: 'reserved' },
  { cidr: '203.0.113.0/24', cls: 'reserved' },
  { cidr: '192.88.99.0/24', cls: 'reserved' },
  { cidr: 'fd00:ec2::254/128', cls: 'metadata' },
  { cidr: '::/128', cls: 'unspecified' },
  { cidr: '::1/128', cls: 'loopback' },
  { cidr: 'fc00::/7', cls: 'private' },
  { cidr: 'fe80::/10', cls: 'link-local' },
  { cidr: 'fec0::/10', cls: 'private' },
  { cidr: 'ff00::/8', cls: 'multicast' },
  // Local-use NAT64 (RFC 8215): translates to whatever the local network decides, internal
  // addresses included, with the IPv4 address in a position the prefix length chooses.
  { cidr: '64:ff9b:1::/48', cls: 'private' },
  // Teredo: the client's IPv4 address is obfuscated inside; a tunnel endpoint, never a service.
  { cidr: '2001::/32', cls: 'reserved' },
  // The rest of the IETF protocol assignments block (benchmarking, ORCHID, ...), documentation
  // (2001:db8::/32, 3fff::/20), discard-only (100::/64) and SRv6 SIDs: not global services.
  { cidr: '2001::/23', cls: 'reserved' },
  { cidr: '2001:db8::/32', cls: 'reserved' },
  { cidr: '3fff::/20', cls: 'reserved' },
  { cidr: '100::/64', cls: 'reserved' },
  { cidr: '5f00::/16', cls: 'reserved' },
];

interface Range {
  readonly version: 4 | 6;
  readonly bytes: readonly number[];
  readonly len: number;
  readonly cls: AddressClass;
}

const RANGES: readonly Range[] = INTERNAL_RANGES.map(({ cidr, cls }) => {
  const [addr = '', len = '0'] = cidr.split('/');
  const v6 = addr.includes(':');
  return {
    version: v6 ? 6 : 4,
    bytes: v6 ? ipv6Bytes(addr) : addr.split('.').map(Number),
    len: Number(len),
    cls,
  };
});

/** Bytes of a canonical IPv6 address (as printed by the WHATWG URL parser). */
export function ipv6Bytes(addr: string): number[] {
  const [head = '', tail] = addr.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.flatMap((g) => {
    const v = parseInt(g, 16);
    return [v >> 8, v & 0xff];
  });
}

export function inPrefix(bytes: readonly number[], base: readonly number[], len: number): boolean {
  for (let bit = 0; bit < len; bit++) {
    const mask = 1 << (7 - (bit & 7));
    if (((bytes[bit >> 3] ?? 0) & mask) !== ((base[bit >> 3] ?? 0) & mask)) return false;
  }
  return true;
}

/**
 * The IPv4 address embedded in an IPv6 one (mapped ::ffff:a.b.c.d, translated
 * ::ffff:0:a.b.c.d, compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16), so
 * `::ffff:127.0.0.1` is judged as 127.0.0.1.
 */
export function embeddedIpv4(ip: IpAddress): IpAddress | undefined {
  if (ip.version !== 6) return undefined;
  const b = ip.bytes;
  const zero = (from: number, to: number): boolean => b.slice(from, to).every((x) => x === 0);
  let v: number[] | undefined;
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) v = b.slice(12, 16);
  else if (zero(0, 8) && b[8] === 0xff && b[9] === 0xff && zero(10, 12)) v = b.slice(12, 16);
  else if (zero(0, 12) && !(b[12] === 0 && b[13] === 0 && b[14] === 0 && (b[15] ?? 0) <= 1))
    v = b.slice(12, 16);
  else if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12))
    v = b.slice(12, 16);
  else if (b[0] === 0x20 && b[1] === 0x02) v = b.slice(2, 6);
  return v === undefined ? undefined : { version: 4, bytes: v, text: v.join('.') };
}

/** Classify an address; undefined for ordinary public addresses. */
export function classifyAddress(ip: IpAddress): AddressClass | undefined {
  const inner = embeddedIpv4(ip);
  if (inner !== undefined) return classifyAddress(inner);
  for (const r of RANGES)
    if (r.version === ip.version && inPrefix(ip.bytes, r.bytes, r.len)) return r.cls;
  return undefined;
}

/** Whether an address range (`bytes`/`prefixLength`) contains or lies in an internal range. */
export function rangeTouchesInternal(ip: IpAddress, prefixLength: number): boolean {
  if (classifyAddress(ip) !== undefined) return true;
  return RANGES.some(
    (r) =>
      r.version === ip.version &&
      r.len >= prefixLength &&
      inPrefix(r.bytes, ip.bytes, prefixLength),
  );
}

/** Whether a URL host names this machine: `localhost` (and subdomains) or a loopback address. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const ip = parseIpAny(h);
  return ip !== undefined && classifyAddress(ip) === 'loopback';
}
