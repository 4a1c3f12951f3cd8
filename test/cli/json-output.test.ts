import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { processIo } from '../../src/cli/context.js';
import { userSocket } from '../../src/daemon/paths.js';
import { defaultDirs } from '../../src/env.js';
import {
  request,
  startDaemonProcess,
  stopDaemonProcess,
  type DaemonProcess,
} from '../daemon/harness.js';
import { tempDir } from '../helpers.js';
import { cli, type CliResult } from './harness.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));

/** Every command path (`audit tail`) whose command takes `--json`. */
function verbsWithJson(cmd: Command, prefix: string[] = []): string[] {
  return cmd.commands.flatMap((c) => {
    const path = [...prefix, c.name()];
    const own = c.options.some((o) => o.long === '--json') ? [path.join(' ')] : [];
    return [...own, ...verbsWithJson(c, path)];
  });
}

let root: string;
let cordonHome: string;
let unsigned: string;
let signed: string;
let linty: string;
/** The endpoint service of `cordonHome`, and a second one that `daemon stop` stops. */
let daemon: DaemonProcess | undefined;
let doomed: DaemonProcess | undefined;
const home = '/home/alice';
const run = (args: string[]): Promise<CliResult> => cli(args, { home, cordonHome });
const emptyState = (): string => join(tempDir(), 'state');

// One policy directory, manifest and log for all cases (tempDir() would not outlive a test).
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'cordon-json-'));
  cordonHome = join(root, 'cordon');
  expect((await run(['init'])).code).toBe(0);
  // Sessions here need no guardrails (none are installed): the policy directory says so.
  writeFileSync(
    join(cordonHome, 'policy', 'enforcement.json'),
    JSON.stringify({ allowWithoutGuardrails: true }),
  );
  // A witness, so that `audit verify` can prove the log complete.
  writeFileSync(
    join(cordonHome, 'policy', 'audit.json'),
    JSON.stringify({
      apiVersion: 'cordon.dev/v1',
      kind: 'AuditConfig',
      witness: { path: join(root, 'witness.ndjson') },
    }),
  );
  unsigned = join(root, 'fin.json');
  const made = await run([
    'manifest',
    'new',
    '--template',
    'finance-analyst',
    '--agent',
    'fin',
    '--out',
    unsigned,
  ]);
  expect(made.code, made.stderr).toBe(0);
  const s = await run([
    'manifest',
    'sign',
    unsigned,
    '--key',
    join(cordonHome, 'policy/keys/org.key'),
  ]);
  expect(s.code, s.stderr).toBe(0);
  signed = unsigned.replace(/\.json$/, '.signed.json');
  // A manifest with a lint error: a grant of the whole file system.
  linty = join(root, 'linty.json');
  const m = JSON.parse(readFileSync(unsigned, 'utf8')) as Record<string, unknown>;
  writeFileSync(linty, JSON.stringify({ ...m, readPaths: ['/'] }));
  // The service the clients use (where they would start one on demand), running throughout.
  const env = { CORDON_HOME: cordonHome };
  daemon = await startDaemonProcess(userSocket(env, home, defaultDirs(env, home)), [], {
    env: { PATH: '/usr/bin:/bin', HOME: home, LANG: 'C.UTF-8', CORDON_HOME: cordonHome },
  });
  // Another service (a state directory of its own) for `daemon stop` to stop.
  doomed = await startDaemonProcess(join(root, 'doomed', 'daemon.sock'), [], {
    env: {
      PATH: '/usr/bin:/bin',
      HOME: home,
      LANG: 'C.UTF-8',
      CORDON_HOME: cordonHome,
      CORDON_STATE_DIR: join(root, 'doomed-state'),
    },
  });
  expect((await run(['audit', 'emit-test', '--count', '20'])).code).toBe(0);
});

afterAll(async () => {
  await stopDaemonProcess(doomed);
  await stopDaemonProcess(daemon);
  rmSync(root, { recursive: true, force: true });
});

type Args = () => string[];
/**
 * For each verb with `--json`: a command line that succeeds, and one that fails for a reason of
 * the verb's own (not a usage error; those are checked for every verb below) where it has one.
 */
