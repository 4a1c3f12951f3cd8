import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  statSync,
} from 'node:fs';
import { basename, dirname, join, resolve as resolvePath, sep } from 'node:path';
import { CordonError } from '../../errors.js';
import type { Manifest } from '../../manifest/schema.js';
import { MANDATORY_DENIES, PYTHON_USER_SITE } from '../../manifest/mandatory-denies.js';
import { parsePathPattern } from '../../manifest/paths.js';
import { execNeeds } from './elf.js';

/** Where Cordon's own pieces appear inside the sandbox. */
export const SANDBOX_RUN_DIR = '/run/cordon';
export const SANDBOX_HELPER = `${SANDBOX_RUN_DIR}/sandbox`;
/**
 * The endpoint service's egress socket directory for the session, bound read-only: the
 * directory, not the socket, so that a restarted service's new socket is reachable at once.
 */
export const SANDBOX_EGRESS_DIR = `${SANDBOX_RUN_DIR}/egress`;
export const SANDBOX_EGRESS_SOCKET = `${SANDBOX_EGRESS_DIR}/egress.sock`;
/** The egress bridge's port on the sandbox's own loopback interface. */
export const SANDBOX_PROXY_PORT = 3128;

/** Resource limits applied to the agent (setrlimit); undefined leaves the host's value. */
export interface SandboxLimits {
  readonly processes?: number;
  readonly memoryBytes?: number;
  readonly cpuSeconds?: number;
  readonly fileSizeBytes?: number;
  readonly openFiles?: number;
  /** Size of each private scratch tmpfs (/tmp, /var/tmp, /dev/shm); default DEFAULT_TMP_BYTES. */
  readonly tmpBytes?: number;
}

/**
 * Each scratch tmpfs holds at most this much. Its pages are memory that no rlimit charges to the
 * agent (tmpfs would default to half the RAM, each); 1 GiB fits a build's temporary files.
 */
export const DEFAULT_TMP_BYTES = 1024 ** 3;
/** Where the sandbox has private, writable scratch space. */
const SCRATCH_DIRS = ['/tmp', '/var/tmp', '/dev/shm'];

export interface SandboxPlanInput {
  readonly manifest: Manifest;
  /** The user's real home directory (expands `~`). */
  readonly home: string;
  readonly cwd: string;
  /** The command, argv[0] an absolute path. */
  readonly command: readonly string[];
  /**
   * The agent's own runtime: executables or directories from the manifest's agentRuntimes
   * (possibly narrowed by `cordon run --agent-runtime`), each with the rule that grants it.
   */
  readonly agentRuntimes: readonly { readonly path: string; readonly rule: string }[];
  /** Directories never visible inside (Cordon's policy and state). */
  readonly hidden: readonly string[];
  readonly helperPath: string;
  /** Host path of the egress proxy's Unix socket. */
  /** Host directory holding the session's egress socket (`egress.sock`). */
  readonly egressDir: string;
  readonly parentEnv: NodeJS.ProcessEnv;
  readonly session: string;
  readonly limits: SandboxLimits;
  /**
   * The decision point's answer for a path (resolved as the kernel would): a grant whose path
   * passes through a symbolic link is mounted only if this allows its target. Without it, such
   * grants are not mounted.
   */
  readonly allows?: (path: string, write: boolean) => boolean;
  /**
   * Whether the plan may make the missing directories that hold masks (default yes). A plan
   * made ahead of the service's verdict changes nothing on disk: it stops instead
   * (PlanNeedsWrites) and the plan is made again once the session is open.
   */
  readonly createMissing?: boolean;
}

/** A plan made with `createMissing: false` would have had to make a directory. */
export class PlanNeedsWrites extends Error {}

/** A grant as mounted: where the manifest said, where it really is, and how it was mounted. */
export interface MountedGrant {
  readonly pattern: string;
  readonly path: string;
  readonly access: 'read' | 'write' | 'exec';
  /** The mount is wider than the pattern (a glob below a directory grants the whole directory). */
  readonly widened: boolean;
}

export interface SandboxPlan {
  readonly bwrapArgs: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly grants: readonly MountedGrant[];
  /** Paths masked inside grants: mandatory denies and Cordon's own directories. */
  readonly masked: readonly string[];
  /** Grants that could not be mounted, and other things the user should know. */
  readonly warnings: readonly string[];
  readonly cwd: string;
  /**
   * Files bubblewrap copies into the sandbox instead of mounting them (`--file FD PATH`): the
   * launcher opens each, in this order, as descriptors FIRST_COPY_FD, FIRST_COPY_FD + 1, ...
   */
  readonly copies: readonly string[];
}

/** The descriptor of the first file in `SandboxPlan.copies` (the launcher's stdio ends before). */
export const FIRST_COPY_FD = 6;
// Small /etc files are copied into the sandbox's read-only root rather than bind-mounted: each
// bind costs bubblewrap a remount and a read of the whole mount table (several milliseconds per
// launch for all of them). The sandbox sees the same bytes, read-only either way; larger files
// stay mounted.
const COPY_MAX_BYTES = 256 * 1024;

