import { createRequire } from 'node:module';
import { CordonError } from './errors.js';
import { packageFile } from './package-files.js';

export type NativeErrorCode = 'NATIVE_UNAVAILABLE';

interface NativeAddon {
  lockExclusive(fd: number): boolean;
}

let addon: NativeAddon | undefined;

/**
 * Cordon's Node-API addon (`build/Release/cordon_native.node`, built at install from
 * native/cordon-native.c), loaded on first use from the package root, so it is found from
 * `dist/`, from the single-file CLI bundle and from the sources alike. A missing addon is an
 * error: there is no weaker fallback for what it provides.
 */
function native(): NativeAddon {
  if (addon !== undefined) return addon;
  const file = packageFile('build', 'Release', 'cordon_native.node');
  try {
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (e) {
    throw new CordonError('NATIVE_UNAVAILABLE', `cannot load Cordon's native addon ${file}`, {
      file,
      hint: 'it is built at install: run `npm rebuild cordon` (in a checkout: `node scripts/build-native.mjs`; needs a C compiler and node-gyp)',
      cause: e,
    });
  }
  return addon;
}

/**
 * Take an exclusive flock(2) on an open descriptor without waiting: true when taken, false when
 * another open file description holds it. The kernel drops the lock when the descriptor's last
 * copy is closed, however the holder ends (SIGKILL, crash, full disk), so a lock can never be
 * left behind and never needs to be taken over.
 *
 * @example
 * const fd = openSync(lockFile, 'a');
 * if (!lockExclusive(fd)) throw new Error('busy');
 */
export function lockExclusive(fd: number): boolean {
  return native().lockExclusive(fd);
}
