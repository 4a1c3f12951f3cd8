import { existsSync } from 'node:fs';
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
