import { createHash } from 'node:crypto';
import { sha256Bin } from './hash.js';

/**
 * RFC 9162 Merkle tree hashing. Inside the hot loops a hash is a 32-character binary ("latin1")
 * string: producing one costs a third of producing a Buffer in Node, and a log has two hashes per
 * record (its leaf and, amortised, one interior node). The exported functions take and return
 * Buffers.
 */
export type BinHash = string;

const leafScratch = Buffer.alloc(33);
const nodeScratch = Buffer.alloc(65, 0x01);

const bin = (b: Uint8Array): BinHash =>
  Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');

/** RFC 9162 section 2.1.1: the leaf hash is SHA-256(0x00 || entry). */
export function leafHash(entry: Uint8Array): Buffer {
  return Buffer.from(sha256Bin(Buffer.concat([Buffer.from([0x00]), entry])), 'latin1');
}

/** RFC 9162 section 2.1.1: an interior node is SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return Buffer.from(nodeBin(bin(left), bin(right)), 'latin1');
}

/** The leaf hash of a record, from its hex hash. */
export function recordLeaf(hexHash: string): BinHash {
  leafScratch.write(hexHash, 1, 'hex');
  return sha256Bin(leafScratch);
}

export function nodeBin(left: BinHash, right: BinHash): BinHash {
  nodeScratch.write(left, 1, 'latin1');
  nodeScratch.write(right, 33, 'latin1');
  return sha256Bin(nodeScratch);
}

/** The root of the empty tree: SHA-256 of the empty string. */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

/**
 * The right edge of an RFC 9162 Merkle tree: one perfect-subtree root per set bit of the size,
 * largest first. Appending is O(log n) amortised and the whole state is at most 64 hashes, so a
 * log of any length is rolled up in constant memory.
 *
 * @example
 * const f = new MerkleFrontier();
 * f.push(leafHash(Buffer.from('a')));
 * f.root(); // same as the RFC's MTH({'a'})
 */
export class MerkleFrontier {
  #size = 0;
  #stack: BinHash[] = [];

  constructor(size = 0, stack: readonly Uint8Array[] = []) {
    let expected = 0;
    for (let s = size; s > 0; s = Math.floor(s / 2)) expected += s % 2;
    if (stack.length !== expected || stack.some((h) => h.length !== 32)) {
      throw new RangeError(
        `a frontier of size ${size} has ${expected} hashes, not ${stack.length}`,
      );
    }
    this.#size = size;
    this.#stack = stack.map(bin);
  }

  get size(): number {
    return this.#size;
  }

  /** The perfect-subtree roots, largest first (what a checkpoint state stores). */
  get hashes(): Buffer[] {
    return this.#stack.map((h) => Buffer.from(h, 'latin1'));
  }

  /** Add a leaf hash (already `leafHash`ed; a Buffer or a binary string). */
  push(leaf: Uint8Array | BinHash): void {
    this.#merge(typeof leaf === 'string' ? leaf : bin(leaf), 1);
  }

  /**
   * Add the root of a perfect subtree of 2^height leaves. Only valid where such a subtree starts:
   * the size must be a multiple of 2^height (see {@link alignedSubtrees}).
   */
  pushSubtree(root: Uint8Array | BinHash, height: number): void {
    const width = 2 ** height;
    if (this.#size % width !== 0) {
      throw new RangeError(`a subtree of ${width} cannot start at ${this.#size}`);
    }
    this.#merge(typeof root === 'string' ? root : bin(root), width);
  }

  #merge(root: BinHash, width: number): void {
    let h = root;
    // Each trailing 1-bit (at this height) of the old size is a subtree of equal height to merge with.
    for (let s = this.#size / width; s % 2 === 1; s = (s - 1) / 2) {
      const left = this.#stack.pop();
      if (left === undefined) throw new Error('frontier out of step with its size');
      h = nodeBin(left, h);
    }
    this.#stack.push(h);
    this.#size += width;
  }

  /** MTH of all leaves pushed so far. */
  root(): Buffer {
    let r: BinHash | undefined;
    for (let i = this.#stack.length - 1; i >= 0; i--) {
      const h = this.#stack[i] as BinHash;
      r = r === undefined ? h : nodeBin(h, r);
    }
    return r === undefined ? EMPTY_ROOT : Buffer.from(r, 'latin1');
  }

  clone(): MerkleFrontier {
    const f = new MerkleFrontier();
    f.#size = this.#size;
    f.#stack = [...this.#stack];
    return f;
  }
}

/**
 * Split the leaves at indices [start, start + leaves.length) into the largest perfect subtrees
 * that start at multiples of their width, and return their roots, in order. Pushing them with
 * {@link MerkleFrontier.pushSubtree} equals pushing every leaf.
 */
export function alignedSubtrees(
  start: number,
  leaves: readonly (Uint8Array | BinHash)[],
): { root: BinHash; height: number }[] {
  const out: { root: BinHash; height: number }[] = [];
  let i = 0;
  while (i < leaves.length) {
    const at = start + i;
    let height = 0;
    while (at % 2 ** (height + 1) === 0 && i + 2 ** (height + 1) <= leaves.length) height++;
    let level = leaves.slice(i, i + 2 ** height).map((l) => (typeof l === 'string' ? l : bin(l)));
    while (level.length > 1) {
      const up: BinHash[] = [];
      for (let k = 0; k < level.length; k += 2) {
        up.push(nodeBin(level[k] as BinHash, level[k + 1] as BinHash));
      }
      level = up;
    }
    out.push({ root: level[0] as BinHash, height });
    i += 2 ** height;
  }
  return out;
}

