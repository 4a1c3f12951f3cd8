import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAuditConfig, readAuditConfig } from '../../src/audit/config.js';
import { deviceVerifier } from '../../src/audit/open.js';
import { Shipper, sinkStatus } from '../../src/audit/sinks/runner.js';
import { logHead } from '../../src/audit/reader.js';
import { auditPaths } from '../../src/audit/store.js';
import { verifyExported } from '../../src/audit/verify.js';
import { cli } from '../cli/harness.js';
import { errorCode, tempDir } from '../helpers.js';
import { makeCerts } from '../tls-certs.js';

const fixture = join(import.meta.dirname, '..', 'fixtures', 'siem-receiver.mjs');
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function startReceiver(
  mode: string,
  port: number,
  out: string,
  certDir: string,
  token = 'hec-token',
  env: Record<string, string> = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [fixture, mode, String(port), out, certDir, token], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    });
    children.push(c);
    c.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    c.once('exit', (code) => reject(new Error(`receiver ${mode} exited ${code ?? ''}`)));
  });
}

function kill(c: ChildProcess | undefined): Promise<void> {
  return new Promise((r) => {
    if (c === undefined || c.exitCode !== null) {
      r();
      return;
    }
    c.removeAllListeners('exit');
    c.once('exit', () => r());
    c.kill('SIGKILL');
  });
}

/** Seqs a receiver has stored; a line it is still writing (no newline yet) is not counted. */
const seqsIn = (file: string): number[] =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .slice(0, -1)
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { metadata: { sequence: number } }).metadata.sequence)
    : [];

