import { z } from 'zod';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import {
  consistencyRanges,
  inclusionRanges,
  ProofBuilder,
  recordLeaf,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js';
import { openNote, parseCheckpointText, type NoteVerifier } from './note.js';
import { readAfter } from './reader.js';
import { checkpointNoteOf, isCheckpointLine, scanRecord } from './record.js';
import { readCheckpointState, type AuditPaths } from './store.js';

/**
 * Proofs for a partial copy of the log (records A..B, e.g. a time window). A hash chain alone
 * proves nothing about such a copy: anyone can edit its records and recompute the chain. What
 * does is a signed checkpoint over a tree that holds the copy's last record, with an RFC 9162
 * inclusion proof for it: each record's hash covers the previous record's hash, so the last
 * record fixes every record before it in the copy. A consistency proof to the log's latest
 * signed checkpoint shows the checkpoint used belongs to the same history.
 */
export type ProofErrorCode = 'AUDIT_PROOF_INVALID' | 'AUDIT_PROOF_UNAVAILABLE';

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/);

const ProofSchema = z.strictObject({
  version: z.literal(1),
  /** The signed checkpoint note whose tree holds `last`. */
  checkpoint: z.string(),
  /** The record whose inclusion is proven: the copy's last record under the checkpoint. */
  last: z.strictObject({ seq: z.number().int().min(1), hash: Hex64 }),
  /** RFC 9162 inclusion proof of leaf `last.seq - 1` in the checkpoint's tree. */
  inclusion: z.array(Hex64),
  /** RFC 9162 consistency proof from the checkpoint to the log's latest one, when newer. */
  consistency: z.strictObject({ checkpoint: z.string(), proof: z.array(Hex64) }).optional(),
});
export type ExportProof = z.infer<typeof ProofSchema>;

/** The key of the line that carries a proof in an exported NDJSON copy. */
export const PROOF_KEY = 'cordon_audit_proof';

function unavailable(message: string): CordonError {
  return new CordonError('AUDIT_PROOF_UNAVAILABLE', message, {
    hint: 'records after the last signed checkpoint can be proven once the next one is signed (every `everySeconds`, and when the writer closes)',
  });
}

/**
 * Build the proof for a copy of records `from..to`: the first signed checkpoint at or after `to`
 * (or, when `to` is past the last one, the last one, which then proves `from..its size` only).
 * Streams the log twice (to find the checkpoints, then to hash the proof's subtrees).
 */
export function buildExportProof(
  p: AuditPaths,
  from: number,
  to: number,
): { proof: ExportProof; through: number } {
  const latest = readCheckpointState(p);
  if (latest === undefined) throw unavailable('the log has no signed checkpoint yet');
  // The first checkpoint whose tree holds record `to`: checkpoint records sign every record
  // before them, so it is the first one written after `to`.
  let chosen: { note: string; size: number; seq: number } | undefined;
  readAfter(p, to, (line, seq) => {
    if (!isCheckpointLine(line)) return true;
    const note = checkpointNoteOf(line);
    if (note === undefined) return true;
    chosen = { note, size: parseCheckpointText(noteText(note)).size, seq };
    return false;
  });
  chosen ??= { note: latest.note, size: latest.size, seq: latest.seq };
  const last = Math.min(to, chosen.size);
  if (last < from) {
    throw unavailable(
      `records ${from}..${to} are after the last signed checkpoint (over ${chosen.size} records)`,
    );
  }
  const latestSize = latest.size;
  const inclusion = new ProofBuilder(inclusionRanges(last - 1, chosen.size));
  const consistency =
    latestSize > chosen.size
      ? new ProofBuilder(consistencyRanges(chosen.size, latestSize))
      : undefined;
  let lastHash = '';
  let seen = 0;
  readAfter(p, 0, (line, seq) => {
    if (seq > Math.max(chosen?.size ?? 0, latestSize)) return false;
    const rec = scanRecord(line);
    if (seq !== seen + 1 || !rec.hashOk) {
      throw new CordonError(
        'AUDIT_LOG_CORRUPT',
        `record ${seq} breaks the log's sequence or hash`,
        {
          hint: 'run `cordon audit verify` first',
        },
      );
    }
    seen = seq;
    if (seq === last) lastHash = rec.hash;
    const leaf = recordLeaf(rec.hash);
    inclusion.push(leaf);
    consistency?.push(leaf);
    return true;
  });
  // The record carrying the checkpoint counts as signed when the copy reaches it (see verify).
  const through =
    last === chosen.size && to >= chosen.seq && chosen.seq === last + 1 ? chosen.seq : last;
  const proof: ExportProof = {
    version: 1,
    checkpoint: chosen.note,
    last: { seq: last, hash: lastHash },
    inclusion: inclusion.hashes().map((h) => h.toString('hex')),
    ...(consistency === undefined
      ? {}
      : {
          consistency: {
            checkpoint: latest.note,
            proof: consistency.hashes().map((h) => h.toString('hex')),
          },
        }),
  };
  return { proof, through };
}

