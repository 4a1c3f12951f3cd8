import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import { canonicalize } from '../manifest/canonical.js';
import { ChainVerifier, type ChainReport, type ChainRecord } from './chain.js';
import type { NoteVerifier } from './note.js';
import {
  checkpointNoteOf,
  encodeRecord,
  fromExported,
  isCheckpointLine,
  scanRecord,
} from './record.js';
import {
  auditPaths,
  forEachLine,
  listSegmentFiles,
  readCheckpointState,
  readIndex,
} from './store.js';

export interface VerifyOptions {
  readonly verifiers: readonly NoteVerifier[];
  /** Signed checkpoint notes kept outside the machine (e.g. from the SIEM), with a name for each. */
  readonly checkpoints?: readonly { note: string; source: string }[];
  /** Called every `onProgressEvery` records (default 1,000,000), for progress output. */
  readonly onProgress?: (records: number) => void;
  readonly onProgressEvery?: number;
}

export interface LogVerifyReport extends ChainReport {
  readonly segments: number;
  readonly warnings: readonly string[];
}

/**
 * Verify the chained log in `<stateDir>/audit`: every segment the index names is present and no
 * unindexed one was added, every record's hash, the chain, the sequence, each embedded signed
 * checkpoint (signature, chain of checkpoints, Merkle root at its size), the local checkpoint
 * state, and any checkpoints passed in from outside. Streams; memory does not grow with the log.
 */
export function verifyLog(stateDir: string, opts: VerifyOptions): LogVerifyReport {
  const p = auditPaths(stateDir);
  const warnings: string[] = [];
  const index = readIndex(p);
  if (index === undefined) {
    throw new CordonError('AUDIT_LOG_MISSING', `no audit log in ${p.dir}`, {
      file: p.index,
      hint: 'check --state-dir; the log is created by the first audited action or `cordon audit emit-test`',
    });
  }
  const external = [...(opts.checkpoints ?? [])];
  const state = readCheckpointState(p);
  if (state !== undefined) external.push({ note: state.note, source: p.checkpoint });
  const v = new ChainVerifier({ verifiers: opts.verifiers, external });
  const indexed = new Set(index.segments.map((s) => s.file));
  for (const f of listSegmentFiles(p)) {
    if (!indexed.has(f)) {
      v.fail({
        kind: 'inserted',
        location: join(p.segments, f),
        detail: `segment ${f} is not in the segment index`,
      });
    }
  }
  let records = 0;
  index.segments.forEach((seg, i) => {
    if (v.damaged) return;
    const file = join(p.segments, seg.file);
    const lastSeq = seg.lastSeq ?? index.segments[i + 1]?.firstSeq;
    if (!existsSync(file)) {
      v.fail({
        kind: 'segment-missing',
        seq: seg.firstSeq,
        location: file,
        detail: `segment ${seg.file} (records ${seg.firstSeq}..${lastSeq === undefined ? 'end' : lastSeq - (seg.lastSeq === undefined ? 1 : 0)}) is missing`,
      });
      return;
    }
    let lineNo = 0;
    const { tail } = forEachLine(file, 0, (line) => {
      lineNo++;
      const location = `${file}:${lineNo}`;
      let rec: ChainRecord;
      try {
        const s = scanRecord(line);
        rec = isCheckpointLine(line)
          ? { ...s, ...(s.hashOk ? { checkpoint: checkpointNoteOf(line) } : {}) }
          : s;
      } catch (e) {
        v.fail({
          kind: 'modified',
          location,
          detail: `line ${lineNo} is not a well-formed record: ${(e as Error).message}`,
        });
        return false;
      }
      records++;
      if (opts.onProgress !== undefined && records % (opts.onProgressEvery ?? 1_000_000) === 0) {
        opts.onProgress(records);
      }
      return v.add(rec, location);
    });
    if (tail.length > 0 && !v.damaged) {
      if (i === index.segments.length - 1) {
        warnings.push(
          `${file}: ${tail.length} bytes of an unfinished record at the end (a crash; the next writer cuts them)`,
        );
      } else {
        v.fail({
          kind: 'truncated',
          location: file,
          detail: `sealed segment ${seg.file} ends in the middle of a record`,
        });
      }
    }
  });
  return { ...v.finish(), segments: index.segments.length, warnings };
}

/**
 * Verify an exported NDJSON copy (from `cordon audit export` or a SIEM search), in file order and
 * sorted by `metadata.sequence`. Exact repeats of a record (at-least-once delivery) are skipped.
 */
export function verifyExported(file: string, opts: VerifyOptions): ChainReport {
  let v: ChainVerifier | undefined;
  let lineNo = 0;
  const { tail } = forEachLine(file, 0, (line) => {
    lineNo++;
    if (line.length === 0) return true;
    const location = `${file}:${lineNo}`;
    let rec: ChainRecord;
    try {
      const r = fromExported(parseStrictJson(line, { maxBytes: 64 * 1024 * 1024, maxDepth: 256 }));
      const { hash } = encodeRecord(r.seq, r.time, r.prev, canonicalize(r.event));
      const note = (r.event['unmapped'] as { checkpoint?: unknown } | undefined)?.checkpoint;
      rec = {
        seq: r.seq,
        prev: r.prev,
        hash: r.hash,
        hashOk: hash === r.hash,
        ...(typeof note === 'string' ? { checkpoint: note } : {}),
      };
    } catch (e) {
      v ??= new ChainVerifier({ verifiers: opts.verifiers, allowDuplicates: true });
      v.fail({ kind: 'modified', location, detail: `line ${lineNo}: ${(e as Error).message}` });
      return false;
    }
    // A copy may start anywhere (a time-bounded search); the chain is checked from its first record.
    v ??= new ChainVerifier({
      verifiers: opts.verifiers,
      allowDuplicates: true,
      external: opts.checkpoints ?? [],
      startSeq: rec.seq,
      startPrev: rec.prev,
    });
    return v.add(rec, location);
  });
  v ??= new ChainVerifier({ verifiers: opts.verifiers, external: opts.checkpoints ?? [] });
  if (tail.length > 0) {
    v.fail({ kind: 'truncated', location: file, detail: 'the file ends in the middle of a line' });
  }
  return v.finish();
}