function writeAuditConfig(policyDir: string, retry: object, sinks: object[]): void {
  writeFileSync(
    join(policyDir, 'audit.json'),
    JSON.stringify({ apiVersion: 'cordon.dev/v1', kind: 'AuditConfig', retry, sinks }),
  );
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Stop the endpoint service `emit-test` started (it ships to the configured sinks itself): the
 * shippers these tests drive are then the only ones on the cursors.
 */
async function stopService(home: string, cordonHome: string): Promise<void> {
  await cli(['daemon', 'stop'], { home, cordonHome });
  for (let i = 0; i < 200; i++) {
    if ((await cli(['daemon', 'status'], { home, cordonHome: cordonHome })).code !== 0) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('the endpoint service did not stop');
}

describe('SIEM sinks', () => {
  it('HEC, OTLP/HTTP and syslog over TLS each receive every record, across a receiver killed and restarted mid-stream', async () => {
    const home = tempDir();
    const cordonHome = join(home, 'cordon');
    const certs = tempDir();
    makeCerts(certs);
    expect((await cli(['init'], { home, cordonHome })).code).toBe(0);
    const outs = {
      hec: join(certs, 'hec.ndjson'),
      otlp: join(certs, 'otlp.ndjson'),
      syslog: join(certs, 'syslog.ndjson'),
    };
    // Each receiver takes 5 ms to acknowledge a batch, so the stream lasts long enough to be cut.
    const slow = { DELAY_MS: '5' };
    const ports = {
      hec: await startReceiver('hec', 0, outs.hec, '', 'hec-token', slow),
      otlp: await startReceiver('otlp', 0, outs.otlp, certs, '', slow),
      syslog: await startReceiver('syslog', 0, outs.syslog, certs, '', slow),
    };
    const policyDir = join(cordonHome, 'policy');
    writeAuditConfig(policyDir, { initialMs: 50, maxMs: 400 }, [
      {
        name: 'splunk',
        type: 'splunk-hec',
        url: `http://127.0.0.1:${ports.hec}`,
        token: 'hec-token',
        batchSize: 50,
      },
      {
        name: 'otel',
        type: 'otlp-http',
        url: `https://127.0.0.1:${ports.otlp}/v1/logs`,
        caFile: join(certs, 'ca.crt'),
        batchSize: 50,
      },
      {
        name: 'syslog',
        type: 'syslog-tls',
        host: '127.0.0.1',
        port: ports.syslog,
        caFile: join(certs, 'ca.crt'),
        batchSize: 50,
      },
    ]);
    expect((await cli(['audit', 'emit-test', '--count', '3000'], { home, cordonHome })).code).toBe(
      0,
    );
    // The endpoint service wrote them and would ship them itself: this test's shipper is the
    // only one (cordon audit ship refuses while the service runs).
    const ship = await cli(['audit', 'ship', '--once'], { home, cordonHome });
    expect(ship.code).toBe(3);
    expect(ship.stderr).toMatch(/DAEMON_RUNNING/);
    await stopService(home, cordonHome);
    const stateDir = join(cordonHome, 'state');
    const p = auditPaths(stateDir);
    const config = readAuditConfig(policyDir);
    const shipper = new Shipper({ paths: p, config, pollMs: 50 });
    const running = shipper.start();
    // Mid-stream: every receiver has some records, none has all.
    await until(
      () => Object.values(outs).every((f) => seqsIn(f).length >= 300),
      30_000,
      'first records',
    );
    await Promise.all(children.splice(0).map(kill));
    const atKill = Object.fromEntries(Object.entries(outs).map(([k, f]) => [k, seqsIn(f).length]));
    await new Promise((r) => setTimeout(r, 500));
    // While the receivers are down, the failures are reported and nothing moves.
    const down = sinkStatus(p, config.sinks[0]!, logHead(p).seq);
    expect(down.pending).toBeGreaterThan(0);
    await startReceiver('hec', ports.hec, outs.hec, '', 'hec-token', slow);
    await startReceiver('otlp', ports.otlp, outs.otlp, certs, '', slow);
    await startReceiver('syslog', ports.syslog, outs.syslog, certs, '', slow);
    const head = logHead(p).seq;
    await until(
      () => config.sinks.every((s) => sinkStatus(p, s, head).pending === 0),
      60_000,
      'catch-up',
    );
    await shipper.stop();
    await running;
    const verifier = deviceVerifier(policyDir)!;
    for (const [name, file] of Object.entries(outs)) {
      const seqs = new Set(seqsIn(file));
      expect(atKill[name]!, name).toBeLessThan(head);
      // Nothing lost: every record 1..head arrived at least once.
      const missing = Array.from({ length: head }, (_, i) => i + 1).filter((s) => !seqs.has(s));
      expect(missing, name).toEqual([]);
      // The SIEM's copy verifies offline: hashes, chain, and the signed checkpoints it carries.
      const report = verifyExported(file, { verifiers: [verifier] });
      expect(report.damage, name).toBeUndefined();
      expect(report.checkpointsVerified, name).toBeGreaterThan(0);
    }
    const status = await cli(['audit', 'status', '--json'], { home, cordonHome });
    const sinks = (
      status.json() as { sinks: { name: string; pending: number; failures: number }[] }
    ).sinks;
    expect(sinks.map((s) => s.pending)).toEqual([0, 0, 0]);
    expect(sinks.every((s) => s.failures > 0)).toBe(true);
  }, 120_000);

  it('shipping for a long time does not pile up abort listeners (no MaxListenersExceededWarning)', async () => {
    const home = tempDir();
    const cordonHome = join(home, 'cordon');
    const out = join(home, 'hec.ndjson');
    const port = await startReceiver('hec', 0, out, '');
    await cli(['init'], { home, cordonHome });
    const policyDir = join(cordonHome, 'policy');
    writeAuditConfig(policyDir, { initialMs: 10, maxMs: 100 }, [
      { name: 'splunk', type: 'splunk-hec', url: `http://127.0.0.1:${port}`, token: 'hec-token' },
    ]);
    await cli(['audit', 'emit-test', '--count', '5'], { home, cordonHome });
    await stopService(home, cordonHome);
    // In-process: 200 polls of a caught-up log (the shipper asks for the durable head once a poll).
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      let polls = 0;
      const shipper = new Shipper({
        paths: auditPaths(join(cordonHome, 'state')),
        config: readAuditConfig(policyDir),
        pollMs: 1,
        durableSeq: () => (polls++, Number.MAX_SAFE_INTEGER),
      });
      const running = shipper.start();
      await until(() => polls >= 200, 60_000, '200 polls');
      await shipper.stop();
      await running;
      // Warnings are emitted on the next tick.
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
    expect(new Set(seqsIn(out)).size).toBe(6);
    // The CLI as an operator runs it: polls twice a second until stopped; 8 s is 16 polls.
    const ship = spawn(
      process.execPath,
      [join(import.meta.dirname, '../../dist/cli/bin.js'), 'audit', 'ship'],
      {
        env: { ...process.env, HOME: home, CORDON_HOME: cordonHome },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(ship);
    let stderr = '';
    ship.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise((r) => setTimeout(r, 8000));
    const exited = new Promise<number | null>((r) => ship.once('exit', (code) => r(code)));
    ship.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).not.toMatch(/MaxListenersExceededWarning|possible EventTarget memory leak/i);
  }, 60_000);

  it('a wrong HEC token is reported and nothing is skipped', async () => {
    const home = tempDir();
    const cordonHome = join(home, 'cordon');
    const out = join(home, 'hec.ndjson');
    const port = await startReceiver('hec', 0, out, '', 'right-token');
    await cli(['init'], { home, cordonHome });
    writeAuditConfig(join(cordonHome, 'policy'), { initialMs: 10, maxMs: 100 }, [
      { name: 'splunk', type: 'splunk-hec', url: `http://127.0.0.1:${port}`, token: 'wrong' },
    ]);
    await cli(['audit', 'emit-test', '--count', '20'], { home, cordonHome });
    await stopService(home, cordonHome);
    const r = await cli(['audit', 'ship', '--once', '--max-attempts', '3'], { home, cordonHome });
    expect(r.stderr).toMatch(/HEC answered 401/);
    expect(r.code).toBe(3);
    const status = await cli(['audit', 'status'], { home, cordonHome });
    expect(status.stdout).toMatch(
      /sink splunk \(splunk-hec\): delivered through 0, pending 2\d \(oldest \d+ s ago\), failed attempts 3/,
    );
    expect(seqsIn(out)).toEqual([]);
  });

  it('an OTLP partial success is a failure: the batch is sent again and nothing is skipped', async () => {
    const home = tempDir();
    const cordonHome = join(home, 'cordon');
    const certs = tempDir();
    makeCerts(certs);
    const out = join(certs, 'otlp.ndjson');
    const port = await startReceiver('otlp', 0, out, certs, '', { PARTIAL_ONCE: '1' });
    await cli(['init'], { home, cordonHome });
    writeAuditConfig(join(cordonHome, 'policy'), { initialMs: 10, maxMs: 100 }, [
      {
        name: 'otel',
        type: 'otlp-http',
        url: `https://localhost:${port}/v1/logs`,
        caFile: join(certs, 'ca.crt'),
      },
    ]);
    await cli(['audit', 'emit-test', '--count', '40'], { home, cordonHome });
    await stopService(home, cordonHome);
    const r = await cli(['audit', 'ship', '--once'], { home, cordonHome });
    expect(r.stderr).toMatch(/rejected part of the batch/);
    expect(r.code).toBe(0);
    expect(new Set(seqsIn(out)).size).toBe(41);
    // A receiver whose certificate the configured CA did not sign is refused.
    writeAuditConfig(join(cordonHome, 'policy'), { initialMs: 10, maxMs: 100 }, [
      { name: 'other', type: 'otlp-http', url: `https://localhost:${port}/v1/logs` },
    ]);
    const untrusted = await cli(['audit', 'ship', '--once', '--max-attempts', '1'], {
      home,
      cordonHome,
    });
    expect(untrusted.code).toBe(3);
    expect(untrusted.stderr).toMatch(/certificate/);
  });

  it('syslog: records a receiver read and then lost are sent again after the next connection failure', async () => {
    const home = tempDir();
    const cordonHome = join(home, 'cordon');
    const certs = tempDir();
    makeCerts(certs);
    const out = join(certs, 'syslog.ndjson');
    // The first receiver reads batch 1 to the end, closes cleanly, keeps nothing and exits.
    const port = await startReceiver('syslog', 0, out, certs, '', { LOSE_FIRST: '1' });
    await cli(['init'], { home, cordonHome });
    writeAuditConfig(join(cordonHome, 'policy'), { initialMs: 10, maxMs: 100 }, [
      {
        name: 'syslog',
        type: 'syslog-tls',
        host: '127.0.0.1',
        port,
        caFile: join(certs, 'ca.crt'),
        batchSize: 10,
      },
    ]);
    await cli(['audit', 'emit-test', '--count', '30'], { home, cordonHome });
    await stopService(home, cordonHome);
    const first = await cli(['audit', 'ship', '--once', '--max-attempts', '2'], {
      home,
      cordonHome,
    });
    expect(first.stderr).toMatch(/syslog: delivered: 10 records up to 10/);
    expect(first.code).toBe(3);
    expect(seqsIn(out)).toEqual([]);
    await startReceiver('syslog', port, out, certs);
    const second = await cli(['audit', 'ship', '--once'], { home, cordonHome });
    expect(second.code).toBe(0);
    // Records 1..10 came again: nothing is missing.
    expect(new Set(seqsIn(out))).toEqual(new Set(Array.from({ length: 31 }, (_, i) => i + 1)));
  });

  it('sink configuration is validated with the field and the fix', () => {
    const f = '/p/audit.json';
    const base = { apiVersion: 'cordon.dev/v1', kind: 'AuditConfig' };
    const bad = (sinks: unknown[], extra = {}) => {
      try {
        parseAuditConfig(JSON.stringify({ ...base, ...extra, sinks }), f);
      } catch (e) {
        return e as { code: string; pointer: string; file: string; message: string };
      }
      throw new Error('accepted');
    };
    expect(
      bad([{ name: 's', type: 'splunk-hec', url: 'http://siem.example.com:8088', token: 't' }]),
    ).toMatchObject({
      code: 'CONFIG_INVALID',
      pointer: '/sinks/0/url',
      file: f,
    });
    expect(
      bad([
        {
          name: 's',
          type: 'splunk-hec',
          url: 'https://siem.example.com',
          token: 't',
          tokenFile: '/t',
        },
      ]).pointer,
    ).toBe('/sinks/0/token');
    expect(
      bad([
        { name: 'a', type: 'otlp-http', url: 'https://c/v1/logs' },
        { name: 'a', type: 'otlp-http', url: 'https://d/v1/logs' },
      ]).pointer,
    ).toBe('/sinks/1/name');
    expect(bad([{ name: 'a', type: 'kafka' }]).code).toBe('CONFIG_INVALID');
    expect(bad([{ name: 'a', type: 'syslog-tls', host: 'h', port: 70000 }]).pointer).toBe(
      '/sinks/0/port',
    );
    expect(bad([], { checkpoint: { everyRecords: 0 } }).pointer).toBe('/checkpoint/everyRecords');
    expect(bad([], { colour: 'red' }).code).toBe('CONFIG_INVALID');
    expect(
      errorCode(() =>
        parseAuditConfig('{"apiVersion":"cordon.dev/v1","kind":"AuditConfig","kind":"x"}', f),
      ),
    ).toBe('JSON_DUPLICATE_KEY');
    expect(parseAuditConfig(JSON.stringify(base), f).checkpoint).toEqual({
      everyRecords: 1000,
      everySeconds: 60,
    });
  });
});
