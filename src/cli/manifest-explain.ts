import { explainManifest, renderExplanation } from '../manifest/explain.js';
import { resolveForUser } from '../store/resolve.js';
import { lintOptionsFor } from '../endpoint/verify.js';
import { endpointContext, printResult, type CliIo, type GlobalOptions } from './context.js';
import { readManifest } from '../endpoint/read-manifest.js';

export function runManifestExplain(
  io: CliIo,
  file: string,
  opts: GlobalOptions & { json?: boolean },
): number {
  const { source, manifest } = readManifest(file);
  const e = explainManifest(
    manifest,
    lintOptionsFor(endpointContext(io, opts)),
    resolveForUser(manifest, io.home),
  );
  if (opts.json === true) printResult(io, { ok: true, file, signed: source.signed, ...e });
  else {
    if (source.signed)
      io.stdout(
        '(signed file; contents shown unverified: run `cordon manifest verify` to check the signature)\n',
      );
    io.stdout(renderExplanation(e));
  }
  return 0;
}
