import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadEnforcedPolicy, readManifestFile } from '../../src/endpoint/policy.js';
import { defaultDirs } from '../../src/env.js';
import { validManifest } from '../helpers.js';
import type * as Files from '../../src/store/files.js';
import { cli } from './harness.js';

// The manifest file is swapped for a widened, unsigned copy right after Cordon first reads it:
// the moment between verifying the file and reading it again to enforce it. Deterministic: the
// swap happens inside the read itself.
const swap = vi.hoisted(() => ({ target: '', widened: '', reads: 0 }));
vi.mock('../../src/store/files.js', async (importOriginal) => {
  const actual = await importOriginal<typeof Files>();
  const { writeFileSync: write } = await import('node:fs');
  return {
    ...actual,
    readFileCapped: (file: string, max: number): Buffer => {
      const bytes = actual.readFileCapped(file, max);
      if (file === swap.target && swap.widened !== '') {
        swap.reads++;
        write(swap.target, swap.widened);
        swap.widened = '';
      }
      return bytes;
    },
  };
});

let dir: string;
let home: string;
let cordonHome: string;
let signed: string;
let good: string;
let widened: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cordon-verified-once-'));
  home = join(dir, 'home');
  cordonHome = join(dir, 'cordon');
  mkdirSync(home, { recursive: true });
  const run = async (...args: string[]): Promise<void> => {
    const r = await cli(args, { home, cordonHome });
    expect(r.code, r.stderr).toBe(0);
  };
  await run('init');
  await run('keys', 'generate', '--name', 'sec');
  await run(
    'keys',
    'trust',
    '--name',
    'sec',
    '--pub',
    join(cordonHome, 'policy/keys/sec.pub'),
    '--purpose',
    'manifest',
  );
  const plain = join(dir, 'm.json');
  writeFileSync(
    plain,
    JSON.stringify(
      validManifest({
        agentName: 'swapped',
        notAfter: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
        readPaths: ['~/Work/**'],
        writePaths: [],
      }),
    ),
  );
  await run('manifest', 'sign', plain, '--key', join(cordonHome, 'policy/keys/sec.key'));
  signed = join(dir, 'm.signed.json');
  good = readFileSync(signed, 'utf8');
  // The forgery: the same envelope, its payload widened to the whole home directory.
  const env = JSON.parse(good) as { payload: string };
  const m = JSON.parse(Buffer.from(env.payload, 'base64').toString()) as Record<string, unknown>;
  m['readPaths'] = ['~/**'];
  widened = JSON.stringify({
    ...env,
    payload: Buffer.from(JSON.stringify(m)).toString('base64'),
  });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('what is verified is what is enforced (one read of the manifest)', () => {
  it('cordon check --verify decides under the verified manifest, not a copy swapped in after the first read', async () => {
    writeFileSync(signed, good);
    swap.target = signed;
    swap.widened = widened;
    swap.reads = 0;
    const r = await cli(
      [
        'check',
        '--manifest',
        signed,
        '--verify',
        '--lexical',
        '--home',
        home,
        'read',
        join(home, 'Documents/plans.txt'),
      ],
      { home, cordonHome },
    );
    // The swap really happened, and the file on disk is now the forgery.
    expect(swap.reads).toBe(1);
    expect(readFileSync(signed, 'utf8')).toBe(widened);
    expect(r.stdout).toMatch(/^DENY/);
    expect(r.code).toBe(1);
  });

  it('the decision point run and proxy build (start and every reload) carries the verified digest and grants', () => {
    writeFileSync(signed, good);
    swap.target = signed;
    swap.widened = widened;
    swap.reads = 0;
    const loaded = loadEnforcedPolicy({
      dirs: defaultDirs({ CORDON_HOME: cordonHome }, home),
      home,
      now: () => new Date(),
      source: signed,
      bytes: readManifestFile(signed),
      verify: true,
      guardrails: false,
      lexical: true,
    });
    expect(swap.reads).toBe(1);
    const payload = Buffer.from((JSON.parse(good) as { payload: string }).payload, 'base64');
    expect(loaded.ref.digest).toBe(`sha256:${createHash('sha256').update(payload).digest('hex')}`);
    expect(loaded.manifest.readPaths).toEqual(['~/Work/**']);
    expect(
      loaded.pdp.decide({ kind: 'file.read', path: join(home, 'Documents/plans.txt') }).effect,
    ).toBe('deny');
    expect(loaded.pdp.decide({ kind: 'file.read', path: join(home, 'Work/q3.txt') }).effect).toBe(
      'allow',
    );
  });
});
