import type { CordonDirs } from '../env.js';
import type { LintOptions } from '../manifest/lint.js';
import { ManifestVerifier, type VerifyReport } from '../manifest/verify.js';
import { packageDirs, packageEntries } from '../package-files.js';
import { FileAcceptanceStore } from '../store/acceptance.js';
import { readAdmission, readRevocationBytes, readTrustStore } from '../store/policy-dir.js';

/** Where an endpoint's policy and state live, whose home it governs, and its clock. */
export interface EndpointContext {
  readonly dirs: CordonDirs;
  /** The governed user's home directory (`~` in manifests). */
  readonly home: string;
  readonly now: () => Date;
  /**
   * A client's own ways into Cordon's installation, beside this process's (the service checks a
   * manifest for the `cordon run` that asked): paths no grant may reach.
   */
  readonly clientPackageEntries?: readonly string[];
}

/**
 * Lint options for this machine: the user's home, Cordon's own directories, the organisation's
 * admission settings (read from the policy directory now, so a change is seen at the next call).
 */
export function lintOptionsFor(ctx: EndpointContext): LintOptions {
  return {
    home: ctx.home,
    cordonDirs: [ctx.dirs.policyDir, ctx.dirs.stateDir],
    packageDirs: packageDirs(),
    packageEntries: [...new Set([...packageEntries(), ...(ctx.clientPackageEntries ?? [])])],
    now: ctx.now(),
    ...readAdmission(ctx.dirs.policyDir),
  };
}

export interface VerifyManifestOptions {
  readonly dirs: CordonDirs;
  readonly now: () => Date;
  readonly lint: LintOptions;
  /** Remember the version as accepted (rollback protection); enforcement does, a dry check not. */
  readonly record: boolean;
  /** Signatures needed; the trust store's own threshold still applies when it is higher. */
  readonly threshold?: number;
}

/**
 * Verify a signed manifest's bytes against this machine's trust store, revocation list and
 * rollback state. Needs no private key. Callers that go on to enforce the manifest use these same
 * bytes (the report's manifest and digest), never a second read of the file.
 *
 * @example
 * const report = verifyManifestBytes(bytes, { dirs, now, lint: lintOptionsFor({ dirs, home, now }), record: false });
 */
export function verifyManifestBytes(bytes: Uint8Array, opts: VerifyManifestOptions): VerifyReport {
  const trust = readTrustStore(opts.dirs.policyDir);
  const verifier = new ManifestVerifier({
    trust,
    revocationList: readRevocationBytes(opts.dirs.policyDir),
    store: new FileAcceptanceStore(opts.dirs.stateDir),
    lint: opts.lint,
    now: opts.now,
    record: opts.record,
    ...(opts.threshold === undefined
      ? {}
      : { threshold: Math.max(opts.threshold, trust.manifestThreshold) }),
  });
  return verifier.verify(bytes);
}
