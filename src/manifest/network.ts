import { domainToASCII } from 'node:url';
import { getPublicSuffix } from 'tldts';
import { CordonError } from '../errors.js';
import { inPrefix, ipv6Bytes } from './ip.js';
import { memoise } from './memo.js';

export type NetworkErrorCode =
  | 'NET_SCOPE_SYNTAX'
  | 'NET_SCHEME'
  | 'NET_USERINFO'
  | 'NET_WILDCARD_ALL'
  | 'NET_WILDCARD_SYNTAX'
  | 'NET_WILDCARD_PUBLIC_SUFFIX'
  | 'NET_HOST_INVALID'
  | 'NET_IP_NONCANONICAL'
  | 'NET_CIDR_INVALID'
  | 'NET_PORT'
  | 'NET_PATH';

export const DEFAULT_PORTS = { https: 443, http: 80, wss: 443, ws: 80 } as const;
export type NetworkScheme = keyof typeof DEFAULT_PORTS;

/** A network scope from a manifest, checked and normalised. */
export interface NetworkScope {
  /** Normalised text; the port is written only when it differs from the scheme's default. */
  readonly text: string;
  readonly scheme: NetworkScheme;
  /** `dns` names (punycode, lower case, no trailing dot) or written IP literals. */
  readonly kind: 'dns' | 'ipv4' | 'ipv6';
  /** Host without the `*.` prefix; for IPs the canonical address. */
  readonly host: string;
  /** `*.host`: any subdomain of host, never host itself. */
  readonly wildcard: boolean;
  /** CIDR prefix length for IP ranges; full length for single addresses. */
  readonly prefixLength: number;
  readonly port: number;
  /** Path prefix, `/` for any path; matches whole segments. */
  readonly pathPrefix: string;
}

function netError(code: NetworkErrorCode, raw: string, message: string, hint: string): CordonError {
  return new CordonError(code, `"${raw}": ${message}`, { hint });
}

const SCHEME_RE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s;
const LABEL_RE = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;
const STRICT_V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
// What a WHATWG URL parser would treat as an IPv4 address: a numeric last label.
const NUMERIC_LABEL = /^(0x[0-9a-f]*|\d+)$/i;

/**
 * Parse `scheme://host[:port][/path-prefix]`. Hosts are an exact name, a leftmost `*.`
 * wildcard (subdomains only, never the apex, never on a public suffix), or an IP literal
 * written in canonical form (`203.0.113.7`, `[2001:db8::1]`, ranges as `[10.0.0.0/8]`).
 *
 * @example
 * parseNetworkScope('HTTPS://*.Sheets.Example.com:443').text; // 'https://*.sheets.example.com'
 */
function parseNetworkScopeUncached(raw: string): NetworkScope {
  if (/[\u0000-\u0020\u007f-\u009f]/.test(raw)) {
    throw netError(
      'NET_SCOPE_SYNTAX',
      raw,
      'contains whitespace or control characters',
      'remove them',
    );
  }
  const m = SCHEME_RE.exec(raw);
  if (!m)
    throw netError(
      'NET_SCOPE_SYNTAX',
      raw,
      'is not scheme://host[:port][/path]',
      'write e.g. https://api.example.com',
    );
  const scheme = (m[1] ?? '').toLowerCase();
  if (!(scheme in DEFAULT_PORTS)) {
    throw netError(
      'NET_SCHEME',
      raw,
      `scheme "${scheme}" is not supported`,
      'use https, http, wss or ws',
    );
  }
  const sch = scheme as NetworkScheme;
  const rest = m[2] ?? '';
  if (/[?#]/.test(rest))
    throw netError(
      'NET_PATH',
      raw,
      'query strings and fragments are not scopes',
      'remove ?... and #...',
    );
  const slash = rest.indexOf('/', rest.startsWith('[') ? rest.indexOf(']') + 1 : 0);
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (authority.includes('@')) {
    throw netError(
      'NET_USERINFO',
      raw,
      'user information (user:pass@) is not allowed',
      'remove it; credentials are injected by the proxy from `secrets`',
    );
  }
  let hostPart: string;
  let portPart: string | undefined;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) throw netError('NET_SCOPE_SYNTAX', raw, 'unclosed [', 'close the bracket');
    hostPart = authority.slice(0, close + 1);
    const after = authority.slice(close + 1);
    if (after !== '' && !after.startsWith(':'))
      throw netError('NET_SCOPE_SYNTAX', raw, 'unexpected text after ]', 'write [address]:port');
    portPart = after === '' ? undefined : after.slice(1);
  } else {
    const colon = authority.lastIndexOf(':');
    hostPart = colon === -1 ? authority : authority.slice(0, colon);
    portPart = colon === -1 ? undefined : authority.slice(colon + 1);
  }
  const port = parsePort(raw, portPart, sch);
  const pathPrefix = parsePathPrefix(raw, path);
  const host = parseHost(raw, hostPart);
  const hostText =
    host.kind === 'ipv6' || (host.kind === 'ipv4' && host.prefixLength !== 32)
      ? `[${host.host}${host.prefixLength === (host.kind === 'ipv6' ? 128 : 32) ? '' : `/${host.prefixLength}`}]`
      : `${host.wildcard ? '*.' : ''}${host.host}`;
  const text = `${sch}://${hostText}${port === DEFAULT_PORTS[sch] ? '' : `:${port}`}${pathPrefix === '/' ? '' : pathPrefix}`;
  return { text, scheme: sch, port, pathPrefix, ...host };
}

