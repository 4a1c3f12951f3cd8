import { CordonError } from '../errors.js';
import { parseApiScope } from '../manifest/api-scopes.js';
import { MANDATORY_DENIES } from '../manifest/mandatory-denies.js';
import { parseNetworkScope, pathHasPrefix, type NetworkScope } from '../manifest/network.js';
import { expandHome, parsePathPattern, type PathPattern } from '../manifest/paths.js';
import type { Manifest } from '../manifest/schema.js';
import { inPrefix, parseIpAny } from '../manifest/ip.js';

/** What a path entry is, once compiled. */
export type PathEntryKind =
  'read' | 'write' | 'deny-all' | 'deny-write' | 'ask-any' | 'ask-read' | 'ask-write' | 'ask-exec';

export interface PathEntry {
  readonly kind: PathEntryKind;
  /** The deciding rule: a JSON pointer into the manifest, or `deny:<id>`. */
  readonly rule: string;
  /** For mandatory denies: the deny id (for overrides) and the path written in the catalogue. */
  readonly denyId?: string;
  readonly denyPath?: string;
}

interface GlobEntry {
  readonly re: RegExp;
  readonly entry: PathEntry;
}

interface TrieNode {
  readonly children: Map<string, TrieNode>;
  /** Literal patterns ending here: they cover this directory and everything beneath. */
  literal: PathEntry[] | undefined;
  /** Glob patterns whose literal base is this directory. */
  globs: GlobEntry[] | undefined;
}

const newNode = (): TrieNode => ({ children: new Map(), literal: undefined, globs: undefined });

/**
 * Path patterns compiled into a trie of literal segments. A lookup walks the request path's
 * segments from the root and stops where the trie ends, collecting literal entries on the way
 * and testing only the globs rooted at visited directories.
 */
export class PathTable {
  private readonly root = newNode();
  /** `/**\/tail` patterns (.git/hooks): tested on writes only, since they are write denies. */
  private readonly anywhere: GlobEntry[] = [];

  add(absolute: string, entry: PathEntry): void {
    if (absolute.startsWith('/**/')) {
      const tail = absolute.slice(3).split('/').map(escapeRe).join('/');
      this.anywhere.push({ re: new RegExp(`${tail}(?:/|$)`), entry });
      return;
    }
    const p = parsePathPattern(absolute);
    let node = this.root;
    for (let k = 0; k < p.literalDepth; k++) {
      const seg = p.segments[k] ?? '';
      let next = node.children.get(seg);
      if (next === undefined) {
        next = newNode();
        node.children.set(seg, next);
      }
      node = next;
    }
    // `DIR/**` selects DIR and everything beneath it, exactly what a literal entry means.
    const trailingOnly =
      p.segments.length === p.literalDepth + 1 && p.segments[p.literalDepth] === '**';
    if (!p.hasGlob || trailingOnly) (node.literal ??= []).push(entry);
    else (node.globs ??= []).push({ re: globRegExp(p), entry });
  }

  /**
   * Every entry matching `path` (absolute, normalised), appended from the root down, so the
   * last grant found is the most specific one. `anywhere` patterns (write denies) come last and
   * are tested only when `write` is set.
   */
  match(path: string, out: PathEntry[], write = true): void {
    let node: TrieNode | undefined = this.root;
    let pos = 1;
    const n = path.length;
    for (;;) {
      if (node.literal !== undefined) for (const e of node.literal) out.push(e);
      if (node.globs !== undefined)
        for (const g of node.globs) if (g.re.test(path)) out.push(g.entry);
      if (pos >= n || node.children.size === 0) break;
      let end = path.indexOf('/', pos);
      if (end === -1) end = n;
      node = node.children.get(path.slice(pos, end));
      if (node === undefined) break;
      pos = end + 1;
    }
    if (write) for (const g of this.anywhere) if (g.re.test(path)) out.push(g.entry);
  }
}

function push<T>(m: Map<string, T[]>, k: string, v: T): void {
  const list = m.get(k);
  if (list === undefined) m.set(k, [v]);
  else list.push(v);
}

function escapeRe(s: string): string {
  return s.replace(/[.+^${}()|[\]\\*?]/g, '\\$&');
}

function globRegExp(p: PathPattern): RegExp {
  let re = '^';
  for (const seg of p.segments) {
    if (seg === '**') re += '(?:/[^/]+)*';
    else
      re +=
        '/' +
        seg
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .replace(/\*/g, '[^/]*')
          .replace(/\?/g, '[^/]');
  }
  return new RegExp(re + '$', 's');
}

export interface ScopeEntry {
  readonly scope: NetworkScope;
  readonly rule: string;
  readonly ask: boolean;
}

/** Network scopes: exact hosts, wildcard suffixes and IP ranges. */
export class ScopeTable {
  readonly exact = new Map<string, ScopeEntry[]>();
  readonly suffix = new Map<string, ScopeEntry[]>();
  readonly ips: ScopeEntry[] = [];

