/**
 * The endpoint service's framed transport: the same requests as its HTTP API (a method, a path
 * under `/v1/`, the session capability, a JSON body), without HTTP's parsing. Cordon's own
 * clients use it on the daemon's socket; HTTP stays for curl and other tools. A connection
 * starts with WIRE_MAGIC, then carries frames both ways: a 4-byte big-endian length and that
 * many bytes of one JSON object. Requests carry an id the answer repeats, so a client may have
 * several in flight on one connection (answers may come in any order).
 *
 * The daemon's identity checks are the HTTP API's: the caller is the socket's peer, a session's
 * client proves itself with the capability. Bodies are parsed with `JSON.parse` (several times
 * faster than the strict parser on event batches) and then checked by `checkWireValue`: nesting,
 * numbers and strings are bounded as the strict parser bounds them. Of duplicate keys the last
 * counts: nothing received here is signed, forwarded or stored as the bytes that were sent (the
 * daemon acts on, and records, the value it parsed).
 *
 * @example
 * const frame = encodeFrame({ id: 1, method: 'GET', path: '/v1/status' });
 */

/** First bytes of a framed connection (an HTTP request starts with a letter). */
export const WIRE_MAGIC = Buffer.from('\0cordon1', 'latin1');

/** Largest frame a client sends (a request body of MAX_BODY_BYTES and its envelope). */
export const MAX_REQUEST_FRAME = 16 * 1024 * 1024 + 64 * 1024;
/** Largest frame a client accepts (audit record pages can be large). */
export const MAX_RESPONSE_FRAME = 64 * 1024 * 1024;
/** Deepest nesting of arrays and objects in a frame (as parseStrictJson's default). */
export const MAX_WIRE_DEPTH = 64;

export interface WireRequest {
  readonly id: number;
  readonly method: string;
  readonly path: string;
  readonly capability?: string;
  readonly body?: unknown;
}

export interface WireResponse {
  readonly id: number;
  readonly status: number;
  readonly body: unknown;
}

export type WireErrorCode = 'WIRE_FRAME_TOO_LARGE' | 'WIRE_FRAME_INVALID';

/** A frame that cannot be read: the connection cannot go on after it. */
export class WireError extends Error {
  readonly code: WireErrorCode;
  constructor(code: WireErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** One frame: its length, then its JSON. */
export function encodeFrame(value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(json.length, 0);
  return Buffer.concat([head, json], 4 + json.length);
}

/**
 * Cuts a byte stream into frames. A declared length over the limit is refused before its bytes
 * are read (nothing of it is held); `held` is what is buffered now, for memory accounting.
 */
export class FrameReader {
  readonly #max: number;
  #parts: Buffer[] = [];
  #size = 0;

  constructor(maxFrame: number) {
    this.#max = maxFrame;
  }

  get held(): number {
    return this.#size;
  }

  /** Take bytes; return every frame now complete, each parsed and checked, with its length. */
  push(chunk: Buffer): { value: unknown; size: number }[] {
    this.#parts.push(chunk);
    this.#size += chunk.length;
    const out: { value: unknown; size: number }[] = [];
    for (;;) {
      if (this.#size < 4) return out;
      const len = this.#length();
      if (len > this.#max)
        throw new WireError(
          'WIRE_FRAME_TOO_LARGE',
          `a frame of ${len} bytes; at most ${this.#max}`,
        );
      // The pieces of a frame are joined once, when it is complete: joining them as they come
      // would copy a large frame sent in small writes over and over (quadratic in its size).
      if (this.#size < 4 + len) return out;
      const buf = this.#flat();
      out.push({ value: parseFrame(buf.subarray(4, 4 + len)), size: len });
      let rest = buf.subarray(4 + len);
      // A view keeps all of `buf` alive: the first bytes of the next frame, held behind a large
      // frame just read, would pin that frame's memory while `held` counts only them.
      if (buf.length > 2 * rest.length + 64 * 1024) rest = Buffer.from(rest);
      this.#parts = rest.length === 0 ? [] : [rest];
      this.#size = rest.length;
    }
  }

  /** The declared length of the frame at the front (at least 4 bytes are held). */
  #length(): number {
    const head = this.#parts[0];
    if (head !== undefined && head.length >= 4) return head.readUInt32BE(0);
    return this.#flat().readUInt32BE(0);
  }

  #flat(): Buffer {
    if (this.#parts.length > 1) this.#parts = [Buffer.concat(this.#parts, this.#size)];
    return this.#parts[0] ?? Buffer.alloc(0);
  }
}

/** String.prototype.isWellFormed (Node 20; ES2024, beyond the compiler's library setting). */
const wellFormed = (s: string): boolean =>
  (s as unknown as { isWellFormed(): boolean }).isWellFormed();

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function parseFrame(bytes: Buffer): unknown {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    throw new WireError('WIRE_FRAME_INVALID', 'a frame is not valid UTF-8');
  }
  let value: unknown;
  try {
    // See the module comment: the value parsed is what is acted on, and it is checked below.
    // eslint-disable-next-line no-restricted-syntax
    value = JSON.parse(text);
  } catch (e) {
    throw new WireError('WIRE_FRAME_INVALID', `a frame is not JSON: ${(e as Error).message}`);
  }
  const bad = checkWireValue(value, 0);
  if (bad !== undefined) throw new WireError('WIRE_FRAME_INVALID', `a frame ${bad}`);
  return value;
}

/**
 * What parseStrictJson refuses and JSON.parse lets through: nesting over MAX_WIRE_DEPTH, a
 * number that overflowed to Infinity, a string or key with a lone surrogate. Returns what is
 * wrong, or undefined.
 */
export function checkWireValue(v: unknown, depth: number): string | undefined {
  if (typeof v === 'string') return wellFormed(v) ? undefined : 'holds a lone surrogate';
  if (typeof v === 'number') return Number.isFinite(v) ? undefined : 'holds a number too large';
  if (typeof v !== 'object' || v === null) return undefined;
  if (depth >= MAX_WIRE_DEPTH) return `nests deeper than ${MAX_WIRE_DEPTH}`;
  if (Array.isArray(v)) {
    for (const x of v as unknown[]) {
      const bad = checkWireValue(x, depth + 1);
      if (bad !== undefined) return bad;
    }
    return undefined;
  }
  for (const k in v) {
    if (!wellFormed(k)) return 'holds a lone surrogate';
    const bad = checkWireValue((v as Record<string, unknown>)[k], depth + 1);
    if (bad !== undefined) return bad;
  }
  return undefined;
}

/** The envelope of a request frame, or what is wrong with it. */
export function readRequest(v: unknown): WireRequest | string {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'a request is not an object';
  const r = v as Record<string, unknown>;
  if (!Number.isSafeInteger(r['id']) || (r['id'] as number) < 1)
    return 'a request needs an id (a positive whole number)';
  if (r['method'] !== 'GET' && r['method'] !== 'POST') return 'method must be GET or POST';
  if (typeof r['path'] !== 'string' || r['path'].length > 4096 || !r['path'].startsWith('/'))
    return 'path must be an absolute path under /v1/';
  if (r['capability'] !== undefined && typeof r['capability'] !== 'string')
    return 'capability must be a string';
  return r as unknown as WireRequest;
}

/** The envelope of a response frame, or undefined when it is not one. */
export function readResponse(v: unknown): WireResponse | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const r = v as Record<string, unknown>;
  if (!Number.isSafeInteger(r['id']) || !Number.isSafeInteger(r['status'])) return undefined;
  return r as unknown as WireResponse;
}
