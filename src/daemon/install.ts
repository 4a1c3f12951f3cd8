import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  rmdirSync,
  type Stats,
} from 'node:fs';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { CordonError } from '../errors.js';
import { packageFile } from '../package-files.js';
import { writeFileAtomic } from '../store/files.js';

export type InstallErrorCode =
  | 'DAEMON_INSTALL_NOT_ROOT'
  | 'DAEMON_INSTALL_UNSAFE'
  | 'DAEMON_INSTALL_CONFLICT'
  | 'DAEMON_INSTALL_FAILED';

/** The unit's name, for `systemctl enable --now cordond` in both modes. */
export const UNIT_NAME = 'cordond.service';
/** The service user and its group (system mode). */
export const SERVICE_USER = 'cordon';
/** Members of this group administer the daemon (system mode). */
export const ADMIN_GROUP = 'cordon-admin';
/** The system service's directories, as the unit names them (before any --root prefix). */
export const SYSTEM_INSTALL_PATHS = {
  policyDir: '/etc/cordon',
  stateDir: '/var/lib/cordon',
  unitDir: '/etc/systemd/system',
} as const;
/**
 * The service user's comment (GECOS). Uninstall removes a `cordon` user only when it carries it:
 * an account someone else made under that name is not ours to delete.
 */
export const SERVICE_COMMENT = 'Cordon endpoint service';
/** The environment variables that choose Cordon's directories (see src/env.ts). */
const DIR_ENV = [
  'CORDON_HOME',
  'CORDON_POLICY_DIR',
  'CORDON_STATE_DIR',
  'XDG_CONFIG_HOME',
  'XDG_STATE_HOME',
] as const;
// The administration tools are looked up here, not on the caller's PATH.
const TOOL_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/** What the service runs: absolute, real paths of node and of this package's CLI. */
export interface ServiceProgram {
  readonly node: string;
  readonly bin: string;
}

/** One thing install or uninstall did (or, in a dry run, would do). */
export interface InstallStep {
  /** False when the thing was already as wanted (an idempotent re-run changes nothing). */
  readonly change: boolean;
  readonly text: string;
}

export interface InstallReport {
  readonly mode: 'system' | 'user';
  readonly action: 'install' | 'uninstall';
  readonly dryRun: boolean;
  /** The prefix everything was written under (`/` for the machine itself). */
  readonly root: string;
  readonly unitFile: string;
  readonly steps: readonly InstallStep[];
  /** Commands to run next, in order. */
  readonly next: readonly string[];
}

export interface SystemInstallOptions {
  /** Install under this directory instead of `/` (tests, staging trees); `useradd --prefix`. */
  readonly root?: string;
  readonly dryRun?: boolean;
  /** Uninstall only: also remove the state directory (the audit log) and the admin group. */
  readonly purge?: boolean;
  /** What the unit runs (default: this node and this package). */
  readonly program?: ServiceProgram;
}

export interface UserInstallOptions {
  readonly home: string;
  readonly env: NodeJS.ProcessEnv;
  readonly dryRun?: boolean;
  /** Global `--policy-dir` / `--state-dir` given to the install: the daemon gets them too. */
  readonly policyDir?: string;
  readonly stateDir?: string;
  readonly program?: ServiceProgram;
}

/** This node binary and this package's `dist/cli/bin.js`, as real paths. */
export function serviceProgram(): ServiceProgram {
  const real = (p: string): string => {
    try {
      return realpathSync(p);
    } catch (e) {
      throw new CordonError('DAEMON_INSTALL_FAILED', `cannot resolve ${p}: ${String(e)}`, {
        file: p,
        hint: 'build the package first (`npm run build`)',
        cause: e,
      });
    }
  };
  return { node: real(process.execPath), bin: real(packageFile('dist', 'cli', 'bin.js')) };
}

/**
 * One word of a unit file's command line or assignment: double-quoted when it needs it, with
 * `%` (specifiers) escaped, and `$` too where systemd expands variables (ExecStart=, not
 * Environment=). A control character is refused: a newline in a path would end the line and let
 * the rest become a directive of its own.
 */