// Read-only system locations programs need to start: libraries, the loader, data files. The
// directories of executables (/usr/bin, /bin, /usr/sbin, ...) are not among them: only the
// allowed binaries are mounted there, so nothing else can even be handed to the loader.
const SYSTEM_DIRS = ['/usr/lib', '/usr/lib64', '/usr/lib32', '/usr/libx32', '/usr/share'];
const ROOT_LINKS = ['/bin', '/sbin', '/lib', '/lib64', '/lib32', '/libx32'];
const LIB_ROOTS = new Set(['/lib', '/lib64', '/lib32', '/libx32']);
// /etc holds secrets (shadow, sudoers, ssh host keys, credentials of services): only what
// libc, TLS clients and terminals read is visible.
const ETC_FILES = [
  '/etc/ld.so.cache',
  '/etc/ld.so.conf',
  '/etc/ld.so.conf.d',
  '/etc/nsswitch.conf',
  '/etc/passwd',
  '/etc/group',
  '/etc/hosts',
  '/etc/host.conf',
  '/etc/gai.conf',
  '/etc/localtime',
  '/etc/timezone',
  '/etc/ssl',
  '/etc/ca-certificates',
  '/etc/ca-certificates.conf',
  '/etc/pki',
  '/etc/crypto-policies',
  '/etc/alternatives',
  '/etc/mime.types',
  '/etc/protocols',
  '/etc/services',
  '/etc/os-release',
  '/etc/terminfo',
  '/etc/inputrc',
  '/etc/bash.bashrc',
  '/etc/profile',
  '/etc/locale.alias',
  '/etc/locale.gen',
  '/etc/magic',
];
// Environment variables passed through; everything else (tokens, keys, cloud credentials) is
// dropped unless the manifest's `env` names it.
const PASSED_ENV =
  'PATH LANG LANGUAGE TERM COLORTERM TZ USER LOGNAME SHELL NO_COLOR FORCE_COLOR COLUMNS LINES'.split(
    ' ',
  );
const PROXY_ENV = [
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'ALL_PROXY',
  'http_proxy',
  'https_proxy',
  'all_proxy',
];
// Mandatory-deny directories masked even when missing, if a writable grant covers them: an
// agent must not create ~/.ssh/authorized_keys or ~/.aws/credentials for later use.
const MISSING_DIRS_MASKED = [
  '/.ssh',
  '/.gnupg',
  '/.aws',
  '/.azure',
  '/.config/gcloud',
  '/.kube',
  '/.config/gh',
  '/.local/share/keyrings',
  '/.password-store',
  '/.pki',
  '/.config/fish',
  '/.claude/hooks',
  '/.claude/plugins',
  '/.bashrc.d',
  '/.local/bin',
  '/.config/autostart',
  '/.config/systemd/user',
  '/.config/direnv',
  '/.codex/rules',
  '/.gemini/extensions',
];
// Directories walked for git hooks and agents' project settings inside writable grants: deep enough for a workspace of
// repositories, bounded so a huge tree cannot stall the launch.
const PROJECT_WALK_DEPTH = 4;
const PROJECT_WALK_DIRS = 5000;

/** Whether `child` is `parent` or lies beneath it (both absolute, normalised). */
export function isWithin(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent === '/' ? '/' : parent + sep);
}

/**
 * `(p) => parents.some((v) => isWithin(p, v))` for normalised paths (what join, resolve and
 * realpath give), with one set look-up per directory above `p` instead of a scan of `parents`
 * (a launch checks a few hundred denies against dozens of shown paths). test/sandbox/within-any
 * holds the two to the same answers.
 */
export function withinAny(parents: readonly string[]): (p: string) => boolean {
  const bare = (p: string): string => (p.length > 1 && p.endsWith(sep) ? p.slice(0, -1) : p);
  const set = new Set(parents.map(bare));
  return (p) => {
    for (let a = bare(p); ; a = dirname(a)) {
      if (set.has(a)) return true;
      if (a === '/' || a === '.') return false;
    }
  };
}

function realOrUndefined(p: string): string | undefined {
  try {
    // One realpath(3) call, where Node's own resolution lstats each component in script: a
    // launch resolves a few hundred paths.
    return realpathSync.native(p);
  } catch {
    return undefined;
  }
}

/**
 * The first component of `path` (absolute, normalised) that is a symbolic link, or undefined.
 * Components after the first missing one are not looked at: nothing can be planted there yet.
 */