function parsePort(raw: string, portPart: string | undefined, scheme: NetworkScheme): number {
  if (portPart === undefined) return DEFAULT_PORTS[scheme];
  if (!/^\d{1,5}$/.test(portPart)) {
    throw netError(
      'NET_PORT',
      raw,
      `port "${portPart}" is not a number`,
      'write a port from 1 to 65535, or leave it out for the default',
    );
  }
  const port = Number(portPart);
  if (port < 1 || port > 65535)
    throw netError('NET_PORT', raw, `port ${port} is out of range`, 'write a port from 1 to 65535');
  return port;
}

function parsePathPrefix(raw: string, path: string): string {
  if (path === '' || path === '/') return '/';
  const segs = path.split('/').slice(1);
  if (segs[segs.length - 1] === '') segs.pop();
  for (const seg of segs) {
    if (seg === '' || seg === '.' || seg === '..') {
      throw netError(
        'NET_PATH',
        raw,
        'path prefix has empty, . or .. segments',
        'write a plain prefix such as /v1/sheets',
      );
    }
    if (/%(2f|5c|2e)/i.test(seg) || seg.includes('\\')) {
      throw netError(
        'NET_PATH',
        raw,
        'path prefix hides a separator or dot in percent-encoding',
        'write the path without encoded / \\ or .',
      );
    }
    if (/%(?![0-9a-f]{2})/i.test(seg))
      throw netError('NET_PATH', raw, 'bad percent-encoding in path', 'fix the % escapes');
    if (seg.includes('*'))
      throw netError(
        'NET_PATH',
        raw,
        'wildcards are not allowed in a path prefix',
        'a prefix already covers everything beneath it',
      );
  }
  return '/' + segs.map((s) => s.replace(/%[0-9a-f]{2}/gi, (e) => e.toUpperCase())).join('/');
}

type HostParts = Pick<NetworkScope, 'kind' | 'host' | 'wildcard' | 'prefixLength'>;

function parseHost(raw: string, hostPart: string): HostParts {
  if (hostPart === '')
    throw netError('NET_HOST_INVALID', raw, 'host is empty', 'write a host name');
  if (hostPart.startsWith('[')) return parseBracketed(raw, hostPart.slice(1, -1));
  if (hostPart === '*') {
    throw netError(
      'NET_WILDCARD_ALL',
      raw,
      '"*" would allow every host',
      'list the hosts the agent needs',
    );
  }
  let wildcard = false;
  let name = hostPart;
  if (name.startsWith('*.')) {
    wildcard = true;
    name = name.slice(2);
  }
  if (name.includes('*')) {
    throw netError(
      'NET_WILDCARD_SYNTAX',
      raw,
      '* is allowed only as the whole leftmost label (*.example.com)',
      'write *.example.com',
    );
  }
  const labels = name.replace(/\.$/, '').split('.');
  const last = labels[labels.length - 1] ?? '';
  if (NUMERIC_LABEL.test(last)) {
    if (wildcard)
      throw netError(
        'NET_WILDCARD_SYNTAX',
        raw,
        'wildcards do not apply to IP addresses',
        'use a CIDR range: [10.0.0.0/8]',
      );
    if (!STRICT_V4.test(name)) {
      throw netError(
        'NET_IP_NONCANONICAL',
        raw,
        `"${name}" is an IP address in a non-canonical notation`,
        'write IPv4 addresses as four decimal numbers (203.0.113.7)',
      );
    }
    return { kind: 'ipv4', host: name, wildcard: false, prefixLength: 32 };
  }
  const ascii = domainToASCII(name.replace(/\.$/, ''));
  if (ascii === '' || ascii.length > 253 || !ascii.split('.').every((l) => LABEL_RE.test(l))) {
    throw netError(
      'NET_HOST_INVALID',
      raw,
      `"${hostPart}" is not a valid host name`,
      'write a DNS name such as api.example.com',
    );
  }
  if (wildcard) {
    const suffix = getPublicSuffix(ascii, { allowPrivateDomains: true });
    if (suffix === null || suffix === ascii) {
      throw netError(
        'NET_WILDCARD_PUBLIC_SUFFIX',
        raw,
        `"${ascii}" is a public suffix; *.${ascii} would allow every site registered under it`,
        'name the organisation domain: *.example.co.uk, not *.co.uk',
      );
    }
  }
  return { kind: 'dns', host: ascii, wildcard, prefixLength: 0 };
}