function unitWord(word: string, what: string, expandsVariables = true): string {
  if (/[\0-\x1f\x7f]/.test(word))
    throw new CordonError(
      'DAEMON_INSTALL_UNSAFE',
      `${what} ${JSON.stringify(word)} holds a control character; it cannot go into a unit file`,
      { hint: 'install Cordon under a path without control characters' },
    );
  let escaped = word.replaceAll('%', '%%');
  if (expandsVariables) escaped = escaped.replaceAll('$', '$$$$');
  if (/^[A-Za-z0-9_@+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

function execStart(program: ServiceProgram, args: readonly string[]): string {
  for (const [what, p] of [
    ['node', program.node],
    ['the Cordon CLI', program.bin],
  ] as const)
    if (!isAbsolute(p))
      throw new CordonError('DAEMON_INSTALL_UNSAFE', `${what} path ${p} is not absolute`, {
        hint: 'systemd runs only absolute paths',
      });
  return [
    unitWord(program.node, 'node'),
    unitWord(program.bin, 'the Cordon CLI'),
    ...args.map((a) => unitWord(a, 'argument')),
  ].join(' ');
}

/**
 * The system unit. Each directive says why it is there; the test parses the unit and holds each
 * one, and runs `systemd-analyze verify` on it.
 */
export function systemUnit(program: ServiceProgram): string {
  return `# ${UNIT_NAME}: written by \`cordon daemon install --system\`; \`cordon daemon uninstall --system\` removes it.
[Unit]
Description=${SERVICE_COMMENT} (system mode)

[Service]
Type=exec
ExecStart=${execStart(program, ['daemon', '--system'])}
# A dedicated unprivileged account: the users whose agents it governs can neither read nor
# change its state (device key, audit log, sink credentials, sessions).
User=${SERVICE_USER}
Group=${SERVICE_USER}
# /run/cordon: the API socket and each session's egress socket directory, which sandboxes
# bind-mount; 0755 so that users reach their sockets (each connection is checked by its peer
# credentials). Kept across restarts: a sandbox holds the directory it was given, and a restarted
# daemon must put its new sockets where running sessions still look.
RuntimeDirectory=cordon
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=restart
# /var/lib/cordon: the service user's, 0700.
StateDirectory=cordon
StateDirectoryMode=0700
# The policy (/etc/cordon) is root's and read-only to the daemon. ConfigurationDirectory= is not
# used on purpose: systemd would hand the directory to the service user.
ReadOnlyPaths=${SYSTEM_INSTALL_PATHS.policyDir}
NoNewPrivileges=yes
ProtectSystem=strict
# The daemon never reads users' homes: clients send the manifest's bytes and the session's
# resolved paths, so /home, /root and /run/user are hidden from it.
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# PrivateUsers= stays off on purpose: inside a user namespace every other user's uid reads as
# the overflow uid (65534) through SO_PEERCRED, and callers could no longer be told apart.
# AF_UNIX for the API, AF_INET/AF_INET6 for egress and the sinks. No AF_NETLINK: glibc's
# getaddrinfo opens a netlink socket only to learn which address families are configured
# (AI_ADDRCONFIG, which net.connect asks for) and assumes both when it cannot; the test runs a
# lookup and a connection with netlink refused. (nss-myhostname would need it; the daemon does
# not resolve its own host name.)
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
LockPersonality=yes
# V8's JIT writes machine code and then executes it: W^X mappings would stop node.
MemoryDenyWriteExecute=no
RestrictRealtime=yes
RestrictSUIDSGID=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
# A call outside the filter fails with EPERM rather than killing the daemon: V8 calls pkey_alloc
# (not in @system-service as of systemd 252) and does without memory protection keys when it
# fails; with the default action node would be killed at start.
SystemCallErrorNumber=EPERM
CapabilityBoundingSet=
AmbientCapabilities=
UMask=0077
Restart=always
RestartSec=1s
# Every session's proxied connections hold two descriptors each.
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`;
}

/**
 * The user unit: only what works in a user manager without privileges. The mount-namespace
 * options (ProtectSystem, ProtectHome, PrivateTmp, ...) are left out: a user manager can apply
 * them only through an unprivileged user namespace, and where those are disabled the unit would
 * not start at all. The seccomp-based options need no privilege once NoNewPrivileges is set.
 */
export function userUnit(
  program: ServiceProgram,
  args: readonly string[] = [],
  environment: readonly (readonly [string, string])[] = [],
): string {
  const env = environment
    .map(([k, v]) => `Environment=${unitWord(`${k}=${v}`, k, false)}\n`)
    .join('');
  return `# ${UNIT_NAME}: written by \`cordon daemon install --user\`; \`cordon daemon uninstall --user\` removes it.
[Unit]
Description=${SERVICE_COMMENT} (user mode)

[Service]
Type=exec
ExecStart=${execStart(program, ['daemon', ...args])}
# The directories the install was run with (clients must use the same).
${env}NoNewPrivileges=yes
RestrictNamespaces=yes
LockPersonality=yes
# V8's JIT writes machine code and then executes it: W^X mappings would stop node.
MemoryDenyWriteExecute=no
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
UMask=0077
Restart=always
RestartSec=1s

[Install]
WantedBy=default.target
`;
}

// --- accounts -------------------------------------------------------------------------------

interface UserEntry {
  name: string;
  uid: number;
  gid: number;
  comment: string;
  shell: string;
}
interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/**
 * A passwd or group entry: through NSS (`getent`, which sees LDAP and sssd too) on the machine
 * itself, from the files under the prefix otherwise.
 */
function entry(root: string, db: 'passwd' | 'group', name: string): string[] | undefined {
  let lines: string[];
  if (root === '/') {
    const r = spawnSync('getent', [db, name], {
      encoding: 'utf8',
      env: { PATH: TOOL_PATH },
    });
    if (r.status === 2) return undefined;
    if (r.status !== 0 || r.error !== undefined)
      throw new CordonError(
        'DAEMON_INSTALL_FAILED',
        `getent ${db} ${name} failed: ${r.error?.message ?? r.stderr}`,
      );
    lines = r.stdout.split('\n');
  } else {
    try {
      lines = readFileSync(join(root, 'etc', db), 'utf8').split('\n');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new CordonError(
        'DAEMON_INSTALL_FAILED',
        `cannot read ${join(root, 'etc', db)}: ${String(e)}`,
        { file: join(root, 'etc', db), cause: e },
      );
    }
  }
  return lines.map((l) => l.split(':')).find((f) => f[0] === name);
}

function lookupUser(root: string, name: string): UserEntry | undefined {
  const f = entry(root, 'passwd', name);
  if (f === undefined) return undefined;
  return {
    name,
    uid: Number(f[2]),
    gid: Number(f[3]),
    comment: f[4] ?? '',
    shell: f[6] ?? '',
  };
}

function lookupGroup(root: string, name: string): GroupEntry | undefined {
  const f = entry(root, 'group', name);
  if (f === undefined) return undefined;
  return {
    name,
    gid: Number(f[2]),
    members: (f[3] ?? '').split(',').filter((m) => m !== ''),
  };
}

/** The first uid of ordinary accounts (login.defs UID_MIN, 1000 by default). */
function uidMin(root: string): number {
  try {
    const m = /^\s*UID_MIN\s+(\d+)/m.exec(readFileSync(join(root, 'etc', 'login.defs'), 'utf8'));
    if (m !== null) return Number(m[1]);
  } catch {
    // no login.defs: the shadow suite's default
  }
  return 1000;
}

const NO_LOGIN = /\/(nologin|false)$/;

/** Run an account tool (`useradd`, ...), with `--prefix` under a prefix; its exit status. */
function tool(root: string, cmd: string, args: readonly string[]): number {
  const argv = root === '/' ? [...args] : ['--prefix', root, ...args];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { PATH: TOOL_PATH } });
  if (r.error !== undefined)
    throw new CordonError('DAEMON_INSTALL_FAILED', `cannot run ${cmd}: ${r.error.message}`, {
      hint: `${cmd} comes with the shadow suite (Debian: passwd)`,
      cause: r.error,
    });
  return r.status ?? -1;
}

function mustTool(root: string, cmd: string, args: readonly string[]): void {
  const argv = root === '/' ? [...args] : ['--prefix', root, ...args];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { PATH: TOOL_PATH } });
  if (r.error !== undefined || r.status !== 0)
    throw new CordonError(
      'DAEMON_INSTALL_FAILED',
      `${cmd} ${argv.join(' ')} failed: ${(r.error?.message ?? r.stderr).trim()}`,
      {
        hint:
          cmd === 'userdel'
            ? `stop the service first (systemctl disable --now cordond) and run the uninstall again`
            : 'see the message above',
        ...(r.error === undefined ? {} : { cause: r.error }),
      },
    );
}

