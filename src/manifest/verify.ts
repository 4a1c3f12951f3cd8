import { createHash } from 'node:crypto';
import semverCompare from 'semver/functions/compare.js';
import semverValid from 'semver/functions/valid.js';
import { CordonError, type CordonCode } from '../errors.js';
import { canonicalize } from './canonical.js';
import {
  ENVELOPE_MAX_BYTES,
  parseEnvelope,
  strictBase64,
  verifySignature,
  type Envelope,
} from './dsse.js';
import { parseStrictJson, type JsonValue } from './json.js';
import { lintManifest, type LintFinding, type LintOptions } from './lint.js';
import { validateManifest } from './parse.js';
import { verifyRevocationList, type Revocations } from './revocation.js';
import { MANIFEST_MAX_BYTES, MANIFEST_PAYLOAD_TYPE, type Manifest } from './schema.js';
import type { TrustStore } from './trust.js';

/** Steps of manifest verification, in the order they run. */
export const VERIFY_STEPS = [
  'envelope',
  'payloadType',
  'revocationList',
  'signatures',
  'digest',
  'payload',
  'validity',
  'rollback',
  'schema',
  'lint',
] as const;
export type VerifyStepName = (typeof VERIFY_STEPS)[number];

export interface VerifyStep {
  readonly name: VerifyStepName;
  readonly status: 'pass' | 'fail' | 'skipped';
  readonly code?: CordonCode;
  readonly message: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  /** The failing step's code when `ok` is false. */
  readonly code: CordonCode | undefined;
  readonly message: string;
  /** What to do about the failure, when there is something specific to do. */
  readonly hint?: string;
  readonly steps: readonly VerifyStep[];
  /** `sha256:<hex>` of the signed payload bytes, once the envelope parsed. */
  readonly digest: string | undefined;
  readonly manifest: Manifest | undefined;
  readonly signers: readonly { readonly keyId: string; readonly name: string }[];
  readonly lint: readonly LintFinding[];
}

/** What this device last accepted, for rollback protection. */
export interface AcceptanceStore {
  lastAccepted(agentName: string): { version: string; digest: string } | undefined;
  accept(agentName: string, version: string, digest: string, at: Date): void;
  revocationSerial(): number | undefined;
  acceptRevocationSerial(serial: number, at: Date): void;
}

/** An in-memory acceptance store (tests, benchmarks, one-shot checks). */
export class MemoryAcceptanceStore implements AcceptanceStore {
  private readonly agents = new Map<string, { version: string; digest: string }>();
  private serial: number | undefined;
  lastAccepted(agentName: string): { version: string; digest: string } | undefined {
    return this.agents.get(agentName);
  }
  accept(agentName: string, version: string, digest: string): void {
    this.agents.set(agentName, { version, digest });
  }
  revocationSerial(): number | undefined {
    return this.serial;
  }
  acceptRevocationSerial(serial: number): void {
    this.serial = serial;
  }
}

export interface VerifierOptions {
  readonly trust: TrustStore;
  /** The signed revocation list (DSSE bytes). Required: without it a revoked manifest would pass. */
  readonly revocationList: string | Uint8Array | undefined;
  readonly store: AcceptanceStore;
  readonly lint: LintOptions;
  /** Distinct trusted signers needed; default: the trust store's manifestThreshold. */
  readonly threshold?: number;
  readonly now?: () => Date;
  /** Tolerated clock skew for notBefore, in ms (default 60 s). */
  readonly clockSkewMs?: number;
  /** Record the accepted version (rollback protection) after a successful verification (default true). */
  readonly record?: boolean;
}

/** What is known about one signed payload, filled in as steps reach it. */
interface Analysis {
  readonly value: JsonValue;
  schema: ReturnType<typeof validateManifest> | undefined;
  lint: LintFinding[] | undefined;
}

const ANALYSIS_CACHE_SIZE = 256;