export function firstLink(
  path: string,
  seen: Map<string, 'link' | 'dir' | 'missing'> = new Map(),
): string | undefined {
  let cur = '';
  for (const seg of path.split('/')) {
    if (seg === '') continue;
    cur += '/' + seg;
    // Masks share long prefixes (the home directory, a workspace): each is looked at once.
    let kind = seen.get(cur);
    if (kind === undefined) {
      try {
        const st = lstatSync(cur, { throwIfNoEntry: false });
        kind = st === undefined ? 'missing' : st.isSymbolicLink() ? 'link' : 'dir';
      } catch {
        kind = 'missing'; // ENOTDIR and the like: nothing can lie below
      }
      seen.set(cur, kind);
    }
    if (kind === 'link') return cur;
    if (kind === 'missing') return undefined;
  }
  return undefined;
}

/** Entries of `dir` whose name matches a one-segment glob (`*_key`), not following links. */
function globEntries(pattern: string): string[] {
  const dir = dirname(pattern);
  const re = new RegExp(
    '^' +
      basename(pattern)
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.') +
      '$',
    's',
  );
  try {
    return readdirSync(dir)
      .filter((n) => re.test(n))
      .map((n) => join(dir, n));
  } catch {
    return [];
  }
}

/** Existing paths matching `pattern` (absolute; `*` and `?` within a segment, at any segment). */
function globPaths(pattern: string): string[] {
  let found = ['/'];
  for (const seg of pattern.split('/').filter((x) => x !== '')) {
    if (!/[*?]/.test(seg)) {
      found = found.map((f) => join(f, seg));
      continue;
    }
    found = found.flatMap((f) => globEntries(join(f, seg)));
  }
  return found.filter((f) => existsSync(f) || lstatOrUndefined(f) !== undefined);
}

function lstatOrUndefined(p: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(p);
  } catch {
    return undefined;
  }
}

/** `3.N` of every python3.N in the usual program directories. */
function hostPythonVersions(): string[] {
  const out = new Set<string>();
  // /bin is /usr/bin on most systems now: a directory of a thousand names is read once.
  const read = new Set<string>();
  for (const dir of ['/usr/bin', '/usr/local/bin', '/bin', '/opt/homebrew/bin']) {
    let names: string[];
    try {
      const real = realpathSync.native(dir);
      if (read.has(real)) continue;
      read.add(real);
      names = readdirSync(real);
    } catch {
      continue;
    }
    for (const n of names) {
      if (!n.startsWith('python3.')) continue;
      const v = /^python(3\.\d+)$/.exec(n)?.[1];
      if (v !== undefined) out.add(v);
    }
  }
  return [...out].sort();
}

/** The part of a path pattern before its first glob, with `~` expanded. */
function literalBase(pattern: string, home: string): { base: string; widened: boolean } {
  const p = parsePathPattern(pattern);
  const root = p.home ? home : '/';
  const lit = p.segments.slice(0, p.literalDepth);
  const rest = p.segments.slice(p.literalDepth);
  // `dir/**` is exactly the directory; any other glob is narrower than the directory mounted.
  const widened = rest.length > 0 && !(rest.length === 1 && rest[0] === '**');
  return { base: join(root, ...lit), widened };
}

/**
 * The first grant that would let an agent change Cordon's own code (`packageDirs`, real
 * paths): a write grant that contains it or lies inside it, or any grant inside it. Paths are
 * resolved as the launch resolves them. A read grant above it (a home-wide read) is not one:
 * reading the code changes nothing.
 */
export function packageExposure(
  manifest: Manifest,
  home: string,
  packageDirs: readonly string[],
  packageEntries: readonly string[] = [],
): { pattern: string; path: string; packageDir: string; entry?: string } | undefined {
  for (const [patterns, write] of [
    [manifest.writePaths, true],
    [manifest.readPaths, false],
  ] as const) {
    for (const pattern of patterns) {
      const { base } = literalBase(pattern, home);
      const real = realOrUndefined(base) ?? resolvePath(base);
      for (const dir of packageDirs)
        if (isWithin(real, dir) || (write && isWithin(dir, real)))
          return { pattern, path: real, packageDir: dir };
      // A link to the package (or the node binary) in a writable directory can be replaced.
      if (write)
        for (const entry of packageEntries)
          if (isWithin(entry, real) || isWithin(entry, base))
            return { pattern, path: real, packageDir: packageDirs[0] ?? entry, entry };
    }
  }
  return undefined;
}

/**
 * Turn a manifest into a bubblewrap command line and the helper's Landlock grants. Paths are
 * resolved to real paths now, at launch: what the agent later plants (symlinks, renames)
 * cannot widen what was mounted.
 */
