import { closeSync, constants, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { packageFile } from '../package-files.js';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import { canonicalize } from '../manifest/canonical.js';
import { ChainVerifier, type ChainReport, type ChainRecord } from './chain.js';
import type { NoteVerifier } from './note.js';
import { blockLine, prepareBlock, type PreparedBlock } from './prepare.js';
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
  lastCompleteLine,
  listSegmentFiles,
  readCheckpointState,
  readIndex,
  type SegmentEntry,
} from './store.js';
import { checkExportProof, proofOfLine, type ExportProof, type ProofCheck } from './proofs.js';
import { readWitness, type WitnessEntry } from './witness.js';

export interface VerifyOptions {
  readonly verifiers: readonly NoteVerifier[];
  /** Signed checkpoint notes kept outside the machine (e.g. from the SIEM), with a name for each. */
  readonly checkpoints?: readonly { note: string; source: string }[];
  /** Witness files (witness.ts): every checkpoint in them must be in the log. */
  readonly witnesses?: readonly string[];
  /** Proofs for a partial exported copy (proofs.ts), besides any the copy itself ends with. */
  readonly proofs?: readonly { proof: ExportProof; source: string }[];
  /** Threads that check record hashes (default: one per CPU, up to 4; 0 checks in-thread). */
  readonly workers?: number;
  /** Called every `onProgressEvery` records (default 1,000,000), for progress output. */
  readonly onProgress?: (records: number) => void;
  readonly onProgressEvery?: number;
}

export interface LogVerifyReport extends ChainReport {
  readonly segments: number;
  readonly warnings: readonly string[];
  /** What completeness was checked against: witness files and checkpoints from off the machine. */
  readonly witnesses: readonly string[];
}

/**
 * Verify the chained log in `<stateDir>/audit`: every segment the index names is present and no
 * unindexed one was added, every record's hash, the chain, the sequence, each embedded signed
 * checkpoint (signature, chain of checkpoints, Merkle root at its size), the local checkpoint
 * state, and any checkpoints passed in from outside. Streams in blocks; memory does not grow with
 * the log. Per-record hashing runs on `workers` threads (default: one per CPU, up to 4) while the
 * chain is followed here.
 */
