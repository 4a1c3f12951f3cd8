import { describe, expect, it } from 'vitest';
import { canonicalize } from '../../src/manifest/canonical.js';
import { addSignature, signEnvelope, type Envelope } from '../../src/manifest/dsse.js';
import { manifestDigest, signManifest } from '../../src/manifest/sign.js';
import {
  ManifestVerifier,
  MemoryAcceptanceStore,
  VERIFY_STEPS,
  type VerifyReport,
} from '../../src/manifest/verify.js';
import {
  HOME,
  key,
  manifest,
  NOW,
  revocations,
  signRaw,
  trustStore,
  type TestKey,
} from '../helpers.js';

const org = key('org');
const vendor = key('vendor');
const stranger = key('stranger');

interface Setup {
  trust?: ReturnType<typeof trustStore>;
  revocationList?: string | undefined;
  store?: MemoryAcceptanceStore;
  now?: Date;
  threshold?: number;
}

function verifier(s: Setup = {}): ManifestVerifier {
  return new ManifestVerifier({
    trust: s.trust ?? trustStore([{ k: org }, { k: vendor, purposes: ['manifest'] }]),
    revocationList: 'revocationList' in s ? s.revocationList : revocations(org),
    store: s.store ?? new MemoryAcceptanceStore(),
    lint: { home: HOME },
    now: () => s.now ?? NOW,
    ...(s.threshold === undefined ? {} : { threshold: s.threshold }),
  });
}

function signed(
  over: Parameters<typeof manifest>[0] = {},
  k: TestKey = org,
  at: Date = NOW,
): Envelope {
  return signManifest(manifest(over), k.privateKey, { home: HOME, now: at }).envelope;
}
/** Signed while still valid (sign refuses an expired manifest), verified later. */
const SIGNED_LAST_YEAR = new Date('2025-12-01T00:00:00Z');

const bytes = (env: Envelope): string => JSON.stringify(env);
function failedAt(r: VerifyReport): [string | undefined, string | undefined] {
  return [r.steps.find((s) => s.status === 'fail')?.name, r.code];
}

