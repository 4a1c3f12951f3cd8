import { expandHome, parsePathPattern } from './paths.js';
import type { Manifest } from './schema.js';

/** A manifest made concrete for one user on one machine. */
export interface ResolvedManifest {
  readonly manifest: Manifest;
  readonly home: string;
  /** Absolute read patterns, including every write path (a write grant implies read). */
  readonly readPaths: readonly string[];
  readonly writePaths: readonly string[];
  /** Each allowed command as declared and as resolved through symlinks (both are allowed). */
  readonly commands: readonly {
    readonly declared: string;
    readonly resolved: string | undefined;
  }[];
}

/**
 * Expand `~` for `home` and resolve command symlinks with the given `realpath` (which returns
 * undefined for a missing file). Pure apart from the injected function.
 */
export function resolveManifest(
  m: Manifest,
  home: string,
  realpath: (p: string) => string | undefined,
): ResolvedManifest {
  const abs = (p: string): string => expandHome(parsePathPattern(p), home);
  const writePaths = m.writePaths.map(abs);
  return {
    manifest: m,
    home,
    readPaths: [...new Set([...m.readPaths.map(abs), ...writePaths])],
    writePaths,
    commands: m.commandsAllowed.map((declared) => ({ declared, resolved: realpath(declared) })),
  };
}
