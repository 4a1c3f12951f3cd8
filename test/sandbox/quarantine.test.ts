import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeEvidenceBundle } from '../../src/sandbox/evidence.js';
import { isAlive, startTime } from '../../src/sandbox/linux/procfs.js';
import { request } from '../daemon/harness.js';
import { startUpstreams, type Upstreams } from '../egress/harness.js';
import { BIN, listSessions, runCli, sandboxEnv, startAgent, type SandboxEnv } from './harness.js';

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

async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Stop this environment's endpoint service, if one runs, and wait until it has exited. */
async function stopDaemon(): Promise<void> {
  const st = spawnSync(process.execPath, [BIN, 'daemon', 'status', '--json'], {
    env: s.env,
    encoding: 'utf8',
  });
  if (st.status !== 0) return;
  const { pid } = JSON.parse(st.stdout) as { pid: number };
  const stop = spawnSync(process.execPath, [BIN, 'daemon', 'stop'], {
    env: s.env,
    encoding: 'utf8',
  });
  expect(stop.status, stop.stderr).toBe(0);
  await until(() => !isAlive(pid));
}

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

  it('never acts on a reused pid, a pid the record merely names, or a directory its id names', async () => {
    // Session records are the endpoint service's (<state>/daemon/sessions); a restarted service
    // takes them back. Records whose pids now belong to someone else (pid reuse), that name a
    // process the session never started, or whose id names a directory outside the service's
    // own must not make it kill or remove anything.
    const bystander = spawn('sleep', ['337'], { stdio: 'ignore' });
    const victim = bystander.pid ?? 0;
    const victimStart = startTime(victim);
    expect(victimStart).toBeDefined();
    // Live processes standing in for sessions' clients (a cordon run still running).
    const holders = [0, 1, 2].map(() => spawn('sleep', ['338'], { stdio: 'ignore' }));
    const precious = join(s.dir, 'prec');
    mkdirSync(precious);
    writeFileSync(join(precious, 'keep'), 'keep\n');
    try {
      await stopDaemon();
      const good = readFileSync(s.sign({ commandsAllowed: ['/usr/bin/sleep'] }));
      const envelope = JSON.parse(good.toString('utf8')) as {
        signatures: { sig: string }[];
      };
      const sig = envelope.signatures[0];
      if (sig === undefined) throw new Error('unsigned');
      sig.sig = Buffer.alloc(64, 7).toString('base64');
      const broken = Buffer.from(JSON.stringify(envelope));
      const dir = join(s.cordonHome, 'state/daemon/sessions');
      mkdirSync(dir, { recursive: true });
      const forge = (
        name: string,
        fields: { id: string; clientPid: number; clientStart?: string; manifest?: Buffer } & Record<
          string,
          unknown
        >,
      ): string => {
        const { manifest, ...rest } = fields;
        const record = {
          kind: 'run',
          uid: process.getuid?.() ?? 0,
          capabilityHash: '00'.repeat(32),
          manifest: (manifest ?? good).toString('base64'),
          request: { manifestPath: '/nonexistent', command: ['/usr/bin/sleep'], cwd: s.dir },
          home: s.home,
          startedAt: new Date().toISOString(),
          auditSeqAtStart: 1,
          ...rest,
        };
        writeFileSync(join(dir, `${name}.json`), JSON.stringify(record));
        return join(dir, `${name}.json`);
      };
      // Its client's pid reused by the bystander (another start time).
      const reused = randomUUID();
      forge(reused, {
        id: reused,
        clientPid: victim,
        clientStart: '1',
        sandboxPid: victim,
        sandboxStart: '1',
      });
      // An id that, as a path, leads out of the runtime directory to `precious`; its client gone.
      const escaping = forge('escaping', {
        id: '../../../../prec',
        clientPid: victim,
        clientStart: '1',
      });
      // A live client, and the bystander named as its sandbox: without a start time; with the
      // bystander's true start time (but not started by the client); and under a manifest
      // that no longer verifies, which a restarted service quarantines at once.
      const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
      const live = (i: number): { clientPid: number; clientStart: string } => {
        const pid = holders[i]?.pid ?? 0;
        return { clientPid: pid, clientStart: startTime(pid) ?? '' };
      };
      forge(a, { id: a, ...live(0), sandboxPid: victim });
      forge(b, { id: b, ...live(1), sandboxPid: victim, sandboxStart: victimStart });
      forge(c, { id: c, ...live(2), sandboxPid: victim, manifest: broken });

      // The service starts (on demand) and takes the records back.
      const listed = new Map(listSessions(s.env).map((x) => [x.id, x]));
      expect([...listed.keys()].sort()).toEqual([a, b, c].sort());
      for (const x of listed.values()) expect(x.sandboxPid).toBeUndefined();
      expect(listed.get(c)?.state).toBe('quarantined');
      expect(existsSync(escaping)).toBe(false);
      expect(existsSync(join(dir, `${reused}.json`))).toBe(false);
      expect(readFileSync(join(precious, 'keep'), 'utf8')).toBe('keep\n');
      expect(isAlive(victim, victimStart)).toBe(true);

      // The session whose client is gone is not there to quarantine.
      const q = spawnSync(process.execPath, [BIN, 'quarantine', reused], {
        env: s.env,
        encoding: 'utf8',
      });
      expect(q.stderr).toContain('SESSION_NOT_FOUND');
      // Quarantining the others denies their egress and kills no process they merely name. A
      // quarantine waits for the session's client to end it: each holder is ended once its
      // session shows quarantined.
      holders[2]?.kill('SIGKILL');
      for (const [i, id] of [a, b].entries()) {
        const pending = runCli([BIN, 'quarantine', id, '--json'], { env: s.env }, true);
        await until(() => listSessions(s.env).find((x) => x.id === id)?.state === 'quarantined');
        holders[i]?.kill('SIGKILL');
        const done = await pending;
        expect(done.code, done.stderr).toBe(0);
        const [r] = (JSON.parse(done.stdout) as { sessions: { processesKilled: number }[] })
          .sessions;
        expect(r?.processesKilled).toBe(0);
        expect(isAlive(victim, victimStart)).toBe(true);
      }
      await until(() => listSessions(s.env).length === 0);
      await until(() => readdirSync(dir).length === 0);
      expect(isAlive(victim, victimStart)).toBe(true);
      expect(bystander.exitCode).toBeNull();
      expect(readFileSync(join(precious, 'keep'), 'utf8')).toBe('keep\n');
      // The reused record was closed, and said so.
      const resumed = s
        .events()
        .filter((e) => (e['actor'] as { session?: { uid: string } }).session?.uid === reused);
      expect(String(resumed[0]?.['status_detail'])).toMatch(/ended while the service was down/);
    } finally {
      for (const h of holders) h.kill('SIGKILL');
      bystander.kill('SIGKILL');
    }
  }, 60_000);
});