describe('ManifestVerifier', () => {
  it('passes every step, in order, for a good manifest, and records the version', () => {
    const store = new MemoryAcceptanceStore();
    const env = signed();
    const r = verifier({ store }).verify(bytes(env));
    expect(r.ok).toBe(true);
    expect(r.steps.map((s) => s.name)).toEqual([...VERIFY_STEPS]);
    expect(r.steps.every((s) => s.status === 'pass')).toBe(true);
    expect(r.signers).toEqual([{ keyId: org.keyId, name: 'org' }]);
    expect(r.digest).toBe(manifestDigest(Buffer.from(env.payload, 'base64')));
    expect(store.lastAccepted('cowork-lite')).toEqual({ version: '1.0.0', digest: r.digest });
  });

  it('stops at the first failing step and skips the rest', () => {
    const env = signed();
    const r = verifier().verify(bytes({ ...env, payloadType: 'application/json' }));
    expect(failedAt(r)).toEqual(['payloadType', 'PAYLOAD_TYPE_MISMATCH']);
    expect(r.steps.slice(2).every((s) => s.status === 'skipped')).toBe(true);
    expect(r.manifest).toBeUndefined();
  });

  describe('envelope', () => {
    it('malformed JSON, invalid UTF-8, huge input, wrong shape, no signature, non-canonical base64', () => {
      const v = verifier();
      expect(failedAt(v.verify('{"payload":'))).toEqual(['envelope', 'JSON_SYNTAX']);
      expect(failedAt(v.verify(Buffer.from([0x7b, 0xff, 0x7d])))).toEqual([
        'envelope',
        'JSON_ENCODING',
      ]);
      expect(failedAt(v.verify(' '.repeat(1024 * 1024 + 1)))).toEqual([
        'envelope',
        'JSON_TOO_LARGE',
      ]);
      expect(failedAt(v.verify('{"payload":"","payloadType":"x"}'))).toEqual([
        'envelope',
        'ENVELOPE_INVALID',
      ]);
      const env = signed();
      expect(failedAt(v.verify(bytes({ ...env, extra: 1 } as Envelope)))).toEqual([
        'envelope',
        'ENVELOPE_INVALID',
      ]);
      expect(failedAt(v.verify(bytes({ ...env, signatures: [] })))).toEqual([
        'envelope',
        'SIGNATURE_MISSING',
      ]);
      // "QQ==" and "QR==" decode to the same byte; only the canonical form is accepted.
      const tweaked = env.payload.endsWith('=')
        ? env.payload.slice(0, -2) +
          String.fromCharCode(env.payload.charCodeAt(env.payload.length - 2) + 1) +
          '='
        : env.payload + '=';
      expect(v.verify(bytes({ ...env, payload: tweaked })).ok).toBe(false);
      const dup = bytes(env).replace('"payloadType":', '"payloadType":"x","payloadType":');
      expect(failedAt(v.verify(dup))).toEqual(['envelope', 'JSON_DUPLICATE_KEY']);
    });
  });

  describe('signatures', () => {
    it('a tampered payload fails the signature', () => {
      const env = signed();
      const evil = canonicalize({
        ...JSON.parse(Buffer.from(env.payload, 'base64').toString()),
        readPaths: ['/'],
      });
      const r = verifier().verify(bytes({ ...env, payload: Buffer.from(evil).toString('base64') }));
      expect(failedAt(r)).toEqual(['signatures', 'SIGNATURE_INVALID']);
    });

    it('a signature by an untrusted key', () => {
      expect(failedAt(verifier().verify(bytes(signed({}, stranger))))).toEqual([
        'signatures',
        'SIGNATURE_UNTRUSTED',
      ]);
    });

    it('a key id claiming to be the trusted key but signed by another', () => {
      const env = signed({}, stranger);
      const lying = { ...env, signatures: [{ keyid: org.keyId, sig: env.signatures[0]!.sig }] };
      expect(failedAt(verifier().verify(bytes(lying)))).toEqual([
        'signatures',
        'SIGNATURE_INVALID',
      ]);
    });

    it('a key revoked in the revocation list', () => {
      const list = revocations(org, {
        keys: [{ keyId: vendor.keyId, reason: 'laptop stolen', revokedAt: NOW.toISOString() }],
      });
      const r = verifier({ revocationList: list }).verify(bytes(signed({}, vendor)));
      expect(failedAt(r)).toEqual(['signatures', 'KEY_REVOKED']);
      expect(r.message).toContain('laptop stolen');
    });

    it('an expired key, a key not yet valid, a key without the manifest purpose', () => {
      const t = (e: Parameters<typeof trustStore>[0]) =>
        trustStore([{ k: org, purposes: ['revocation'] }, ...e]);
      expect(
        failedAt(
          verifier({
            trust: t([{ k: vendor, purposes: ['manifest'], notAfter: '2026-01-01T00:00:00Z' }]),
          }).verify(bytes(signed({}, vendor))),
        ),
      ).toEqual(['signatures', 'KEY_EXPIRED']);
      expect(
        failedAt(
          verifier({
            trust: t([{ k: vendor, purposes: ['manifest'], notBefore: '2027-01-01T00:00:00Z' }]),
          }).verify(bytes(signed({}, vendor))),
        ),
      ).toEqual(['signatures', 'KEY_NOT_YET_VALID']);
      expect(
        failedAt(
          verifier({ trust: t([{ k: vendor, purposes: ['audit-checkpoint'] }]) }).verify(
            bytes(signed({}, vendor)),
          ),
        ),
      ).toEqual(['signatures', 'KEY_PURPOSE']);
    });

    it('a threshold of two needs two distinct trusted keys', () => {
      const trust = trustStore([{ k: org }, { k: vendor, purposes: ['manifest'] }], 2);
      const one = signed();
      expect(failedAt(verifier({ trust }).verify(bytes(one)))).toEqual([
        'signatures',
        'THRESHOLD_NOT_MET',
      ]);
      // The same key twice does not count twice.
      const twice = { ...one, signatures: [one.signatures[0]!, one.signatures[0]!] };
      expect(failedAt(verifier({ trust }).verify(bytes(twice)))).toEqual([
        'signatures',
        'THRESHOLD_NOT_MET',
      ]);
      // A stranger's signature does not count either.
      const withStranger = {
        ...one,
        signatures: [
          ...one.signatures,
          signRaw(JSON.parse(Buffer.from(one.payload, 'base64').toString()), stranger)
            .signatures[0]!,
        ],
      };
      expect(failedAt(verifier({ trust }).verify(bytes(withStranger)))).toEqual([
        'signatures',
        'THRESHOLD_NOT_MET',
      ]);
      const both = addSignature(one, vendor.privateKey);
      const r = verifier({ trust }).verify(bytes(both));
      expect(r.ok).toBe(true);
      expect(r.signers.map((s) => s.name).sort()).toEqual(['org', 'vendor']);
      // The caller may demand more than the trust store does.
      expect(failedAt(verifier({ threshold: 2 }).verify(bytes(one)))).toEqual([
        'signatures',
        'THRESHOLD_NOT_MET',
      ]);
    });
  });

  describe('revocation', () => {
    it('a revoked manifest digest', () => {
      const env = signed();
      const digest = manifestDigest(Buffer.from(env.payload, 'base64'));
      const list = revocations(org, {
        manifests: [{ digest, reason: 'granted too much', revokedAt: NOW.toISOString() }],
      });
      expect(failedAt(verifier({ revocationList: list }).verify(bytes(env)))).toEqual([
        'digest',
        'MANIFEST_REVOKED',
      ]);
    });

    it('fails closed without a revocation list, or with an untrusted or older one', () => {
      const env = bytes(signed());
      expect(failedAt(verifier({ revocationList: undefined }).verify(env))).toEqual([
        'revocationList',
        'REVOCATION_LIST_MISSING',
      ]);
      expect(failedAt(verifier({ revocationList: revocations(stranger) }).verify(env))).toEqual([
        'revocationList',
        'REVOCATION_LIST_UNTRUSTED',
      ]);
      // The vendor key may sign manifests but not revocation lists.
      expect(failedAt(verifier({ revocationList: revocations(vendor) }).verify(env))).toEqual([
        'revocationList',
        'REVOCATION_LIST_UNTRUSTED',
      ]);
      expect(failedAt(verifier({ revocationList: '{"payload":' }).verify(env))).toEqual([
        'revocationList',
        'REVOCATION_LIST_INVALID',
      ]);
      const store = new MemoryAcceptanceStore();
      expect(
        verifier({ store, revocationList: revocations(org, { serial: 5 }) }).verify(env).ok,
      ).toBe(true);
      expect(
        failedAt(verifier({ store, revocationList: revocations(org, { serial: 4 }) }).verify(env)),
      ).toEqual(['revocationList', 'REVOCATION_LIST_ROLLBACK']);
    });
  });

  describe('payload and validity', () => {
    it('a payload that is not canonical JSON', () => {
      const env = signRaw(manifest(), org);
      const pretty = Buffer.from(
        JSON.stringify(JSON.parse(Buffer.from(env.payload, 'base64').toString()), null, 2),
      );
      const env2 = signEnvelope(env.payloadType, pretty, org.privateKey);
      expect(failedAt(verifier().verify(bytes(env2)))).toEqual([
        'payload',
        'MANIFEST_NOT_CANONICAL',
      ]);
    });

    it('an expired manifest and one not yet valid', () => {
      expect(
        failedAt(
          verifier().verify(
            bytes(signed({ notAfter: '2026-01-01T00:00:00Z' }, org, SIGNED_LAST_YEAR)),
          ),
        ),
      ).toEqual(['validity', 'MANIFEST_EXPIRED']);
      expect(
        failedAt(verifier().verify(bytes(signed({ notBefore: '2026-12-01T00:00:00Z' })))),
      ).toEqual(['validity', 'MANIFEST_NOT_YET_VALID']);
      // Within the clock-skew allowance (60 s) is accepted.
      expect(
        verifier().verify(
          bytes(signed({ notBefore: new Date(NOW.getTime() + 30_000).toISOString() })),
        ),
      ).toMatchObject({ ok: true });
    });
  });

  describe('rollback', () => {
    it('refuses an older version than one accepted, and the same version with different content', () => {
      const store = new MemoryAcceptanceStore();
      expect(verifier({ store }).verify(bytes(signed({ version: '1.2.0' }))).ok).toBe(true);
      expect(failedAt(verifier({ store }).verify(bytes(signed({ version: '1.1.9' }))))).toEqual([
        'rollback',
        'MANIFEST_ROLLBACK',
      ]);
      expect(
        failedAt(
          verifier({ store }).verify(bytes(signed({ version: '1.2.0', readPaths: ['~/Work/**'] }))),
        ),
      ).toEqual(['rollback', 'MANIFEST_VERSION_REUSED']);
      expect(verifier({ store }).verify(bytes(signed({ version: '1.2.0' }))).ok).toBe(true);
      expect(verifier({ store }).verify(bytes(signed({ version: '1.10.0' }))).ok).toBe(true);
      expect(
        failedAt(verifier({ store }).verify(bytes(signed({ version: '1.10.0-rc.1' })))),
      ).toEqual(['rollback', 'MANIFEST_ROLLBACK']);
      // Other agents are independent.
      expect(
        verifier({ store }).verify(bytes(signed({ agentName: 'other', version: '0.1.0' }))).ok,
      ).toBe(true);
    });

    it('a failed verification records nothing', () => {
      const store = new MemoryAcceptanceStore();
      verifier({ store }).verify(
        bytes(
          signed({ version: '9.0.0', notAfter: '2026-01-01T00:00:00Z' }, org, SIGNED_LAST_YEAR),
        ),
      );
      expect(store.lastAccepted('cowork-lite')).toBeUndefined();
    });
  });

  describe('schema and lint', () => {
    it('a signed payload that breaks the schema', () => {
      const env = signRaw({ ...manifest(), readPaths: ['relative'] }, org);
      expect(failedAt(verifier().verify(bytes(env)))).toEqual(['schema', 'PATH_RELATIVE']);
      const unknown = signRaw({ ...manifest(), readPath: ['/'] }, org);
      expect(failedAt(verifier().verify(bytes(unknown)))).toEqual([
        'schema',
        'MANIFEST_UNKNOWN_FIELD',
      ]);
    });

    it('a signed payload with lint errors', () => {
      const env = signRaw({ ...manifest(), env: ['LD_PRELOAD'] }, org);
      expect(failedAt(verifier().verify(bytes(env)))).toEqual(['lint', 'MANIFEST_LINT']);
    });
  });
});

