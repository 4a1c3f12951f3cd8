import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDeviceLog } from '../../src/audit/open.js';
import { CordonError } from '../../src/errors.js';
import { runSession } from '../../src/sandbox/launcher.js';
import { helperPath } from '../../src/sandbox/linux/doctor.js';
import { planSandbox } from '../../src/sandbox/linux/plan.js';
import { createPdp } from '../../src/policy/pdp.js';
import { validManifest } from '../helpers.js';
import { ROOT, runCli, sandboxEnv, type SandboxEnv } from './harness.js';

let s: SandboxEnv;
beforeAll(() => {
  s = sandboxEnv('session');
});
afterAll(() => rmSync(s.dir, { recursive: true, force: true }));

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

describe('runSession', () => {
  it('fails closed with SANDBOX_SETUP_FAILED when bubblewrap cannot build the sandbox; nothing runs, nothing is left', async () => {
    const m = validManifest({ commandsAllowed: ['/usr/bin/bash'] });
    const opened = openDeviceLog({
      policyDir: join(s.cordonHome, 'policy'),
      stateDir: join(s.cordonHome, 'state'),
    });
    const marker = join(s.dir, 'ran');
    let code = '';
    try {
      await runSession(
        {
          id: 'test-session',
          manifest: m,
          manifestPath: 'm.json',
          ref: { agent: m.agentName, version: m.version, digest: 'sha256:00' },
          pdp: createPdp({ manifest: m, home: s.home }),
          audit: opened.log,
          context: opened.context,
          stateDir: join(s.cordonHome, 'state'),
          command: ['/usr/bin/bash', '-c', `echo > ${marker}`],
          agentRuntimes: [],
          hidden: [],
          limits: {},
          home: s.home,
          cwd: s.home,
          env: {},
          bwrap: '/usr/bin/bwrap',
          helper: join(s.dir, 'no-such-helper'),
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
    expect(code).toBe('SANDBOX_SETUP_FAILED');
    expect(existsSync(marker)).toBe(false);
    expect(readdirSync(tmpdir()).filter((f) => f.startsWith('cordon-run-test-session-'))).toEqual(
      [],
    );
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
    egressSocket: '/x/egress.sock',
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
    // bubblewrap keeps CAP_SYS_ADMIN in the sandbox's own user namespace only for the helper's
    // noexec remounts; the helper drops every capability before the agent runs (probe: mount EPERM).
    expect(plan.bwrapArgs.join(' ')).toContain('--cap-add CAP_SYS_ADMIN');
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

describe('cordon run without the helper', () => {
  it('refuses to start (SANDBOX_UNAVAILABLE, 125) and says how to fix it; doctor fails too', async () => {
    // A copy of the package without build/: what an install whose native build failed looks like.
    const copy = join(s.dir, 'pkg');
    mkdirSync(copy);
    cpSync(join(ROOT, 'dist'), join(copy, 'dist'), { recursive: true });
    cpSync(join(ROOT, 'package.json'), join(copy, 'package.json'));
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
    const manifest = s.sign({ commandsAllowed: ['/usr/bin/true'] });
    const r = await runCli(
      [join(copy, 'dist/cli/main.js'), 'run', '--manifest', manifest, '--', '/usr/bin/true'],
      { env: s.env },
      true,
    );
    expect(r.code).toBe(125);
    expect(r.stderr).toContain('SANDBOX_UNAVAILABLE');
    expect(r.stderr).toMatch(/fix: build it: `npm rebuild cordon`/);
    const d = spawnSync(process.execPath, [join(copy, 'dist/cli/main.js'), 'doctor'], {
      env: s.env,
      encoding: 'utf8',
    });
    expect(d.status).toBe(3);
    expect(d.stdout).toMatch(/FAIL helper/);
  });
});
