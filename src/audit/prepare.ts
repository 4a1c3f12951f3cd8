import { sha256Hex } from './hash.js';
import { alignedSubtrees, recordLeaf, type BinHash } from './merkle.js';
import { checkpointNoteOf, isCheckpointLine } from './record.js';

/**
 * The per-record half of verification, for a block of complete lines: each record's hash check,
 * its place in the chain and its Merkle leaf. It needs nothing from other blocks, so blocks are
 * prepared on other threads while the chain (which is sequential) is followed on one. The hot
 * loop works on the bytes (no strings per record); anything unusual is left to the exact,
 * record-by-record path, which uses `scanRecord`.
 */
export interface PreparedBlock {
  /** Lines in the block. */
  readonly count: number;
  /** The block itself (handed back so the record-by-record path can read it). */
  readonly bytes: Uint8Array;
  /** Per line: start offset in `bytes` and length (without the newline). */
  readonly lines: Float64Array;
  /**
   * Set when every record is well formed, matches its hash, and links to the one before it with
   * the next seq: the main thread then checks only the block's edges and merges `runs`.
   */
  readonly clean: boolean;
  readonly firstSeq: number;
  /** Hex hashes at the block's edges (for a clean block). */
  readonly firstPrev: string;
  readonly lastHash: string;
  readonly beforeLastHash: string;
  /** Checkpoint notes by line index. */
  readonly notes: readonly (readonly [number, string])[];
  /**
   * For a clean block: the records split before every checkpoint record and every `splitAt` tree
   * size, each run as aligned perfect-subtree roots (32 bytes each) with their heights.
   */
  readonly runs: readonly {
    readonly start: number;
    /** Subtree roots as 32-character binary strings. */
    readonly roots: readonly BinHash[];
    readonly heights: readonly number[];
  }[];
}

const HASH_KEY = Buffer.from(',"hash":"');
const PREV_KEY = Buffer.from('","prev":"');
const SEQ_KEY = Buffer.from('","seq":');
const TIME_KEY = Buffer.from(',"time":"');
const EVENT_KEY = Buffer.from('{"event":');

let scratch = Buffer.allocUnsafe(64 * 1024);

function at(buf: Buffer, pos: number, key: Buffer, end: number): boolean {
  if (pos + key.length > end) return false;
  // A byte loop beats Buffer.compare's call overhead for keys this short.
  for (let i = 0; i < key.length; i++) if (buf[pos + i] !== key[i]) return false;
  return true;
}

/**
 * Fast structural check of the record in `buf[start, end)`; returns the offset (from `start`)
 * of its hash member's value, or -1 when the record needs the exact path. `seqOut[0]` receives
 * the seq.
 */
function quickScan(buf: Buffer, start: number, end: number, seqOut: Float64Array): number {
  if (end - start < 200 || !at(buf, start, EVENT_KEY, end) || buf[end - 1] !== 0x7d) return -1;
  const h = buf.lastIndexOf(HASH_KEY, end - 1);
  if (h < start) return -1;
  const hashAt = h + HASH_KEY.length;
  const prevKeyAt = hashAt + 64;
  if (!at(buf, prevKeyAt, PREV_KEY, end)) return -1;
  const seqKeyAt = prevKeyAt + PREV_KEY.length + 64;
  if (!at(buf, seqKeyAt, SEQ_KEY, end)) return -1;
  let i = seqKeyAt + SEQ_KEY.length;
  const digits = i;
  let seq = 0;
  for (let c = buf[i] ?? 0; c >= 0x30 && c <= 0x39; c = buf[++i] ?? 0) seq = seq * 10 + c - 0x30;
  if (i === digits || i - digits > 15 || (i - digits > 1 && buf[digits] === 0x30)) return -1;
  // `,"time":"` + 24 characters + `"}`
  if (!at(buf, i, TIME_KEY, end) || i + TIME_KEY.length + 26 !== end) return -1;
  seqOut[0] = seq;
  return hashAt - start;
}

/** Whether 64 bytes of `buf` at `pos` spell the hex string `hex`. */
function spells(buf: Buffer, pos: number, hex: string): boolean {
  for (let i = 0; i < 64; i++) if (buf[pos + i] !== hex.charCodeAt(i)) return false;
  return true;
}