describe('ManifestVerifier fails closed on internal errors', () => {
  it('an exception inside a step is a failure with VERIFY_ERROR, never a pass', () => {
    const trust = trustStore([{ k: org }]);
    const broken = {
      ...trust,
      keys: new (class extends Map<string, never> {
        override get(): never {
          throw new Error('disk on fire');
        }
      })(),
    };
    const v = new ManifestVerifier({
      trust: broken,
      revocationList: undefined,
      store: new MemoryAcceptanceStore(),
      lint: { home: HOME },
      now: () => NOW,
    });
    // Revocation loading fails first (it also consults the keys), so check a verifier whose list loaded.
    expect(v.verify(bytes(signed())).ok).toBe(false);
    const ok = verifier();
    (ok as unknown as { opts: { trust: unknown } }).opts.trust = broken;
    const r = ok.verify(bytes(signed()));
    expect(r.ok).toBe(false);
    expect(failedAt(r)).toEqual(['signatures', 'VERIFY_ERROR']);
  });
});

describe('ManifestVerifier reuses only what the signed bytes determine', () => {
  it('a payload seen before is still signature-checked, time-checked and rollback-checked on every call', () => {
    let now = NOW;
    const store = new MemoryAcceptanceStore();
    const v = new ManifestVerifier({
      trust: trustStore([{ k: org }]),
      revocationList: revocations(org),
      store,
      lint: { home: HOME },
      now: () => now,
    });
    const env = signed({ version: '2.0.0', notAfter: '2027-01-01T00:00:00Z' });
    expect(v.verify(bytes(env)).ok).toBe(true);
    // Same payload, signature by an untrusted key: refused although the payload was analysed before.
    const bySomeoneElse = {
      ...env,
      signatures: signRaw(JSON.parse(Buffer.from(env.payload, 'base64').toString()), stranger)
        .signatures,
    };
    expect(failedAt(v.verify(bytes(bySomeoneElse)))).toEqual(['signatures', 'SIGNATURE_UNTRUSTED']);
    // A corrupted signature on the same payload.
    const sig = Buffer.from(env.signatures[0]!.sig, 'base64');
    sig[0] = (sig[0] ?? 0) ^ 1;
    expect(
      failedAt(
        v.verify(
          bytes({ ...env, signatures: [{ keyid: org.keyId, sig: sig.toString('base64') }] }),
        ),
      ),
    ).toEqual(['signatures', 'SIGNATURE_INVALID']);
    // Time moves on: the same bytes expire.
    now = new Date('2027-02-01T00:00:00Z');
    expect(failedAt(v.verify(bytes(env)))).toEqual(['validity', 'MANIFEST_EXPIRED']);
    // A lint-failing payload keeps failing when seen again.
    now = NOW;
    const bad = bytes(signRaw({ ...manifest({ agentName: 'other' }), env: ['LD_PRELOAD'] }, org));
    expect(failedAt(v.verify(bad))).toEqual(['lint', 'MANIFEST_LINT']);
    expect(failedAt(v.verify(bad))).toEqual(['lint', 'MANIFEST_LINT']);
  });
});
