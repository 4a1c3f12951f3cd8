import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl, startUpstreams, type Upstreams } from '../egress/harness.js';
import { validManifest } from '../helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'dist/cli/main.js');
const SOON = new Date(Date.now() + 300 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');
let up: Upstreams;
let demo: string;
let env: Record<string, string>;

function cordon(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Write a manifest with these scopes and sign it with the trusted key; returns the signed path. */
function signed(name: string, scopes: string[], version: string): string {
  const file = join(demo, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify(validManifest({ version, networkScopes: scopes, notAfter: SOON }), null, 2),
  );
  const r = cordon(['manifest', 'sign', file, '--key', join(demo, 'home/policy/keys/sec.key')]);
  expect(r.status, r.stderr).toBe(0);
  return join(demo, `${name}.signed.json`);
}

function startProxy(
  manifest: string,
  extra: string[] = [],
): Promise<{ child: ChildProcess; url: string; stderr: () => string; stdout: () => string }> {
  const child = spawn(
    process.execPath,
    [
      bin,
      'proxy',
      '--manifest',
      manifest,
      '--listen',
      '127.0.0.1:0',
      '--resolve',
      'app.test=127.0.0.1',
      ...extra,
    ],
    { env },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m !== null) resolve({ child, url: m[1] ?? '', stderr: () => err, stdout: () => out });
    });
    child.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${err}`)));
  });
}

const exited = (c: ChildProcess): Promise<number | null> =>
  new Promise((r) => (c.exitCode !== null ? r(c.exitCode) : c.on('exit', (code) => r(code))));

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  demo = mkdtempSync(join(tmpdir(), 'cordon-proxy-cli-'));
  up = await startUpstreams(demo);
  env = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: demo,
    CORDON_HOME: join(demo, 'home'),
  };
  for (const args of [
    ['init'],
    ['keys', 'generate', '--name', 'sec'],
    [
      'keys',
      'trust',
      '--name',
      'sec',
      '--pub',
      join(demo, 'home/policy/keys/sec.pub'),
      '--purpose',
      'manifest',
    ],
  ])
    expect(cordon(args).status).toBe(0);
  // Enforcement runs under the organisation's guardrails: one of the examples, enabled.
  copyFileSync(
    join(root, 'examples/guardrails/sensitive-writes.cedar'),
    join(demo, 'home/policy/guardrails/sensitive-writes.cedar'),
  );
});
afterAll(async () => {
  await up.close();
  rmSync(demo, { recursive: true, force: true });
});

describe('cordon proxy, as a user runs it', () => {
  it('serves under a verified manifest; SIGHUP reloads; a bad reload and SIGUSR1 deny all; SIGTERM drains', async () => {
    const grants = [`http://app.test:${up.httpPort}`, `http://127.0.0.1:${up.httpPort}`];
    const v1 = signed('v1', grants, '1.0.0');
    const p = await startProxy(v1, ['--socks', '127.0.0.1:0']);
    const get = (): ReturnType<typeof curl> => curl(p.url, [`http://app.test:${up.httpPort}/`]);
    expect((await get()).status).toBe(200);
    // The same decisions through SOCKS5.
    const socks = /SOCKS5 on (socks5h:\/\/127\.0\.0\.1:\d+)/.exec(p.stdout())?.[1] ?? '';
    expect(socks).not.toBe('');
    expect((await curl(socks, [`http://app.test:${up.httpPort}/`])).status).toBe(200);
    expect((await curl(socks, ['http://evil.test/'])).code).not.toBe(0);

    // A tampered manifest on reload: nothing is allowed until a verified one is loaded.
    const env1 = JSON.parse(readFileSync(v1, 'utf8')) as { payload: string };
    const m = JSON.parse(Buffer.from(env1.payload, 'base64').toString()) as Record<string, unknown>;
    m['networkScopes'] = ['https://evil.test'];
    writeFileSync(
      v1,
      JSON.stringify({ ...env1, payload: Buffer.from(JSON.stringify(m)).toString('base64') }),
    );
    p.child.kill('SIGHUP');
    await until(() => /reload failed/.test(p.stderr()));
    const denied = await get();
    expect(denied.status).toBe(403);
    expect(denied.headers).toMatch(/code=PROXY_DENY_ALL/);

    // A good manifest again (a newer version, at the same path) restores service.
    const v2 = signed('v2', grants, '1.1.0');
    writeFileSync(v1, readFileSync(v2));
    p.child.kill('SIGHUP');
    await until(() => /reloaded manifest 1\.1\.0/.test(p.stderr()));
    expect((await get()).status).toBe(200);

    // Rolling back to the older (validly signed) version is refused: deny-all again.
    const v0 = signed('v0', grants, '1.0.5');
    writeFileSync(v1, readFileSync(v0));
    p.child.kill('SIGHUP');
    await until(() => /reload failed[^\n]*ROLLBACK/i.test(p.stderr()));
    expect((await get()).status).toBe(403);
    writeFileSync(v1, readFileSync(v2));
    p.child.kill('SIGHUP');
    await until(() => (p.stderr().match(/reloaded manifest 1\.1\.0/g) ?? []).length === 2);
    expect((await get()).status).toBe(200);

    p.child.kill('SIGUSR1');
    await until(() => /deny-all/.test(p.stderr()));
    expect((await get()).status).toBe(403);
    // A quarantine outlasts reloads, even a failed one followed by a good one.
    writeFileSync(v1, JSON.stringify({ ...env1, payload: Buffer.from('{}').toString('base64') }));
    p.child.kill('SIGHUP');
    await until(() => (p.stderr().match(/reload failed/g) ?? []).length === 3);
    writeFileSync(v1, readFileSync(v2));
    p.child.kill('SIGHUP');
    await until(() => (p.stderr().match(/reloaded manifest 1\.1\.0/g) ?? []).length === 3);
    const still = await get();
    expect(still.status).toBe(403);
    expect(still.body).toMatch(/quarantined/);

    p.child.kill('SIGTERM');
    expect(await exited(p.child)).toBe(0);
    expect(p.stderr()).toMatch(new RegExp(`app\\.test:${up.httpPort}: \\d+ request`));
    // Everything it decided is in a log that verifies (intact; no witness to prove it complete).
    const verify = cordon(['audit', 'verify']);
    expect(verify.status, verify.stderr).toBe(4);
    expect(verify.stdout).toMatch(/chain intact/);
    const tail = cordon(['audit', 'tail', '-n', '200', '--ndjson']);
    const codes = tail.stdout
      .trim()
      .split('\n')
      .map((l) => {
        const v = JSON.parse(l) as Record<string, unknown> & { event?: Record<string, unknown> };
        return (v.event ?? v)['status_code'];
      });
    expect(codes).toContain('ALLOWED');
    expect(codes).toContain('PROXY_DENY_ALL');
    expect(codes).toContain('VERIFIED');
  });

  it('refuses to start without a verified manifest, or on a non-loopback address', () => {
    const plain = join(demo, 'plain.json');
    writeFileSync(plain, JSON.stringify(validManifest({ notAfter: SOON })));
    const r = cordon(['proxy', '--manifest', plain, '--listen', '127.0.0.1:0']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/verification failed/);
    const v = signed('v3', ['https://api.example.com'], '2.0.0');
    const open = cordon(['proxy', '--manifest', v, '--listen', '0.0.0.0:3128']);
    expect(open.status).toBe(2);
    expect(open.stderr).toMatch(/not a loopback address/);
    const bad = join(demo, 'proxy-bad.json');
    writeFileSync(
      bad,
      JSON.stringify({
        apiVersion: 'cordon.dev/v1',
        kind: 'ProxyConfig',
        limits: { headersTimeoutMs: 5 },
      }),
    );
    const cfg = cordon(['proxy', '--manifest', v, '--listen', '127.0.0.1:0', '--config', bad]);
    expect(cfg.status).toBe(1);
    expect(cfg.stderr).toMatch(/CONFIG_INVALID[\s\S]*field: \/limits\/headersTimeoutMs/);
  });
});
