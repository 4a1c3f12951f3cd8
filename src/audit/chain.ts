import { CordonError } from '../errors.js';
import { MerkleFrontier, recordLeaf } from './merkle.js';
import {
  noteHash,
  openNote,
  parseCheckpointText,
  type Checkpoint,
  type NoteVerifier,
} from './note.js';
import type { PreparedBlock } from './prepare.js';
import { GENESIS } from './record.js';

/**
 * The verdict logic of `cordon audit verify`, fed one record at a time so that a log of any
 * length is checked in constant memory: record hashes, the hash chain, sequence numbers, the
 * RFC 9162 Merkle root at every signed checkpoint met in the stream, and checkpoints given from
 * outside (the copy that left the machine). The first problem found is classified by kind.
 */
export type DamageKind =
  | 'modified'
  | 'deleted'
  | 'inserted'
  | 'reordered'
  | 'truncated'
  | 'segment-missing'
  | 'checkpoint-invalid';

export interface Damage {
  readonly kind: DamageKind;
  /** The first bad record's seq (as written in the file), when there is one. */
  readonly seq?: number;
  /** File and line, or file and byte offset. */
  readonly location: string;
  readonly detail: string;
}

export interface ChainReport {
  readonly ok: boolean;
  readonly records: number;
  readonly firstSeq: number | undefined;
  readonly lastSeq: number | undefined;
  readonly lastHash: string | undefined;
  /** Signed checkpoints whose signature and Merkle root were checked. */
  readonly checkpointsVerified: number;
  /** Largest tree size proven by a signed checkpoint. */
  readonly provenSize: number;
  /**
   * The last record covered by a signed checkpoint, counting the record that carries the
   * checkpoint (which is itself signed): records after it are protected only by the chain.
   */
  readonly signedThrough: number;
  readonly damage?: Damage;
  /** Duplicate deliveries skipped (exported copies only). */
  readonly duplicates: number;
  /**
   * Largest tree size signed by a checkpoint from outside the writer's reach (a witness, or a
   * checkpoint shipped off the machine) that the log was found to hold: records 1..this are
   * proven present, not only intact. 0 when there is no such checkpoint.
   */
  readonly witnessedSize: number;
}

/** A checkpoint a witness holds (see witness.ts). */
export interface WitnessedCheckpoint {
  /** SHA-256 of the signed note, hex. */
  readonly hash: string;
  readonly note: string;
  readonly size: number;
  readonly location: string;
}

export interface ChainRecord {
  readonly seq: number;
  readonly prev: string;
  readonly hash: string;
  readonly hashOk: boolean;
  /** The signed note when this record carries a checkpoint. */
  readonly checkpoint?: string;
}

export interface ChainVerifierOptions {
  readonly verifiers: readonly NoteVerifier[];
  /**
   * Checkpoints from outside the log: the log must reach and match them. `witness` marks one the
   * writer cannot take back (shipped off the machine), which proves the records it covers present.
   */
  readonly external?: readonly { note: string; source: string; witness?: boolean }[];
  /** A witness's checkpoints: each must be one of the log's own, verified, checkpoints. */
  readonly witness?: readonly WitnessedCheckpoint[];
  /** Keep the hashes of these records (see {@link ChainVerifier.hashAt}). */
  readonly remember?: ReadonlySet<number>;
  /** Exported copies may hold a record twice (at-least-once delivery); skip exact repeats. */
  readonly allowDuplicates?: boolean;
  /** Where the stream starts when it is not the whole log. */
  readonly startSeq?: number;
  readonly startPrev?: string;
}

interface Seen {
  seq: number;
  hash: string;
  prev: string;
  location: string;
}

const LOOKAHEAD = 8;

export class ChainVerifier {
  readonly #verifiers: readonly NoteVerifier[];
  readonly #allowDuplicates: boolean;
  readonly #frontier = new MerkleFrontier();
  readonly #external: { cp: Checkpoint; source: string; witness: boolean }[] = [];
  /** Witnessed checkpoints not yet found in the log, by note hash. */
  readonly #witness = new Map<string, WitnessedCheckpoint>();
  #witnessedSize = 0;
  readonly #remember: ReadonlySet<number>;
  readonly #remembered = new Map<number, { hash: string; checkpoint?: string }>();
  readonly #recent = new Map<number, string>();
  #expected: number;
  #prevHash: string;
  #first: number | undefined;
  #last: Seen | undefined;
  #beforeLast: Seen | undefined;
  #records = 0;
  #duplicates = 0;
  #checkpoints = 0;
  #provenSize = 0;
  #signedThrough = 0;
  #lastNoteHash: Buffer | undefined;
  #damage: Damage | undefined;
  /** A suspect ordering problem waiting for a few more records to be classified. */
  #suspect: { rec: Seen; expected: number; after: Seen[] } | undefined;
  /** Whether the Merkle tree covers the stream from record 1. */
  readonly #fromGenesis: boolean;

