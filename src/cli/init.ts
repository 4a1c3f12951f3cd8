import { resolve } from 'node:path';
import { initAdminPolicyDir, initEndpointPolicyDir, readPassphrase } from '../store/policy-dir.js';
import { printResult, resolveDirs, usage, type CliIo, type GlobalOptions } from './context.js';

export interface InitOptions extends GlobalOptions {
  endpoint?: boolean;
  trust?: string;
  revocations?: string;
  passphraseFile?: string;
  json?: boolean;
}

export function runInit(io: CliIo, dirArg: string | undefined, opts: InitOptions): number {
  const dir = resolve(dirArg ?? resolveDirs(io, opts).policyDir);
  let result;
  if (opts.endpoint === true) {
    if (opts.trust === undefined || opts.revocations === undefined) {
      throw usage(
        '--endpoint needs --trust FILE and --revocations FILE',
        'pass the trust store and signed revocation list your administrators published',
      );
    }
    if (opts.passphraseFile !== undefined)
      throw usage(
        '--passphrase-file does not apply to --endpoint',
        'endpoints hold no signing key; remove the flag',
      );
    result = initEndpointPolicyDir(dir, opts.trust, opts.revocations, io.now());
  } else {
    if (opts.trust !== undefined || opts.revocations !== undefined)
      throw usage('--trust and --revocations need --endpoint', 'add --endpoint, or drop them');
    const passphrase =
      opts.passphraseFile === undefined ? undefined : readPassphrase(opts.passphraseFile);
    result = initAdminPolicyDir(dir, io.now(), passphrase);
  }
  if (opts.json === true) {
    printResult(io, { ok: true, mode: opts.endpoint === true ? 'endpoint' : 'admin', ...result });
  } else {
    io.stdout(`${opts.endpoint === true ? 'Endpoint' : 'Policy'} directory ${result.dir}\n`);
    for (const f of result.created) io.stdout(`  created ${f}\n`);
    for (const f of result.kept) io.stdout(`  kept    ${f}\n`);
    if (result.keyId !== undefined)
      io.stdout(`${opts.endpoint === true ? 'Device' : 'Organisation'} key id: ${result.keyId}\n`);
  }
  return 0;
}