/** Processes running as `uid` on this machine (from /proc). */
export function processesOf(uid: number): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m !== null && [m[1], m[2], m[3]].some((u) => Number(u) === uid)) out.push(Number(pid));
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

// --- paths ----------------------------------------------------------------------------------

function lstatOrUndefined(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CordonError('DAEMON_INSTALL_FAILED', `cannot inspect ${p}: ${String(e)}`, {
      file: p,
      cause: e,
    });
  }
}

function fsStep(what: string, file: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof CordonError) throw e;
    throw new CordonError('DAEMON_INSTALL_FAILED', `cannot ${what} ${file}: ${String(e)}`, {
      file,
      cause: e,
    });
  }
}

/** Directories ProtectHome=, PrivateTmp= and PrivateDevices= hide from the service. */
const HIDDEN = ['/home', '/root', '/run/user', '/tmp', '/var/tmp', '/dev'];

/**
 * The daemon runs this code with the power over every governed user's log: it must live where the
 * service can reach it and where only root can change it. Each directory from / down to the node
 * binary and to the package, and every file of the package, must be root's and not writable by
 * anyone else.
 */
function checkProgram(program: ServiceProgram): void {
  const pkg = dirname(dirname(dirname(program.bin)));
  for (const p of [program.node, program.bin]) {
    const hidden = HIDDEN.find((h) => p === h || p.startsWith(h + sep));
    if (hidden !== undefined)
      throw new CordonError(
        'DAEMON_INSTALL_UNSAFE',
        `${p} is under ${hidden}, which the service cannot see (ProtectHome=, PrivateTmp=, PrivateDevices=)`,
        {
          file: p,
          hint: 'install Cordon and node system-wide as root (e.g. npm install -g under /usr/local)',
        },
      );
  }
  const unsafe = (st: Stats): string | undefined => {
    if (st.isSymbolicLink()) return undefined;
    if (st.uid !== 0) return `owned by uid ${st.uid}`;
    if ((st.mode & 0o002) !== 0) return 'writable by everyone';
    if ((st.mode & 0o020) !== 0 && st.gid !== 0) return `writable by group ${st.gid}`;
    return undefined;
  };
  const check = (p: string): void => {
    const st = lstatOrUndefined(p);
    if (st === undefined)
      throw new CordonError('DAEMON_INSTALL_FAILED', `${p} does not exist`, { file: p });
    const why = unsafe(st);
    if (why !== undefined)
      throw new CordonError(
        'DAEMON_INSTALL_UNSAFE',
        `${p} is ${why}: whoever can change it controls the daemon and the audit log`,
        { file: p, hint: 'install Cordon and node as root, with files only root can write' },
      );
  };
  for (const target of [program.node, pkg]) {
    let p = target;
    for (;;) {
      check(p);
      if (p === '/') break;
      p = dirname(p);
    }
  }
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      if (dir === pkg && name === '.git') continue;
      const p = join(dir, name);
      check(p);
      if (lstatSync(p).isDirectory()) walk(p);
    }
  };
  walk(pkg);
}