export function planSandbox(input: SandboxPlanInput): SandboxPlan {
  const { manifest: m, home } = input;
  const warnings: string[] = [];
  const grants: MountedGrant[] = [];
  const masked: string[] = [];
  const b: string[] = [];
  const helper: string[] = [];
  // What each mount point must hold once bubblewrap is done: a file (device, inode) or a tmpfs.
  const expect = new Map<string, { dev: bigint; ino: bigint } | 'tmpfs'>();
  const fileId = (p: string): { dev: bigint; ino: bigint } => statSync(p, { bigint: true });

  b.push('--die-with-parent', '--unshare-all', '--unshare-user', '--hostname', 'cordon');
  b.push('--as-pid-1', '--json-status-fd', '3');
  b.push('--tmpfs', '/');
  // Directory listings of what is mounted; reading files needs a grant below.
  helper.push('--list', '/');

  for (const dir of SYSTEM_DIRS) {
    if (existsSync(dir)) {
      b.push('--ro-bind', dir, dir);
      helper.push('--read', dir);
    }
  }
  for (const link of ROOT_LINKS) {
    let st;
    try {
      st = lstatSync(link);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) b.push('--symlink', readlinkSync(link), link);
    else if (st.isDirectory() && LIB_ROOTS.has(link)) {
      b.push('--ro-bind', link, link);
      helper.push('--read', link);
    }
  }
  // Bound /etc entries count as visible for masks (/etc/ssl/private lies inside /etc/ssl).
  const etcBound = ETC_FILES.filter((f) => existsSync(f));
  const copies: string[] = [];
  for (const f of etcBound) {
    let st;
    try {
      st = statSync(f);
    } catch {
      st = undefined;
    }
    // Only what anyone may read (the launcher opens it as the user; a bind needs no read right).
    if (st?.isFile() === true && st.size <= COPY_MAX_BYTES && (st.mode & 0o004) !== 0) {
      if (copies.length === 0) b.push('--dir', '/etc');
      // With the host file's permissions (bubblewrap would make it 0666).
      const perms = (st.mode & 0o7777).toString(8).padStart(4, '0');
      b.push('--perms', perms, '--file', String(FIRST_COPY_FD + copies.length), f);
      copies.push(f);
    } else b.push('--ro-bind', f, f);
  }
  helper.push('--read', '/etc');
  b.push('--dev', '/dev', '--proc', '/proc');
  helper.push('--read', '/proc');
  // POSIX shared memory (/dev/shm) is private too: browsers and multiprocessing need it.
  const tmpSize = String(input.limits.tmpBytes ?? DEFAULT_TMP_BYTES);
  for (const dir of SCRATCH_DIRS) b.push('--size', tmpSize, '--tmpfs', dir);
  // Directories that only hold mount points below scratch space go here (see sealMountHolders).
  const holdersAt = b.length;
  b.push('--tmpfs', home);
  helper.push('--write', '/tmp', '--write', '/var/tmp', '--write', '/dev/shm', '--read', home);
  helper.push('--noexec', '/tmp', '--noexec', '/var/tmp', '--noexec', '/dev/shm');

  // Mandatory denies that this manifest has not lifted, expanded; Cordon's own directories
  // can never be lifted.
  const lifted = new Map(m.overrides.map((o) => [o.deny, o.access]));
  // `dir`: known to be a directory even when missing (masked then, not only warned about).
  const denies: { path: string; access: 'all' | 'write'; id: string; dir?: boolean }[] = [];
  // Write denies that hold at any depth (`/**/.git/hooks`), as path segments.
  const anywhere: { tail: string[]; id: string }[] = [];
  const needsApproval = (id: string): string =>
    id === 'requiresApproval'
      ? 'needs an approval, which sandboxed agents cannot get yet'
      : `is inside the mandatory deny "${id}"`;
  for (const d of MANDATORY_DENIES) {
    const override = d.overridable ? lifted.get(d.id) : undefined;
    if (override === 'write') continue;
    const access = override === 'read' ? 'write' : d.access;
    for (const raw of d.paths) {
      // `/**/tail` (git hooks, project agent settings): found by walking writable grants below.
      if (raw.startsWith('/**/')) {
        anywhere.push({ tail: raw.slice(4).split('/'), id: d.id });
        continue;
      }
      const written = raw.startsWith('~') ? join(home, raw.slice(1)) : raw;
      const found = written.includes('*') ? globPaths(written) : [written];
      // The user site of each python3 on the host, made now if missing: the agent must not
      // create the first .pth there either.
      const dir = raw === PYTHON_USER_SITE || raw === '~/bin';
      if (raw === PYTHON_USER_SITE)
        for (const v of hostPythonVersions()) {
          const site = join(home, '.local/lib', `python${v}`, 'site-packages');
          if (!found.includes(site)) found.push(site);
        }
      for (const p of found) {
        denies.push({ path: p, access, id: d.id, dir });
        const real = realOrUndefined(p);
        if (real !== undefined && real !== p) denies.push({ path: real, access, id: d.id });
      }
    }
  }
  for (const h of input.hidden) {
    denies.push({ path: resolvePath(h), access: 'all', id: 'cordon' });
    const real = realOrUndefined(h);
    if (real !== undefined) denies.push({ path: real, access: 'all', id: 'cordon' });
  }
  // What needs an approval is not available inside: the decision point answers `ask` (a denial
  // until approvals exist), and the kernel layers must not grant more than it does. A plain path
  // entry covers reading, writing and running; `write:` only writing; `exec:` one program.
  // Network entries are asked by the proxy; API scopes do not reach the sandbox.
  const approvalExec: string[] = [];
  for (const entry of m.requiresApproval) {
    const k = /^(read|write|exec):([/~].*)$/s.exec(entry);
    const kind = k?.[1] ?? (entry.startsWith('/') || entry.startsWith('~') ? 'any' : undefined);
    if (kind === undefined) continue;
    const pattern = k?.[2] ?? entry;
    const { base } = literalBase(pattern, home);
    const real = realOrUndefined(base);
    const paths = real === undefined || real === base ? [base] : [base, real];
    if (kind === 'exec' || kind === 'any') approvalExec.push(...paths);
    if (kind === 'exec') continue;
    for (const path of paths)
      denies.push({
        path,
        access: kind === 'write' ? 'write' : 'all',
        id: 'requiresApproval',
        dir: pattern.endsWith('/**'),
      });
  }

  // All-denies first: a write deny met later never re-binds what an all-deny hid.
  denies.sort((a, x) => (a.access === 'all' ? 0 : 1) - (x.access === 'all' ? 0 : 1));
  /** The `/**\/tail` deny a path lies in (`.../.git/hooks/x`), if any. */
  const anywhereDeny = (path: string): string | undefined => {
    const segs = path.split('/');
    for (const a of anywhere)
      for (let i = 0; i + a.tail.length <= segs.length; i++)
        if (a.tail.every((t, j) => segs[i + j] === t)) return a.id;
    return undefined;
  };

  // Filesystem grants, parents before children so a deeper grant is mounted on top.
  const fsGrants: {
    pattern: string;
    real: string;
    asked: string;
    write: boolean;
    widened: boolean;
  }[] = [];
  const addGrants = (patterns: readonly string[], write: boolean): void => {
    for (const pattern of patterns) {
      const { base, widened } = literalBase(pattern, home);
      const real = realOrUndefined(base);
      if (real === undefined) {
        warnings.push(`${pattern}: ${base} does not exist at launch; not mounted`);
        continue;
      }
      // A link on the way may have been planted by an earlier session (`reference ->
      // ../Documents`): its target is mounted only where the decision point grants it too, so
      // the sandbox never shows more than `cordon check` allows.
      const link = real === base ? undefined : firstLink(base);
      if (link !== undefined && input.allows?.(base, write) !== true) {
        warnings.push(
          `${pattern}: ${link} is a symbolic link and ${base} resolves to ${real}, which the manifest does not grant${write ? ' for writing' : ''}; not mounted`,
        );
        continue;
      }
      const inside = denies.find((d) => d.access === 'all' && isWithin(real, d.path));
      if (inside !== undefined) {
        warnings.push(`${pattern}: ${real} ${needsApproval(inside.id)}; not mounted`);
        continue;
      }
      const readOnly = write
        ? (denies.find((d) => d.access === 'write' && isWithin(real, d.path))?.id ??
          anywhereDeny(real))
        : undefined;
      if (readOnly !== undefined) {
        warnings.push(`${pattern}: writing ${real} ${needsApproval(readOnly)}; mounted read-only`);
        fsGrants.push({ pattern, real, asked: base, write: false, widened });
        continue;
      }
      if (widened)
        warnings.push(
          `${pattern}: the sandbox mounts all of ${real} (globs below a directory are enforced by the policy decision point, not the kernel)`,
        );
      fsGrants.push({ pattern, real, asked: base, write, widened });
    }
  };
  addGrants(m.readPaths, false);
  addGrants(m.writePaths, true);
  fsGrants.sort((a, x) => a.real.split(sep).length - x.real.split(sep).length);
  for (const g of fsGrants) {
    b.push(g.write ? '--bind' : '--ro-bind', g.real, g.real);
    expect.set(g.real, fileId(g.real));
    if (g.asked !== g.real && !isWithin(g.asked, g.real)) b.push('--symlink', g.real, g.asked);
    helper.push(g.write ? '--write' : '--read', g.real);
    grants.push({
      pattern: g.pattern,
      path: g.real,
      access: g.write ? 'write' : 'read',
      widened: g.widened,
    });
  }

  // Executables: each allowed binary at its real path (and at the path the manifest named),
  // with the loader or script interpreter it needs.
  const interpreters = new Set<string>();
  const execs: { asked: string; real: string; pattern: string }[] = [];
  for (const c of m.commandsAllowed) {
    const real = realOrUndefined(c);
    if (real === undefined) {
      warnings.push(`${c}: not installed; not mounted`);
      continue;
    }
    if (approvalExec.some((a) => isWithin(c, a) || isWithin(real, a))) {
      warnings.push(`${c}: running it ${needsApproval('requiresApproval')}; not mounted`);
      continue;
    }
    // A link inside a write grant may be the agent's (`bin/fmt -> /usr/bin/perl`): mounting its
    // target would make any program on the host runnable.
    const link = real === c ? undefined : firstLink(c);
    if (link !== undefined && fsGrants.some((g) => g.write && isWithin(link, g.real))) {
      warnings.push(
        `${c}: ${link} is a symbolic link inside a writable grant (to ${real}); not mounted`,
      );
      continue;
    }
    execs.push({ asked: c, real, pattern: c });
  }
  const runtimeDirs: { real: string; rule: string }[] = [];
  for (const r of input.agentRuntimes) {
    const real = realOrUndefined(r.path);
    if (real === undefined) {
      warnings.push(`${r.path} (${r.rule}): not installed; not mounted`);
      continue;
    }
    const denied = denies.find((d) => d.access === 'all' && isWithin(real, d.path));
    if (denied !== undefined) {
      warnings.push(`${r.path} (${r.rule}): ${real} ${needsApproval(denied.id)}; not mounted`);
      continue;
    }
    // A runtime the agent can write is a runtime the agent can replace: refuse the launch.
    const writer = fsGrants.find(
      (g) => g.write && (isWithin(real, g.real) || isWithin(g.real, real)),
    );
    if (writer !== undefined)
      throw new CordonError(
        'RUNTIME_WRITABLE',
        `${r.path} (${r.rule}) resolves to ${real}, which overlaps the write grant ${writer.pattern} (${writer.real}): the agent could plant programs it then runs`,
        { hint: 'install the runtime where the agent cannot write, and keep it out of writePaths' },
      );
    if (statSync(real).isDirectory()) runtimeDirs.push({ real, rule: r.rule });
    else execs.push({ asked: resolvePath(r.path), real, pattern: r.rule });
  }
  for (const e of execs) {
    b.push('--ro-bind', e.real, e.real);
    expect.set(e.real, fileId(e.real));
    if (e.asked !== e.real) b.push('--symlink', e.real, e.asked);
    helper.push('--exec', e.real);
    grants.push({ pattern: e.pattern, path: e.real, access: 'exec', widened: false });
    const needs = execNeeds(e.real);
    if (needs.kind !== 'unknown' && needs.interpreter !== undefined) {
      const ireal = realOrUndefined(needs.interpreter);
      if (needs.kind === 'elf' && ireal !== undefined) interpreters.add(ireal);
      else if (
        needs.kind === 'script' &&
        !execs.some((x) => x.real === ireal || x.asked === needs.interpreter)
      )
        warnings.push(
          `${e.asked}: a script for ${needs.interpreter}, which is not allowed: it will not run`,
        );
    }
  }
  for (const { real: dir, rule } of runtimeDirs) {
    b.push('--ro-bind', dir, dir);
    expect.set(dir, fileId(dir));
    helper.push('--exec-tree', dir);
    grants.push({ pattern: rule, path: dir, access: 'exec', widened: false });
  }
  for (const i of interpreters) helper.push('--exec', i);
  // Granted files are data, not code: every grant is mounted noexec, so the dynamic loader
  // cannot map a binary found (or written) there either. Allowed binaries and runtime
  // directories are mounts of their own and keep their exec right.
  for (const g of fsGrants) {
    if (!runtimeDirs.some((r) => r.real === g.real) && !execs.some((e) => e.real === g.real))
      helper.push('--noexec', g.real);
  }

  // Masks, on top of everything: a mandatory deny inside a grant stays denied.
  const visible = [...fsGrants.map((g) => g.real), ...runtimeDirs.map((r) => r.real)];
  const writable = (path: string): boolean =>
    fsGrants.some((g) => g.write && isWithin(path, g.real));
  const maskedAll: string[] = [];
  // What lstat said about each path prefix, for this launch.
  const lstats = new Map<string, 'link' | 'dir' | 'missing'>();
  /**
   * Mask `path` for `access`. `found`: a `/**\/tail` target met by walking a grant, where a
   * missing file is normal and left to the exit-time check.
   */
  const mask = (
    path: string,
    access: 'all' | 'write',
    id: string,
    dir = false,
    found = false,
  ): void => {
    if (masked.includes(path)) return;
    // bubblewrap follows links in mount sources and destinations: a mask through a link an
    // earlier session planted (`.git/config -> ../../.git-credentials`) would mount the link's
    // target, even over another mask. Links are never mounted over; their target is masked
    // instead where a grant shows it (and the target's own deny, if any, holds).
    const link = firstLink(path, lstats);
    if (link !== undefined) {
      const real = realOrUndefined(path);
      if (visible.some((v) => isWithin(link, v)))
        warnings.push(
          `${path}: ${link} is a symbolic link${real === undefined ? ' to nothing' : ` to ${real}`}; not mounted through (${id})`,
        );
      if (
        real !== undefined &&
        firstLink(real, lstats) === undefined &&
        visible.some((v) => isWithin(real, v)) &&
        !(access === 'all' ? maskedAll : masked).some((x) => isWithin(real, x))
      )
        mask(real, access, id, dir, found);
      return;
    }
    let st;
    try {
      st = lstatSync(path, { throwIfNoEntry: false });
    } catch {
      st = undefined;
    }
    if (st === undefined) {
      // Missing: only a writable grant could bring it into being. A credentials directory gets
      // an empty read-only tmpfs (bubblewrap leaves an empty directory behind on the host); a
      // missing file cannot be masked without creating it on the host, so the user is told.
      if (found || !writable(path)) return;
      if (dir || MISSING_DIRS_MASKED.some((d) => path.endsWith(d))) {
        b.push('--tmpfs', path, '--remount-ro', path);
        expect.set(path, 'tmpfs');
        masked.push(path);
        maskedAll.push(path);
      } else
        warnings.push(
          `${path} does not exist and lies inside a writable grant: the agent could create it (${id} not enforced by the sandbox for a missing file)`,
        );
      return;
    }
    if (access === 'write') {
      // Reading is allowed; only writable grants need a read-only mount here.
      if (!writable(path)) return;
      b.push('--ro-bind', path, path);
      expect.set(path, fileId(path));
    } else if (st.isDirectory()) {
      b.push('--tmpfs', path, '--remount-ro', path);
      expect.set(path, 'tmpfs');
      maskedAll.push(path);
    } else {
      b.push('--ro-bind', '/dev/null', path);
      expect.set(path, fileId('/dev/null'));
      maskedAll.push(path);
    }
    masked.push(path);
  };
  const masksAt = b.length;
  // A deny is masked when it lies in something shown.
  const inShown = withinAny([...visible, ...etcBound]);
  for (const d of denies) {
    if (inShown(d.path)) mask(d.path, d.access, d.id, d.dir);
  }
  // A mask holds its path, not the directories above it: an agent that renames
  // ~/.local/lib/python3.12 away and makes a fresh one has a writable user site again. Each
  // directory between a writable grant and a mask becomes a mount point of its own (bound onto
  // itself, still writable), which the kernel does not let anyone rename or remove (EBUSY).
  // Missing ones are made now (bubblewrap would leave them behind for the mask anyway). They go
  // before the masks: a bind made later would copy the host's directory over them. Each is
  // checked like every mount point, so one swapped for a link before the mount stops the launch.
  const holders = new Map<string, boolean>();
  for (const p of masked) {
    const g = fsGrants
      .filter((x) => x.write && isWithin(p, x.real) && x.real !== p)
      .sort((x, y) => y.real.length - x.real.length)[0];
    if (g === undefined) continue;
    for (let a = dirname(p); a !== g.real && isWithin(a, g.real); a = dirname(a)) {
      if (masked.some((m) => isWithin(a, m))) continue;
      const st = lstatOrUndefined(a);
      if (st !== undefined && !st.isDirectory()) continue;
      holders.set(a, st === undefined);
    }
  }
  const holderOps: string[] = [];
  for (const [a, missing] of [...holders.entries()].sort(
    ([x], [y]) => x.split(sep).length - y.split(sep).length,
  )) {
    if (missing && input.createMissing === false) throw new PlanNeedsWrites(a);
    if (missing) mkdirSync(a, { recursive: true, mode: 0o755 });
    holderOps.push('--bind', a, a);
    expect.set(a, fileId(a));
  }
  b.splice(masksAt, 0, ...holderOps);
  // `/**/tail` write denies (git hooks and config, agents' project settings) in every writable
  // grant: below it, and where the grant itself lies part-way into a tail (`repo/.git`).
  if (anywhere.length > 0) {
    const names = new Set(anywhere.map((a) => a.tail[0] ?? ''));
    for (const g of fsGrants.filter((x) => x.write)) {
      const segs = g.real.split('/');
      for (const a of anywhere)
        for (let k = 1; k < a.tail.length; k++)
          if (a.tail.slice(0, k).every((t, j) => segs[segs.length - k + j] === t))
            mask(join(g.real, ...a.tail.slice(k)), 'write', a.id, false, true);
      for (const hit of findNamed(g.real, names)) {
        const name = basename(hit);
        for (const a of anywhere)
          if (a.tail[0] === name) mask(join(hit, ...a.tail.slice(1)), 'write', a.id, false, true);
      }
    }
  }

  // Every mount point is checked by the helper once bubblewrap has built the sandbox, before
  // the agent starts: a path swapped for a link between this plan and the mount (a session
  // still running with a write grant can do that) lands the mount elsewhere, and the helper
  // then finds no mount of the planned file at the planned path and stops.
  for (const [path, e] of expect) {
    if (e === 'tmpfs') helper.push('--expect-tmpfs', path);
    else helper.push('--expect-mount', `${String(e.dev)}:${String(e.ino)}:${path}`);
  }

  b.push('--dir', SANDBOX_RUN_DIR);
  b.push('--ro-bind', input.helperPath, SANDBOX_HELPER);
  b.push('--ro-bind', input.egressDir, SANDBOX_EGRESS_DIR);
  helper.push('--bridge', `${SANDBOX_PROXY_PORT}:${SANDBOX_EGRESS_SOCKET}`);

  sealMountHolders(b, holdersAt, home);

  const cwd = visible.some((v) => isWithin(input.cwd, v)) ? input.cwd : home;
  b.push('--chdir', cwd);

  const l = input.limits;
  if (l.processes !== undefined) helper.push('--nproc', String(l.processes));
  if (l.memoryBytes !== undefined) helper.push('--as', String(l.memoryBytes));
  if (l.cpuSeconds !== undefined) helper.push('--cpu', String(l.cpuSeconds));
  if (l.fileSizeBytes !== undefined) helper.push('--fsize', String(l.fileSizeBytes));
  if (l.openFiles !== undefined) helper.push('--nofile', String(l.openFiles));
  helper.push('--status-fd', '4', '--go-fd', '5');

  const bwrapArgs = [...b, '--', SANDBOX_HELPER, ...helper, '--', ...input.command];
  return { bwrapArgs, env: sandboxEnv(input), grants, masked, warnings, cwd, copies };
}

