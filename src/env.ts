import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Every environment variable Cordon reads, in one place.
 *
 * - `CORDON_HOME`: one directory holding `policy/` and `state/` (overrides the XDG defaults).
 * - `CORDON_POLICY_DIR`, `CORDON_STATE_DIR`: each directory on its own.
 * - `XDG_CONFIG_HOME`, `XDG_STATE_HOME`: the XDG base directories (defaults ~/.config, ~/.local/state).
 */
export interface CordonDirs {
  readonly policyDir: string;
  readonly stateDir: string;
}

export function defaultDirs(
  env: NodeJS.ProcessEnv = process.env,
  home: string = homedir(),
): CordonDirs {
  const nonEmpty = (v: string | undefined): string | undefined =>
    v === undefined || v === '' ? undefined : v;
  const cordonHome = nonEmpty(env['CORDON_HOME']);
  const policyDir =
    nonEmpty(env['CORDON_POLICY_DIR']) ??
    (cordonHome === undefined
      ? join(nonEmpty(env['XDG_CONFIG_HOME']) ?? join(home, '.config'), 'cordon')
      : join(cordonHome, 'policy'));
  const stateDir =
    nonEmpty(env['CORDON_STATE_DIR']) ??
    (cordonHome === undefined
      ? join(nonEmpty(env['XDG_STATE_HOME']) ?? join(home, '.local', 'state'), 'cordon')
      : join(cordonHome, 'state'));
  return { policyDir, stateDir };
}

/** The user's home directory, used to expand `~` in manifests. */
export function userHome(): string {
  return homedir();
}
