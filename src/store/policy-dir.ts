import { existsSync, readdirSync } from 'node:fs';
import { packageFile } from '../package-files.js';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import { parseEnvelope } from '../manifest/dsse.js';
import {
  exportPrivateKeyPem,
  exportPublicKeyPem,
  generateSigningKey,
  keyIdOf,
  loadPrivateKeyPem,
  loadPublicKeyPem,
} from '../manifest/keys.js';
import {
  emptyRevocationList,
  signRevocationList,
  verifyRevocationList,
  type RevocationList,
} from '../manifest/revocation.js';
import { instantiateTemplate, TEMPLATES } from '../manifest/templates.js';
import {
  emptyTrustStore,
  loadTrustStore,
  type KeyPurpose,
  type TrustStore,
  type TrustStoreFile,
} from '../manifest/trust.js';
import type { KeyObject } from 'node:crypto';
import { parseConfigFile } from './config-file.js';
import {
  ensureDir,
  readFileCapped,
  readFileIfExists,
  writeFileAtomic,
  writeFileNew,
} from './files.js';

/** Where things live in a policy directory. */
export function policyPaths(dir: string) {
  return {
    dir,
    trust: join(dir, 'trust.json'),
    revocations: join(dir, 'revocations.json'),
    keys: join(dir, 'keys'),
    manifests: join(dir, 'manifests'),
    guardrails: join(dir, 'guardrails'),
    enforcement: join(dir, 'enforcement.json'),
    groups: join(dir, 'groups.json'),
    deviceKey: join(dir, 'device.key'),
    devicePub: join(dir, 'device.pub'),
  };
}

const MAX_POLICY_FILE = 16 * 1024 * 1024;

export function readTrustStore(policyDir: string): TrustStore {
  const file = policyPaths(policyDir).trust;
  const raw = readFileCapped(file, MAX_POLICY_FILE);
  try {
    return loadTrustStore(raw);
  } catch (e) {
    throw e instanceof CordonError ? e.withFile(file) : e;
  }
}

export function readTrustStoreFile(policyDir: string): TrustStoreFile {
  return readTrustStore(policyDir).file;
}

export function readRevocationBytes(policyDir: string): Buffer | undefined {
  return readFileIfExists(policyPaths(policyDir).revocations, MAX_POLICY_FILE);
}

/** Load a private key file, decrypting it with `passphrase` when it is encrypted. */
export function readPrivateKey(file: string, passphrase?: string): KeyObject {
  const pem = readFileCapped(file, 64 * 1024);
  try {
    return loadPrivateKeyPem(pem, passphrase);
  } catch (e) {
    throw e instanceof CordonError ? e.withFile(file) : e;
  }
}

export function readPassphrase(file: string): string {
  const text = readFileCapped(file, 4096)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (text.length < 8) {
    throw new CordonError('PASSPHRASE_WEAK', `${file}: passphrase is shorter than 8 characters`, {
      file,
      hint: 'use a longer passphrase',
    });
  }
  return text;
}

export interface GeneratedKey {
  readonly name: string;
  readonly keyId: string;
  readonly privateFile: string;
  readonly publicFile: string;
  readonly encrypted: boolean;
}

/** Generate an Ed25519 key pair into `dir` as NAME.key (PKCS#8, 0600) and NAME.pub; never overwrites. */
export function generateKeyFiles(dir: string, name: string, passphrase?: string): GeneratedKey {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new CordonError('KEY_NAME_INVALID', `key name "${name}" is not allowed`, {
      hint: 'use letters, digits, . _ - (up to 64)',
    });
  }
  const { privateKey, publicKey, keyId } = generateSigningKey();
  const privateFile = join(dir, `${name}.key`);
  const publicFile = join(dir, `${name}.pub`);
  if (existsSync(privateFile))
    throw new CordonError(
      'FILE_EXISTS',
      `${privateFile} already exists; refusing to overwrite it`,
      { file: privateFile, hint: 'choose another --name' },
    );
  ensureDir(dir, 0o700);
  writeFileNew(privateFile, exportPrivateKeyPem(privateKey, passphrase), 0o600);
  writeFileNew(publicFile, exportPublicKeyPem(publicKey), 0o644);
  return { name, keyId, privateFile, publicFile, encrypted: passphrase !== undefined };
}

export interface KeyListing {
  readonly name: string;
  readonly keyId: string;
  readonly source: 'trust-store' | 'key-file';
  readonly file?: string;
  readonly purposes?: readonly KeyPurpose[];
  readonly notBefore?: string;
  readonly notAfter?: string;
  readonly revoked?: boolean;
  readonly encrypted?: boolean;
}