/**
 * Make every directory that exists only to hold mount points read-only once bubblewrap has
 * mounted everything: the root, the home tmpfs, and the directories on the way to a mount below
 * a scratch directory (a home or grant under /tmp). A write there outside the grants would
 * land in the sandbox's memory and vanish with it while the agent reports success; it fails
 * instead (EROFS). Each such way is covered by one tmpfs at its first directory below the
 * scratch directory, mounted before anything inside it (at `at`) and sealed at the end; the
 * rest of the scratch directory stays writable.
 */
function sealMountHolders(b: string[], at: number, home: string): void {
  const destinations: string[] = [];
  for (let i = 0; i < b.length; i++) {
    const op = b[i];
    if (op === '--bind' || op === '--ro-bind' || op === '--symlink')
      destinations.push(b[i + 2] ?? '');
    else if (op === '--tmpfs' || op === '--dir') destinations.push(b[i + 1] ?? '');
  }
  const holders = new Set<string>();
  for (const d of destinations) {
    const scratch = SCRATCH_DIRS.find((t) => d.startsWith(t + sep));
    if (scratch === undefined) continue;
    const first = d.slice(scratch.length + 1).split(sep)[0] ?? '';
    const holder = join(scratch, first);
    holders.add(holder);
  }
  // A mount at the first level below scratch is itself the mount point: nothing lies on its way.
  const sealed = [...holders].filter((h) => !destinations.includes(h));
  b.splice(at, 0, ...sealed.flatMap((h) => ['--tmpfs', h]));
  // A grant mounted over the home directory (or the root) is what the agent sees there: sealing
  // would remount the grant read-only, not the tmpfs beneath it.
  const granted = new Set(
    b.flatMap((op, i) => (op === '--bind' || op === '--ro-bind' ? [b[i + 2] ?? ''] : [])),
  );
  for (const h of [...sealed, home, '/']) if (!granted.has(h)) b.push('--remount-ro', h);
}

