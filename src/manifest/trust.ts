import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { CordonError } from '../errors.js';
import { parseStrictJson } from './json.js';
import { keyIdOf, loadPublicKeyPem } from './keys.js';
import { MANIFEST_API_VERSION } from './schema.js';

export const KEY_PURPOSES = ['manifest', 'revocation', 'audit-checkpoint', 'approval'] as const;
export type KeyPurpose = (typeof KEY_PURPOSES)[number];

const timestamp = z.iso.datetime({ offset: true });

export const TrustStoreSchema = z
  .strictObject({
    apiVersion: z.literal(MANIFEST_API_VERSION),
    kind: z.literal('TrustStore'),
    manifestThreshold: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(1)
      .describe(
        'How many distinct trusted keys must sign a manifest (e.g. 2 for vendor + enterprise).',
      ),
    keys: z
      .array(
        z.strictObject({
          name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
          keyId: z.string().regex(/^[0-9a-f]{64}$/),
          publicKey: z.string().describe('SPKI PEM of an Ed25519 public key.'),
          purposes: z.array(z.enum(KEY_PURPOSES)).min(1),
          notBefore: timestamp.optional(),
          notAfter: timestamp.optional(),
        }),
      )
      .max(256),
  })
  .describe('Public keys this device trusts, with what each may sign and when.');

export type TrustStoreFile = z.output<typeof TrustStoreSchema>;

export interface TrustedKey {
  readonly name: string;
  readonly keyId: string;
  readonly key: KeyObject;
  readonly purposes: readonly KeyPurpose[];
  readonly notBefore: number | undefined;
  readonly notAfter: number | undefined;
}

/** A loaded, checked trust store. */
export interface TrustStore {
  readonly manifestThreshold: number;
  readonly keys: ReadonlyMap<string, TrustedKey>;
  readonly file: TrustStoreFile;
}

/**
 * Parse and check a trust store: the schema, unique names and ids, Ed25519 keys, and that each
 * `keyId` is really the SHA-256 of its key (a mismatched id could make a log name the wrong signer).
 */
export function loadTrustStore(input: string | Uint8Array): TrustStore {
  const invalid = (message: string, pointer: string, cause?: unknown): CordonError =>
    new CordonError('TRUST_STORE_INVALID', message, {
      pointer,
      hint: 'fix the trust store, or rebuild it with `cordon init` / `cordon keys trust`',
      ...(cause === undefined ? {} : { cause }),
    });
  let value: unknown;
  try {
    value = parseStrictJson(input, { maxBytes: 4 * 1024 * 1024 });
  } catch (e) {
    throw invalid(`trust store is not valid JSON: ${(e as Error).message}`, '', e);
  }
  const r = TrustStoreSchema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0];
    const pointer = '/' + (i?.path ?? []).map(String).join('/');
    throw invalid(`trust store ${pointer}: ${i?.message ?? 'invalid'}`, pointer);
  }
  const keys = new Map<string, TrustedKey>();
  const names = new Set<string>();
  r.data.keys.forEach((k, i) => {
    let key: KeyObject;
    try {
      key = loadPublicKeyPem(k.publicKey);
    } catch (e) {
      throw invalid(
        `trust store key "${k.name}": ${(e as Error).message}`,
        `/keys/${i}/publicKey`,
        e,
      );
    }
    if (keyIdOf(key) !== k.keyId)
      throw invalid(
        `trust store key "${k.name}": keyId does not match the public key`,
        `/keys/${i}/keyId`,
      );
    if (keys.has(k.keyId) || names.has(k.name))
      throw invalid(`trust store lists key "${k.name}" twice`, `/keys/${i}`);
    names.add(k.name);
    keys.set(k.keyId, {
      name: k.name,
      keyId: k.keyId,
      key,
      purposes: k.purposes,
      notBefore: k.notBefore === undefined ? undefined : Date.parse(k.notBefore),
      notAfter: k.notAfter === undefined ? undefined : Date.parse(k.notAfter),
    });
  });
  return { manifestThreshold: r.data.manifestThreshold, keys, file: r.data };
}

/** An empty trust store document. */
export function emptyTrustStore(): TrustStoreFile {
  return { apiVersion: MANIFEST_API_VERSION, kind: 'TrustStore', manifestThreshold: 1, keys: [] };
}
