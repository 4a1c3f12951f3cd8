import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, appendFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileActivityEvent, logActivityEvent } from '../../src/audit/events.js';
import { scanRecord } from '../../src/audit/record.js';
import { auditPaths, readIndex } from '../../src/audit/store.js';
import { verifyLog } from '../../src/audit/verify.js';
import { errorCode, tempDir } from '../helpers.js';
import { deviceKey, lineReader, openLog, ORIGIN, verifier } from './helpers.js';
import { ctx, sampleEvents } from './samples.js';
import { readLines, segmentFiles } from './tamper-tools.js';

const fixture = (name: string) => join(import.meta.dirname, '..', 'fixtures', name);

const events = sampleEvents()
  .filter((s) => s.name !== 'checkpoint')
  .map((s) => s.event);
const ev = (i: number) => events[i % events.length]!;

async function fill(stateDir: string, n: number, extra = {}) {
  const log = openLog(stateDir, extra);
  const results = await Promise.all(Array.from({ length: n }, (_, i) => log.append(ev(i))));
  return { log, results };
}

describe('chained audit log', () => {
  it('appends records whose seq, prev and hash chain, and verifies', async () => {
    const dir = tempDir();
    const { log, results } = await fill(dir, 50);
    expect(results.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    await log.close();
    const lines = readLines(segmentFiles(dir)[0]!);
    const recs = lines.map((l) => scanRecord(Buffer.from(l)));
    expect(recs[0]!.prev).toBe('0'.repeat(64));
    for (let i = 1; i < recs.length; i++) expect(recs[i]!.prev).toBe(recs[i - 1]!.hash);
    expect(recs.every((r) => r.hashOk)).toBe(true);
    const report = await verifyLog(dir, { verifiers: [verifier] });
    expect(report.ok).toBe(true);
    // close() signed a checkpoint over records 1..50, written as record 51.
    expect(report.records).toBe(51);
    expect(report.provenSize).toBe(50);
  });

  it('group commit: concurrent appends share writes and fsyncs', async () => {
    const dir = tempDir();
    const { log } = await fill(dir, 2000, { checkpointEvery: 100_000 });
    expect(log.stats.records).toBe(2000);
    expect(log.stats.writes).toBeLessThan(20);
    await log.close();
  });

  it('a reopened log continues the chain and the Merkle tree', async () => {
    const dir = tempDir();
    const a = await fill(dir, 10);
    await a.log.close();
    const b = await fill(dir, 10);
    expect(b.results[0]!.seq).toBe(12);
    await b.log.close();
    const r = await verifyLog(dir, { verifiers: [verifier] });
    expect(r.ok).toBe(true);
    expect(r.checkpointsVerified).toBeGreaterThanOrEqual(3);
  });

  it('checkpoints every N records and every T seconds', async () => {
    const dir = tempDir();
    const log = openLog(dir, { checkpointEvery: 10, checkpointIntervalMs: 60_000 });
    for (let i = 0; i < 35; i++) await log.append(ev(i));
    // One append at a time: a checkpoint once 10 records are waiting.
    expect(log.stats.checkpoints).toBe(3);
    await log.close();
    const dir2 = tempDir();
    const timed = openLog(dir2, { checkpointEvery: 1_000_000, checkpointIntervalMs: 100 });
    await timed.append(ev(0));
    await new Promise((r) => setTimeout(r, 400));
    await timed.flush();
    expect(timed.stats.checkpoints).toBeGreaterThanOrEqual(1);
    await timed.close();
    expect((await verifyLog(dir2, { verifiers: [verifier] })).ok).toBe(true);
  });

  it('rotates by size and by age, carrying the chain, with an index of segments', async () => {
    const dir = tempDir();
    const log = openLog(dir, { segmentMaxBytes: 5000, checkpointEvery: 7 });
    for (let i = 0; i < 40; i++) await log.append(ev(i));
    await log.close();
    const index = readIndex(auditPaths(dir))!;
    expect(index.segments.length).toBeGreaterThan(3);
    for (let i = 1; i < index.segments.length; i++) {
      expect(index.segments[i - 1]!.lastSeq).toBe(index.segments[i]!.firstSeq - 1);
      expect(index.segments[i - 1]!.lastHash).toBe(index.segments[i]!.firstPrev);
    }
    expect((await verifyLog(dir, { verifiers: [verifier] })).ok).toBe(true);
    // Age: a clock that jumps a day rotates even a small segment.
    const dir2 = tempDir();
    let now = Date.parse('2026-11-23T00:00:00Z');
    const aged = openLog(dir2, { now: () => now, segmentMaxAgeMs: 3_600_000 });
    await aged.append(ev(0));
    now += 2 * 3_600_000;
    await aged.append(ev(1));
    await aged.close();
    expect(readIndex(auditPaths(dir2))!.segments.length).toBe(2);
    expect((await verifyLog(dir2, { verifiers: [verifier] })).ok).toBe(true);
  });

  it('recovers from a torn tail: cuts it, records the recovery, continues the chain', async () => {
    const dir = tempDir();
    const a = await fill(dir, 5);
    await a.log.close();
    const seg = segmentFiles(dir)[0]!;
    const torn = '{"event":{"activity_id":2,"half a rec';
    appendFileSync(seg, torn);
    const b = openLog(dir);
    expect(b.recovery.cutBytes).toBe(torn.length);
    await b.append(ev(1));
    await b.close();
    const lines = readLines(seg);
    const recovery = lines.find((l) => l.includes('"activity_name":"Restart"'));
    expect(recovery).toContain(`"cut_bytes":${torn.length}`);
    expect((await verifyLog(dir, { verifiers: [verifier] })).ok).toBe(true);
  });

  it('refuses to open a log whose last complete record was altered or whose records were removed', async () => {
    const dir = tempDir();
    const a = await fill(dir, 5);
    await a.log.close();
    const seg = segmentFiles(dir)[0]!;
    const text = readFileSync(seg, 'utf8');
    writeFileSync(seg, text.slice(0, -20) + 'X' + text.slice(-19));
    expect(errorCode(() => openLog(dir))).toBe('AUDIT_LOG_CORRUPT');
    // Records cut below the signed checkpoint: not a crash, so no silent recovery.
    const lines = text.split('\n').filter(Boolean);
    writeFileSync(seg, lines.slice(0, 3).join('\n') + '\n');
    expect(errorCode(() => openLog(dir))).toBe('AUDIT_LOG_CORRUPT');
    // Segments without an index.
    rmSync(join(dir, 'audit', 'index.json'));
    expect(errorCode(() => openLog(dir))).toBe('AUDIT_LOG_CORRUPT');
  });

  it('one writer at a time; the lock goes with its holder, even one killed with SIGKILL', async () => {
    const dir = tempDir();
    const a = openLog(dir);
    // The same process cannot open the log twice either: the lock belongs to an open file.
    expect(errorCode(() => openLog(dir))).toBe('AUDIT_LOG_LOCKED');
    await a.close();
    // A clean close leaves no pid behind: the next writer does not report a crash.
    expect(readFileSync(auditPaths(dir).lock, 'utf8')).toBe('');
    const keyFile = join(dir, 'device.key');
    writeFileSync(keyFile, deviceKey.export({ type: 'pkcs8', format: 'pem' }));
    const holder = spawn(
      process.execPath,
      [fixture('audit-racer.mjs'), dir, keyFile, '3', ORIGIN],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    const out = lineReader(holder.stdout);
    expect(await out()).toBe('ready');
    holder.stdin.write('go\n');
    expect(await out()).toMatch(/^won /);
    try {
      const e = (() => {
        try {
          openLog(dir);
        } catch (err) {
          return err as { code: string; message: string };
        }
        return undefined;
      })();
      expect(e?.code).toBe('AUDIT_LOG_LOCKED');
      expect(e?.message).toContain(String(holder.pid));
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
    }
    // The kernel released the dead holder's lock; its pid in the file tells that it crashed.
    const b = openLog(dir);
    expect(b.recovery.staleLock).toBe(true);
    await b.close();
    expect((await verifyLog(dir, { verifiers: [verifier] })).ok).toBe(true);
  });

  it('an event changed after it was built is found (every 64th is checked in full)', async () => {
    const dir = tempDir();
    const log = openLog(dir);
    const e = fileActivityEvent(ctx, { activity: 'read', path: '/a' });
    // Breaking the canonical key order behind the type's back.
    (e as Record<string, unknown>)['aaa_added_later'] = 1;
    const results = await Promise.allSettled(Array.from({ length: 64 }, () => log.append(e)));
    expect(
      results.some(
        (r) =>
          r.status === 'rejected' && (r.reason as { code: string }).code === 'AUDIT_EVENT_INVALID',
      ),
    ).toBe(true);
    await log.close();
  });

  it('refuses at open a signer name or key that could not sign checkpoints', () => {
    const dir = tempDir();
    expect(errorCode(() => openLog(dir, { origin: 'has a space' }))).toBe('NOTE_MALFORMED');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    expect(errorCode(() => openLog(dir, { deviceKey: rsa }))).toBe('KEY_NOT_ED25519');
  });

  it('only the log writes checkpoints, and events cannot smuggle export fields', async () => {
    const dir = tempDir();
    const log = openLog(dir);
    const fake = logActivityEvent(ctx, {
      activity: 'checkpoint',
      detail: 'forged',
      checkpoint: 'x\n',
    });
    await expect(log.append(fake)).rejects.toMatchObject({ code: 'AUDIT_EVENT_INVALID' });
    const e = fileActivityEvent(ctx, { activity: 'read', path: '/a' });
    const withSeq = { ...e, metadata: { ...(e['metadata'] as object), sequence: 7 } };
    await expect(log.append(withSeq)).rejects.toMatchObject({ code: 'AUDIT_EVENT_INVALID' });
    await expect(log.append({ ...e, bad: NaN })).rejects.toMatchObject({
      code: 'CANONICAL_UNREPRESENTABLE',
    });
    const closing = log.close();
    // Appends that arrive while the log is closing are refused, not silently dropped.
    await expect(log.append(e)).rejects.toMatchObject({ code: 'AUDIT_LOG_CLOSED' });
    await closing;
    await expect(log.append(e)).rejects.toMatchObject({ code: 'AUDIT_LOG_CLOSED' });
  });

  it('an empty segment left by a crash during rotation is removed; any other stray segment is refused', async () => {
    const dir = tempDir();
    const a = await fill(dir, 3);
    await a.log.close();
    const stray = join(dir, 'audit', 'segments', 'seg-0000000000000099.ndjson');
    writeFileSync(stray, '');
    const b = openLog(dir);
    expect(existsSync(stray)).toBe(false);
    await b.close();
    writeFileSync(stray, 'x\n');
    expect(errorCode(() => openLog(dir))).toBe('AUDIT_LOG_CORRUPT');
  });
});
