import { createHash } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import type { ManifestRef } from '../audit/events.js';
import { CordonError } from '../errors.js';
import { ENVELOPE_MAX_BYTES } from '../manifest/dsse.js';
import { ManifestInvalidError, validateManifest } from '../manifest/parse.js';
import type { Manifest } from '../manifest/schema.js';
import { manifestDigest } from '../manifest/sign.js';
import { loadGuardrails } from '../policy/guardrails.js';
import type { GuardrailsInForce } from '../policy/in-force.js';
import { createPdp, type Pdp } from '../policy/pdp.js';
import { readFileCapped } from '../store/files.js';
import { readGuardrailFiles } from '../store/guardrails-dir.js';
import { createFsPathResolver } from '../store/path-resolver.js';
import { policyPaths, readEnforcement } from '../store/policy-dir.js';
import { realpathOrUndefined } from '../store/resolve.js';
import { manifestSourceFromBytes } from './read-manifest.js';
import { lintOptionsFor, verifyManifestBytes, type EndpointContext } from './verify.js';

/** A manifest put in force: its decision point and what the audit events say about it. */
export interface EnforcedPolicy {
  readonly pdp: Pdp;
  readonly signed: boolean;
  readonly verified: boolean;
  readonly ref: ManifestRef;
  readonly manifest: Manifest;
  readonly guardrails: GuardrailsInForce;
  /** The manifest's bytes as read once, verified (with `verify`) and enforced. */
  readonly bytes: Buffer;
}

export interface LoadPolicyOptions extends EndpointContext {
  /** What the manifest is called in messages (its file). */
  readonly source: string;
  /** The manifest file's bytes, read once by the caller (readManifestFile). */
  readonly bytes: Buffer;
  /**
   * true: verify (a draft is refused); false: never verify (`--no-verify`); undefined: verify a
   * signed manifest, take an unsigned draft as it is (`cordon check`).
   */
  readonly verify?: boolean;
  /** With verify: remember the version as accepted (rollback protection), as enforcement does. */
  readonly recordAcceptance?: boolean;
  /**
   * An enforcement point (`run`, `proxy`): the organisation's guardrails (the policy directory's)
   * must be in force unless the policy directory's enforcement.json allows running without them.
   */
  readonly enforce?: boolean;
  /** Another guardrails directory, or false for none (`--guardrails`, `--no-guardrails`). */
  readonly guardrails?: string | false;
  /** Decide on paths as written, without resolving links (`cordon check --lexical`). */
  readonly lexical?: boolean;
  /** The home `~` expands to in decisions, when not the user's (`cordon check --home`). */
  readonly decisionHome?: string;
}

/** Read a manifest file once, capped at the largest envelope Cordon accepts. */
export function readManifestFile(file: string): Buffer {
  return readFileCapped(file, ENVELOPE_MAX_BYTES);
}

/**
 * Build the enforced policy from a manifest's bytes: verify them (see `verify`), load the
 * guardrails, compile the decision point. Throws CordonError when the manifest must not be put in
 * force: a verification step failed (its own code), the manifest is invalid, or an enforcement
 * point would run without the organisation's guardrails (GUARDRAILS_REQUIRED).
 *
 * @example
 * const policy = loadEnforcedPolicy({ dirs, home, now, source: file, bytes: readManifestFile(file), verify: true, enforce: true });
 */
