import { createHash, hash as oneShot } from 'node:crypto';

/**
 * SHA-256 for the hot paths. `crypto.hash` (Node >= 20.12) hashes in one call without a Hash
 * object; a string result ("hex" or binary "latin1") costs far less than a Buffer for small
 * inputs. Older 20.x releases fall back to createHash.
 */
const fast = typeof oneShot === 'function';

export function sha256Hex(data: string | Uint8Array): string {
  return fast ? oneShot('sha256', data, 'hex') : createHash('sha256').update(data).digest('hex');
}

/** The digest as a 32-character binary (latin1) string. */
export function sha256Bin(data: Uint8Array): string {
  return fast
    ? oneShot('sha256', data, 'binary')
    : createHash('sha256').update(data).digest('binary');
}