const CASES: Record<string, { ok: Args; fail?: Args; failCode?: string }> = {
  init: {
    ok: () => ['init', join(tempDir(), 'p'), '--json'],
    fail: () => ['init', join(tempDir(), 'p'), '--json', '--trust', 'x'],
    failCode: 'USAGE',
  },
  'manifest lint': {
    ok: () => ['manifest', 'lint', unsigned, '--json'],
    fail: () => ['manifest', 'lint', linty, '--json'],
    failCode: 'MANIFEST_LINT',
  },
  'manifest explain': {
    ok: () => ['manifest', 'explain', signed, '--json'],
    fail: () => ['manifest', 'explain', join(root, 'missing.json'), '--json'],
    failCode: 'FILE_NOT_FOUND',
  },
  'manifest sign': {
    ok: () => {
      const copy = join(tempDir(), 'm.json');
      writeFileSync(copy, readFileSync(unsigned));
      return ['manifest', 'sign', copy, '--key', join(cordonHome, 'policy/keys/org.key'), '--json'];
    },
    fail: () => ['manifest', 'sign', unsigned, '--key', join(root, 'no.key'), '--json'],
    failCode: 'FILE_NOT_FOUND',
  },
  'manifest verify': {
    ok: () => ['manifest', 'verify', signed, '--no-record', '--json'],
    fail: () => ['manifest', 'verify', unsigned, '--json'],
    failCode: 'MANIFEST_UNSIGNED',
  },
  check: {
    ok: () => [
      'check',
      '--manifest',
      unsigned,
      '--lexical',
      '--json',
      'read',
      `${home}/Work/Finance/q3.xlsx`,
    ],
    fail: () => [
      'check',
      '--manifest',
      unsigned,
      '--lexical',
      '--json',
      'read',
      `${home}/.ssh/id_rsa`,
    ],
    failCode: 'MANDATORY_DENY',
  },
  'policy validate': {
    ok: () => ['policy', 'validate', '--json'],
    fail: () => {
      const dir = tempDir();
      writeFileSync(
        join(dir, 'bad.cedar'),
        'forbid (principal, action, resource) when { nonsense };',
      );
      return ['policy', 'validate', dir, '--json'];
    },
  },
  'policy test': {
    ok: () => ['policy', 'test', join(repo, 'policy-tests/finance-analyst.policy.json'), '--json'],
    fail: () => {
      const spec = JSON.parse(
        readFileSync(join(repo, 'policy-tests/finance-analyst.policy.json'), 'utf8'),
      ) as { cases: { expect: string }[] };
      const first = spec.cases[0];
      if (first !== undefined) first.expect = 'deny';
      const file = join(tempDir(), 'wrong.policy.json');
      writeFileSync(file, JSON.stringify(spec));
      return ['policy', 'test', file, '--json'];
    },
    failCode: 'POLICY_TEST_FAILED',
  },
  'keys generate': {
    ok: () => ['keys', 'generate', '--dir', tempDir(), '--name', 'ci', '--json'],
    fail: () => ['keys', 'generate', '--dir', tempDir(), '--name', '../evil', '--json'],
    failCode: 'KEY_NAME_INVALID',
  },
  'keys list': { ok: () => ['keys', 'list', '--json'] },
  'keys trust': {
    ok: () => {
      const dir = tempDir();
      return [
        '--policy-dir',
        join(dir, 'p'),
        'keys',
        'trust',
        '--name',
        'other',
        '--pub',
        join(cordonHome, 'policy/keys/org.pub'),
        '--purpose',
        'manifest',
        '--json',
      ];
    },
    fail: () => [
      'keys',
      'trust',
      '--name',
      'again',
      '--pub',
      join(cordonHome, 'policy/keys/org.pub'),
      '--purpose',
      'manifest',
      '--json',
    ],
    failCode: 'TRUST_KEY_EXISTS',
  },
  'revoke manifest': {
    ok: () => [
      'revoke',
      'manifest',
      `sha256:${'ab'.repeat(32)}`,
      '--reason',
      'test',
      '--key',
      join(cordonHome, 'policy/keys/org.key'),
      '--json',
    ],
    fail: () => [
      'revoke',
      'manifest',
      'sha256:nothex',
      '--reason',
      'test',
      '--key',
      join(cordonHome, 'policy/keys/org.key'),
      '--json',
    ],
    failCode: 'USAGE',
  },
  'revoke key': {
    ok: () => [
      'revoke',
      'key',
      'cd'.repeat(32),
      '--reason',
      'test',
      '--key',
      join(cordonHome, 'policy/keys/org.key'),
      '--json',
    ],
    fail: () => [
      'revoke',
      'key',
      'no-such-key',
      '--reason',
      'test',
      '--key',
      join(cordonHome, 'policy/keys/org.key'),
      '--json',
    ],
    failCode: 'KEY_UNKNOWN',
  },
  'audit verify': {
    ok: () => ['audit', 'verify', '--json'],
    // Intact, but a witness that holds no checkpoint proves nothing about completeness.
    fail: () => {
      const empty = join(tempDir(), 'witness.ndjson');
      writeFileSync(empty, '');
      return ['audit', 'verify', '--witness', empty, '--json'];
    },
    failCode: 'AUDIT_UNPROVEN',
  },
  'audit tail': {
    ok: () => ['audit', 'tail', '-n', '3', '--json'],
    fail: () => ['--state-dir', emptyState(), 'audit', 'tail', '--json'],
    failCode: 'AUDIT_LOG_MISSING',
  },
  'audit status': {
    ok: () => ['audit', 'status', '--json'],
    fail: () => ['--state-dir', emptyState(), 'audit', 'status', '--json'],
    failCode: 'AUDIT_LOG_MISSING',
  },
  'audit emit-test': {
    ok: () => ['audit', 'emit-test', '--count', '3', '--json'],
    fail: () => ['audit', 'emit-test', '--count', '0', '--json'],
    failCode: 'USAGE',
  },
  ps: { ok: () => ['ps', '--json'] },
  quarantine: {
    ok: () => ['quarantine', '--all', '--json'],
    fail: () => ['quarantine', 'no-such-session', '--json'],
    failCode: 'SESSION_NOT_FOUND',
  },
  'daemon status': {
    ok: () => ['daemon', 'status', '--json'],
    fail: () => ['daemon', 'status', '--socket', join(root, 'nobody.sock'), '--json'],
    failCode: 'DAEMON_UNREACHABLE',
  },
  'daemon stop': {
    ok: () => ['daemon', 'stop', '--socket', join(root, 'doomed', 'daemon.sock'), '--json'],
    fail: () => ['daemon', 'stop', '--socket', join(root, 'nobody.sock'), '--json'],
    failCode: 'DAEMON_UNREACHABLE',
  },
  doctor: { ok: () => ['doctor', '--json'] },
  'daemon install': {
    ok: () => ['daemon', 'install', '--user', '--dry-run', '--json'],
    fail: () => ['daemon', 'install', '--system', '--user', '--json'],
    failCode: 'USAGE',
  },
  'daemon uninstall': {
    ok: () => ['daemon', 'uninstall', '--user', '--dry-run', '--json'],
    fail: () => ['daemon', 'uninstall', '--user', '--purge', '--json'],
    failCode: 'USAGE',
  },
  'templates list': { ok: () => ['templates', 'list', '--json'] },
};

