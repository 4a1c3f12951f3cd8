import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/**
 * A file shipped in Cordon's package (the sandbox helper, example guardrails, the verify
 * worker), found from the package root: the nearest directory above this module holding
 * `binding.gyp`. It works from `dist/`, from the single-file CLI bundle and from the sources.
 */
export function packageFile(...segments: string[]): string {
  if (root === undefined) {
    let dir = dirname(fileURLToPath(import.meta.url));
    while (!existsSync(join(dir, 'binding.gyp')) && dirname(dir) !== dir) dir = dirname(dir);
    root = dir;
  }
  return join(root, ...segments);
}

/**
 * Where the code of this install lives, as real paths: the package root (its `dist/`, the
 * sandbox helper) and its `node_modules` when that is a link to elsewhere. `cordon run` runs
 * this code on the host, so no grant may let an agent change it.
 */
export function packageDirs(): string[] {
  const out: string[] = [];
  for (const p of [packageFile(), packageFile('node_modules')]) {
    try {
      const real = realpathSync(p);
      if (!out.some((o) => real === o || real.startsWith(o + '/'))) out.push(real);
    } catch {
      // no node_modules beside a bundled install
    }
  }
  return out;
}