export async function verifyLog(stateDir: string, opts: VerifyOptions): Promise<LogVerifyReport> {
  const p = auditPaths(stateDir);
  const warnings: string[] = [];
  const index = readIndex(p);
  if (index === undefined) {
    throw new CordonError('AUDIT_LOG_MISSING', `no audit log in ${p.dir}`, {
      file: p.index,
      hint: 'check --state-dir; the log is created by the first audited action or `cordon audit emit-test`',
    });
  }
  const external: { note: string; source: string; witness: boolean }[] = (
    opts.checkpoints ?? []
  ).map((c) => ({ ...c, witness: true }));
  // The local checkpoint state catches a careless cut, but whoever can cut the log can also
  // rewrite this file: it is never a witness.
  const state = readCheckpointState(p);
  if (state !== undefined)
    external.push({ note: state.note, source: p.checkpoint, witness: false });
  const witnessFiles = opts.witnesses ?? [];
  const witness: WitnessEntry[] = [];
  for (const f of witnessFiles) witness.push(...readWitness(f));
  const v = new ChainVerifier({ verifiers: opts.verifiers, external, witness });
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
  const splitAt = v.externalSizes;
  const pool = PreparePool.create(opts.workers ?? Math.min(3, availableParallelism() - 1));
  let records = 0;
  const every = opts.onProgressEvery ?? 1_000_000;
  try {
    for (let i = 0; i < index.segments.length && !v.damaged; i++) {
      const seg = index.segments[i] as SegmentEntry;
      const file = join(p.segments, seg.file);
      if (!existsSync(file)) {
        const last = seg.lastSeq ?? (index.segments[i + 1]?.firstSeq ?? 0) - 1;
        v.fail({
          kind: 'segment-missing',
          seq: seg.firstSeq,
          location: file,
          detail: `segment ${seg.file} (records ${seg.firstSeq}..${last > 0 ? last : 'end'}) is missing`,
        });
        break;
      }
      let lineNo = 0;
      const consume = (b: PreparedBlock): void => {
        const base = lineNo;
        if (v.tryBlock(b, (k) => `${file}:${base + k + 1}`)) {
          lineNo += b.count;
          records += b.count;
          if (
            opts.onProgress !== undefined &&
            Math.floor(records / every) > Math.floor((records - b.count) / every)
          ) {
            opts.onProgress(records);
          }
          return;
        }
        // Record by record: exact scans, and the verifier classifies whatever is wrong.
        for (let k = 0; k < b.count && !v.damaged; k++) {
          lineNo++;
          const location = `${file}:${lineNo}`;
          const line = blockLine(b, k);
          let rec: ChainRecord;
          try {
            const r = scanRecord(line);
            const note = r.hashOk && isCheckpointLine(line) ? checkpointNoteOf(line) : undefined;
            rec = note === undefined ? r : { ...r, checkpoint: note };
          } catch (e) {
            v.fail({
              kind: 'modified',
              location,
              detail: `line ${lineNo} is not a well-formed record: ${(e as Error).message}`,
            });
            break;
          }
          v.add(rec, location);
          records++;
          if (opts.onProgress !== undefined && records % every === 0) opts.onProgress(records);
        }
      };
      const reader = new BlockReader(file);
      const queue: Promise<PreparedBlock>[] = [];
      try {
        for (;;) {
          // Keep the workers busy; consume results in order.
          while (queue.length < pool.depth) {
            const block = reader.next();
            if (block === undefined) break;
            queue.push(pool.run(block, splitAt));
          }
          const next = queue.shift();
          if (next === undefined) break;
          const done = await next;
          consume(done);
          reader.recycle(done.bytes);
          if (v.damaged) break;
        }
      } finally {
        reader.close();
      }
      const rest = reader.rest;
      if (rest > 0 && !v.damaged) {
        if (i === index.segments.length - 1) {
          warnings.push(
            `${file}: ${rest} bytes of an unfinished record at the end (a crash; the next writer cuts them)`,
          );
        } else {
          v.fail({
            kind: 'truncated',
            location: file,
            detail: `sealed segment ${seg.file} ends in the middle of a record`,
          });
        }
      }
    }
  } finally {
    await pool.close();
  }
  return {
    ...v.finish(),
    segments: index.segments.length,
    warnings,
    witnesses: [...witnessFiles, ...(opts.checkpoints ?? []).map((c) => c.source)],
  };
}

const BLOCK = 4 * 1024 * 1024;

/** Reads a file in blocks of whole lines; `rest` is what follows the last newline at the end. */
class BlockReader {
  readonly #fd: number;
  #pos = 0;
  #carry = Buffer.alloc(0);
  #open = true;
  /** Blocks handed back after use: reading into them again spares fresh pages. */
  readonly #free: ArrayBuffer[] = [];