/** Keys in the trust store and private key files in keys/ (public halves only are read for ids). */
export function listKeys(policyDir: string, revokedKeyIds: ReadonlySet<string>): KeyListing[] {
  const p = policyPaths(policyDir);
  const out: KeyListing[] = [];
  if (existsSync(p.trust)) {
    for (const k of readTrustStoreFile(policyDir).keys) {
      out.push({
        name: k.name,
        keyId: k.keyId,
        source: 'trust-store',
        purposes: k.purposes,
        ...(k.notBefore === undefined ? {} : { notBefore: k.notBefore }),
        ...(k.notAfter === undefined ? {} : { notAfter: k.notAfter }),
        revoked: revokedKeyIds.has(k.keyId),
      });
    }
  }
  const keyFiles = [
    ...(existsSync(p.keys)
      ? readdirSync(p.keys)
          .filter((f) => f.endsWith('.pub'))
          .map((f) => join(p.keys, f))
      : []),
    ...(existsSync(p.devicePub) ? [p.devicePub] : []),
  ];
  for (const file of keyFiles.sort()) {
    const pub = loadPublicKeyPem(readFileCapped(file, 64 * 1024));
    const priv = file.replace(/\.pub$/, '.key');
    const encrypted = existsSync(priv)
      ? readFileCapped(priv, 64 * 1024)
          .toString()
          .includes('ENCRYPTED')
      : undefined;
    out.push({
      name: file.slice(file.lastIndexOf('/') + 1).replace(/\.pub$/, ''),
      keyId: keyIdOf(pub),
      source: 'key-file',
      file: existsSync(priv) ? priv : file,
      ...(encrypted === undefined ? {} : { encrypted }),
      revoked: revokedKeyIds.has(keyIdOf(pub)),
    });
  }
  return out;
}

/** Add a public key to the trust store (atomic rewrite). */
export function trustKey(
  policyDir: string,
  entry: {
    name: string;
    publicKeyPem: string;
    purposes: KeyPurpose[];
    notBefore?: string;
    notAfter?: string;
  },
): { keyId: string } {
  const p = policyPaths(policyDir);
  const current: TrustStoreFile = existsSync(p.trust)
    ? readTrustStoreFile(policyDir)
    : emptyTrustStore();
  const key = loadPublicKeyPem(entry.publicKeyPem);
  const keyId = keyIdOf(key);
  if (current.keys.some((k) => k.keyId === keyId || k.name === entry.name)) {
    throw new CordonError(
      'TRUST_KEY_EXISTS',
      `the trust store already has a key named "${entry.name}" or with id ${keyId.slice(0, 16)}…`,
      {
        file: p.trust,
        hint: 'choose another --name, or remove the old entry first',
      },
    );
  }
  const next: TrustStoreFile = {
    ...current,
    keys: [
      ...current.keys,
      {
        name: entry.name,
        keyId,
        publicKey: exportPublicKeyPem(key),
        purposes: entry.purposes,
        ...(entry.notBefore === undefined ? {} : { notBefore: entry.notBefore }),
        ...(entry.notAfter === undefined ? {} : { notAfter: entry.notAfter }),
      },
    ],
  };
  // Check the result loads before writing it.
  loadTrustStore(JSON.stringify(next));
  writeFileAtomic(p.trust, JSON.stringify(next, null, 2) + '\n', 0o644);
  return { keyId };
}

/** Verify the current revocation list, apply `change`, bump the serial, re-sign and write it. */
export function updateRevocationList(
  policyDir: string,
  key: KeyObject,
  now: Date,
  change: (list: RevocationList) => RevocationList,
): RevocationList {
  const p = policyPaths(policyDir);
  const trust = readTrustStore(policyDir);
  const signerId = keyIdOf(key);
  const signer = trust.keys.get(signerId);
  if (signer === undefined || !signer.purposes.includes('revocation')) {
    throw new CordonError('KEY_PURPOSE', 'this key is not trusted to sign revocation lists', {
      hint: 'use the organisation key (trusted for "revocation") or add the key with `cordon keys trust --purpose revocation`',
    });
  }
  const raw = readRevocationBytes(policyDir);
  let list =
    raw === undefined
      ? emptyRevocationList(now, 0)
      : verifyRevocationList(raw, trust, { now }).list;
  list = change(list);
  const next: RevocationList = { ...list, serial: list.serial + 1, issuedAt: now.toISOString() };
  writeFileAtomic(
    p.revocations,
    JSON.stringify(signRevocationList(next, key), null, 2) + '\n',
    0o644,
  );
  return next;
}

export interface InitResult {
  readonly dir: string;
  readonly created: string[];
  readonly kept: string[];
  readonly keyId: string | undefined;
}

/**
 * Create an administrator's policy directory: organisation key, trust store, signed empty
 * revocation list, example manifests from every template (signed), a guardrails folder and a
 * group mapping. Idempotent: existing files are kept, never overwritten.
 */
