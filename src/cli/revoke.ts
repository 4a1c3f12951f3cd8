import { existsSync } from 'node:fs';
import { CordonError } from '../errors.js';
import { ENVELOPE_MAX_BYTES, parseEnvelope, strictBase64 } from '../manifest/dsse.js';
import { manifestDigest } from '../manifest/sign.js';
import { readFileCapped } from '../store/files.js';
import {
  readPassphrase,
  readPrivateKey,
  readTrustStore,
  updateRevocationList,
} from '../store/policy-dir.js';
import { printResult, resolveDirs, usage, type CliIo, type GlobalOptions } from './context.js';

export interface RevokeOptions extends GlobalOptions {
  reason: string;
  key: string;
  passphraseFile?: string;
  json?: boolean;
}

/** Revoke a manifest (by digest or signed file) or a key (by id or trust-store name), re-signing the list. */
export function runRevoke(
  io: CliIo,
  kind: 'manifest' | 'key',
  target: string,
  opts: RevokeOptions,
): number {
  if (opts.reason.trim() === '')
    throw usage('--reason must not be empty', 'say why, e.g. --reason "leaked in ticket SEC-123"');
  const dirs = resolveDirs(io, opts);
  const key = readPrivateKey(
    opts.key,
    opts.passphraseFile === undefined ? undefined : readPassphrase(opts.passphraseFile),
  );
  const now = io.now();
  let id: string;
  if (kind === 'manifest') {
    if (/^sha256:[0-9a-f]{64}$/.test(target)) id = target;
    else if (existsSync(target)) {
      const env = parseEnvelope(readFileCapped(target, ENVELOPE_MAX_BYTES));
      id = manifestDigest(strictBase64(env.payload, 'payload'));
    } else
      throw usage(
        `"${target}" is neither a sha256:<hex> digest nor a signed manifest file`,
        'pass the digest printed by `cordon manifest sign` or the signed file',
      );
  } else {
    if (/^[0-9a-f]{64}$/.test(target)) id = target;
    else {
      const k = [...readTrustStore(dirs.policyDir).keys.values()].find((x) => x.name === target);
      if (k === undefined)
        throw new CordonError('KEY_UNKNOWN', `no trusted key named "${target}"`, {
          hint: 'pass the 64-hex key id or a name from `cordon keys list`',
        });
      id = k.keyId;
    }
  }
  const list = updateRevocationList(dirs.policyDir, key, now, (l) => {
    if (kind === 'manifest') {
      if (l.manifests.some((m) => m.digest === id))
        throw new CordonError('ALREADY_REVOKED', `${id} is already revoked`, {
          hint: 'nothing to do',
        });
      return {
        ...l,
        manifests: [
          ...l.manifests,
          { digest: id, reason: opts.reason, revokedAt: now.toISOString() },
        ],
      };
    }
    if (l.keys.some((k) => k.keyId === id))
      throw new CordonError('ALREADY_REVOKED', `key ${id} is already revoked`, {
        hint: 'nothing to do',
      });
    return {
      ...l,
      keys: [...l.keys, { keyId: id, reason: opts.reason, revokedAt: now.toISOString() }],
    };
  });
  if (opts.json === true) printResult(io, { ok: true, kind, id, serial: list.serial });
  else
    io.stdout(
      `revoked ${kind} ${id}\nrevocation list serial ${list.serial}; publish it to endpoints\n`,
    );
  return 0;
}
