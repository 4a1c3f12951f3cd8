import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from '../../src/sandbox/linux/procfs.js';
import { userSocket } from '../../src/daemon/paths.js';
import { defaultDirs } from '../../src/env.js';
import { startUpstreams, type Upstreams } from '../egress/harness.js';
import { BIN, sandboxEnv, startAgent, type SandboxEnv } from './harness.js';

let s: SandboxEnv;
let up: Upstreams;
let manifest: string;

beforeAll(async () => {
  s = sandboxEnv('full-disk');
  up = await startUpstreams(s.dir);
  mkdirSync(join(s.home, 'Work/out'), { recursive: true });
  manifest = s.sign({
    readPaths: ['~/Work/**'],
    writePaths: ['~/Work/out/**'],
    networkScopes: [`http://127.0.0.1:${up.httpPort}`],
    commandsAllowed: ['/usr/bin/bash', '/usr/bin/curl', '/usr/bin/sleep', '/usr/bin/cat'],
  });
});
afterAll(async () => {
  await up.close();
  rmSync(s.dir, { recursive: true, force: true });
});

async function until(
  cond: () => boolean,
  what: string,
  ms = 90_000,
  more: () => string = () => '',
): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} ${more()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

type Ev = Record<string, unknown>;

function eventsIn(stateDir: string): Ev[] {
  const segs = join(stateDir, 'audit/segments');
  const out: Ev[] = [];
  for (const f of readdirSync(segs).sort())
    for (const line of readFileSync(join(segs, f), 'utf8').split('\n'))
      if (line !== '') out.push((JSON.parse(line) as { event: Ev }).event);
  return out;
}

/** The endpoint service's socket for this environment (removed once it has stopped). */
function daemonSocket(): string {
  return userSocket(s.env, s.home, defaultDirs(s.env, s.home));
}

/** Egress socket directories the service has for sessions (none once they ended). */
const egressDirs = (): string[] => {
  const dir = join(s.env['XDG_RUNTIME_DIR'] ?? '', 'cordon', 's');
  return existsSync(dir) ? readdirSync(dir) : [];
};

/**
 * Run an agent under `cordon run` with the state directory on a 4 MiB tmpfs, fill it while the
 * agent makes requests, and (with `free`) free it again before the agent exits. Returns the
 * run's stderr and the state directory as it was left, copied out.
 */
async function onFullDisk(
  name: string,
  free: boolean,
): Promise<{ stderr: string; copy: string; mine: Ev[]; session: string }> {
  {
    for (const tool of ['unshare', 'dd', 'cp'])
      expect(spawnSync('which', [tool]).status, `${tool} is needed`).toBe(0);
    const ctl = join(s.dir, `ctl-${name}`);
    const copy = join(s.dir, `state-after-${name}`);
    mkdirSync(ctl);
    mkdirSync(copy);
    const state = join(s.cordonHome, 'state');
    mkdirSync(state, { recursive: true });
    const codes = join(s.home, `Work/out/${name}-codes`);
    const stop = join(s.home, `Work/out/${name}-stop`);
    // The agent: one request every 200 ms, each status written where the test can read it.
    const agent = [
      `for ((i = 0; i < 1500; i++)); do`,
      `  c=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:${up.httpPort}/)`,
      `  echo "$c" >> ${codes}`,
      `  [ -e ${stop} ] && exit 0`,
      `  sleep 0.2`,
      `done`,
      `exit 3`,
    ].join('\n');
    // A small tmpfs holds the state directory, in a private mount namespace; a filler in the
    // same namespace fills it and frees it when the test says so; what is left on it at the end
    // is copied out for the checks.
    const script = [
      `mount -t tmpfs -o size=4m tmpfs "$STATE" || exit 97`,
      `( while [ ! -e "$CTL/fill" ]; do sleep 0.05; done`,
      `  dd if=/dev/zero of="$STATE/ballast" bs=16k 2>/dev/null`,
      `  touch "$CTL/filled"`,
      `  while [ ! -e "$CTL/free" ]; do sleep 0.05; done`,
      `  rm -f "$STATE/ballast"; touch "$CTL/freed" ) &`,
      `filler=$!`,
      `"$NODE" "$BIN" run --manifest "$MANIFEST" -- bash -c "$AGENT"`,
      `rc=$?`,
      // The endpoint service (started in this namespace by cordon run) closes the log first.
      `"$NODE" "$BIN" daemon stop >/dev/null`,
      `while [ -e "$RUNTIME" ]; do sleep 0.05; done`,
      `kill $filler 2>/dev/null`,
      `rm -f "$STATE/ballast"`,
      `cp -a "$STATE/." "$COPY/"`,
      `exit $rc`,
    ].join('\n');
    const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], {
      env: {
        ...s.env,
        STATE: state,
        CTL: ctl,
        COPY: copy,
        NODE: process.execPath,
        BIN,
        MANIFEST: manifest,
        AGENT: agent,
        RUNTIME: daemonSocket(),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const closed = new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    const lines = (): string[] =>
      existsSync(codes) ? readFileSync(codes, 'utf8').split('\n').filter(Boolean) : [];

    const seen = (): string => `codes: ${lines().join(' ')}; stderr: ${stderr}`;
    await until(() => lines().includes('200'), 'a first allowed request', 90_000, seen);
    writeFileSync(join(ctl, 'fill'), '');
    await until(() => existsSync(join(ctl, 'filled')), 'the disk to fill');
    const atFull = lines().length;
    // Egress is denied while nothing can be recorded; the agent keeps running.
    await until(
      () => lines().slice(atFull).includes('403'),
      'a denial on the full disk',
      90_000,
      seen,
    );
    await until(
      () => /egress is denied until it can be written/.test(stderr),
      'the reason',
      90_000,
      seen,
    );
    if (free) {
      writeFileSync(join(ctl, 'free'), '');
      await until(() => existsSync(join(ctl, 'freed')), 'space to come back');
      const atFree = lines().length;
      await until(
        () => lines().slice(atFree).includes('200'),
        'egress to work again',
        90_000,
        seen,
      );
    }
    writeFileSync(stop, '');
    const code = await closed;
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/ENOSPC|no space/i);

    const events = eventsIn(copy);
    const launch = events.filter((e) => e['status_code'] === 'SANDBOX_STARTED').at(-1);
    const session = (launch?.['actor'] as { session: { uid: string } }).session.uid;
    const mine = events.filter(
      (e) => (e['actor'] as { session?: { uid: string } }).session?.uid === session,
    );
    return { stderr, copy, mine, session };
  }
}

/**
 * Terminate recorded, and nothing left: no pid in the lock, no session record, reserve or
 * temporary file of the service, no egress directory.
 */
function endedCleanly(r: { copy: string; mine: Ev[]; session: string }): void {
  expect(r.mine.some((e) => e['class_uid'] === 1007 && e['activity_name'] === 'Terminate')).toBe(
    true,
  );
  // The lock file stays (an flock); a clean close leaves no writer's pid in it.
  const lock = join(r.copy, 'audit/writer.lock');
  expect(existsSync(lock) ? readFileSync(lock, 'utf8') : '').toBe('');
  expect(readdirSync(join(r.copy, 'daemon', 'sessions'))).toEqual([]);
  expect(readdirSync(join(r.copy, 'audit')).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  expect(egressDirs()).toEqual([]);
}

describe('cordon run on a full disk', () => {
  it('the agent keeps running with egress denied and told why; once space is back the failure is recorded and egress works; at exit Terminate is recorded and nothing is left', async () => {
    const { stderr, copy, mine, session } = await onFullDisk('freed', true);
    expect(stderr).toMatch(/egress restored/);
    // The failure, recorded once writes worked again.
    const resumed = mine.find((e) => e['class_uid'] === 1008 && e['activity_id'] === 9);
    expect(resumed).toMatchObject({ status_code: 'WRITES_FAILED' });
    expect(JSON.stringify(resumed)).toMatch(/ENOSPC/);
    endedCleanly({ copy, mine, session });
  }, 180_000);

  it('still full when the agent exits: Terminate is written into the space the session reserved, and nothing is left', async () => {
    const r = await onFullDisk('still-full', false);
    expect(r.stderr).toMatch(/retrying with the space reserved for it/);
    endedCleanly(r);
  }, 180_000);
});

describe('sessions killed outright', () => {
  it('the service ends the session of a SIGKILLed cordon run (its record, reserve and egress directory go, and it says so), and nothing of a live one', async () => {
    const live = await startAgent(s.env, manifest, 'echo ready; sleep 600');
    const killed = await startAgent(s.env, manifest, 'echo ready; sleep 600');
    const registry = join(s.cordonHome, 'state', 'daemon', 'sessions');
    const records = (): string[] => readdirSync(registry).filter((n) => n.endsWith('.json'));
    await until(() => records().length === 2, 'both records');
    const read = (
      n: string,
    ): { id: string; clientPid: number; sandboxPid?: number; sandboxStart?: string } =>
      JSON.parse(readFileSync(join(registry, n), 'utf8')) as { id: string; clientPid: number };
    const gone = records()
      .map(read)
      .find((r) => r.clientPid === killed.child.pid);
    expect(gone, 'the killed session is in the registry').toBeDefined();
    await until(() => read(`${gone!.id}.json`).sandboxPid !== undefined, 'its sandbox pid');
    const sandbox = read(`${gone!.id}.json`);
    killed.child.kill('SIGKILL');
    await killed.closed;
    // The sandbox dies with its cordon run; the service notices the client is gone.
    await until(() => !isAlive(sandbox.sandboxPid!, sandbox.sandboxStart), 'the sandbox to die');
    await until(() => !existsSync(join(registry, `${gone!.id}.json`)), 'the record to go');
    expect(existsSync(join(registry, `.${gone!.id}.reserve`))).toBe(false);
    expect(egressDirs()).toHaveLength(1);
    const ended = s
      .events()
      .filter(
        (e) =>
          e['class_uid'] === 1008 &&
          (e['actor'] as { session?: { uid?: string } }).session?.uid === gone!.id,
      );
    expect(JSON.stringify(ended)).toMatch(/exited without closing it/);
    // The live session is untouched: its record stays and it still runs.
    expect(records()).toHaveLength(1);
    expect(live.child.exitCode).toBe(null);
    live.child.kill('SIGTERM');
    expect(await live.closed).not.toBe(null);
    await until(() => records().length === 0, 'the live session to end too');
  }, 120_000);
});
