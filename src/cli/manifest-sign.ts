import { CordonError } from '../errors.js';
import { ENVELOPE_MAX_BYTES, parseEnvelope, strictBase64 } from '../manifest/dsse.js';
import { parseStrictJson } from '../manifest/json.js';
import { MANIFEST_PAYLOAD_TYPE } from '../manifest/schema.js';
import { cosignManifest, signManifest } from '../manifest/sign.js';
import { readFileCapped, writeFileAtomic, writeFileNew } from '../store/files.js';
import { readPassphrase, readPrivateKey } from '../store/policy-dir.js';
import { lintOptionsFor } from '../endpoint/verify.js';
import { endpointContext, printResult, type CliIo, type GlobalOptions } from './context.js';

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
      // A co-signature vouches for the payload as it stands: not for one already expired.
      const payload = parseStrictJson(strictBase64(env.payload, 'payload')) as {
        notAfter?: unknown;
      };
      if (
        typeof payload.notAfter !== 'string' ||
        !(Date.parse(payload.notAfter) > io.now().getTime())
      )
        throw new CordonError(
          'MANIFEST_EXPIRED',
          `notAfter ${String(payload.notAfter)} is already past: every endpoint would refuse this manifest`,
          {
            file,
            pointer: '/notAfter',
            hint: 'ask its owner for a renewed manifest and sign that',
          },
        );
      result = cosignManifest(env, key);
    } else {
      result = signManifest(value, key, lintOptionsFor(endpointContext(io, opts)));
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
    printResult(io, {
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
