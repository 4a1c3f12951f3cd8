import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  cpSync,
  existsSync,
  fchmodSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  type Dirent,
  type Stats,
} from 'node:fs';
import { basename, dirname, join, resolve as resolvePath, sep } from 'node:path';
import { detectionFindingEvent, type EventContext, type OcsfEvent } from '../audit/events.js';
import { CordonError } from '../errors.js';
import { writeAll } from '../store/files.js';
import { parseStrictJson } from '../manifest/json.js';
import {
  allowedEntry,
  entryText,
  formatGitConfig,
  parseGitConfig,
  redirects,
  type GitConfigEntry,
} from './git-config.js';
import { isWithin } from './linux/plan.js';
import { isAlive, startTime } from './linux/procfs.js';

/**
 * The persistence guard. An agent with a write grant can leave code that the user's own tools
 * run after the session, outside the sandbox: a git hook or a `core.fsmonitor` in a repository
 * (one it created, or one it swapped in by renaming `.git`), a hook in an agent's settings, an
 * MCP server, a line in `~/.bashrc`. Launch-time masks cannot cover what does not exist yet,
 * so the guard records every such file under the write grants before the agent starts, and
 * when the session ends (or at the next `cordon run`/`cordon ps` after a crash) moves what the
 * session created or changed to a quarantine directory, puts the launch-time version back, and
 * reports each one.
 */

/** What the guard watches for one session, fixed at launch. */
export interface GuardScope {
  readonly session: string;
  readonly home: string;
  /** Real paths of the session's writable grants. */
  readonly writeRoots: readonly string[];
  /** Git repositories (false when the manifest lifts the `git-hooks` deny for writing). */
  readonly git: boolean;
  /** Shell start-up files (false when the manifest lifts `shell-startup` for writing). */
  readonly shell: boolean;
  /** Cordon's own directories: hidden from the agent, never walked (its quarantine is there). */
  readonly exclude: readonly string[];
}

export type PersistenceKind =
  | 'git-hook'
  | 'git-config'
  | 'git-redirect'
  | 'agent-config'
  | 'agent-config-keys'
  | 'shell-startup'
  | 'guard-incomplete';

/** One thing the guard found and what it did about it. */
export interface PersistenceFinding {
  readonly session: string;
  readonly kind: PersistenceKind;
  readonly path: string;
  readonly change: 'created' | 'changed' | 'unknown';
  /** Where the session's version now lies (outside every grant). */
  readonly movedTo?: string;
  /** The launch-time version is back in place. */
  readonly restored: boolean;
  /** What made it dangerous and what was done, for people. */
  readonly detail: string;
}

// Bounds of the walk below each writable grant, the same at launch and at exit. A repository or
// agent configuration deeper than this, or beyond this many directories, is not seen; an exit
// walk that reaches either limit is itself reported, naming the directories it did not enter
// (the agent may have filled the tree to hide something in it).
export const GUARD_WALK_DEPTH = 32;
export const GUARD_WALK_DIRS = 20_000;
export const GUARD_WALK_NEW_DIRS = 500_000;
// Launch-time copies are kept up to this size; a larger file is compared by digest only.
const MAX_COPY = 4 * 1024 * 1024;
// Launch-time copies in all, and watched files in all: beyond these, files are compared by
// digest only (changed ones are still moved aside, with nothing to put back), and beyond the
// second the walk is incomplete (reported).
const MAX_COPIED = 64 * 1024 * 1024;
const MAX_ITEMS = 50_000;

// Files in the home directory that a shell, git or an agent reads at start-up.
const HOME_FILES: readonly (readonly [string, PersistenceKind])[] = [
  ['.bashrc', 'shell-startup'],
  ['.bash_profile', 'shell-startup'],
  ['.bash_login', 'shell-startup'],
  ['.bash_logout', 'shell-startup'],
  ['.bash_aliases', 'shell-startup'],
  ['.profile', 'shell-startup'],
  ['.zshrc', 'shell-startup'],
  ['.zshenv', 'shell-startup'],
  ['.zprofile', 'shell-startup'],
  ['.zlogin', 'shell-startup'],
  ['.zlogout', 'shell-startup'],
  ['.xprofile', 'shell-startup'],
  ['.xsessionrc', 'shell-startup'],
  ['.pam_environment', 'shell-startup'],
  ['.config/fish/config.fish', 'shell-startup'],
  ['.gitconfig', 'git-config'],
  ['.config/git/config', 'git-config'],
  ['.claude.json', 'agent-config-keys'],
  ['.cursor/mcp.json', 'agent-config'],
];
// Directories in the home directory whose every file runs at start-up or login.
const HOME_DIRS: readonly string[] = [
  '.bashrc.d',
  '.zshrc.d',
  '.config/fish/conf.d',
  '.config/fish/functions',
  '.config/autostart',
  '.config/systemd/user',
  '.config/environment.d',
];
// Keys of ~/.claude.json that make Claude Code run something; the rest is its working state.
const CLAUDE_JSON_KEYS = [
  'hooks',
  'mcpServers',
  'enabledMcpjsonServers',
  'enableAllProjectMcpServers',
];

