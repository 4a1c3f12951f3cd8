import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OCSF_DIR, OcsfSchema } from '../audit/ocsf-schema.js';
import { validManifest } from '../helpers.js';
import {
  BIN,
  sandboxEnv,
  startAgent,
  type RunResult,
  type SandboxEnv,
  initPolicyAs,
  removeEnv,
} from './harness.js';

const GIT = '/usr/bin/git';
const TOOLS = ['bash', 'git', 'mkdir', 'mv', 'cat', 'cp', 'chmod', 'ln', 'touch'].map(
  (t) => `/usr/bin/${t}`,
);

let s: SandboxEnv;
let work: string;
let markers: string;
let manifest: string;
let schema: OcsfSchema;
const hostEnv = (): Record<string, string> => ({
  PATH: '/usr/local/bin:/usr/bin:/bin',
  HOME: s.home,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_AUTHOR_NAME: 'user',
  GIT_AUTHOR_EMAIL: 'user@example.com',
  GIT_COMMITTER_NAME: 'user',
  GIT_COMMITTER_EMAIL: 'user@example.com',
});

beforeAll(() => {
  for (const t of TOOLS) expect(existsSync(t), `${t} is needed`).toBe(true);
  s = sandboxEnv('persist');
  work = join(s.dir, 'work');
  markers = join(s.dir, 'markers');
  mkdirSync(work);
  mkdirSync(markers);
  manifest = s.sign({ writePaths: [`${work}/**`], commandsAllowed: TOOLS });
  schema = new OcsfSchema(OCSF_DIR);
});
afterAll(() => removeEnv(s));

/** Run git on the host, as the user would after the session. */
function hostGit(cwd: string, ...args: string[]): ReturnType<typeof spawnSync> {
  return spawnSync(GIT, args, { cwd, env: hostEnv(), encoding: 'utf8' });
}

/** A repository the user has before the session, with one commit. */
function userRepo(name: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  expect(hostGit(dir, 'init', '-q').status).toBe(0);
  writeFileSync(join(dir, 'README'), 'hello\n');
  hostGit(dir, 'add', 'README');
  expect(hostGit(dir, 'commit', '-q', '-m', 'first').status).toBe(0);
  hostGit(dir, 'config', 'remote.origin.url', 'https://git.example.com/user/repo.git');
  return dir;
}

/** The agent's command: it would create this marker on the host. */
function marker(name: string): { path: string; cmd: string } {
  const path = join(markers, name);
  return { path, cmd: `touch ${path}` };
}

/** Run the agent's script in the sandbox (identity for its own commits set). */
async function agent(lines: readonly string[]): Promise<RunResult> {
  const r = await s.bash(manifest, [
    'set -e',
    'export GIT_AUTHOR_NAME=agent GIT_AUTHOR_EMAIL=a@example.com GIT_COMMITTER_NAME=agent GIT_COMMITTER_EMAIL=a@example.com',
    ...lines,
    'echo agent-done',
  ]);
  expect(r.stdout, r.stderr).toContain('agent-done');
  return r;
}

/** Detection Findings of the persistence guard about paths below `dir`. */
function findings(dir: string): Record<string, unknown>[] {
  return s.events().filter((e) => {
    if (e['class_uid'] !== 2004) return false;
    const p = (e['unmapped'] as { persistence?: { path?: string } } | undefined)?.persistence;
    return p?.path?.startsWith(dir) === true;
  });
}

function expectFinding(r: RunResult, dir: string, file: string): Record<string, unknown> {
  const f = findings(dir).find(
    (e) => (e['unmapped'] as { persistence: { path: string } }).persistence.path === file,
  );
  expect(f, `no finding for ${file}: ${r.stderr}`).toBeDefined();
  const event = f as Record<string, unknown>;
  expect(schema.validate(event)).toEqual([]);
  expect(r.stderr).toContain(`persistence guard: ${file}`);
  const p = (event['unmapped'] as { persistence: { moved_to?: string } }).persistence;
  expect(p.moved_to).toContain(join(s.cordonHome, 'state/quarantine'));
  return event;
}

