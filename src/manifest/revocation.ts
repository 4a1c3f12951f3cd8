import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { CordonError, type ManifestCode } from '../errors.js';
import { canonicalBytes } from './canonical.js';
import {
  parseEnvelope,
  signEnvelope,
  strictBase64,
  verifySignature,
  type Envelope,
} from './dsse.js';
import { parseStrictJson } from './json.js';
import { MANIFEST_API_VERSION } from './schema.js';
import type { TrustStore } from './trust.js';

export const REVOCATION_PAYLOAD_TYPE = 'application/vnd.cordon.revocation+json';

const timestamp = z.iso.datetime({ offset: true });
const reason = z.string().trim().min(1).max(1000);

export const RevocationListSchema = z
  .strictObject({
    apiVersion: z.literal(MANIFEST_API_VERSION),
    kind: z.literal('RevocationList'),
    serial: z
      .number()
      .int()
      .min(1)
      .describe('Increases with every change; a device refuses an older list.'),
    issuedAt: timestamp,
    manifests: z
      .array(
        z.strictObject({
          digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
          reason,
          revokedAt: timestamp,
        }),
      )
      .max(100_000),
    keys: z
      .array(
        z.strictObject({ keyId: z.string().regex(/^[0-9a-f]{64}$/), reason, revokedAt: timestamp }),
      )
      .max(10_000),
  })
  .describe('Signed list of revoked manifest digests and key ids.');

export type RevocationList = z.output<typeof RevocationListSchema>;

/** Fast lookups over a verified revocation list. */
export interface Revocations {
  readonly list: RevocationList;
  readonly manifestDigests: ReadonlySet<string>;
  readonly keyIds: ReadonlySet<string>;
}

export function indexRevocations(list: RevocationList): Revocations {
  return {
    list,
    manifestDigests: new Set(list.manifests.map((m) => m.digest)),
    keyIds: new Set(list.keys.map((k) => k.keyId)),
  };
}

export function emptyRevocationList(now: Date, serial = 1): RevocationList {
  return {
    apiVersion: MANIFEST_API_VERSION,
    kind: 'RevocationList',
    serial,
    issuedAt: now.toISOString(),
    manifests: [],
    keys: [],
  };
}

export function signRevocationList(list: RevocationList, key: KeyObject): Envelope {
  return signEnvelope(
    REVOCATION_PAYLOAD_TYPE,
    canonicalBytes(RevocationListSchema.parse(list)),
    key,
  );
}

/**
 * Verify a signed revocation list against the trust store: a `revocation` key that is itself
 * not listed as revoked must have signed it, and its serial must not be lower than `minSerial`
 * (the last one this device accepted), so an attacker cannot restore an older, shorter list.
 */
export function verifyRevocationList(
  input: string | Uint8Array,
  trust: TrustStore,
  options: { now: Date; minSerial?: number },
): Revocations {
  const fail = (code: ManifestCode, message: string, hint: string, cause?: unknown): never => {
    throw new CordonError(code, message, { hint, ...(cause === undefined ? {} : { cause }) });
  };
  let env: Envelope;
  try {
    env = parseEnvelope(input);
  } catch (e) {
    return fail(
      'REVOCATION_LIST_INVALID',
      `revocation list: ${(e as Error).message}`,
      'restore the signed revocation list',
      e,
    );
  }
  if (env.payloadType !== REVOCATION_PAYLOAD_TYPE) {
    fail(
      'REVOCATION_LIST_INVALID',
      `revocation list has payloadType "${env.payloadType}"`,
      `expected ${REVOCATION_PAYLOAD_TYPE}`,
    );
  }
  const payload = strictBase64(env.payload, 'revocation list payload');
  let list: RevocationList;
  try {
    list = RevocationListSchema.parse(parseStrictJson(payload, { maxBytes: 16 * 1024 * 1024 }));
  } catch (e) {
    return fail(
      'REVOCATION_LIST_INVALID',
      `revocation list payload is invalid: ${(e as Error).message.slice(0, 300)}`,
      'restore the signed revocation list',
      e,
    );
  }
  const revokedKeys = new Set(list.keys.map((k) => k.keyId));
  const now = options.now.getTime();
  const good = env.signatures.some((s) => {
    const k = trust.keys.get(s.keyid);
    if (k === undefined || !k.purposes.includes('revocation') || revokedKeys.has(k.keyId))
      return false;
    if (
      (k.notBefore !== undefined && now < k.notBefore) ||
      (k.notAfter !== undefined && now >= k.notAfter)
    )
      return false;
    return verifySignature(env.payloadType, payload, strictBase64(s.sig, 'signature'), k.key);
  });
  if (!good) {
    fail(
      'REVOCATION_LIST_UNTRUSTED',
      'revocation list is not signed by a trusted, valid revocation key',
      'sign it with `cordon revoke` using a key trusted for "revocation"',
    );
  }
  if (options.minSerial !== undefined && list.serial < options.minSerial) {
    fail(
      'REVOCATION_LIST_ROLLBACK',
      `revocation list serial ${list.serial} is older than ${options.minSerial}, the last one this device accepted`,
      'install the current revocation list; an older list may omit revocations',
    );
  }
  return indexRevocations(list);
}