  constructor(opts: ChainVerifierOptions) {
    this.#verifiers = opts.verifiers;
    this.#allowDuplicates = opts.allowDuplicates ?? false;
    this.#expected = opts.startSeq ?? 1;
    this.#prevHash = opts.startPrev ?? GENESIS;
    this.#fromGenesis = this.#expected === 1;
    for (const e of opts.external ?? []) {
      const opened = this.#open(e.note, e.source);
      if (opened !== undefined) {
        this.#external.push({ cp: opened, source: e.source, witness: e.witness === true });
      }
    }
    for (const w of opts.witness ?? []) this.#witness.set(w.hash, w);
    this.#remember = opts.remember ?? new Set();
  }

  get damaged(): boolean {
    return this.#damage !== undefined;
  }

  /** Report damage found outside the record stream (the segment index, missing files). */
  fail(d: Damage): void {
    this.#damage ??= d;
  }

  #open(note: string, source: string): Checkpoint | undefined {
    try {
      const { text } = openNote(note, this.#verifiers);
      return parseCheckpointText(text);
    } catch (e) {
      this.fail({
        kind: 'checkpoint-invalid',
        location: source,
        detail: e instanceof CordonError ? `${e.code}: ${e.message}` : String(e),
      });
      return undefined;
    }
  }