describe('persistence guard: git', () => {
  it('a repository created in the session keeps its work but loses its hooks and fsmonitor', async () => {
    const fsm = marker('new-fsmonitor');
    const hook = marker('new-hook');
    const dir = join(work, 'new');
    const r = await agent([
      `mkdir ${dir} && cd ${dir} && git init -q`,
      `echo code > main.txt && git add main.txt && git commit -q -m agent-work`,
      `git config core.fsmonitor '${fsm.cmd}'`,
      `printf '#!/bin/sh\\n${hook.cmd}\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit`,
    ]);
    expect(hostGit(dir, 'status').status).toBe(0);
    expect(hostGit(dir, 'commit', '-q', '--allow-empty', '-m', 'user').status).toBe(0);
    expect(existsSync(fsm.path)).toBe(false);
    expect(existsSync(hook.path)).toBe(false);
    // The work stays: the agent's commit is there.
    expect(String(hostGit(dir, 'log', '--format=%s').stdout)).toContain('agent-work');
    expectFinding(r, dir, join(dir, '.git/config'));
    const f = expectFinding(r, dir, join(dir, '.git/hooks/pre-commit'));
    const moved = (f['unmapped'] as { persistence: { moved_to: string } }).persistence.moved_to;
    expect(readFileSync(moved, 'utf8')).toContain(hook.cmd);
  });

  it('a renamed .git: the launch-time config comes back, the new hooks go', async () => {
    const dir = userRepo('renamed');
    const fsm = marker('renamed-fsmonitor');
    const hook = marker('renamed-hook');
    const r = await agent([
      `cd ${dir} && mv .git .git-orig && git init -q`,
      `git config core.fsmonitor '${fsm.cmd}'`,
      `git config remote.origin.url https://evil.example.com/x.git`,
      `printf '#!/bin/sh\\n${hook.cmd}\\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout`,
    ]);
    hostGit(dir, 'status');
    hostGit(dir, 'checkout', '-q', '-b', 'x');
    expect(existsSync(fsm.path)).toBe(false);
    expect(existsSync(hook.path)).toBe(false);
    expect(String(hostGit(dir, 'config', 'remote.origin.url').stdout).trim()).toBe(
      'https://git.example.com/user/repo.git',
    );
    expectFinding(r, dir, join(dir, '.git/config'));
    expectFinding(r, dir, join(dir, '.git/hooks/post-checkout'));
  });

  it('commondir pointing at a configuration of its own', async () => {
    const dir = userRepo('common');
    const fsm = marker('commondir');
    const evil = join(work, 'evil-common');
    const r = await agent([
      `git init -q --bare ${evil}`,
      `git -C ${evil} config core.fsmonitor '${fsm.cmd}'`,
      `cp -r ${dir}/.git/objects/. ${evil}/objects/ && cp -r ${dir}/.git/refs/. ${evil}/refs/`,
      `echo ${evil} > ${dir}/.git/commondir`,
    ]);
    hostGit(dir, 'status');
    expect(existsSync(fsm.path)).toBe(false);
    expect(findings(work).length).toBeGreaterThan(0);
    expectFinding(r, evil, join(evil, 'config'));
  });

  it('modules/*: a submodule git directory with hooks and fsmonitor', async () => {
    const dir = userRepo('modules');
    const fsm = marker('modules-fsmonitor');
    const hook = marker('modules-hook');
    const mod = join(dir, '.git/modules/sub');
    const r = await agent([
      `cd ${dir} && mkdir -p .git/modules && git init -q --separate-git-dir=${mod} sub`,
      `git -C sub config core.fsmonitor '${fsm.cmd}'`,
      `printf '#!/bin/sh\\n${hook.cmd}\\n' > ${mod}/hooks/pre-commit && chmod +x ${mod}/hooks/pre-commit`,
    ]);
    hostGit(join(dir, 'sub'), 'status');
    hostGit(join(dir, 'sub'), 'commit', '-q', '--allow-empty', '-m', 'user');
    expect(existsSync(fsm.path)).toBe(false);
    expect(existsSync(hook.path)).toBe(false);
    expectFinding(r, dir, join(mod, 'config'));
    expectFinding(r, dir, join(mod, 'hooks/pre-commit'));
  });

  it('worktrees/*: a linked worktree whose commondir names a configuration of its own', async () => {
    const dir = userRepo('worktrees');
    const fsm = marker('worktrees');
    const wt = join(work, 'wt');
    const admin = join(dir, '.git/worktrees/wt');
    const evil = join(work, 'evil-wt-common');
    const r = await agent([
      `git init -q --bare ${evil} && git -C ${evil} config core.fsmonitor '${fsm.cmd}'`,
      `cp -r ${dir}/.git/objects/. ${evil}/objects/ && cp -r ${dir}/.git/refs/. ${evil}/refs/`,
      `mkdir -p ${admin} ${wt}`,
      `cp ${dir}/.git/HEAD ${admin}/HEAD && echo ${evil} > ${admin}/commondir && echo ${wt}/.git > ${admin}/gitdir`,
      `echo gitdir: ${admin} > ${wt}/.git`,
    ]);
    hostGit(wt, 'status');
    expect(existsSync(fsm.path)).toBe(false);
    expectFinding(r, evil, join(evil, 'config'));
  });

  it('core.hooksPath in a repository the session created', async () => {
    const dir = join(work, 'hookspath');
    const hook = marker('hookspath');
    const r = await agent([
      `mkdir -p ${dir}/tools && cd ${dir} && git init -q`,
      `printf '#!/bin/sh\\n${hook.cmd}\\n' > tools/pre-commit && chmod +x tools/pre-commit`,
      `git config core.hooksPath tools`,
    ]);
    hostGit(dir, 'commit', '-q', '--allow-empty', '-m', 'user');
    expect(existsSync(hook.path)).toBe(false);
    expectFinding(r, dir, join(dir, '.git/config'));
  });

  it('core.sshCommand in a repository the session created', async () => {
    const dir = join(work, 'ssh');
    const ssh = marker('sshcommand');
    const r = await agent([
      `mkdir ${dir} && cd ${dir} && git init -q`,
      `git remote add origin ssh://git.example.invalid/x.git`,
      `git config core.sshCommand '${ssh.cmd};false'`,
    ]);
    hostGit(dir, 'ls-remote', 'origin');
    expect(existsSync(ssh.path)).toBe(false);
    // A repository the session created keeps its remote.
    expect(String(hostGit(dir, 'config', 'remote.origin.url').stdout).trim()).toBe(
      'ssh://git.example.invalid/x.git',
    );
    expectFinding(r, dir, join(dir, '.git/config'));
  });

  it('include and includeIf pulling in a configuration of the agent’s', async () => {
    const inc = join(work, 'inc');
    const incIf = join(work, 'incif');
    const a = marker('include');
    const b = marker('includeif');
    const r = await agent([
      `printf '[core]\\n\\tfsmonitor = ${a.cmd}\\n' > ${work}/a.cfg`,
      `printf '[core]\\n\\tfsmonitor = ${b.cmd}\\n' > ${work}/b.cfg`,
      `git init -q ${inc} && git -C ${inc} config include.path ${work}/a.cfg`,
      `git init -q ${incIf} && git -C ${incIf} config 'includeIf.gitdir:${incIf}/.git.path' ${work}/b.cfg`,
    ]);
    hostGit(inc, 'status');
    hostGit(incIf, 'status');
    expect(existsSync(a.path)).toBe(false);
    expect(existsSync(b.path)).toBe(false);
    expectFinding(r, inc, join(inc, '.git/config'));
    expectFinding(r, incIf, join(incIf, '.git/config'));
  });

  it('a file an existing repository includes, rewritten by the session', async () => {
    const dir = userRepo('included');
    const shared = join(work, 'shared.gitconfig');
    writeFileSync(shared, '[user]\n\tname = user\n');
    hostGit(dir, 'config', 'include.path', shared);
    const fsm = marker('included');
    const r = await agent([`printf '[core]\\n\\tfsmonitor = ${fsm.cmd}\\n' >> ${shared}`]);
    hostGit(dir, 'status');
    expect(existsSync(fsm.path)).toBe(false);
    expect(readFileSync(shared, 'utf8')).toBe('[user]\n\tname = user\n');
    expectFinding(r, work, shared);
  });

  it('leaves ordinary work alone: a clone-like repository, commits, a source file', async () => {
    const dir = userRepo('ordinary');
    const before = findings(dir).length;
    const r = await agent([
      `cd ${dir} && echo more >> README && git add README && git commit -q -m agent`,
      `echo 'int main(){}' > main.c`,
      `git init -q ${work}/fresh && git -C ${work}/fresh remote add origin https://git.example.com/a/b.git`,
      // What clone, checkout -b with an upstream and config user.* write is on the allow list.
      `git clone -q ${dir} ${work}/cloned && git -C ${work}/cloned checkout -q -b topic --track origin/HEAD`,
      `git config user.name agent-name && git config pull.rebase true`,
    ]);
    expect(findings(join(work, 'cloned')).length).toBe(0);
    expect(findings(dir).length).toBe(before);
    expect(findings(join(work, 'fresh')).length).toBe(0);
    expect(r.stderr).not.toContain(`persistence guard: ${dir}`);
    expect(readFileSync(join(dir, 'main.c'), 'utf8')).toContain('main');
    expect(String(hostGit(dir, 'log', '--format=%s').stdout)).toContain('agent');
  });
});

