import { realpathSync } from 'node:fs';
import type { Manifest } from '../manifest/schema.js';
import { resolveManifest, type ResolvedManifest } from '../manifest/resolve.js';

/** Real path of a file, or undefined when it does not exist (or cannot be resolved). */
export function realpathOrUndefined(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** Make a manifest concrete for this user on this machine: `~` expanded, command symlinks resolved. */
export function resolveForUser(m: Manifest, home: string): ResolvedManifest {
  return resolveManifest(m, home, realpathOrUndefined);
}