function checkRoot(root: string): string {
  const abs = resolve(root);
  const st = lstatOrUndefined(abs);
  if (st === undefined || !st.isDirectory())
    throw new CordonError('DAEMON_INSTALL_FAILED', `--root ${abs} is not a directory`, {
      file: abs,
      hint: 'create the directory first',
    });
  return realpathSync(abs);
}

function requireRoot(dryRun: boolean): void {
  if (dryRun || process.geteuid?.() === 0) return;
  throw new CordonError(
    'DAEMON_INSTALL_NOT_ROOT',
    `installing the system service needs root (this is uid ${process.geteuid?.() ?? '?'})`,
    {
      hint: 'run it with sudo, or install a service of your own with `cordon daemon install --user`',
    },
  );
}

// --- a plan: read first, then change (a dry run stops after reading) -------------------------

class Plan {
  readonly steps: InstallStep[] = [];
  constructor(private readonly dryRun: boolean) {}
  /** Record a step; run it unless this is a dry run. */
  do(text: string, fn: () => void): void {
    if (!this.dryRun) fn();
    this.steps.push({ change: true, text });
  }
  same(text: string): void {
    this.steps.push({ change: false, text });
  }
}

function ensureServiceAccounts(root: string, plan: Plan): void {
  const user = lookupUser(root, SERVICE_USER);
  if (user !== undefined) {
    const ours = user.comment === SERVICE_COMMENT;
    if (!ours && (user.uid === 0 || user.uid >= uidMin(root) || !NO_LOGIN.test(user.shell)))
      throw new CordonError(
        'DAEMON_INSTALL_CONFLICT',
        `a user named ${SERVICE_USER} exists (uid ${user.uid}, shell ${user.shell}) and is not a system account without a login: the service's files would be that account's`,
        {
          hint: `remove or rename that account, or make it a system account with shell /usr/sbin/nologin`,
        },
      );
    plan.same(`user ${SERVICE_USER} exists (uid ${user.uid})${ours ? '' : ', made elsewhere'}`);
  } else {
    const group = lookupGroup(root, SERVICE_USER);
    if (group !== undefined && (group.members.length > 0 || group.gid >= uidMin(root)))
      throw new CordonError(
        'DAEMON_INSTALL_CONFLICT',
        `a group named ${SERVICE_USER} exists (gid ${group.gid}${group.members.length > 0 ? `, members ${group.members.join(',')}` : ''}): its members would share the service's group`,
        { hint: `remove that group or its members first` },
      );
    plan.do(
      `create system user ${SERVICE_USER} (no home, no login shell)${group === undefined ? ' and its group' : `, in the existing group ${SERVICE_USER}`}`,
      () =>
        mustTool(root, 'useradd', [
          '--system',
          '--no-create-home',
          '--home-dir',
          SYSTEM_INSTALL_PATHS.stateDir,
          '--shell',
          '/usr/sbin/nologin',
          '--comment',
          SERVICE_COMMENT,
          ...(group === undefined ? ['--user-group'] : ['--gid', SERVICE_USER]),
          SERVICE_USER,
        ]),
    );
  }
  const admin = lookupGroup(root, ADMIN_GROUP);
  if (admin !== undefined)
    plan.same(
      `group ${ADMIN_GROUP} exists (gid ${admin.gid}; members: ${admin.members.join(', ') || 'none'})`,
    );
  else
    plan.do(`create system group ${ADMIN_GROUP} (administrators of the daemon)`, () =>
      mustTool(root, 'groupadd', ['--system', ADMIN_GROUP]),
    );
}

