import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validManifest } from '../helpers.js';
import { cli, type CliResult } from './harness.js';

// A manifest past its notAfter is refused by every endpoint: lint and sign refuse to produce
// one, and `cordon check` never answers ALLOW under one.

const T0 = new Date('2026-12-01T00:00:00Z');
const LATER = new Date('2027-02-01T00:00:00Z'); // after notAfter below
let dir: string;
let home: string;
let cordonHome: string;
const run = (args: string[], now = T0): Promise<CliResult> => cli(args, { home, cordonHome, now });

function write(name: string, over: Record<string, unknown>): string {
  const f = join(dir, name);
  writeFileSync(f, JSON.stringify(validManifest({ agentName: 'expiring', ...over })));
  return f;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cordon-expiry-'));
  home = join(dir, 'home');
  cordonHome = join(dir, 'cordon');
  mkdirSync(home);
  for (const args of [
    ['init'],
    ['keys', 'generate', '--name', 'sec'],
    [
      'keys',
      'trust',
      '--name',
      'sec',
      '--pub',
      join(cordonHome, 'policy/keys/sec.pub'),
      '--purpose',
      'manifest',
    ],
  ]) {
    const r = await run(args);
    expect(r.code, r.stderr).toBe(0);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('expiry', () => {
  it('lint reports an already expired manifest as an error, and sign refuses it', async () => {
    const f = write('expired.json', { notAfter: '2026-11-30T00:00:00Z' });
    const lint = await run(['manifest', 'lint', f]);
    expect(lint.code).not.toBe(0);
    expect(lint.stdout + lint.stderr).toMatch(/VALIDITY_EXPIRED/);
    const sign = await run([
      'manifest',
      'sign',
      f,
      '--key',
      join(cordonHome, 'policy/keys/sec.key'),
    ]);
    expect(sign.code).not.toBe(0);
    expect(sign.stderr).toMatch(/VALIDITY_EXPIRED/);
    expect(sign.stderr).toMatch(/notAfter 2026-11-30T00:00:00Z is already past/);
  });

  it('a co-signature is refused once the manifest has expired', async () => {
    const f = write('cosign.json', { notAfter: '2027-01-01T00:00:00Z' });
    expect(
      (await run(['manifest', 'sign', f, '--key', join(cordonHome, 'policy/keys/sec.key')])).code,
    ).toBe(0);
    const co = await run(
      [
        'manifest',
        'sign',
        join(dir, 'cosign.signed.json'),
        '--key',
        join(cordonHome, 'policy/keys/org.key'),
      ],
      LATER,
    );
    expect(co.code).not.toBe(0);
    expect(co.stderr).toMatch(/MANIFEST_EXPIRED/);
  });

  it('check verifies a signed manifest by default: an expired one gets no ALLOW; --no-verify decides and says UNVERIFIED', async () => {
    const f = write('checked.json', { notAfter: '2027-01-01T00:00:00Z', readPaths: ['~/Work/**'] });
    expect(
      (await run(['manifest', 'sign', f, '--key', join(cordonHome, 'policy/keys/sec.key')])).code,
    ).toBe(0);
    const signed = join(dir, 'checked.signed.json');
    const req = ['--lexical', 'read', join(home, 'Work/a.txt')];
    const before = await run(['check', '--manifest', signed, ...req]);
    expect(before.code, before.stderr).toBe(0);
    expect(before.stdout).toMatch(/^ALLOW/);
    expect(before.stdout).not.toMatch(/UNVERIFIED/);

    const expired = await run(['check', '--manifest', signed, ...req], LATER);
    expect(expired.code).not.toBe(0);
    expect(expired.stdout).not.toMatch(/ALLOW/);
    expect(expired.stderr).toMatch(/MANIFEST_EXPIRED/);

    const draft = await run(['check', '--manifest', signed, '--no-verify', ...req], LATER);
    expect(draft.code).toBe(0);
    expect(draft.stdout).toMatch(/^ALLOW/);
    expect(draft.stdout).toMatch(/UNVERIFIED: signed manifest NOT verified \(--no-verify\)/);
    const json = await run(['check', '--manifest', signed, '--no-verify', '--json', ...req], LATER);
    expect(json.json()).toMatchObject({ verified: false, decision: { effect: 'allow' } });

    // A plain (unsigned) draft cannot be verified: decided, and marked as such.
    const plain = await run(['check', '--manifest', f, ...req]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/UNVERIFIED: unsigned draft/);
  });
});
