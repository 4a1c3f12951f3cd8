import { existsSync, lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
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

/**
 * The directory entries that start this install's code without lying inside it, as paths with
 * real parent directories: each symbolic link on the way from the command the user typed
 * (`process.argv[1]`, e.g. `~/.local/bin/cordon -> ../lib/node_modules/cordon/dist/cli/main.js`)
 * and from every `cordon` on PATH that leads into the package, and the `node` binary running
 * Cordon with each link on its way. An agent that can replace one of these entries (a write
 * grant on the directory holding it) chooses the code the user's next `cordon` runs.
 */
export function packageEntries(
  dirs: readonly string[] = packageDirs(),
  env: NodeJS.ProcessEnv = process.env,
): string[] {
  const out = new Set<string>();
  const into = (p: string): boolean => {
    try {
      const real = realpathSync(p);
      return dirs.some((d) => real === d || real.startsWith(d + '/'));
    } catch {
      return false;
    }
  };
  const add = (p: string): void => {
    for (const e of entriesOnTheWay(p)) out.add(e);
  };
  const script = process.argv[1];
  if (script !== undefined && isAbsolute(script) && into(script)) add(script);
  add(process.execPath);
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    const cmd = join(dir, 'cordon');
    if (into(cmd)) add(cmd);
  }
  // What lies inside the package is covered by the package check already.
  return [...out].filter((e) => !dirs.some((d) => e === d || e.startsWith(d + '/')));
}

/**
 * `path` with its parent directories resolved, and every symbolic link met while resolving it
 * (each as such a path), so that the entry and each link can be checked against the grants.
 */
function entriesOnTheWay(path: string, depth = 0): string[] {
  const out: string[] = [];
  let cur = '/';
  const segs = resolve(path)
    .split('/')
    .filter((x) => x !== '');
  for (const [i, seg] of segs.entries()) {
    const next = join(cur, seg);
    let link = false;
    try {
      link = lstatSync(next).isSymbolicLink();
    } catch {
      out.push(join(next, ...segs.slice(i + 1)));
      return out;
    }
    if (!link) {
      cur = next;
      if (i === segs.length - 1) out.push(next);
      continue;
    }
    out.push(next);
    if (depth > 32) return out;
    out.push(...entriesOnTheWay(resolve(cur, readlinkSync(next)), depth + 1));
    try {
      cur = realpathSync(next);
    } catch {
      return out;
    }
  }
  return out;
}