  constructor(file: string) {
    this.#fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  }

  get rest(): number {
    return this.#carry.length;
  }

  /** The next block (each its own allocation, so it can be handed to a worker), or undefined. */
  next(): Buffer | undefined {
    while (this.#open) {
      // Every block has the same capacity (room for a carried partial line), so blocks are
      // reused instead of allocated: memory stays flat however long the log is.
      const need = BLOCK + this.#carry.length;
      const capacity = Math.max(2 * BLOCK, need);
      let reuse = this.#free.pop();
      if (reuse !== undefined && reuse.byteLength < need) reuse = undefined;
      const chunk = Buffer.from(reuse ?? new ArrayBuffer(capacity), 0, need);
      this.#carry.copy(chunk, 0);
      const n = readSync(this.#fd, chunk, this.#carry.length, BLOCK, this.#pos);
      if (n === 0) {
        this.close();
        return undefined;
      }
      this.#pos += n;
      const filled = this.#carry.length + n;
      const last = chunk.lastIndexOf(0x0a, filled - 1);
      if (last < 0) {
        this.#carry = chunk.subarray(0, filled);
        continue;
      }
      this.#carry = Buffer.from(chunk.subarray(last + 1, filled));
      return chunk.subarray(0, last + 1);
    }
    return undefined;
  }

  recycle(b: Uint8Array): void {
    if (this.#free.length < 8 && b.byteOffset === 0) this.#free.push(b.buffer as ArrayBuffer);
  }

  close(): void {
    if (this.#open) closeSync(this.#fd);
    this.#open = false;
  }
}

/** Worker threads that prepare blocks; in-thread when there are none (or no built worker). */
class PreparePool {
  readonly depth: number;
  readonly #workers: Worker[];
  readonly #waiting = new Map<
    number,
    { resolve: (b: PreparedBlock) => void; reject: (e: Error) => void }
  >();
  #next = 0;
  #id = 0;

  private constructor(workers: Worker[]) {
    this.#workers = workers;
    this.depth = Math.max(2, (workers.length + 1) * 2);
    for (const w of workers) {
      w.on('message', (m: { id: number; block: PreparedBlock }) => {
        const p = this.#waiting.get(m.id);
        this.#waiting.delete(m.id);
        p?.resolve(m.block);
      });
      w.on('error', (e) => {
        for (const p of this.#waiting.values()) p.reject(e);
        this.#waiting.clear();
      });
    }
  }

  static create(n: number): PreparePool {
    // Beside this module in dist/; from the CLI bundle, in the package's dist/audit/. Running
    // from TypeScript sources (tests) there is no built worker: prepare in-thread.
    const here = fileURLToPath(new URL('./verify-worker.js', import.meta.url));
    const file = existsSync(here)
      ? here
      : import.meta.url.endsWith('.ts')
        ? here
        : packageFile('dist', 'audit', 'verify-worker.js');
    if (n <= 0 || !existsSync(file)) return new PreparePool([]);
    return new PreparePool(Array.from({ length: n }, () => new Worker(file)));
  }

  run(block: Buffer, splitAt: readonly number[]): Promise<PreparedBlock> {
    // The main thread takes its turn too: it has little else to do while blocks are prepared.
    const w = this.#workers[this.#next++ % (this.#workers.length + 1)];
    if (w === undefined) {
      try {
        return Promise.resolve(prepareBlock(block, splitAt));
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    }
    const id = this.#id++;
    // Each block owns its memory (BlockReader allocates one per block): move it, do not copy.
    const ab = block.buffer as ArrayBuffer;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      w.postMessage({ id, block: ab, offset: block.byteOffset, length: block.length, splitAt }, [
        ab,
      ]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}

/** One exported line, turned back into the record it mirrors. */
function exportedRecord(line: Buffer): ChainRecord {
  const r = fromExported(parseStrictJson(line, { maxBytes: 64 * 1024 * 1024, maxDepth: 256 }));
  const { hash } = encodeRecord(r.seq, r.time, r.prev, canonicalize(r.event));
  const note = (r.event['unmapped'] as { checkpoint?: unknown } | undefined)?.checkpoint;
  return {
    seq: r.seq,
    prev: r.prev,
    hash: r.hash,
    hashOk: hash === r.hash,
    ...(typeof note === 'string' ? { checkpoint: note } : {}),
  };
}

/**
 * Verify an exported NDJSON copy (from `cordon audit export`, or a SIEM search) in
 * `metadata.sequence` order: SIEMs do not keep arrival order, so a copy that is out of order is
 * sorted first (a second pass; memory grows with the number of records, about 24 bytes each). Exact repeats of a record (at-least-once delivery) are skipped. A copy
 * may start anywhere (a time-bounded search); the chain is then checked from its first record.
 */
export interface ExportedVerifyReport extends ChainReport {
  /** The proof checked for a partial copy (see proofs.ts), if the copy came with one. */
  readonly proof?: ProofCheck & { readonly source: string };
}

export function verifyExported(file: string, opts: VerifyOptions): ExportedVerifyReport {
  // Proofs given beside the copy, and the one `audit export --proofs` writes as its last line.
  const proofs = [...(opts.proofs ?? [])];
  const fdLast = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const last = lastCompleteLine(fdLast, fstatSync(fdLast).size);
    const p = last === undefined ? undefined : proofOfLine(last.line, `${file} (last line)`);
    if (p !== undefined) proofs.push({ proof: p, source: `${file} (last line)` });
  } finally {
    closeSync(fdLast);
  }
  // The proven record, and the one after it, which may be the record carrying the checkpoint.
  const remember = new Set(proofs.flatMap((p) => [p.proof.last.seq, p.proof.last.seq + 1]));
  const external = (opts.checkpoints ?? []).map((c) => ({ ...c, witness: true }));
  const start = (rec: ChainRecord) =>
    new ChainVerifier({
      verifiers: opts.verifiers,
      allowDuplicates: true,
      external,
      startSeq: rec.seq,
      startPrev: rec.prev,
      remember,
    });
  // One pass verifies a copy that is in order (our own exports, most searches) and indexes every
  // line; a copy found out of order is then verified again, sorted, from the index.
  let offsets = new Float64Array(1024);
  let seqs = new Float64Array(1024);
  let lengths = new Float64Array(1024);
  let n = 0;
  let ordered = true;
  let last = -Infinity;
  let v: ChainVerifier | undefined;
  let bad: { lineNo: number; message: string } | undefined;
  const { tail } = forEachLine(file, 0, (line, offset) => {
    n++;
    if (line.length === 0) return true;
    // Proof lines are not records; one in the middle of a copy (a shuffled SIEM copy) is used
    // as well, as far as the hashes it needs are still known.
    try {
      const p = proofOfLine(line, `${file}:${n}`);
      if (p !== undefined) {
        if (
          !proofs.some(
            (q) =>
              q.source === `${file} (last line)` &&
              q.proof.last.seq === p.last.seq &&
              q.proof.checkpoint === p.checkpoint,
          )
        ) {
          proofs.push({ proof: p, source: `${file}:${n}` });
        }
        return true;
      }
    } catch (e) {
      bad = { lineNo: n, message: (e as Error).message };
      return false;
    }
    let rec: ChainRecord;
    try {
      rec = exportedRecord(line);
    } catch (e) {
      bad = { lineNo: n, message: (e as Error).message };
      return false;
    }
    if (n > offsets.length) {
      const grow = (a: Float64Array) => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      offsets = grow(offsets);
      seqs = grow(seqs);
      lengths = grow(lengths);
    }
    offsets[n - 1] = offset;
    lengths[n - 1] = line.length;
    seqs[n - 1] = rec.seq;
    if (rec.seq < last && v?.lastHashOf(rec.seq) !== rec.hash) ordered = false;
    last = Math.max(last, rec.seq);
    if (ordered) {
      v ??= start(rec);
      v.add(rec, `${file}:${n}`);
    }
    return true;
  });
  if (!ordered) {
    v = undefined;
    const order = Array.from({ length: n }, (_, i) => i).filter((i) => (lengths[i] ?? 0) > 0);
    order.sort((a, b) => (seqs[a] ?? 0) - (seqs[b] ?? 0) || a - b);
    // Proof lines were not indexed as records (their length is 0 in the index).
    const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      for (const i of order) {
        const line = Buffer.allocUnsafe(lengths[i] ?? 0);
        readSync(fd, line, 0, line.length, offsets[i] ?? 0);
        const rec = exportedRecord(line);
        v ??= start(rec);
        if (!v.add(rec, `${file}:${i + 1}`)) break;
      }
    } finally {
      closeSync(fd);
    }
  }
  v ??= new ChainVerifier({ verifiers: opts.verifiers, external });
  if (bad !== undefined) {
    v.fail({
      kind: 'modified',
      location: `${file}:${bad.lineNo}`,
      detail: `line ${bad.lineNo}: ${bad.message}`,
    });
  }
  if (tail.length > 0) {
    v.fail({ kind: 'truncated', location: file, detail: 'the file ends in the middle of a line' });
  }
  const verifier = v;
  const report = verifier.finish();
  if (!report.ok || proofs.length === 0) return report;
  // The copy's chain is intact; a proof turns "intact" into "proven" up to the record it is for.
  let best: (ProofCheck & { source: string }) | undefined;
  for (const { proof, source } of proofs) {
    const check = checkExportProof(proof, verifier.hashAt(proof.last.seq), opts.verifiers);
    if (!check.ok) {
      return {
        ...report,
        ok: false,
        witnessedSize: 0,
        proof: { ...check, source },
        damage: { kind: 'modified', seq: proof.last.seq, location: source, detail: check.detail },
      };
    }
    // The record carrying the proof's own checkpoint (written right after the records it
    // signs) counts as signed, as in the log itself.
    const carrier = verifier.checkpointAt(proof.last.seq + 1);
    const through =
      check.checkpointSize === proof.last.seq && carrier === proof.checkpoint
        ? proof.last.seq + 1
        : check.through;
    if (best === undefined || through > best.through) best = { ...check, through, source };
  }
  if (best === undefined) return report;
  return {
    ...report,
    checkpointsVerified: report.checkpointsVerified + 1,
    signedThrough: Math.max(report.signedThrough, best.through),
    proof: best,
  };
}