// `{"event":{"activity_id":99,…` — a checkpoint record's 25th and 26th bytes.
const mayBeCheckpoint = (buf: Buffer, start: number): boolean =>
  buf[start + 24] === 0x39 && buf[start + 25] === 0x39;

export function prepareBlock(block: Buffer, splitAt: readonly number[] = []): PreparedBlock {
  let count = 0;
  for (let i = block.indexOf(0x0a); i >= 0; i = block.indexOf(0x0a, i + 1)) count++;
  const lines = new Float64Array(count * 2);
  const leaves: BinHash[] = [];
  const notes: [number, string][] = [];
  const seqOut = new Float64Array(1);
  let clean = true;
  let firstSeq = 0;
  let prevSeq = 0;
  let prevHashAt = -1;
  let prevLineStart = 0;
  let firstPrevAt = -1;
  let firstLineStart = 0;
  let beforeLastHashAt = -1;
  let beforeLastStart = 0;
  let from = 0;
  let prevDigest = '';
  for (let k = 0; k < count; k++) {
    const nl = block.indexOf(0x0a, from);
    lines[2 * k] = from;
    lines[2 * k + 1] = nl - from;
    const start = from;
    from = nl + 1;
    if (!clean) continue;
    const hashAt = quickScan(block, start, nl, seqOut);
    if (hashAt < 0) {
      clean = false;
      continue;
    }
    const seq = seqOut[0] ?? 0;
    // The record hash: SHA-256 of the line without its hash member, against the stored hex.
    const len = nl - start - 74;
    if (scratch.length < len) scratch = Buffer.allocUnsafe(len * 2);
    const cut = hashAt - HASH_KEY.length;
    block.copy(scratch, 0, start, start + cut);
    block.copy(scratch, cut, start + hashAt + 65, nl);
    const digest = sha256Hex(scratch.subarray(0, len));
    if (!spells(block, start + hashAt, digest)) {
      clean = false;
      continue;
    }
    const prevAt = hashAt + 64 + PREV_KEY.length;
    if (k === 0) {
      firstSeq = seq;
      firstPrevAt = prevAt;
      firstLineStart = start;
    } else if (seq !== prevSeq + 1 || !spells(block, start + prevAt, prevDigest)) {
      clean = false;
      continue;
    }
    leaves.push(recordLeaf(digest));
    if (mayBeCheckpoint(block, start)) {
      const line = block.subarray(start, nl);
      if (isCheckpointLine(line)) {
        const note = checkpointNoteOf(line);
        if (note !== undefined) notes.push([k, note]);
      }
    }
    beforeLastHashAt = prevHashAt;
    beforeLastStart = prevLineStart;
    prevSeq = seq;
    prevHashAt = hashAt;
    prevLineStart = start;
    prevDigest = digest;
  }
  const hexAt = (lineStart: number, off: number): string =>
    off < 0 ? '' : block.toString('latin1', lineStart + off, lineStart + off + 64);
  const runs: { start: number; roots: BinHash[]; heights: number[] }[] = [];
  if (clean && count > 0) {
    const first = firstSeq - 1;
    const cuts = new Set<number>([0, count]);
    for (const [k] of notes) cuts.add(k);
    for (const size of splitAt) if (size > first && size < first + count) cuts.add(size - first);
    const bounds = [...cuts].sort((x, y) => x - y);
    for (let c = 0; c + 1 < bounds.length; c++) {
      const lo = bounds[c] as number;
      const hi = bounds[c + 1] as number;
      const trees = alignedSubtrees(first + lo, leaves.slice(lo, hi));
      runs.push({
        start: lo,
        roots: trees.map((t) => t.root),
        heights: trees.map((t) => t.height),
      });
    }
  }
  return {
    count,
    bytes: block,
    lines,
    clean: clean && count > 0,
    firstSeq,
    firstPrev: clean ? hexAt(firstLineStart, firstPrevAt) : '',
    lastHash: clean ? hexAt(prevLineStart, prevHashAt) : '',
    beforeLastHash: clean ? hexAt(beforeLastStart, beforeLastHashAt) : '',
    notes: clean ? notes : [],
    runs,
  };
}

/** One line of a prepared block, for the record-by-record path. */
export function blockLine(b: PreparedBlock, k: number): Buffer {
  const start = b.lines[2 * k] ?? 0;
  const len = b.lines[2 * k + 1] ?? 0;
  return Buffer.from(b.bytes.buffer, b.bytes.byteOffset + start, len);
}