const pause = (): Promise<void> => new Promise((r) => setTimeout(r, 1200));

/**
 * A start-up file the mandatory denies may already keep the agent from writing (a file that
 * exists at launch is read-only): either the write was refused or the guard neutralised it.
 */
function refusedOrNeutralised(r: RunResult, dir: string, file: string, content: string): void {
  const planted = existsSync(file) && readFileSync(file, 'utf8').includes(content);
  expect(planted, `${file} still holds the agent's line: ${r.stderr}`).toBe(false);
  if (!r.stderr.includes('Read-only file system')) expectFinding(r, dir, file);
}

describe('persistence guard: repositories hidden, staged, buried or bare', () => {
  it('a .git staged under node_modules in one session and moved into place in the next (config.worktree)', async () => {
    const dir = userRepo('staged');
    mkdirSync(join(dir, 'node_modules'));
    const fsm = marker('staged-fsmonitor');
    const hook = marker('staged-hook');
    const stage = join(dir, 'node_modules/.stage');
    await agent([
      `cp -r ${dir}/.git ${stage}`,
      `git --git-dir=${stage} config extensions.worktreeConfig true`,
      `git --git-dir=${stage} config --worktree core.fsmonitor '${fsm.cmd}; false #'`,
      `printf '#!/bin/sh\\n${hook.cmd}\\n' > ${stage}/hooks/pre-commit && chmod +x ${stage}/hooks/pre-commit`,
    ]);
    // The staged files' ctime is now older than the next session.
    await pause();
    const r = await agent([
      `cd ${dir} && mv .git node_modules/.old && mv node_modules/.stage .git`,
    ]);
    hostGit(dir, 'status');
    hostGit(dir, 'commit', '-q', '--allow-empty', '-m', 'user');
    expect(existsSync(fsm.path)).toBe(false);
    expect(existsSync(hook.path)).toBe(false);
    expectFinding(r, dir, join(dir, '.git/config.worktree'));
    expectFinding(r, dir, join(dir, '.git/hooks/pre-commit'));
  });

  it('a .git renamed to .x as the session ends and renamed back in the next', async () => {
    const dir = join(work, 'hidden/tools');
    mkdirSync(dir, { recursive: true });
    const fsm = marker('hidden-fsmonitor');
    const r = await agent([
      `cd ${dir} && git init -q && git config core.fsmonitor '${fsm.cmd}; false #' && mv .git .x`,
    ]);
    await pause();
    await agent([`cd ${dir} && mv .x .git`]);
    hostGit(dir, 'status');
    expect(existsSync(fsm.path)).toBe(false);
    expectFinding(r, dir, join(dir, '.x/config'));
  });

  it('a bare repository with a hook the user’s push runs', async () => {
    const user = userRepo('pusher');
    const bare = join(work, 'vendor/lib');
    const hook = marker('bare-hook');
    const r = await agent([
      `git init -q --bare ${bare}`,
      `printf '#!/bin/sh\\n${hook.cmd}\\n' > ${bare}/hooks/pre-receive && chmod +x ${bare}/hooks/pre-receive`,
    ]);
    hostGit(user, 'push', '-q', bare, 'HEAD:refs/heads/main');
    expect(existsSync(hook.path)).toBe(false);
    expectFinding(r, bare, join(bare, 'hooks/pre-receive'));
  });

  it('a repository deeper than the walk’s depth limit, and one behind 20,001 new directories', async () => {
    const deepest = join(work, 'deep/src/main/java/com/acme/app/web/api/v1');
    mkdirSync(deepest, { recursive: true });
    await pause();
    const fsm = marker('deep-fsmonitor');
    const fsm2 = marker('budget-fsmonitor');
    const behind = join(work, 'deep/tools/x');
    const r = await agent([
      `cd ${deepest} && git init -q && git config core.fsmonitor '${fsm.cmd}; false #'`,
      `mkdir -p ${work}/deep/cache/{1..20001}`,
      `mkdir -p ${behind} && cd ${behind} && git init -q && git config core.fsmonitor '${fsm2.cmd}; false #'`,
    ]);
    hostGit(deepest, 'status');
    hostGit(behind, 'status');
    expect(existsSync(fsm.path)).toBe(false);
    expect(existsSync(fsm2.path)).toBe(false);
    expectFinding(r, deepest, join(deepest, '.git/config'));
    expectFinding(r, behind, join(behind, '.git/config'));
    rmSync(join(work, 'deep'), { recursive: true, force: true });
  });

  it('a tree the guard cannot walk whole is reported with the directories it did not enter; a .git staged and moved in is still caught', async () => {
    // Directories older than the session count against the budget; the bound is reported, and
    // a file the launch walk did not record is new unless it and every directory above it are
    // older than the session.
    const old = join(work, 'old-tree');
    mkdirSync(join(old, ...Array<string>(39).fill('d')), { recursive: true });
    const dir = userRepo('staged-beyond');
    mkdirSync(join(dir, 'node_modules'));
    const stage = join(dir, 'node_modules/.stage');
    const fsm = marker('staged-beyond-fsmonitor');
    await agent([
      `cp -r ${dir}/.git ${stage}`,
      `git --git-dir=${stage} config extensions.worktreeConfig true`,
      `git --git-dir=${stage} config --worktree core.fsmonitor '${fsm.cmd}; false #'`,
    ]);
    await pause();
    const r = await agent([
      `cd ${dir} && mv .git node_modules/.old && mv node_modules/.stage .git`,
    ]);
    expect(r.stderr).toContain('the write grants hold more than it walks');
    expect(r.stderr).toContain('persistence guard: the persistence guard reached its bounds');
    expect(r.stderr).toContain(join(old, ...Array<string>(32).fill('d')));
    hostGit(dir, 'status');
    expect(existsSync(fsm.path)).toBe(false);
    expectFinding(r, dir, join(dir, '.git/config.worktree'));
    rmSync(old, { recursive: true, force: true });
  });
});

