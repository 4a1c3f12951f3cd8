import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointText, signNote } from '../../src/audit/note.js';
import { auditPaths, readCheckpointState, readIndex, writeIndex } from '../../src/audit/store.js';
import { verifyLog, type LogVerifyReport } from '../../src/audit/verify.js';
import { tempDir } from '../helpers.js';
import { ORIGIN, openLog, verifier } from './helpers.js';
import { sampleEvents } from './samples.js';
import { eventText, readLines, rechain, segmentFiles, writeLines } from './tamper-tools.js';
import { encodeRecord, scanRecord } from '../../src/audit/record.js';

const events = sampleEvents()
  .filter((s) => s.name !== 'checkpoint')
  .map((s) => s.event);

let pristineMulti = '';
let pristineSingle = '';
let shippedNote = '';

async function build(dir: string, segmentMaxBytes: number): Promise<void> {
  const log = openLog(dir, { checkpointEvery: 10, segmentMaxBytes });
  for (let i = 0; i < 60; i++) await log.append(events[i % events.length]!);
  await log.close();
}

beforeAll(async () => {
  // Not tempDir(): those are removed after each test, and these outlive them.
  pristineMulti = mkdtempSync(join(tmpdir(), 'cordon-tamper-'));
  await build(pristineMulti, 12_000);
  pristineSingle = mkdtempSync(join(tmpdir(), 'cordon-tamper-'));
  await build(pristineSingle, 64 * 1024 * 1024);
  shippedNote = readCheckpointState(auditPaths(pristineSingle))!.note;
});

afterAll(() => {
  rmSync(pristineMulti, { recursive: true, force: true });
  rmSync(pristineSingle, { recursive: true, force: true });
});

function copy(from: string): string {
  const d = tempDir();
  rmSync(d, { recursive: true, force: true });
  cpSync(from, d, { recursive: true });
  return d;
}

const verify = (dir: string, external: string[] = []): Promise<LogVerifyReport> =>
  verifyLog(dir, {
    verifiers: [verifier],
    checkpoints: external.map((note, i) => ({ note, source: `shipped-${i}` })),
  });

