import { sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { CordonError } from '../errors.js';
import { parseStrictJson } from './json.js';
import { keyIdOf } from './keys.js';

/** Largest envelope accepted, in bytes (the payload is base64, so ~4/3 of the manifest cap plus signatures). */
import { ENVELOPE_MAX_BYTES } from './limits.js';
export { ENVELOPE_MAX_BYTES };

/** A DSSE envelope (https://github.com/secure-systems-lab/dsse), signatures Ed25519. */
export interface Envelope {
  payload: string;
  payloadType: string;
  signatures: { keyid: string; sig: string }[];
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

export const EnvelopeSchema = z.strictObject({
  payload: z.string().regex(B64, 'must be standard base64').describe('Base64 of the signed bytes.'),
  payloadType: z.string().min(1).describe('Media type of the payload.'),
  signatures: z
    .array(
      z.strictObject({
        keyid: z
          .string()
          .regex(/^[0-9a-f]{64}$/, 'must be the hex SHA-256 key id')
          .describe('Signer key id.'),
        sig: z
          .string()
          .regex(B64, 'must be standard base64')
          .describe('Base64 Ed25519 signature over the PAE.'),
      }),
    )
    .max(16)
    .describe('One or more signatures.'),
});

/** DSSE pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body. */
export function pae(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  const head = Buffer.from(`DSSEv1 ${type.length} ${payloadType} ${payload.length} `, 'utf8');
  return Buffer.concat([head, payload]);
}

/** Decode base64 that must be canonical: re-encoding gives the same text, so no two strings decode alike. */
export function strictBase64(text: string, what: string): Buffer {
  const buf = Buffer.from(text, 'base64');
  if (buf.toString('base64') !== text) {
    throw new CordonError('ENVELOPE_INVALID', `${what} is not canonical base64`, {
      hint: 'the file was altered; sign it again',
    });
  }
  return buf;
}

/** Create an envelope with one signature. */
export function signEnvelope(payloadType: string, payload: Uint8Array, key: KeyObject): Envelope {
  return {
    payload: Buffer.from(payload).toString('base64'),
    payloadType,
    signatures: [signatureFor(payloadType, payload, key)],
  };
}

/** Add a signature to an envelope (co-signing); a second signature by the same key replaces nothing and is an error. */
export function addSignature(env: Envelope, key: KeyObject): Envelope {
  const payload = strictBase64(env.payload, 'payload');
  const sig = signatureFor(env.payloadType, payload, key);
  if (env.signatures.some((s) => s.keyid === sig.keyid)) {
    throw new CordonError(
      'SIGNATURE_DUPLICATE',
      `key ${sig.keyid.slice(0, 16)}… has already signed this envelope`,
      {
        hint: 'co-sign with a different key',
      },
    );
  }
  return { ...env, signatures: [...env.signatures, sig] };
}

function signatureFor(
  payloadType: string,
  payload: Uint8Array,
  key: KeyObject,
): { keyid: string; sig: string } {
  return {
    keyid: keyIdOf(key),
    sig: cryptoSign(null, pae(payloadType, payload), key).toString('base64'),
  };
}

/** Verify one signature over the PAE. Never throws for a bad signature: returns false. */
export function verifySignature(
  payloadType: string,
  payload: Uint8Array,
  sig: Uint8Array,
  key: KeyObject,
): boolean {
  try {
    return cryptoVerify(null, pae(payloadType, payload), key, sig);
  } catch {
    return false;
  }
}

/** Parse an envelope strictly (size cap, UTF-8, duplicate keys, shape). */
export function parseEnvelope(input: string | Uint8Array): Envelope {
  const value = parseStrictJson(input, { maxBytes: ENVELOPE_MAX_BYTES });
  const r = EnvelopeSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const pointer = issue === undefined ? '' : '/' + issue.path.map(String).join('/');
    throw new CordonError(
      'ENVELOPE_INVALID',
      `not a DSSE envelope: ${pointer || '/'}: ${issue?.message ?? 'invalid'}`,
      {
        pointer,
        hint: 'a signed manifest is the JSON written by `cordon manifest sign`',
      },
    );
  }
  return r.data;
}