  /** Lengths of wildcard suffixes, so a host's other suffixes are never sliced. */
  private readonly suffixLengths = new Uint8Array(256);

  add(e: ScopeEntry): void {
    if (e.scope.kind !== 'dns') this.ips.push(e);
    else if (e.scope.wildcard) {
      push(this.suffix, e.scope.host, e);
      this.suffixLengths[Math.min(e.scope.host.length, 255)] = 1;
    } else push(this.exact, e.scope.host, e);
  }

  /** Entries whose host part matches `host` (a normalised name or canonical IP text). */
  matchHost(
    host: string,
    ip: readonly number[] | undefined,
    version: 4 | 6 | undefined,
    out: ScopeEntry[],
  ): void {
    if (ip !== undefined) {
      for (const e of this.ips) {
        const s = e.scope;
        if ((s.kind === 'ipv4') === (version === 4) && inPrefix(ip, scopeBytes(s), s.prefixLength))
          out.push(e);
      }
      return;
    }
    const ex = this.exact.get(host);
    if (ex !== undefined) for (const e of ex) out.push(e);
    if (this.suffix.size === 0) return;
    const lengths = this.suffixLengths;
    for (let i = host.indexOf('.'); i !== -1; i = host.indexOf('.', i + 1)) {
      const len = host.length - i - 1;
      if (lengths[len > 255 ? 255 : len] !== 1) continue;
      const sx = this.suffix.get(host.slice(i + 1));
      if (sx !== undefined) for (const e of sx) out.push(e);
    }
  }
}

const scopeByteCache = new WeakMap<NetworkScope, number[]>();
function scopeBytes(s: NetworkScope): number[] {
  let b = scopeByteCache.get(s);
  if (b === undefined) {
    b = [...(parseIpAny(s.host)?.bytes ?? [])];
    scopeByteCache.set(s, b);
  }
  return b;
}

/** Does a scope admit this scheme, port and (optional) path? */
export function scopeAdmits(
  s: NetworkScope,
  scheme: string | undefined,
  port: number,
  path: string | undefined,
): boolean {
  if (scheme !== undefined && s.scheme !== scheme) return false;
  if (s.port !== port) return false;
  // A tunnel (no path visible) is admitted only by scopes that do not restrict the path.
  if (path === undefined) return s.pathPrefix === '/';
  return pathHasPrefix(path, s.pathPrefix);
}

export interface ApiEntry {
  readonly rule: string;
  readonly ask: boolean;
}

/** API scopes: exact strings and `prefix:*` wildcards. */
export class ApiTable {
  readonly exact = new Map<string, ApiEntry[]>();
  readonly prefixes = new Map<string, ApiEntry[]>();

  add(text: string, e: ApiEntry): void {
    const s = parseApiScope(text);
    if (s.wildcard) push(this.prefixes, s.segments.slice(0, -1).join(':') + ':', e);
    else push(this.exact, text, e);
  }

  match(scope: string, out: ApiEntry[]): void {
    const ex = this.exact.get(scope);
    if (ex !== undefined) for (const e of ex) out.push(e);
    for (let i = scope.lastIndexOf(':'); i > 0; i = scope.lastIndexOf(':', i - 1)) {
      const px = this.prefixes.get(scope.slice(0, i + 1));
      if (px !== undefined) for (const e of px) out.push(e);
    }
  }
}

export interface CompileOptions {
  /** Home directory of the user the agent runs as. */
  readonly home: string;
  /** Cordon's policy and state directories on this machine (always denied). */
  readonly cordonDirs?: readonly string[];
  /** Resolve command paths through symlinks (both forms are allowed). Default: as written. */
  readonly resolveCommand?: (path: string) => string | undefined;
}

export interface OverrideRule {
  readonly id: string;
  readonly rule: string;
  readonly write: boolean;
  readonly paths: PathTable | undefined;
}

/** A manifest compiled once into lookup tables. */
export interface CompiledManifest {
  readonly manifest: Manifest;
  readonly paths: PathTable;
  readonly overrides: ReadonlyMap<string, OverrideRule>;
  /** Real path or declared path of each allowed command → rule. */
  readonly commands: ReadonlyMap<string, string>;
  /** agentRuntimes: an executable or a directory (everything below it), as written and resolved. */
  readonly runtimes: readonly { readonly path: string; readonly rule: string }[];
  readonly scopes: ScopeTable;
  readonly apis: ApiTable;
  readonly secrets: ReadonlyMap<string, string>;
  readonly home: string;
}

function compileError(pointer: string, e: unknown): CordonError {
  const ce = e instanceof CordonError ? e : undefined;
  return new CordonError('POLICY_COMPILE', `${pointer}: ${ce?.message ?? (e as Error).message}`, {
    pointer,
    hint: ce?.hint ?? 'fix the manifest entry',
    cause: e,
  });
}

