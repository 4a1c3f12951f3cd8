/**
 * Cordon's library entry. The root re-exports the pure core (no process or network I/O);
 * enforcement adapters live under their own subpaths.
 */
export { CordonError, isCordonError } from './errors.js';
export {
  canonicalize,
  explainManifest,
  lintManifest,
  ManifestVerifier,
  parseManifest,
  signManifest,
  type Manifest,
  type VerifyReport,
} from './manifest/index.js';
