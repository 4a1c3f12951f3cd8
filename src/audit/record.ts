import { sha256Hex } from './hash.js';
import {
  canonicalize,
  canonicalizeWellFormed,
  canonicalizeOrdered,
} from '../manifest/canonical.js';
import { isBuiltEvent } from './events.js';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';

/**
 * One line of the chained log: `{"event":…,"hash":…,"prev":…,"seq":…,"time":…}` in RFC 8785
 * canonical form, where `hash` is SHA-256 over the canonical form of the same object without
 * `hash`. Because canonical JSON sorts keys, the hashed bytes are exactly the line with the
 * `,"hash":"…"` member cut out, so a verifier can check a record without re-serialising it.
 */
export interface AuditRecord {
  readonly seq: number;
  /** ISO 8601 UTC time the record was appended, millisecond precision. */
  readonly time: string;
  /** Hex SHA-256 of the previous record (64 zeros for the first). */
  readonly prev: string;
  readonly hash: string;
  readonly event: Record<string, unknown>;
}

export type RecordErrorCode = 'AUDIT_RECORD_MALFORMED' | 'AUDIT_EVENT_INVALID';

export const GENESIS = '0'.repeat(64);

const EVENT_KEY = Buffer.from('{"event":');
const HASH_KEY = Buffer.from(',"hash":"');
const PREV_KEY = Buffer.from('","prev":"');
const SEQ_KEY = Buffer.from('","seq":');
const TIME_KEY = Buffer.from(',"time":"');
const HEX = /^[0-9a-f]{64}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Encode a record; `event` must already be canonical JSON text. Returns the line without `\n`. */
export function encodeRecord(
  seq: number,
  time: string,
  prev: string,
  eventJson: string,
): { line: string; hash: string } {
  const tail = `"prev":"${prev}","seq":${seq},"time":"${time}"}`;
  const hash = sha256Hex('{"event":' + eventJson + ',' + tail);
  return { line: `{"event":${eventJson},"hash":"${hash}",${tail}`, hash };
}

/**
 * Canonical JSON of an event, refusing anything the exported form could not round-trip.
 * `wellFormed`: every string in it was checked for lone surrogates where it was received.
 */
export function canonicalEvent(
  event: Readonly<Record<string, unknown>>,
  wellFormed = false,
): string {
  const meta = event['metadata'] as Record<string, unknown> | undefined;
  const unmapped = event['unmapped'] as Record<string, unknown> | undefined;
  if (
    meta === undefined ||
    'sequence' in meta ||
    (unmapped !== undefined && (Object.keys(unmapped).length === 0 || EXPORT_KEY in unmapped))
  ) {
    throw new CordonError(
      'AUDIT_EVENT_INVALID',
      'events carry metadata, never metadata.sequence, an empty unmapped or unmapped.' + EXPORT_KEY,
      { hint: 'build events with the builders in src/audit/events.ts' },
    );
  }
  if (!isBuiltEvent(event)) return wellFormed ? canonicalizeWellFormed(event) : canonicalize(event);
  // Builder output is in canonical order by construction. Every 64th is compared with the exact
  // form, so code that changes events after building them is found, loudly.
  if ((sampled++ & 63) !== 0) return canonicalizeOrdered(event);
  const exact = canonicalize(event);
  if (canonicalizeOrdered(event) !== exact) {
    throw new CordonError('AUDIT_EVENT_INVALID', 'an event was changed after it was built', {
      hint: 'events are values: build a new one instead of editing one',
    });
  }
  return exact;
}

let sampled = 0;

/** What the fast scan of one line yields. */
export interface ScannedRecord {
  readonly seq: number;
  readonly prev: string;
  readonly hash: string;
  readonly time: string;
  /** Whether SHA-256 of the line without its hash member equals `hash`. */
  readonly hashOk: boolean;
}

let scratch = Buffer.allocUnsafe(64 * 1024);

/** SHA-256 (hex) of `line` with bytes [cut, resume) left out, without allocating per call. */
function hashWithout(line: Buffer, cut: number, resume: number): string {
  const len = cut + line.length - resume;
  if (scratch.length < len) scratch = Buffer.allocUnsafe(len * 2);
  line.copy(scratch, 0, 0, cut);
  line.copy(scratch, cut, resume);
  return sha256Hex(scratch.subarray(0, len));
}

