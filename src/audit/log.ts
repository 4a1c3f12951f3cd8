import { type KeyObject } from 'node:crypto';
import {
  closeSync,
  constants,
  fdatasync,
  fstatSync,
  ftruncateSync,
  fsyncSync,
  openSync,
  readSync,
  rmSync,
  statSync,
  write,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { CordonError } from '../errors.js';
import { lockExclusive } from '../native.js';
import { ensureDir, fsyncDir } from '../store/files.js';
import { logActivityEvent, type EventContext, type OcsfEvent } from './events.js';
import { MerkleFrontier, recordLeaf } from './merkle.js';
import { checkpointText, noteHash, signNote, verifierKey } from './note.js';
import { appendWitness, lastWitnessed } from './witness.js';
import {
  GENESIS,
  canonicalEvent,
  checkpointNoteOf,
  isCheckpointLine,
  RecordWriter,
  scanRecord,
} from './record.js';
import {
  auditPaths,
  forEachLine,
  lastCompleteLine,
  listSegmentFiles,
  readCheckpointState,
  readIndex,
  segmentName,
  writeCheckpointState,
  writeIndex,
  type AuditPaths,
  type CheckpointState,
  type SegmentEntry,
  type SegmentIndex,
} from './store.js';

export type LogErrorCode =
  'AUDIT_LOG_LOCKED' | 'AUDIT_LOG_CLOSED' | 'AUDIT_WRITE_FAILED' | 'AUDIT_LOG_CORRUPT';

export interface AuditLogOptions {
  /** Cordon's state directory; the log lives in `<stateDir>/audit`. */
  readonly stateDir: string;
  /** The device key that signs checkpoints (never a manifest-signing key). */
  readonly deviceKey: KeyObject;
  /** Checkpoint origin and signer name, e.g. `cordon.audit/<hostname>/<device key id prefix>`. */
  readonly origin: string;
  /** Who writes the log's own events (recovery, checkpoints). */
  readonly context: EventContext;
  /** Sign a checkpoint after this many records (default 1000). */
  readonly checkpointEvery?: number;
  /** ... or after this long with new records (default 60 s). */
  readonly checkpointIntervalMs?: number;
  /** Start a new segment past this size (default 64 MiB). */
  readonly segmentMaxBytes?: number;
  /** ... or when the segment is this old (default 24 h). */
  readonly segmentMaxAgeMs?: number;
  /** Clock in milliseconds (tests). */
  readonly now?: () => number;
  /** Told about every failed write, so an operator hears about a full disk. */
  readonly onError?: (e: CordonError) => void;
  /**
   * A file outside the writer's reach that every signed checkpoint is appended to (see
   * witness.ts): the log refuses to open when it is shorter than the witness's latest checkpoint.
   */
  readonly witness?: string;
}

export interface AppendResult {
  readonly seq: number;
  readonly hash: string;
}

export interface RecoveryReport {
  /** Bytes cut from a torn tail. */
  readonly cutBytes: number;
  /** Whether the previous writer ended without closing the log (its pid was still in the lock file). */
  readonly staleLock: boolean;
}

interface Waiter {
  resolve: (r: AppendResult) => void;
  reject: (e: Error) => void;
  seq: number;
  hash: string;
}

/** Records per group write at most: big enough to amortise the sync, small enough to pipeline. */
const BATCH_RECORDS = 2048;

interface Batch {
  readonly writer: RecordWriter;
  readonly waiters: Waiter[];
  lastSeq: number;
  lastHash: string;
  /** The checkpoint whose record is in this batch, saved once the batch is on disk. */
  checkpoint: CheckpointState | undefined;
}

interface LastCheckpoint {
  seq: number;
  time: number;
  noteHash: Buffer | undefined;
}

interface Head {
  seq: number;
  hash: string;
  frontier: MerkleFrontier;
}

const DEFAULTS = {
  checkpointEvery: 1000,
  checkpointIntervalMs: 60_000,
  segmentMaxBytes: 64 * 1024 * 1024,
  segmentMaxAgeMs: 24 * 60 * 60 * 1000,
};

function corrupt(file: string, why: string): CordonError {
  return new CordonError('AUDIT_LOG_CORRUPT', `${file}: ${why}`, {
    file,
    hint: 'the log was damaged or altered; run `cordon audit verify` and keep the files for investigation',
  });
}

/**
 * The chained, append-only audit log. One process writes a log at a time (it holds an flock on
 * `writer.lock` while the log is open);
 * `append` resolves only after the record is on disk, and appends that arrive while a write is
 * in flight share the next write and fsync (group commit). A failed write (full disk, I/O error)
 * rejects every append not yet on disk, rolls the file back to its last durable length, and keeps
 * the log usable once the cause is fixed.
 *
 * @example
 * const log = AuditLog.open({ stateDir, deviceKey, origin, context });
 * await log.append(fileActivityEvent(ctx, { activity: 'read', path: '/w/a' }));
 * await log.close();
 */
export class AuditLog {
  readonly paths: AuditPaths;
  readonly recovery: RecoveryReport;
  readonly #opts: Required<Omit<AuditLogOptions, 'onError' | 'witness'>> &
    Pick<AuditLogOptions, 'onError' | 'witness'>;
  /** The locked `writer.lock`: closing it (or dying) releases the log to the next writer. */
  readonly #lockFd: number;
  #index: SegmentIndex;
  #fd: number;
  #size: number;
  #segmentCreated: number;
  /** State including records queued but not yet on disk. */
  #head: Head;
  /** The last record on disk, and the active segment's length up to it. */
  #durable: { seq: number; hash: string; size: number };
  /**
   * Records waiting for a group write, oldest first, in batches of at most BATCH_RECORDS: a
   * bounded batch is acknowledged sooner, so appenders keep building records while the
   * previous batch is synced.
   */
  #queue: Batch[] = [];
  #freeWriters: RecordWriter[] = [];
  #flushing: Promise<void> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** The Merkle tree could not be rebuilt after a failed write: nothing more may be signed. */
  #broken = false;
  /** The last checkpoint: the seq of the record carrying it, when, and its note's hash. */
  #lastCheckpoint: LastCheckpoint;
  /** The last checkpoint whose record is on disk (what a failed write falls back to). */
  #durableCheckpoint: LastCheckpoint;
  #checkpointDue = false;
  #timer: NodeJS.Timeout | undefined;
  #lastError: CordonError | undefined;
  #stats = { writes: 0, records: 0, checkpoints: 0 };
  #timeMs = -1;
  #timeIso = '';

  private constructor(
    opts: AuditLogOptions,
    paths: AuditPaths,
    index: SegmentIndex,
    fd: number,
    size: number,
    head: Head,
    checkpoint: CheckpointState | undefined,
    recovery: RecoveryReport,
    lockFd: number,
  ) {
    this.#opts = { ...DEFAULTS, now: Date.now, ...opts };
    this.#lockFd = lockFd;
    this.paths = paths;
    this.#index = index;
    this.#fd = fd;
    this.#size = size;
    this.#segmentCreated = activeOf(index).created;
    this.#head = head;
    this.#durable = { seq: head.seq, hash: head.hash, size };
    this.recovery = recovery;
    this.#lastCheckpoint = {
      seq: checkpoint?.seq ?? 0,
      time: checkpoint === undefined ? this.#opts.now() : checkpoint.time * 1000,
      noteHash: checkpoint === undefined ? undefined : noteHash(checkpoint.note),
    };
    this.#durableCheckpoint = this.#lastCheckpoint;
    const interval = this.#opts.checkpointIntervalMs;
    this.#timer = setInterval(() => {
      if (this.#head.seq > this.#lastCheckpoint.seq && this.#queue.length === 0) {
        this.#checkpointDue = true;
        this.#kick();
      }
    }, interval);
    this.#timer.unref();
  }

  /**
   * Open (creating if needed) the log in `<stateDir>/audit`: take the writer lock, cut a torn tail
   * left by a crash and record that it happened, and roll the Merkle tree up to the last record.
   */
  static open(opts: AuditLogOptions): AuditLog {
    // A signer name or key that cannot sign a checkpoint is refused now, not at the first
    // checkpoint in the middle of a write.
    verifierKey(opts.origin, opts.deviceKey);
    const p = auditPaths(opts.stateDir);
    ensureDir(p.segments, 0o700);
    const lock = acquireLock(p.lock);
    try {
      return AuditLog.#openLocked(opts, p, lock);
    } catch (e) {
      closeSync(lock.fd);
      throw e;
    }
  }

  static #openLocked(
    opts: AuditLogOptions,
    p: AuditPaths,
    lock: { fd: number; stale: boolean },
  ): AuditLog {
    const now = (opts.now ?? Date.now)();
    let index = readIndex(p);
    if (index === undefined) {
      if (listSegmentFiles(p).length > 0) {
        throw corrupt(p.index, 'segments exist but the segment index is missing');
      }
      index = {
        version: 1,
        segments: [{ file: segmentName(1), firstSeq: 1, firstPrev: GENESIS, created: now }],
      };
      createSegment(p, segmentName(1));
      writeIndex(p, index);
    }
    const active = activeOf(index);
    const indexed = new Set(index.segments.map((x) => x.file));
    for (const f of listSegmentFiles(p)) {
      if (indexed.has(f)) continue;
      // A crash between creating the next segment and writing the index leaves it empty.
      const orphan = join(p.segments, f);
      if (f > active.file && statSync(orphan).size === 0) rmSync(orphan);
      else throw corrupt(orphan, 'a segment that the segment index does not list');
    }
    const activeFile = join(p.segments, active.file);
    const fd = openSegment(activeFile);
    let cutBytes = 0;
    let head: { seq: number; hash: string };
    let size: number;
    try {
      ({ head, size, cutBytes } = recoverTail(
        fd,
        activeFile,
        active.firstSeq - 1,
        active.firstPrev,
      ));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    let checkpoint = readCheckpointState(p);
    const witnessed = opts.witness === undefined ? undefined : lastWitnessed(opts.witness);
    if (witnessed !== undefined && witnessed.seq > head.seq) {
      closeSync(fd);
      throw corrupt(
        activeFile,
        `the log ends at record ${head.seq} but the witness ${opts.witness ?? ''} holds checkpoint ${witnessed.size} (in record ${witnessed.seq}): records were removed`,
      );
    }
    let frontier: MerkleFrontier;
    if (checkpoint !== undefined) {
      if (checkpoint.seq > head.seq) {
        closeSync(fd);
        throw corrupt(
          activeFile,
          `the log ends at record ${head.seq} but checkpoint ${checkpoint.size} was signed: records were removed`,
        );
      }
      frontier = new MerkleFrontier(
        checkpoint.size,
        checkpoint.frontier.map((h) => Buffer.from(h, 'hex')),
      );
    } else frontier = new MerkleFrontier();
    try {
      // A crash between writing a checkpoint record and saving the state file leaves the newer
      // checkpoint only in the log: pick it up, so the next checkpoint names it as `prev`.
      const newer = rollUp(p, index, frontier, head.seq);
      if (newer !== undefined && newer.seq > (checkpoint?.seq ?? 0)) {
        checkpoint = newer;
        writeCheckpointState(p, newer);
      }
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    const log = new AuditLog(
      opts,
      p,
      index,
      fd,
      size,
      { ...head, frontier },
      checkpoint,
      { cutBytes, staleLock: lock.stale },
      lock.fd,
    );
    if (cutBytes > 0) {
      void log
        .append(
          logActivityEvent(
            { ...opts.context, time: now },
            {
              activity: 'restart',
              detail: `recovered after a crash: cut ${cutBytes} bytes of an unfinished record after record ${head.seq}`,
              cutBytes,
              segment: activeFile,
            },
          ),
        )
        .catch(() => undefined);
    }
    return log;
  }

  /** The last record queued (not necessarily on disk yet). */
  get head(): AppendResult {
    return { seq: this.#head.seq, hash: this.#head.hash };
  }

  /** The last record on disk. */
  get durableHead(): AppendResult {
    return { seq: this.#durable.seq, hash: this.#durable.hash };
  }

  /** Writes (each one fsync) and records written by this process: records / writes is the group-commit factor. */
  get stats(): { readonly writes: number; readonly records: number; readonly checkpoints: number } {
    return { ...this.#stats };
  }

  /** The last write failure, if the most recent write failed. */
  get lastError(): CordonError | undefined {
    return this.#lastError;
  }

  /**
   * Append one event. Resolves with its seq and hash once it is on disk; rejects (and the caller
   * must then deny) when it cannot be made durable. `wellFormed`: every string in the event was
   * checked for lone surrogates where it was received (the endpoint service's transports do).
   */
  append(event: OcsfEvent, opts: { readonly wellFormed?: boolean } = {}): Promise<AppendResult> {
    if (this.#closed) {
      return Promise.reject(
        new CordonError('AUDIT_LOG_CLOSED', 'the audit log is closed', {
          hint: 'open the log again before appending',
        }),
      );
    }
    let json: string;
    try {
      if (event.class_uid === 1008 && event.activity_id === 99) {
        throw new CordonError(
          'AUDIT_EVENT_INVALID',
          'only the log itself writes checkpoint records',
          {
            hint: 'call checkpoint() to sign one',
          },
        );
      }
      json = canonicalEvent(event, opts.wellFormed === true);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    return new Promise<AppendResult>((resolve, reject) => {
      const { batch, seq, hash } = this.#record(json);
      batch.waiters.push({ resolve, reject, seq, hash });
      this.#kick();
    });
  }

  /** Sequence, chain and encode one record into the newest open batch. */
  #record(eventJson: string): { batch: Batch; seq: number; hash: string } {
    let batch = this.#queue[this.#queue.length - 1];
    if (batch === undefined || batch.writer.count >= BATCH_RECORDS) {
      const writer = this.#freeWriters.pop() ?? new RecordWriter();
      writer.reset();
      batch = { writer, waiters: [], lastSeq: 0, lastHash: '', checkpoint: undefined };
      this.#queue.push(batch);
    }
    const seq = this.#head.seq + 1;
    const ms = this.#opts.now();
    // Many records share a millisecond: format its time once.
    if (ms !== this.#timeMs) {
      this.#timeMs = ms;
      this.#timeIso = new Date(ms).toISOString();
    }
    const time = this.#timeIso;
    const hash = batch.writer.append(seq, time, this.#head.hash, eventJson);
    this.#head.frontier.push(recordLeaf(hash));
    this.#head.seq = seq;
    this.#head.hash = hash;
    batch.lastSeq = seq;
    batch.lastHash = hash;
    return { batch, seq, hash };
  }

  #kick(): void {
    if (this.#flushing !== undefined) return;
    this.#flushing = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.#drain())
      .catch((e: unknown) => {
        // Anything unexpected while writing fails what is queued (callers deny); it never
        // leaves an append waiting forever.
        const batch = this.#queue.shift();
        if (batch !== undefined) this.#fail(e, batch);
      })
      .finally(() => {
        this.#flushing = undefined;
        if (this.#queue.length > 0 || this.#checkpointDue) this.#kick();
      });
  }

  /** Wait until everything appended so far is on disk (or has failed). */
  async flush(): Promise<void> {
    while (this.#flushing !== undefined) await this.#flushing;
  }

  /** Sign a checkpoint now over everything appended so far. */
  async checkpoint(): Promise<void> {
    if (this.#head.seq > this.#lastCheckpoint.seq) {
      this.#checkpointDue = true;
      this.#kick();
    }
    await this.flush();
  }

  async #drain(): Promise<void> {
    for (;;) {
      this.#maybeCheckpoint();
      const batch = this.#queue.shift();
      if (batch === undefined) return;
      const buf = batch.writer.bytes();
      try {
        this.#maybeRotate(batch.lastSeq - batch.writer.count + 1);
        await writeDurably(this.#fd, buf);
      } catch (e) {
        this.#fail(e, batch);
        continue;
      }
      this.#size += buf.length;
      this.#stats.writes++;
      this.#stats.records += batch.writer.count;
      this.#durable = { seq: batch.lastSeq, hash: batch.lastHash, size: this.#size };
      this.#lastError = undefined;
      if (batch.checkpoint !== undefined) {
        this.#stats.checkpoints++;
        this.#durableCheckpoint = {
          seq: batch.checkpoint.seq,
          time: batch.checkpoint.time * 1000,
          noteHash: noteHash(batch.checkpoint.note),
        };
        try {
          writeCheckpointState(this.paths, batch.checkpoint);
        } catch {
          // The checkpoint is in the log itself; the state file only speeds up the next open.
        }
        if (this.#opts.witness !== undefined) {
          try {
            appendWitness(
              this.#opts.witness,
              batch.checkpoint.note,
              batch.checkpoint.size,
              batch.checkpoint.seq,
            );
          } catch (e) {
            // The log itself is durable; the witness only lags (verify proves completeness up
            // to the last checkpoint it holds). Say so, every time.
            this.#opts.onError?.(e as CordonError);
          }
        }
      }
      this.#freeWriters.push(batch.writer);
      for (const w of batch.waiters) w.resolve({ seq: w.seq, hash: w.hash });
    }
  }

  /** When a checkpoint is due, sign one over everything queued and queue it as the next record. */
  #maybeCheckpoint(): void {
    if (this.#broken) return;
    const now = this.#opts.now();
    const since = this.#head.seq - this.#lastCheckpoint.seq;
    const due =
      since > 0 &&
      (this.#checkpointDue ||
        since >= this.#opts.checkpointEvery ||
        now - this.#lastCheckpoint.time >= this.#opts.checkpointIntervalMs);
    this.#checkpointDue = false;
    if (!due) return;
    const size = this.#head.seq;
    const frontier = this.#head.frontier.clone();
    const text = checkpointText({
      origin: this.#opts.origin,
      size,
      root: frontier.root(),
      prev: this.#lastCheckpoint.noteHash,
      time: Math.floor(now / 1000),
    });
    const note = signNote(text, this.#opts.origin, this.#opts.deviceKey);
    const event = logActivityEvent(
      { ...this.#opts.context, time: now },
      {
        activity: 'checkpoint',
        detail: `signed checkpoint over records 1..${size}`,
        checkpoint: note,
      },
    );
    const { batch, seq } = this.#record(canonicalEvent(event));
    this.#lastCheckpoint = { seq, time: now, noteHash: noteHash(note) };
    batch.checkpoint = {
      version: 1,
      size,
      frontier: frontier.hashes.map((h) => h.toString('hex')),
      note,
      seq,
      time: Math.floor(now / 1000),
    };
  }

  #maybeRotate(firstSeq: number): void {
    const now = this.#opts.now();
    const tooBig = this.#size >= this.#opts.segmentMaxBytes;
    const tooOld = now - this.#segmentCreated >= this.#opts.segmentMaxAgeMs;
    if (this.#size === 0 || (!tooBig && !tooOld)) return;
    const file = segmentName(firstSeq);
    const segments = [...this.#index.segments];
    segments[segments.length - 1] = {
      ...activeOf({ version: 1, segments }),
      lastSeq: this.#durable.seq,
      lastHash: this.#durable.hash,
    };
    segments.push({ file, firstSeq, firstPrev: this.#durable.hash, created: now });
    createSegment(this.paths, file);
    const index: SegmentIndex = { version: 1, segments };
    writeIndex(this.paths, index);
    const fd = openSegment(join(this.paths.segments, file));
    closeSync(this.#fd);
    this.#fd = fd;
    this.#index = index;
    this.#size = 0;
    this.#durable = { ...this.#durable, size: 0 };
    this.#segmentCreated = now;
  }

  /** A write failed: nothing past the last durable record may stay, on disk or queued. */
  #fail(e: unknown, failed: Batch): void {
    const err = new CordonError(
      'AUDIT_WRITE_FAILED',
      `cannot write the audit log: ${(e as Error).message}`,
      {
        file: join(this.paths.segments, activeOf(this.#index).file),
        hint:
          (e as NodeJS.ErrnoException).code === 'ENOSPC'
            ? 'the disk is full; free space — actions are denied until the log can be written'
            : 'check the state directory; actions are denied until the log can be written',
        cause: e,
      },
    );
    try {
      ftruncateSync(this.#fd, this.#durable.size);
      fsyncSync(this.#fd);
    } catch {
      // The next recovery cuts whatever partial record remains.
    }
    this.#size = this.#durable.size;
    // Every queued record chains from the failed ones: all are refused, and the chain and the
    // Merkle tree go back to the last durable record (rebuilt from disk; this is the rare path).
    const refused = [failed, ...this.#queue];
    this.#queue = [];
    // If the tree cannot be rebuilt from disk either, the log refuses every later append rather
    // than chaining onto a state it cannot vouch for.
    let frontier: MerkleFrontier | undefined;
    try {
      const state = readCheckpointState(this.paths);
      frontier =
        state === undefined || state.size > this.#durable.seq
          ? new MerkleFrontier()
          : new MerkleFrontier(
              state.size,
              state.frontier.map((h) => Buffer.from(h, 'hex')),
            );
      rollUp(this.paths, this.#index, frontier, this.#durable.seq);
    } catch {
      frontier = undefined;
      this.#closed = true;
      this.#broken = true;
    }
    this.#head = {
      seq: this.#durable.seq,
      hash: this.#durable.hash,
      frontier: frontier ?? new MerkleFrontier(),
    };
    this.#lastCheckpoint = this.#durableCheckpoint;
    this.#lastError = err;
    this.#opts.onError?.(err);
    for (const b of refused) {
      for (const w of b.waiters) w.reject(err);
      this.#freeWriters.push(b.writer);
    }
  }

  /** Flush, sign a final checkpoint when there is anything new, and release the lock. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // Refuse new appends first, so nothing is queued after the final checkpoint and lost.
    this.#closed = true;
    if (this.#head.seq > this.#lastCheckpoint.seq) this.#checkpointDue = true;
    this.#kick();
    await this.flush();
    if (this.#timer !== undefined) clearInterval(this.#timer);
    closeSync(this.#fd);
    releaseLock(this.#lockFd);
  }
}

/**
 * Take the writer lock: an exclusive flock on `writer.lock`, held until `close()` or until the
 * process dies, when the kernel releases it. Two processes can never both hold it, however they
 * race, and nothing is ever deleted or taken over (deleting a lock file would let a process that
 * opened the old file and one that creates a new one both hold "the" lock). The file also holds
 * the writer's pid, for diagnostics only: a pid still there when the lock is taken means the
 * previous writer ended without closing the log.
 */
function acquireLock(lock: string): { fd: number; stale: boolean } {
  const fd = openSync(lock, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    if (!fstatSync(fd).isFile()) throw corrupt(lock, 'the writer lock is not a regular file');
    const previous = readSmall(fd);
    if (!lockExclusive(fd)) {
      const holder = /^[0-9]+$/.test(previous) ? `process ${previous}` : 'another process';
      throw new CordonError('AUDIT_LOG_LOCKED', `${holder} is writing this audit log`, {
        file: lock,
        hint: 'one Cordon process writes a log at a time; stop the other one or use its log',
      });
    }
    // Read again under the lock: the holder may have closed the log after the first read.
    const stale = readSmall(fd) !== '';
    try {
      ftruncateSync(fd, 0);
      writeSync(fd, String(process.pid), 0);
    } catch {
      // The pid is a diagnostic; a full disk must not keep the log from opening.
    }
    return { fd, stale };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Give the lock up after a clean close: empty the pid (so no one reports a crash), then close. */
function releaseLock(fd: number): void {
  try {
    ftruncateSync(fd, 0);
  } catch {
    // Only the diagnostic pid stays; the lock itself goes with the descriptor.
  }
  closeSync(fd);
}

function readSmall(fd: number): string {
  const buf = Buffer.alloc(64);
  const n = readSync(fd, buf, 0, buf.length, 0);
  return buf.subarray(0, n).toString('utf8').trim();
}

function createSegment(p: AuditPaths, file: string): void {
  const fd = openSync(
    join(p.segments, file),
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  fsyncSync(fd);
  closeSync(fd);
  fsyncDir(p.segments);
}

function openSegment(file: string): number {
  const fd = openSync(file, constants.O_RDWR | constants.O_APPEND | constants.O_NOFOLLOW);
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw corrupt(file, 'not a regular file');
  }
  return fd;
}

function writeDurably(fd: number, buf: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (off: number): void => {
      if (off === buf.length) {
        fdatasync(fd, (e) => (e === null ? resolve() : reject(e)));
        return;
      }
      write(fd, buf, off, buf.length - off, null, (e, n) => {
        if (e !== null) reject(e);
        else step(off + n);
      });
    };
    step(0);
  });
}

/**
 * Find the last complete record of the active segment. Bytes after the last newline are an
 * append that never finished (the writer acknowledges only after fsync, so no acknowledged record
 * is among them) and are cut; so are NUL bytes a filesystem may leave after a power loss. Any
 * other damage is refused, never "repaired".
 */
function recoverTail(
  fd: number,
  file: string,
  seqBefore: number,
  hashBefore: string,
): { head: { seq: number; hash: string }; size: number; cutBytes: number } {
  const total = fstatSync(fd).size;
  const last = lastCompleteLine(fd, total);
  const end = last?.end ?? 0;
  const cutBytes = total - end;
  if (last === undefined) {
    if (cutBytes > 0) ftruncateSync(fd, 0);
    return { head: { seq: seqBefore, hash: hashBefore }, size: 0, cutBytes };
  }
  let rec;
  try {
    rec = scanRecord(last.line);
  } catch {
    throw corrupt(file, `the last complete line (at byte ${last.start}) is not a record`);
  }
  if (!rec.hashOk) throw corrupt(file, `record ${rec.seq} does not match its hash`);
  if (cutBytes > 0) {
    ftruncateSync(fd, end);
    fsyncSync(fd);
  }
  return { head: { seq: rec.seq, hash: rec.hash }, size: end, cutBytes };
}

/** Push the hashes of records after the frontier's size up to `headSeq` (reading from disk). */
function rollUp(
  p: AuditPaths,
  index: SegmentIndex,
  frontier: MerkleFrontier,
  headSeq: number,
): CheckpointState | undefined {
  if (frontier.size >= headSeq) return undefined;
  const from = frontier.size + 1;
  let found: CheckpointState | undefined;
  let i = index.segments.length - 1;
  while (i > 0 && (index.segments[i]?.firstSeq ?? 0) > from) i--;
  for (const seg of index.segments.slice(i)) {
    const file = join(p.segments, seg.file);
    forEachLine(file, 0, (line) => {
      const rec = scanRecord(line);
      if (rec.seq < from) return true;
      if (rec.seq !== frontier.size + 1 || !rec.hashOk) {
        throw corrupt(
          file,
          `record ${rec.seq} breaks the sequence or its hash; expected ${frontier.size + 1}`,
        );
      }
      if (isCheckpointLine(line)) {
        const note = checkpointNoteOf(line);
        if (note !== undefined) {
          found = {
            version: 1,
            size: frontier.size,
            frontier: frontier.hashes.map((h) => h.toString('hex')),
            note,
            seq: rec.seq,
            time: Math.floor(Date.parse(rec.time) / 1000),
          };
        }
      }
      frontier.push(recordLeaf(rec.hash));
      return true;
    });
  }
  if (frontier.size !== headSeq) {
    throw corrupt(p.index, `records ${frontier.size + 1}..${headSeq} are missing`);
  }
  return found;
}

function activeOf(index: SegmentIndex): SegmentEntry {
  const active = index.segments[index.segments.length - 1];
  // The index schema requires at least one segment.
  if (active === undefined) throw new Error('segment index without segments');
  return active;
}
