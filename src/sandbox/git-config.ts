/**
 * Git's configuration-file syntax, as far as the persistence guard needs it: which entries a
 * file sets, and which of them make git run a program or send the user's work elsewhere.
 * Anything this parser does not understand is an error, and the guard treats the file as
 * dangerous: git's own parser is more lenient, and a gap between the two must never let an
 * entry through unseen.
 */

/** One `section[.subsection].key = value` entry; names as git compares them. */
export interface GitConfigEntry {
  /** Lower case. */
  readonly section: string;
  /** Case kept (the `[section "sub"]` form); undefined when there is none. */
  readonly subsection: string | undefined;
  /** Lower case. */
  readonly key: string;
  /** Undefined for a bare `key` (boolean true). */
  readonly value: string | undefined;
}

export class GitConfigSyntaxError extends Error {
  override readonly name = 'GitConfigSyntaxError';
}

const NAME = /^[A-Za-z][A-Za-z0-9-]*/;

/** Parse a git configuration file. Throws GitConfigSyntaxError on anything unexpected. */
export function parseGitConfig(text: string): GitConfigEntry[] {
  const out: GitConfigEntry[] = [];
  let s = text.startsWith('\uFEFF') ? text.slice(1) : text;
  let section: string | undefined;
  let subsection: string | undefined;
  let line = 1;
  const fail = (why: string): never => {
    throw new GitConfigSyntaxError(`line ${line}: ${why}`);
  };
  const skipBlank = (): void => {
    while (s.length > 0) {
      const c = s[0];
      if (c === ' ' || c === '\t' || c === '\r') s = s.slice(1);
      else if (c === '\n') {
        s = s.slice(1);
        line++;
      } else if (c === '#' || c === ';') {
        const nl = s.indexOf('\n');
        s = nl < 0 ? '' : s.slice(nl);
      } else return;
    }
  };
  while (true) {
    skipBlank();
    if (s.length === 0) return out;
    if (s[0] === '[') {
      const end = s.indexOf(']');
      const nl = s.indexOf('\n');
      if (end < 0 || (nl >= 0 && nl < end)) fail('unterminated section header');
      const header = s.slice(1, end);
      s = s.slice(end + 1);
      const q = header.indexOf('"');
      if (q < 0) {
        // `[section]` or the old `[section.subsection]` (subsection compared in lower case).
        if (!/^[A-Za-z0-9.-]+$/.test(header)) fail(`bad section name [${header}]`);
        const dot = header.indexOf('.');
        section = (dot < 0 ? header : header.slice(0, dot)).toLowerCase();
        subsection = dot < 0 ? undefined : header.slice(dot + 1).toLowerCase();
      } else {
        const name = header.slice(0, q).trimEnd();
        if (!/^[A-Za-z0-9.-]+$/.test(name) || !/[ \t]$/.test(header.slice(0, q)))
          fail(`bad section name [${header}]`);
        if (!header.endsWith('"') || header.length - 1 === q) fail('bad subsection quoting');
        const raw = header.slice(q + 1, -1);
        let sub = '';
        for (let i = 0; i < raw.length; i++) {
          const c = raw[i];
          if (c === '"') fail('bad subsection quoting');
          if (c === '\\') {
            i++;
            if (i >= raw.length) fail('bad subsection quoting');
          }
          sub += raw[i] ?? '';
        }
        section = name.toLowerCase();
        subsection = sub;
      }
      // A variable may follow the header on the same line.
      continue;
    }
    const m = NAME.exec(s);
    if (m === null) fail(`unexpected "${s.slice(0, 20)}"`);
    const key = (m as RegExpExecArray)[0].toLowerCase();
    if (section === undefined) fail(`${key} outside any section`);
    s = s.slice((m as RegExpExecArray)[0].length);
    while (s[0] === ' ' || s[0] === '\t') s = s.slice(1);
    let value: string | undefined;
    if (s[0] === '=') {
      s = s.slice(1);
      value = readValue();
    } else if (s.length === 0 || s[0] === '\n' || s[0] === '\r' || s[0] === '#' || s[0] === ';') {
      value = undefined;
    } else fail(`bad variable ${key}`);
    out.push({ section: section as string, subsection, key, value });
  }

  function readValue(): string {
    let v = '';
    let quoted = false;
    // Unquoted whitespace is kept between words and dropped at the ends.
    let pendingSpace = '';
    let started = false;
    while (s.length > 0) {
      const c = s[0] as string;
      if (c === '\n') {
        if (quoted) fail('newline inside quotes');
        break;
      }
      if (!quoted && (c === '#' || c === ';')) {
        const nl = s.indexOf('\n');
        s = nl < 0 ? '' : s.slice(nl);
        break;
      }
      if (!quoted && (c === ' ' || c === '\t')) {
        if (started) pendingSpace += c;
        s = s.slice(1);
        continue;
      }
      if (c === '\r' && (s[1] === '\n' || s.length === 1)) {
        s = s.slice(1);
        continue;
      }
      v += pendingSpace;
      pendingSpace = '';
      started = true;
      if (c === '"') {
        quoted = !quoted;
        s = s.slice(1);
        continue;
      }
      if (c === '\\') {
        const n = s[1];
        if (n === '\n') {
          line++;
          s = s.slice(2);
          continue;
        }
        if (n === '\r' && s[2] === '\n') {
          line++;
          s = s.slice(3);
          continue;
        }
        const esc =
          n === undefined ? undefined : { n: '\n', t: '\t', b: '\b', '\\': '\\', '"': '"' }[n];
        if (esc === undefined) fail(`bad escape \\${n ?? ''}`);
        v += esc as string;
        s = s.slice(2);
        continue;
      }
      v += c;
      s = s.slice(1);
    }
    if (quoted) fail('unterminated quote');
    return v;
  }
}

