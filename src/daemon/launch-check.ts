import type { EventContext, OcsfEvent } from '../audit/events.js';
import type { CordonDirs } from '../env.js';
import {
  agentRuntimes,
  checkLaunchAllowed,
  checkPackageExposure,
  checkUnsafeNoSandbox,
  launchDecision,
  LaunchRefusedError,
  recordLaunchRefusal,
  type MountedRuntime,
} from '../endpoint/launch.js';
import type { NarrowedRuntime } from '../endpoint/launch-flags.js';
import type { EnforcedPolicy } from '../endpoint/policy.js';

export interface LaunchCheckInput {
  readonly policy: EnforcedPolicy;
  readonly dirs: CordonDirs;
  readonly home: string;
  /** argv, argv[0] the absolute real path the client resolved. */
  readonly command: readonly [string, ...string[]];
  readonly narrowed: readonly NarrowedRuntime[];
  readonly unsafeNoSandbox: boolean;
  /** The client's ways into Cordon's installation (its argv[1] links, its `cordon` on PATH). */
  readonly clientEntries: readonly string[];
  readonly append: (e: OcsfEvent) => Promise<unknown>;
  readonly context: EventContext;
  readonly now: () => Date;
}

/**
 * What must hold before a command starts under a manifest, checked by the service that holds the
 * policy: `--unsafe-no-sandbox` allowed by the policy directory, the command an allowed exec
 * (within `--agent-runtime` when narrowed), no grant reaching Cordon's own installation. Each
 * refusal is recorded as a blocked Launch, then thrown.
 */
export async function checkLaunch(
  i: LaunchCheckInput,
): Promise<{ agentRuntimes: MountedRuntime[] }> {
  const runtimes = agentRuntimes(i.policy.manifest, i.home, i.narrowed);
  try {
    if (i.unsafeNoSandbox) checkUnsafeNoSandbox(i.dirs.policyDir);
    checkLaunchAllowed(
      i.policy,
      i.command[0],
      launchDecision(i.policy, i.command, i.narrowed, runtimes),
    );
    if (!i.unsafeNoSandbox) checkPackageExposure(i.policy.manifest, i.home, i.clientEntries);
  } catch (e) {
    if (e instanceof LaunchRefusedError)
      await recordLaunchRefusal(
        i.append,
        {
          context: i.context,
          now: i.now,
          path: i.command[0],
          argv: i.command,
          manifest: i.policy.ref,
        },
        e,
      );
    throw e;
  }
  return { agentRuntimes: runtimes };
}