class StepFailure extends Error {
  constructor(
    readonly code: CordonCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

function fail(code: CordonCode, message: string, hint?: string): never {
  throw new StepFailure(code, message, hint);
}

const TRUST_HINT =
  'if the signer is yours, trust its public key for manifests: cordon keys trust --name NAME --pub KEY.pub --purpose manifest';

/** Whether bytes that are not an envelope are a manifest someone forgot to sign. */
function looksLikeManifest(input: string | Uint8Array): boolean {
  try {
    const v = parseStrictJson(input, { maxBytes: ENVELOPE_MAX_BYTES });
    return (
      typeof v === 'object' &&
      v !== null &&
      !Array.isArray(v) &&
      !('payload' in v) &&
      ('apiVersion' in v || 'agentName' in v)
    );
  } catch {
    return false;
  }
}

/**
 * Verifies signed manifests as a checklist of small steps: envelope shape, payloadType,
 * revocation list, signatures by trusted, valid, unrevoked keys (threshold), digest not
 * revoked, canonical payload, validity window, rollback, schema, lint. The first failing step
 * decides, with its own code; nothing later runs.
 *
 * @example
 * const v = new ManifestVerifier({ trust, revocationList, store, lint: { home } });
 * const report = v.verify(bytes);
 * if (!report.ok) console.error(report.code, report.message);
 */
export class ManifestVerifier {
  private readonly opts: Required<VerifierOptions>;
  private revocations: Revocations | undefined;
  private revocationError: StepFailure | undefined;
  private revocationMessage = '';
  private readonly analyses = new Map<string, Analysis>();

  constructor(options: VerifierOptions) {
    this.opts = {
      threshold: options.trust.manifestThreshold,
      now: () => new Date(),
      clockSkewMs: 60_000,
      record: true,
      ...options,
    };
    this.loadRevocations();
  }

  private loadRevocations(): void {
    const { revocationList, trust, store } = this.opts;
    if (revocationList === undefined) {
      this.revocationError = new StepFailure(
        'REVOCATION_LIST_MISSING',
        'no revocation list: a revoked manifest or key could not be recognised; run `cordon init` or install the signed list',
      );
      return;
    }
    try {
      const minSerial = store.revocationSerial();
      const now = this.opts.now();
      this.revocations = verifyRevocationList(revocationList, trust, {
        now,
        ...(minSerial === undefined ? {} : { minSerial }),
      });
      const list = this.revocations.list;
      this.revocationMessage = `serial ${list.serial}, ${list.manifests.length} manifest(s) and ${list.keys.length} key(s) revoked`;
      if (this.opts.record && (minSerial === undefined || list.serial > minSerial))
        store.acceptRevocationSerial(list.serial, now);
    } catch (e) {
      if (e instanceof CordonError) this.revocationError = new StepFailure(e.code, e.message);
      else throw e;
    }
  }

  /** Verify one signed manifest (the bytes of its DSSE envelope). */
  verify(input: string | Uint8Array): VerifyReport {
    const steps: VerifyStep[] = [];
    const st = {
      env: undefined as Envelope | undefined,
      payload: undefined as Buffer | undefined,
      digest: undefined as string | undefined,
      value: undefined as JsonValue | undefined,
      manifest: undefined as Manifest | undefined,
      signers: [] as { keyId: string; name: string }[],
      lint: [] as LintFinding[],
      analysis: undefined as Analysis | undefined,
    };
    const now = this.opts.now();
    const run: Record<VerifyStepName, () => string> = {
      envelope: () => {
        try {
          st.env = parseEnvelope(input);
        } catch (e) {
          if (e instanceof CordonError && e.code === 'ENVELOPE_INVALID' && looksLikeManifest(input))
            fail(
              'MANIFEST_UNSIGNED',
              'this is an unsigned manifest; only a signed manifest (a DSSE envelope) is accepted',
              'sign it with `cordon manifest sign FILE --key ORG.key` and use the FILE.signed.json it writes',
            );
          if (e instanceof CordonError) fail(e.code, e.message);
          throw e;
        }
        if (st.env.signatures.length === 0)
          fail(
            'SIGNATURE_MISSING',
            'the envelope has no signatures; sign it with `cordon manifest sign`',
          );
        st.payload = strictBase64(st.env.payload, 'payload');
        if (st.payload.length > MANIFEST_MAX_BYTES)
          fail(
            'JSON_TOO_LARGE',
            `payload is ${st.payload.length} bytes; the limit is ${MANIFEST_MAX_BYTES}`,
          );
        st.digest = 'sha256:' + createHash('sha256').update(st.payload).digest('hex');
        return `DSSE envelope with ${st.env.signatures.length} signature(s)`;
      },
      payloadType: () => {
        const t = st.env?.payloadType;
        if (t !== MANIFEST_PAYLOAD_TYPE)
          fail(
            'PAYLOAD_TYPE_MISMATCH',
            `payloadType is "${t ?? ''}", expected "${MANIFEST_PAYLOAD_TYPE}"`,
          );
        return t;
      },
      revocationList: () => {
        if (this.revocationError !== undefined) throw this.revocationError;
        return this.revocationMessage;
      },
      signatures: () =>
        this.checkSignatures(st.env as Envelope, st.payload as Buffer, now, st.signers),
      digest: () => {
        if (this.revocations?.manifestDigests.has(st.digest ?? '')) {
          const entry = this.revocations.list.manifests.find((m) => m.digest === st.digest);
          fail(
            'MANIFEST_REVOKED',
            `manifest ${st.digest ?? ''} was revoked at ${entry?.revokedAt ?? '?'}: ${entry?.reason ?? ''}`,
          );
        }
        return `${st.digest ?? ''} is not revoked`;
      },
      payload: () => {
        const a = this.analyse(st.digest as string, st.payload as Buffer);
        st.analysis = a;
        st.value = a.value;
        return 'canonical JSON object';
      },
      validity: () => {
        const obj = st.value as Record<string, JsonValue>;
        const nb = obj['notBefore'];
        const na = obj['notAfter'];
        const t = now.getTime();
        if (typeof na !== 'string' || Number.isNaN(Date.parse(na))) {
          fail(
            'MANIFEST_MISSING_FIELD',
            '/notAfter: every manifest needs a valid notAfter timestamp',
          );
        }
        if (nb !== undefined && (typeof nb !== 'string' || Number.isNaN(Date.parse(nb)))) {
          fail('MANIFEST_INVALID', '/notBefore: not a timestamp');
        }
        if (typeof nb === 'string' && t + this.opts.clockSkewMs < Date.parse(nb)) {
          fail('MANIFEST_NOT_YET_VALID', `manifest is valid only from ${nb}`);
        }
        if (t >= Date.parse(na))
          fail('MANIFEST_EXPIRED', `manifest expired at ${na}; ask its owner for a renewed one`);
        return `valid until ${na}`;
      },
      rollback: () => {
        const obj = st.value as Record<string, JsonValue>;
        const agent = obj['agentName'];
        const version = obj['version'];
        if (
          typeof agent !== 'string' ||
          typeof version !== 'string' ||
          semverValid(version) !== version
        ) {
          fail(
            'MANIFEST_VERSION',
            '/agentName and /version (semver) are needed for rollback protection',
          );
        }
        const last = this.opts.store.lastAccepted(agent);
        if (last === undefined) return `first version seen for ${agent}`;
        const cmp = semverCompare(version, last.version);
        if (cmp < 0)
          fail(
            'MANIFEST_ROLLBACK',
            `${agent} ${version} is older than ${last.version}, which this device already accepted`,
          );
        if (cmp === 0 && last.digest !== st.digest) {
          fail(
            'MANIFEST_VERSION_REUSED',
            `${agent} ${version} was accepted before with different content; a changed manifest needs a new version`,
          );
        }
        return cmp === 0
          ? `same as accepted ${last.version}`
          : `newer than accepted ${last.version}`;
      },
      schema: () => {
        const a = st.analysis as Analysis;
        a.schema ??= validateManifest(a.value);
        const r = a.schema;
        if (!r.ok) {
          const i = r.issues[0];
          fail(
            i?.code ?? 'MANIFEST_INVALID',
            `${i?.pointer ?? ''}: ${i?.message ?? 'invalid'}${r.issues.length > 1 ? ` (and ${r.issues.length - 1} more)` : ''}`,
          );
        }
        st.manifest = r.manifest;
        return 'matches manifest v1';
      },
      lint: () => {
        const a = st.analysis as Analysis;
        a.lint ??= lintManifest(st.manifest as Manifest, { ...this.opts.lint, now });
        st.lint = a.lint;
        const errors = st.lint.filter((f) => f.severity === 'error');
        if (errors.length > 0) {
          const e = errors[0];
          fail(
            'MANIFEST_LINT',
            `${errors.length} lint error(s); first: ${e?.code ?? ''} at ${e?.pointer ?? ''}: ${e?.message ?? ''}`,
          );
        }
        const warnings = st.lint.filter((f) => f.severity === 'warning').length;
        return warnings === 0 ? 'no findings' : `${warnings} warning(s)`;
      },
    };

    let failure: StepFailure | undefined;
    for (const name of VERIFY_STEPS) {
      if (failure !== undefined) {
        steps.push({ name, status: 'skipped', message: 'not run' });
        continue;
      }
      try {
        steps.push({ name, status: 'pass', message: run[name]() });
      } catch (e) {
        failure =
          e instanceof StepFailure
            ? e
            : new StepFailure('VERIFY_ERROR', `unexpected error: ${(e as Error).message}`);
        steps.push({ name, status: 'fail', code: failure.code, message: failure.message });
      }
    }
    if (
      failure === undefined &&
      this.opts.record &&
      st.manifest !== undefined &&
      st.digest !== undefined
    ) {
      this.opts.store.accept(st.manifest.agentName, st.manifest.version, st.digest, now);
    }
    return {
      ok: failure === undefined,
      code: failure?.code,
      message:
        failure === undefined
          ? `verified ${st.manifest?.agentName ?? ''} ${st.manifest?.version ?? ''}`
          : failure.message,
      ...(failure?.hint === undefined ? {} : { hint: failure.hint }),
      steps,
      digest: st.digest,
      manifest: failure === undefined ? st.manifest : undefined,
      signers: st.signers,
      lint: st.lint,
    };
  }

  /**
   * Parse and check the signed payload once per digest. The result is a pure function of the
   * signed bytes, so it is kept (bounded) and reused; signatures, revocation, validity and
   * rollback are still checked on every call.
   */
  private analyse(digest: string, payload: Buffer): Analysis {
    const hit = this.analyses.get(digest);
    if (hit !== undefined) return hit;
    let value: JsonValue;
    try {
      value = parseStrictJson(payload, { maxBytes: MANIFEST_MAX_BYTES });
    } catch (e) {
      if (e instanceof CordonError) fail(e.code, `payload: ${e.message}`);
      throw e;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      fail('MANIFEST_TYPE', 'payload is not a JSON object');
    }
    // Signers emit RFC 8785 canonical JSON, so every device computes the same digest for the same policy.
    if (canonicalize(value) !== payload.toString('utf8')) {
      fail(
        'MANIFEST_NOT_CANONICAL',
        'payload is not in RFC 8785 canonical form; sign it with `cordon manifest sign`',
      );
    }
    const a: Analysis = { value, schema: undefined, lint: undefined };
    if (this.analyses.size >= ANALYSIS_CACHE_SIZE) {
      const oldest = this.analyses.keys().next();
      if (oldest.done !== true) this.analyses.delete(oldest.value);
    }
    this.analyses.set(digest, a);
    return a;
  }

  private checkSignatures(
    env: Envelope,
    payload: Buffer,
    now: Date,
    signers: { keyId: string; name: string }[],
  ): string {
    const t = now.getTime();
    const problems: StepFailure[] = [];
    const seen = new Set<string>();
    for (const s of env.signatures) {
      const k = this.opts.trust.keys.get(s.keyid);
      if (k === undefined) {
        problems.push(
          new StepFailure(
            'SIGNATURE_UNTRUSTED',
            `key ${s.keyid.slice(0, 16)}… is not in the trust store`,
            TRUST_HINT,
          ),
        );
        continue;
      }
      if (!k.purposes.includes('manifest')) {
        problems.push(
          new StepFailure(
            'KEY_PURPOSE',
            `key "${k.name}" is not trusted to sign manifests (purposes: ${k.purposes.join(', ')})`,
            `if it should sign manifests, remove its entry from trust.json and trust it again: cordon keys trust --name ${k.name} --pub KEY.pub --purpose manifest${k.purposes.map((p) => ` --purpose ${p}`).join('')}`,
          ),
        );
        continue;
      }
      if (this.revocations?.keyIds.has(k.keyId)) {
        const entry = this.revocations.list.keys.find((r) => r.keyId === k.keyId);
        problems.push(
          new StepFailure(
            'KEY_REVOKED',
            `key "${k.name}" was revoked at ${entry?.revokedAt ?? '?'}: ${entry?.reason ?? ''}`,
          ),
        );
        continue;
      }
      if (k.notBefore !== undefined && t < k.notBefore) {
        problems.push(
          new StepFailure(
            'KEY_NOT_YET_VALID',
            `key "${k.name}" is trusted only from ${new Date(k.notBefore).toISOString()}`,
          ),
        );
        continue;
      }
      if (k.notAfter !== undefined && t >= k.notAfter) {
        problems.push(
          new StepFailure(
            'KEY_EXPIRED',
            `key "${k.name}" expired at ${new Date(k.notAfter).toISOString()}`,
          ),
        );
        continue;
      }
      let sig: Buffer;
      try {
        sig = strictBase64(s.sig, 'signature');
      } catch {
        problems.push(
          new StepFailure('SIGNATURE_INVALID', `signature by "${k.name}" is not canonical base64`),
        );
        continue;
      }
      if (!verifySignature(env.payloadType, payload, sig, k.key)) {
        problems.push(
          new StepFailure(
            'SIGNATURE_INVALID',
            `signature by "${k.name}" does not match the payload (altered after signing?)`,
          ),
        );
        continue;
      }
      if (!seen.has(k.keyId)) {
        seen.add(k.keyId);
        signers.push({ keyId: k.keyId, name: k.name });
      }
    }
    const need = this.opts.threshold;
    if (signers.length >= need)
      return `signed by ${signers.map((s) => s.name).join(', ')} (${signers.length} of ${need} required)`;
    if (signers.length === 0 && problems[0] !== undefined) throw problems[0];
    throw new StepFailure(
      'THRESHOLD_NOT_MET',
      `${signers.length} valid trusted signature(s), ${need} required${problems.length > 0 ? `; ${problems.map((p) => p.message).join('; ')}` : ''}`,
    );
  }
}