  /** Feed the next record in stream order. Returns false once damage is known (stop reading). */
  add(rec: ChainRecord, location: string): boolean {
    if (this.#damage !== undefined) return false;
    const seen: Seen = { seq: rec.seq, hash: rec.hash, prev: rec.prev, location };
    if (this.#suspect !== undefined) {
      this.#suspect.after.push(seen);
      if (this.#suspect.after.length >= LOOKAHEAD) this.#classify();
      return this.#damage === undefined;
    }
    if (!rec.hashOk) {
      this.fail({
        kind: 'modified',
        seq: rec.seq,
        location,
        detail: `record ${rec.seq} does not match its hash`,
      });
      return false;
    }
    if (this.#allowDuplicates && this.#recent.get(rec.seq) === rec.hash) {
      this.#duplicates++;
      return true;
    }
    if (rec.seq !== this.#expected) {
      this.#suspect = { rec: seen, expected: this.#expected, after: [] };
      return true;
    }
    if (rec.prev !== this.#prevHash) {
      const last = this.#last;
      const inserted =
        last !== undefined && this.#beforeLast !== undefined && rec.prev === this.#beforeLast.hash;
      this.fail(
        inserted
          ? {
              kind: 'inserted',
              seq: last.seq,
              location: last.location,
              detail: `record ${last.seq} is not part of the chain: the next record links past it`,
            }
          : {
              kind: 'modified',
              seq: rec.seq,
              location,
              detail: `record ${rec.seq} does not link to record ${rec.seq - 1} (its prev hash differs)`,
            },
      );
      return false;
    }
    // The record is in place. Check any checkpoint it carries before counting it.
    if (rec.checkpoint !== undefined && !this.#checkpoint(rec.checkpoint, rec.seq, location)) {
      return false;
    }
    this.#frontier.push(recordLeaf(rec.hash));
    if (this.#remember.has(rec.seq)) {
      this.#remembered.set(rec.seq, {
        hash: rec.hash,
        ...(rec.checkpoint === undefined ? {} : { checkpoint: rec.checkpoint }),
      });
    }
    this.#records++;
    this.#first ??= rec.seq;
    this.#beforeLast = this.#last;
    this.#last = seen;
    this.#expected = rec.seq + 1;
    this.#prevHash = rec.hash;
    if (this.#allowDuplicates) {
      this.#recent.set(rec.seq, rec.hash);
      if (this.#recent.size > 100_000) {
        for (const k of this.#recent.keys()) {
          this.#recent.delete(k);
          break;
        }
      }
    }
    for (const e of this.#external) {
      if (this.#fromGenesis && e.cp.size === this.#frontier.size) this.#matchExternal(e, location);
    }
    return this.#damage === undefined;
  }

  /** The hash of a record named in `remember` (or a recent one of an exported copy), once it is in the chain. */
  hashAt(seq: number): string | undefined {
    return this.#remembered.get(seq)?.hash ?? this.#recent.get(seq);
  }

  /** The signed note a record named in `remember` carries, once it is in the chain. */
  checkpointAt(seq: number): string | undefined {
    return this.#remembered.get(seq)?.checkpoint;
  }

  /** The hash of a recent record by seq (exported copies only): a repeat is not a reorder. */
  lastHashOf(seq: number): string | undefined {
    return this.#recent.get(seq);
  }

  /** Tree sizes of the checkpoints given from outside (block preparers split there). */
  get externalSizes(): number[] {
    return this.#external.map((e) => e.cp.size);
  }

  /**
   * Take a whole prepared block at once when it is clean (every record well formed, matching
   * its hash and linked to the one before with the next seq): only its first record is checked
   * against the chain so far, and its Merkle leaves arrive as aligned subtree roots. Returns false
   * when the block needs the record-by-record path (which also classifies any damage).
   */
  tryBlock(b: PreparedBlock, locate: (k: number) => string): boolean {
    if (
      this.#damage !== undefined ||
      !b.clean ||
      this.#suspect !== undefined ||
      this.#allowDuplicates ||
      !this.#fromGenesis ||
      b.firstSeq !== this.#expected ||
      b.firstPrev !== this.#prevHash
    ) {
      return false;
    }
    const notes = new Map(b.notes);
    for (const run of b.runs) {
      const note = notes.get(run.start);
      if (
        note !== undefined &&
        !this.#checkpoint(note, b.firstSeq + run.start, locate(run.start))
      ) {
        return true;
      }
      run.heights.forEach((height, i) => {
        this.#frontier.pushSubtree(run.roots[i] ?? '', height);
      });
      for (const e of this.#external) {
        if (e.cp.size === this.#frontier.size) {
          this.#matchExternal(e, locate(this.#frontier.size - b.firstSeq));
        }
      }
      if (this.#damage !== undefined) return true;
    }
    const n = b.count;
    const lastSeq = b.firstSeq + n - 1;
    this.#records += n;
    this.#first ??= b.firstSeq;
    this.#beforeLast =
      n >= 2
        ? { seq: lastSeq - 1, hash: b.beforeLastHash, prev: '', location: locate(n - 2) }
        : this.#last;
    this.#last = { seq: lastSeq, hash: b.lastHash, prev: '', location: locate(n - 1) };
    this.#expected = lastSeq + 1;
    this.#prevHash = b.lastHash;
    return true;
  }

  #checkpoint(note: string, seq: number, location: string): boolean {
    const cp = this.#open(note, `checkpoint in record ${seq} (${location})`);
    if (cp === undefined) return false;
    if (
      this.#lastNoteHash !== undefined &&
      (cp.prev === undefined || !cp.prev.equals(this.#lastNoteHash))
    ) {
      this.fail({
        kind: 'checkpoint-invalid',
        seq: seq,
        location,
        detail: `checkpoint in record ${seq} does not follow the previous checkpoint: one is missing or forged`,
      });
      return false;
    }
    const hash = noteHash(note);
    this.#lastNoteHash = hash;
    if (!this.#fromGenesis) {
      this.#checkpoints++;
      return true;
    }
    // A checkpoint is signed over records 1..size and written as record size + 1.
    const before = this.#frontier.size;
    if (before !== cp.size) {
      this.fail({
        kind: before > cp.size ? 'inserted' : 'deleted',
        seq: seq,
        location,
        detail: `checkpoint in record ${seq} was signed over ${cp.size} records but ${before} precede it: ${Math.abs(before - cp.size)} record(s) ${before > cp.size ? 'inserted' : 'deleted'} before it`,
      });
      return false;
    }
    if (!this.#frontier.root().equals(cp.root)) {
      this.fail({
        kind: 'modified',
        seq: seq,
        location,
        detail: `records 1..${cp.size} do not match the Merkle root signed in record ${seq}: records were modified and the chain recomputed`,
      });
      return false;
    }
    this.#checkpoints++;
    this.#provenSize = Math.max(this.#provenSize, cp.size);
    this.#signedThrough = Math.max(this.#signedThrough, cp.size + 1);
    const witnessed = this.#witness.get(hash.toString('hex'));
    if (witnessed !== undefined) {
      this.#witness.delete(witnessed.hash);
      this.#witnessedSize = Math.max(this.#witnessedSize, cp.size);
    }
    return true;
  }

  #matchExternal(e: { cp: Checkpoint; source: string; witness: boolean }, location: string): void {
    if (!this.#frontier.root().equals(e.cp.root)) {
      this.fail({
        kind: 'modified',
        seq: this.#last?.seq,
        location,
        detail: `records 1..${e.cp.size} do not match the Merkle root signed in ${e.source}`,
      } as Damage);
      return;
    }
    this.#checkpoints++;
    this.#provenSize = Math.max(this.#provenSize, e.cp.size);
    this.#signedThrough = Math.max(this.#signedThrough, e.cp.size);
    if (e.witness) this.#witnessedSize = Math.max(this.#witnessedSize, e.cp.size);
  }

  /**
   * A witnessed checkpoint the log does not hold: the log was cut back (its end is before the
   * checkpoint) or rewritten and re-signed (a different checkpoint stands at that size).
   */
  #missingWitnessed(): void {
    let worst: WitnessedCheckpoint | undefined;
    for (const w of this.#witness.values())
      if (worst === undefined || w.size > worst.size) worst = w;
    if (worst === undefined) return;
    // Only a checkpoint signed by the device's key is evidence; anything else in the witness is
    // itself damage.
    if (this.#open(worst.note, worst.location) === undefined) return;
    const have = this.#frontier.size;
    this.fail(
      worst.size >= have
        ? {
            kind: 'truncated',
            seq: have + 1,
            location: worst.location,
            detail: `the log ends at record ${this.#last?.seq ?? 0} but the witness holds a checkpoint signed over ${worst.size} records: records were removed (the local checkpoint state cannot show this; the witness can)`,
          }
        : {
            kind: 'modified',
            location: worst.location,
            detail: `the witness holds a checkpoint signed over records 1..${worst.size} that is not in the log: the log was rewritten and re-signed`,
          },
    );
  }

  /** Decide what an out-of-sequence record means, using the records that followed it. */
  #classify(): void {
    const s = this.#suspect;
    if (s === undefined) return;
    this.#suspect = undefined;
    const { rec, expected, after } = s;
    if (rec.seq > expected) {
      const back = after.findIndex((r) => r.seq === expected);
      this.fail(
        back >= 0
          ? {
              kind: 'reordered',
              seq: rec.seq,
              location: rec.location,
              detail: `record ${rec.seq} comes before record ${expected}`,
            }
          : {
              kind: 'deleted',
              seq: rec.seq,
              location: rec.location,
              detail:
                rec.seq - expected === 1
                  ? `record ${expected} is missing (found ${rec.seq} after ${expected - 1})`
                  : `records ${expected}..${rec.seq - 1} are missing`,
            },
      );
      return;
    }
    // A seq already used. If it shares its parent with the record that holds that seq, one of
    // the two was added; otherwise records were moved.
    const sameParent =
      this.#last !== undefined && rec.seq === this.#last.seq && rec.prev === this.#last.prev;
    this.fail(
      sameParent || rec.seq === expected - 1
        ? {
            kind: 'inserted',
            seq: rec.seq,
            location: rec.location,
            detail: `two records claim seq ${rec.seq}; one was inserted`,
          }
        : {
            kind: 'reordered',
            seq: rec.seq,
            location: rec.location,
            detail: `record ${rec.seq} appears after record ${expected - 1}`,
          },
    );
  }

  /** Finish the stream and produce the report. */
  finish(): ChainReport {
    if (this.#suspect !== undefined) this.#classify();
    if (this.#damage === undefined && this.#fromGenesis) this.#missingWitnessed();
    if (this.#damage === undefined) {
      for (const e of this.#external) {
        const have = this.#fromGenesis ? this.#frontier.size : (this.#last?.seq ?? 0);
        if (have < e.cp.size) {
          this.fail({
            kind: 'truncated',
            seq: have + 1,
            location: e.source,
            detail: `the log ends at record ${have} but ${e.source} was signed over ${e.cp.size} records`,
          });
          break;
        }
      }
    }
    return {
      ok: this.#damage === undefined,
      records: this.#records,
      firstSeq: this.#first,
      lastSeq: this.#last?.seq,
      lastHash: this.#last?.hash,
      checkpointsVerified: this.#checkpoints,
      provenSize: this.#provenSize,
      signedThrough: this.#signedThrough,
      duplicates: this.#duplicates,
      witnessedSize: this.#damage === undefined ? this.#witnessedSize : 0,
      ...(this.#damage === undefined ? {} : { damage: this.#damage }),
    };
  }
}