function malformed(why: string): CordonError {
  return new CordonError('AUDIT_RECORD_MALFORMED', `audit record is malformed: ${why}`, {
    hint: 'the line is not one Cordon wrote; run `cordon audit verify` for the full report',
  });
}

function matchAt(line: Buffer, at: number, key: Buffer): boolean {
  return (
    line.length >= at + key.length && line.compare(key, 0, key.length, at, at + key.length) === 0
  );
}

/**
 * Check one line (without its newline) byte for byte. The top-level `hash` member is the last
 * `,"hash":"` in the line: everything after it is fixed-shape, and a `"` inside the event is
 * always escaped, so nothing in the event can look like it.
 */
export function scanRecord(line: Buffer): ScannedRecord {
  if (line.length < 200 || line[0] !== 0x7b || line[line.length - 1] !== 0x7d) {
    throw malformed('not a JSON object of the record shape');
  }
  if (!matchAt(line, 0, EVENT_KEY)) throw malformed('no leading event');
  const h = line.lastIndexOf(HASH_KEY);
  if (h < 0) throw malformed('no hash member');
  const hashStart = h + HASH_KEY.length;
  const hash = line.toString('latin1', hashStart, hashStart + 64);
  const prevAt = hashStart + 64;
  if (!matchAt(line, prevAt, PREV_KEY)) throw malformed('prev does not follow hash');
  const prev = line.toString('latin1', prevAt + PREV_KEY.length, prevAt + PREV_KEY.length + 64);
  const seqAt = prevAt + PREV_KEY.length + 64;
  if (!matchAt(line, seqAt, SEQ_KEY)) throw malformed('seq does not follow prev');
  let i = seqAt + SEQ_KEY.length;
  let seq = 0;
  const digitsStart = i;
  for (let c = line[i] ?? 0; c >= 0x30 && c <= 0x39; c = line[++i] ?? 0) seq = seq * 10 + c - 0x30;
  const digits = i - digitsStart;
  if (digits === 0 || digits > 15 || (digits > 1 && line[digitsStart] === 0x30) || seq < 1) {
    throw malformed('seq is not a positive integer');
  }
  if (!matchAt(line, i, TIME_KEY)) throw malformed('time does not follow seq');
  const timeStart = i + TIME_KEY.length;
  const time = line.toString('latin1', timeStart, line.length - 2);
  if (line[line.length - 2] !== 0x22 || !ISO.test(time))
    throw malformed('time is not ISO 8601 UTC');
  // A hash or prev that is not hex cannot match a digest or the previous record: the checks
  // below report it as modified without a separate test.
  const digest = hashWithout(line, h, hashStart + 65);
  return { seq, prev, hash, time, hashOk: digest === hash };
}

export const EXPORT_KEY = 'cordon_audit';

/**
 * The exported (SIEM) form of a record: the OCSF event itself, with the record's `seq` in
 * `metadata.sequence` and `prev`, `hash` and `time` in `unmapped.cordon_audit`, so a copy in a
 * SIEM can still be checked offline.
 */
export function toExported(record: AuditRecord): Record<string, unknown> {
  const event = record.event;
  const unmapped = (event['unmapped'] as Record<string, unknown> | undefined) ?? {};
  return {
    ...event,
    metadata: { ...(event['metadata'] as Record<string, unknown>), sequence: record.seq },
    unmapped: {
      ...unmapped,
      [EXPORT_KEY]: { hash: record.hash, prev: record.prev, time: record.time },
    },
  };
}

