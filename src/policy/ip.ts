import { ipv6Bytes } from '../manifest/network.js';

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

type Range = readonly [number[], number, AddressClass];

const v4 = (s: string): number[] => s.split('.').map(Number);

// Order matters: the first match names the class (metadata before link-local).
const V4_RANGES: readonly Range[] = [
  [v4('169.254.169.254'), 32, 'metadata'],
  [v4('169.254.170.2'), 32, 'metadata'],
  [v4('100.100.100.200'), 32, 'metadata'],
  [v4('192.0.0.192'), 32, 'metadata'],
  [v4('0.0.0.0'), 8, 'unspecified'],
  [v4('127.0.0.0'), 8, 'loopback'],
  [v4('10.0.0.0'), 8, 'private'],
  [v4('172.16.0.0'), 12, 'private'],
  [v4('192.168.0.0'), 16, 'private'],
  [v4('169.254.0.0'), 16, 'link-local'],
  [v4('100.64.0.0'), 10, 'cgnat'],
  [v4('224.0.0.0'), 4, 'multicast'],
  [v4('255.255.255.255'), 32, 'broadcast'],
  [v4('240.0.0.0'), 4, 'reserved'],
  [v4('192.0.0.0'), 24, 'reserved'],
  [v4('198.18.0.0'), 15, 'reserved'],
];

const V6_RANGES: readonly Range[] = [
  [ipv6Bytes('fd00:ec2::254'), 128, 'metadata'],
  [ipv6Bytes('::'), 128, 'unspecified'],
  [ipv6Bytes('::1'), 128, 'loopback'],
  [ipv6Bytes('fc00::'), 7, 'private'],
  [ipv6Bytes('fe80::'), 10, 'link-local'],
  [ipv6Bytes('fec0::'), 10, 'private'],
  [ipv6Bytes('ff00::'), 8, 'multicast'],
];

export function inPrefix(bytes: readonly number[], base: readonly number[], len: number): boolean {
  for (let bit = 0; bit < len; bit++) {
    const mask = 1 << (7 - (bit & 7));
    if (((bytes[bit >> 3] ?? 0) & mask) !== ((base[bit >> 3] ?? 0) & mask)) return false;
  }
  return true;
}

/**
 * The IPv4 address embedded in an IPv6 one (mapped ::ffff:a.b.c.d, compatible ::a.b.c.d,
 * NAT64 64:ff9b::/96, 6to4 2002::/16), so `::ffff:127.0.0.1` is judged as 127.0.0.1.
 */
export function embeddedIpv4(ip: IpAddress): IpAddress | undefined {
  if (ip.version !== 6) return undefined;
  const b = ip.bytes;
  const zero = (from: number, to: number): boolean => b.slice(from, to).every((x) => x === 0);
  let v: number[] | undefined;
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) v = b.slice(12, 16);
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
  const ranges = ip.version === 4 ? V4_RANGES : V6_RANGES;
  for (const [base, len, cls] of ranges) if (inPrefix(ip.bytes, base, len)) return cls;
  return undefined;
}