// Settings that make git run a program: a hook directory, a file-system monitor, ssh, editors,
// pagers, proxies, diff/merge/filter drivers, credential helpers, signing programs, shell
// aliases, custom transports and hooks defined in config. Whole sections where every key can.
const RUNS_SECTIONS = new Set([
  'include',
  'includeif',
  'hook',
  'pager',
  'filter',
  'difftool',
  'mergetool',
  'guitool',
  'lfs',
  'instaweb',
  'sendemail',
  'credential',
  'protocol',
]);
const RUNS_KEYS = new Set([
  'core.hookspath',
  'core.fsmonitor',
  'core.sshcommand',
  'core.editor',
  'core.pager',
  'core.gitproxy',
  'core.askpass',
  'core.alternaterefscommand',
  'diff.external',
  'diff.*.command',
  'diff.*.textconv',
  'merge.*.driver',
  'gpg.program',
  'gpg.*.program',
  'sequence.editor',
  'interactive.difffilter',
  'uploadpack.packobjectshook',
  'remote.*.uploadpack',
  'remote.*.receivepack',
  'remote.*.vcs',
  'browser.*.cmd',
  'browser.*.path',
  'man.*.cmd',
  'man.*.path',
  'web.browser',
  'imap.tunnel',
  'tar.*.command',
  'ssh.variant',
]);
// Settings that send the user's work, or their credentials, somewhere else: remotes, URL
// rewrites, HTTP proxies and TLS verification, the work tree's location.
const REDIRECT_SECTIONS = new Set(['url', 'http', 'https']);
const REDIRECT_KEYS = new Set([
  'remote.*.url',
  'remote.*.pushurl',
  'remote.*.proxy',
  'core.worktree',
  'submodule.*.url',
]);

