// A slow, obviously-correct reference for the manifest layer of decide(): linear scans,
// recursive glob matching by segments, WHATWG URL parsing, and node:net's BlockList for
// address ranges. It shares no matching code with src/policy.
import { BlockList } from 'node:net';
import { MANDATORY_DENIES } from '../../src/manifest/mandatory-denies.js';
import type { Manifest } from '../../src/manifest/schema.js';
import type { Effect, PolicyRequest } from '../../src/policy/types.js';

const DEFAULT_PORT: Record<string, number> = { https: 443, http: 80, wss: 443, ws: 80 };

function expand(p: string, home: string): string {
  return p === '~' ? home : p.startsWith('~/') ? home + p.slice(1) : p;
}

function segs(p: string): string[] {
  return p.split('/').filter((s) => s !== '');
}

function segMatch(pat: string, name: string): boolean {
  if (pat === '') return name === '';
  if (pat[0] === '*')
    return segMatch(pat.slice(1), name) || (name !== '' && segMatch(pat, name.slice(1)));
  if (name === '') return false;
  return (pat[0] === '?' || pat[0] === name[0]) && segMatch(pat.slice(1), name.slice(1));
}

function globMatch(pat: string[], path: string[]): boolean {
  if (pat.length === 0) return path.length === 0;
  const [head, ...rest] = pat;
  if (head === '**') {
    for (let k = 0; k <= path.length; k++) if (globMatch(rest, path.slice(k))) return true;
    return false;
  }
  return path.length > 0 && segMatch(head ?? '', path[0] ?? '') && globMatch(rest, path.slice(1));
}

/** Does a manifest path pattern (absolute) select `path`? Literal patterns cover their subtree. */
export function refPathMatch(pattern: string, path: string): boolean {
  if (pattern.startsWith('/**/')) {
    const tail = segs(pattern.slice(4));
    const p = segs(path);
    for (let i = 0; i + tail.length <= p.length; i++)
      if (tail.every((t, j) => p[i + j] === t)) return true;
    return false;
  }
  const pat = segs(pattern);
  const p = segs(path);
  if (!pat.some((s) => s.includes('*') || s.includes('?')))
    return pat.length <= p.length && pat.every((s, i) => s === p[i]);
  return globMatch(pat, p);
}

const internal = new BlockList();
for (const [net, len] of [
  ['0.0.0.0', 8],
  ['127.0.0.0', 8],
  ['10.0.0.0', 8],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
  ['169.254.0.0', 16],
  ['100.64.0.0', 10],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
  ['192.0.0.0', 24],
  ['198.18.0.0', 15],
  ['100.100.100.200', 32],
] as const) {
  internal.addSubnet(net, len, 'ipv4');
}
for (const [net, len] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
] as const)
  internal.addSubnet(net, len, 'ipv6');

function isV4(h: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+$/.test(h);
}

function inCidr(addr: string, cidr: string): boolean {
  const [net = '', len = '0'] = cidr.split('/');
  const b = new BlockList();
  const v4 = isV4(net);
  b.addSubnet(net, Number(len), v4 ? 'ipv4' : 'ipv6');
  return b.check(addr, isV4(addr) ? 'ipv4' : 'ipv6');
}

interface RefScope {
  scheme: string;
  host: string;
  wildcard: boolean;
  cidr: string | undefined;
  port: number;
  prefix: string;
}

function refScope(text: string): RefScope {
  const m = /^([a-z]+):\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?(\/.*)?$/.exec(text);
  if (m === null) throw new Error(`reference cannot read scope ${text}`);
  const scheme = m[1] ?? '';
  const rawHost = m[2] ?? '';
  const port = m[3] === undefined ? (DEFAULT_PORT[scheme] ?? 0) : Number(m[3]);
  const prefix = m[4] ?? '/';
  if (rawHost.startsWith('[')) {
    const inner = rawHost.slice(1, -1);
    return {
      scheme,
      host: inner,
      wildcard: false,
      cidr: inner.includes('/') ? inner : `${inner}/${isV4(inner) ? 32 : 128}`,
      port,
      prefix,
    };
  }
  if (isV4(rawHost))
    return { scheme, host: rawHost, wildcard: false, cidr: `${rawHost}/32`, port, prefix };
  const wildcard = rawHost.startsWith('*.');
  return {
    scheme,
    host: wildcard ? rawHost.slice(2) : rawHost,
    wildcard,
    cidr: undefined,
    port,
    prefix,
  };
}