function ensureDirectory(
  plan: Plan,
  dir: string,
  shown: string,
  want: { mode: number; owner: () => [number, number]; ownerName: string },
  existing: (st: Stats) => void,
): void {
  const st = lstatOrUndefined(dir);
  if (st === undefined) {
    plan.do(`create ${shown} (${want.ownerName}, ${want.mode.toString(8)})`, () =>
      fsStep('create', dir, () => {
        makeDirectory(dir);
        const [uid, gid] = want.owner();
        chownSync(dir, uid, gid);
        chmodSync(dir, want.mode);
      }),
    );
    return;
  }
  if (!st.isDirectory())
    throw new CordonError(
      'DAEMON_INSTALL_UNSAFE',
      `${dir} exists and is not a directory (${st.isSymbolicLink() ? 'a symbolic link' : 'a file'})`,
      { file: dir, hint: 'move it away and install again' },
    );
  existing(st);
}

/**
 * Make `dir`: missing parents 0755, the directory itself 0700 until its owner and mode are set,
 * each mode set explicitly whatever the umask.
 */
function makeDirectory(dir: string): void {
  const missing: string[] = [];
  for (let p = dirname(dir); lstatOrUndefined(p) === undefined; p = dirname(p)) missing.unshift(p);
  for (const m of missing) {
    mkdirSync(m, { mode: 0o755 });
    chmodSync(m, 0o755);
  }
  mkdirSync(dir, { mode: 0o700 });
}

// --- system install / uninstall -------------------------------------------------------------

/**
 * `cordon daemon install --system`: the service user and group, the admin group, the policy and
 * state directories and the hardened unit. Idempotent: a second run changes nothing. Nothing is
 * enabled or started; the report says how.
 */
