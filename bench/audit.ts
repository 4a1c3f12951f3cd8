// Audit log benchmarks: durable appends with group commit beside a raw write+fsync baseline
// writing the same bytes, and verification speed. The 10-million-record memory check runs in
// its own process (bench/audit-big.ts) so its RSS is not mixed with the other benchmarks'.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventContext, OcsfEvent } from '../src/audit/events.js';
import { AuditLog } from '../src/audit/log.js';
import { parseVerifierKey, verifierKey } from '../src/audit/note.js';
import { canonicalEvent, encodeRecord, GENESIS } from '../src/audit/record.js';
import { syntheticEvents } from '../src/audit/synthetic.js';
import { verifyLog } from '../src/audit/verify.js';
import { appendPipelined } from './pipeline.js';

export interface AuditBench {
  lines: string[];
  checks: [string, boolean][];
}

const ctx: EventContext = {
  productVersion: '0.1.0',
  device: { hostname: 'laptop-42', uid: '0d2e3f4a5b6c7d8e', osName: 'Linux' },
  actor: {
    name: 'cowork-finance',
    pid: 4242,
    processName: 'cordon',
    user: { name: 'alice', uid: '1000' },
  },
  time: Date.now(),
};

const ORIGIN = 'cordon.audit/laptop-42/0d2e3f4a5b6c7d8e';
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function appendAll(
  dir: string,
  events: readonly OcsfEvent[],
  count: number,
): Promise<{ seconds: number; writes: number }> {
  const deviceKey = generateKeyPairSync('ed25519').privateKey;
  const log = AuditLog.open({ stateDir: dir, deviceKey, origin: ORIGIN, context: ctx });
  const start = process.hrtime.bigint();
  await appendPipelined(log, events, count);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const writes = log.stats.writes;
  await log.close();
  return { seconds, writes };
}

function baseline(dir: string, lines: readonly Buffer[]): number {
  const fd = openSync(join(dir, 'raw.ndjson'), 'a');
  const start = process.hrtime.bigint();
  for (let i = 0; i < lines.length; i++) {
    writeSync(fd, lines[i] as Buffer);
    if (i % 100 === 99) fsyncSync(fd);
  }
  fsyncSync(fd);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  closeSync(fd);
  return seconds;
}

export async function benchAudit(bigRecords: number): Promise<AuditBench> {
  const N = 200_000;
  // A pool of distinct events cycled through: realistic variety without a heap of 200,000
  // events (which would make the benchmark mostly about the garbage collector).
  const next = syntheticEvents(ctx, 11);
  const events = Array.from({ length: 4096 }, next);
  // The bytes the baseline writes: the same records, encoded once up front.
  let prev = GENESIS;
  const time = new Date().toISOString();
  const lines = Array.from({ length: N }, (_, i) => {
    const r = encodeRecord(
      i + 1,
      time,
      prev,
      canonicalEvent(events[i % events.length] as OcsfEvent),
    );
    prev = r.hash;
    return Buffer.from(r.line + '\n');
  });
  const meanBytes = lines.reduce((n, l) => n + l.length, 0) / N;
  const out: string[] = [];
  const cordon: number[] = [];
  const raw: number[] = [];
  let writes = 0;
  let lastDir = '';
  for (let round = 0; round < 3; round++) {
    const rawDir = mkdtempSync(join(tmpdir(), 'cordon-bench-raw-'));
    raw.push(N / baseline(rawDir, lines));
    rmSync(rawDir, { recursive: true, force: true });
    if (lastDir !== '') rmSync(lastDir, { recursive: true, force: true });
    lastDir = mkdtempSync(join(tmpdir(), 'cordon-bench-log-'));
    const r = await appendAll(lastDir, events, N);
    cordon.push(N / r.seconds);
    writes = r.writes;
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[1] ?? 0;
  const appendRate = median(cordon);
  const rawRate = median(raw);
  out.push(
    `audit append, ${fmt(N)} realistic events of every kind (mean record ${fmt(meanBytes)} bytes), up to 8,192 appends in flight`,
    `  ${fmt(appendRate).padStart(10)} durable appends/s (canonical JSON, SHA-256 chain, Merkle tree, fsync; ${fmt(N / writes)} records per fsync)`,
    `  ${fmt(rawRate).padStart(10)} records/s baseline: fs.writeSync of the same bytes, fsync every 100 records`,
    `  ratio ${(appendRate / rawRate).toFixed(2)}x`,
  );
  // Verify the last log written (200k records, with its checkpoints).
  const deviceKey = generateKeyPairSync('ed25519').privateKey;
  const vdir = mkdtempSync(join(tmpdir(), 'cordon-bench-verify-'));
  const log = AuditLog.open({
    stateDir: vdir,
    deviceKey,
    origin: ORIGIN,
    context: ctx,
    checkpointEvery: 1000,
  });
  await appendPipelined(log, events, N);
  await log.close();
  const verifiers = [parseVerifierKey(verifierKey(ORIGIN, deviceKey))];
  const vr: number[] = [];
  for (let round = 0; round < 3; round++) {
    const t = process.hrtime.bigint();
    const report = await verifyLog(vdir, { verifiers });
    if (!report.ok) throw new Error(`bench log does not verify: ${report.damage?.detail ?? ''}`);
    vr.push(report.records / (Number(process.hrtime.bigint() - t) / 1e9));
  }
  const verifyRate = median(vr);
  rmSync(vdir, { recursive: true, force: true });
  rmSync(lastDir, { recursive: true, force: true });
  out.push(
    '',
    `audit verify, ${fmt(N)} records (hash, chain, sequence, a signed checkpoint every 1,000 with its Merkle root)`,
    `  ${fmt(verifyRate).padStart(10)} records/s`,
  );
  const checks: [string, boolean][] = [
    [`durable appends ${fmt(appendRate)}/s >= 100,000/s`, appendRate >= 100_000],
    [
      `durable appends ${(appendRate / rawRate).toFixed(2)}x the raw write+fsync baseline >= 0.7x`,
      appendRate / rawRate >= 0.7,
    ],
    [`verify ${fmt(verifyRate)} records/s >= 300,000/s`, verifyRate >= 300_000],
  ];
  if (bigRecords > 0) {
    const big = execFileSync(
      process.execPath,
      [join(import.meta.dirname, 'audit-big.js'), String(bigRecords)],
      {
        encoding: 'utf8',
        maxBuffer: 1024 * 1024,
      },
    );
    const r = JSON.parse(big) as {
      records: number;
      rssMb: number[];
      seconds: number;
      writeSeconds: number;
      ok: boolean;
    };
    // Flat: the largest RSS in the last third of the run against the largest in the first third
    // (single samples move with the garbage collector).
    const third = Math.max(1, Math.floor(r.rssMb.length / 3));
    const early = Math.max(...r.rssMb.slice(0, third));
    const late = Math.max(...r.rssMb.slice(-third));
    out.push(
      '',
      `audit verify, a ${fmt(r.records)}-record log in a fresh process: ${fmt(r.records / r.seconds)} records/s (written in ${r.writeSeconds.toFixed(0)} s through the append path)`,
      `  RSS MB at each tenth: ${r.rssMb.map((m) => m.toFixed(0)).join(' ')}`,
    );
    checks.push([
      `verify memory flat over ${fmt(r.records)} records: peak RSS ${early.toFixed(0)} MB in the first third, ${late.toFixed(0)} MB in the last (<= +32 MB)`,
      r.ok && late - early <= 32,
    ]);
  }
  return { lines: out, checks };
}
