import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
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
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/main.js';
import { parseRunArgv } from '../../src/cli/run-entry.js';
import { ROOT, sandboxEnv, type SandboxEnv } from '../sandbox/harness.js';

const BIN = join(ROOT, 'dist/cli/bin.js');
// The same loader as CommonJS: the package's `cordon`.
const BIN_CJS = join(ROOT, 'dist/cli/bin.cjs');
const MAIN = join(ROOT, 'dist/cli/main.js');

/** What commander gives the `run` verb for this command line, or the error it stops with. */
function commanderParse(argv: string[]): { opts: Record<string, unknown>; command: string[] } {
  const quiet = { stdout: () => undefined, stderr: () => undefined };
  const program: Command = buildProgram({
    ...quiet,
    env: {},
    now: () => new Date(),
    home: '/nonexistent',
  });
  let got: { opts: Record<string, unknown>; command: string[] } | undefined;
  const run = program.commands.find((c) => c.name() === 'run');
  run?.action((command: string[], o: Record<string, unknown>) => {
    got = { opts: { ...program.opts(), ...o }, command };
  });
  program.parse(argv, { from: 'user' });
  if (got === undefined) throw new Error('the run action did not run');
  return got;
}

describe('the fast `cordon run` entry reads a command line as the full CLI does', () => {
  it('gives the verb the same options and command as commander, for every form it accepts', () => {
    const lines: string[][] = [
      ['run', '--manifest', 'm.json', '--', 'true'],
      ['run', '--manifest', 'm.json', '--', 'bash', '-c', 'echo --manifest x'],
      ['--policy-dir', '/p', 'run', '--manifest', 'm.json', '--', 'true'],
      ['--state-dir', '/s', '--policy-dir', '/p', 'run', '--manifest', 'm', '--', 'a', '--', 'b'],
      ['run', '--policy-dir', '/p', '--state-dir', '/s', '--manifest', 'm', '--', 'true'],
      ['--policy-dir', '/a', 'run', '--policy-dir', '/b', '--manifest', 'm', '--', 'true'],
      ['run', '--manifest', 'a.json', '--manifest', 'b.json', '--', 'true'],
      [
        'run',
        '--agent-runtime',
        '/opt/a',
        '--manifest',
        'm',
        '--agent-runtime',
        '/opt/b',
        '--resolve',
        'a=127.0.0.1',
        '--resolve',
        'b=::1',
        '--max-processes',
        '10',
        '--max-memory',
        '2G',
        '--max-cpu-seconds',
        '5',
        '--max-file-size',
        '1M',
        '--max-tmp-size',
        '64M',
        '--config',
        'proxy.json',
        '--',
        'claude',
        '--resume',
      ],
      ['run', '--manifest', 'm', '--no-guardrails', '--', 'true'],
      ['run', '--manifest', 'm', '--guardrails', 'g', '--', 'true'],
      ['run', '--manifest', 'm', '--guardrails', 'g', '--no-guardrails', '--', 'true'],
      ['run', '--manifest', 'm', '--no-guardrails', '--guardrails', 'g', '--', 'true'],
      ['run', '--unsafe-no-sandbox', '--manifest', 'm', '--', 'true'],
      ['run', '--manifest', 'run', '--', 'run'],
    ];
    for (const argv of lines) {
      const fast = parseRunArgv(argv);
      expect(fast, argv.join(' ')).toBeDefined();
      expect({ opts: { ...fast?.opts }, command: fast?.command }, argv.join(' ')).toEqual(
        commanderParse(argv),
      );
    }
  });

  it('leaves everything else to the full CLI (help, unknown or malformed options, no `--`)', () => {
    for (const argv of [
      [],
      ['run'],
      ['run', '--help'],
      ['run', '-h'],
      ['help', 'run'],
      ['--version'],
      ['ps'],
      ['run', '--manifest', 'm'],
      ['run', '--manifest', 'm', '--'],
      ['run', '--manifest', 'm', 'bash'],
      ['run', '--', 'true'],
      ['run', '--manifest=m', '--', 'true'],
      ['run', '--manifest', '--', 'true'],
      ['run', '--manifest', '-x', '--', 'true'],
      ['run', '--manifest', '', '--', 'true'],
      ['run', '--manifest', 'm', '--no-such-flag', '--', 'true'],
      ['run', '--manifest', 'm', '--json', '--', 'true'],
      ['run', '--manifest', 'm', '--help', '--', 'true'],
      ['run', '--manifest', 'm', '--max-memory', '--', 'true'],
      ['run', '--manifest', 'm', 'extra', '--', 'true'],
      ['--policy-dir', 'run', '--manifest', 'm', '--', 'true'],
      ['--policy-dir'],
      ['--other', 'x', 'run', '--manifest', 'm', '--', 'true'],
    ])
      expect(parseRunArgv(argv), argv.join(' ')).toBeUndefined();
  });
});

