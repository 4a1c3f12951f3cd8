/** Capability manifests: schema, canonical JSON, DSSE signing and verification, trust, revocation, lint, templates. */
export { apiScopeAllows, apiScopesOverlap, parseApiScope, type ApiScope } from './api-scopes.js';
export { canonicalBytes, canonicalize } from './canonical.js';
export {
  addSignature,
  ENVELOPE_MAX_BYTES,
  pae,
  parseEnvelope,
  signEnvelope,
  verifySignature,
  type Envelope,
} from './dsse.js';
export {
  explainManifest,
  renderExplanation,
  type Explanation,
  type RiskLevel,
  type RiskReason,
} from './explain.js';
export { parseStrictJson, type JsonValue, type StrictJsonOptions } from './json.js';
export {
  exportPrivateKeyPem,
  exportPublicKeyPem,
  generateSigningKey,
  keyIdOf,
  loadPrivateKeyPem,
  loadPublicKeyPem,
} from './keys.js';
export {
  LINT_RULES,
  lintManifest,
  type LintCode,
  type LintFinding,
  type LintOptions,
  type LintSeverity,
} from './lint.js';
export { MANDATORY_DENIES, OVERRIDABLE_DENY_IDS, type MandatoryDeny } from './mandatory-denies.js';
export { DEFAULT_PORTS, parseNetworkScope, scopesOverlap, type NetworkScope } from './network.js';
export {
  ManifestInvalidError,
  parseManifest,
  parseManifestOrThrow,
  validateManifest,
  type ManifestIssue,
  type ManifestParseResult,
} from './parse.js';
export { compilePathMatcher, expandHome, parsePathPattern, type PathPattern } from './paths.js';
export { resolveManifest, type ResolvedManifest } from './resolve.js';
export {
  emptyRevocationList,
  indexRevocations,
  REVOCATION_PAYLOAD_TYPE,
  signRevocationList,
  verifyRevocationList,
  type RevocationList,
  type Revocations,
} from './revocation.js';
export {
  MANIFEST_API_VERSION,
  MANIFEST_MAX_BYTES,
  MANIFEST_PAYLOAD_TYPE,
  manifestJsonSchema,
  ManifestSchema,
  type Manifest,
  type ManifestInput,
  type ManifestOverride,
} from './schema.js';
export { cosignManifest, manifestDigest, signManifest } from './sign.js';
export {
  findTemplate,
  GroupMappingSchema,
  instantiateTemplate,
  TEMPLATES,
  type GroupMapping,
  type RoleTemplate,
} from './templates.js';
export {
  emptyTrustStore,
  KEY_PURPOSES,
  loadTrustStore,
  type KeyPurpose,
  type TrustedKey,
  type TrustStore,
} from './trust.js';
export {
  ManifestVerifier,
  MemoryAcceptanceStore,
  VERIFY_STEPS,
  type AcceptanceStore,
  type VerifierOptions,
  type VerifyReport,
  type VerifyStep,
} from './verify.js';