export function installSystem(opts: SystemInstallOptions = {}): InstallReport {
  const dryRun = opts.dryRun === true;
  requireRoot(dryRun);
  const root = checkRoot(opts.root ?? '/');
  const at = (p: string): string => (root === '/' ? p : join(root, p));
  const program = opts.program ?? serviceProgram();
  // The unit first: a path that cannot be written into it is refused before anything is read.
  const unit = systemUnit(program);
  checkProgram(program);
  const plan = new Plan(dryRun);

  // useradd --prefix keeps its files in PREFIX/etc, which a fresh staging tree lacks.
  if (root !== '/' && lstatOrUndefined(join(root, 'etc')) === undefined)
    plan.do('create /etc under the prefix (root:root 755)', () =>
      fsStep('create', join(root, 'etc'), () => {
        mkdirSync(join(root, 'etc'), { mode: 0o755 });
        chmodSync(join(root, 'etc'), 0o755);
      }),
    );
  ensureServiceAccounts(root, plan);
  const service = (): [number, number] => {
    const u = lookupUser(root, SERVICE_USER);
    if (u === undefined)
      throw new CordonError('DAEMON_INSTALL_FAILED', `user ${SERVICE_USER} was not created`);
    return [u.uid, u.gid];
  };

  const policy = at(SYSTEM_INSTALL_PATHS.policyDir);
  ensureDirectory(
    plan,
    policy,
    SYSTEM_INSTALL_PATHS.policyDir,
    { mode: 0o755, owner: () => [0, 0], ownerName: 'root:root' },
    (st) => {
      if (st.uid === 0 && st.gid === 0 && (st.mode & 0o7777) === 0o755)
        plan.same(`${SYSTEM_INSTALL_PATHS.policyDir} is root:root 755`);
      else
        plan.do(
          `make ${SYSTEM_INSTALL_PATHS.policyDir} root:root 755 (was ${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)})`,
          () =>
            fsStep('set the owner of', policy, () => {
              chownSync(policy, 0, 0);
              chmodSync(policy, 0o755);
            }),
        );
    },
  );

  const state = at(SYSTEM_INSTALL_PATHS.stateDir);
  ensureDirectory(
    plan,
    state,
    SYSTEM_INSTALL_PATHS.stateDir,
    { mode: 0o700, owner: service, ownerName: `${SERVICE_USER}:${SERVICE_USER}` },
    (st) => {
      const user = lookupUser(root, SERVICE_USER);
      const mine = user !== undefined && st.uid === user.uid && st.gid === user.gid;
      if (mine && (st.mode & 0o7777) === 0o700)
        plan.same(`${SYSTEM_INSTALL_PATHS.stateDir} is ${SERVICE_USER}'s, 700`);
      else if (mine)
        plan.do(`make ${SYSTEM_INSTALL_PATHS.stateDir} 700`, () =>
          fsStep('set the mode of', state, () => chmodSync(state, 0o700)),
        );
      else
        // Kept from an earlier install (or another account's): its files are handed over by
        // systemd (StateDirectory=) when the service starts, which does it without following
        // links. Until then it is root's and closed, so no account that inherited the old uid
        // can reach the log.
        plan.do(
          `keep ${SYSTEM_INSTALL_PATHS.stateDir} closed (root:root 700); systemd gives it to ${SERVICE_USER} when the service starts (StateDirectory=)`,
          () =>
            fsStep('set the owner of', state, () => {
              chownSync(state, 0, 0);
              chmodSync(state, 0o700);
            }),
        );
    },
  );

  const unitFile = at(join(SYSTEM_INSTALL_PATHS.unitDir, UNIT_NAME));
  writeUnit(plan, unitFile, join(SYSTEM_INSTALL_PATHS.unitDir, UNIT_NAME), unit);

  return {
    mode: 'system',
    action: 'install',
    dryRun,
    root,
    unitFile,
    steps: plan.steps,
    next:
      root === '/'
        ? [
            'systemctl daemon-reload && systemctl enable --now cordond',
            `make administrators: usermod -aG ${ADMIN_GROUP} NAME`,
          ]
        : [`the tree under ${root} is ready; on the target: systemctl enable --now cordond`],
  };
}

function writeUnit(plan: Plan, unitFile: string, shown: string, unit: string): void {
  const st = lstatOrUndefined(unitFile);
  if (
    st?.isFile() === true &&
    (st.mode & 0o7777) === 0o644 &&
    readFileSync(unitFile, 'utf8') === unit
  ) {
    plan.same(`${shown} is up to date`);
    return;
  }
  plan.do(`${st === undefined ? 'write' : 'rewrite'} ${shown}`, () => {
    writeFileAtomic(unitFile, unit, 0o644);
    fsStep('set the mode of', unitFile, () => chmodSync(unitFile, 0o644));
  });
}

