import { createHash, generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  EMPTY_ROOT,
  MerkleFrontier,
  alignedSubtrees,
  consistencyRanges,
  inclusionRanges,
  leafHash,
  nodeHash,
  proofHashes,
  verifyConsistency,
  verifyInclusion,
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

// The RFC 6962 / RFC 9162 reference vectors (certificate-transparency and transparency-dev test
// data): eight leaf inputs, the root of every prefix, and published inclusion and consistency
// proofs.
const LEAVES = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map((h) => Buffer.from(h, 'hex'));
const ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
const INCLUSION: { index: number; size: number; proof: string[] }[] = [
  { index: 0, size: 1, proof: [] },
  {
    index: 0,
    size: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    index: 5,
    size: 8,
    proof: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  {
    index: 2,
    size: 3,
    proof: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'],
  },
  {
    index: 1,
    size: 5,
    proof: [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
];
const CONSISTENCY: { size1: number; size2: number; proof: string[] }[] = [
  { size1: 1, size2: 1, proof: [] },
  {
    size1: 1,
    size2: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    size1: 6,
    size2: 8,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  {
    size1: 2,
    size2: 5,
    proof: [
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
];
const hex = (bs: readonly Buffer[]) => bs.map((b) => b.toString('hex'));
const bufs = (hs: readonly string[]) => hs.map((h) => Buffer.from(h, 'hex'));
const leafHashes = LEAVES.map((l) => leafHash(l));

describe('Merkle proofs (RFC 9162 sections 2.1.3 and 2.1.4), against the reference vectors', () => {
  it('roots of every prefix', () => {
    ROOTS.forEach((root, n) => {
      const f = new MerkleFrontier();
      for (const l of leafHashes.slice(0, n)) f.push(l);
      expect(f.root().toString('hex'), `size ${n}`).toBe(root);
    });
  });

  it('inclusion proofs: produced as published, and verified', () => {
    for (const v of INCLUSION) {
      const proof = proofHashes(inclusionRanges(v.index, v.size), leafHashes);
      expect(hex(proof), `${v.index} in ${v.size}`).toEqual(v.proof);
      const root = Buffer.from(ROOTS[v.size]!, 'hex');
      expect(verifyInclusion(v.index, v.size, leafHashes[v.index]!, bufs(v.proof), root)).toBe(
        true,
      );
      // Another leaf, another index or a changed path: refused. (The size is bound by the
      // signed checkpoint that carries the root, not by the proof.)
      const other = leafHashes[(v.index + 1) % 8]!;
      expect(verifyInclusion(v.index, v.size, other, bufs(v.proof), root)).toBe(false);
      expect(verifyInclusion(v.index + 1, v.size, leafHashes[v.index]!, bufs(v.proof), root)).toBe(
        false,
      );
      if (v.proof.length > 0) {
        const bad = bufs(v.proof);
        bad[0] = Buffer.from(bad[0]!.map((x, i) => (i === 0 ? x ^ 1 : x)));
        expect(verifyInclusion(v.index, v.size, leafHashes[v.index]!, bad, root)).toBe(false);
        expect(
          verifyInclusion(v.index, v.size, leafHashes[v.index]!, bufs(v.proof).slice(1), root),
        ).toBe(false);
      }
    }
  });

  it('consistency proofs: produced as published, and verified', () => {
    for (const v of CONSISTENCY) {
      const proof = proofHashes(consistencyRanges(v.size1, v.size2), leafHashes);
      expect(hex(proof), `${v.size1} to ${v.size2}`).toEqual(v.proof);
      const r1 = Buffer.from(ROOTS[v.size1]!, 'hex');
      const r2 = Buffer.from(ROOTS[v.size2]!, 'hex');
      expect(verifyConsistency(v.size1, v.size2, r1, r2, bufs(v.proof))).toBe(true);
      // The wrong old root, or the proof for other sizes: refused.
      const wrong = Buffer.from(ROOTS[v.size1 === 1 ? 2 : 1]!, 'hex');
      expect(verifyConsistency(v.size1, v.size2, wrong, r2, bufs(v.proof))).toBe(false);
      if (v.size1 !== v.size2) {
        expect(verifyConsistency(v.size1, v.size2, r1, r1, bufs(v.proof))).toBe(false);
        expect(verifyConsistency(v.size1, v.size2, r1, r2, [])).toBe(false);
      }
    }
  });

  it('every inclusion and consistency proof in trees of up to 40 leaves verifies, and a flipped bit fails (property)', () => {
    const leaves = Array.from({ length: 40 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
    const roots = [EMPTY_ROOT];
    const f = new MerkleFrontier();
    for (const l of leaves) {
      f.push(l);
      roots.push(f.root());
    }
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.nat(), fc.nat(), (n, a, b) => {
        const m = a % n;
        const inc = proofHashes(inclusionRanges(m, n), leaves);
        expect(verifyInclusion(m, n, leaves[m]!, inc, roots[n]!)).toBe(true);
        const s1 = 1 + (b % n);
        const con = proofHashes(consistencyRanges(s1, n), leaves);
        expect(verifyConsistency(s1, n, roots[s1]!, roots[n]!, con)).toBe(true);
        if (con.length > 0) {
          const lastHash = con[con.length - 1]!;
          lastHash.writeUInt8(lastHash.readUInt8(31) ^ 1, 31);
          expect(verifyConsistency(s1, n, roots[s1]!, roots[n]!, con)).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });
});

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
