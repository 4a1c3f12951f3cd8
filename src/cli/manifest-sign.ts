import { CordonError } from '../errors.js';
import { ENVELOPE_MAX_BYTES, parseEnvelope } from '../manifest/dsse.js';
import { parseStrictJson } from '../manifest/json.js';
import { MANIFEST_PAYLOAD_TYPE } from '../manifest/schema.js';
import { cosignManifest, signManifest } from '../manifest/sign.js';
import { readFileCapped, writeFileAtomic, writeFileNew } from '../store/files.js';
import { readPassphrase, readPrivateKey } from '../store/policy-dir.js';
import { lintOptionsFor } from './lint-options.js';
import { printJson, type CliIo, type GlobalOptions } from './context.js';

export interface SignOptions extends GlobalOptions {
  key: string;
  passphraseFile?: string;
  out?: string;
  json?: boolean;
}

/** Sign a plain manifest, or add a co-signature to an already signed one. */
export function runManifestSign(io: CliIo, file: string, opts: SignOptions): number {
  const key = readPrivateKey(
    opts.key,
    opts.passphraseFile === undefined ? undefined : readPassphrase(opts.passphraseFile),
  );
  const raw = readFileCapped(file, ENVELOPE_MAX_BYTES);
  let value: unknown;
  try {
    value = parseStrictJson(raw, { maxBytes: ENVELOPE_MAX_BYTES });
  } catch (e) {
    throw e instanceof CordonError ? e.withFile(file) : e;
  }
  const isEnvelope =
    typeof value === 'object' && value !== null && 'payloadType' in value && 'signatures' in value;
  let result: { envelope: ReturnType<typeof parseEnvelope>; digest: string };
  try {
    if (isEnvelope) {
      const env = parseEnvelope(raw);
      if (env.payloadType !== MANIFEST_PAYLOAD_TYPE) {
        throw new CordonError('PAYLOAD_TYPE_MISMATCH', `payloadType is "${env.payloadType}"`, {
          hint: `expected ${MANIFEST_PAYLOAD_TYPE}`,
        });
      }
      result = cosignManifest(env, key);
    } else {
      result = signManifest(value, key, lintOptionsFor(io, opts));
    }
  } catch (e) {
    throw e instanceof CordonError ? e.withFile(file) : e;
  }
  const text = JSON.stringify(result.envelope, null, 2) + '\n';
  const out = opts.out ?? (isEnvelope ? file : file.replace(/(\.json)?$/, '.signed.json'));
  // Co-signing rewrites the envelope in place; a first signature never overwrites anything.
  if (isEnvelope && out === file) writeFileAtomic(out, text);
  else writeFileNew(out, text);
  const sig = result.envelope.signatures[result.envelope.signatures.length - 1];
  if (opts.json === true)
    printJson(io, {
      ok: true,
      out,
      digest: result.digest,
      keyId: sig?.keyid,
      signatures: result.envelope.signatures.length,
    });
  else
    io.stdout(
      `${isEnvelope ? 'co-signed' : 'signed'} ${out}\n  digest ${result.digest}\n  key    ${sig?.keyid ?? ''}\n  signatures: ${result.envelope.signatures.length}\n`,
    );
  return 0;
}
