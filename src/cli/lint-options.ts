import type { LintOptions } from '../manifest/lint.js';
import { packageDirs, packageEntries } from '../package-files.js';
import { readAdmission } from '../store/policy-dir.js';
import { resolveDirs, type CliIo, type GlobalOptions } from './context.js';

/** Lint options for this machine: home, Cordon's own directories, the organisation's admission settings. */
export function lintOptionsFor(io: CliIo, opts: GlobalOptions): LintOptions {
  const dirs = resolveDirs(io, opts);
  return {
    home: io.home,
    cordonDirs: [dirs.policyDir, dirs.stateDir],
    packageDirs: packageDirs(),
    packageEntries: packageEntries(),
    now: io.now(),
    ...readAdmission(dirs.policyDir),
  };
}
