import { closeSync, constants, existsSync, fdatasyncSync, fstatSync, openSync } from 'node:fs';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import { writeAll } from '../store/files.js';
import { noteHash } from './note.js';
import { forEachLine, lastCompleteLine } from './store.js';

/**
 * The checkpoint witness: a file outside the log's directory to which the writer appends every
 * signed checkpoint (one JSON line: the note, the tree size it signs and the seq of the record
 * that carries it). The log's own `checkpoint.json` is recomputable by whoever can write the log,
 * so it cannot tell a log cut back to an earlier checkpoint from a shorter one; a witness the
 * writer can only append to can. What keeps the writer from rewriting the witness is outside
 * Cordon: the file's append-only attribute (`chattr +a`, which only root can clear), a location
 * the writer's user cannot write, or a copy that has left the machine. Verification requires
 * every signed checkpoint in the witness to be in the log.
 */
export type WitnessErrorCode = 'AUDIT_WITNESS_FAILED' | 'AUDIT_WITNESS_INVALID';

export interface WitnessEntry {
  /** SHA-256 of the signed note, hex. */
  readonly hash: string;
  readonly note: string;
  /** Records 1..size are signed. */
  readonly size: number;
  /** The record that carries the note. */
  readonly seq: number;
  /** file:line, for reports. */
  readonly location: string;
}

/** Append one signed checkpoint to the witness durably (one write, O_APPEND). */
export function appendWitness(file: string, note: string, size: number, seq: number): void {
  try {
    const fd = openSync(
      file,
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
      0o600,
    );
    try {
      writeAll(fd, Buffer.from(JSON.stringify({ size, seq, note }) + '\n'));
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw new CordonError(
      'AUDIT_WITNESS_FAILED',
      `cannot append checkpoint ${size} to the witness ${file}: ${(e as Error).message}`,
      {
        file,
        hint: 'the writer must be able to append to the witness (and only append: see "Checkpoints" in the README)',
        cause: e,
      },
    );
  }
}

function entryOf(line: Buffer, location: string): WitnessEntry {
  let v: unknown;
  try {
    v = parseStrictJson(line, { maxBytes: 1024 * 1024 });
  } catch {
    v = undefined;
  }
  const o = v as { size?: unknown; seq?: unknown; note?: unknown } | undefined;
  if (
    typeof o !== 'object' ||
    o === null ||
    typeof o.note !== 'string' ||
    !Number.isSafeInteger(o.size) ||
    !Number.isSafeInteger(o.seq)
  ) {
    throw new CordonError('AUDIT_WITNESS_INVALID', `${location}: not a witnessed checkpoint`, {
      file: location,
      hint: 'each line of a witness is {"size":N,"seq":N,"note":"…signed note…"}',
    });
  }
  return {
    hash: noteHash(o.note).toString('hex'),
    note: o.note,
    size: o.size as number,
    seq: o.seq as number,
    location,
  };
}

/**
 * Every checkpoint in a witness, in file order. A last line without its newline is an append
 * that never finished (a crash) and is left out; any other malformed line is an error.
 */
export function readWitness(file: string): WitnessEntry[] {
  if (!existsSync(file)) return [];
  const out: WitnessEntry[] = [];
  let n = 0;
  try {
    forEachLine(file, 0, (line) => {
      n++;
      if (line.length > 0) out.push(entryOf(line, `${file}:${n}`));
      return true;
    });
  } catch (e) {
    if (e instanceof CordonError) throw e;
    throw new CordonError(
      'FILE_UNREADABLE',
      `cannot read the witness ${file}: ${(e as Error).message}`,
      {
        file,
        hint: 'run verify as a user who can read the witness',
        cause: e,
      },
    );
  }
  return out;
}

/** The witness's latest checkpoint (undefined when it has none). */
export function lastWitnessed(file: string): WitnessEntry | undefined {
  if (!existsSync(file)) return undefined;
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    if (!fstatSync(fd).isFile()) {
      closeSync(fd);
      throw new Error('not a regular file');
    }
  } catch (e) {
    // The writer cannot check the log against a witness it cannot read: it does not open.
    throw new CordonError(
      'AUDIT_WITNESS_INVALID',
      `cannot read the witness ${file}: ${(e as Error).message}`,
      {
        file,
        hint: 'point `witness.path` in audit.json at a regular file the writer can read and append to',
        cause: e,
      },
    );
  }
  try {
    const last = lastCompleteLine(fd, fstatSync(fd).size);
    return last === undefined ? undefined : entryOf(last.line, file);
  } finally {
    closeSync(fd);
  }
}
