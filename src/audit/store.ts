import {
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  readdirSync,
  readSync,
  constants,
} from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import { readFileIfExists, writeFileAtomic } from '../store/files.js';

/**
 * Where the chained log lives under the state directory, and the two small files that describe
 * it: the segment index (so a deleted segment is noticed) and the last checkpoint state (so the
 * Merkle tree is rolled up from there rather than from the first record).
 */
export function auditPaths(stateDir: string) {
  const dir = join(stateDir, 'audit');
  return {
    dir,
    segments: join(dir, 'segments'),
    index: join(dir, 'index.json'),
    checkpoint: join(dir, 'checkpoint.json'),
    lock: join(dir, 'writer.lock'),
    sinks: join(dir, 'sinks'),
  };
}
export type AuditPaths = ReturnType<typeof auditPaths>;

export type StoreErrorCode = 'AUDIT_STATE_CORRUPT';

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/);

const SegmentEntrySchema = z.strictObject({
  file: z.string().regex(/^seg-[0-9]{16}\.ndjson$/),
  firstSeq: z.number().int().min(1),
  firstPrev: Hex64,
  created: z.number().int().min(0),
  /** Set when the segment is sealed (a newer one was started). */
  lastSeq: z.number().int().min(0).optional(),
  lastHash: Hex64.optional(),
});
export type SegmentEntry = z.infer<typeof SegmentEntrySchema>;

const IndexSchema = z.strictObject({
  version: z.literal(1),
  segments: z.array(SegmentEntrySchema).min(1),
});
export type SegmentIndex = z.infer<typeof IndexSchema>;

const CheckpointStateSchema = z.strictObject({
  version: z.literal(1),
  /** Records covered (1..size). */
  size: z.number().int().min(0),
  /** Merkle frontier at `size`, hex, largest subtree first. */
  frontier: z.array(Hex64),
  /** The signed note. */
  note: z.string(),
  /** Seq of the log record that carries the note. */
  seq: z.number().int().min(1),
  time: z.number().int().min(0),
});
export type CheckpointState = z.infer<typeof CheckpointStateSchema>;

function corrupt(file: string, why: string, cause?: unknown): CordonError {
  return new CordonError('AUDIT_STATE_CORRUPT', `${file}: ${why}`, {
    file,
    hint: 'run `cordon audit verify` to see what happened; never delete audit state to get past this',
    cause,
  });
}

function readState<T>(file: string, schema: z.ZodType<T>): T | undefined {
  const raw = readFileIfExists(file, 16 * 1024 * 1024);
  if (raw === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = parseStrictJson(raw, { maxBytes: 16 * 1024 * 1024 });
  } catch (e) {
    throw corrupt(file, 'not valid JSON', e);
  }
  const r = schema.safeParse(parsed);
  if (!r.success) throw corrupt(file, `unexpected content: ${r.error.issues[0]?.message ?? ''}`);
  return r.data;
}

export function readIndex(p: AuditPaths): SegmentIndex | undefined {
  const index = readState(p.index, IndexSchema);
  if (index === undefined) return undefined;
  let previous = 0;
  for (const seg of index.segments) {
    if (seg.firstSeq <= previous) {
      throw corrupt(p.index, 'segments are not in increasing order');
    }
    previous = seg.firstSeq;
  }
  return index;
}

export function writeIndex(p: AuditPaths, index: SegmentIndex): void {
  writeFileAtomic(p.index, JSON.stringify(index, null, 1) + '\n', 0o600);
}

export function readCheckpointState(p: AuditPaths): CheckpointState | undefined {
  return readState(p.checkpoint, CheckpointStateSchema);
}

export function writeCheckpointState(p: AuditPaths, s: CheckpointState): void {
  writeFileAtomic(p.checkpoint, JSON.stringify(s, null, 1) + '\n', 0o600);
}

export function segmentName(firstSeq: number): string {
  return `seg-${String(firstSeq).padStart(16, '0')}.ndjson`;
}

/** Segment files present on disk, sorted. */
export function listSegmentFiles(p: AuditPaths): string[] {
  if (!existsSync(p.segments)) return [];
  return readdirSync(p.segments)
    .filter((f) => /^seg-[0-9]{16}\.ndjson$/.test(f))
    .sort();
}

const CHUNK = 1024 * 1024;

/**
 * Call `onLine` for every newline-terminated line of `file` from byte `start`, with the line's
 * bytes (without the newline) and its offset; return the offset after the last complete line and
 * the bytes of any incomplete tail. Memory stays at one chunk plus the longest line.
 */
export function forEachLine(
  file: string,
  start: number,
  onLine: (line: Buffer, offset: number) => boolean,
): { end: number; tail: Buffer } {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    if (!fstatSync(fd).isFile()) throw corrupt(file, 'not a regular file');
    let buf = Buffer.allocUnsafe(CHUNK);
    let have = 0;
    let base = start;
    let pos = start;
    for (;;) {
      if (have === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, have);
        buf = bigger;
      }
      const n = readSync(fd, buf, have, buf.length - have, pos);
      if (n === 0) break;
      pos += n;
      have += n;
      let from = 0;
      for (;;) {
        const nl = buf.indexOf(0x0a, from);
        if (nl < 0 || nl >= have) break;
        if (!onLine(buf.subarray(from, nl), base + from)) {
          return { end: base + nl + 1, tail: Buffer.alloc(0) };
        }
        from = nl + 1;
      }
      buf.copy(buf, 0, from, have);
      have -= from;
      base += from;
    }
    return { end: base, tail: Buffer.from(buf.subarray(0, have)) };
  } finally {
    closeSync(fd);
  }
}

/**
 * The last complete (newline-terminated) line of an open file, read backwards from its end, and
 * where complete lines end (bytes after that are an unfinished line). Undefined when the file
 * holds no complete line.
 */
export function lastCompleteLine(
  fd: number,
  size: number,
): { line: Buffer; start: number; end: number } | undefined {
  const chunk = Buffer.allocUnsafe(64 * 1024);
  // Newline positions are searched right to left from `from` (exclusive).
  const newlineBefore = (from: number): number => {
    for (let pos = from; pos > 0;) {
      const len = Math.min(chunk.length, pos);
      pos -= len;
      readSync(fd, chunk, 0, len, pos);
      const i = chunk.subarray(0, len).lastIndexOf(0x0a);
      if (i >= 0) return pos + i;
    }
    return -1;
  };
  const last = newlineBefore(size);
  if (last < 0) return undefined;
  const start = newlineBefore(last) + 1;
  const line = Buffer.allocUnsafe(last - start);
  readSync(fd, line, 0, line.length, start);
  return { line, start, end: last + 1 };
}
