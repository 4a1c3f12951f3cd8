import {
  installSystem,
  installUser,
  uninstallSystem,
  uninstallUser,
  type InstallReport,
} from '../daemon/install.js';
import { printResult, usage, type CliIo, type GlobalOptions } from './context.js';

export interface DaemonInstallOptions {
  system?: boolean;
  user?: boolean;
  root?: string;
  dryRun?: boolean;
  purge?: boolean;
  json?: boolean;
}

function modeOf(
  action: 'install' | 'uninstall',
  opts: GlobalOptions & DaemonInstallOptions,
): 'system' | 'user' {
  if (opts.system === opts.user || (opts.system !== true && opts.user !== true))
    throw usage(
      `cordon daemon ${action} needs exactly one of --system and --user`,
      `--system: the machine's service (as root); --user: a service of your own`,
    );
  if (opts.user === true) {
    if (opts.root !== undefined)
      throw usage('--root applies to --system only', `drop --root, or use --system`);
    if (opts.purge === true)
      throw usage(
        '--purge applies to --system only',
        "a user service's directories are the user's own; remove them by hand",
      );
    return 'user';
  }
  if (opts.policyDir !== undefined || opts.stateDir !== undefined)
    throw usage(
      'the system service uses /etc/cordon and /var/lib/cordon; --policy-dir and --state-dir do not apply',
      'use --root PREFIX to install under another directory',
    );
  if (action === 'install' && opts.purge === true)
    throw usage('--purge applies to uninstall only', 'drop --purge');
  return 'system';
}

function print(io: CliIo, r: InstallReport, json: boolean): void {
  if (json) {
    printResult(io, { ok: true, ...r });
    return;
  }
  const lines = [
    `cordon daemon ${r.action} --${r.mode}${r.root === '/' ? '' : ` under ${r.root}`}${r.dryRun ? ' (dry run: nothing changed)' : ''}`,
    ...r.steps.map((s) => `  ${s.change ? (r.dryRun ? 'would ' : '') + s.text : `= ${s.text}`}`),
  ];
  if (!r.steps.some((s) => s.change)) lines.push('  nothing to do');
  if (r.next.length > 0) lines.push('next:', ...r.next.map((n) => `  ${n}`));
  io.stdout(lines.join('\n') + '\n');
}

/** `cordon daemon install --system|--user`. */
export function runDaemonInstall(io: CliIo, opts: GlobalOptions & DaemonInstallOptions): number {
  const mode = modeOf('install', opts);
  const dryRun = opts.dryRun === true;
  const r =
    mode === 'system'
      ? installSystem({ ...(opts.root === undefined ? {} : { root: opts.root }), dryRun })
      : installUser({
          home: io.home,
          env: io.env,
          dryRun,
          ...(opts.policyDir === undefined ? {} : { policyDir: opts.policyDir }),
          ...(opts.stateDir === undefined ? {} : { stateDir: opts.stateDir }),
        });
  print(io, r, opts.json === true);
  return 0;
}

/** `cordon daemon uninstall --system|--user`. */
export function runDaemonUninstall(io: CliIo, opts: GlobalOptions & DaemonInstallOptions): number {
  const mode = modeOf('uninstall', opts);
  const dryRun = opts.dryRun === true;
  const r =
    mode === 'system'
      ? uninstallSystem({
          ...(opts.root === undefined ? {} : { root: opts.root }),
          dryRun,
          purge: opts.purge === true,
        })
      : uninstallUser({ home: io.home, env: io.env, dryRun });
  print(io, r, opts.json === true);
  return 0;
}