/** The text part of a signed note (without checking any signature). */
function noteText(note: string): string {
  const split = note.lastIndexOf('\n\n');
  return split < 0 ? note : note.slice(0, split + 1);
}

/** A proof line (`{"cordon_audit_proof": …}`) or undefined when the line is something else. */
export function proofOfLine(line: Buffer | string, location: string): ExportProof | undefined {
  const text = typeof line === 'string' ? line : line.toString('utf8');
  if (!text.startsWith(`{"${PROOF_KEY}"`)) return undefined;
  let v: unknown;
  try {
    v = parseStrictJson(text, { maxBytes: 16 * 1024 * 1024 });
  } catch (e) {
    throw new CordonError('AUDIT_PROOF_INVALID', `${location}: not valid JSON`, {
      file: location,
      cause: e,
    });
  }
  const r = z.strictObject({ [PROOF_KEY]: ProofSchema }).safeParse(v);
  if (!r.success) {
    throw new CordonError(
      'AUDIT_PROOF_INVALID',
      `${location}: not a proof: ${r.error.issues[0]?.message ?? ''}`,
      { file: location, hint: 'use the line `cordon audit export --proofs` wrote, unchanged' },
    );
  }
  return r.data[PROOF_KEY];
}

export interface ProofCheck {
  readonly ok: boolean;
  /** Records up to this seq are proven (when ok). */
  readonly through: number;
  /** Tree size of the checkpoint used. */
  readonly checkpointSize: number;
  /** Tree size of the latest checkpoint it was shown consistent with, if any. */
  readonly consistentWith?: number;
  readonly detail: string;
}

/**
 * Check a proof against the device's verifier keys and the hash the copy holds for `last.seq`
 * (undefined when the copy does not hold that record).
 */
export function checkExportProof(
  proof: ExportProof,
  copyHash: string | undefined,
  verifiers: readonly NoteVerifier[],
): ProofCheck {
  const fail = (detail: string, size = 0): ProofCheck => ({
    ok: false,
    through: 0,
    checkpointSize: size,
    detail,
  });
  let cp;
  try {
    cp = parseCheckpointText(openNote(proof.checkpoint, verifiers).text);
  } catch (e) {
    return fail(`the proof's checkpoint does not verify: ${(e as Error).message}`);
  }
  if (copyHash === undefined) {
    return fail(
      `the copy does not hold record ${proof.last.seq}, whose inclusion the proof shows`,
      cp.size,
    );
  }
  if (copyHash !== proof.last.hash) {
    return fail(
      `record ${proof.last.seq} in the copy is not the record the proof is for: records were rewritten and the chain recomputed`,
      cp.size,
    );
  }
  const leaf = Buffer.from(recordLeaf(proof.last.hash), 'latin1');
  const path = proof.inclusion.map((h) => Buffer.from(h, 'hex'));
  if (!verifyInclusion(proof.last.seq - 1, cp.size, leaf, path, cp.root)) {
    return fail(
      `record ${proof.last.seq} is not in the tree the checkpoint over ${cp.size} records signs: records were rewritten and the chain recomputed`,
      cp.size,
    );
  }
  let consistentWith: number | undefined;
  if (proof.consistency !== undefined) {
    let latest;
    try {
      latest = parseCheckpointText(openNote(proof.consistency.checkpoint, verifiers).text);
    } catch (e) {
      return fail(
        `the proof's latest checkpoint does not verify: ${(e as Error).message}`,
        cp.size,
      );
    }
    const c = proof.consistency.proof.map((h) => Buffer.from(h, 'hex'));
    if (!verifyConsistency(cp.size, latest.size, cp.root, latest.root, c)) {
      return fail(
        `the checkpoint over ${cp.size} records is not a prefix of the latest one over ${latest.size}: the log was rewritten and re-signed`,
        cp.size,
      );
    }
    consistentWith = latest.size;
  }
  return {
    ok: true,
    through: proof.last.seq,
    checkpointSize: cp.size,
    ...(consistentWith === undefined ? {} : { consistentWith }),
    detail: `record ${proof.last.seq} is in the tree signed by the checkpoint over ${cp.size} records (RFC 9162 inclusion proof)${consistentWith === undefined ? '' : `, which is consistent with the latest checkpoint over ${consistentWith}`}`,
  };
}
