import { spawnSync } from 'node:child_process';
import { parseStrictJson } from '../../manifest/json.js';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { packageFile } from '../../package-files.js';
import { SANDBOX_HELPER } from './plan.js';

/** One layer `cordon doctor` checks, and how to fix it when it is missing. */
export interface LayerCheck {
  readonly id: 'platform' | 'bubblewrap' | 'userns' | 'helper' | 'sandbox' | 'landlock' | 'seccomp';
  readonly ok: boolean;
  readonly detail: string;
  readonly fix?: string;
}

export interface SandboxSupport {
  readonly ok: boolean;
  readonly checks: readonly LayerCheck[];
  readonly bwrap?: string;
  readonly helper: string;
  readonly landlockAbi: number;
}

/** Landlock ABI the sandbox needs: 3 handles truncation; 6 adds signal and socket scoping. */
export const MIN_LANDLOCK_ABI = 3;

/** The helper built by `npm install` (node-gyp), beside the package's compiled code. */
export function helperPath(): string {
  return packageFile('build', 'Release', 'cordon-sandbox');
}

/** First executable named `name` on PATH. */
export function which(name: string, path = process.env['PATH'] ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

interface Probe {
  landlockAbi: number;
  landlockErrno: number;
  seccomp: boolean;
}

/**
 * What `cordon run` checks before each launch, without starting anything: bubblewrap and the
 * helper are installed. The layers themselves are checked by using them at launch: the helper
 * refuses to run the agent (exit 125, naming the step) when Landlock, seccomp, the noexec
 * remounts or the egress bridge cannot be set up, so there is no weaker mode to fall into.
 */
export function launchPrerequisites(): { bwrap: string; helper: string } | LayerCheck[] {
  const bwrap = which('bwrap', '/usr/bin:/usr/local/bin:/bin');
  const helper = helperPath();
  const missing: LayerCheck[] = [];
  if (process.platform !== 'linux')
    missing.push({
      id: 'platform',
      ok: false,
      detail: `${process.platform} is not supported`,
      fix: 'run agents under `cordon run` on Linux',
    });
  if (bwrap === undefined)
    missing.push({
      id: 'bubblewrap',
      ok: false,
      detail: 'bwrap not found',
      fix: 'install it: sudo apt-get install bubblewrap',
    });
  if (!existsSync(helper))
    missing.push({ id: 'helper', ok: false, detail: `${helper} is missing`, fix: HELPER_FIX });
  return bwrap === undefined || missing.length > 0 ? missing : { bwrap, helper };
}

const HELPER_FIX =
  'build it: `npm rebuild cordon` (needs gcc, make and python3: sudo apt-get install build-essential python3)';

/**
 * Check every layer `cordon run` relies on by using it: bubblewrap starts a namespace with the
 * same flags a session uses, and the helper inside reports what the kernel offers.
 */
export function checkSandboxSupport(): SandboxSupport {
  const checks: LayerCheck[] = [];
  const helper = helperPath();
  let landlockAbi = 0;
  const done = (bwrap?: string): SandboxSupport => ({
    ok: checks.every((c) => c.ok),
    checks,
    ...(bwrap === undefined ? {} : { bwrap }),
    helper,
    landlockAbi,
  });
  if (process.platform !== 'linux') {
    checks.push({
      id: 'platform',
      ok: false,
      detail: `${process.platform} is not supported`,
      fix: 'run agents under `cordon run` on Linux',
    });
    return done();
  }
  const bwrap = which('bwrap', '/usr/bin:/usr/local/bin:/bin');
  checks.push(
    bwrap === undefined
      ? {
          id: 'bubblewrap',
          ok: false,
          detail: 'bwrap not found',
          fix: 'install it: sudo apt-get install bubblewrap',
        }
      : { id: 'bubblewrap', ok: true, detail: bwrap },
  );
  const max = readSysctl('/proc/sys/user/max_user_namespaces');
  const legacy = readSysctl('/proc/sys/kernel/unprivileged_userns_clone');
  const apparmor = readSysctl('/proc/sys/kernel/apparmor_restrict_unprivileged_userns');
  const usernsOk = max !== '0' && legacy !== '0';
  checks.push({
    id: 'userns',
    ok: usernsOk,
    detail: `max_user_namespaces=${max ?? '?'}${legacy === undefined ? '' : ` unprivileged_userns_clone=${legacy}`}${apparmor === undefined ? '' : ` apparmor_restrict_unprivileged_userns=${apparmor}`}`,
    ...(usernsOk
      ? {}
      : {
          fix: 'allow user namespaces: sudo sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1',
        }),
  });
  const helperOk = existsSync(helper);
  checks.push(
    helperOk
      ? { id: 'helper', ok: true, detail: helper }
      : {
          id: 'helper',
          ok: false,
          detail: `${helper} is missing`,
          fix: HELPER_FIX,
        },
  );
  if (bwrap === undefined || !helperOk) return done(bwrap);
  const r = spawnSync(
    bwrap,
    [
      '--unshare-all',
      '--unshare-user',
      '--die-with-parent',
      '--as-pid-1',
      '--ro-bind',
      '/',
      '/',
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      // Sessions size their scratch tmpfs (bubblewrap 0.7+).
      '--size',
      String(1024 * 1024),
      '--tmpfs',
      '/tmp',
      // The helper where a session puts it: the package may live under /tmp, hidden above.
      '--tmpfs',
      '/run',
      '--ro-bind',
      helper,
      SANDBOX_HELPER,
      '--',
      SANDBOX_HELPER,
      '--probe',
    ],
    { encoding: 'utf8', timeout: 10_000, env: {} },
  );
  let probe: Probe | undefined;
  try {
    probe = parseStrictJson(r.stdout) as unknown as Probe;
  } catch {
    probe = undefined;
  }
  if (r.status !== 0 || probe === undefined) {
    const why = (r.stderr || r.error?.message || `exit ${String(r.status)}`).trim();
    checks.push({
      id: 'sandbox',
      ok: false,
      detail: `bubblewrap could not start a sandbox: ${why}`,
      fix: /Unknown option --size/.test(why)
        ? 'this bubblewrap is too old: install bubblewrap 0.7 or later (it sizes the sandbox’s /tmp with --size)'
        : apparmor === '1'
          ? 'AppArmor blocks unprivileged user namespaces: install the bwrap AppArmor profile (apparmor-profiles) or set kernel.apparmor_restrict_unprivileged_userns=0'
          : 'check that user namespaces are allowed for this user (inside containers, run with --privileged or a seccomp profile allowing clone/unshare)',
    });
    return done(bwrap);
  }
  checks.push({ id: 'sandbox', ok: true, detail: 'user, mount, pid, net, ipc and uts namespaces' });
  landlockAbi = probe.landlockAbi;
  checks.push(
    landlockAbi >= MIN_LANDLOCK_ABI
      ? {
          id: 'landlock',
          ok: true,
          detail: `ABI ${landlockAbi}${landlockAbi >= 6 ? ' (signal and abstract socket scoping)' : ''}`,
        }
      : {
          id: 'landlock',
          ok: false,
          detail:
            landlockAbi === 0
              ? `not available (errno ${probe.landlockErrno})`
              : `ABI ${landlockAbi}, need ${MIN_LANDLOCK_ABI}`,
          fix: 'use Linux 6.2 or later with Landlock enabled (CONFIG_SECURITY_LANDLOCK=y and "landlock" in the lsm= boot parameter)',
        },
  );
  checks.push(
    probe.seccomp
      ? { id: 'seccomp', ok: true, detail: 'seccomp filters available' }
      : {
          id: 'seccomp',
          ok: false,
          detail: 'seccomp not available',
          fix: 'use a kernel built with CONFIG_SECCOMP_FILTER=y',
        },
  );
  return done(bwrap);
}
