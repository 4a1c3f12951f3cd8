import { CordonError } from '../errors.js';
import { ENVELOPE_MAX_BYTES, parseEnvelope, strictBase64 } from '../manifest/dsse.js';
import { parseStrictJson } from '../manifest/json.js';
import { ManifestInvalidError, validateManifest } from '../manifest/parse.js';
import { MANIFEST_MAX_BYTES, MANIFEST_PAYLOAD_TYPE, type Manifest } from '../manifest/schema.js';
import { readFileCapped } from '../store/files.js';

export interface ManifestSource {
  readonly file: string;
  readonly signed: boolean;
  /** The manifest text that was validated (the payload, for a signed file). */
  readonly text: Buffer;
  readonly value: unknown;
  readonly locations: Map<string, { line: number; column: number }>;
}

/** Read a manifest file, plain JSON or a signed DSSE envelope (whose payload is read unverified). */
export function readManifestSource(file: string): ManifestSource {
  return manifestSourceFromBytes(file, readFileCapped(file, ENVELOPE_MAX_BYTES));
}

/** Parse the bytes of a manifest file already read (`file` names it in errors). */
export function manifestSourceFromBytes(file: string, raw: Buffer): ManifestSource {
  const locations = new Map<string, { line: number; column: number }>();
  try {
    const value = parseStrictJson(raw, { maxBytes: ENVELOPE_MAX_BYTES, locations });
    if (
      typeof value === 'object' &&
      value !== null &&
      !Array.isArray(value) &&
      'payload' in value &&
      'payloadType' in value
    ) {
      const env = parseEnvelope(raw);
      if (env.payloadType !== MANIFEST_PAYLOAD_TYPE) {
        throw new CordonError('PAYLOAD_TYPE_MISMATCH', `payloadType is "${env.payloadType}"`, {
          hint: `expected ${MANIFEST_PAYLOAD_TYPE}`,
        });
      }
      const text = strictBase64(env.payload, 'payload');
      const inner = new Map<string, { line: number; column: number }>();
      return {
        file,
        signed: true,
        text,
        value: parseStrictJson(text, { maxBytes: MANIFEST_MAX_BYTES, locations: inner }),
        locations: inner,
      };
    }
    if (raw.length > MANIFEST_MAX_BYTES) {
      throw new CordonError(
        'JSON_TOO_LARGE',
        `manifest is ${raw.length} bytes; the limit is ${MANIFEST_MAX_BYTES}`,
        { hint: 'shorten it' },
      );
    }
    return { file, signed: false, text: raw, value, locations };
  } catch (e) {
    throw e instanceof CordonError ? e.withFile(file) : e;
  }
}

/** Read and validate; schema problems throw ManifestInvalidError naming the file. */
export function readManifest(file: string): { source: ManifestSource; manifest: Manifest } {
  const source = readManifestSource(file);
  const r = validateManifest(source.value);
  if (!r.ok) throw new ManifestInvalidError(r.issues, file);
  return { source, manifest: r.manifest };
}
