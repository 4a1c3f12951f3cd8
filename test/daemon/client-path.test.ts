import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, ROOT, sandboxEnv } from '../sandbox/harness.js';
import { userSocket } from '../../src/daemon/paths.js';
import { defaultDirs } from '../../src/env.js';

/**
 * The modules a CLI verb loads, from a resolve hook that names every module of Cordon and every
 * package file: what a thin client (`cordon run`, `cordon ps`) pays for at each start.
 */
function loaded(args: string[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'cordon-client-path-'));
  const hook = join(dir, 'hook.mjs');
  writeFileSync(
    hook,
    `import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(\`
export async function resolve(s, c, n) { const r = await n(s, c); process.stderr.write('LOAD ' + r.url + '\\\\n'); return r; }
\`));`,
  );
  const r = spawnSync(
    process.execPath,
    ['--import', hook, join(ROOT, 'dist/cli/main.js'), ...args],
    {
      encoding: 'utf8',
      env: {
        PATH: '/usr/bin:/bin',
        HOME: dir,
        CORDON_HOME: join(dir, 'home'),
        XDG_RUNTIME_DIR: join(dir, 'run'),
        // No daemon: the verb stops where it would ask one, after loading all it needs.
        CORDON_NO_AUTOSTART: '1',
      },
    },
  );
  return r.stderr
    .split('\n')
    .filter((l) => l.startsWith('LOAD '))
    .map((l) => l.slice(5));
}

describe('thin clients load only what they need', () => {
  it('cordon run, cordon ps and cordon daemon status load no policy engine, no Cedar, no proxy and no zod classic', () => {
    expect(existsSync(join(ROOT, 'dist/cli/main.js')), 'npm run build first').toBe(true);
    const manifest = join(mkdtempSync(join(tmpdir(), 'cordon-client-m-')), 'm.json');
    writeFileSync(manifest, '{}');
    for (const args of [
      ['run', '--manifest', manifest, '--', '/usr/bin/true'],
      ['ps'],
      ['daemon', 'status'],
    ]) {
      const mods = loaded(args);
      // The precondition: the hook saw the CLI and the daemon client.
      expect(mods.some((m) => m.endsWith('/dist/cli/main.js'))).toBe(true);
      expect(mods.some((m) => m.endsWith('/dist/daemon/client.js'))).toBe(true);
      const heavy = mods.filter((m) =>
        /\/dist\/(policy\/(pdp|compile|guardrails)|egress\/|manifest\/(schema|verify|templates)|audit\/log|cedar)|cedar-wasm|\/zod\/v4\/classic\//.test(
          m,
        ),
      );
      expect(heavy, `${args[0]} loads ${heavy.join(', ')}`).toEqual([]);
    }
  });
});

describe('which service a client uses', () => {
  it('on a machine with a system service, CORDON_SOCKET cannot send clients to another daemon', async () => {
    const { daemonTarget } = await import('../../src/daemon/client.js');
    const dir = mkdtempSync(join(tmpdir(), 'cordon-target-'));
    const system = join(dir, 'system.sock');
    const dirs = { policyDir: join(dir, 'p'), stateDir: join(dir, 's') };
    // No system service: CORDON_SOCKET names the daemon (tests, a second service).
    expect(
      daemonTarget({ CORDON_SOCKET: join(dir, 'mine.sock') }, dir, dirs, system),
    ).toMatchObject({ via: 'CORDON_SOCKET', socket: join(dir, 'mine.sock') });
    // With one, every client uses it: a daemon of the user's own (its own trust store) is refused.
    writeFileSync(system, '');
    let code: string | undefined;
    try {
      daemonTarget({ CORDON_SOCKET: join(dir, 'mine.sock') }, dir, dirs, system);
    } catch (e) {
      code = (e as { code?: string }).code;
    }
    expect(code).toBe('DAEMON_OPTION_FORBIDDEN');
    expect(daemonTarget({ CORDON_SOCKET: system }, dir, dirs, system)).toMatchObject({
      via: 'CORDON_SOCKET',
      socket: system,
    });
    expect(daemonTarget({}, dir, dirs, system)).toMatchObject({ via: 'system', socket: system });
  });
});

