import { parseEnvelope, strictBase64 } from '../manifest/dsse.js';
import { manifestDigest } from '../manifest/sign.js';

/** What the evidence bundle says about a session (the endpoint service's record of it). */
export interface SessionRecord {
  readonly id: string;
  readonly agent: string;
  readonly manifestVersion: string;
  readonly manifestDigest: string;
  readonly manifestPath: string;
  readonly command: readonly string[];
  /** The session's client (`cordon run`, which started the sandbox). */
  readonly cordonPid: number;
  /** Start times of the two processes, so a reused pid is never taken for them. */
  readonly cordonStart?: string;
  readonly sandboxStart?: string;
  /** Host pid of the sandbox's init (pid 1 inside); killing it ends every process inside. */
  readonly sandboxPid?: number;
  readonly startedAt: string;
  /** The directory holding the session's egress socket (the service's). */
  readonly runDir: string;
  /** Sequence number of the first audit record of the session. */
  readonly auditSeqAtStart?: number;
  readonly bytesOut: number;
  readonly bytesIn: number;
  readonly quarantinedAt?: string;
  readonly unsafeNoSandbox?: boolean;
}

/**
 * The digest a session names its manifest by: of the payload, for a signed envelope (the bytes
 * that were verified and enforced); undefined when the bytes are not an envelope of one.
 */
export function envelopeDigest(bytes: Uint8Array): string | undefined {
  try {
    return manifestDigest(strictBase64(parseEnvelope(bytes).payload, 'payload'));
  } catch {
    return undefined;
  }
}