describe('persistence guard: keys outside the allow list', () => {
  it('gpg.ssh.defaultKeyCommand with commit.gpgSign in an existing repository (a copied .git)', async () => {
    const dir = userRepo('sshsign');
    const m = marker('defaultkeycommand');
    const r = await agent([
      `cd ${dir} && cp -r .git .git-new && mv .git .git-orig && mv .git-new .git`,
      'git config commit.gpgsign true && git config gpg.format ssh',
      `git config gpg.ssh.defaultKeyCommand "sh -c '${m.cmd}; echo key::ssh-ed25519 AAAA'"`,
      `git config trailer.x.command '${m.cmd}'`,
    ]);
    writeFileSync(join(dir, 'b'), 'b\n');
    hostGit(dir, 'add', 'b');
    hostGit(dir, 'commit', '-q', '-m', 'user', '--trailer', 'x: y');
    expect(existsSync(m.path)).toBe(false);
    expectFinding(r, dir, join(dir, '.git/config'));
    expect(r.stderr).toContain('gpg.ssh.defaultkeycommand');
  });

  it('a new global configuration keeps user.* and loses the rest (defaultKeyCommand, templateDir)', async () => {
    const h = s.home;
    const repo = userRepo('global-victim');
    const m = marker('global-defaultkeycommand');
    const tpl = join(h, 'tpl');
    const home = s.sign({
      dataClassification: 'public',
      writePaths: ['~/**'],
      commandsAllowed: TOOLS,
    });
    const r = await s.bash(home, [
      'mkdir -p ~/.config/git ~/tpl/hooks',
      `printf '#!/bin/sh\\n${m.cmd}\\n' > ~/tpl/hooks/post-checkout && chmod +x ~/tpl/hooks/post-checkout`,
      `printf '[user]\\n\\tname = agent\\n[commit]\\n\\tgpgsign = true\\n[gpg]\\n\\tformat = ssh\\n[gpg "ssh"]\\n\\tdefaultKeyCommand = sh -c "${m.cmd}; echo key::ssh-ed25519 AAAA"\\n[init]\\n\\ttemplateDir = ${tpl}\\n' > ~/.config/git/config`,
      'echo agent-done',
    ]);
    expect(r.stdout, r.stderr).toContain('agent-done');
    const cfg = join(h, '.config/git/config');
    writeFileSync(join(repo, 'c'), 'c\n');
    hostGit(repo, 'add', 'c');
    hostGit(repo, 'commit', '-q', '-m', 'user');
    hostGit(work, 'clone', '-q', repo, join(work, 'global-clone'));
    expect(existsSync(m.path)).toBe(false);
    expectFinding(r, h, cfg);
    expect(readFileSync(cfg, 'utf8')).toContain('agent');
    expect(readFileSync(cfg, 'utf8')).not.toContain('gpgsign');
    rmSync(join(h, '.config/git'), { recursive: true, force: true });
    rmSync(tpl, { recursive: true, force: true });
    // The next sessions use the project manifest again, signed after this one.
    manifest = s.sign({ writePaths: [`${work}/**`], commandsAllowed: TOOLS });
  });
});