describe('an on-demand daemon whose log is removed', () => {
  it('stops and says why, and the next client starts one on a new log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cordon-removed-log-'));
    const env = {
      PATH: '/usr/bin:/bin',
      HOME: dir,
      CORDON_HOME: join(dir, 'home'),
      XDG_RUNTIME_DIR: join(dir, 'run'),
      // Not idle for the length of the test: what stops it must be the removal.
      CORDON_DAEMON_IDLE_SECONDS: '600',
    };
    const cordon = (args: string[]): string => {
      const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    };
    // `cordon ps` starts the daemon on demand; `daemon status` names its pid.
    const status = (): string => {
      cordon(['ps']);
      return cordon(['daemon', 'status']);
    };
    try {
      cordon(['init']);
      const pid = Number(/pid (\d+)/.exec(status())?.[1]);
      expect(pid).toBeGreaterThan(0);
      expect(existsSync(`/proc/${pid}`)).toBe(true);
      rmSync(join(dir, 'home', 'state'), { recursive: true, force: true });
      const deadline = Date.now() + 10_000;
      while (existsSync(`/proc/${pid}`) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      expect(existsSync(`/proc/${pid}`)).toBe(false);
      const log = readdirSync(join(dir, 'run', 'cordon'))
        .map((d) => join(dir, 'run', 'cordon', d, 'daemon.log'))
        .filter((f) => existsSync(f))
        .map((f) => readFileSync(f, 'utf8'))
        .join('');
      expect(log).toMatch(/stopping: its audit log .* was removed/);
      // A client then finds no daemon, starts one, and it has a log again.
      const again = Number(/pid (\d+)/.exec(status())?.[1]);
      expect(again).not.toBe(pid);
      expect(existsSync(join(dir, 'home', 'state', 'audit'))).toBe(true);
      spawnSync(process.execPath, [BIN, 'daemon', 'stop'], { env });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('cordon run sends its open request first; on a socket nobody answers it starts a daemon and sends it once more', async () => {
    const e = sandboxEnv('stale-socket');
    try {
      const m = e.sign({ commandsAllowed: ['/usr/bin/true'] });
      const socket = userSocket(e.env, e.home, defaultDirs(e.env, e.home));
      // What a daemon killed with SIGKILL leaves: a socket file nobody listens on.
      mkdirSync(dirname(socket), { recursive: true, mode: 0o700 });
      const killed = spawnSync(
        process.execPath,
        [
          '-e',
          `require('net').createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, 'SIGKILL'))`,
        ],
        { encoding: 'utf8' },
      );
      expect(killed.signal).toBe('SIGKILL');
      expect(statSync(socket).isSocket()).toBe(true);
      const r = await e.cordon(['run', '--manifest', m, '--', '/usr/bin/true']);
      expect(r.code, r.stderr).toBe(0);
      // One session opened, launched and closed: the request that found nobody was not acted on.
      const launches = e
        .events()
        .filter((x) => x['class_uid'] === 1007 && x['activity_id'] === 1)
        .map((x) => (x['actor'] as { session?: { uid?: string } }).session?.uid);
      expect(launches).toHaveLength(1);
      // The daemon it started serves the very socket that was left behind.
      const status = await e.cordon(['daemon', 'status']);
      expect(status.stdout).toContain(socket);
      // And a daemon answering takes the request at once (the next run, same daemon).
      const again = await e.cordon(['run', '--manifest', m, '--', '/usr/bin/true']);
      expect(again.code, again.stderr).toBe(0);
    } finally {
      spawnSync(process.execPath, [BIN, 'daemon', 'stop'], { env: e.env });
      rmSync(e.dir, { recursive: true, force: true });
    }
  }, 60_000);
});
