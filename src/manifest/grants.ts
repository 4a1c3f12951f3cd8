import { apiScopeAllows, parseApiScope, type ApiScope } from './api-scopes.js';
import { MANDATORY_DENIES } from './mandatory-denies.js';
import { parseNetworkScope, scopeMatchesUrl, type NetworkScope } from './network.js';
import { compilePathMatcher, expandHome, parsePathPattern } from './paths.js';
import type { Manifest } from './schema.js';

export type GrantAccess = 'read' | 'write' | 'exec' | 'net' | 'api';
export type GrantAnswer = 'allow' | 'deny' | 'ask';

/**
 * The manifest's grants compiled for one user: lexical answers to "is this path, URL,
 * command or API scope granted, and does it need approval", with the mandatory denies
 * applied. Paths must already be absolute and normalised; resolving symlinks and /proc
 * aliases is the policy decision point's job, not this one's.
 */
export interface CompiledGrants {
  check(access: GrantAccess, target: string): GrantAnswer;
}

type Matcher = (p: string) => boolean;

export function compileGrants(m: Manifest, home: string): CompiledGrants {
  const abs = (p: string): string => expandHome(parsePathPattern(p), home);
  const read: Matcher[] = [...m.readPaths, ...m.writePaths].map((p) => compilePathMatcher(abs(p)));
  const write: Matcher[] = m.writePaths.map((p) => compilePathMatcher(abs(p)));
  const commands = new Set(m.commandsAllowed);
  const scopes: NetworkScope[] = m.networkScopes.map(parseNetworkScope);
  const apis: ApiScope[] = m.apiScopes.map(parseApiScope);
  const lifted = new Map(m.overrides.map((o) => [o.deny, o]));
  const denyRead: Matcher[] = [];
  const denyWrite: Matcher[] = [];
  for (const d of MANDATORY_DENIES) {
    const o = lifted.get(d.id);
    for (const p of d.paths) {
      const pattern = p.startsWith('/**/') ? p + '/**' : abs(p);
      const matcher = compilePathMatcher(pattern);
      if (d.access === 'all' && (o === undefined || !d.overridable)) denyRead.push(matcher);
      if (o === undefined || o.access === 'read' || !d.overridable) denyWrite.push(matcher);
    }
  }
  const approvals = m.requiresApproval.map((entry) => {
    const k = /^(read|write|exec):([/~].*)$/s.exec(entry);
    if (k) return { kind: k[1] as GrantAccess, match: compilePathMatcher(abs(k[2] ?? '')) };
    if (entry.startsWith('/') || entry.startsWith('~')) {
      const match = compilePathMatcher(abs(entry));
      return { kind: 'path' as const, match };
    }
    if (entry.includes('://')) {
      const s = parseNetworkScope(entry);
      return { kind: 'net' as const, match: (t: string) => scopeMatchesUrl(s, new URL(t)) };
    }
    const a = parseApiScope(entry);
    return { kind: 'api' as const, match: (t: string) => apiScopeAllows(a, t) };
  });
  const needsApproval = (access: GrantAccess, target: string): boolean =>
    approvals.some(
      (a) =>
        (a.kind === access ||
          (a.kind === 'path' && (access === 'read' || access === 'write' || access === 'exec'))) &&
        a.match(target),
    );
  return {
    check(access, target) {
      let granted: boolean;
      switch (access) {
        case 'read':
          granted = !denyRead.some((d) => d(target)) && read.some((g) => g(target));
          break;
        case 'write':
          granted =
            !denyWrite.some((d) => d(target)) &&
            !denyRead.some((d) => d(target)) &&
            write.some((g) => g(target));
          break;
        case 'exec':
          granted = commands.has(target);
          break;
        case 'net': {
          let url: URL;
          try {
            url = new URL(target);
          } catch {
            return 'deny';
          }
          granted = scopes.some((s) => scopeMatchesUrl(s, url));
          break;
        }
        case 'api':
          granted = apis.some((a) => apiScopeAllows(a, target));
          break;
      }
      if (!granted) return 'deny';
      return needsApproval(access, target) ? 'ask' : 'allow';
    },
  };
}
