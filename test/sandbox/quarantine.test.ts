import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeEvidenceBundle } from '../../src/sandbox/evidence.js';
import { startUpstreams, type Upstreams } from '../egress/harness.js';
import { BIN, sandboxEnv, startAgent, type SandboxEnv } from './harness.js';

let s: SandboxEnv;
let up: Upstreams;
beforeAll(async () => {
  s = sandboxEnv('quarantine');
  up = await startUpstreams(s.dir);
});
afterAll(async () => {
  await up.close();
  rmSync(s.dir, { recursive: true, force: true });
});

describe('cordon ps and cordon quarantine', () => {
  it('lists the session, then kills its tree, denies its egress and writes verifiable evidence', async () => {
    const manifest = s.sign({
      networkScopes: [`http://127.0.0.1:${up.httpPort}`],
      commandsAllowed: ['/usr/bin/bash', '/usr/bin/sleep', '/usr/bin/curl'],
    });
    const url = `http://127.0.0.1:${up.httpPort}/`;
    const a = await startAgent(
      s.env,
      manifest,
      `sleep 317 & curl -s -o /dev/null -w 'first=%{http_code}\\n' ${url}; echo ready; wait`,
    );
    expect(a.stdout()).toContain('first=200');

    const ps = spawnSync(process.execPath, [BIN, 'ps', '--json'], { env: s.env, encoding: 'utf8' });
    expect(ps.status, ps.stderr).toBe(0);
    const { sessions } = JSON.parse(ps.stdout) as {
      sessions: { id: string; agent: string; sandboxPid: number; bytesOut: number }[];
    };
    expect(sessions.length).toBe(1);
    const session = sessions[0];
    if (session === undefined) throw new Error('no session');
    expect(session.agent).toBe('sandboxed');
    const table = spawnSync(process.execPath, [BIN, 'ps'], { env: s.env, encoding: 'utf8' });
    expect(table.stdout).toMatch(
      new RegExp(`${session.id}\\s+sandboxed@1\\.0\\.\\d+\\s+${session.sandboxPid}`),
    );

    const evidenceDir = join(s.dir, 'evidence');
    const q = spawnSync(
      process.execPath,
      [BIN, 'quarantine', session.id, '--out', evidenceDir, '--json'],
      { env: s.env, encoding: 'utf8' },
    );
    expect(q.status, q.stderr + q.stdout).toBe(0);
    const {
      sessions: [result],
    } = JSON.parse(q.stdout) as {
      sessions: {
        contained: boolean;
        containmentMs: number;
        processesKilled: number;
        evidence: string;
        evidenceSha256: string;
      }[];
    };
    expect(result?.contained).toBe(true);
    expect(result?.processesKilled).toBeGreaterThanOrEqual(3); // init, bash, sleep (+ bridge)
    expect(await a.closed).not.toBe(0);
    expect(a.stderr()).toMatch(/was quarantined/);
    expect(spawnSync('pgrep', ['-f', 'sleep 317'], { encoding: 'utf8' }).stdout.trim()).toBe('');

    // The bundle: a valid tar.gz whose files match its SHA256SUMS, holding a contiguous slice
    // of the audit hash chain with this session's launch and quarantine in it.
    const evidence = result?.evidence ?? '';
    const sum = spawnSync('sha256sum', [evidence], { encoding: 'utf8' }).stdout.split(' ')[0];
    expect(sum).toBe(result?.evidenceSha256);
    const x = join(s.dir, 'x');
    mkdirSync(x);
    expect(spawnSync('tar', ['-xzf', evidence, '-C', x]).status).toBe(0);
    const check = spawnSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: x, encoding: 'utf8' });
    expect(check.status, check.stdout).toBe(0);
    expect(check.stdout.match(/: OK/g)?.length).toBe(6);
    const records = readFileSync(join(x, 'audit-records.ndjson'), 'utf8')
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            seq: number;
            prev: string;
            hash: string;
            event: Record<string, unknown>;
          },
      );
    for (let i = 1; i < records.length; i++) {
      expect(records[i]?.seq).toBe((records[i - 1]?.seq ?? 0) + 1);
      expect(records[i]?.prev).toBe(records[i - 1]?.hash);
    }
    const codes = records.map((r) => r.event['status_code']);
    expect(codes).toContain('SANDBOX_STARTED');
    expect(codes).toContain('SESSION_QUARANTINED');
    const processes = JSON.parse(readFileSync(join(x, 'processes.json'), 'utf8')) as {
      argv: string[];
    }[];
    expect(processes.some((p) => p.argv.join(' ') === 'sleep 317')).toBe(true);
    expect(readFileSync(join(x, 'manifest.signed.json'), 'utf8')).toBe(
      readFileSync(manifest, 'utf8'),
    );
    // Nothing is left running, and the session is gone from `cordon ps`.
    const after = spawnSync(process.execPath, [BIN, 'ps', '--json'], {
      env: s.env,
      encoding: 'utf8',
    });
    expect(JSON.parse(after.stdout)).toEqual({ ok: true, sessions: [] });
  });

  it('needs a session or --all, and says so for an unknown one', () => {
    const none = spawnSync(process.execPath, [BIN, 'quarantine'], { env: s.env, encoding: 'utf8' });
    expect(none.status).toBe(2);
    const unknown = spawnSync(process.execPath, [BIN, 'quarantine', 'nope'], {
      env: s.env,
      encoding: 'utf8',
    });
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain('SESSION_NOT_FOUND');
    const all = spawnSync(process.execPath, [BIN, 'quarantine', '--all'], {
      env: s.env,
      encoding: 'utf8',
    });
    expect(all.status).toBe(0);
    expect(all.stdout).toContain('no sessions running');
  });

  it('never acts on a reused pid or a directory the record merely names', () => {
    // A record whose pids now belong to someone else (pid reuse), naming a directory that is
    // not the session's own.
    const bystander = spawn('sleep', ['337'], { stdio: 'ignore' });
    const pid = bystander.pid ?? 0;
    const precious = join(s.dir, 'cordon-run-precious');
    mkdirSync(precious);
    const dir = join(s.cordonHome, 'state/sessions');
    mkdirSync(dir, { recursive: true });
    const record = {
      id: 'forged',
      agent: 'x',
      manifestVersion: '1.0.0',
      manifestDigest: 'sha256:00',
      manifestPath: '/nonexistent',
      command: ['sleep'],
      cordonPid: pid,
      cordonStart: '1',
      sandboxPid: pid,
      sandboxStart: '1',
      startedAt: new Date().toISOString(),
      runDir: precious,
      bytesOut: 0,
      bytesIn: 0,
    };
    writeFileSync(join(dir, 'forged.json'), JSON.stringify(record));
    const q = spawnSync(process.execPath, [BIN, 'quarantine', 'forged'], {
      env: s.env,
      encoding: 'utf8',
    });
    expect(q.stderr).toContain('SESSION_NOT_FOUND');
    const ps = spawnSync(process.execPath, [BIN, 'ps', '--json'], { env: s.env, encoding: 'utf8' });
    expect(JSON.parse(ps.stdout)).toEqual({ ok: true, sessions: [] });
    expect(existsSync(join(dir, 'forged.json'))).toBe(false);
    expect(existsSync(precious)).toBe(true);
    expect(bystander.exitCode).toBeNull();
    bystander.kill();
  });
});