describe('a restarted endpoint service', () => {
  it('takes back the sandbox its client started and still quarantines it', async () => {
    const manifest = s.sign({ commandsAllowed: ['/usr/bin/bash', '/usr/bin/sleep'] });
    const a = await startAgent(s.env, manifest, 'sleep 341 & echo ready; wait');
    await until(() => listSessions(s.env)[0]?.sandboxPid !== undefined);
    const [before] = listSessions(s.env);
    const st = spawnSync(process.execPath, [BIN, 'daemon', 'status', '--json'], {
      env: s.env,
      encoding: 'utf8',
    });
    expect(st.status, st.stderr).toBe(0);
    const { pid } = JSON.parse(st.stdout) as { pid: number };
    process.kill(pid, 'SIGKILL');
    await until(() => !isAlive(pid));
    // The next client starts the service again; it takes the session back with its sandbox.
    const [after] = listSessions(s.env);
    expect(after?.id).toBe(before?.id);
    expect(after?.sandboxPid).toBe(before?.sandboxPid);
    const q = spawnSync(process.execPath, [BIN, 'quarantine', after?.id ?? '', '--json'], {
      env: s.env,
      encoding: 'utf8',
    });
    expect(q.status, q.stderr + q.stdout).toBe(0);
    const [r] = (
      JSON.parse(q.stdout) as { sessions: { contained: boolean; processesKilled: number }[] }
    ).sessions;
    expect(r?.contained).toBe(true);
    expect(r?.processesKilled).toBeGreaterThanOrEqual(3); // init, bash, sleep
    expect(await a.closed).not.toBe(0);
    expect(spawnSync('pgrep', ['-f', 'sleep 341']).status).toBe(1);
  });
});

describe('the sandbox pid a client reports', () => {
  it('is recorded only for a live process its client started; one that already ended is not an error', async () => {
    const manifest = s.sign({ commandsAllowed: ['/usr/bin/sleep'] });
    // The service (started by this client) and a session this process holds open.
    listSessions(s.env);
    const st = spawnSync(process.execPath, [BIN, 'daemon', 'status', '--json'], {
      env: s.env,
      encoding: 'utf8',
    });
    expect(st.status, st.stderr).toBe(0);
    const { socket } = JSON.parse(st.stdout) as { socket: string };
    const opened = await request(socket, 'POST', '/v1/sessions', {
      manifest: readFileSync(manifest).toString('base64'),
      manifestPath: manifest,
      command: ['cordon', 'proxy'],
      cwd: s.dir,
      home: s.home,
      kind: 'proxy',
      listen: { host: '127.0.0.1', port: 0 },
    });
    expect(opened.status, opened.raw).toBe(200);
    const id = opened.body['session'] as string;
    const auth = { authorization: `Bearer ${String(opened.body['capability'])}` };
    const state = (body: Record<string, unknown>): ReturnType<typeof request> =>
      request(socket, 'POST', `/v1/sessions/${id}/state`, body, auth);
    try {
      // A command that ran for a moment: its pid is reported after it ended.
      const brief = spawn('true');
      await new Promise((r) => brief.on('exit', r));
      const ended = await state({ sandboxPid: brief.pid });
      expect(ended.status, ended.raw).toBe(200);
      expect(listSessions(s.env).find((x) => x.id === id)?.sandboxPid).toBeUndefined();
      // A live process this client did not start is refused, and not recorded.
      const init = await state({ sandboxPid: 1 });
      expect(init.status).toBe(400);
      expect(init.body['code']).toBe('REQUEST_INVALID');
      // One it did start is recorded.
      const child = spawn('sleep', ['343'], { stdio: 'ignore' });
      try {
        const ok = await state({ sandboxPid: child.pid, sandboxStart: startTime(child.pid ?? 0) });
        expect(ok.status, ok.raw).toBe(200);
        expect(listSessions(s.env).find((x) => x.id === id)?.sandboxPid).toBe(child.pid);
      } finally {
        child.kill('SIGKILL');
      }
    } finally {
      const c = await request(socket, 'POST', `/v1/sessions/${id}/close`, {}, auth);
      expect(c.status, c.raw).toBe(200);
    }
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
