import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDeviceLog } from '../../src/audit/open.js';
import { CordonError } from '../../src/errors.js';
import { runSession, type SessionLink } from '../../src/sandbox/launcher.js';
import type { AuditLog } from '../../src/audit/log.js';
import { helperPath } from '../../src/sandbox/linux/doctor.js';
import { planSandbox } from '../../src/sandbox/linux/plan.js';
import { createPdp, type Pdp } from '../../src/policy/pdp.js';
import { validManifest } from '../helpers.js';
import { ROOT, runCli, sandboxEnv, type SandboxEnv, removeEnv } from './harness.js';

let s: SandboxEnv;
beforeAll(() => {
  s = sandboxEnv('session');
});
afterAll(() => removeEnv(s));

describe('sandbox helper', () => {
  it('refuses to run anything unless it is pid 1 of its own pid namespace (exit 125)', () => {
    const r = spawnSync(helperPath(), ['--', '/usr/bin/true'], { encoding: 'utf8' });
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(/init: must run as pid 1/);
  });

  it('rejects malformed arguments (exit 2)', () => {
    for (const args of [['--nproc', '-1', '--', 'true'], ['--bridge', 'x', '--', 'true'], []]) {
      expect(spawnSync(helperPath(), args).status).toBe(2);
    }
  });
});

/** A session link to an in-process log and decision point (what the service does for a client). */
function localLink(id: string, log: AuditLog, pdp: Pdp): SessionLink {
  return {
    id,
    append: (e) => log.append(e),
    decide: (reqs) => Promise.resolve(reqs.map((r) => pdp.decide(r))),
    setSandbox: () => Promise.resolve(),
    quarantine: () => Promise.resolve(),
    watch: () => undefined,
  };
}

describe('runSession', () => {
  /**
   * Run a session whose agent would write a marker file, with the helper and log given; the
   * error code it fails with ('OK' when it returns) and whether the marker was written.
   */
  async function attempt(
    id: string,
    helper: string,
    log: (opened: ReturnType<typeof openDeviceLog>) => Promise<void>,
  ): Promise<{ code: string; ran: boolean }> {
    // The marker's folder is granted for writing: only a sandbox that never ran leaves it absent.
    const markers = join(s.dir, 'markers');
    mkdirSync(markers, { recursive: true });
    const m = validManifest({ commandsAllowed: ['/usr/bin/bash'], writePaths: [`${markers}/**`] });
    const opened = openDeviceLog({
      policyDir: join(s.cordonHome, 'policy'),
      stateDir: join(s.cordonHome, 'state'),
    });
    await log(opened);
    const marker = join(markers, `ran-${id}`);
    let code = 'OK';
    try {
      await runSession(
        {
          id,
          manifest: m,
          ref: { agent: m.agentName, version: m.version, digest: 'sha256:00' },
          // The launcher's side of the service, in process: the same log and decision point.
          link: localLink(id, opened.log, createPdp({ manifest: m, home: s.home })),
          context: opened.context,
          egressDir: s.dir,
          stateDir: join(s.cordonHome, 'state'),
          command: ['/usr/bin/bash', '-c', `echo > ${marker}`],
          agentRuntimes: [],
          guardrails: { facts: { in_force: false }, text: 'none (this test)' },
          hidden: [],
          limits: {},
          home: s.home,
          cwd: s.home,
          env: {},
          bwrap: '/usr/bin/bwrap',
          helper,
          now: () => new Date(),
          onDiagnostic: () => undefined,
        },
        () => undefined,
      );
    } catch (e) {
      code = e instanceof CordonError ? e.code : String(e);
    } finally {
      await opened.log.close();
    }
    // A late start would show within this.
    await new Promise((r) => setTimeout(r, 300));
    expect(readdirSync(tmpdir()).filter((f) => f.startsWith(`cordon-run-${id}-`))).toEqual([]);
    return { code, ran: existsSync(marker) };
  }

  it('runs the same agent with the helper and a working log (the control for the two below)', async () => {
    const r = await attempt('control', helperPath(), () => Promise.resolve());
    expect(r).toEqual({ code: 'OK', ran: true });
  });

  it('fails closed with SANDBOX_SETUP_FAILED when bubblewrap cannot build the sandbox; nothing runs, nothing is left', async () => {
    const r = await attempt('no-helper', join(s.dir, 'no-such-helper'), () => Promise.resolve());
    expect(r).toEqual({ code: 'SANDBOX_SETUP_FAILED', ran: false });
  });

  it('never starts the agent when its launch cannot be recorded (the helper waits for the go byte)', async () => {
    // A closed log: every append fails.
    const r = await attempt('unrecorded', helperPath(), (opened) => opened.log.close());
    expect(r).toEqual({ code: 'AUDIT_LOG_CLOSED', ran: false });
  });

  it('records SANDBOX_EXEC_FAILED when the allowed command cannot start inside (script interpreter not allowed)', async () => {
    const script = join(s.dir, 'tool.pl');
    writeFileSync(script, '#!/usr/bin/perl\nprint "hi\\n";\n');
    chmodSync(script, 0o755);
    const manifest = s.sign({ commandsAllowed: [script] });
    const r = await s.cordon(['run', '--manifest', manifest, '--', script]);
    expect(r.code).toBe(127);
    expect(r.stderr).toMatch(/a script for \/usr\/bin\/perl, which is not allowed/);
    const end = s.events().filter((e) => e['status_code'] === 'SANDBOX_EXEC_FAILED');
    expect(end.length).toBe(1);
    expect(end[0]?.['exit_code']).toBe(127);
  });
});