describe('`cordon run`’s own bundle', () => {
  it('holds no commander, no zod, no policy engine, Cedar or proxy', () => {
    // esbuild names each module it bundles in a comment line.
    const modules = readFileSync(join(ROOT, 'dist/cli/cordon-run.cjs'), 'utf8')
      .split('\n')
      .filter((l) => /^\/\/ (dist|node_modules)\//.test(l));
    // The precondition: the verb, its launcher and the service's client are there.
    for (const m of ['dist/cli/run.js', 'dist/sandbox/launcher.js', 'dist/daemon/client.js'])
      expect(modules).toContain(`// ${m}`);
    const heavy = modules.filter((m) =>
      /commander|zod|cedar|dist\/egress\/|dist\/policy\/|manifest\/(schema|verify|templates)|audit\/log|dist\/cli\/main/.test(
        m,
      ),
    );
    expect(heavy).toEqual([]);
  });
});

describe('`cordon run` through the bin', () => {
  let s: SandboxEnv;
  let manifest: string;
  let pkg: string;
  beforeAll(() => {
    expect(existsSync(join(ROOT, 'dist/cli/cordon-run.cjs')), 'npm run build first').toBe(true);
    s = sandboxEnv('run-entry');
    manifest = s.sign({ commandsAllowed: ['/usr/bin/bash', '/usr/bin/true'] });
    // A copy of the package without the whole CLI's bundle: what runs there ran from the
    // verb's own bundle.
    pkg = mkdtempSync(join(tmpdir(), 'cordon-run-pkg-'));
    writeFileSync(join(pkg, 'binding.gyp'), readFileSync(join(ROOT, 'binding.gyp')));
    writeFileSync(join(pkg, 'package.json'), readFileSync(join(ROOT, 'package.json')));
    symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
    symlinkSync(join(ROOT, 'build'), join(pkg, 'build'));
    mkdirSync(join(pkg, 'dist/cli'), { recursive: true });
    for (const f of ['bin.js', 'cordon-run.cjs'])
      copyFileSync(join(ROOT, 'dist/cli', f), join(pkg, 'dist/cli', f));
  });
  afterAll(() => {
    rmSync(pkg, { recursive: true, force: true });
  });

  const bin = (file: string, args: string[]): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, [file, ...args], { env: s.env, encoding: 'utf8' });

  it('runs the session from the verb’s own bundle, never loading the whole CLI', () => {
    // The service is started by a client of the full package (the copy has no `cordon daemon`).
    const warm = bin(MAIN, ['run', '--manifest', manifest, '--', '/usr/bin/true']);
    expect(warm.status, String(warm.stderr)).toBe(0);
    const r = bin(join(pkg, 'dist/cli/bin.js'), [
      'run',
      '--manifest',
      manifest,
      '--',
      'bash',
      '-c',
      'echo inside; exit 3',
    ]);
    expect(r.stdout).toBe('inside\n');
    expect(r.status, String(r.stderr)).toBe(3);
    // It was governed: launched in the sandbox and recorded.
    const launches = s
      .events()
      .filter(
        (e) =>
          (e['unmapped'] as Record<string, unknown> | undefined)?.['sandbox'] !== undefined &&
          JSON.stringify(e).includes('echo inside'),
      );
    expect(launches.length).toBe(1);
    // The verb's bundle made its code cache; the whole CLI's bundle is not there to load.
    expect(existsSync(join(pkg, 'dist/cli/cordon-run.cjs.cache'))).toBe(true);
    expect(existsSync(join(pkg, 'dist/cli/cordon.cjs'))).toBe(false);
    // Anything else needs the whole CLI, which this copy does not have.
    const help = bin(join(pkg, 'dist/cli/bin.js'), ['run', '--help']);
    expect(help.status).not.toBe(0);
    expect(String(help.stderr)).toContain('cordon.cjs');
  });

  it('says and exits exactly as the full CLI does, for failures, help and other verbs', () => {
    for (const args of [
      ['run', '--manifest', manifest, '--', 'bash', '-c', 'exit 7'],
      ['run', '--manifest', join(s.dir, 'missing.json'), '--', 'true'],
      ['run', '--manifest', manifest, '--', 'no-such-command'],
      ['run', '--manifest', manifest, '--', '/usr/bin/perl', '-e', '1'],
      ['run', '--manifest', manifest, '--max-memory', 'lots', '--', 'true'],
      ['run', '--manifest', manifest, '--agent-runtime', 'rel/path', '--', 'true'],
      ['run', '--manifest', manifest, '--no-such-flag', '--', 'true'],
      ['run', '--manifest', manifest, 'bash'],
      ['run', '--help'],
      // Every other verb goes to the whole CLI.
      ['--version'],
      ['--help'],
      ['manifest', 'lint', manifest],
    ]) {
      const viaMain = bin(MAIN, args);
      // Session ids differ between two runs.
      const strip = (t: unknown): string =>
        String(t).replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, 'SESSION');
      for (const viaBin of [bin(BIN, args), bin(BIN_CJS, args)])
        expect(
          { status: viaBin.status, stdout: strip(viaBin.stdout), stderr: strip(viaBin.stderr) },
          args.join(' '),
        ).toEqual({
          status: viaMain.status,
          stdout: strip(viaMain.stdout),
          stderr: strip(viaMain.stderr),
        });
    }
  });
});
