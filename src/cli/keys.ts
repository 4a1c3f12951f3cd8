import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KEY_PURPOSES, type KeyPurpose } from '../manifest/trust.js';
import { readFileCapped } from '../store/files.js';
import {
  generateKeyFiles,
  listKeys,
  policyPaths,
  readPassphrase,
  readRevocationBytes,
  readTrustStore,
  trustKey,
} from '../store/policy-dir.js';
import { verifyRevocationList } from '../manifest/revocation.js';
import { printResult, resolveDirs, usage, type CliIo, type GlobalOptions } from './context.js';

export function runKeysGenerate(
  io: CliIo,
  opts: GlobalOptions & { name?: string; passphraseFile?: string; dir?: string; json?: boolean },
): number {
  const dir = opts.dir ?? policyPaths(resolveDirs(io, opts).policyDir).keys;
  const passphrase =
    opts.passphraseFile === undefined ? undefined : readPassphrase(opts.passphraseFile);
  const g = generateKeyFiles(dir, opts.name ?? 'signing', passphrase);
  if (opts.json === true) printResult(io, { ok: true, ...g });
  else {
    io.stdout(
      `generated Ed25519 key "${g.name}"${g.encrypted ? ' (encrypted)' : ''}\n  private ${g.privateFile} (mode 0600)\n  public  ${g.publicFile}\n  key id  ${g.keyId}\n`,
    );
    io.stdout(
      `trust it on endpoints with: cordon keys trust --name ${g.name} --pub ${g.publicFile} --purpose manifest\n`,
    );
  }
  return 0;
}

export function runKeysList(io: CliIo, opts: GlobalOptions & { json?: boolean }): number {
  const dirs = resolveDirs(io, opts);
  let revoked = new Set<string>();
  const rev = readRevocationBytes(dirs.policyDir);
  if (rev !== undefined && existsSync(policyPaths(dirs.policyDir).trust)) {
    revoked = new Set(
      verifyRevocationList(rev, readTrustStore(dirs.policyDir), { now: io.now() }).keyIds,
    );
  }
  const keys = listKeys(dirs.policyDir, revoked);
  if (opts.json === true) printResult(io, { ok: true, policyDir: dirs.policyDir, keys });
  else {
    if (keys.length === 0)
      io.stdout(`no keys in ${dirs.policyDir}; run \`cordon init\` or \`cordon keys generate\`\n`);
    for (const k of keys) {
      const parts = [
        k.source === 'trust-store'
          ? `trusted for ${(k.purposes ?? []).join(', ')}`
          : `key file ${k.file ?? ''}${k.encrypted === true ? ' (encrypted)' : ''}`,
        k.notBefore === undefined ? '' : `from ${k.notBefore}`,
        k.notAfter === undefined ? '' : `until ${k.notAfter}`,
        k.revoked === true ? 'REVOKED' : '',
      ].filter((p) => p !== '');
      io.stdout(`${k.name.padEnd(16)} ${k.keyId}  ${parts.join('; ')}\n`);
    }
  }
  return 0;
}

export interface KeysTrustOptions {
  name: string;
  pub: string;
  purpose: string[];
  notBefore?: string;
  notAfter?: string;
  json?: boolean;
}

export function runKeysTrust(io: CliIo, opts: GlobalOptions & KeysTrustOptions): number {
  for (const p of opts.purpose) {
    if (!(KEY_PURPOSES as readonly string[]).includes(p))
      throw usage(`--purpose ${p} is unknown`, `use ${KEY_PURPOSES.join(', ')}`);
  }
  for (const [flag, v] of [
    ['--not-before', opts.notBefore],
    ['--not-after', opts.notAfter],
  ] as const) {
    if (v !== undefined && Number.isNaN(Date.parse(v)))
      throw usage(`${flag} "${v}" is not a timestamp`, 'write e.g. 2027-01-01T00:00:00Z');
  }
  const dirs = resolveDirs(io, opts);
  const { keyId } = trustKey(dirs.policyDir, {
    name: opts.name,
    publicKeyPem: readFileCapped(opts.pub, 64 * 1024).toString(),
    purposes: opts.purpose as KeyPurpose[],
    ...(opts.notBefore === undefined ? {} : { notBefore: new Date(opts.notBefore).toISOString() }),
    ...(opts.notAfter === undefined ? {} : { notAfter: new Date(opts.notAfter).toISOString() }),
  });
  if (opts.json === true)
    printResult(io, { ok: true, name: opts.name, keyId, purposes: opts.purpose });
  else
    io.stdout(
      `trusted "${opts.name}" (${keyId}) for ${opts.purpose.join(', ')} in ${join(dirs.policyDir, 'trust.json')}\n`,
    );
  return 0;
}