export function initAdminPolicyDir(dir: string, now: Date, passphrase?: string): InitResult {
  const p = policyPaths(dir);
  const created: string[] = [];
  const kept: string[] = [];
  const note = (file: string, made: boolean): void => {
    (made ? created : kept).push(file);
  };
  ensureDir(dir, 0o755);
  const orgKeyFile = join(p.keys, 'org.key');
  if (existsSync(orgKeyFile)) {
    note(orgKeyFile, false);
  } else {
    note(generateKeyFiles(p.keys, 'org', passphrase).privateFile, true);
  }
  // Loaded only when something must be signed or trusted, so a re-run needs no passphrase.
  let cached: KeyObject | undefined;
  const orgKey = (): KeyObject => (cached ??= readPrivateKey(orgKeyFile, passphrase));
  const orgId = keyIdOf(loadPublicKeyPem(readFileCapped(join(p.keys, 'org.pub'), 64 * 1024)));
  if (!existsSync(p.trust)) {
    // Built whole and written once, so an interrupted init never leaves an empty trust store behind.
    const trust: TrustStoreFile = {
      ...emptyTrustStore(),
      keys: [
        {
          name: 'org',
          keyId: orgId,
          publicKey: exportPublicKeyPem(orgKey()),
          purposes: ['manifest', 'revocation'],
        },
      ],
    };
    loadTrustStore(JSON.stringify(trust));
    writeFileNew(p.trust, JSON.stringify(trust, null, 2) + '\n');
    note(p.trust, true);
  } else note(p.trust, false);
  if (!existsSync(p.revocations)) {
    writeFileNew(
      p.revocations,
      JSON.stringify(signRevocationList(emptyRevocationList(now), orgKey()), null, 2) + '\n',
    );
    note(p.revocations, true);
  } else note(p.revocations, false);
  ensureDir(p.manifests, 0o755);
  for (const t of TEMPLATES) {
    const file = join(p.manifests, `${t.name}.example.json`);
    if (existsSync(file)) {
      note(file, false);
      continue;
    }
    writeFileNew(
      file,
      JSON.stringify(
        instantiateTemplate({ template: t.name, agentName: `example-${t.name}`, now }),
        null,
        2,
      ) + '\n',
    );
    note(file, true);
  }
  ensureDir(p.guardrails, 0o755);
  const guardrailsReadme = join(p.guardrails, 'README.md');
  if (!existsSync(guardrailsReadme)) {
    writeFileNew(
      guardrailsReadme,
      '# Organisation guardrails\n\nCedar files (`*.cedar`) placed here apply to every agent, above any manifest: a forbid always wins, and guardrails can only forbid. Check them with `cordon policy validate`; the schema is `cordon policy schema`. `examples/` is not loaded: copy a file up to enable it. `admission.json` may set `{"maxValidityDays": N}`.\n',
    );
    note(guardrailsReadme, true);
  } else note(guardrailsReadme, false);
  // Example guardrails go to guardrails/examples/, which is not loaded: copy one up to enable it.
  const examplesSrc = packageFile('examples', 'guardrails');
  if (existsSync(examplesSrc)) {
    for (const f of readdirSync(examplesSrc).filter((x) => x.endsWith('.cedar'))) {
      const dst = join(p.guardrails, 'examples', f);
      if (existsSync(dst)) note(dst, false);
      else {
        ensureDir(dirname(dst), 0o755);
        writeFileNew(dst, readFileCapped(join(examplesSrc, f), 1024 * 1024));
        note(dst, true);
      }
    }
  }
  if (!existsSync(p.groups)) {
    const groups = {
      apiVersion: 'cordon.dev/v1',
      kind: 'GroupMapping',
      groups: Object.fromEntries(
        TEMPLATES.map((t) => [
          `${t.name}s`,
          { template: t.name, params: { workDir: t.defaultWorkDir } },
        ]),
      ),
    };
    writeFileNew(p.groups, JSON.stringify(groups, null, 2) + '\n');
    note(p.groups, true);
  } else note(p.groups, false);
  // The admin's machine audits its own agents too; its device key signs only its checkpoints.
  note(p.deviceKey, ensureDeviceKey(dir).created);
  return { dir, created, kept, keyId: orgId };
}

/**
 * The device's own Ed25519 key (`device.key`, mode 0600), created on first use. It signs audit
 * checkpoints and nothing else; it is never a manifest-signing key and is never trusted for one.
 */
export function ensureDeviceKey(policyDir: string): {
  key: KeyObject;
  keyId: string;
  created: boolean;
} {
  const p = policyPaths(policyDir);
  if (existsSync(p.deviceKey)) {
    const key = readPrivateKey(p.deviceKey);
    return { key, keyId: keyIdOf(key), created: false };
  }
  const { privateKey, publicKey, keyId } = generateSigningKey();
  writeFileNew(p.deviceKey, exportPrivateKeyPem(privateKey), 0o600);
  writeFileNew(p.devicePub, exportPublicKeyPem(publicKey));
  return { key: privateKey, keyId, created: true };
}

