import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Readable } from 'node:stream';
import { beforeEach, describe, expect, it } from 'vitest';
import { runCheck } from '../../src/cli/check.js';
import type { CliIo } from '../../src/cli/context.js';
import { tempDir } from '../helpers.js';
import { cli, type CliResult } from './harness.js';

let root: string;
let cordonHome: string;
let manifestFile: string;
const home = '/home/alice';
const run = (...args: string[]): Promise<CliResult> => cli(args, { home, cordonHome });

beforeEach(async () => {
  root = tempDir();
  cordonHome = join(root, 'cordon');
  expect((await run('init')).code).toBe(0);
  manifestFile = join(root, 'm.json');
  expect(
    (
      await run(
        'manifest',
        'new',
        '--template',
        'finance-analyst',
        '--agent',
        'fin',
        '--out',
        manifestFile,
      )
    ).code,
  ).toBe(0);
});

describe('cordon check', () => {
  it('prints effect, rule and reason, with exit codes 0 allow, 1 deny, 10 ask', async () => {
    const allow = await run(
      'check',
      '--manifest',
      manifestFile,
      '--lexical',
      'read',
      `${home}/Work/Finance/q3.xlsx`,
    );
    expect(allow.code).toBe(0);
    expect(allow.stdout).toMatch(/^ALLOW {2}ALLOWED {2}rule=\/readPaths\/0/);
    const deny = await run(
      'check',
      '--manifest',
      manifestFile,
      '--lexical',
      'read',
      `${home}/.ssh/id_rsa`,
    );
    expect(deny.code).toBe(1);
    expect(deny.stdout).toContain('rule=deny:ssh');
    const ask = await run(
      'check',
      '--manifest',
      manifestFile,
      '--lexical',
      'write',
      `${home}/Work/Finance/outgoing/a.pdf`,
    );
    expect(ask.code).toBe(10);
    const http = await run(
      'check',
      '--manifest',
      manifestFile,
      '--json',
      'http',
      'GET',
      'http://0x7f.1/',
    );
    expect((http.json() as { decision: { code: string } }).decision.code).toBe(
      'NET_INTERNAL_ADDRESS',
    );
    const conn = await run(
      'check',
      '--manifest',
      manifestFile,
      'connect',
      'sheets.corp.example.com:443',
      '--address',
      '10.0.0.5',
    );
    expect(conn.code).toBe(1);
    expect(conn.stdout).toContain('DNS rebinding');
    expect(
      (await run('check', '--manifest', manifestFile, 'api', 'sheets:write:restricted')).code,
    ).toBe(10);
    expect(
      (await run('check', '--manifest', manifestFile, 'exec', '/usr/bin/pdftotext', 'a.pdf')).code,
    ).toBe(0);
    expect((await run('check', '--manifest', manifestFile, 'secret', 'NOPE')).code).toBe(1);
  });

  it('uses the policy directory guardrails by default, and --no-guardrails turns them off', async () => {
    const g = join(cordonHome, 'policy', 'guardrails');
    writeFileSync(
      join(g, 'no-pdf.cedar'),
      '@id("no-pdftotext") forbid (principal, action == Cordon::Action::"exec", resource) when { resource.name == "pdftotext" };\n',
    );
    const on = await run('check', '--manifest', manifestFile, 'exec', '/usr/bin/pdftotext');
    expect(on.code).toBe(1);
    expect(on.stdout).toContain('guardrail:no-pdftotext');
    expect(
      (
        await run(
          'check',
          '--manifest',
          manifestFile,
          '--no-guardrails',
          'exec',
          '/usr/bin/pdftotext',
        )
      ).code,
    ).toBe(0);
    writeFileSync(
      join(g, 'broken.cedar'),
      'forbid (principal, action, resource) when { resource.nope };\n',
    );
    const broken = await run('check', '--manifest', manifestFile, 'exec', '/usr/bin/pdftotext');
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain('GUARDRAIL_INVALID');
    expect(broken.stderr).toContain('broken.cedar:1');
  });

  it('--stdin decides JSON lines, one decision per line, and refuses malformed lines', async () => {
    let out = '';
    const io: CliIo = {
      stdout: (t) => (out += t),
      stderr: () => undefined,
      env: { CORDON_HOME: cordonHome },
      now: () => new Date(),
      home,
    };
    const input = Readable.from([
      '{"kind":"api.call","scope":"sheets:read"}\n',
      '{"kind":"file.read","path":"/etc/shadow"}\n',
      '{"kind":"api.call","scope":"x","scope":"y"}\n',
    ]);
    const code = await runCheck(io, undefined, [], { manifest: manifestFile, stdin: true }, input);
    const lines = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { decision?: { effect: string }; code?: string });
    expect(lines[0]?.decision?.effect).toBe('allow');
    expect(lines[1]?.decision?.effect).toBe('deny');
    expect(lines[2]?.code).toBe('REQUEST_INVALID');
    expect(code).toBe(1);
  });

  it('bad arguments are usage errors', async () => {
    expect((await run('check', '--manifest', manifestFile, 'teleport', 'x')).code).toBe(2);
    expect((await run('check', '--manifest', manifestFile, 'connect', 'no-port')).code).toBe(2);
    expect(
      (await run('check', '--manifest', manifestFile, 'write', '/x', '--op', 'smash')).code,
    ).toBe(2);
    expect((await run('check', '--manifest', manifestFile)).code).toBe(2);
  });
});

