import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive, startTime } from '../../src/sandbox/linux/procfs.js';
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

const runDirsOf = (session: string): string[] =>
  readdirSync(tmpdir()).filter((n) => n.startsWith(`cordon-run-${session}-`));

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

/** Terminate recorded, and nothing left: no pid in the lock, no temporary or reserve file, no run dir. */
function endedCleanly(r: { copy: string; mine: Ev[]; session: string }): void {
  expect(r.mine.some((e) => e['class_uid'] === 1007 && e['activity_name'] === 'Terminate')).toBe(
    true,
  );
  // The lock file stays (an flock); a clean close leaves no writer's pid in it.
  const lock = join(r.copy, 'audit/writer.lock');
  expect(existsSync(lock) ? readFileSync(lock, 'utf8') : '').toBe('');
  expect(readdirSync(join(r.copy, 'sessions'))).toEqual([]);
  expect(readdirSync(join(r.copy, 'audit')).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  expect(runDirsOf(r.session)).toEqual([]);
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
  it('the next cordon run removes the record and run directory of a SIGKILLed session, and nothing of a live one', async () => {
    const a = await startAgent(s.env, manifest, 'echo ready; sleep 600');
    const sessions = join(s.cordonHome, 'state/sessions');
    await until(() => readdirSync(sessions).some((n) => n.endsWith('.json')), 'the record');
    const recFile = readdirSync(sessions).find((n) => n.endsWith('.json')) ?? '';
    const rec = JSON.parse(readFileSync(join(sessions, recFile), 'utf8')) as {
      id: string;
      runDir: string;
      sandboxPid: number;
      sandboxStart: string;
    };
    a.child.kill('SIGKILL');
    await a.closed;
    await until(() => !isAlive(rec.sandboxPid, rec.sandboxStart), 'the sandbox to die with it');
    expect(existsSync(rec.runDir)).toBe(true);
    expect(existsSync(join(sessions, recFile))).toBe(true);

    // A session whose process is alive (this test process stands in for its cordon run).
    const liveId = '00000000-0000-4000-8000-000000000001';
    const liveDir = join(tmpdir(), `cordon-run-${liveId}-abcdef`);
    mkdirSync(liveDir, { recursive: true });
    writeFileSync(join(liveDir, 'owner'), `${process.pid} ${startTime(process.pid) ?? ''}\n`);
    writeFileSync(
      join(sessions, `${liveId}.json`),
      JSON.stringify({
        ...rec,
        id: liveId,
        runDir: liveDir,
        cordonPid: process.pid,
        cordonStart: startTime(process.pid),
        sandboxPid: undefined,
        sandboxStart: undefined,
      }),
    );
    try {
      const r = await s.bash(manifest, 'exit 0');
      expect(r.code, r.stderr).toBe(0);
      expect(existsSync(rec.runDir)).toBe(false);
      expect(existsSync(join(sessions, recFile))).toBe(false);
      // Its reserve and any temporary file went too; the live session keeps its record.
      expect(readdirSync(sessions)).toEqual([`${liveId}.json`]);
      expect(existsSync(liveDir)).toBe(true);
    } finally {
      rmSync(liveDir, { recursive: true, force: true });
      rmSync(join(sessions, `${liveId}.json`), { force: true });
    }
  }, 120_000);
});