/** A range of leaves [start, end) whose Merkle tree hash is one node of a proof. */
export type LeafRange = readonly [start: number, end: number];

/** The largest power of two smaller than n (n >= 2): where RFC 9162 splits a tree of n leaves. */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * RFC 9162 section 2.1.3.1: the inclusion proof of leaf `m` (0-based) in the tree of the first
 * `n` leaves, as the leaf ranges whose tree hashes make up PATH(m, D[n]), in proof order. A
 * prover hashes each range (see {@link proofHashes}); a verifier needs only the hashes.
 */
export function inclusionRanges(m: number, n: number): LeafRange[] {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 0 || m >= n) {
    throw new RangeError(`no leaf ${m} in a tree of ${n}`);
  }
  const out: LeafRange[] = [];
  const path = (lo: number, hi: number): void => {
    if (hi - lo === 1) return;
    const k = split(hi - lo);
    if (m - lo < k) {
      path(lo, lo + k);
      out.push([lo + k, hi]);
    } else {
      path(lo + k, hi);
      out.push([lo, lo + k]);
    }
  };
  path(0, n);
  return out;
}

/**
 * RFC 9162 section 2.1.4.1: the consistency proof between the trees of the first `m` and the
 * first `n` leaves (0 < m <= n), as the leaf ranges of PROOF(m, D[n]), in proof order. Empty when
 * m = n (the roots must then be equal).
 */
export function consistencyRanges(m: number, n: number): LeafRange[] {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 1 || m > n) {
    throw new RangeError(`no consistency proof from ${m} to ${n}`);
  }
  const out: LeafRange[] = [];
  const sub = (mm: number, lo: number, hi: number, whole: boolean): void => {
    if (mm === hi - lo) {
      if (!whole) out.push([lo, hi]);
      return;
    }
    const k = split(hi - lo);
    if (mm <= k) {
      sub(mm, lo, lo + k, whole);
      out.push([lo + k, hi]);
    } else {
      sub(mm - k, lo + k, hi, false);
      out.push([lo, lo + k]);
    }
  };
  sub(m, 0, n, true);
  return out;
}

/**
 * Hashes proof ranges in one pass over the leaf hashes, pushed in leaf order from leaf 0: memory
 * is one frontier per range (the ranges of one proof never overlap), so a proof over a log of any
 * length is made while the log is streamed.
 */
export class ProofBuilder {
  readonly #ranges: readonly LeafRange[];
  readonly #frontiers: MerkleFrontier[];
  readonly #order: number[];
  readonly #end: number;
  #at = 0;
  #next = 0;

  constructor(ranges: readonly LeafRange[]) {
    this.#ranges = ranges;
    this.#frontiers = ranges.map(() => new MerkleFrontier());
    this.#order = ranges.map((_, i) => i).sort((a, b) => this.#start(a) - this.#start(b));
    this.#end = Math.max(0, ...ranges.map((r) => r[1]));
  }

  #start(i: number): number {
    return this.#ranges[i]?.[0] ?? 0;
  }

  /** Leaves still needed. */
  get needs(): number {
    return Math.max(0, this.#end - this.#at);
  }

  /** The next leaf hash (already `leafHash`ed; a Buffer or a binary string). */
  push(leaf: Uint8Array | BinHash): void {
    if (this.#at >= this.#end) return;
    while (
      this.#next < this.#order.length &&
      (this.#ranges[this.#order[this.#next] as number]?.[1] ?? 0) <= this.#at
    ) {
      this.#next++;
    }
    const i = this.#order[this.#next];
    if (i !== undefined && this.#start(i) <= this.#at) this.#frontiers[i]?.push(leaf);
    this.#at++;
  }

  /** The proof: one hash per range, in proof order. */
  hashes(): Buffer[] {
    if (this.#at < this.#end) {
      throw new RangeError(`the proof needs ${this.#end} leaves, only ${this.#at} were given`);
    }
    return this.#frontiers.map((f) => f.root());
  }
}

/** Hash proof ranges over leaf hashes given from leaf 0 (see {@link ProofBuilder}). */
export function proofHashes(
  ranges: readonly LeafRange[],
  leaves: Iterable<Uint8Array | BinHash>,
): Buffer[] {
  const b = new ProofBuilder(ranges);
  for (const leaf of leaves) {
    if (b.needs === 0) break;
    b.push(leaf);
  }
  return b.hashes();
}

const isOdd = (x: number): boolean => x % 2 === 1;
const isPowerOfTwo = (x: number): boolean => {
  let v = x;
  while (v > 1 && v % 2 === 0) v /= 2;
  return v === 1;
};
const half = (x: number): number => Math.floor(x / 2);

/**
 * RFC 9162 section 2.1.3.2: check that `leaf` (a leaf hash) is leaf `index` (0-based) of the tree
 * of `size` leaves whose root is `root`.
 */
export function verifyInclusion(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) {
    return false;
  }
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (sn === 0 || p.length !== 32) return false;
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && r.equals(Buffer.from(root));
}

/**
 * RFC 9162 section 2.1.4.2: check that the tree of `size1` leaves with root `root1` is a prefix
 * of the tree of `size2` leaves with root `root2`.
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  root1: Uint8Array,
  root2: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 1 || size1 > size2) {
    return false;
  }
  if (size1 === size2) return proof.length === 0 && Buffer.from(root1).equals(Buffer.from(root2));
  if (proof.length === 0 || proof.some((p) => p.length !== 32)) return false;
  // When size1 is a power of two, the old root is itself the first node of the path.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr: Buffer = Buffer.from(path[0] as Uint8Array);
  let sr: Buffer = fr;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && fr.equals(Buffer.from(root1)) && sr.equals(Buffer.from(root2));
}
