import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validManifest } from '../helpers.js';
import { BIN, sandboxEnv, type RunResult, type SandboxEnv } from '../sandbox/harness.js';

let s: SandboxEnv;
let manifest: string;

beforeAll(() => {
  s = sandboxEnv('usage');
  manifest = s.sign({
    commandsAllowed: ['/usr/bin/bash', '/usr/bin/cat', '/usr/bin/sleep'],
  });
});
afterAll(() => {
  rmSync(s.dir, { recursive: true, force: true });
});

/** Run the CLI with its stdout already closed by the reader, as `| head -1` leaves it. */
function withClosedStdout(args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: s.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout: '', stderr }));
  });
}

describe('cordon run: its own failures are 125, never the agent’s codes', () => {
  it('the agent’s own exit 2 passes through; a bad flag or a missing -- is 125 with a hint', async () => {
    // The agent's status: 2 here is the agent's, so Cordon must never use 2 itself.
    const agent = await s.cordon(['run', '--manifest', manifest, '--', 'bash', '-c', 'exit 2']);
    expect(agent.code, agent.stderr).toBe(2);
    // The agent's flags without `--` are taken for Cordon's.
    const noDashes = await s.cordon(['run', '--manifest', manifest, 'bash', '-c', 'exit 0']);
    expect(noDashes.code).toBe(125);
    expect(noDashes.stderr).toMatch(/unknown option '-c'/);
    expect(noDashes.stderr).toMatch(/hint: put the agent command after --/);
    const noCommand = await s.cordon(['run', '--manifest', manifest]);
    expect(noCommand.code).toBe(125);
    expect(noCommand.stderr).toMatch(/hint: put the agent command after --/);
    const badFlag = await s.cordon(['run', '--manifest', manifest, '--no-such-flag', '--', 'true']);
    expect(badFlag.code).toBe(125);
    expect(badFlag.stderr).not.toMatch(/hint: put the agent command/);
    // Other verbs keep the usage code.
    expect((await s.cordon(['ps', '--no-such-flag'])).code).toBe(2);
  });

  it('an unsigned manifest is named as such, with how to sign it; nothing runs', async () => {
    const plain = join(s.dir, 'plain.json');
    writeFileSync(plain, JSON.stringify(validManifest({ commandsAllowed: ['/usr/bin/bash'] })));
    const marker = join(s.dir, 'ran');
    const r = await s.cordon(['run', '--manifest', plain, '--', 'bash', '-c', `echo > ${marker}`]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/error\[MANIFEST_UNSIGNED\]: .*unsigned manifest/);
    expect(r.stderr).toMatch(/fix: sign it with `cordon manifest sign /);
    expect(r.stderr).not.toMatch(/not a DSSE envelope/);
    const verify = await s.cordon(['manifest', 'verify', plain]);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toMatch(/REJECTED \[MANIFEST_UNSIGNED\]/);
    expect(verify.stdout).toMatch(/fix: sign it with `cordon manifest sign/);
    expect(() => copyFileSync(marker, join(s.dir, 'x'))).toThrow();
  });

  it('a manifest signed by a key this machine does not trust says how to trust one', async () => {
    const other = join(s.dir, 'other-keys');
    const g = await s.cordon(['keys', 'generate', '--name', 'stranger', '--dir', other]);
    expect(g.code, g.stderr).toBe(0);
    const file = join(s.dir, 'stranger.json');
    const notAfter = new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');
    writeFileSync(
      file,
      JSON.stringify(validManifest({ notAfter, commandsAllowed: ['/usr/bin/bash'] })),
    );
    const signed = await s.cordon(['manifest', 'sign', file, '--key', join(other, 'stranger.key')]);
    expect(signed.code, signed.stderr).toBe(0);
    const r = await s.cordon([
      'run',
      '--manifest',
      join(s.dir, 'stranger.signed.json'),
      '--',
      'bash',
      '-c',
      'true',
    ]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/SIGNATURE_UNTRUSTED/);
    expect(r.stderr).toMatch(
      /fix: .*cordon keys trust --name NAME --pub KEY\.pub --purpose manifest/,
    );
  });
});

