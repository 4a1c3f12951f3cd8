import { realpathSync } from 'node:fs';
import { processActivityEvent, type EventContext, type OcsfEvent } from '../audit/events.js';
import type { CordonDirs } from '../env.js';
import { CordonError } from '../errors.js';
import { expandHome, parsePathPattern } from '../manifest/paths.js';
import type { Manifest } from '../manifest/schema.js';
import { packageDirs, packageEntries } from '../package-files.js';
import { guardrailsFacts } from '../policy/in-force.js';
import type { Decision } from '../policy/types.js';
import { isWithin, packageExposure } from '../sandbox/linux/plan.js';
import { readEnforcement, UNSAFE_NO_SANDBOX_SETTING } from '../store/policy-dir.js';
import type { EnforcedPolicy } from '../endpoint/policy.js';

export interface LaunchCheckInput {
  readonly policy: EnforcedPolicy;
  readonly dirs: CordonDirs;
  readonly home: string;
  /** argv, argv[0] the absolute real path the client resolved. */
  readonly command: readonly string[];
  /** `--agent-runtime` narrowing, each as given and resolved. */
  readonly narrowed: readonly { given: string; real: string }[];
  readonly unsafeNoSandbox: boolean;
  readonly append: (e: OcsfEvent) => Promise<unknown>;
  readonly context: () => EventContext;
}

/**
 * The runtimes a session mounts: the manifest's agentRuntimes, or, with `--agent-runtime`, only
 * the given paths, each within one of them (flags narrow, never widen).
 */
export function agentRuntimes(
  m: Manifest,
  home: string,
  narrowed: readonly { given: string; real: string }[],
): { path: string; rule: string }[] {
  const granted = m.agentRuntimes.map((r, i) => {
    const path = expandHome(parsePathPattern(r), home);
    let real = path;
    try {
      real = realpathSync(path);
    } catch {
      // Not installed here: the sandbox plan warns and mounts nothing for it.
    }
    return { path, real, rule: `/agentRuntimes/${i}` };
  });
  if (narrowed.length === 0) return granted.map(({ path, rule }) => ({ path, rule }));
  return narrowed.map((n) => {
    const within = granted.find((g) => isWithin(n.real, g.real));
    if (within === undefined)
      throw new CordonError(
        'RUNTIME_NOT_IN_MANIFEST',
        `--agent-runtime ${n.given}${n.real === n.given ? '' : ` (${n.real})`} is not within the manifest's agentRuntimes${granted.length === 0 ? ' (the manifest lists none)' : `: ${granted.map((g) => g.path).join(', ')}`}`,
        {
          hint: `add "${n.given}" to agentRuntimes in the manifest and sign it again; --agent-runtime can only narrow what the signed manifest allows`,
        },
      );
    return { path: n.real, rule: `${within.rule} (narrowed by --agent-runtime ${n.given})` };
  });
}

/**
 * What must hold before a command starts under a manifest, checked where the policy is: the
 * command is an allowed exec, `--unsafe-no-sandbox` is allowed by the policy directory, no grant
 * reaches Cordon's own installation. Each refusal is recorded as a blocked Launch, then thrown.
 */
export async function checkLaunch(
  i: LaunchCheckInput,
): Promise<{ agentRuntimes: { path: string; rule: string }[] }> {
  const { policy } = i;
  const argv0 = i.command[0] ?? '';
  const runtimes = agentRuntimes(policy.manifest, i.home, i.narrowed);
  const refuse = (
    decision: Omit<Decision, 'code'> & { code: string },
    unmapped?: Record<string, unknown>,
  ): Promise<unknown> =>
    i.append(
      processActivityEvent(i.context(), {
        activity: 'launch',
        path: argv0,
        argv: i.command,
        control: { decision, manifest: policy.ref },
        ...(unmapped === undefined ? {} : { unmapped }),
      }),
    );
  // Running unconfined widens the signed policy from the command line: only the policy
  // directory may allow that, never the user's (or a planted alias's) flag alone.
  if (i.unsafeNoSandbox) {
    const setting = readEnforcement(i.dirs.policyDir);
    if (!setting.allowUnsafeNoSandbox) {
      const reason = `--unsafe-no-sandbox is not allowed by the policy directory (${UNSAFE_NO_SANDBOX_SETTING} is not true in ${setting.file})`;
      await refuse({
        effect: 'deny',
        rule: '--unsafe-no-sandbox',
        code: 'UNSAFE_NO_SANDBOX_FORBIDDEN',
        reason,
      });
      throw new CordonError('UNSAFE_NO_SANDBOX_FORBIDDEN', `refusing to run unconfined: ${reason}`, {
        file: setting.file,
        hint: `drop --unsafe-no-sandbox; only the policy directory may allow it: {"allowUnsafeNoSandbox": true} in ${setting.file}`,
      });
    }
  }
  // The command itself is an exec decision: not allowed, not started. A runtime the manifest
  // grants but `--agent-runtime` left out is not allowed either.
  const decided = policy.pdp.decide({ kind: 'exec', path: argv0, argv: [...i.command] });
  const decision =
    decided.effect === 'allow' &&
    decided.rule.startsWith('/agentRuntimes/') &&
    i.narrowed.length > 0 &&
    !runtimes.some((r) => isWithin(argv0, r.path))
      ? {
          ...decided,
          effect: 'deny' as const,
          code: 'NOT_GRANTED',
          rule: '--agent-runtime',
          reason: `Denied: ${argv0} is in the manifest's agentRuntimes, but not in the narrower --agent-runtime list of this session.`,
        }
      : decided;
  if (decision.effect !== 'allow') {
    await refuse(decision, { guardrails: guardrailsFacts(policy.guardrails) });
    throw new CordonError('COMMAND_NOT_ALLOWED', `${argv0} may not run: ${decision.reason}`, {
      hint: 'add it to commandsAllowed in the manifest, or its runtime (executable or directory) to agentRuntimes, and sign it again',
    });
  }
  // Cordon's own code runs on the host at the next `cordon run`: no grant may reach it.
  const exposed = i.unsafeNoSandbox
    ? undefined
    : packageExposure(policy.manifest, i.home, packageDirs(), packageEntries());
  if (exposed !== undefined) {
    const reason =
      exposed.entry === undefined
        ? `the grant ${exposed.pattern} (${exposed.path}) reaches Cordon's own installation ${exposed.packageDir}: an agent could change the code the next cordon run executes`
        : `the grant ${exposed.pattern} (${exposed.path}) can replace ${exposed.entry}, on the way to Cordon's own installation ${exposed.packageDir} or the node binary running it: an agent could choose the code the next cordon run executes`;
    await refuse({ effect: 'deny', rule: 'sandbox', code: 'SANDBOX_PACKAGE_EXPOSED', reason });
    throw new CordonError('SANDBOX_PACKAGE_EXPOSED', reason, {
      hint: 'narrow the grant, or install Cordon (and node) outside every write grant (npm i -g)',
    });
  }
  return { agentRuntimes: runtimes };
}