/** The shape every `--json` output has: one object, `ok` matching the exit code. */
function expectResult(r: CliResult, ok: boolean): Record<string, unknown> {
  const out = JSON.parse(r.stdout) as unknown;
  expect(typeof out === 'object' && out !== null && !Array.isArray(out), r.stdout).toBe(true);
  const o = out as Record<string, unknown>;
  expect(o['ok'], r.stdout + r.stderr).toBe(ok);
  expect(r.code === 0, `exit ${r.code}: ${r.stdout}`).toBe(ok);
  if (!ok) {
    expect(typeof o['code']).toBe('string');
    expect(typeof o['message']).toBe('string');
  }
  return o;
}

describe('--json: one object with ok, for every verb', () => {
  it('covers every verb that takes --json', () => {
    expect(verbsWithJson(buildProgram(processIo())).sort()).toEqual(Object.keys(CASES).sort());
  });

  describe.each(Object.entries(CASES))('%s', (_verb, c) => {
    it('success: ok true, exit 0', async () => {
      expectResult(await run(c.ok()), true);
    });
    it('failure of its own: ok false with code and message, exit non-zero', async () => {
      if (c.fail === undefined) {
        // A verb that cannot fail but for its arguments: the usage test below is its failure.
        expect(c.failCode).toBeUndefined();
        return;
      }
      const o = expectResult(await run(c.fail()), false);
      if (c.failCode !== undefined) expect(o['code']).toBe(c.failCode);
    });
    it('usage error: ok false, code USAGE, exit 2', async () => {
      const r = await run([...c.ok(), '--no-such-flag']);
      const o = expectResult(r, false);
      expect(o['code']).toBe('USAGE');
      expect(o['message']).toMatch(/--no-such-flag/);
      expect(r.code).toBe(2);
      // The person at the terminal still gets the message and the usage.
      expect(r.stderr).toMatch(/unknown option '--no-such-flag'/);
    });
  });

  it('an unknown verb with --json is a usage error in JSON too', async () => {
    const o = expectResult(await run(['--json', 'bogus']), false);
    expect(o['code']).toBe('USAGE');
    expect(o['hint']).toBe('see cordon --help');
  });

  it('daemon status --json describes the service; daemon stop --json stopped the one it named', async () => {
    const o = expectResult(await run(['daemon', 'status', '--json']), true);
    expect(o).toMatchObject({ mode: 'user', pid: daemon?.child.pid });
    expect(o['stateDir']).toBe(join(cordonHome, 'state'));
    // The success case above stopped the other service, which exits on its own.
    expect((await doomed?.exited)?.code).toBe(0);
  });

  it('ps --json carries the state and uptime the table shows', async () => {
    const s = await openSession();
    try {
      // A minute later, by the CLI's clock.
      const later = new Date(Date.now() + 61_000);
      const at = (args: string[]): Promise<CliResult> =>
        cli(args, { home, cordonHome, now: later });
      const table = await at(['ps']);
      expect(table.stdout).toMatch(
        new RegExp(`${s.id}\\s+fin@1\\.0\\.0\\s+-\\s+1m0\\ds\\s+0 B\\s+running`),
      );
      const j = expectResult(await at(['ps', '--json']), true);
      const [listed] = j['sessions'] as Record<string, unknown>[];
      expect(listed).toMatchObject({
        id: s.id,
        state: 'running',
        bytesOut: 0,
        clientPid: process.pid,
      });
      expect(listed?.['uptimeSeconds']).toBeGreaterThanOrEqual(61);
      const q = await request(socketOf(), 'POST', `/v1/sessions/${s.id}/quarantine`, {
        reason: 'test',
      });
      expect(q.status, q.raw).toBe(200);
      expect((await at(['ps'])).stdout).toMatch(new RegExp(`${s.id}.*QUARANTINED`));
      const after = expectResult(await at(['ps', '--json']), true);
      expect((after['sessions'] as Record<string, unknown>[])[0]?.['state']).toBe('quarantined');
    } finally {
      await s.close();
    }
    expect((expectResult(await run(['ps', '--json']), true)['sessions'] as unknown[]).length).toBe(
      0,
    );
  });

  it('quarantine --json: a session it could not contain is ok false, QUARANTINE_INCOMPLETE', async () => {
    // A quarantine the service cannot record (its session registry refuses writes: immutable)
    // is not confirmed, and says so.
    const s = await openSession();
    const registry = join(cordonHome, 'state/daemon/sessions');
    const chattr = (flag: string): void => {
      const r = spawnSync('chattr', [flag, registry], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    };
    chattr('+i');
    try {
      const r = await run(['quarantine', s.id, '--out', tempDir(), '--json']);
      const o = expectResult(r, false);
      expect(o['code'], r.stdout + r.stderr).toBe('QUARANTINE_INCOMPLETE');
      expect((o['sessions'] as { contained: boolean }[])[0]?.contained).toBe(false);
    } finally {
      chattr('-i');
      await s.close();
    }
  }, 30_000);
});

const socketOf = (): string => daemon?.socket ?? '';

/**
 * A session of the service opened by this process through its API (a standalone proxy on a
 * loopback port: no sandbox needed); this process is its client, so it runs until closed.
 */
async function openSession(): Promise<{ id: string; close: () => Promise<void> }> {
  const r = await request(socketOf(), 'POST', '/v1/sessions', {
    manifest: readFileSync(signed).toString('base64'),
    manifestPath: signed,
    command: ['cordon', 'proxy'],
    cwd: root,
    home,
    kind: 'proxy',
    listen: { host: '127.0.0.1', port: 0 },
  });
  expect(r.status, r.raw).toBe(200);
  const id = r.body['session'] as string;
  const capability = r.body['capability'] as string;
  return {
    id,
    close: async () => {
      const c = await request(
        socketOf(),
        'POST',
        `/v1/sessions/${id}/close`,
        {},
        {
          authorization: `Bearer ${capability}`,
        },
      );
      expect(c.status, c.raw).toBe(200);
    },
  };
}
