import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OCSF_DIR, OcsfSchema } from '../audit/ocsf-schema.js';
import { startUpstreams, type Upstreams } from '../egress/harness.js';
import { processTree } from '../../src/sandbox/linux/procfs.js';
import { SANDBOX_HELPER } from '../../src/sandbox/linux/plan.js';
import { sandboxEnv, startAgent, type RunningAgent, type SandboxEnv } from './harness.js';

let s: SandboxEnv;
let up: Upstreams;
let manifest: string;

beforeAll(async () => {
  s = sandboxEnv('bridge');
  up = await startUpstreams(s.dir);
  mkdirSync(join(s.home, 'Work'));
  manifest = s.sign({
    writePaths: ['~/Work/**'],
    networkScopes: [`http://127.0.0.1:${up.httpPort}`],
    commandsAllowed: ['/usr/bin/bash', '/usr/bin/curl', '/usr/bin/sleep'],
  });
});
afterAll(async () => {
  await up.close();
  rmSync(s.dir, { recursive: true, force: true });
});

async function until<T>(get: () => T | undefined, what: string, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The egress bridge: the sandbox init's child that runs Cordon's helper, seen from the host. */
function bridgePid(): number | undefined {
  // The sandbox's pid as its `cordon run` told the endpoint service (its session registry).
  const dir = join(s.cordonHome, 'state', 'daemon', 'sessions');
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
  const session =
    files[0] === undefined
      ? undefined
      : (JSON.parse(readFileSync(join(dir, files[0]), 'utf8')) as { sandboxPid?: number });
  if (session?.sandboxPid === undefined) return undefined;
  return processTree(session.sandboxPid).find(
    (p) => p.ppid === session.sandboxPid && p.argv[0] === SANDBOX_HELPER,
  )?.pid;
}

/** An agent that curls the granted upstream each time a numbered go-file appears in ~/Work. */
function curlOnCue(rounds: number): Promise<RunningAgent> {
  const url = `http://127.0.0.1:${up.httpPort}/`;
  return startAgent(
    s.env,
    manifest,
    [
      `curl -s -o /dev/null -w 'before=%{http_code}\\n' ${url}`,
      'echo ready',
      `for i in ${Array.from({ length: rounds }, (_, k) => k + 1).join(' ')}; do`,
      '  while [ ! -e ~/Work/go-$i ]; do sleep 0.05; done',
      `  curl -s -m 20 -o /dev/null -w "after-$i=%{http_code}\\n" ${url}`,
      'done',
    ].join('\n'),
  );
}

describe('the egress bridge', () => {
  it('is restarted when killed from outside: the agent keeps its network and the death is recorded', async () => {
    const a = await curlOnCue(1);
    expect(a.stdout()).toContain('before=200');
    const first = await until(bridgePid, 'the bridge');
    process.kill(first, 'SIGKILL');
    writeFileSync(join(s.home, 'Work/go-1'), '');
    expect(await a.closed, a.stderr()).toBe(0);
    expect(a.stdout()).toContain('after-1=200');
    expect(a.stderr()).toMatch(/egress bridge was killed by signal 9; restarted \(1 of 5\)/);
    const restarted = s.events().filter((e) => e['status_code'] === 'SANDBOX_BRIDGE_RESTARTED');
    expect(restarted).toHaveLength(1);
    expect(restarted[0]?.['status_detail']).toMatch(/killed by signal 9/);
    const schema = new OcsfSchema(OCSF_DIR);
    expect(schema.validate(restarted[0] ?? {})).toEqual([]);
  });

  it('cannot be killed by the agent (another Landlock domain), so its network stays up', async () => {
    const before = s.events().filter((e) => e['status_code'] === 'SANDBOX_BRIDGE_RESTARTED');
    const url = `http://127.0.0.1:${up.httpPort}/`;
    const r = await s.bash(manifest, [
      // The bridge is init's first child: pid 2 inside the sandbox.
      'read -r -d \'\' first < /proc/2/cmdline; echo "pid2=$first"',
      'kill -9 2; echo kill_bridge=$?',
      'kill -STOP 2; echo stop_bridge=$?',
      `curl -s -m 20 -o /dev/null -w 'after=%{http_code}\\n' ${url}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`pid2=${SANDBOX_HELPER}`);
    expect(r.stdout).toContain('kill_bridge=1');
    expect(r.stdout).toContain('stop_bridge=1');
    expect(r.stdout).toContain('after=200');
    const after = s.events().filter((e) => e['status_code'] === 'SANDBOX_BRIDGE_RESTARTED');
    expect(after.length).toBe(before.length);
  });

  it('ends the session (125) with SANDBOX_BRIDGE_FAILED when the bridge keeps dying', async () => {
    rmSync(join(s.home, 'Work/go-1'), { force: true });
    const a = await curlOnCue(1);
    let last = -1;
    // Five restarts are allowed; the sixth death ends the session.
    for (let k = 0; k < 6; k++) {
      const pid = await until(
        () => {
          const p = bridgePid();
          return p !== undefined && p !== last ? p : undefined;
        },
        `bridge ${k + 1}`,
      );
      process.kill(pid, 'SIGKILL');
      last = pid;
    }
    expect(await a.closed).toBe(125);
    expect(a.stdout()).not.toContain('after-1');
    expect(a.stderr()).toMatch(
      /egress bridge was killed by signal 9 after 5 restarts; the session was ended/,
    );
    const failed = s.events().filter((e) => e['status_code'] === 'SANDBOX_BRIDGE_FAILED');
    expect(failed).toHaveLength(1);
    expect(failed[0]?.['disposition']).toBe('Blocked');
    expect(new OcsfSchema(OCSF_DIR).validate(failed[0] ?? {})).toEqual([]);
  });
});
