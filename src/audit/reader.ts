import { closeSync, constants, existsSync, fstatSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseStrictJson } from '../manifest/json.js';
import { scanRecord, type AuditRecord } from './record.js';
import { forEachLine, lastCompleteLine, readIndex, type AuditPaths } from './store.js';

/** Where a reader stopped: the last record it handed out and the byte after it. */
export interface ReadPosition {
  readonly seq: number;
  readonly segment: string;
  readonly offset: number;
}

/** Parse a whole record line (for readers that need the event, not only the chain fields). */
export function parseRecordLine(line: Buffer): AuditRecord {
  const s = scanRecord(line);
  const v = parseStrictJson(line, { maxBytes: 64 * 1024 * 1024, maxDepth: 256 }) as {
    event: Record<string, unknown>;
  };
  return { seq: s.seq, time: s.time, prev: s.prev, hash: s.hash, event: v.event };
}

/**
 * Hand out complete records after `after` (a seq, or a position from a previous call) until
 * `onRecord` returns false or the log ends. Returns the position after the last record handed
 * out. A position whose segment no longer matches falls back to a scan by seq.
 */
export function readAfter(
  p: AuditPaths,
  after: number | ReadPosition,
  onRecord: (line: Buffer, seq: number) => boolean,
): ReadPosition | undefined {
  const index = readIndex(p);
  if (index === undefined) return undefined;
  const fromSeq = (typeof after === 'number' ? after : after.seq) + 1;
  let last: ReadPosition | undefined = typeof after === 'number' ? undefined : after;
  let i = index.segments.length - 1;
  while (i > 0 && (index.segments[i]?.firstSeq ?? 0) > fromSeq) i--;
  let stop = false;
  for (const seg of index.segments.slice(i)) {
    if (stop) break;
    const file = join(p.segments, seg.file);
    if (!existsSync(file)) continue;
    const start =
      typeof after !== 'number' && after.segment === seg.file && after.offset <= statSync(file).size
        ? after.offset
        : 0;
    forEachLine(file, start, (line, offset) => {
      const seq = scanRecord(line).seq;
      if (seq < fromSeq) return true;
      if (!onRecord(line, seq)) {
        stop = true;
        return false;
      }
      last = { seq, segment: seg.file, offset: offset + line.length + 1 };
      return true;
    });
  }
  return last;
}

/**
 * The last complete record of the log (seq 0 when empty), read from the end of the active
 * segment rather than by scanning it.
 */
export function logHead(p: AuditPaths): { seq: number; time?: string } {
  const index = readIndex(p);
  const active = index?.segments[index.segments.length - 1];
  if (active === undefined) return { seq: 0 };
  const file = join(p.segments, active.file);
  if (!existsSync(file)) return { seq: active.firstSeq - 1 };
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const last = lastCompleteLine(fd, fstatSync(fd).size);
    if (last === undefined) return { seq: active.firstSeq - 1 };
    const rec = scanRecord(last.line);
    return { seq: rec.seq, time: rec.time };
  } finally {
    closeSync(fd);
  }
}