describe('cordon policy', () => {
  it('validate reports guardrails with file and line; schema prints the Cedar schema', async () => {
    const examples = fileURLToPath(new URL('../../examples/guardrails', import.meta.url));
    const v = await run('policy', 'validate', examples, '--json');
    expect(v.code).toBe(0);
    expect((v.json() as { policies: { id: string }[] }).policies).toHaveLength(3);
    expect((await run('policy', 'schema')).stdout).toContain('namespace Cordon');
    const empty = await run('policy', 'validate');
    expect(empty.code).toBe(0);
    expect(empty.stdout).toContain('0 guardrail(s)');
  });

  it('test runs table-driven files and exits 1 on a mismatch, naming it', async () => {
    const tests = fileURLToPath(new URL('../../policy-tests', import.meta.url));
    const ok = await run(
      'policy',
      'test',
      join(tests, 'developer.policy.json'),
      join(tests, 'sre-oncall.policy.json'),
    );
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/30 passed, 0 failed/);
    const dir = join(root, 't');
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'mine.policy.json'),
      JSON.stringify({
        manifest: '../m.json',
        home,
        guardrails: '../cordon/policy/guardrails',
        cases: [
          { read: `${home}/Work/Finance/a.xlsx`, expect: 'allow', rule: '/readPaths/0' },
          { read: `${home}/.aws/credentials`, expect: 'allow' },
        ],
      }),
    );
    const bad = await run('policy', 'test', join(dir, 'mine.policy.json'));
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('case 1');
    expect(bad.stdout).toContain('expected allow');
    expect(bad.stdout).toContain('1 passed, 1 failed');
    writeFileSync(
      join(dir, 'broken.policy.json'),
      JSON.stringify({ cases: [{ read: '/x', write: '/y', expect: 'allow' }] }),
    );
    const broken = await run('policy', 'test', join(dir, 'broken.policy.json'));
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain('POLICY_TEST_INVALID');
  });
});

describe('cordon manifest to-cedar', () => {
  it('prints Cedar for expressible manifests and refuses the rest', async () => {
    const r = await run('manifest', 'to-cedar', manifestFile, '--home', '/home/bob');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('resource.path like "/home/bob/Work/Finance/*"');
    const globby = join(root, 'g.json');
    const { readFileSync } = await import('node:fs');
    const m = JSON.parse(readFileSync(manifestFile, 'utf8')) as Record<string, unknown>;
    writeFileSync(globby, JSON.stringify({ ...m, readPaths: ['~/Work/*.xlsx'] }));
    const bad = await run('manifest', 'to-cedar', globby);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('CEDAR_UNTRANSLATABLE');
    expect(bad.stderr).toContain('/readPaths/0');
  });
});

describe('cordon check --verify', () => {
  it('decides under a verified signed manifest, and refuses a tampered one', async () => {
    const policyDir = join(cordonHome, 'policy');
    expect(
      (await run('manifest', 'sign', manifestFile, '--key', join(policyDir, 'keys/org.key'))).code,
    ).toBe(0);
    const signed = manifestFile.replace(/\.json$/, '.signed.json');
    const ok = await run(
      'check',
      '--manifest',
      signed,
      '--verify',
      '--lexical',
      'read',
      `${home}/Work/Finance/a.xlsx`,
    );
    expect(ok.code).toBe(0);
    expect(ok.stderr).toBe('');
    const { readFileSync } = await import('node:fs');
    const env = JSON.parse(readFileSync(signed, 'utf8')) as { payload: string };
    const m = JSON.parse(Buffer.from(env.payload, 'base64').toString()) as Record<string, unknown>;
    m['readPaths'] = ['/'];
    writeFileSync(
      signed,
      JSON.stringify({ ...env, payload: Buffer.from(JSON.stringify(m)).toString('base64') }),
    );
    const bad = await run('check', '--manifest', signed, '--verify', 'read', '/etc/passwd');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('SIGNATURE_INVALID');
    expect(bad.stdout).not.toContain('ALLOW');
  });
});

describe('guardrails directory errors fail closed', () => {
  it('a guardrails path that is not a readable directory is an error, not "no guardrails"', async () => {
    const notDir = join(root, 'guardrails-file');
    writeFileSync(notDir, 'x');
    const r = await run(
      'check',
      '--manifest',
      manifestFile,
      '--guardrails',
      notDir,
      'read',
      `${home}/Work/Finance/a.xlsx`,
    );
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('FILE_UNREADABLE');
  });
});