describe('quarantine evidence', () => {
  it('carries the manifest the session verified, not what the agent wrote at its path since', async () => {
    const granted = join(s.dir, 'granted');
    mkdirSync(granted);
    const signed = s.sign({
      writePaths: [`${granted}/**`],
      commandsAllowed: ['/usr/bin/bash', '/usr/bin/sleep'],
    });
    const inGrant = join(granted, 'agent.signed.json');
    copyFileSync(signed, inGrant);
    const original = readFileSync(inGrant);
    // The agent forges a manifest (a valid envelope of another payload) where the session's was.
    const forged = JSON.stringify({
      payloadType: 'application/vnd.cordon.manifest+json',
      payload: Buffer.from('{"agentName":"innocent"}').toString('base64'),
      signatures: [],
    });
    const a = await startAgent(
      s.env,
      inGrant,
      `printf '%s' '${forged}' > ${inGrant} && echo ready; sleep 300`,
    );
    expect(readFileSync(inGrant, 'utf8')).toBe(forged);
    const ps = spawnSync(process.execPath, [BIN, 'ps', '--json'], { env: s.env, encoding: 'utf8' });
    const [session] = (
      JSON.parse(ps.stdout) as { sessions: { id: string; manifestDigest: string }[] }
    ).sessions;
    if (session === undefined) throw new Error('no session');
    const out = join(s.dir, 'evidence-forged');
    const q = spawnSync(process.execPath, [BIN, 'quarantine', session.id, '--out', out, '--json'], {
      env: s.env,
      encoding: 'utf8',
    });
    expect(q.status, q.stderr).toBe(0);
    await a.closed;
    const [result] = (JSON.parse(q.stdout) as { sessions: { evidence: string }[] }).sessions;
    const x = join(s.dir, 'x-forged');
    mkdirSync(x);
    expect(spawnSync('tar', ['-xzf', result?.evidence ?? '', '-C', x]).status).toBe(0);
    const inBundle = readFileSync(join(x, 'manifest.signed.json'));
    expect(inBundle.equals(original)).toBe(true);
    const payload = Buffer.from(
      (JSON.parse(inBundle.toString('utf8')) as { payload: string }).payload,
      'base64',
    );
    expect(`sha256:${createHash('sha256').update(payload).digest('hex')}`).toBe(
      session.manifestDigest,
    );
  });
});

