import { createHash, generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  EMPTY_ROOT,
  MerkleFrontier,
  alignedSubtrees,
  leafHash,
  nodeHash,
} from '../../src/audit/merkle.js';
import {
  checkpointText,
  openNote,
  parseCheckpointText,
  parseVerifierKey,
  signNote,
  verifierKey,
} from '../../src/audit/note.js';
import { errorCode } from '../helpers.js';

/** RFC 9162 section 2.1.1, written as the RFC states it (recursive split at the largest power of 2). */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return createHash('sha256').digest();
  if (leaves.length === 1) return leafHash(leaves[0]!);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

describe('Merkle tree (RFC 9162)', () => {
  it('the empty tree hashes to SHA-256 of nothing', () => {
    expect(new MerkleFrontier().root().toString('hex')).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    expect(EMPTY_ROOT.equals(mth([]))).toBe(true);
  });

  it('the incremental frontier matches the recursive definition for every size (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 0, maxLength: 40 }), { maxLength: 130 }),
        (data) => {
          const leaves = data.map((d) => Buffer.from(d));
          const f = new MerkleFrontier();
          for (const l of leaves) f.push(leafHash(l));
          expect(f.root().equals(mth(leaves))).toBe(true);
          expect(f.size).toBe(leaves.length);
          // A frontier saved and restored continues identically.
          const restored = new MerkleFrontier(f.size, f.hashes);
          const extra = Buffer.from('one more');
          restored.push(leafHash(extra));
          expect(restored.root().equals(mth([...leaves, extra]))).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('aligned subtree roots pushed whole equal the leaves pushed one by one (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 300 }),
        fc.array(fc.integer({ min: 0, max: 70 }), { maxLength: 5 }),
        (before, runs) => {
          const one = new MerkleFrontier();
          const whole = new MerkleFrontier();
          let n = 0;
          const leaf = () => leafHash(Buffer.from(String(n++)));
          for (let i = 0; i < before; i++) {
            const l = leaf();
            one.push(l);
            whole.push(l);
          }
          for (const len of runs) {
            const leaves = Array.from({ length: len }, leaf);
            for (const l of leaves) one.push(l);
            for (const t of alignedSubtrees(whole.size, leaves))
              whole.pushSubtree(t.root, t.height);
            expect(whole.size).toBe(one.size);
            expect(whole.root().equals(one.root())).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
    expect(() =>
      new MerkleFrontier(3, [Buffer.alloc(32), Buffer.alloc(32)]).pushSubtree(Buffer.alloc(32), 1),
    ).toThrow(RangeError);
  });

  it('leaves and nodes are domain-separated (0x00 / 0x01 prefixes)', () => {
    const a = Buffer.alloc(32, 1);
    expect(
      leafHash(a).equals(
        createHash('sha256')
          .update(Buffer.from([0]))
          .update(a)
          .digest(),
      ),
    ).toBe(true);
    expect(
      nodeHash(a, a).equals(
        createHash('sha256')
          .update(Buffer.from([1]))
          .update(a)
          .update(a)
          .digest(),
      ),
    ).toBe(true);
  });

  it('refuses a frontier whose hashes do not fit its size', () => {
    expect(() => new MerkleFrontier(3, [Buffer.alloc(32)])).toThrow(RangeError);
  });
});

describe('signed notes (C2SP signed-note)', () => {
  it('verifies the reference example from the Go sumdb/note package', () => {
    const v = parseVerifierKey(
      'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
    );
    const note =
      'If you think cryptography is the answer to your problem,\n' +
      "then you don't know what your problem is.\n" +
      '\n' +
      '— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
    expect(openNote(note, [v]).verifiedBy).toEqual(['PeterNeumann']);
    expect(errorCode(() => openNote(note.replace('cryptography', 'cryptographY'), [v]))).toBe(
      'NOTE_SIGNATURE_INVALID',
    );
  });

  const key = generateKeyPairSync('ed25519').privateKey;
  const name = 'cordon.audit/host/0123';
  const v = parseVerifierKey(verifierKey(name, key));

  it('signs checkpoints that round-trip, with prev and time extension lines', () => {
    const cp = {
      origin: name,
      size: 42,
      root: Buffer.alloc(32, 7),
      prev: Buffer.alloc(32, 9),
      time: 1_790_000_000,
    };
    const note = signNote(checkpointText(cp), name, key);
    const { text } = openNote(note, [v]);
    expect(parseCheckpointText(text)).toEqual(cp);
    expect(text.split('\n').slice(0, 3)).toEqual([
      name,
      '42',
      Buffer.alloc(32, 7).toString('base64'),
    ]);
  });

  it('rejects notes no known key signed, malformed notes and key ids that do not match', () => {
    const other = generateKeyPairSync('ed25519').privateKey;
    // Same name, another key: a different key id, so no known key signed it.
    const note = signNote('hello\n', name, other);
    expect(errorCode(() => openNote(note, [v]))).toBe('NOTE_UNSIGNED');
    const mine = signNote('hello\n', name, key);
    expect(errorCode(() => openNote(mine.replace('hello', 'jello'), [v]))).toBe(
      'NOTE_SIGNATURE_INVALID',
    );
    const elsewhere = signNote('hello\n', 'someone-else', other);
    expect(errorCode(() => openNote(elsewhere, [v]))).toBe('NOTE_UNSIGNED');
    expect(errorCode(() => openNote('no signatures\n', [v]))).toBe('NOTE_MALFORMED');
    expect(errorCode(() => signNote('two\n\nparagraphs\n', name, key))).toBe('NOTE_MALFORMED');
    expect(errorCode(() => signNote('no newline', name, key))).toBe('NOTE_MALFORMED');
    const vk = verifierKey(name, key);
    const parts = vk.split('+');
    expect(
      errorCode(() =>
        parseVerifierKey(
          `${parts[0]!}+00000000+${vk.slice(vk.indexOf('+', vk.indexOf('+') + 1) + 1)}`,
        ),
      ),
    ).toBe('NOTE_MALFORMED');
    expect(errorCode(() => parseCheckpointText('origin\nnot-a-size\nAAAA\n'))).toBe(
      'NOTE_MALFORMED',
    );
  });
});