describe('planSandbox', () => {
  const base = {
    home: '/nonexistent-home',
    cwd: '/',
    command: ['/usr/bin/true'],
    agentRuntimes: [],
    hidden: [],
    helperPath: '/x/helper',
    egressDir: '/x',
    session: 'sid',
    limits: {},
  };

  it('passes only allowlisted environment variables and points every proxy variable at the bridge', () => {
    const plan = planSandbox({
      ...base,
      manifest: validManifest({ env: ['EDITOR'] }),
      parentEnv: {
        PATH: '/usr/bin',
        EDITOR: 'vi',
        GITHUB_TOKEN: 'ghp_secret',
        NO_PROXY: '*',
        HTTPS_PROXY: 'http://elsewhere:1',
      },
    });
    expect(plan.env['EDITOR']).toBe('vi');
    expect(plan.env['GITHUB_TOKEN']).toBeUndefined();
    expect(plan.env['NO_PROXY']).toBe('');
    expect(plan.env['HTTPS_PROXY']).toBe('http://127.0.0.1:3128');
    expect(plan.env['CORDON_SESSION']).toBe('sid');
    // No capability is kept: the helper remounts in a nested namespace of its own.
    expect(plan.bwrapArgs).not.toContain('--cap-add');
  });

  it('never mounts a grant inside a mandatory deny, and warns about grants wider than their glob', () => {
    const dir = join(s.dir, 'plan-home');
    mkdirSync(join(dir, '.aws'), { recursive: true });
    mkdirSync(join(dir, 'Docs'), { recursive: true });
    const plan = planSandbox({
      ...base,
      home: dir,
      manifest: validManifest({ readPaths: ['~/.aws/**', '~/Docs/*.md', '~/Missing/**'] }),
      parentEnv: {},
    });
    expect(plan.grants.map((g) => g.path)).toEqual([join(dir, 'Docs')]);
    expect(plan.grants[0]?.widened).toBe(true);
    expect(plan.warnings.join('\n')).toMatch(/inside the mandatory deny "aws"; not mounted/);
    expect(plan.warnings.join('\n')).toMatch(/Missing.*does not exist at launch/);
    expect(plan.bwrapArgs).not.toContain(join(dir, '.aws'));
  });
});