/**
 * `cordon daemon uninstall --system`: the unit, the service user and its group, and the admin
 * group when it has no members. The state directory — the audit log — stays unless `purge`:
 * it is closed to root (root:root 700) so that no account later given the old uid can read it.
 * The policy directory stays unless it is empty: it is the administrator's.
 */
export function uninstallSystem(opts: SystemInstallOptions = {}): InstallReport {
  const dryRun = opts.dryRun === true;
  requireRoot(dryRun);
  const root = checkRoot(opts.root ?? '/');
  const at = (p: string): string => (root === '/' ? p : join(root, p));
  const plan = new Plan(dryRun);
  const user = lookupUser(root, SERVICE_USER);
  const ours = user !== undefined && user.comment === SERVICE_COMMENT;

  // A running daemon would keep its files open and its uid: userdel refuses, and the purge
  // would race it. On the machine itself, refuse before changing anything.
  if (root === '/' && user !== undefined) {
    const running = processesOf(user.uid);
    if (running.length > 0)
      throw new CordonError(
        'DAEMON_INSTALL_CONFLICT',
        `the service is running (user ${SERVICE_USER}: pid ${running.join(', ')})`,
        { hint: 'stop it first: systemctl disable --now cordond' },
      );
  }

  removeEnablement(
    plan,
    at(SYSTEM_INSTALL_PATHS.unitDir),
    'multi-user.target',
    SYSTEM_INSTALL_PATHS.unitDir,
  );
  const unitFile = at(join(SYSTEM_INSTALL_PATHS.unitDir, UNIT_NAME));
  if (lstatOrUndefined(unitFile) !== undefined)
    plan.do(`remove ${join(SYSTEM_INSTALL_PATHS.unitDir, UNIT_NAME)}`, () =>
      fsStep('remove', unitFile, () => rmSync(unitFile)),
    );
  else plan.same(`no ${join(SYSTEM_INSTALL_PATHS.unitDir, UNIT_NAME)}`);

  const state = at(SYSTEM_INSTALL_PATHS.stateDir);
  const stateSt = lstatOrUndefined(state);
  if (stateSt !== undefined) {
    if (!stateSt.isDirectory())
      throw new CordonError('DAEMON_INSTALL_UNSAFE', `${state} is not a directory`, {
        file: state,
        hint: 'look at it and remove it by hand',
      });
    // Closed first in both cases: the purge then walks a tree nobody else can change.
    if (stateSt.uid === 0 && stateSt.gid === 0 && (stateSt.mode & 0o7777) === 0o700)
      plan.same(`${SYSTEM_INSTALL_PATHS.stateDir} is closed to root (root:root 700)`);
    else
      plan.do(`close ${SYSTEM_INSTALL_PATHS.stateDir} to root (root:root 700)`, () =>
        fsStep('set the owner of', state, () => {
          chownSync(state, 0, 0);
          chmodSync(state, 0o700);
        }),
      );
    if (opts.purge === true)
      plan.do(`remove ${SYSTEM_INSTALL_PATHS.stateDir} and the audit log in it (--purge)`, () =>
        fsStep('remove', state, () => rmSync(state, { recursive: true })),
      );
    else
      plan.same(
        `keep ${SYSTEM_INSTALL_PATHS.stateDir}: the audit log and device key stay (remove them with --purge)`,
      );
  } else plan.same(`no ${SYSTEM_INSTALL_PATHS.stateDir}`);

  if (user === undefined) plan.same(`no user ${SERVICE_USER}`);
  else if (!ours) plan.same(`keep user ${SERVICE_USER}: it was not made by cordon daemon install`);
  else plan.do(`remove user ${SERVICE_USER}`, () => mustTool(root, 'userdel', [SERVICE_USER]));
  // userdel removes the user's own group when nothing else uses it; a group left behind is
  // removed when it has no members (groupdel refuses the primary group of another account).
  const removeGroup = (name: string, always: boolean): void => {
    const g = lookupGroup(root, name);
    if (g === undefined) {
      plan.same(`no group ${name} left`);
      return;
    }
    if (g.members.length > 0 && !always) {
      plan.same(`keep group ${name}: members ${g.members.join(', ')} (remove it with --purge)`);
      return;
    }
    plan.do(`remove group ${name}`, () => {
      const status = tool(root, 'groupdel', [name]);
      if (status !== 0)
        throw new CordonError('DAEMON_INSTALL_FAILED', `groupdel ${name} failed (${status})`, {
          hint: `another account may have ${name} as its primary group`,
        });
    });
  };
  if (ours || user === undefined) removeGroup(SERVICE_USER, false);
  removeGroup(ADMIN_GROUP, opts.purge === true);

  const policy = at(SYSTEM_INSTALL_PATHS.policyDir);
  const policySt = lstatOrUndefined(policy);
  if (policySt?.isDirectory() === true && readdirSync(policy).length === 0)
    plan.do(`remove the empty ${SYSTEM_INSTALL_PATHS.policyDir}`, () =>
      fsStep('remove', policy, () => rmdirSync(policy)),
    );
  else if (policySt !== undefined)
    plan.same(`keep ${SYSTEM_INSTALL_PATHS.policyDir}: the policy is the administrator's`);

  return {
    mode: 'system',
    action: 'uninstall',
    dryRun,
    root,
    unitFile,
    steps: plan.steps,
    next: root === '/' ? ['systemctl daemon-reload'] : [],
  };
}