interface Entry {
  readonly type: 'file' | 'link' | 'dir' | 'other';
  readonly ctimeMs: number;
  readonly mode: number;
  readonly sha256?: string;
  readonly target?: string;
  /** A copy of the content is kept (launch snapshots only). */
  readonly copied?: boolean;
}

interface Item {
  readonly kind: PersistenceKind;
  readonly entry: Entry;
}

interface Scan {
  readonly items: Map<string, Item>;
  readonly gitDirs: Set<string>;
  readonly incomplete: boolean;
  /** Directories the walk did not enter (a few, for the finding). */
  readonly unchecked: readonly string[];
}

/**
 * A git directory by content, as git's discovery recognises one whatever its name (a bare
 * repository, a `.git` renamed to hide it): `HEAD` beside `objects/` and `refs/`, or beside a
 * `commondir`.
 */
function looksLikeGitDir(d: string): boolean {
  if (lstatOrUndefined(join(d, 'HEAD')) === undefined) return false;
  // A linked worktree's git directory takes objects/ and refs/ from its `commondir`.
  if (lstatOrUndefined(join(d, 'commondir')) !== undefined) return true;
  return (
    lstatOrUndefined(join(d, 'objects'))?.isDirectory() === true &&
    lstatOrUndefined(join(d, 'refs'))?.isDirectory() === true
  );
}