describe('the installed package', () => {
  /** A copy of the package under the temporary directory, with or without its native build (the helper and the addon). */
  function packageCopy(name: string, withHelper: boolean): string {
    const copy = join(s.dir, name);
    mkdirSync(copy);
    for (const f of ['dist', 'package.json', 'binding.gyp'])
      cpSync(join(ROOT, f), join(copy, f), { recursive: true });
    if (withHelper)
      for (const f of ['cordon-sandbox', 'cordon_native.node'])
        cpSync(join(ROOT, 'build/Release', f), join(copy, 'build/Release', f));
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
    return join(copy, 'dist/cli/main.js');
  }

  it('without the helper: cordon run refuses to start (SANDBOX_UNAVAILABLE, 125) and says how to fix it; doctor fails too', async () => {
    // What an install whose native build failed looks like.
    const cli = packageCopy('pkg-no-helper', false);
    const manifest = s.sign({ commandsAllowed: ['/usr/bin/true'] });
    const r = await runCli(
      [cli, 'run', '--manifest', manifest, '--', '/usr/bin/true'],
      { env: s.env },
      true,
    );
    expect(r.code).toBe(125);
    expect(r.stderr).toContain('SANDBOX_UNAVAILABLE');
    expect(r.stderr).toMatch(/fix: build it: `npm rebuild cordon`/);
    const d = spawnSync(process.execPath, [cli, 'doctor'], { env: s.env, encoding: 'utf8' });
    expect(d.status).toBe(3);
    expect(d.stdout).toMatch(/FAIL helper/);
  });

  it('installed under /tmp (hidden inside the sandbox): doctor and cordon run both work', async () => {
    const cli = packageCopy('pkg-in-tmp', true);
    const d = spawnSync(process.execPath, [cli, 'doctor'], { env: s.env, encoding: 'utf8' });
    expect(d.status, d.stdout).toBe(0);
    const manifest = s.sign({ commandsAllowed: ['/usr/bin/true'] });
    const r = await runCli(
      [cli, 'run', '--manifest', manifest, '--', '/usr/bin/true'],
      { env: s.env },
      true,
    );
    expect(r.code, r.stderr).toBe(0);
  });
});

