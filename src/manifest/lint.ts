import { apiScopesOverlap, parseApiScope } from './api-scopes.js';
import { parseIpAny, rangeTouchesInternal } from './ip.js';
import { MANDATORY_DENIES, type MandatoryDeny } from './mandatory-denies.js';
import { parseNetworkScope, scopesOverlap, type NetworkScope } from './network.js';
import { expandHome, parsePathPattern, pathPatternsOverlap, type PathPattern } from './paths.js';
import { LIST_FIELDS, type Manifest } from './schema.js';

export type LintSeverity = 'error' | 'warning' | 'info';

/** One lint finding: a stable code, where, why, and how to fix it. */
export interface LintFinding {
  readonly code: LintCode;
  readonly severity: LintSeverity;
  /** JSON pointer into the manifest. */
  readonly pointer: string;
  readonly message: string;
  readonly hint: string;
}

/** Every lint code, with its severity and a one-line description (the README table is checked against this). */
export const LINT_RULES = {
  APPROVAL_NO_MATCH: ['error', 'a requiresApproval entry selects no grant, so it protects nothing'],
  ENV_RESERVED: [
    'error',
    'an env name that Cordon manages or that injects code into every process (LD_*, *_PROXY, BASH_ENV)',
  ],
  PATH_CORDON_DIR: [
    'error',
    "a grant reaches Cordon's own policy or state directory, which no manifest can lift",
  ],
  PATH_CORDON_PACKAGE: [
    'error',
    "a grant reaches Cordon's own installation (its code, the sandbox helper), or a write grant covers a link that starts it or the node binary running it, which the next cordon run executes",
  ],
  PATH_ROOT_GRANT: ['warning', 'a grant of / or of everything under /'],
  PATH_HOME_GRANT: ['warning', 'a grant of the whole home directory'],
  PATH_BROAD_GLOB: ['warning', '** one level below the root (e.g. /usr/**)'],
  PATH_MANDATORY_DENY: [
    'warning',
    'a grant collides with a mandatory deny (it stays denied unless overridden)',
  ],
  CMD_INTERPRETER: ['warning', 'a shell or interpreter in commandsAllowed runs arbitrary code'],
  CMD_PRIVILEGED: ['warning', 'sudo, su, doas or pkexec in commandsAllowed'],
  CMD_IN_WRITE_PATH: [
    'warning',
    'an allowed command lies in a writable path, so the agent could replace it',
  ],
  RUNTIME_SYSTEM_DIR: [
    'error',
    'an agentRuntimes entry is (or contains) a system binary directory such as /usr/bin or /usr/lib, which would allow every program there',
  ],
  RUNTIME_WRITABLE: [
    'error',
    'an agentRuntimes entry lies in (or contains) a path the agent can write (writePaths), so the agent could plant programs there',
  ],
  NET_SHARED_DOMAIN: [
    'warning',
    'a broad shared domain (cloud storage, paste sites, tunnels) anyone can publish to',
  ],
  NET_PLAINTEXT: ['warning', 'an http:// or ws:// scope sends data unencrypted'],
  NET_INTERNAL_ADDRESS: [
    'warning',
    'an IP literal in a loopback, private, link-local or metadata range',
  ],
  VALIDITY_EXPIRED: ['error', 'notAfter is already past: every endpoint would refuse the manifest'],
  VALIDITY_LONG: ['warning', 'validity longer than one year'],
  WRITE_NO_APPROVAL: [
    'error',
    'admission: a confidential or restricted agent writes without approval',
  ],
  ADMIT_BROAD_ACCESS: [
    'error',
    'admission: full-disk or home-wide access on an agent whose data is not public',
  ],
  ADMIT_VALIDITY_MAX: [
    'error',
    'admission: validity longer than the organisation maximum (maxValidityDays, default 731)',
  ],
  ENV_CREDENTIAL: [
    'error',
    'an env name that carries a credential (AWS_SECRET_ACCESS_KEY, GITHUB_TOKEN, *_TOKEN, *_SECRET, *_PASSWORD, *_API_KEY, ...): credentials stay outside the agent',
  ],
  ENV_CODE_INJECTION: [
    'warning',
    'an env name that changes what interpreters, the shell or libc load (NODE_OPTIONS, PYTHONPATH, GCONV_PATH, GLIBC_TUNABLES, SHELLOPTS, PS4, ...)',
  ],
  OVERRIDE_USED: ['warning', 'an override lifts a mandatory deny'],
  OVERRIDE_UNUSED: ['warning', 'an override lifts a deny that no grant reaches'],
  DUPLICATE_ENTRY: ['warning', 'the same entry appears twice in one list'],
  SECRET_NO_EGRESS: ['info', 'secrets are named but no network scope could use them'],
  NO_DESCRIPTION: ['info', 'the manifest has no description'],
} as const satisfies Record<string, readonly [LintSeverity, string]>;