export function loadEnforcedPolicy(opts: LoadPolicyOptions): EnforcedPolicy {
  const { bytes } = opts;
  let manifest: Manifest;
  let digest: string;
  let signed: boolean;
  let verified = false;
  // A signed manifest is verified unless told otherwise: a decision must never be ALLOW under
  // a manifest an endpoint would refuse (expired, revoked, untrusted, rolled back).
  const source = opts.verify === true ? undefined : manifestSourceFromBytes(opts.source, bytes);
  if (opts.verify === true || (opts.verify === undefined && source?.signed === true)) {
    // Decide only under a manifest that passes every verification step.
    const report = verifyManifestBytes(bytes, {
      dirs: opts.dirs,
      now: opts.now,
      lint: lintOptionsFor(opts),
      record: opts.recordAcceptance === true,
    });
    if (!report.ok || report.manifest === undefined || report.digest === undefined) {
      throw new CordonError(
        report.code ?? 'VERIFY_ERROR',
        `${opts.source}: verification failed: ${report.message}`,
        {
          file: opts.source,
          hint: report.hint ?? 'run `cordon manifest verify` for the step-by-step report',
        },
      );
    }
    manifest = report.manifest;
    digest = report.digest;
    signed = true;
    verified = true;
  } else {
    const src = source ?? manifestSourceFromBytes(opts.source, bytes);
    const r = validateManifest(src.value);
    if (!r.ok) throw new ManifestInvalidError(r.issues, opts.source);
    manifest = r.manifest;
    digest = manifestDigest(src.text);
    signed = src.signed;
  }
  const { dirs } = opts;
  const { guardrails, inForce } = loadGuardrailsFor(opts, dirs.policyDir);
  const resolver = opts.lexical === true ? undefined : createFsPathResolver();
  const pdp = createPdp({
    manifest,
    manifestDigest: digest,
    home: opts.decisionHome ?? opts.home,
    cordonDirs: [dirs.policyDir, dirs.stateDir],
    ...(resolver === undefined
      ? {}
      : { resolvePath: resolver, resolveCommand: realpathOrUndefined }),
    ...(guardrails === undefined ? {} : { guardrails }),
  });
  return {
    pdp,
    signed,
    verified,
    ref: { agent: manifest.agentName, version: manifest.version, digest },
    manifest,
    guardrails: inForce,
    bytes,
  };
}

/**
 * Load the guardrails the options name. For enforcement, anything but the policy directory's own
 * guardrails (none installed, `--no-guardrails`, another `--guardrails DIR`) needs the policy
 * directory's explicit permission; without it the enforcement point refuses to start.
 */
function loadGuardrailsFor(
  opts: Pick<LoadPolicyOptions, 'guardrails' | 'enforce'>,
  policyDir: string,
): { guardrails: ReturnType<typeof loadGuardrails> | undefined; inForce: GuardrailsInForce } {
  const orgDir = policyPaths(policyDir).guardrails;
  const dir = opts.guardrails === false ? undefined : resolvePath(opts.guardrails ?? orgDir);
  const files = dir === undefined ? [] : readGuardrailFiles(dir);
  const guardrails = files.length === 0 ? undefined : loadGuardrails(files);
  const own = dir !== undefined && dir === resolvePath(orgDir);
  let allowedBy: string | undefined;
  if (!own || guardrails === undefined) {
    const why =
      dir === undefined
        ? '--no-guardrails'
        : !own
          ? `--guardrails ${dir} instead of the organisation's ${orgDir}`
          : `no guardrails (*.cedar) in ${dir}`;
    if (opts.enforce === true) {
      const setting = readEnforcement(policyDir);
      if (!setting.allowWithoutGuardrails)
        throw new CordonError(
          'GUARDRAILS_REQUIRED',
          `refusing to enforce without the organisation's guardrails: ${why}`,
          {
            file: setting.file,
            hint: own
              ? `install the organisation's guardrails (*.cedar) in ${orgDir}, or let this policy directory run without them: {"allowWithoutGuardrails": true} in ${setting.file}`
              : `drop ${dir === undefined ? '--no-guardrails' : '--guardrails'}: only the policy directory may allow running without its guardrails ("allowWithoutGuardrails": true in ${setting.file})`,
          },
        );
      allowedBy = `${setting.file} allowWithoutGuardrails`;
    } else allowedBy = 'cordon check (not an enforcement point)';
    if (guardrails === undefined)
      return { guardrails, inForce: { inForce: false, why, allowedBy } };
  }
  const h = createHash('sha256');
  for (const f of files) h.update(`${f.name.slice(f.name.lastIndexOf('/') + 1)}\0${f.text}\0`);
  return {
    guardrails,
    inForce: {
      inForce: true,
      dir: dir ?? orgDir,
      digest: `sha256:${h.digest('hex')}`,
      policies: guardrails.policies.map((p) => p.id),
      ...(allowedBy === undefined ? {} : { allowedBy }),
    },
  };
}