/**
 * Entries of `root` (at any depth, links included but never followed) whose name is in
 * `names`, breadth first, bounded in depth and count; matches are not descended into.
 */
function findNamed(root: string, names: ReadonlySet<string>): string[] {
  const found: string[] = [];
  let level = [root];
  let seen = 0;
  for (let depth = 0; depth <= PROJECT_WALK_DEPTH && level.length > 0; depth++) {
    const next: string[] = [];
    for (const dir of level) {
      if (++seen > PROJECT_WALK_DIRS) return found;
      let entries;
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const e of entries) {
        const p = join(dir, e.name);
        if (names.has(e.name)) found.push(p);
        else if (e.isDirectory() && e.name !== 'node_modules') next.push(p);
      }
    }
    level = next;
  }
  return found;
}

function sandboxEnv(input: SandboxPlanInput): Record<string, string> {
  const env: Record<string, string> = {};
  const parent = input.parentEnv;
  for (const [k, v] of Object.entries(parent)) {
    if (v === undefined) continue;
    if (PASSED_ENV.includes(k) || k.startsWith('LC_') || input.manifest.env.includes(k)) env[k] = v;
  }
  const proxy = `http://127.0.0.1:${SANDBOX_PROXY_PORT}`;
  for (const k of PROXY_ENV) env[k] = proxy;
  env['NO_PROXY'] = '';
  env['no_proxy'] = '';
  env['HOME'] = input.home;
  env['TMPDIR'] = '/tmp';
  env['CORDON_SESSION'] = input.session;
  env['PATH'] ??= '/usr/local/bin:/usr/bin:/bin';
  return env;
}
