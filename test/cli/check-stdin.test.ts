import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCheck, stdinLines } from '../../src/cli/check.js';
import type { CliIo } from '../../src/cli/context.js';
import { validManifest } from '../helpers.js';
import { cli } from './harness.js';

// `cordon check --stdin`: every denial reaches the audit log, a huge line never sits in memory,
// and lines end at LF (CRLF too), never at a lone CR.

const BIN = join(fileURLToPath(new URL('../..', import.meta.url)), 'dist/cli/main.js');
let dir: string;
let home: string;
let cordonHome: string;
let manifest: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cordon-check-stdin-'));
  home = join(dir, 'home');
  cordonHome = join(dir, 'cordon');
  mkdirSync(home);
  expect((await cli(['init'], { home, cordonHome })).code).toBe(0);
  manifest = join(dir, 'm.json');
  writeFileSync(
    manifest,
    JSON.stringify(validManifest({ apiScopes: ['sheets:read'], readPaths: ['~/Work/**'] })),
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function check(
  lines: string,
  audit = false,
): Promise<{ code: number; out: Record<string, unknown>[] }> {
  let out = '';
  const io: CliIo = {
    stdout: (t) => (out += t),
    stderr: () => undefined,
    env: { CORDON_HOME: cordonHome },
    now: () => new Date(),
    home,
  };
  const code = await runCheck(
    io,
    undefined,
    [],
    { manifest, stdin: true, lexical: true, ...(audit ? { audit: true } : {}) },
    Readable.from([Buffer.from(lines)]),
  );
  return {
    code,
    out: out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

function auditEvents(): Record<string, unknown>[] {
  const segs = join(cordonHome, 'state/audit/segments');
  if (!existsSync(segs)) return [];
  return readdirSync(segs)
    .sort()
    .flatMap((f) =>
      readFileSync(join(segs, f), 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => (JSON.parse(l) as { event: Record<string, unknown> }).event),
    );
}

const code = (o: Record<string, unknown>): unknown =>
  (o['decision'] as { code?: unknown } | undefined)?.code ?? o['code'];

describe('cordon check --stdin', () => {
  it('--audit records every denial: not JSON, an unknown kind, a malformed request (PDP_ERROR), too long', async () => {
    const before = auditEvents().length;
    const r = await check(
      [
        '{"kind":"api.call","scope":"sheets:read"}',
        'not json',
        '{"kind":"teleport","to":"mars"}',
        '{"kind":"file.read","path":123}',
        `{"kind":"api.call","scope":"${'x'.repeat(70 * 1024)}"}`,
        '{"kind":"file.read","path":"/etc/shadow"}',
      ].join('\n') + '\n',
      true,
    );
    expect(r.out.map(code)).toEqual([
      'ALLOWED',
      'REQUEST_INVALID',
      'REQUEST_INVALID',
      'PDP_ERROR',
      'REQUEST_INVALID',
      'MANDATORY_DENY',
    ]);
    // Decisions only (the log adds its own checkpoints).
    const events = auditEvents()
      .slice(before)
      .filter((e) => e['status_code'] !== undefined && e['class_uid'] !== 6002);
    expect(events.map((e) => e['status_code'])).toEqual(r.out.map(code));
    // The malformed ones are recorded as the checker's API activity, with the decision.
    expect(events[1]).toMatchObject({
      class_uid: 6003,
      disposition: 'Blocked',
      api: { operation: 'invalid request (line 2)', service: { name: 'cordon.check' } },
    });
    expect(events[4]).toMatchObject({
      api: { operation: 'invalid request (line 5, too long)' },
    });
  });

  it('a CRLF ends a line; a lone CR does not split one (it is JSON whitespace between tokens)', async () => {
    const r = await check(
      '{"kind":"api.call",\r"scope":"sheets:read"}\r\n{"kind":"api.call","scope":"sheets:read"}\r\n\r\n',
    );
    expect(r.out.map(code)).toEqual(['ALLOWED', 'ALLOWED']);
    // A CR inside a string is not whitespace: that request is invalid, not two requests.
    const s = await check('{"kind":"api.call","scope":"sheets\r:read"}\n');
    expect(s.out.map(code)).toEqual(['REQUEST_INVALID']);
  });

  it('splits lines across chunk boundaries exactly, and reports an over-long line by its length', async () => {
    const chunks = [
      '{"kind":"api',
      '.call","scope":"sheets:read"}\r',
      '\n',
      'x'.repeat(10),
      'y\n',
      'z',
    ];
    const got: string[] = [];
    for await (const l of stdinLines(Readable.from(chunks.map((c) => Buffer.from(c))), 8))
      got.push('line' in l ? l.line.toString() : `tooLong:${l.tooLong}`);
    expect(got).toEqual(['tooLong:42', 'tooLong:11', 'z']);
    const wide: string[] = [];
    for await (const l of stdinLines(Readable.from(chunks.map((c) => Buffer.from(c)))))
      wide.push('line' in l ? l.line.toString() : `tooLong:${l.tooLong}`);
    expect(wide).toEqual(['{"kind":"api.call","scope":"sheets:read"}', 'xxxxxxxxxxy', 'z']);
  });

  it('a 200 MB line piped in is refused without being held in memory; the next line is decided', async () => {
    expect(existsSync('/usr/bin/time'), 'GNU time measures the peak memory').toBe(true);
    expect(existsSync(BIN), 'the CLI is built').toBe(true);
    const child = spawn(
      '/usr/bin/time',
      [
        '-f',
        'maxrss_kb=%M',
        process.execPath,
        BIN,
        'check',
        '--manifest',
        manifest,
        '--stdin',
        '--lexical',
      ],
      {
        env: { PATH: '/usr/bin:/bin', HOME: home, CORDON_HOME: cordonHome },
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const done = new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    const write = (b: Buffer | string): Promise<void> =>
      new Promise((r) => (child.stdin.write(b) ? r() : child.stdin.once('drain', () => r())));
    await write('{"kind":"api.call","scope":"');
    const mb = Buffer.alloc(1024 * 1024, 'a');
    for (let i = 0; i < 200; i++) await write(mb);
    await write('"}\n{"kind":"api.call","scope":"sheets:read"}\n');
    child.stdin.end();
    await done;
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map(code)).toEqual(['REQUEST_INVALID', 'ALLOWED']);
    expect(String(lines[0]?.['reason'])).toMatch(/line 1 is 209715230 bytes; the limit is 65536/);
    const rss = Number(/maxrss_kb=(\d+)/.exec(stderr)?.[1]);
    // Node itself needs some 50-90 MB; holding the line would take 200 MB or more.
    expect(rss, stderr).toBeGreaterThan(0);
    expect(rss).toBeLessThan(160 * 1024);
  }, 120_000);
});