/** What `systemctl enable` made: the link in the target's .wants directory, left dangling otherwise. */
function removeEnablement(plan: Plan, unitDir: string, target: string, shownDir: string): void {
  const link = join(unitDir, `${target}.wants`, UNIT_NAME);
  if (lstatOrUndefined(link)?.isSymbolicLink() === true)
    plan.do(
      `remove ${join(shownDir, `${target}.wants`, UNIT_NAME)} (the service was enabled)`,
      () => fsStep('remove', link, () => rmSync(link)),
    );
}

// --- user install / uninstall ---------------------------------------------------------------

/** `~/.config/systemd/user/cordond.service` (under `$XDG_CONFIG_HOME` when that is set). */
export function userUnitFile(env: NodeJS.ProcessEnv, home: string): string {
  const xdg = env['XDG_CONFIG_HOME'];
  const config = xdg !== undefined && isAbsolute(xdg) ? xdg : join(home, '.config');
  return join(config, 'systemd', 'user', UNIT_NAME);
}

/**
 * `cordon daemon install --user`: a systemd user unit that runs the daemon as this user, with
 * the directory settings (Cordon's environment variables, `--policy-dir`, `--state-dir`) this
 * install was run with, so that the daemon and the clients agree on its socket.
 */
export function installUser(opts: UserInstallOptions): InstallReport {
  const dryRun = opts.dryRun === true;
  const program = opts.program ?? serviceProgram();
  const args = [
    ...(opts.policyDir === undefined ? [] : ['--policy-dir', resolve(opts.policyDir)]),
    ...(opts.stateDir === undefined ? [] : ['--state-dir', resolve(opts.stateDir)]),
  ];
  const environment = DIR_ENV.flatMap((k): [string, string][] => {
    const v = opts.env[k];
    return v === undefined || v === '' ? [] : [[k, v]];
  });
  const unit = userUnit(program, args, environment);
  const unitFile = userUnitFile(opts.env, opts.home);
  const plan = new Plan(dryRun);
  writeUnit(plan, unitFile, unitFile, unit);
  return {
    mode: 'user',
    action: 'install',
    dryRun,
    root: '/',
    unitFile,
    steps: plan.steps,
    next: ['systemctl --user daemon-reload && systemctl --user enable --now cordond'],
  };
}

/** `cordon daemon uninstall --user`: removes the unit; the user's own files stay. */
export function uninstallUser(
  opts: Pick<UserInstallOptions, 'home' | 'env' | 'dryRun'>,
): InstallReport {
  const dryRun = opts.dryRun === true;
  const unitFile = userUnitFile(opts.env, opts.home);
  const plan = new Plan(dryRun);
  removeEnablement(plan, dirname(unitFile), 'default.target', dirname(unitFile));
  if (lstatOrUndefined(unitFile) !== undefined)
    plan.do(`remove ${unitFile}`, () => fsStep('remove', unitFile, () => rmSync(unitFile)));
  else plan.same(`no ${unitFile}`);
  return {
    mode: 'user',
    action: 'uninstall',
    dryRun,
    root: '/',
    unitFile,
    steps: plan.steps,
    next: ['systemctl --user stop cordond; systemctl --user daemon-reload'],
  };
}