export type LintCode = keyof typeof LINT_RULES;

export interface LintOptions {
  /** Home directory used to expand `~` when comparing home and absolute paths. */
  readonly home: string;
  /** Cordon's policy and state directories on this machine, in addition to the defaults. */
  readonly cordonDirs?: readonly string[];
  /**
   * Where the running install's code lives (real paths): no write grant may contain or lie in
   * it, and no grant may lie in it.
   */
  readonly packageDirs?: readonly string[];
  /**
   * Links and files outside the package that start it (the `cordon` command's links, the node
   * binary): a write grant on the directory holding one is an error too.
   */
  readonly packageEntries?: readonly string[];
  /** Reference time for validity checks. */
  readonly now?: Date;
  /** Admission guardrail: the longest validity the organisation accepts, in days (default 731). */
  readonly maxValidityDays?: number;
}

const INTERPRETERS =
  /^(sh|bash|dash|zsh|ksh|mksh|fish|csh|tcsh|busybox|env|xargs|python[0-9.]*|pypy[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|nodejs|deno|bun|php[0-9.]*|lua[0-9.]*|luajit|tclsh[0-9.]*|wish[0-9.]*|Rscript|R|julia|pwsh|powershell|osascript|awk|gawk|mawk|nawk|expect|guile|sbcl|ghci|irb|java|jshell|gdb|vim|nvim|emacs|ssh|docker|podman|kubectl|npx|npm|pip[0-9.]*|uv|uvx)$/;
/** Whether an executable (by its file name) is a shell or interpreter that runs arbitrary code. */
export function isInterpreter(path: string): boolean {
  return INTERPRETERS.test(path.slice(path.lastIndexOf('/') + 1));
}

const PRIVILEGED = /^(sudo|su|doas|pkexec|runuser|setpriv|chroot|nsenter|unshare)$/;

const SHARED_DOMAINS = [
  'amazonaws.com',
  'cloudfront.net',
  'googleapis.com',
  'googleusercontent.com',
  'appspot.com',
  'firebaseio.com',
  'firebasestorage.app',
  'blob.core.windows.net',
  'azurewebsites.net',
  'azureedge.net',
  'windows.net',
  'github.com',
  'githubusercontent.com',
  'github.io',
  'gitlab.com',
  'bitbucket.org',
  'gist.github.com',
  'pastebin.com',
  'paste.ee',
  'hastebin.com',
  'dropbox.com',
  'dropboxusercontent.com',
  'drive.google.com',
  'docs.google.com',
  'box.com',
  'wetransfer.com',
  'mega.nz',
  'herokuapp.com',
  'vercel.app',
  'netlify.app',
  'pages.dev',
  'workers.dev',
  'r2.dev',
  'ngrok.io',
  'ngrok.app',
  'ngrok-free.app',
  'trycloudflare.com',
  'loca.lt',
  'serveo.net',
  'transfer.sh',
  'file.io',
  'webhook.site',
  'pipedream.net',
  'requestbin.com',
  'discord.com',
  'discordapp.com',
  'slack.com',
  'telegram.org',
  't.me',
  'fastly.net',
  'akamaihd.net',
];

const RESERVED_ENV =
  /^(LD_.*|DYLD_.*|(HTTPS?|ALL|NO|FTP)_PROXY|(https?|all|no|ftp)_proxy|BASH_ENV|ENV|PROMPT_COMMAND|SSL_CERT_FILE|SSL_CERT_DIR|NODE_EXTRA_CA_CERTS|CORDON_.*)$/;
// libc (GCONV_PATH loads a shared object; GLIBC_TUNABLES had a loader overflow), bash
// (SHELLOPTS=xtrace with PS4='$(cmd)' runs a command in every shell; BASH_ENV and ENV are
// reserved above) and interpreters that load code named in the environment.
const CODE_INJECTION_ENV =
  /^(NODE_OPTIONS|NODE_PATH|PYTHONPATH|PYTHONSTARTUP|PYTHONHOME|PYTHONWARNINGS|PYTHONBREAKPOINT|PERL5LIB|PERL5OPT|PERLLIB|PERL5DB|RUBYOPT|RUBYLIB|GIT_SSH_COMMAND|GIT_EXEC_PATH|GIT_CONFIG_.*|GIT_ASKPASS|SSH_ASKPASS|EDITOR_COMMAND|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS|CLASSPATH|LUA_PATH|LUA_CPATH|LUA_INIT|GCONV_PATH|GLIBC_TUNABLES|LOCPATH|NLSPATH|HOSTALIASES|RESOLV_HOST_CONF|SHELLOPTS|BASHOPTS|PS4|PS1|PS2|PS0|CDPATH|GLOBIGNORE|IFS)$/;
// Names that hold credentials. An agent given one can use it anywhere its egress reaches;
// the egress proxy injects credentials (`secrets`) so the agent never holds them.
const CREDENTIAL_ENV =
  /^(AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|AWS_ACCESS_KEY_ID|GITHUB_TOKEN|GH_TOKEN|GITLAB_TOKEN|NPM_TOKEN|PGPASSWORD|MYSQL_PWD|REDIS_PASSWORD|VAULT_TOKEN|AZURE_CLIENT_SECRET|GOOGLE_APPLICATION_CREDENTIALS|SSH_AUTH_SOCK|.*_(TOKEN|SECRET|SECRET_KEY|SECRET_ACCESS_KEY|PASSWORD|PASSWD|PASSPHRASE|API_KEY|APIKEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS|CREDENTIAL|AUTH_TOKEN|CLIENT_SECRET|SESSION_KEY|SIGNING_KEY|DSN))$/i;

const DAY = 86_400_000;

// Directories of system programs: a runtime that is (or contains) one of them would let the agent
// run every interpreter and tool installed there, whatever commandsAllowed says.
const SYSTEM_BIN_DIRS = [
  '/bin',
  '/sbin',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/usr/bin',
  '/usr/sbin',
  '/usr/lib',
  '/usr/lib32',
  '/usr/lib64',
  '/usr/libx32',
  '/usr/libexec',
  '/usr/games',
  '/usr/local/bin',
  '/usr/local/sbin',
  '/usr/local/lib',
  '/usr/local/libexec',
  '/usr/local/games',
  '/opt/homebrew/bin',
  '/snap/bin',
];

function basename(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

function inDomain(host: string, domain: string): boolean {
  return host === domain || host.endsWith('.' + domain);
}

/** A mandatory-deny path ready for comparisons: absolute pattern, or a `/**\/tail` suffix. */
interface DenyPath {
  readonly text: string;
  readonly pattern: PathPattern | undefined;
  readonly tail: readonly string[] | undefined;
}

function denyPath(absText: string): DenyPath {
  return absText.startsWith('/**/')
    ? { text: absText, pattern: undefined, tail: absText.slice(4).split('/') }
    : { text: absText, pattern: parsePathPattern(absText), tail: undefined };
}

/** Whether a pattern lies inside (or equals) a deny path; `/**\/tail` denies match by suffix. */
function grantInsideDeny(grant: PathPattern, deny: DenyPath): boolean {
  if (deny.tail !== undefined) {
    const tail = deny.tail;
    const segs = grant.segments;
    for (let i = 0; i + tail.length <= segs.length; i++) {
      if (tail.every((t, j) => segs[i + j] === t)) return true;
    }
    return false;
  }
  const segs = deny.pattern?.segments ?? [];
  if (grant.literalDepth < segs.length) return false;
  return segs.every((s, i) => segmentMatches(s, grant.segments[i] ?? ''));
}

/** Whether a literal path segment matches a deny's segment (`python3*` matches `python3.12`). */
function segmentMatches(deny: string, seg: string): boolean {
  if (!/[*?]/.test(deny)) return deny === seg;
  const re = deny
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '[^/]*')
    .replace(/\?/g, '[^/]');
  return new RegExp(`^${re}$`, 's').test(seg);
}

function denyInsideGrant(grant: PathPattern, deny: DenyPath): boolean {
  if (deny.pattern === undefined) return false;
  return (
    pathPatternsOverlap(grant, deny.pattern) && deny.pattern.segments.length > grant.literalDepth
  );
}

interface DenyEntry {
  readonly deny: MandatoryDeny;
  readonly paths: readonly { readonly written: string; readonly abs: DenyPath }[];
}

// Deny tables depend only on the home directory and Cordon's directories: build each once.
const denyTables = new Map<string, readonly DenyEntry[]>();

function denyTable(home: string, cordonDirs: readonly string[]): readonly DenyEntry[] {
  const key = [home, ...cordonDirs].join('\0');
  const cached = denyTables.get(key);
  if (cached !== undefined) return cached;
  const extra = cordonDirs.map((d) => parsePathPattern(d).text);
  const table = MANDATORY_DENIES.map((deny) => {
    const written = deny.id === 'cordon' ? [...deny.paths, ...extra] : deny.paths;
    return {
      deny,
      paths: written.map((w) => ({
        written: w,
        abs: denyPath(w.startsWith('~') ? expandHome(parsePathPattern(w), home) : w),
      })),
    };
  });
  if (denyTables.size > 64) denyTables.clear();
  denyTables.set(key, table);
  return table;
}

interface PathEntry {
  readonly list: 'readPaths' | 'writePaths';
  readonly index: number;
  readonly text: string;
  readonly pattern: PathPattern;
  readonly abs: PathPattern;
}

/**
 * Check a parsed manifest for risky or useless grants. Pure: every input is an argument.
 *
 * @example
 * const findings = lintManifest(manifest, { home: '/home/alice' });
 * const errors = findings.filter((f) => f.severity === 'error');
 */
export function lintManifest(m: Manifest, options: LintOptions): LintFinding[] {
  const out: LintFinding[] = [];
  const add = (code: LintCode, pointer: string, message: string, hint: string): void => {
    out.push({ code, severity: LINT_RULES[code][0], pointer, message, hint });
  };
  const home = options.home;
  const now = options.now ?? new Date();

  const paths: PathEntry[] = [];
  for (const list of ['readPaths', 'writePaths'] as const) {
    m[list].forEach((text, index) => {
      const pattern = parsePathPattern(text);
      paths.push({ list, index, text, pattern, abs: parsePathPattern(expandHome(pattern, home)) });
    });
  }
  const homeAbs = parsePathPattern(home);
  const overrides = new Set(m.overrides.map((o) => o.deny));
  const denies = denyTable(home, options.cordonDirs ?? []);
  const touchedDenies = new Set<string>();

  for (const e of paths) {
    const ptr = `/${e.list}/${e.index}`;
    const broad =
      e.abs.literalDepth === 0 ||
      (e.abs.literalDepth <= homeAbs.segments.length &&
        homeAbs.segments.slice(0, e.abs.literalDepth).every((s, i) => s === e.abs.segments[i])) ||
      (e.abs.literalDepth === 1 && ['home', 'root', 'Users'].includes(e.abs.segments[0] ?? ''));
    if (broad && m.dataClassification !== 'public') {
      add(
        'ADMIT_BROAD_ACCESS',
        ptr,
        `"${e.text}" gives full-disk or home-wide access to a ${m.dataClassification} agent`,
        'only agents whose data is public may have such grants: narrow the grant',
      );
    }
    if (e.abs.literalDepth === 0) {
      add(
        'PATH_ROOT_GRANT',
        ptr,
        `"${e.text}" grants the whole filesystem`,
        'grant the project or data directories the agent needs',
      );
    } else if (
      // The home directory itself, or an ancestor of it (/home covers every user's home).
      (e.abs.literalDepth <= homeAbs.segments.length &&
        homeAbs.segments.slice(0, e.abs.literalDepth).every((s, i) => s === e.abs.segments[i])) ||
      (e.abs.literalDepth === 1 && ['home', 'root', 'Users'].includes(e.abs.segments[0] ?? ''))
    ) {
      add(
        'PATH_HOME_GRANT',
        ptr,
        `"${e.text}" grants the whole home directory`,
        'grant a work directory such as ~/Work/<project>',
      );
    } else if (e.abs.literalDepth === 1 && e.abs.segments.includes('**')) {
      add(
        'PATH_BROAD_GLOB',
        ptr,
        `"${e.text}" uses ** one level below the root`,
        'narrow the pattern to the directories the agent needs',
      );
    }
    for (const dir of options.packageDirs ?? []) {
      const pkg = parsePathPattern(dir);
      const inside =
        e.abs.literalDepth >= pkg.segments.length &&
        pkg.segments.every((s, i) => e.abs.segments[i] === s);
      const contains =
        e.list === 'writePaths' &&
        e.abs.literalDepth < pkg.segments.length &&
        e.abs.segments.slice(0, e.abs.literalDepth).every((s, i) => pkg.segments[i] === s);
      if (inside || contains)
        add(
          'PATH_CORDON_PACKAGE',
          ptr,
          `"${e.text}" ${inside ? 'lies inside' : 'includes'} Cordon's installation ${dir}: an agent could change the code the next cordon run executes`,
          inside
            ? 'remove the grant'
            : 'narrow the grant, or install Cordon outside every write grant (npm i -g)',
        );
    }
    // Links on the way to the installation and the node binary: replacing one needs only a
    // write grant on the directory that holds it.
    if (e.list === 'writePaths')
      for (const entry of options.packageEntries ?? []) {
        const segs = parsePathPattern(entry).segments;
        if (
          e.abs.literalDepth <= segs.length &&
          e.abs.segments.slice(0, e.abs.literalDepth).every((s, i) => segs[i] === s)
        ) {
          add(
            'PATH_CORDON_PACKAGE',
            ptr,
            `"${e.text}" can replace ${entry}, on the way to Cordon's installation or the node binary running it: an agent could choose the code the next cordon run executes`,
            'narrow the grant, or install Cordon (and node) outside every write grant (npm i -g)',
          );
          break;
        }
      }
    for (const { deny: d, paths: dps } of denies) {
      if (e.list === 'readPaths' && d.access === 'write') continue;
      for (const { written: dp, abs: denyAbs } of dps) {
        const inside = grantInsideDeny(e.abs, denyAbs);
        const contains = !inside && denyInsideGrant(e.abs, denyAbs);
        if (!inside && !contains) continue;
        touchedDenies.add(d.id);
        if (d.id === 'cordon' && inside) {
          add(
            'PATH_CORDON_DIR',
            ptr,
            `"${e.text}" reaches Cordon's own directory ${dp}`,
            'remove the grant: an agent must never read or edit its own policy, approvals or audit log',
          );
        } else if (!overrides.has(d.id) || d.id === 'cordon') {
          add(
            'PATH_MANDATORY_DENY',
            ptr,
            inside
              ? `"${e.text}" lies inside ${dp} (${d.description}), which stays denied`
              : `"${e.text}" includes ${dp} (${d.description}), which stays denied`,
            inside
              ? `remove the grant, or add an overrides entry for "${d.id}" with a reason`
              : 'narrow the grant; the denied location is excluded either way',
          );
        }
        break;
      }
    }
  }

  const writable = paths.filter((p) => p.list === 'writePaths');
  m.commandsAllowed.forEach((cmd, i) => {
    const ptr = `/commandsAllowed/${i}`;
    const name = basename(cmd);
    if (INTERPRETERS.test(name)) {
      add(
        'CMD_INTERPRETER',
        ptr,
        `${cmd} can run arbitrary code, so the agent can do anything the other grants allow`,
        'allow the specific tools instead, or keep the interpreter and rely on the sandbox (and say so in the description)',
      );
    }
    if (PRIVILEGED.test(name)) {
      add(
        'CMD_PRIVILEGED',
        ptr,
        `${cmd} changes privileges or namespaces`,
        'remove it; agents must not escalate privileges',
      );
    }
    const cmdPattern = parsePathPattern(cmd);
    if (
      writable.some(
        (w) =>
          grantInsideDeny(cmdPattern, denyPath(w.abs.text)) ||
          (w.abs.hasGlob && pathPatternsOverlap(w.abs, cmdPattern)),
      )
    ) {
      add(
        'CMD_IN_WRITE_PATH',
        ptr,
        `${cmd} is inside a writable path`,
        'install allowed tools outside the paths the agent can write',
      );
    }
  });

  m.agentRuntimes.forEach((rt, i) => {
    const ptr = `/agentRuntimes/${i}`;
    const pattern = parsePathPattern(rt);
    const abs = pattern.home ? parsePathPattern(expandHome(pattern, home)) : pattern;
    const system = SYSTEM_BIN_DIRS.find((d) => {
      const dp = parsePathPattern(d);
      return (
        abs.segments.length <= dp.segments.length &&
        abs.segments.every((s, j) => s === dp.segments[j])
      );
    });
    if (system !== undefined) {
      add(
        'RUNTIME_SYSTEM_DIR',
        ptr,
        `${rt} ${abs.text === system ? 'is' : 'contains'} the system directory ${system}: every program in it (shells, perl, python3, ...) would be allowed`,
        "name the runtime's own directory (e.g. /opt/claude) or its executable (e.g. /usr/bin/node); list other programs in commandsAllowed",
      );
    }
    // Either way round: a runtime inside a write grant, or a write grant inside the runtime.
    const writer = writable.find((w) => pathPatternsOverlap(w.abs, abs));
    if (writer !== undefined) {
      add(
        'RUNTIME_WRITABLE',
        ptr,
        `${rt} overlaps /writePaths/${writer.index} ("${writer.text}"): the agent could replace or add programs it then runs`,
        'install the runtime where the agent cannot write (e.g. /opt/<agent>) and keep it out of writePaths',
      );
    }
  });

  const scopes: { scope: NetworkScope; index: number }[] = m.networkScopes.map((s, index) => ({
    scope: parseNetworkScope(s),
    index,
  }));
  for (const { scope, index } of scopes) {
    const ptr = `/networkScopes/${index}`;
    if (scope.kind === 'dns') {
      const shared = SHARED_DOMAINS.find(
        (d) => inDomain(scope.host, d) || (scope.wildcard && d.endsWith('.' + scope.host)),
      );
      if (shared !== undefined) {
        add(
          'NET_SHARED_DOMAIN',
          ptr,
          `${scope.text} is on ${shared}, where anyone can host content or receive data`,
          'name the exact host and path prefix your organisation owns',
        );
      }
    } else if (isInternalAddress(scope)) {
      add(
        'NET_INTERNAL_ADDRESS',
        ptr,
        `${scope.text} is a loopback, private, link-local or metadata address`,
        'make sure the agent really needs this internal service',
      );
    }
    if (scope.scheme === 'http' || scope.scheme === 'ws') {
      add('NET_PLAINTEXT', ptr, `${scope.text} is unencrypted`, 'use https:// or wss://');
    }
  }

  if (Date.parse(m.notAfter) <= now.getTime()) {
    add(
      'VALIDITY_EXPIRED',
      '/notAfter',
      `notAfter ${m.notAfter} is already past (now ${now.toISOString()}): every endpoint would refuse this manifest as expired`,
      'set notAfter to a future date (at most a year ahead) and sign again',
    );
  }
  const start = m.notBefore === undefined ? now.getTime() : Date.parse(m.notBefore);
  const maxDays = options.maxValidityDays ?? 731;
  if (Date.parse(m.notAfter) - start > maxDays * DAY) {
    add(
      'ADMIT_VALIDITY_MAX',
      '/notAfter',
      `the manifest is valid for ${Math.round((Date.parse(m.notAfter) - start) / DAY)} days; the organisation maximum is ${maxDays}`,
      `set notAfter at most ${maxDays} days after notBefore (or after signing)`,
    );
  }
  if (Date.parse(m.notAfter) - start > 366 * DAY) {
    add(
      'VALIDITY_LONG',
      '/notAfter',
      `the manifest is valid for ${Math.round((Date.parse(m.notAfter) - start) / DAY)} days`,
      'keep validity to a year or less and re-sign on renewal',
    );
  }

  // requiresApproval entries must select at least one grant.
  const approvals = m.requiresApproval;
  approvals.forEach((entry, i) => {
    if (!approvalSelectsGrant(m, entry, home)) {
      add(
        'APPROVAL_NO_MATCH',
        `/requiresApproval/${i}`,
        `"${entry}" matches no grant in this manifest`,
        'fix the entry so it names a granted path, host, command or API scope, or remove it',
      );
    }
  });

  if (
    (m.dataClassification === 'confidential' || m.dataClassification === 'restricted') &&
    m.writePaths.length > 0
  ) {
    m.writePaths.forEach((w, i) => {
      const wp = parsePathPattern(w);
      const approved = approvals.some((a) => {
        const sel = approvalPath(a);
        return (
          sel !== undefined &&
          sel.kind !== 'read' &&
          sel.kind !== 'exec' &&
          containsPattern(sel.pattern, wp)
        );
      });
      if (!approved) {
        add(
          'WRITE_NO_APPROVAL',
          `/writePaths/${i}`,
          `a ${m.dataClassification} agent may write "${w}" without approval`,
          `add "write:${w}" to requiresApproval`,
        );
      }
    });
  }

  m.env.forEach((name, i) => {
    if (RESERVED_ENV.test(name)) {
      add(
        'ENV_RESERVED',
        `/env/${i}`,
        `${name} is managed by Cordon or injects code into every process`,
        'remove it from env',
      );
    } else if (CREDENTIAL_ENV.test(name)) {
      add(
        'ENV_CREDENTIAL',
        `/env/${i}`,
        `${name} carries a credential; passed into the sandbox, the agent holds it and can use it wherever its egress reaches`,
        'remove it from env; name it in secrets instead, so the egress proxy injects it for the agent',
      );
    } else if (CODE_INJECTION_ENV.test(name)) {
      add(
        'ENV_CODE_INJECTION',
        `/env/${i}`,
        `${name} changes what interpreters, the shell or libc load`,
        'pass it only if the agent needs it, and never from an untrusted parent environment',
      );
    }
  });

  m.overrides.forEach((o, i) => {
    add(
      'OVERRIDE_USED',
      `/overrides/${i}`,
      `lifts the mandatory deny "${o.deny}" (${o.access}): ${o.reason}`,
      'make sure a reviewer accepted this exception',
    );
    if (!touchedDenies.has(o.deny)) {
      add(
        'OVERRIDE_UNUSED',
        `/overrides/${i}`,
        `no grant reaches "${o.deny}", so the override does nothing`,
        'remove the override',
      );
    }
  });

  for (const list of LIST_FIELDS) {
    const seen = new Map<string, number>();
    m[list].forEach((v, i) => {
      const first = seen.get(v);
      if (first !== undefined)
        add(
          'DUPLICATE_ENTRY',
          `/${list}/${i}`,
          `"${v}" repeats /${list}/${first}`,
          'remove the duplicate',
        );
      else seen.set(v, i);
    });
  }
  if (m.secrets.length > 0 && m.networkScopes.length === 0) {
    add(
      'SECRET_NO_EGRESS',
      '/secrets',
      'secrets are named but the agent may reach no network',
      'remove the secrets or add the scopes that use them',
    );
  }
  if (m.description === undefined || m.description.trim() === '') {
    add(
      'NO_DESCRIPTION',
      '',
      'the manifest has no description',
      'say what the agent is for; reviewers and approvers see it',
    );
  }
  return out;
}

type ApprovalPath = { kind: 'read' | 'write' | 'exec' | 'any'; pattern: PathPattern };

function approvalPath(entry: string): ApprovalPath | undefined {
  const m = /^(read|write|exec):([/~].*)$/s.exec(entry);
  if (m) return { kind: m[1] as 'read' | 'write' | 'exec', pattern: parsePathPattern(m[2] ?? '') };
  if (entry.startsWith('/') || entry.startsWith('~'))
    return { kind: 'any', pattern: parsePathPattern(entry) };
  return undefined;
}

/** Whether pattern `outer` selects everything `inner` does (conservative: literal base containment). */
function containsPattern(outer: PathPattern, inner: PathPattern): boolean {
  if (outer.home !== inner.home) return false;
  if (outer.hasGlob) {
    // Only a trailing ** (or none) is treated as containing a subtree.
    const globAt = outer.literalDepth;
    const tailOnlyStarStar =
      outer.segments.length === globAt + 1 && outer.segments[globAt] === '**';
    if (!tailOnlyStarStar) return outer.text === inner.text;
  }
  if (inner.literalDepth < outer.literalDepth) return false;
  for (let i = 0; i < outer.literalDepth; i++)
    if (outer.segments[i] !== inner.segments[i]) return false;
  return true;
}

function approvalSelectsGrant(m: Manifest, entry: string, home: string): boolean {
  const p = approvalPath(entry);
  if (p !== undefined) {
    const abs = (pat: PathPattern): PathPattern => parsePathPattern(expandHome(pat, home));
    const sel = abs(p.pattern);
    const lists: string[] =
      p.kind === 'read'
        ? [...m.readPaths, ...m.writePaths]
        : p.kind === 'write'
          ? m.writePaths
          : p.kind === 'exec'
            ? []
            : [...m.readPaths, ...m.writePaths];
    if (lists.some((g) => pathPatternsOverlap(abs(parsePathPattern(g)), sel))) return true;
    if (p.kind === 'exec' || p.kind === 'any') return m.commandsAllowed.includes(p.pattern.text);
    return false;
  }
  if (entry.includes('://')) {
    const sel = parseNetworkScope(entry);
    return m.networkScopes.some((s) => scopesOverlap(parseNetworkScope(s), sel));
  }
  const sel = parseApiScope(entry);
  return m.apiScopes.some((s) => apiScopesOverlap(parseApiScope(s), sel));
}

function isInternalAddress(scope: NetworkScope): boolean {
  const ip = parseIpAny(scope.host);
  return ip !== undefined && rangeTouchesInternal(ip, scope.prefixLength);
}