interface Snapshot {
  readonly version: 1;
  readonly scope: GuardScope;
  readonly takenAt: number;
  readonly cordonPid: number;
  readonly cordonStart?: string;
  readonly items: Record<string, Item>;
  readonly incomplete: boolean;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export function guardDir(stateDir: string, session: string): string {
  return join(stateDir, 'persistence', session);
}

/** Where the guard moves what a session planted. */
export function quarantineDir(stateDir: string, session: string): string {
  return join(stateDir, 'quarantine', session);
}

function lstatOrUndefined(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch {
    return undefined;
  }
}

function realOrUndefined(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

function entryOf(p: string, st: Stats): { entry: Entry; data?: Buffer } {
  const base = { ctimeMs: st.ctimeMs, mode: st.mode & 0o7777 };
  if (st.isSymbolicLink()) return { entry: { type: 'link', ...base, target: readlinkSync(p) } };
  if (st.isDirectory()) return { entry: { type: 'dir', ...base } };
  if (!st.isFile()) return { entry: { type: 'other', ...base } };
  if (st.size > MAX_COPY) {
    // Not read (an agent could make it huge): any write, rename or chmod changes its ctime.
    return { entry: { type: 'file', ...base, sha256: `large:${st.size}:${st.ctimeMs}` } };
  }
  const data = readFileSync(p);
  return { entry: { type: 'file', ...base, sha256: sha256(data) }, data };
}

function same(a: Entry, b: Entry): boolean {
  return a.type === b.type && a.sha256 === b.sha256 && a.target === b.target;
}

/**
 * Everything the guard watches below the scope's writable grants: git directories (with their
 * config, hooks, commondir, modules and worktrees, and what gitfiles and commondir point to),
 * agents' configuration and the home directory's start-up files. Never follows a symbolic link
 * while walking; a link is itself an entry.
 */
function scan(
  scope: GuardScope,
  keep?: (path: string, data: Buffer) => void,
  since?: number,
): Scan {
  const items = new Map<string, Item>();
  const gitDirs = new Set<string>();
  let dirs = 0;
  let incomplete = false;
  const unchecked: string[] = [];
  const skip = (dir: string): void => {
    incomplete = true;
    if (unchecked.length < 5) unchecked.push(dir);
  };
  const within = (p: string): boolean =>
    scope.writeRoots.some((r) => isWithin(p, r)) && !scope.exclude.some((x) => isWithin(p, x));
  const budget = (): boolean => {
    if (++dirs <= GUARD_WALK_DIRS) return true;
    incomplete = true;
    return false;
  };
  // At exit, a directory whose ctime is after the launch was made or changed by the session
  // (a process cannot set ctime back): walked whatever its depth and outside the budget, so
  // that filling the tree with directories or burying a repository deep does not hide it. The
  // cost is bounded by what the session itself did, and by GUARD_WALK_NEW_DIRS.
  let newDirs = 0;
  const fresh = (dir: string): boolean =>
    since !== undefined && (lstatOrUndefined(dir)?.ctimeMs ?? 0) >= since;
  const list = (dir: string): Dirent[] => {
    try {
      return readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      // A directory the agent made unreadable (`chmod 311`) still lets git reach the hooks in
      // it by name: read it with the owner's read right added for a moment.
      const code = (e as NodeJS.ErrnoException).code;
      const st = lstatOrUndefined(dir);
      if ((code !== 'EACCES' && code !== 'EPERM') || st?.isDirectory() !== true) return [];
      // chmod follows links: only a directory still reached without one, and still the same
      // inode, gets the read right (a link swapped in would carry the mode to its target).
      try {
        if (realpathSync(dir) !== dir) return [];
        const now = statSync(dir);
        if (now.ino !== st.ino || now.dev !== st.dev) return [];
      } catch {
        return [];
      }
      try {
        chmodSync(dir, (st.mode & 0o7777) | 0o500);
        return readdirSync(dir, { withFileTypes: true });
      } catch {
        return [];
      } finally {
        try {
          chmodSync(dir, st.mode & 0o7777);
        } catch {
          // gone
        }
      }
    }
  };
  let copied = 0;
  const add = (p: string, kind: PersistenceKind): void => {
    if (!within(p) || items.has(p)) return;
    if (items.size >= MAX_ITEMS) {
      incomplete = true;
      return;
    }
    const st = lstatOrUndefined(p);
    if (st === undefined) return;
    try {
      const { entry, data: read } = entryOf(p, st);
      const data = read !== undefined && copied + read.length <= MAX_COPIED ? read : undefined;
      if (data !== undefined) copied += data.length;
      items.set(p, {
        kind,
        entry: data !== undefined && keep !== undefined ? { ...entry, copied: true } : entry,
      });
      if (data !== undefined) keep?.(p, data);
    } catch {
      // Vanished or unreadable between lstat and read: recorded as changed (no digest).
      items.set(p, { kind, entry: { type: 'other', ctimeMs: st.ctimeMs, mode: st.mode & 0o7777 } });
    }
  };
  /** Every file below `dir`, bounded. */
  const addTree = (dir: string, kind: PersistenceKind, depth = 0): void => {
    const st = lstatOrUndefined(dir);
    if (st === undefined) return;
    if (!st.isDirectory() || depth > GUARD_WALK_DEPTH) {
      add(dir, kind);
      return;
    }
    if (!budget()) return;
    for (const e of list(dir)) addTree(join(dir, e.name), kind, depth + 1);
  };

  /** A hook, and the file it is a link to when that lies in a grant (`pre-commit -> ../x`). */
  const hook = (p: string): void => {
    add(p, 'git-hook');
    const real = realOrUndefined(p);
    if (real !== undefined && real !== p) add(real, 'git-hook');
  };
  const hookDir = (dir: string): void => {
    if (!within(dir)) return;
    for (const e of list(dir)) if (!e.name.endsWith('.sample')) hook(join(dir, e.name));
    // Husky's `core.hooksPath = .husky/_`: each hook there runs the script of the same name
    // one directory up (`.husky/pre-commit`), which the user edits and the agent can too.
    if (basename(dir) === '_')
      for (const e of list(dirname(dir))) if (!e.isDirectory()) hook(join(dirname(dir), e.name));
  };
  const seenConfigs = new Set<string>();
  const gitConfigRefs = (file: string, worktree: string | undefined): void => {
    if (seenConfigs.has(file) || seenConfigs.size > 1000) return;
    seenConfigs.add(file);
    const refs = configRefs(file, worktree, scope.home);
    for (const h of refs.hooks) hookDir(h);
    for (const inc of refs.includes) {
      add(inc, 'git-config');
      gitConfigRefs(inc, worktree);
    }
  };
  const gitDir = (d: string, worktree: string | undefined): void => {
    if (!scope.git || gitDirs.has(d)) return;
    if (!fresh(d) && !budget()) {
      skip(d);
      return;
    }
    gitDirs.add(d);
    add(join(d, 'config'), 'git-config');
    add(join(d, 'config.worktree'), 'git-config');
    add(join(d, 'commondir'), 'git-redirect');
    const hooks = join(d, 'hooks');
    const hst = lstatOrUndefined(hooks);
    if (hst?.isDirectory() === true) {
      for (const e of list(hooks)) if (!e.name.endsWith('.sample')) hook(join(hooks, e.name));
    } else if (hst !== undefined) add(hooks, 'git-hook');
    // A hooks directory the repository's own config names (`core.hooksPath = .husky`), and the
    // files it includes, when they lie in a writable grant.
    gitConfigRefs(join(d, 'config'), worktree);
    gitConfigRefs(join(d, 'config.worktree'), worktree);
    // Submodules' git directories (names may contain slashes) and linked worktrees' directories.
    const modules = (dir: string, depth: number): void => {
      if (depth > GUARD_WALK_DEPTH || !budget()) return;
      for (const e of list(dir)) {
        if (!e.isDirectory()) continue;
        const p = join(dir, e.name);
        if (['HEAD', 'config', 'hooks', 'commondir'].some((f) => existsSync(join(p, f))))
          gitDir(p, undefined);
        else modules(p, depth + 1);
      }
    };
    modules(join(d, 'modules'), 0);
    for (const e of list(join(d, 'worktrees')))
      if (e.isDirectory()) gitDir(join(d, 'worktrees', e.name), undefined);
    const common = pointer(join(d, 'commondir'), d);
    if (common !== undefined && within(common)) gitDir(common, undefined);
  };
  /** A `.git` that is a file (`gitdir: PATH`) or a link: the directory git will use. */
  const gitLink = (p: string): void => {
    const target = pointer(p, dirname(p), 'gitdir:');
    if (target !== undefined && within(target) && lstatOrUndefined(target)?.isDirectory() === true)
      gitDir(target, dirname(p));
  };
  const agentDir = (d: string): void => {
    const name = basename(d);
    const home = dirname(d) === scope.home;
    if (name === '.claude') {
      for (const e of list(d)) {
        if (/^settings.*\.json$/.test(e.name)) add(join(d, e.name), 'agent-config');
        else if (e.name === 'hooks') addTree(join(d, e.name), 'agent-config');
      }
    } else if (name === '.codex' && home) {
      add(join(d, 'config.toml'), 'agent-config');
      add(join(d, 'hooks.json'), 'agent-config');
      addTree(join(d, 'rules'), 'agent-config');
    } else if (name === '.gemini' && home) {
      add(join(d, 'settings.json'), 'agent-config');
      addTree(join(d, 'extensions'), 'agent-config');
    } else addTree(d, 'agent-config');
  };
  const AGENT_DIRS = ['.claude', '.codex', '.gemini'];

  for (const [rel, kind] of HOME_FILES) {
    if (kind === 'shell-startup' && !scope.shell) continue;
    if (kind === 'git-config' && !scope.git) continue;
    homeFile(join(scope.home, rel), kind);
    // The user's global hooks directory and included files apply to every repository.
    if (kind === 'git-config') gitConfigRefs(join(scope.home, rel), undefined);
  }
  if (scope.shell)
    for (const rel of HOME_DIRS) homeFile(join(scope.home, rel), 'shell-startup', true);

  for (const root of scope.writeRoots) {
    // A grant inside a repository or an agent's directory (`~/.claude/hooks`): that directory.
    const parts = root.split(sep);
    for (let i = parts.length; i > 1; i--) {
      const name = parts[i - 1] as string;
      const at = parts.slice(0, i).join(sep);
      if (name === '.git') {
        if (lstatOrUndefined(at)?.isDirectory() === true)
          gitDir(at, parts.slice(0, i - 1).join(sep));
        else gitLink(at);
        break;
      }
      if (AGENT_DIRS.includes(name)) {
        agentDir(at);
        break;
      }
    }
    let level = [root];
    for (let depth = 0; level.length > 0; depth++) {
      const next: string[] = [];
      for (const dir of level) {
        if (fresh(dir) ? ++newDirs > GUARD_WALK_NEW_DIRS : depth > GUARD_WALK_DEPTH || !budget()) {
          skip(dir);
          continue;
        }
        for (const e of list(dir)) {
          const p = join(dir, e.name);
          if (!within(p)) continue;
          if (e.name === '.git') {
            if (e.isDirectory()) gitDir(p, dir);
            else if (scope.git) {
              add(p, 'git-redirect');
              gitLink(p);
            }
          } else if (e.name === '.mcp.json') add(p, 'agent-config');
          else if (e.isDirectory()) {
            if (AGENT_DIRS.includes(e.name)) agentDir(p);
            if (scope.git && looksLikeGitDir(p)) gitDir(p, dir);
            // Package trees are large and hold no repository or settings the user runs from;
            // hooks directories and included files are found through the config that names them.
            else if (e.name !== 'node_modules') next.push(p);
          }
        }
      }
      level = next;
    }
  }
  return { items, gitDirs, incomplete, unchecked };

  /**
   * A start-up file in the home directory, also when an agent made a directory on its path a
   * link (`~/.config -> proj/cfg`): the link is what is recorded, and neutralised if new.
   */
  function homeFile(p: string, kind: PersistenceKind, tree = false): void {
    let at = scope.home;
    for (const part of p
      .slice(scope.home.length + 1)
      .split(sep)
      .slice(0, -1)) {
      at = join(at, part);
      const st = lstatOrUndefined(at);
      if (st === undefined) return;
      if (st.isSymbolicLink()) {
        // The link itself (new or changed is planted), and what the shell reads through it.
        add(at, kind);
        break;
      }
    }
    if (tree) {
      if (within(p)) addTree(p, kind);
    } else add(p, kind);
    // Dotfiles kept elsewhere and linked in (`~/.bashrc -> dotfiles/bashrc`): the file read.
    const real = realOrUndefined(p);
    if (real !== undefined && real !== p) {
      if (tree) {
        if (within(real)) addTree(real, kind);
      } else add(real, kind);
    }
  }
}

/** The directory a `gitdir:` file, a `commondir` file or a link names, resolved; else undefined. */
function pointer(p: string, base: string, prefix = ''): string | undefined {
  const st = lstatOrUndefined(p);
  if (st === undefined) return undefined;
  if (st.isSymbolicLink()) return realOrUndefined(p);
  if (!st.isFile() || st.size > 4096) return undefined;
  let text: string;
  try {
    text = readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
  if (!text.startsWith(prefix)) return undefined;
  return realOrUndefined(resolvePath(base, text.slice(prefix.length).trim()));
}

/** A regular file's text, or undefined (a link, a FIFO, missing, larger than `max`). */
function smallText(p: string, max = MAX_COPY): string | undefined {
  const st = lstatOrUndefined(p);
  if (st === undefined || !st.isFile() || st.size > max) return undefined;
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * What a git configuration file makes git read or run from elsewhere: hook directories
 * (`core.hooksPath`, relative to the work tree) and included files (`include.path`,
 * `includeIf.*.path`, relative to the including file).
 */
function configRefs(
  file: string,
  worktree: string | undefined,
  home: string,
): { hooks: string[]; includes: string[] } {
  const hooks: string[] = [];
  const includes: string[] = [];
  let entries: GitConfigEntry[];
  try {
    entries = parseGitConfig(smallText(file) ?? '');
  } catch {
    return { hooks, includes };
  }
  const expand = (v: string, base: string | undefined): string | undefined =>
    v.startsWith('~/')
      ? join(home, v.slice(2))
      : v.startsWith('/')
        ? v
        : base === undefined
          ? undefined
          : resolvePath(base, v);
  for (const e of entries) {
    if (e.value === undefined) continue;
    if (e.section === 'core' && e.key === 'hookspath') {
      const p = expand(e.value, worktree);
      if (p !== undefined) hooks.push(realOrUndefined(p) ?? p);
    } else if ((e.section === 'include' || e.section === 'includeif') && e.key === 'path') {
      const p = expand(e.value, dirname(file));
      if (p !== undefined) includes.push(p);
    }
  }
  return { hooks, includes };
}

/**
 * Record what the guard watches, before the agent starts: the list of files with their digests
 * and copies of their content, in the state directory (which no grant reaches).
 */
export function recordPersistence(
  stateDir: string,
  scope: GuardScope,
  now: number,
): { readonly watching: boolean; readonly items: number; readonly incomplete: boolean } {
  // Without a writable grant the session cannot change anything the guard watches.
  if (scope.writeRoots.length === 0) return { watching: false, items: 0, incomplete: false };
  const dir = guardDir(stateDir, scope.session);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'blobs'), { recursive: true, mode: 0o700 });
  const s = scan(scope, (_p, data) => {
    const blob = join(dir, 'blobs', sha256(data));
    if (!existsSync(blob)) writeFileSync(blob, data, { mode: 0o600 });
  });
  const cordonStart = startTime(process.pid);
  const snapshot: Snapshot = {
    version: 1,
    scope,
    takenAt: now,
    cordonPid: process.pid,
    ...(cordonStart === undefined ? {} : { cordonStart }),
    items: Object.fromEntries(s.items),
    incomplete: s.incomplete,
  };
  writeFileSync(join(dir, 'snapshot.tmp'), JSON.stringify(snapshot) + '\n', { mode: 0o600 });
  renameSync(join(dir, 'snapshot.tmp'), join(dir, 'snapshot.json'));
  return { watching: true, items: s.items.size, incomplete: s.incomplete };
}

function readSnapshot(stateDir: string, session: string): Snapshot {
  const file = join(guardDir(stateDir, session), 'snapshot.json');
  try {
    const s = parseStrictJson(readFileSync(file, 'utf8')) as unknown as Snapshot;
    if (s.version !== 1 || typeof s.items !== 'object') throw new Error('unknown format');
    return s;
  } catch (e) {
    throw new CordonError('PERSISTENCE_GUARD_FAILED', `${file}: ${(e as Error).message}`, {
      file,
      hint: 'the launch-time record of the session is damaged: review the repositories and agent settings under its write grants by hand',
      cause: e,
    });
  }
}

/** Move `p` to the session's quarantine directory (below the same absolute path), never deleting it. */
function moveAside(stateDir: string, session: string, p: string): string {
  let dest = join(quarantineDir(stateDir, session), p);
  for (let n = 1; lstatOrUndefined(dest) !== undefined; n++)
    dest = `${join(quarantineDir(stateDir, session), p)}.${n}`;
  mkdirSync(dirname(dest), { recursive: true, mode: 0o700 });
  try {
    renameSync(p, dest);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    const st = lstatSync(p);
    if (st.isSymbolicLink()) {
      symlinkSync(readlinkSync(p), dest);
      unlinkSync(p);
    } else if (st.isDirectory()) {
      cpSync(p, dest, { recursive: true, verbatimSymlinks: true });
      rmSync(p, { recursive: true, force: true });
    } else {
      copyFileSync(p, dest);
      unlinkSync(p);
    }
  }
  // Nothing in quarantine is meant to run.
  if (lstatSync(dest).isFile()) chmodSync(dest, 0o600);
  return dest;
}

/**
 * Fail unless every directory on the way to `p` is a real directory (no link an agent could
 * have swapped in since the scan): the guard writes only where it looked.
 */
function assertRealParent(p: string): void {
  const parent = dirname(p);
  if (realpathSync(parent) !== parent)
    throw new Error(`${parent} now leads elsewhere through a symbolic link; nothing was written`);
}

/**
 * Create `p` with these bytes and mode without following a link at `p` or on its way: written
 * to a new file beside it (O_EXCL, mode set on the descriptor), then renamed over whatever `p`
 * is by then — a link planted there by a concurrent session is replaced, never written through.
 */
export function writeNoFollow(p: string, data: Buffer | string, mode: number): void {
  assertRealParent(p);
  const tmp = join(dirname(p), `.cordon-guard-${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    fchmodSync(fd, mode & 0o7777);
    writeAll(fd, typeof data === 'string' ? Buffer.from(data) : data);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, p);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Put the launch-time version back; false when there was none or no copy was kept. */
function restore(stateDir: string, session: string, p: string, was: Entry | undefined): boolean {
  if (was === undefined) return false;
  if (was.type === 'link' && was.target !== undefined) {
    assertRealParent(p);
    const tmp = join(dirname(p), `.cordon-guard-${randomBytes(6).toString('hex')}.tmp`);
    symlinkSync(was.target, tmp);
    renameSync(tmp, p);
    return true;
  }
  if (was.type !== 'file' || was.copied !== true || was.sha256 === undefined) return false;
  writeNoFollow(p, readFileSync(join(guardDir(stateDir, session), 'blobs', was.sha256)), was.mode);
  return true;
}

function blob(stateDir: string, session: string, e: Entry | undefined): Buffer | undefined {
  if (e?.type !== 'file' || e.copied !== true || e.sha256 === undefined) return undefined;
  return readFileSync(join(guardDir(stateDir, session), 'blobs', e.sha256));
}

const LABEL: Record<PersistenceKind, string> = {
  'git-hook': 'git hook',
  'git-config': 'git configuration',
  'git-redirect': 'git directory redirection',
  'agent-config': 'agent configuration',
  'agent-config-keys': 'agent hooks or MCP servers',
  'shell-startup': 'shell start-up file',
  'guard-incomplete': 'persistence guard',
};

/**
 * Compare what the session left with its launch-time record and neutralise what it created or
 * changed: moved aside to the quarantine directory, the launch-time version restored. Returns
 * one finding for each; the record stays until `finishPersistence`.
 */
export function checkPersistence(stateDir: string, session: string): PersistenceFinding[] {
  const snap = readSnapshot(stateDir, session);
  const scope = snap.scope;
  // Files whose inode changed status after this moment were touched by the session (the kernel
  // sets ctime on every write, rename, link and chmod; a process cannot set it back).
  const since = snap.takenAt - 1000;
  const now = scan(scope, undefined, since);
  const findings: PersistenceFinding[] = [];
  const report = (
    p: string,
    kind: PersistenceKind,
    was: Entry | undefined,
    detail: string,
    act: 'move' | 'keys' | { sanitized: string },
  ): void => {
    let movedTo: string | undefined;
    let restored = false;
    let what = detail;
    try {
      if (act === 'move') {
        movedTo = moveAside(stateDir, session, p);
        restored = restore(stateDir, session, p, was);
      } else if (act === 'keys') {
        movedTo = join(quarantineDir(stateDir, session), p);
        mkdirSync(dirname(movedTo), { recursive: true, mode: 0o700 });
        copyFileSync(p, movedTo);
        chmodSync(movedTo, 0o600);
        restored = true;
      } else {
        movedTo = moveAside(stateDir, session, p);
        writeNoFollow(p, act.sanitized, 0o644);
        what += '; the rest of it was written back';
      }
    } catch (e) {
      what += `; could not neutralise it: ${(e as Error).message}`;
    }
    findings.push({
      session,
      kind,
      path: p,
      change: was === undefined ? 'created' : 'changed',
      ...(movedTo === undefined ? {} : { movedTo }),
      restored,
      detail: what,
    });
  };

  /**
   * A file not recorded by a launch walk that reached a bound, which the session did not put
   * there: its ctime and that of every directory between it and its grant are older than the
   * session. Its own ctime alone proves nothing: renaming a directory leaves the ctime of the
   * files in it as it was (a `.git` staged elsewhere in an earlier session and moved into
   * place). A repository beyond the launch bounds that the session merely used (a commit
   * changes `.git`) is therefore treated as new: the originals are in the quarantine.
   */
  const untouched = (p: string): boolean => {
    const root = scope.writeRoots
      .filter((r) => isWithin(p, r))
      .reduce<string | undefined>(
        (a, r) => (a === undefined || r.length > a.length ? r : a),
        undefined,
      );
    if (root === undefined) return false;
    for (let at = p; at !== root && isWithin(at, root); at = dirname(at)) {
      const st = lstatOrUndefined(at);
      if (st === undefined || st.ctimeMs >= since) return false;
    }
    return true;
  };

  for (const [p, item] of now.items) {
    const was = snap.items[p]?.entry;
    const cur = item.entry;
    if (was !== undefined && same(was, cur)) continue;
    // After a launch walk that saw everything, a file it did not record was not there.
    if (was === undefined && snap.incomplete && cur.ctimeMs < since && untouched(p)) continue;
    const label = LABEL[item.kind];
    switch (item.kind) {
      case 'git-hook':
      case 'agent-config':
      case 'shell-startup':
        report(
          p,
          item.kind,
          was,
          `${label} ${was === undefined ? 'created' : 'changed'} during the session`,
          'move',
        );
        break;
      case 'git-redirect': {
        // A `.git` file or link, or a commondir, naming a git directory the guard checked
        // (a linked worktree, a submodule) is ordinary; anything else is a redirection.
        const target =
          basename(p) === '.git' ? pointer(p, dirname(p), 'gitdir:') : pointer(p, dirname(p));
        if (target !== undefined && now.gitDirs.has(target)) break;
        if (
          basename(p) === '.git' &&
          target !== undefined &&
          !scope.writeRoots.some((r) => isWithin(target, r))
        )
          break;
        report(
          p,
          item.kind,
          was,
          `git directory redirection to ${target ?? 'an unreadable place'}`,
          'move',
        );
        break;
      }
      case 'git-config':
        gitConfig(p, item, was);
        break;
      case 'agent-config-keys':
        claudeJson(p, cur, was);
        break;
      case 'guard-incomplete':
        break;
    }
  }
  if (now.incomplete)
    findings.push({
      session,
      kind: 'guard-incomplete',
      path: scope.writeRoots.join(', '),
      change: 'unknown',
      restored: false,
      detail: `the persistence guard reached its bounds (${GUARD_WALK_DIRS} directories, ${GUARD_WALK_DEPTH} levels, ${GUARD_WALK_NEW_DIRS} directories the session changed, ${MAX_ITEMS} files) under the write grants and did not look at all of them${now.unchecked.length === 0 ? '' : `, among them ${now.unchecked.join(', ')}`}; review these by hand`,
    });
  return findings;

  function gitConfig(p: string, item: Item, was: Entry | undefined): void {
    const global = !p.includes(`${sep}.git${sep}`) && !now.gitDirs.has(dirname(p));
    if (item.entry.type !== 'file') {
      const st = lstatOrUndefined(p);
      report(
        p,
        'git-config',
        was,
        st?.isFile() === true
          ? `git configuration Cordon cannot read (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`
          : 'git configuration replaced by a link, a directory or a special file',
        'move',
      );
      return;
    }
    let cur: GitConfigEntry[];
    try {
      const text = smallText(p);
      if (text === undefined) throw new Error('not a readable file of at most 4 MiB');
      cur = parseGitConfig(text);
    } catch (e) {
      report(
        p,
        'git-config',
        was,
        `git configuration git may read differently than Cordon (${(e as Error).message})`,
        'move',
      );
      return;
    }
    // Only keys on the allow list may be added. A repository the session created may keep its
    // remotes; one that existed (or the user's global configuration) may not gain a new place
    // to send things.
    const strict = was !== undefined || global;
    const dangerous = (e: GitConfigEntry): boolean => !allowedEntry(e) || (strict && redirects(e));
    let before = new Set<string>();
    const old = blob(stateDir, session, was);
    if (old !== undefined) {
      try {
        before = new Set(parseGitConfig(old.toString('utf8')).filter(dangerous).map(entryText));
      } catch {
        before = new Set();
      }
    }
    const added = cur.filter((e) => dangerous(e) && !before.has(entryText(e)));
    if (added.length === 0) return;
    const keys = [...new Set(added.map((e) => entryText(e).split('=')[0]))].join(', ');
    if (was !== undefined)
      report(
        p,
        'git-config',
        was,
        `git configuration gained keys that are not on the guard's allow list or redirect: ${keys}`,
        'move',
      );
    else
      report(
        p,
        'git-config',
        was,
        `git configuration with keys that are not on the guard's allow list or redirect: ${keys}`,
        {
          sanitized: formatGitConfig(cur.filter((e) => !dangerous(e))),
        },
      );
  }

  function claudeJson(p: string, cur: Entry, was: Entry | undefined): void {
    type Obj = Record<string, unknown>;
    const isObj = (v: unknown): v is Obj =>
      typeof v === 'object' && v !== null && !Array.isArray(v);
    let now: unknown;
    try {
      const text = cur.type === 'file' ? smallText(p) : undefined;
      now = text === undefined ? undefined : parseStrictJson(text);
    } catch {
      now = undefined;
    }
    const oldBytes = blob(stateDir, session, was);
    let before: unknown = {};
    try {
      if (oldBytes !== undefined) before = parseStrictJson(oldBytes.toString('utf8'));
    } catch {
      before = {};
    }
    if (!isObj(now)) {
      report(p, 'agent-config-keys', was, 'agent configuration Cordon cannot read as JSON', 'move');
      return;
    }
    const b = isObj(before) ? before : {};
    const changed: string[] = [];
    const put = (into: Obj, from: Obj, key: string, name: string): void => {
      if (JSON.stringify(into[key]) === JSON.stringify(from[key])) return;
      changed.push(name);
      // JSON.stringify leaves out a key set to undefined.
      into[key] = from[key];
    };
    const fixed: Obj = structuredClone(now);
    for (const k of CLAUDE_JSON_KEYS) put(fixed, b, k, k);
    const projects = fixed['projects'];
    const oldProjects = isObj(b['projects']) ? b['projects'] : {};
    if (isObj(projects)) {
      for (const [name, proj] of Object.entries(projects)) {
        if (!isObj(proj)) continue;
        const old = oldProjects[name];
        for (const k of CLAUDE_JSON_KEYS)
          put(proj, isObj(old) ? old : {}, k, `projects["${name}"].${k}`);
      }
    }
    if (changed.length === 0) return;
    report(
      p,
      'agent-config-keys',
      was,
      `keys that define hooks or MCP servers changed: ${changed.join(', ')}; their launch-time values were restored, the rest of the file kept`,
      'keys',
    );
    try {
      writeNoFollow(p, JSON.stringify(fixed, null, 2) + '\n', cur.mode & 0o777);
    } catch (e) {
      const last = findings[findings.length - 1];
      if (last !== undefined)
        findings[findings.length - 1] = {
          ...last,
          restored: false,
          detail: `${last.detail}; could not write it back: ${(e as Error).message}`,
        };
    }
  }
}

/** Forget a session's launch-time record (its findings are recorded). */
export function finishPersistence(stateDir: string, session: string): void {
  rmSync(guardDir(stateDir, session), { recursive: true, force: true });
}

/**
 * Sessions whose `cordon run` died before its guard ran (SIGKILL, a crash, power loss): check
 * each now. Findings are kept beside the record until `finishPersistence`, so that a caller
 * without the audit log (`cordon ps`) neutralises at once and the next `cordon run` records.
 */
export function recoverPersistence(
  stateDir: string,
  onChecked?: (f: PersistenceFinding) => void,
): PersistenceFinding[] {
  let names: string[];
  try {
    names = readdirSync(join(stateDir, 'persistence'));
  } catch {
    return [];
  }
  const out: PersistenceFinding[] = [];
  for (const session of names) {
    const dir = guardDir(stateDir, session);
    const done = join(dir, 'findings.json');
    try {
      // A record still being written belongs to a session whose agent has not started.
      if (!existsSync(join(dir, 'snapshot.json'))) continue;
      if (existsSync(done)) {
        out.push(
          ...(parseStrictJson(readFileSync(done, 'utf8')) as unknown as PersistenceFinding[]),
        );
        continue;
      }
      const snap = readSnapshot(stateDir, session);
      if (isAlive(snap.cordonPid, snap.cordonStart)) continue;
      const found = checkPersistence(stateDir, session);
      writeFileSync(done, JSON.stringify(found) + '\n', { mode: 0o600 });
      if (found.length === 0) finishPersistence(stateDir, session);
      for (const f of found) onChecked?.(f);
      out.push(...found);
    } catch (e) {
      out.push({
        session,
        kind: 'guard-incomplete',
        path: dir,
        change: 'unknown',
        restored: false,
        detail: `the persistence guard could not check this session: ${(e as Error).message}`,
      });
    }
  }
  return out;
}

/** The line a person reads on stderr. */
export function describeFinding(f: PersistenceFinding): string {
  if (f.kind === 'guard-incomplete') return `persistence guard: ${f.detail}`;
  return `persistence guard: ${f.path}: ${f.detail}${f.movedTo === undefined ? '' : `; the session's version is in ${f.movedTo}`}${f.restored ? '; the launch-time version is back in place' : ''}`;
}

/** A Detection Finding (OCSF 2004) for the audit log. */
export function persistenceFindingEvent(
  ctx: EventContext,
  f: PersistenceFinding,
  n: number,
): OcsfEvent {
  return detectionFindingEvent(
    { ...ctx, actor: { ...ctx.actor, session: f.session } },
    {
      uid: `${f.session}:persistence:${n}`,
      title: `${LABEL[f.kind]} ${f.change === 'unknown' ? 'not checked' : `${f.change} during the session and neutralised`}`,
      rule: { name: 'persistence guard', uid: `persistence-${f.kind}` },
      severity: f.kind === 'guard-incomplete' ? 'medium' : 'high',
      desc: describeFinding(f),
      unmapped: {
        persistence: {
          change: f.change,
          kind: f.kind,
          ...(f.movedTo === undefined ? {} : { moved_to: f.movedTo }),
          path: f.path,
          restored: f.restored,
        },
      },
    },
  );
}

/** The scope of a session: its writable grants, less what the manifest explicitly lifted. */
export function guardScope(
  session: string,
  home: string,
  writeRoots: readonly string[],
  overrides: readonly { deny: string; access: string }[],
  exclude: readonly string[],
): GuardScope {
  const lifted = (id: string): boolean =>
    overrides.some((o) => o.deny === id && o.access === 'write');
  return {
    session,
    home,
    writeRoots: [...writeRoots],
    git: !lifted('git-hooks'),
    shell: !lifted('shell-startup'),
    exclude: exclude.map((p) => realOrUndefined(p) ?? p),
  };
}

/**
 * Record findings in the audit log and on stderr, then forget the sessions they close. A
 * session whose findings could not be recorded keeps its record, and the next `cordon run`
 * records them.
 */
export async function settlePersistence(
  stateDir: string,
  findings: readonly PersistenceFinding[],
  sessions: readonly string[],
  out: {
    readonly append: (e: OcsfEvent) => Promise<unknown>;
    readonly context: () => EventContext;
    readonly onDiagnostic?: (message: string) => void;
  },
): Promise<void> {
  for (const [i, f] of findings.entries()) {
    out.onDiagnostic?.(describeFinding(f));
    await out.append(persistenceFindingEvent(out.context(), f, i + 1));
  }
  for (const s of sessions) finishPersistence(stateDir, s);
}