/** Undo {@link toExported}: the record as it was hashed, and the hash the copy claims. */
export function fromExported(exported: unknown): AuditRecord {
  const bad = (why: string) => malformed(`exported event ${why}`);
  if (typeof exported !== 'object' || exported === null || Array.isArray(exported))
    throw bad('is not an object');
  const { metadata, unmapped, ...rest } = exported as Record<string, unknown>;
  if (typeof metadata !== 'object' || metadata === null) throw bad('has no metadata');
  const { sequence, ...meta } = metadata as Record<string, unknown>;
  if (typeof unmapped !== 'object' || unmapped === null) throw bad(`has no unmapped.${EXPORT_KEY}`);
  const { [EXPORT_KEY]: mirror, ...otherUnmapped } = unmapped as Record<string, unknown>;
  const m = mirror as { hash?: unknown; prev?: unknown; time?: unknown } | undefined;
  if (
    typeof sequence !== 'number' ||
    !Number.isSafeInteger(sequence) ||
    sequence < 1 ||
    typeof m?.hash !== 'string' ||
    typeof m.prev !== 'string' ||
    typeof m.time !== 'string' ||
    !HEX.test(m.hash) ||
    !HEX.test(m.prev) ||
    !ISO.test(m.time)
  ) {
    throw bad(`lacks metadata.sequence or unmapped.${EXPORT_KEY} {hash, prev, time}`);
  }
  const event: Record<string, unknown> = { ...rest, metadata: meta };
  if (Object.keys(otherUnmapped).length > 0) event['unmapped'] = otherUnmapped;
  return { seq: sequence, time: m.time, prev: m.prev, hash: m.hash, event };
}

// Checkpoint records are written by the log itself in canonical key order, so they all begin
// this way; testing a prefix is much cheaper than searching every line.
const CHECKPOINT_PREFIX = Buffer.from('{"event":{"activity_id":99,"activity_name":"Checkpoint",');

/** Whether a record line carries a signed checkpoint. */
export function isCheckpointLine(line: Buffer): boolean {
  return (
    line.length > CHECKPOINT_PREFIX.length &&
    line.compare(CHECKPOINT_PREFIX, 0, CHECKPOINT_PREFIX.length, 0, CHECKPOINT_PREFIX.length) === 0
  );
}

/** The signed note a checkpoint record carries (undefined when it has none). */
export function checkpointNoteOf(line: Buffer): string | undefined {
  const v = parseStrictJson(line, { maxBytes: 64 * 1024 * 1024, maxDepth: 256 }) as {
    event?: { unmapped?: { checkpoint?: unknown } };
  };
  const note = v.event?.unmapped?.checkpoint;
  return typeof note === 'string' ? note : undefined;
}

/** Length of the `"hash":"<64 hex>",` member slid in between the event and `prev`. */
const TAIL_SHIFT = '"hash":"'.length + 64 + '",'.length;

/**
 * Encodes records straight into one growing buffer for a group write: the event's UTF-8 bytes
 * are written once, hashed in place, and the `hash` member is slid in before `prev`. Produces
 * exactly the bytes of {@link encodeRecord}.
 */
export class RecordWriter {
  #buf = Buffer.allocUnsafe(1024 * 1024);
  #len = 0;
  #count = 0;

  get length(): number {
    return this.#len;
  }

  get count(): number {
    return this.#count;
  }

  /** The encoded records (valid until the next `reset`). */
  bytes(): Buffer {
    return this.#buf.subarray(0, this.#len);
  }

  reset(): void {
    this.#len = 0;
    this.#count = 0;
  }

  #ensure(extra: number): void {
    if (this.#len + extra <= this.#buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + extra));
    this.#buf.copy(bigger, 0, 0, this.#len);
    this.#buf = bigger;
  }

  /** Append one record (event already canonical JSON); returns its hash. */
  append(seq: number, time: string, prev: string, eventJson: string): string {
    const tail = `"prev":"${prev}","seq":${seq},"time":"${time}"}`;
    this.#ensure(eventJson.length * 3 + tail.length + 100);
    const buf = this.#buf;
    const start = this.#len;
    let p = start + buf.write('{"event":', start, 'latin1');
    p += buf.write(eventJson, p, 'utf8');
    buf[p++] = 0x2c; // ,
    const tailAt = p;
    p += buf.write(tail, p, 'latin1');
    const hash = sha256Hex(buf.subarray(start, p));
    // Slide the tail right and put `"hash":"…",` where it was.
    buf.copyWithin(tailAt + TAIL_SHIFT, tailAt, p);
    let q = tailAt + buf.write('"hash":"', tailAt, 'latin1');
    q += buf.write(hash, q, 'latin1');
    buf[q] = 0x22; // "
    buf[q + 1] = 0x2c; // ,
    p += TAIL_SHIFT;
    buf[p++] = 0x0a;
    this.#len = p;
    this.#count++;
    return hash;
  }
}