describe('writeEvidenceBundle without the launch-time copy', () => {
  it('refuses a manifest file whose payload is not the session’s, and says so', () => {
    const signed = s.sign({ commandsAllowed: ['/usr/bin/bash'] });
    const other = s.sign({ commandsAllowed: ['/usr/bin/true'] });
    const digest = (file: string): string =>
      `sha256:${createHash('sha256')
        .update(
          Buffer.from(
            (JSON.parse(readFileSync(file, 'utf8')) as { payload: string }).payload,
            'base64',
          ),
        )
        .digest('hex')}`;
    const session = {
      id: 'no-copy',
      agent: 'sandboxed',
      manifestVersion: '1.0.0',
      manifestDigest: digest(signed),
      manifestPath: other,
      command: ['bash'],
      cordonPid: 1,
      startedAt: new Date().toISOString(),
      runDir: '/nonexistent',
      bytesOut: 0,
      bytesIn: 0,
    };
    const out = join(s.dir, 'evidence-no-copy');
    const stateDir = join(s.cordonHome, 'state');
    const common = {
      stateDir,
      processes: [],
      connections: [],
      quarantinedAt: new Date().toISOString(),
      containmentMs: 1,
      outDir: out,
    };
    const refused = writeEvidenceBundle({ session, ...common });
    expect(refused.warnings.join()).toMatch(/no longer has the session's digest/);
    const x = join(s.dir, 'x-no-copy');
    mkdirSync(x);
    expect(spawnSync('tar', ['-xzf', refused.path, '-C', x]).status).toBe(0);
    expect(existsSync(join(x, 'manifest.signed.json'))).toBe(false);
    expect(readFileSync(join(x, 'manifest.MISSING.txt'), 'utf8')).toContain(other);
    // The file at the path is taken when it is the session's.
    const kept = writeEvidenceBundle({
      session: { ...session, id: 'path-ok', manifestPath: signed },
      ...common,
    });
    expect(kept.warnings).toEqual([]);
  });
});
