import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { validManifest } from '../helpers.js';
import { sandboxEnv, type SandboxEnv } from './harness.js';

// Only the signed manifest grants: flags on the command line of `cordon run` and `cordon proxy`
// can narrow what it allows, never widen it, and enforcement never drops the organisation's
// guardrails unless the policy directory says it may.

let s: SandboxEnv;
let policy: string;
const allowWithout = (allow: boolean | undefined): void => {
  const f = join(policy, 'enforcement.json');
  if (allow === undefined) rmSync(f, { force: true });
  else writeFileSync(f, JSON.stringify({ allowWithoutGuardrails: allow }));
};
const launches = (): { status_code?: string; unmapped?: Record<string, unknown> }[] =>
  s.events().filter((e) => e['class_uid'] === 1007 && e['activity_id'] === 1);

beforeAll(() => {
  s = sandboxEnv('signed-policy');
  policy = join(s.cordonHome, 'policy');
  for (const bin of ['/usr/bin/perl', '/usr/bin/python3'])
    expect(existsSync(bin), `${bin} is needed to show the attack`).toBe(true);
});

describe('agentRuntimes: the agent’s runtime comes from the signed manifest', () => {
  it('refuses --agent-runtime /usr/bin (perl and python3 would run although commandsAllowed forbids them)', async () => {
    const manifest = s.sign({ commandsAllowed: ['/usr/bin/bash'] });
    const attack = [
      "perl -e 'print qq(perl=ran\\n)'",
      'python3 -c \'print("python3=ran")\'',
      'echo reached=1',
    ];
    const r = await s.bash(manifest, attack, ['--agent-runtime', '/usr/bin']);
    expect(r.code, r.stderr).toBe(125);
    expect(r.stdout).not.toMatch(/ran|reached/);
    expect(r.stderr).toMatch(/RUNTIME_NOT_IN_MANIFEST/);
    expect(r.stderr).toMatch(/agentRuntimes/);
    // The control: without the flag the same session runs, and perl and python3 do not.
    const ok = await s.bash(manifest, [
      'perl -e 1; echo perl=$?',
      'python3 -c 1; echo python3=$?',
      'echo reached=1',
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^perl=127$/m);
    expect(ok.stdout).toMatch(/^python3=127$/m);
    expect(ok.stdout).toMatch(/^reached=1$/m);
  });

  it('a manifest naming /usr/bin (or /usr/lib, /usr) as a runtime cannot be signed', async () => {
    for (const dir of ['/usr/bin', '/usr/lib', '/usr', '/usr/local/bin', '/sbin']) {
      const file = join(s.dir, 'system-runtime.json');
      writeFileSync(
        file,
        JSON.stringify(
          validManifest({
            agentName: 'sandboxed',
            commandsAllowed: ['/usr/bin/bash'],
            agentRuntimes: [dir],
          }),
        ),
      );
      const r = await s.cordon(['manifest', 'sign', file, '--key', join(policy, 'keys/sec.key')]);
      expect(r.code, dir).not.toBe(0);
      expect(r.stdout + r.stderr, dir).toMatch(/RUNTIME_SYSTEM_DIR/);
    }
  });

  it('runs what the manifest’s runtime directory holds; --agent-runtime narrows it, and cannot name anything outside it', async () => {
    const rt = join(s.dir, 'opt/agent');
    mkdirSync(rt, { recursive: true });
    copyFileSync('/usr/bin/echo', join(rt, 'say'));
    copyFileSync('/usr/bin/id', join(rt, 'who'));
    const manifest = s.sign({ commandsAllowed: ['/usr/bin/bash'], agentRuntimes: [rt] });
    const script = [`${rt}/say said; echo say=$?`, `${rt}/who -u >/dev/null; echo who=$?`];
    const all = await s.bash(manifest, script);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/^said$/m);
    expect(all.stdout).toMatch(/^who=0$/m);
    expect(launches().at(-1)?.unmapped?.['sandbox']).toMatchObject({
      agent_runtimes: [`${rt} (/agentRuntimes/0)`],
    });

    const narrow = await s.bash(manifest, script, ['--agent-runtime', join(rt, 'say')]);
    expect(narrow.code, narrow.stderr).toBe(0);
    expect(narrow.stdout).toMatch(/^say=0$/m);
    expect(narrow.stdout).not.toMatch(/^who=0$/m);

    // The agent itself started from the runtime that the narrower list left out: not started.
    const left = await s.cordon([
      'run',
      '--manifest',
      manifest,
      '--agent-runtime',
      join(rt, 'say'),
      '--',
      join(rt, 'who'),
    ]);
    expect(left.code).toBe(126);

    const wider = await s.bash(manifest, script, ['--agent-runtime', '/usr/bin/perl']);
    expect(wider.code).toBe(125);
    expect(wider.stderr).toMatch(/RUNTIME_NOT_IN_MANIFEST/);
    expect(wider.stderr).toMatch(/add "\/usr\/bin\/perl" to agentRuntimes/);
  });

  it('the decision point allows what agentRuntimes grants (cordon check exec)', async () => {
    const rt = join(s.dir, 'opt/agent');
    const manifest = s.sign({ commandsAllowed: ['/usr/bin/bash'], agentRuntimes: [rt] });
    const inside = await s.cordon(['check', '--manifest', manifest, 'exec', join(rt, 'say')]);
    expect(inside.code, inside.stdout + inside.stderr).toBe(0);
    expect(inside.stdout).toMatch(/rule=\/agentRuntimes\/0/);
    const outside = await s.cordon(['check', '--manifest', manifest, 'exec', '/usr/bin/perl']);
    expect(outside.code).toBe(1);
  });

  it('refuses to launch a runtime that lies in a write grant, even through a symlink', async () => {
    const work = join(s.home, 'Work/rt');
    mkdirSync(work, { recursive: true });
    copyFileSync('/usr/bin/echo', join(work, 'say'));
    const link = join(s.dir, 'rt-link');
    rmSync(link, { force: true });
    // A runtime path outside the writable grant that resolves into it.
    const { symlinkSync } = await import('node:fs');
    symlinkSync(work, link);
    const manifest = s.sign({
      commandsAllowed: ['/usr/bin/bash'],
      writePaths: ['~/Work/rt/**'],
      agentRuntimes: [link],
    });
    const r = await s.bash(manifest, 'echo reached=1');
    expect(r.code).toBe(125);
    expect(r.stdout).not.toMatch(/reached/);
    expect(r.stderr).toMatch(/RUNTIME_WRITABLE/);
    // A launch refused while the sandbox is planned is audited like every other refusal.
    const refused = s.events().filter((e) => e['status_code'] === 'RUNTIME_WRITABLE');
    expect(refused).toHaveLength(1);
    expect(refused[0]?.['status_detail']).toMatch(/could not be planned/);
  });
});