function parseBracketed(raw: string, inner: string): HostParts {
  const slash = inner.indexOf('/');
  const addr = slash === -1 ? inner : inner.slice(0, slash);
  const lenText = slash === -1 ? undefined : inner.slice(slash + 1);
  if (STRICT_V4.test(addr)) {
    const len = parsePrefixLength(raw, lenText, 32);
    const bytes = addr.split('.').map(Number);
    checkHostBits(raw, bytes, len);
    return { kind: 'ipv4', host: addr, wildcard: false, prefixLength: len };
  }
  if (addr.includes('%')) {
    throw netError(
      'NET_HOST_INVALID',
      raw,
      'IPv6 zone identifiers are not allowed',
      'remove %zone',
    );
  }
  let canonical: string;
  try {
    canonical = new URL(`http://[${addr}]/`).hostname.slice(1, -1);
  } catch (cause) {
    throw new CordonError(
      'NET_HOST_INVALID',
      `"${raw}": "${addr}" is not an IPv6 or IPv4 address`,
      {
        hint: 'write [2001:db8::1] or [10.0.0.0/8]',
        cause,
      },
    );
  }
  const len = parsePrefixLength(raw, lenText, 128);
  checkHostBits(raw, ipv6Bytes(canonical), len);
  return { kind: 'ipv6', host: canonical, wildcard: false, prefixLength: len };
}

function parsePrefixLength(raw: string, text: string | undefined, max: number): number {
  if (text === undefined) return max;
  if (!/^\d{1,3}$/.test(text) || Number(text) > max) {
    throw netError(
      'NET_CIDR_INVALID',
      raw,
      `prefix length "${text}" is not 0..${max}`,
      `write a prefix length from 0 to ${max}`,
    );
  }
  return Number(text);
}

function checkHostBits(raw: string, bytes: readonly number[], len: number): void {
  for (let bit = len; bit < bytes.length * 8; bit++) {
    if (((bytes[bit >> 3] ?? 0) >> (7 - (bit & 7))) & 1) {
      throw netError(
        'NET_CIDR_INVALID',
        raw,
        `address has bits set beyond /${len}`,
        'write the network address of the range',
      );
    }
  }
}

function ipInScope(scope: NetworkScope, addr: string): boolean {
  const bytes =
    scope.kind === 'ipv4'
      ? STRICT_V4.test(addr)
        ? addr.split('.').map(Number)
        : undefined
      : addr.includes(':')
        ? ipv6Bytes(addr)
        : undefined;
  if (bytes === undefined) return false;
  const base = scope.kind === 'ipv4' ? scope.host.split('.').map(Number) : ipv6Bytes(scope.host);
  return inPrefix(bytes, base, scope.prefixLength);
}

/** Segment-aware prefix test: `/api` covers `/api` and `/api/x`, not `/apix`. */
export function pathHasPrefix(path: string, prefix: string): boolean {
  if (prefix === '/') return true;
  return path === prefix || path.startsWith(prefix + '/');
}

/** Whether two scopes may allow a common URL. */
export function scopesOverlap(a: NetworkScope, b: NetworkScope): boolean {
  if (a.scheme !== b.scheme || a.port !== b.port || a.kind !== b.kind) return false;
  if (!(pathHasPrefix(a.pathPrefix, b.pathPrefix) || pathHasPrefix(b.pathPrefix, a.pathPrefix)))
    return false;
  if (a.kind === 'dns') {
    if (!a.wildcard && !b.wildcard) return a.host === b.host;
    if (a.wildcard && b.wildcard)
      return a.host === b.host || a.host.endsWith('.' + b.host) || b.host.endsWith('.' + a.host);
    const [w, e] = a.wildcard ? [a, b] : [b, a];
    return e.host.endsWith('.' + w.host);
  }
  const shorter = a.prefixLength <= b.prefixLength ? a : b;
  const longer = shorter === a ? b : a;
  return ipInScope(shorter, longer.host);
}

/** Memoised: manifests repeat the same entries across parse, lint and compile. */
export const parseNetworkScope = memoise(parseNetworkScopeUncached);
