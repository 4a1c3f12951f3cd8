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