/**
 * Create an endpoint's policy directory: the organisation's trust store and revocation list
 * (copied from files the administrator published, both checked first) and a per-device key for
 * signing audit checkpoints. No manifest-signing key ever lives here.
 */
export function initEndpointPolicyDir(
  dir: string,
  trustFile: string,
  revocationFile: string,
  now: Date,
): InitResult {
  const p = policyPaths(dir);
  const created: string[] = [];
  const kept: string[] = [];
  ensureDir(dir, 0o755);
  const trustRaw = readFileCapped(trustFile, MAX_POLICY_FILE);
  const trust = (() => {
    try {
      return loadTrustStore(trustRaw);
    } catch (e) {
      throw e instanceof CordonError ? e.withFile(trustFile) : e;
    }
  })();
  const revRaw = readFileCapped(revocationFile, MAX_POLICY_FILE);
  try {
    parseEnvelope(revRaw);
    verifyRevocationList(revRaw, trust, { now });
  } catch (e) {
    throw e instanceof CordonError ? e.withFile(revocationFile) : e;
  }
  for (const [dst, raw] of [
    [p.trust, trustRaw],
    [p.revocations, revRaw],
  ] as const) {
    if (existsSync(dst)) kept.push(dst);
    else {
      writeFileNew(dst, raw);
      created.push(dst);
    }
  }
  const device = ensureDeviceKey(dir);
  (device.created ? created : kept).push(p.deviceKey);
  return { dir, created, kept, keyId: device.keyId };
}

const AdmissionSchema = z.strictObject({
  maxValidityDays: z
    .number()
    .int()
    .min(1)
    .max(3650)
    .optional()
    .describe('Longest manifest validity accepted, in days.'),
});

/** Organisation admission settings (`guardrails/admission.json`); absent file means defaults. */
export function readAdmission(policyDir: string): { maxValidityDays?: number } {
  const file = join(policyPaths(policyDir).guardrails, 'admission.json');
  const raw = readFileIfExists(file, 64 * 1024);
  if (raw === undefined) return {};
  try {
    const r = AdmissionSchema.parse(parseStrictJson(raw));
    return r.maxValidityDays === undefined ? {} : { maxValidityDays: r.maxValidityDays };
  } catch (cause) {
    const msg =
      cause instanceof CordonError
        ? cause.message
        : ((cause as { issues?: { message: string; path: PropertyKey[] }[] }).issues
            ?.map((i) => `/${i.path.map(String).join('/')}: ${i.message}`)
            .join('; ') ?? String(cause));
    throw new CordonError('CONFIG_INVALID', `${file}: ${msg}`, {
      file,
      hint: 'admission.json holds only {"maxValidityDays": N}',
      cause,
    });
  }
}

const EnforcementSchema = z.strictObject({
  allowWithoutGuardrails: z
    .boolean()
    .default(false)
    .describe(
      'Whether `cordon run` and `cordon proxy` may enforce a manifest without organisation guardrails (none installed, or --no-guardrails). Default false: they refuse.',
    ),
  allowUnsafeNoSandbox: z
    .boolean()
    .default(false)
    .describe(
      "Whether `cordon run --unsafe-no-sandbox` may start an agent unconfined (with the user's full rights; only its proxy-aware traffic governed). Default false: the flag is refused.",
    ),
});
export type EnforcementSettings = z.output<typeof EnforcementSchema>;

/** The setting that lets enforcement run without guardrails, as named in refusals and audit events. */
export const WITHOUT_GUARDRAILS_SETTING = 'enforcement.json allowWithoutGuardrails';

/** The setting that lets `cordon run --unsafe-no-sandbox` start an agent unconfined. */
export const UNSAFE_NO_SANDBOX_SETTING = 'enforcement.json allowUnsafeNoSandbox';

/**
 * Enforcement settings of a policy directory (`enforcement.json`); an absent file means the
 * defaults (guardrails required). A damaged file is an error naming the field, never a default.
 */
export function readEnforcement(policyDir: string): EnforcementSettings & { file: string } {
  const file = policyPaths(policyDir).enforcement;
  const raw = readFileIfExists(file, 64 * 1024);
  const parsed =
    raw === undefined
      ? EnforcementSchema.parse({})
      : parseConfigFile(EnforcementSchema, raw, file, {
          code: 'CONFIG_INVALID',
          hint: 'enforcement.json holds only {"allowWithoutGuardrails": true|false, "allowUnsafeNoSandbox": true|false}',
          maxBytes: 64 * 1024,
        });
  return { ...parsed, file };
}
