import type { KeyObject } from 'node:crypto';
import { createHash } from 'node:crypto';
import { canonicalBytes } from './canonical.js';
import { addSignature, signEnvelope, strictBase64, type Envelope } from './dsse.js';
import { lintManifest, type LintOptions } from './lint.js';
import { ManifestInvalidError, validateManifest } from './parse.js';
import { MANIFEST_PAYLOAD_TYPE, type Manifest } from './schema.js';

/** `sha256:<hex>` of a manifest's canonical bytes: the id that revocation lists and audit events use. */
export function manifestDigest(payload: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(payload).digest('hex');
}

/**
 * Sign a manifest: validate and normalise it, refuse lint errors, and wrap its RFC 8785
 * canonical form in a DSSE envelope signed with `key`.
 *
 * @example
 * const env = signManifest(JSON.parse(text), privateKey, { home: os.homedir() });
 */
export function signManifest(
  value: unknown,
  key: KeyObject,
  lint: LintOptions,
): { envelope: Envelope; manifest: Manifest; digest: string } {
  const r = validateManifest(value);
  if (!r.ok) throw new ManifestInvalidError(r.issues);
  const errors = lintManifest(r.manifest, lint).filter((f) => f.severity === 'error');
  if (errors.length > 0) {
    throw new ManifestInvalidError(
      errors.map((e) => ({ code: e.code, pointer: e.pointer, message: e.message, hint: e.hint })),
    );
  }
  const payload = canonicalBytes(r.manifest);
  return {
    envelope: signEnvelope(MANIFEST_PAYLOAD_TYPE, payload, key),
    manifest: r.manifest,
    digest: manifestDigest(payload),
  };
}

/** Add a co-signature (e.g. the enterprise key after the vendor's) to a signed manifest. */
export function cosignManifest(
  env: Envelope,
  key: KeyObject,
): { envelope: Envelope; digest: string } {
  return {
    envelope: addSignature(env, key),
    digest: manifestDigest(strictBase64(env.payload, 'payload')),
  };
}
