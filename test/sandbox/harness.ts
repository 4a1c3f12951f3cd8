import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import {
  chownSync,
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
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { validManifest } from '../helpers.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'dist/cli/main.js');
const SOON = new Date(Date.now() + 300 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');

export interface SandboxEnv {
  /** Temporary root of everything below. */
  readonly dir: string;
  /** The user's home as the sandboxed session sees it (HOME). */
  readonly home: string;
  readonly cordonHome: string;
  readonly env: Record<string, string>;
  /** Test probe binary (test/sandbox/probe.c), outside every grant. */
  readonly probe: string;
  cordon(args: string[], opts?: SpawnOptions): Promise<RunResult>;
  /** `cordon run --manifest M [EXTRA...] -- bash -c LINES` (lines joined by newlines). */
  bash(manifest: string, lines: string | readonly string[], extra?: string[]): Promise<RunResult>;
  /** Sign a manifest built from these fields (version bumped each call). */
  sign(fields: Record<string, unknown>): string;
  /** Every audit event written so far. */
  events(): Record<string, unknown>[];
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A fresh CORDON_HOME with a trusted signing key, a fake home with secrets, and the probe. */
export function sandboxEnv(name: string): SandboxEnv {
  const dir = mkdtempSync(join(tmpdir(), `cordon-${name}-`));
  const home = join(dir, 'home');
  const cordonHome = join(home, '.cordon');
  mkdirSync(home, { recursive: true });
  const env: Record<string, string> = {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    CORDON_HOME: cordonHome,
    LANG: 'C.UTF-8',
    SECRET_TOKEN: 'parent-secret-do-not-pass',
    AWS_SECRET_ACCESS_KEY: 'parent-aws-secret',
    // Each environment's own daemon (started on demand by its first client), gone when idle.
    XDG_RUNTIME_DIR: join(dir, 'run'),
    CORDON_DAEMON_IDLE_SECONDS: '5',
  };
  const probe = join(dir, 'bin', 'probe');
  mkdirSync(join(dir, 'bin'));
  const cc = spawnSync('gcc', ['-O1', '-o', probe, join(ROOT, 'test/sandbox/probe.c')], {
    encoding: 'utf8',
  });
  expect(cc.status, cc.stderr).toBe(0);
  const sync = (args: string[]): void => {
    const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  };
  sync(['init']);
  // Enforcement refuses to run without the organisation's guardrails unless the policy
  // directory allows it. These sessions test the sandbox, not guardrails (which would add
  // Cedar's start-up to every run): the policy directory says so, and every launch event
  // names it. Guardrails in force are tested in run.test.ts.
  writeFileSync(
    join(cordonHome, 'policy', 'enforcement.json'),
    JSON.stringify({ allowWithoutGuardrails: true }),
  );
  sync(['keys', 'generate', '--name', 'sec']);
  sync([
    'keys',
    'trust',
    '--name',
    'sec',
    '--pub',
    join(cordonHome, 'policy/keys/sec.pub'),
    '--purpose',
    'manifest',
  ]);
  let version = 0;
  return {
    dir,
    home,
    cordonHome,
    env,
    probe,
    cordon: (args, opts = {}) => runCli(args, { env, ...opts }),
    bash: (manifest, lines, extra = []) =>
      runCli(
        [
          'run',
          '--manifest',
          manifest,
          ...extra,
          '--',
          'bash',
          '-c',
          typeof lines === 'string' ? lines : lines.join('\n'),
        ],
        { env },
      ),
    sign(fields) {
      version++;
      const file = join(dir, `m${version}.json`);
      writeFileSync(
        file,
        JSON.stringify(
          validManifest({
            agentName: 'sandboxed',
            version: `1.0.${version}`,
            notAfter: SOON,
            ...fields,
          }),
        ),
      );
      sync(['manifest', 'sign', file, '--key', join(cordonHome, 'policy/keys/sec.key')]);
      return join(dir, `m${version}.signed.json`);
    },
    events() {
      const segs = join(cordonHome, 'state/audit/segments');
      const out: Record<string, unknown>[] = [];
      for (const f of readdirSync(segs).sort()) {
        for (const line of readFileSync(join(segs, f), 'utf8').split('\n')) {
          if (line === '') continue;
          out.push((JSON.parse(line) as { event: Record<string, unknown> }).event);
        }
      }
      return out;
    },
  };
}

/** Run the CLI (or, with `script`, a script of its own given as args[0]) as a process. */
export function runCli(args: string[], opts: SpawnOptions, script = false): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, script ? args : [BIN, ...args], {
      ...opts,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Lines `name result` printed by the probe, as a map. */
export function probeResults(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const [k, v] = line.split(' ');
    if (k !== undefined && v !== undefined) out[k] = v;
  }
  return out;
}

/** An agent started under `cordon run` that has printed "ready". */
export interface RunningAgent {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves with `cordon run`'s exit code. */
  readonly closed: Promise<number | null>;
}

/** Start `cordon run --manifest M -- bash -c SCRIPT` and wait until the script prints "ready". */
export async function startAgent(
  env: Record<string, string>,
  manifest: string,
  script: string,
): Promise<RunningAgent> {
  const child = spawn(
    process.execPath,
    [BIN, 'run', '--manifest', manifest, '--', 'bash', '-c', script],
    {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const closed = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve();
    });
    void closed.then(() => reject(new Error(`cordon run exited before "ready": ${err}`)));
  });
  return { child, stdout: () => out, stderr: () => err, closed };
}

/**
 * A policy directory for a session run by another user (`ok` runs the CLI as that user and
 * asserts success): init, permission to run without guardrails (none are installed), and a
 * trusted manifest key named `k`. `owner` owns the permission file when root writes it.
 */
export function initPolicyAs(home: string, ok: (args: string[]) => unknown, owner?: number): void {
  ok(['init']);
  const enforcement = join(home, '.cordon/policy/enforcement.json');
  writeFileSync(enforcement, JSON.stringify({ allowWithoutGuardrails: true }));
  if (owner !== undefined) chownSync(enforcement, owner, owner);
  ok(['keys', 'generate', '--name', 'k']);
  ok([
    'keys',
    'trust',
    '--name',
    'k',
    '--pub',
    join(home, '.cordon/policy/keys/k.pub'),
    '--purpose',
    'manifest',
  ]);
}

/** A session as `cordon ps --json` lists it (the endpoint service's registry). */
export interface ListedSession {
  readonly id: string;
  readonly agent: string;
  readonly clientPid: number;
  readonly sandboxPid?: number;
  readonly state: string;
  readonly bytesOut: number;
  readonly command: string[];
}

/** The sessions the environment's endpoint service lists (`cordon ps --json`). */
export function listSessions(env: Record<string, string>): ListedSession[] {
  const r = spawnSync(process.execPath, [BIN, 'ps', '--json'], { env, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { sessions: ListedSession[] }).sessions;
}

/** Wait until the service lists exactly one session whose sandbox pid is known, and return it. */
export async function runningSession(env: Record<string, string>): Promise<ListedSession> {
  const end = Date.now() + 10_000;
  for (;;) {
    const all = listSessions(env);
    const [one] = all;
    if (all.length === 1 && one?.sandboxPid !== undefined) return one;
    if (Date.now() > end)
      throw new Error(`no single session with a sandbox: ${JSON.stringify(all)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The session egress directories under the environment's runtime directory: `<runtime>/s/*`,
 * where `<runtime>` is `$XDG_RUNTIME_DIR/cordon` or, for a daemon of a non-default state
 * directory started on demand, the directory of its socket (`$XDG_RUNTIME_DIR/cordon/d.*`).
 */
export function egressDirs(env: Record<string, string>): string[] {
  const top = join(env['XDG_RUNTIME_DIR'] ?? '', 'cordon');
  if (!existsSync(top)) return [];
  const runtimes = [
    top,
    ...readdirSync(top)
      .filter((n) => n.startsWith('d.'))
      .map((n) => join(top, n)),
  ];
  return runtimes.flatMap((r) => {
    const s = join(r, 's');
    return existsSync(s) ? readdirSync(s).map((n) => join(s, n)) : [];
  });
}

/** The egress directory of one session (named by the first 64 bits of its id), if present. */
export function egressDirOf(env: Record<string, string>, id: string): string | undefined {
  const name = id.replaceAll('-', '').slice(0, 16);
  return egressDirs(env).find((d) => d.endsWith(`/s/${name}`));
}

/**
 * What a session can leave on disk: its record in the service's registry
 * (`<state>/daemon/sessions`) and its egress socket directory.
 */
export function sessionLeftovers(env: Record<string, string>, cordonHome: string): string[] {
  const registry = join(cordonHome, 'state/daemon/sessions');
  return [
    ...(existsSync(registry) ? readdirSync(registry).map((f) => join(registry, f)) : []),
    ...egressDirs(env),
  ];
}

/**
 * Remove an environment: its on-demand daemon is stopped first, so that nothing it still writes
 * (a checkpoint as it goes idle) races the removal.
 */
export function removeEnv(s: SandboxEnv): void {
  spawnSync(process.execPath, [BIN, 'daemon', 'stop'], { env: s.env, stdio: 'ignore' });
  rmSync(s.dir, { recursive: true, force: true });
}