function scopeAllows(
  s: RefScope,
  scheme: string | undefined,
  host: string,
  ip: boolean,
  port: number,
  path: string | undefined,
): boolean {
  if (scheme !== undefined && s.scheme !== scheme) return false;
  if (s.port !== port) return false;
  if (s.cidr !== undefined) {
    if (!ip) return false;
    if (isV4(host) !== isV4(s.cidr.split('/')[0] ?? '')) return false;
    if (!inCidr(host, s.cidr)) return false;
  } else {
    if (ip) return false;
    if (s.wildcard ? !host.endsWith('.' + s.host) : host !== s.host) return false;
  }
  if (path === undefined) return s.prefix === '/';
  return s.prefix === '/' || path === s.prefix || path.startsWith(s.prefix + '/');
}

function apiAllows(scope: string, req: string): boolean {
  if (!scope.endsWith(':*')) return scope === req;
  return req.startsWith(scope.slice(0, -1)) && req.split(':').length >= scope.split(':').length;
}

/** The reference decision (effect only) for clean requests: absolute normalised paths, lower-case hosts. */
export function referenceDecide(m: Manifest, home: string, req: PolicyRequest): Effect {
  const approvals = m.requiresApproval;
  if (req.kind === 'file.read' || req.kind === 'file.write' || req.kind === 'exec') {
    const write = req.kind === 'file.write';
    const path = req.path;
    for (const d of MANDATORY_DENIES) {
      if (d.access === 'write' && !write) continue;
      if (!d.paths.some((p) => refPathMatch(expand(p, home), path))) continue;
      const o = d.overridable ? m.overrides.find((x) => x.deny === d.id) : undefined;
      const lifted =
        o !== undefined &&
        (!write || o.access === 'write') &&
        (o.paths === undefined || o.paths.some((p) => refPathMatch(expand(p, home), path)));
      if (!lifted) return 'deny';
    }
    if (req.kind === 'exec') {
      if (!m.commandsAllowed.includes(path)) return 'deny';
      const ask = approvals.some(
        (a) =>
          (a.startsWith('exec:') && refPathMatch(expand(a.slice(5), home), path)) ||
          ((a.startsWith('/') || a.startsWith('~')) && refPathMatch(expand(a, home), path)),
      );
      return ask ? 'ask' : 'allow';
    }
    const grants = write ? m.writePaths : [...m.readPaths, ...m.writePaths];
    if (!grants.some((g) => refPathMatch(expand(g, home), path))) return 'deny';
    const kind = write ? 'write:' : 'read:';
    const ask = approvals.some(
      (a) =>
        (a.startsWith(kind) && refPathMatch(expand(a.slice(kind.length), home), path)) ||
        ((a.startsWith('/') || a.startsWith('~')) && refPathMatch(expand(a, home), path)),
    );
    return ask ? 'ask' : 'allow';
  }
  if (req.kind === 'net.connect' || req.kind === 'http.request') {
    let scheme: string | undefined;
    let host: string;
    let port: number;
    let path: string | undefined;
    if (req.kind === 'http.request') {
      const u = new URL(req.url);
      scheme = u.protocol.slice(0, -1);
      host = u.hostname.replace(/^\[|\]$/g, '');
      port = u.port === '' ? (DEFAULT_PORT[scheme] ?? 0) : Number(u.port);
      path = u.pathname;
    } else {
      scheme = req.scheme;
      host = req.host;
      port = req.port;
    }
    const ip = isV4(host) || host.includes(':');
    const scopes = m.networkScopes.map(refScope);
    if (host === 'localhost' || host.endsWith('.localhost')) return 'deny';
    if (ip && internal.check(host, isV4(host) ? 'ipv4' : 'ipv6')) {
      if (!scopes.some((s) => s.cidr !== undefined && scopeAllows(s, scheme, host, ip, port, path)))
        return 'deny';
    }
    if (!scopes.some((s) => scopeAllows(s, scheme, host, ip, port, path))) return 'deny';
    const ask = approvals.some(
      (a) => a.includes('://') && scopeAllows(refScope(a), scheme, host, ip, port, path),
    );
    return ask ? 'ask' : 'allow';
  }
  if (req.kind === 'api.call') {
    if (!m.apiScopes.some((s) => apiAllows(s, req.scope))) return 'deny';
    const ask = approvals.some(
      (a) => !a.includes('/') && !a.startsWith('~') && apiAllows(a, req.scope),
    );
    return ask ? 'ask' : 'allow';
  }
  return m.secrets.includes(req.name) ? 'allow' : 'deny';
}