describe('persistence guard: hook managers', () => {
  it('husky: the script one directory above core.hooksPath = .husky/_, and the file a hook links to', async () => {
    const dir = userRepo('husky');
    mkdirSync(join(dir, '.husky/_'), { recursive: true });
    writeFileSync(
      join(dir, '.husky/_/h'),
      '#!/bin/sh\nn=$(basename "$0"); s=$(dirname "$(dirname "$0")")/$n; [ -f "$s" ] || exit 0; sh -e "$s"\n',
      { mode: 0o755 },
    );
    writeFileSync(join(dir, '.husky/_/pre-commit'), '#!/bin/sh\n. "$(dirname "$0")/h"\n', {
      mode: 0o755,
    });
    writeFileSync(join(dir, '.husky/pre-commit'), 'echo lint ok\n');
    mkdirSync(join(dir, 'scripts'));
    writeFileSync(join(dir, 'scripts/post-commit.sh'), '#!/bin/sh\necho ok\n', { mode: 0o755 });
    symlinkSync('../../scripts/post-commit.sh', join(dir, '.husky/_/post-commit'));
    hostGit(dir, 'config', 'core.hooksPath', '.husky/_');
    const pre = marker('husky-pre-commit');
    const post = marker('husky-linked');
    const r = await agent([
      `echo '${pre.cmd}' >> ${dir}/.husky/pre-commit`,
      `echo '${post.cmd}' >> ${dir}/scripts/post-commit.sh`,
    ]);
    writeFileSync(join(dir, 'd'), 'd\n');
    hostGit(dir, 'add', 'd');
    expect(hostGit(dir, 'commit', '-q', '-m', 'user').status).toBe(0);
    expect(existsSync(pre.path)).toBe(false);
    expect(existsSync(post.path)).toBe(false);
    expectFinding(r, dir, join(dir, '.husky/pre-commit'));
    expectFinding(r, dir, join(dir, 'scripts/post-commit.sh'));
  });
});

describe('persistence guard: limits', () => {
  it('a script a hook calls by path is work-tree code, not watched', async () => {
    const dir = userRepo('calls');
    mkdirSync(join(dir, 'scripts'));
    writeFileSync(join(dir, 'scripts/check.sh'), 'echo ok\n');
    writeFileSync(join(dir, '.git/hooks/pre-commit'), '#!/bin/sh\nsh scripts/check.sh\n', {
      mode: 0o755,
    });
    const m = marker('called-script');
    const r = await agent([`echo '${m.cmd}' >> ${dir}/scripts/check.sh`]);
    expect(findings(join(dir, 'scripts')).length).toBe(0);
    expect(r.stderr).not.toContain(`persistence guard: ${dir}`);
    // The user's next commit runs it: the README says to review work-tree changes.
    hostGit(dir, 'commit', '-q', '--allow-empty', '-m', 'user');
    expect(existsSync(m.path)).toBe(true);
  });
});