/**
 * Compile a manifest for one user. Every entry is re-checked here; a bad one fails with its
 * JSON pointer (POLICY_COMPILE), never per request.
 *
 * @example
 * const c = compileManifest(manifest, { home: '/home/alice' });
 */
export function compileManifest(m: Manifest, options: CompileOptions): CompiledManifest {
  const home = options.home;
  const abs = (text: string): string => expandHome(parsePathPattern(text), home);
  const paths = new PathTable();
  const addPath = (pointer: string, text: string, kind: PathEntryKind): void => {
    try {
      paths.add(abs(text), { kind, rule: pointer });
    } catch (e) {
      throw compileError(pointer, e);
    }
  };
  m.readPaths.forEach((t, i) => {
    addPath(`/readPaths/${i}`, t, 'read');
  });
  m.writePaths.forEach((t, i) => {
    addPath(`/writePaths/${i}`, t, 'write');
  });

  const extra = (options.cordonDirs ?? []).map((d) => parsePathPattern(d).text);
  for (const d of MANDATORY_DENIES) {
    const written = d.id === 'cordon' ? [...d.paths, ...extra] : d.paths;
    for (const w of written) {
      const target = w.startsWith('~') ? abs(w) : w;
      const entry: PathEntry = {
        kind: d.access === 'all' ? 'deny-all' : 'deny-write',
        rule: `deny:${d.id}`,
        denyId: d.id,
        denyPath: w,
      };
      paths.add(target, entry);
      // A globbed deny covers what lies beneath a match too, as a literal one does.
      if (w.includes('*') && !w.startsWith('/**/')) paths.add(`${target}/**`, entry);
    }
  }

  const overrides = new Map<string, OverrideRule>();
  m.overrides.forEach((o, i) => {
    let table: PathTable | undefined;
    if (o.paths !== undefined) {
      table = new PathTable();
      for (const [j, p] of o.paths.entries()) {
        try {
          table.add(abs(p), { kind: 'read', rule: `/overrides/${i}/paths/${j}` });
        } catch (e) {
          throw compileError(`/overrides/${i}/paths/${j}`, e);
        }
      }
    }
    overrides.set(o.deny, {
      id: o.deny,
      rule: `/overrides/${i}`,
      write: o.access === 'write',
      paths: table,
    });
  });

  const resolve = options.resolveCommand ?? ((p: string) => p);
  const commands = new Map<string, string>();
  m.commandsAllowed.forEach((c, i) => {
    const rule = `/commandsAllowed/${i}`;
    if (!commands.has(c)) commands.set(c, rule);
    const real = resolve(c);
    if (real !== undefined && !commands.has(real)) commands.set(real, rule);
  });

  const runtimes: { path: string; rule: string }[] = [];
  m.agentRuntimes.forEach((r, i) => {
    const rule = `/agentRuntimes/${i}`;
    const path = abs(r);
    runtimes.push({ path, rule });
    const real = resolve(path);
    if (real !== undefined && real !== path) runtimes.push({ path: real, rule });
  });

  const scopes = new ScopeTable();
  m.networkScopes.forEach((s, i) => {
    try {
      scopes.add({ scope: parseNetworkScope(s), rule: `/networkScopes/${i}`, ask: false });
    } catch (e) {
      throw compileError(`/networkScopes/${i}`, e);
    }
  });

  const apis = new ApiTable();
  m.apiScopes.forEach((s, i) => {
    try {
      apis.add(s, { rule: `/apiScopes/${i}`, ask: false });
    } catch (e) {
      throw compileError(`/apiScopes/${i}`, e);
    }
  });

  m.requiresApproval.forEach((entry, i) => {
    const rule = `/requiresApproval/${i}`;
    try {
      const k = /^(read|write|exec):([/~].*)$/s.exec(entry);
      if (k !== null) {
        const kind = `ask-${k[1] ?? ''}` as PathEntryKind;
        const target = k[2] ?? '';
        addPath(rule, target, kind);
        if (kind === 'ask-exec') {
          const real = resolve(abs(target));
          if (real !== undefined && real !== abs(target)) paths.add(real, { kind, rule });
        }
      } else if (entry.startsWith('/') || entry.startsWith('~')) {
        addPath(rule, entry, 'ask-any');
        const real = resolve(abs(entry));
        if (real !== undefined && real !== abs(entry)) paths.add(real, { kind: 'ask-exec', rule });
      } else if (entry.includes('://')) {
        scopes.add({ scope: parseNetworkScope(entry), rule, ask: true });
      } else {
        apis.add(entry, { rule, ask: true });
      }
    } catch (e) {
      throw e instanceof CordonError && e.code === 'POLICY_COMPILE' ? e : compileError(rule, e);
    }
  });

  const secrets = new Map<string, string>();
  m.secrets.forEach((s, i) => {
    if (!secrets.has(s)) secrets.set(s, `/secrets/${i}`);
  });

  return { manifest: m, paths, overrides, commands, runtimes, scopes, apis, secrets, home };
}
