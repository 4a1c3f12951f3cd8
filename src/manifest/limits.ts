/** The largest signed manifest envelope Cordon reads, in bytes. */
export const ENVELOPE_MAX_BYTES = 1024 * 1024;
