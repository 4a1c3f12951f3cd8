import { createHash } from 'node:crypto';
import { sha256 } from './hash.js';

const leafScratch = Buffer.alloc(33);
const nodeScratch = Buffer.alloc(65, 0x01);

/** RFC 9162 section 2.1.1: the leaf hash is SHA-256(0x00 || entry). */
export function leafHash(entry: Uint8Array): Buffer {
  if (entry.length === 32) {
    leafScratch.set(entry, 1);
    return sha256(leafScratch);
  }
  return sha256(Buffer.concat([Buffer.from([0x00]), entry]));
}

/** The leaf hash of a record, from its hex hash. */
export function recordLeaf(hexHash: string): Buffer {
  leafScratch.write(hexHash, 1, 'hex');
  return sha256(leafScratch);
}

/** RFC 9162 section 2.1.1: an interior node is SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  nodeScratch.set(left, 1);
  nodeScratch.set(right, 33);
  return sha256(nodeScratch);
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
  #stack: Buffer[] = [];

  constructor(size = 0, stack: readonly Buffer[] = []) {
    let expected = 0;
    for (let s = size; s > 0; s = Math.floor(s / 2)) expected += s % 2;
    if (stack.length !== expected || stack.some((h) => h.length !== 32)) {
      throw new RangeError(
        `a frontier of size ${size} has ${expected} hashes, not ${stack.length}`,
      );
    }
    this.#size = size;
    this.#stack = [...stack];
  }

  get size(): number {
    return this.#size;
  }

  /** The perfect-subtree roots, largest first (what a checkpoint state stores). */
  get hashes(): readonly Buffer[] {
    return this.#stack;
  }

  /** Add a leaf hash (already `leafHash`ed). */
  push(leaf: Buffer): void {
    let h = leaf;
    // Each trailing 1-bit of the old size is a perfect subtree of the same height to merge with.
    for (let s = this.#size; s % 2 === 1; s = (s - 1) / 2) {
      const left = this.#stack.pop();
      if (left === undefined) throw new Error('frontier out of step with its size');
      h = nodeHash(left, h);
    }
    this.#stack.push(h);
    this.#size++;
  }

  /** MTH of all leaves pushed so far. */
  root(): Buffer {
    let r: Buffer | undefined;
    for (let i = this.#stack.length - 1; i >= 0; i--) {
      const h = this.#stack[i] as Buffer;
      r = r === undefined ? h : nodeHash(h, r);
    }
    if (r === undefined) return EMPTY_ROOT;
    return r;
  }

  clone(): MerkleFrontier {
    return new MerkleFrontier(this.#size, this.#stack);
  }
}