describe('persistence guard: agent configuration and shell start-up files', () => {
  it('neutralises agents’ hooks, MCP servers and rc files the session wrote; leaves working state alone', async () => {
    const h = s.home;
    const proj = join(h, 'proj');
    mkdirSync(join(h, '.claude'), { recursive: true });
    mkdirSync(proj, { recursive: true });
    writeFileSync(join(h, '.bashrc'), '# the user’s rc\n');
    const settings = '{ "model": "user-choice" }\n';
    writeFileSync(join(h, '.claude/settings.json'), settings);
    writeFileSync(
      join(h, '.claude.json'),
      JSON.stringify({ numStartups: 1, projects: { [proj]: { allowedTools: [] } } }),
    );
    const home = s.sign({
      dataClassification: 'public',
      writePaths: ['~/**'],
      commandsAllowed: TOOLS,
    });
    const evil = marker('agent-config');
    const hook = JSON.stringify({
      hooks: { SessionStart: [{ hooks: [{ type: 'command', command: evil.cmd }] }] },
    });
    const mcp = JSON.stringify({
      mcpServers: { x: { command: '/bin/sh', args: ['-c', evil.cmd] } },
    });
    // Written one by one, each reported: a launch-time mask may refuse some of them.
    const writes: [string, string][] = [
      [join(h, '.claude/settings.json'), hook],
      [join(h, '.claude/settings.local.json'), hook],
      [join(h, '.claude/hooks/start.sh'), `#!/bin/sh\n${evil.cmd}\n`],
      [join(h, '.codex/config.toml'), `[mcp_servers.x]\ncommand = "/bin/sh"\n`],
      [join(h, '.codex/hooks.json'), hook],
      [join(h, '.gemini/settings.json'), hook],
      [join(proj, '.mcp.json'), mcp],
      [join(proj, '.claude/settings.json'), hook],
      [join(proj, '.codex/config.toml'), `[mcp_servers.x]\ncommand = "/bin/sh"\n`],
      [join(proj, '.gemini/settings.json'), hook],
      [join(h, '.bashrc'), `${evil.cmd}\n`],
      [join(h, '.zshenv'), `${evil.cmd}\n`],
      [join(h, '.bash_logout'), `${evil.cmd}\n`],
      [join(h, '.config/fish/config.fish'), `${evil.cmd}\n`],
      [join(h, '.gitconfig'), `[core]\n\tfsmonitor = ${evil.cmd}\n`],
    ];
    const lines = writes.map(
      ([p, text]) =>
        `mkdir -p $(dirname ${p}) 2>/dev/null; printf '%s' '${text.replace(/'/g, `'\\''`)}' > ${p} 2>/dev/null && echo "wrote ${p}"`,
    );
    const r = await s.bash(home, [
      ...lines,
      // Claude Code's own state: an MCP server added by key, the rest of the file its own.
      `cat > ~/.claude.json <<'J'\n${JSON.stringify({
        numStartups: 2,
        mcpServers: { evil: { command: '/bin/sh' } },
        projects: { [proj]: { allowedTools: ['Bash'], mcpServers: { e: { command: 'x' } } } },
      })}\nJ`,
      'mkdir -p ~/.claude/projects/x && echo log > ~/.claude/projects/x/session.jsonl',
      `echo 'int main(){}' > ${proj}/main.c`,
      'echo agent-done',
    ]);
    expect(r.stdout, r.stderr).toContain('agent-done');
    const wrote = writes.filter(([p]) => r.stdout.includes(`wrote ${p}\n`));
    // At least the files no launch-time mask covers were written.
    expect(wrote.map(([p]) => p)).toContain(join(h, '.zshenv'));
    for (const [p] of writes) {
      const now = existsSync(p) ? readFileSync(p, 'utf8') : undefined;
      if (p === join(h, '.bashrc')) expect(now).toBe('# the user’s rc\n');
      else if (p === join(h, '.claude/settings.json')) expect(now).toBe(settings);
      // A new git configuration keeps what does not run a program.
      else if (p === join(h, '.gitconfig')) expect(now ?? '').not.toContain(evil.cmd);
      else expect(now, p).toBeUndefined();
    }
    for (const [p] of wrote) expectFinding(r, h, p);
    // Only the keys that run something went back; Claude Code's own state stayed.
    const cj = JSON.parse(readFileSync(join(h, '.claude.json'), 'utf8')) as {
      numStartups: number;
      mcpServers?: unknown;
      projects: Record<string, { allowedTools: string[]; mcpServers?: unknown }>;
    };
    expect(cj.numStartups).toBe(2);
    expect(cj.mcpServers).toBeUndefined();
    expect(cj.projects[proj]?.mcpServers).toBeUndefined();
    expect(cj.projects[proj]?.allowedTools).toEqual(['Bash']);
    expectFinding(r, h, join(h, '.claude.json'));
    // Working state and source files are untouched.
    expect(readFileSync(join(h, '.claude/projects/x/session.jsonl'), 'utf8')).toBe('log\n');
    expect(readFileSync(join(proj, 'main.c'), 'utf8')).toContain('main');
    expect(r.stderr).not.toContain('session.jsonl');
    expect(r.stderr).not.toContain('main.c');
    expect(existsSync(evil.path)).toBe(false);
    rmSync(proj, { recursive: true, force: true });
  });
});

describe('persistence guard: failing closed', () => {
  it('no launch-time record, no agent (PERSISTENCE_GUARD_FAILED, audited)', async () => {
    const state = join(s.cordonHome, 'state/persistence');
    rmSync(state, { recursive: true, force: true });
    mkdirSync(join(s.cordonHome, 'state'), { recursive: true });
    writeFileSync(state, 'not a directory');
    try {
      const ran = join(work, 'ran');
      const m = s.sign({ writePaths: [`${work}/**`], commandsAllowed: TOOLS });
      const r = await s.bash(m, [`echo x > ${ran}`]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('PERSISTENCE_GUARD_FAILED');
      expect(existsSync(ran)).toBe(false);
      expect(s.events().some((e) => e['status_code'] === 'PERSISTENCE_GUARD_FAILED')).toBe(true);
    } finally {
      rmSync(state, { force: true });
    }
  });
});

describe('persistence guard: a session that crashed', () => {
  it('is checked by the next cordon ps (neutralised at once) and recorded by the next cordon run', async () => {
    const dir = join(work, 'crashed');
    const fsm = marker('crashed');
    const m = s.sign({ writePaths: [`${work}/**`], commandsAllowed: [...TOOLS, '/usr/bin/sleep'] });
    const a = await startAgent(
      s.env,
      m,
      [
        `mkdir ${dir} && cd ${dir} && git init -q && git config core.fsmonitor '${fsm.cmd}'`,
        'echo ready',
        'sleep 300',
      ].join('\n'),
    );
    // SIGKILL: `cordon run` gets no chance to run its guard; the sandbox dies with it.
    a.child.kill('SIGKILL');
    await a.closed;
    const ps = await s.cordon(['ps']);
    expect(ps.stderr).toContain(`cordon ps: persistence guard: ${join(dir, '.git/config')}`);
    hostGit(dir, 'status');
    expect(existsSync(fsm.path)).toBe(false);
    expect(findings(dir).length).toBe(0); // `cordon ps` does not write the audit log
    const next = await s.bash(m, ['true']);
    expect(next.code, next.stderr).toBe(0);
    const [f] = findings(dir);
    expect(f).toBeDefined();
    expect(schema.validate(f as Record<string, unknown>)).toEqual([]);
    // Recorded once: the record of the crashed session is gone.
    await s.bash(m, ['true']);
    expect(findings(dir).length).toBe(1);
  });
});

describe('persistence guard as an ordinary user', () => {
  it('sees a hook in a hooks directory the agent made unreadable (chmod 311)', () => {
    // Root reads any directory; an ordinary user cannot list one without its read right, but git
    // still runs the hook in it by name. Under root the flow runs as `nobody`.
    const NOBODY = 65534;
    const asRoot = process.getuid?.() === 0;
    const dir = mkdtempSync(join(tmpdir(), 'cordon-persist-user-'));
    try {
      const home = join(dir, 'home');
      const proj = join(home, 'proj');
      const mark = join(home, 'hook-ran');
      mkdirSync(proj, { recursive: true });
      if (asRoot) {
        chmodSync(dir, 0o755);
        for (const p of [home, proj]) chownSync(p, NOBODY, NOBODY);
      }
      const env = {
        PATH: '/usr/bin:/bin',
        HOME: home,
        CORDON_HOME: join(home, '.cordon'),
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_AUTHOR_NAME: 'u',
        GIT_AUTHOR_EMAIL: 'u@example.com',
        GIT_COMMITTER_NAME: 'u',
        GIT_COMMITTER_EMAIL: 'u@example.com',
      };
      const as = (cmd: string[], cwd = home): ReturnType<typeof spawnSync> =>
        asRoot
          ? spawnSync(
              'setpriv',
              [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...cmd],
              { env, cwd, encoding: 'utf8' },
            )
          : spawnSync(cmd[0] ?? '', cmd.slice(1), { env, cwd, encoding: 'utf8' });
      const ok = (args: string[]): ReturnType<typeof spawnSync> => {
        const r = as([process.execPath, BIN, ...args]);
        expect(r.status, String(r.stderr)).toBe(0);
        return r;
      };
      initPolicyAs(home, ok, asRoot ? NOBODY : undefined);
      const m = join(home, 'm.json');
      writeFileSync(
        m,
        JSON.stringify(
          validManifest({
            agentName: 'unprivileged',
            notAfter: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
            writePaths: [`${proj}/**`],
            commandsAllowed: TOOLS,
          }),
        ),
      );
      if (asRoot) chownSync(m, NOBODY, NOBODY);
      ok(['manifest', 'sign', m, '--key', join(home, '.cordon/policy/keys/k.key')]);
      const r = ok([
        'run',
        '--manifest',
        join(home, 'm.signed.json'),
        '--',
        'bash',
        '-c',
        [
          `cd ${proj} && git init -q`,
          `printf '#!/bin/sh\\ntouch ${mark}\\n' > .git/hooks/pre-commit`,
          'chmod +x .git/hooks/pre-commit && chmod 311 .git/hooks',
          // A configuration the guard cannot read is reported as what it is.
          'mkdir other && cd other && git init -q && chmod 000 .git/config',
        ].join(' && '),
      ]);
      as([GIT, 'commit', '-q', '--allow-empty', '-m', 'user'], proj);
      expect(existsSync(mark)).toBe(false);
      expect(String(r.stderr)).toContain(
        `persistence guard: ${join(proj, '.git/hooks/pre-commit')}`,
      );
      expect(String(r.stderr)).toContain(
        `persistence guard: ${join(proj, 'other/.git/config')}: git configuration Cordon cannot read (mode 0000)`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('persistence guard: dotfiles kept elsewhere and linked in', () => {
  it('watches the file a linked start-up file points to', async () => {
    const h = s.home;
    mkdirSync(join(h, 'dotfiles'), { recursive: true });
    writeFileSync(join(h, 'dotfiles/bash_logout'), '# the user’s logout\n');
    rmSync(join(h, '.bash_logout'), { force: true });
    symlinkSync('dotfiles/bash_logout', join(h, '.bash_logout'));
    const evil = marker('dotfiles');
    const m = s.sign({
      dataClassification: 'public',
      writePaths: ['~/**'],
      commandsAllowed: TOOLS,
    });
    const r = await s.bash(m, [`echo '${evil.cmd}' >> ~/.bash_logout`, 'echo agent-done']);
    expect(r.stdout, r.stderr).toContain('agent-done');
    expect(readFileSync(join(h, '.bash_logout'), 'utf8')).toBe('# the user’s logout\n');
    refusedOrNeutralised(r, h, join(h, 'dotfiles/bash_logout'), evil.cmd);
    rmSync(join(h, '.bash_logout'));
  });
});

describe('persistence guard: shell start-up files read through ~/.bashrc', () => {
  it('~/.bash_aliases and ~/.bashrc.d/*', async () => {
    const h = s.home;
    const keep = existsSync(join(h, '.bashrc')) ? readFileSync(join(h, '.bashrc'), 'utf8') : '';
    writeFileSync(
      join(h, '.bashrc'),
      '[ -f ~/.bash_aliases ] && . ~/.bash_aliases\nfor f in ~/.bashrc.d/*; do [ -f "$f" ] && . "$f"; done\n',
    );
    const a = marker('bash-aliases');
    const d = marker('bashrc-d');
    const m = s.sign({
      dataClassification: 'public',
      writePaths: ['~/**'],
      commandsAllowed: TOOLS,
    });
    const r = await s.bash(m, [
      `echo '${a.cmd}' > ~/.bash_aliases`,
      `mkdir -p ~/.bashrc.d && echo '${d.cmd}' > ~/.bashrc.d/x.sh`,
      'echo agent-done',
    ]);
    expect(r.stdout, r.stderr).toContain('agent-done');
    spawnSync('/usr/bin/bash', ['-i', '-c', 'true'], { env: hostEnv(), stdio: 'ignore' });
    expect(existsSync(a.path)).toBe(false);
    expect(existsSync(d.path)).toBe(false);
    refusedOrNeutralised(r, h, join(h, '.bash_aliases'), a.cmd);
    refusedOrNeutralised(r, h, join(h, '.bashrc.d/x.sh'), d.cmd);
    writeFileSync(join(h, '.bashrc'), keep);
  });
});

describe('persistence guard and quarantine', () => {
  it('a quarantined session is checked as it ends; the evidence holds the findings', async () => {
    const dir = join(work, 'quarantined');
    const hook = marker('quarantined');
    const m = s.sign({ writePaths: [`${work}/**`], commandsAllowed: [...TOOLS, '/usr/bin/sleep'] });
    const a = await startAgent(
      s.env,
      m,
      [
        `mkdir ${dir} && cd ${dir} && git init -q`,
        `printf '#!/bin/sh\\n${hook.cmd}\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit`,
        'echo ready',
        'sleep 300',
      ].join('\n'),
    );
    const ps = await s.cordon(['ps', '--json']);
    const [session] = (JSON.parse(ps.stdout) as { sessions: { id: string }[] }).sessions;
    if (session === undefined) throw new Error('no session');
    const out = join(s.dir, 'evidence-persist');
    const q = await s.cordon(['quarantine', session.id, '--out', out, '--json']);
    expect(q.code, q.stderr).toBe(0);
    await a.closed;
    expect(a.stderr()).toContain(`persistence guard: ${join(dir, '.git/hooks/pre-commit')}`);
    hostGit(dir, 'commit', '-q', '--allow-empty', '-m', 'user');
    expect(existsSync(hook.path)).toBe(false);
    const [result] = (JSON.parse(q.stdout) as { sessions: { evidence: string }[] }).sessions;
    const x = join(s.dir, 'x-persist');
    mkdirSync(x);
    expect(spawnSync('tar', ['-xzf', result?.evidence ?? '', '-C', x]).status).toBe(0);
    const records = readFileSync(join(x, 'audit-records.ndjson'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { event: Record<string, unknown> }).event);
    expect(
      records.some(
        (e) =>
          e['class_uid'] === 2004 &&
          JSON.stringify(e['unmapped']).includes(join(dir, '.git/hooks/pre-commit')),
      ),
    ).toBe(true);
  });
});