describe('tamper detection', () => {
  it('the untouched logs verify', async () => {
    expect((await verify(pristineMulti)).ok).toBe(true);
    expect(readIndex(auditPaths(pristineMulti))!.segments.length).toBeGreaterThan(3);
    expect((await verify(pristineSingle, [shippedNote])).ok).toBe(true);
  });

  it('one flipped byte → modified, naming the record', async () => {
    const d = copy(pristineSingle);
    const seg = segmentFiles(d)[0]!;
    const buf = readFileSync(seg);
    const lines = readLines(seg);
    const at = lines.slice(0, 20).join('\n').length + 1 + 40; // inside record 21's event
    buf[at] = buf[at]! ^ 0x01;
    writeFileSync(seg, buf);
    const r = await verify(d);
    expect(r.damage).toMatchObject({ kind: 'modified', seq: 21 });
  });

  it('a deleted record → deleted', async () => {
    const d = copy(pristineSingle);
    const seg = segmentFiles(d)[0]!;
    const lines = readLines(seg);
    lines.splice(30, 1);
    writeLines(seg, lines);
    expect((await verify(d)).damage).toMatchObject({ kind: 'deleted', seq: 32 });
  });

  it('two swapped records → reordered', async () => {
    const d = copy(pristineSingle);
    const seg = segmentFiles(d)[0]!;
    const lines = readLines(seg);
    [lines[12], lines[13]] = [lines[13]!, lines[12]!];
    writeLines(seg, lines);
    expect((await verify(d)).damage).toMatchObject({ kind: 'reordered', seq: 14 });
  });

  it('a forged record inserted with the whole chain recomputed → inserted, caught by the signed checkpoint', async () => {
    const d = copy(pristineSingle);
    const seg = segmentFiles(d)[0]!;
    const lines = readLines(seg);
    const forged = encodeRecord(
      6,
      scanRecord(Buffer.from(lines[5]!)).time,
      '0'.repeat(64),
      eventText(lines[2]!),
    ).line;
    lines.splice(5, 0, forged);
    const rechained = rechain(lines, 5);
    // Hash chain and sequence are now perfect; the attacker also deletes the local checkpoint state.
    for (let i = 1; i < rechained.length; i++) {
      expect(scanRecord(Buffer.from(rechained[i]!)).prev).toBe(
        scanRecord(Buffer.from(rechained[i - 1]!)).hash,
      );
    }
    writeLines(seg, rechained);
    rmSync(auditPaths(d).checkpoint);
    const r = await verify(d);
    expect(r.damage?.kind).toBe('inserted');
    expect(r.damage?.detail).toMatch(/signed over 10 records but 11 precede it/);
  });

  it('a record edited with the chain recomputed → modified, caught by the Merkle root', async () => {
    const d = copy(pristineSingle);
    const seg = segmentFiles(d)[0]!;
    const lines = readLines(seg);
    // Turn a blocked action into an allowed one.
    const at = lines.findIndex((l) => l.includes('"disposition":"Blocked"'));
    const edited = lines[at]!.replace('"disposition":"Blocked"', '"disposition":"Allowed"').replace(
      '"disposition_id":2',
      '"disposition_id":1',
    );
    expect(at).toBeGreaterThan(0);
    expect(edited).not.toBe(lines[at]);
    lines[at] = edited;
    writeLines(seg, rechain(lines, at));
    rmSync(auditPaths(d).checkpoint);
    expect((await verify(d)).damage).toMatchObject({ kind: 'modified' });
    expect((await verify(d)).damage?.detail).toMatch(/Merkle root/);
  });

  it('a truncated tail → truncated, against the local checkpoint and against a shipped one', async () => {
    const d = copy(pristineSingle);
    const seg = segmentFiles(d)[0]!;
    const lines = readLines(seg);
    writeLines(seg, lines.slice(0, 40));
    expect((await verify(d)).damage).toMatchObject({ kind: 'truncated' });
    // The attacker removes the local checkpoint state too: the shipped copy still tells.
    rmSync(auditPaths(d).checkpoint);
    expect((await verify(d, [shippedNote])).damage).toMatchObject({ kind: 'truncated', seq: 41 });
    // The honest limit: with no checkpoint kept anywhere else, a cut at a record boundary looks
    // like a shorter log. This is why checkpoints are shipped off the machine.
    expect((await verify(d)).ok).toBe(true);
  });

  it('a deleted middle segment → segment missing; with the index edited too → deleted', async () => {
    const d = copy(pristineMulti);
    const segs = segmentFiles(d);
    rmSync(segs[1]!);
    expect((await verify(d)).damage).toMatchObject({ kind: 'segment-missing' });
    const p = auditPaths(d);
    const index = readIndex(p)!;
    writeIndex(p, { ...index, segments: index.segments.filter((_, i) => i !== 1) });
    expect((await verify(d)).damage).toMatchObject({ kind: 'deleted' });
  });

  it('a segment added outside the index → inserted', async () => {
    const d = copy(pristineMulti);
    writeFileSync(
      join(d, 'audit', 'segments', 'seg-0000000000009999.ndjson'),
      readLines(segmentFiles(d)[0]!)[0]! + '\n',
    );
    expect((await verify(d)).damage).toMatchObject({ kind: 'inserted' });
  });

  it('a checkpoint signed by another key, or a shipped note from another device → checkpoint invalid', async () => {
    const other = generateKeyPairSync('ed25519').privateKey;
    const foreign = signNote(
      checkpointText({
        origin: ORIGIN,
        size: 60,
        root: Buffer.alloc(32),
        prev: undefined,
        time: 0,
      }),
      ORIGIN,
      other,
    );
    expect((await verify(pristineSingle, [foreign])).damage).toMatchObject({
      kind: 'checkpoint-invalid',
    });
    // A checkpoint record whose note was replaced (and the chain recomputed).
    const d = copy(pristineSingle);
    const seg = segmentFiles(d)[0]!;
    const lines = readLines(seg);
    const i = lines.findIndex((l) => l.includes('"activity_name":"Checkpoint"'));
    const state = readCheckpointState(auditPaths(d))!;
    const note = JSON.stringify(foreign).slice(1, -1);
    lines[i] = lines[i]!.replace(/"checkpoint":"(?:[^"\\]|\\.)*"/, `"checkpoint":"${note}"`);
    writeLines(seg, rechain(lines, i));
    expect(state.size).toBeGreaterThan(0);
    expect((await verify(d)).damage).toMatchObject({ kind: 'checkpoint-invalid' });
  });
});