describe('mandatory denies under a home-wide write grant', () => {
  it('masks missing credential directories; a missing denied file can be created (warned, documented)', async () => {
    const manifest = s.sign({
      dataClassification: 'public',
      writePaths: ['~/**'],
      commandsAllowed: ['/usr/bin/bash'],
    });
    const r = await s.bash(manifest, [
      'echo k > ~/.ssh/authorized_keys; echo authorized_keys=$?',
      'mkdir -p ~/.aws; echo k > ~/.aws/credentials; echo aws=$?',
      'echo x > ~/notes.txt; echo notes=$?',
      'echo x > ~/.bash_profile; echo bash_profile=$?',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^authorized_keys=1$/m);
    expect(r.stdout).toMatch(/^aws=1$/m);
    expect(r.stdout).toMatch(/^notes=0$/m);
    expect(existsSync(join(s.home, '.ssh/authorized_keys'))).toBe(false);
    expect(existsSync(join(s.home, '.aws/credentials'))).toBe(false);
    // A denied file that does not exist yet can be created (warned at launch); the persistence
    // guard moves it out of the way when the session ends.
    expect(r.stderr).toMatch(/\.bash_profile does not exist and lies inside a writable grant/);
    expect(r.stdout).toMatch(/^bash_profile=0$/m);
    expect(existsSync(join(s.home, '.bash_profile'))).toBe(false);
    expect(r.stderr).toContain(`persistence guard: ${join(s.home, '.bash_profile')}`);
  });
});

describe('agent runtimes and the Landlock layer', () => {
  it('runs the agent’s own runtime the signed manifest names in agentRuntimes (audited), which gets no DNS and no secrets', async () => {
    const manifest = s.sign({
      commandsAllowed: ['/usr/bin/bash'],
      agentRuntimes: [process.execPath],
    });
    const script = [
      "const dns = require('node:dns');",
      "const fs = require('node:fs');",
      "let ssh = 'readable'; try { fs.readFileSync(process.env.HOME + '/.cordon/policy/trust.json'); } catch (e) { ssh = e.code; }",
      "dns.lookup('example.com', (err) => console.log(JSON.stringify({ dns: err ? err.code : 'resolved', trust: ssh, token: process.env.SECRET_TOKEN ?? null })));",
    ].join('\n');
    const r = await s.cordon(['run', '--manifest', manifest, '--', process.execPath, '-e', script]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { dns: string; trust: string; token: string | null };
    expect(['ENOTFOUND', 'EAI_AGAIN']).toContain(out.dns);
    expect(out.trust).toBe('ENOENT');
    expect(out.token).toBeNull();
    const launch = s
      .events()
      .filter((e) => e['status_code'] === 'SANDBOX_STARTED')
      .at(-1) as { unmapped: { sandbox: { agent_runtimes: string[] } } };
    expect(launch.unmapped.sandbox.agent_runtimes).toEqual([
      `${process.execPath} (/agentRuntimes/0)`,
    ]);
  });

  it('Landlock refuses what is mounted but not granted (the helper binary, the egress socket)', async () => {
    const manifest = s.sign({ commandsAllowed: ['/usr/bin/bash', '/usr/bin/cat'] });
    const r = await s.bash(
      manifest,
      'cat /run/cordon/sandbox > /dev/null; echo helper=$?; cat /run/cordon/egress.sock; echo socket=$?',
    );
    expect(r.stdout).toMatch(/^helper=1$/m);
    expect(r.stderr).toMatch(/\/run\/cordon\/sandbox: Permission denied/);
    expect(r.stdout).toMatch(/^socket=1$/m);
  });
});

describe('mandatory-deny overrides', () => {
  it('a read override shows the location read-only, and the launch event reports it', async () => {
    mkdirSync(join(s.home, '.ssh'), { recursive: true });
    writeFileSync(join(s.home, '.ssh/deploy_key'), 'deploy key\n');
    const manifest = s.sign({
      dataClassification: 'public',
      readPaths: ['~/**'],
      commandsAllowed: ['/usr/bin/bash', '/usr/bin/cat'],
      overrides: [
        { deny: 'ssh', access: 'read', reason: 'the build agent pulls with a deploy key' },
      ],
    });
    const r = await s.bash(
      manifest,
      'cat ~/.ssh/deploy_key; echo read=$?; echo x >> ~/.ssh/deploy_key; echo write=$?',
    );
    expect(r.stdout).toContain('deploy key');
    expect(r.stdout).toMatch(/^read=0$/m);
    expect(r.stdout).toMatch(/^write=1$/m);
    const launch = s
      .events()
      .filter((e) => e['status_code'] === 'SANDBOX_STARTED')
      .at(-1) as { unmapped: { sandbox: { overrides: string[] } } };
    expect(launch.unmapped.sandbox.overrides).toEqual([
      'ssh (read): the build agent pulls with a deploy key',
    ]);
  });
});

describe('grants that need an approval', () => {
  it('are not available inside: asked writes mount read-only, asked paths are masked, asked programs are absent', async () => {
    mkdirSync(join(s.home, 'Work/out'), { recursive: true });
    mkdirSync(join(s.home, 'Work/secret'), { recursive: true });
    writeFileSync(join(s.home, 'Work/secret/plan.txt'), 'merger plan\n');
    writeFileSync(join(s.home, 'Work/readme.txt'), 'readable\n');
    const manifest = s.sign({
      readPaths: ['~/Work/**'],
      writePaths: ['~/Work/out/**'],
      commandsAllowed: ['/usr/bin/bash', '/usr/bin/cat', '/usr/bin/curl'],
      requiresApproval: ['write:~/Work/out/**', '~/Work/secret/**', 'exec:/usr/bin/curl'],
    });
    const r = await s.bash(manifest, [
      'cat ~/Work/readme.txt; echo read=$?',
      'echo x > ~/Work/out/report.txt; echo write_asked=$?',
      'cat ~/Work/secret/plan.txt; echo read_asked=$?',
      'curl --version >/dev/null; echo exec_asked=$?',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^read=0$/m);
    expect(r.stdout).toMatch(/^write_asked=1$/m);
    expect(r.stdout).toMatch(/^read_asked=1$/m);
    expect(r.stdout).toMatch(/^exec_asked=127$/m);
    expect(r.stdout).not.toContain('merger plan');
    expect(existsSync(join(s.home, 'Work/out/report.txt'))).toBe(false);
    expect(r.stderr).toMatch(/writing .*Work\/out needs an approval.*mounted read-only/);
    expect(r.stderr).toMatch(/\/usr\/bin\/curl: running it needs an approval.*not mounted/);
  });
});