// The only settings a configuration the session created or changed may gain: what `git init`,
// `git clone`, `git remote`, `git branch` and `git config user.*` write. Git reads more settings
// that run a program than any list of them can keep up with (`gpg.ssh.defaultKeyCommand`,
// `trailer.*.cmd`, `init.templateDir`, `extensions.worktreeConfig` with a `config.worktree`),
// so every other key is treated as one that does.
const ALLOWED_KEYS = new Set([
  'core.repositoryformatversion',
  'core.filemode',
  'core.bare',
  'core.logallrefupdates',
  'core.ignorecase',
  'core.precomposeunicode',
  'core.symlinks',
  'core.autocrlf',
  'core.eol',
  'core.safecrlf',
  'core.quotepath',
  'core.sparsecheckout',
  'core.sparsecheckoutcone',
  'remote.*.url',
  'remote.*.pushurl',
  'remote.*.fetch',
  'remote.*.push',
  'remote.*.tagopt',
  'remote.*.prune',
  'remote.*.mirror',
  'branch.*.remote',
  'branch.*.pushremote',
  'branch.*.merge',
  'branch.*.rebase',
  'branch.*.description',
  'submodule.*.url',
  'submodule.*.active',
  'submodule.*.branch',
  'user.name',
  'user.email',
  'init.defaultbranch',
  'pull.rebase',
  'pull.ff',
  'fetch.prune',
  'push.default',
  'push.autosetupremote',
  'extensions.objectformat',
  'extensions.refstorage',
  'color.ui',
]);
const URL_KEYS = new Set(['remote.*.url', 'remote.*.pushurl', 'submodule.*.url']);

/**
 * Whether a configuration the session created or changed may keep this entry: a key on the
 * allow list, and for URLs not the `transport::address` form (`ext::sh -c ...` runs a command,
 * `fd::` and other helpers run `git-remote-*` programs).
 */
export function allowedEntry(e: GitConfigEntry): boolean {
  const k = shape(e);
  if (!ALLOWED_KEYS.has(k)) return false;
  if (URL_KEYS.has(k)) return !/^[A-Za-z0-9+.-]*::/.test((e.value ?? '').trim());
  return true;
}

/** `section.key`, or `section.*.key` when there is a subsection. */
function shape(e: GitConfigEntry): string {
  return e.subsection === undefined ? `${e.section}.${e.key}` : `${e.section}.*.${e.key}`;
}

/** Whether this entry makes git run a program. */
export function runsProgram(e: GitConfigEntry): boolean {
  if (RUNS_SECTIONS.has(e.section) || RUNS_KEYS.has(shape(e))) return true;
  // Shell aliases (`!cmd`) and submodule update commands (`!cmd`) run through the shell.
  if (e.section === 'alias' || (e.section === 'submodule' && e.key === 'update'))
    return (e.value ?? '').trimStart().startsWith('!');
  return false;
}

/** Whether this entry points git at another place (remote, proxy, URL rewrite, work tree). */
export function redirects(e: GitConfigEntry): boolean {
  return REDIRECT_SECTIONS.has(e.section) || REDIRECT_KEYS.has(shape(e));
}

/** A stable text for comparing entries. */
export function entryText(e: GitConfigEntry): string {
  const name =
    e.subsection === undefined ? `${e.section}.${e.key}` : `${e.section}.${e.subsection}.${e.key}`;
  return e.value === undefined ? name : `${name}=${e.value}`;
}

function quote(v: string): string {
  return (
    '"' +
    v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\t/g, '\\t') +
    '"'
  );
}

/** A configuration file with these entries, written the way git reads them back. */
export function formatGitConfig(entries: readonly GitConfigEntry[]): string {
  let out = '';
  let current: string | undefined;
  for (const e of entries) {
    const head =
      e.subsection === undefined ? `[${e.section}]` : `[${e.section} ${quote(e.subsection)}]`;
    if (head !== current) {
      out += head + '\n';
      current = head;
    }
    out += e.value === undefined ? `\t${e.key}\n` : `\t${e.key} = ${quote(e.value)}\n`;
  }
  return out;
}