describe('env: credentials stay outside the agent', () => {
  it('a manifest that passes a credential from the caller’s environment into the sandbox cannot be signed', async () => {
    // The caller's environment holds SECRET_TOKEN (see the harness); env would hand it over.
    expect(s.env['SECRET_TOKEN']).toBeDefined();
    for (const name of ['SECRET_TOKEN', 'AWS_SECRET_ACCESS_KEY']) {
      const file = join(s.dir, 'env-credential.json');
      writeFileSync(
        file,
        JSON.stringify(
          validManifest({
            agentName: 'sandboxed',
            notAfter: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
            commandsAllowed: ['/usr/bin/bash'],
            env: [name],
          }),
        ),
      );
      const r = await s.cordon(['manifest', 'sign', file, '--key', join(policy, 'keys/sec.key')]);
      expect(r.code, name).not.toBe(0);
      expect(r.stderr, name).toMatch(/ENV_CREDENTIAL/);
    }
  });
});

describe('guardrails: enforcement runs under the organisation’s guardrails', () => {
  const guardrail = [
    '@id("no-perl")',
    'forbid (principal, action == Cordon::Action::"exec", resource)',
    'when { resource.name == "perl" };',
  ].join('\n');

  it('refuses --no-guardrails (a guardrail denial would become an allow) unless the policy directory allows it, and says so in the launch event', async () => {
    writeFileSync(join(policy, 'guardrails/no-perl.cedar'), guardrail);
    allowWithout(undefined);
    try {
      const manifest = s.sign({ commandsAllowed: ['/usr/bin/perl'] });
      const perl = (extra: string[]): ReturnType<SandboxEnv['cordon']> =>
        s.cordon(['run', '--manifest', manifest, ...extra, '--', 'perl', '-e', 'print "ran\\n"']);

      // Under the guardrails: denied by them; the launch decision names them.
      const guarded = await perl([]);
      expect(guarded.code).toBe(126);
      expect(guarded.stdout).not.toMatch(/ran/);
      expect(launches().at(-1)?.unmapped?.['guardrails']).toMatchObject({
        in_force: true,
        policies: ['no-perl'],
      });

      // The attack: drop them from the command line.
      const dropped = await perl(['--no-guardrails']);
      expect(dropped.code).toBe(125);
      expect(dropped.stdout).not.toMatch(/ran/);
      expect(dropped.stderr).toMatch(/GUARDRAILS_REQUIRED/);
      // Nor by pointing at a directory of one's own.
      const empty = join(s.dir, 'my-guardrails');
      mkdirSync(empty, { recursive: true });
      const other = await perl(['--guardrails', empty]);
      expect(other.code).toBe(125);
      expect(other.stderr).toMatch(/GUARDRAILS_REQUIRED/);

      // Allowed by the policy directory: runs, and the launch event says what allowed it.
      allowWithout(true);
      const allowed = await perl(['--no-guardrails']);
      expect(allowed.code, allowed.stderr).toBe(0);
      expect(allowed.stdout).toMatch(/^ran$/m);
      const launch = launches().at(-1);
      expect(launch?.status_code).toBe('SANDBOX_STARTED');
      expect(launch?.unmapped?.['guardrails']).toEqual({
        in_force: false,
        why: '--no-guardrails',
        allowed_by: `${join(policy, 'enforcement.json')} allowWithoutGuardrails`,
      });
    } finally {
      rmSync(join(policy, 'guardrails/no-perl.cedar'));
      allowWithout(true);
    }
  });

  it('run and proxy refuse a policy directory without guardrails unless it allows that; a damaged setting is refused', async () => {
    const manifest = s.sign({ commandsAllowed: ['/usr/bin/bash'] });
    try {
      allowWithout(undefined);
      const r = await s.bash(manifest, 'echo reached=1');
      expect(r.code).toBe(125);
      expect(r.stdout).not.toMatch(/reached/);
      expect(r.stderr).toMatch(/GUARDRAILS_REQUIRED/);
      expect(r.stderr).toMatch(/allowWithoutGuardrails/);
      const p = await s.cordon(['proxy', '--manifest', manifest, '--listen', '127.0.0.1:0']);
      expect(p.code).not.toBe(0);
      expect(p.stderr).toMatch(/GUARDRAILS_REQUIRED/);

      allowWithout(false);
      expect((await s.bash(manifest, 'echo reached=1')).code).toBe(125);

      writeFileSync(join(policy, 'enforcement.json'), '{"allowWithoutGuardrails": "yes"}');
      const bad = await s.bash(manifest, 'echo reached=1');
      expect(bad.code).toBe(125);
      expect(bad.stderr).toMatch(/CONFIG_INVALID/);
      expect(bad.stderr).toMatch(/field: \/allowWithoutGuardrails/);
    } finally {
      allowWithout(true);
    }
  });
});