describe('process events name every process', () => {
  it('the helper is not reported as "/", and a process without a path is named by its command', async () => {
    // `cat` exits at once and its parent (exec'd into sleep) never reaps it: a zombie has no
    // executable link and no command line left, only its kernel name.
    const r = await s.bash(manifest, 'sleep 1 | cat; (exec cat /dev/null) & exec sleep 1');
    expect(r.code, r.stderr).toBe(0);
    const events = s.events();
    const launch = events.filter((e) => e['status_code'] === 'SANDBOX_STARTED').at(-1) ?? {};
    const session = (launch['actor'] as { session: { uid: string } }).session.uid;
    const sampled = events.filter(
      (e) =>
        (e['actor'] as { session?: { uid: string } }).session?.uid === session &&
        e['class_uid'] === 1007 &&
        e['activity_id'] === 1 &&
        e['status_code'] !== 'SANDBOX_STARTED',
    );
    const names = sampled.map((e) => {
      const p = e['process'] as { name: string; file: { path: string } };
      return `${p.name} ${p.file.path}`;
    });
    expect(names).toContain('sleep /usr/bin/sleep');
    expect(names).toContain('cat /usr/bin/cat');
    expect(names).toContain('[cat] [cat]');
    for (const n of names) {
      expect(n).not.toMatch(/^ |^\/ |\/$/);
      // Cordon's own helper and egress bridge are covered by the launch event.
      expect(n).not.toMatch(/sandbox/);
    }
  });
});

describe('a closed output pipe ends a verb quietly', () => {
  it('audit tail --ndjson, audit export and manifest schema exit 141 without a stack trace', async () => {
    expect((await s.cordon(['audit', 'emit-test', '--count', '3000'])).code).toBe(0);
    for (const args of [
      ['audit', 'tail', '--ndjson', '-n', '3000'],
      ['audit', 'tail', '--json', '-n', '3000'],
      ['audit', 'export', '--format', 'ocsf-ndjson'],
      ['manifest', 'schema'],
    ]) {
      const r = await withClosedStdout(args);
      expect(r.stderr.replace(/^exported \d+ record\(s\)\n$/, ''), args.join(' ')).toBe('');
      expect(r.code, args.join(' ')).toBe(141);
    }
  });
});

describe('progress on a terminal', () => {
  it('audit emit-test, export and verify show progress on a terminal, and nothing in a pipe', async () => {
    const onTerminal = (args: string[]): string => {
      // script(1) gives the command a pseudo-terminal, as a person's shell would.
      const line = [process.execPath, BIN, ...args].map((a) => `'${a}'`).join(' ');
      const r = spawnSync('script', ['-qec', line, '/dev/null'], { env: s.env, encoding: 'utf8' });
      // audit verify exits 4 here: intact, but no witness proves the log complete.
      expect([0, 4], r.stdout).toContain(r.status);
      return r.stdout;
    };
    expect(onTerminal(['audit', 'emit-test', '--count', '30000'])).toMatch(
      /\rappending events: \d+ of 30000 \(\d+%\)/,
    );
    const out = join(s.dir, 'export.ndjson');
    expect(onTerminal(['audit', 'export', '--format', 'ocsf-ndjson', '--out', out])).toMatch(
      /\rexporting records: \d+ of \d+/,
    );
    expect(onTerminal(['audit', 'verify'])).toMatch(/\rverifying records: \d+ of \d+/);
    // In a pipe (a script, a CI log): no progress lines.
    const piped = await s.cordon(['audit', 'emit-test', '--count', '30000']);
    expect(piped.code).toBe(0);
    expect(piped.stderr).toBe('');
    const verify = await s.cordon(['audit', 'verify']);
    expect(verify.stderr).not.toMatch(/verifying/);
  });
});
