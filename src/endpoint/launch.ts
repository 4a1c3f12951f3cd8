import { realpathSync } from 'node:fs';
import {
  processActivityEvent,
  type ControlOutcome,
  type EventContext,
  type ManifestRef,
  type OcsfEvent,
} from '../audit/events.js';
import { CordonError, type CordonCode } from '../errors.js';
import { expandHome, parsePathPattern } from '../manifest/paths.js';
import type { Manifest } from '../manifest/schema.js';
import { packageDirs, packageEntries } from '../package-files.js';
import { guardrailsFacts } from '../policy/in-force.js';
import type { Decision } from '../policy/types.js';
import { isWithin, packageExposure } from '../sandbox/linux/plan.js';
import { readEnforcement, UNSAFE_NO_SANDBOX_SETTING } from '../store/policy-dir.js';
import type { EnforcedPolicy } from './policy.js';
import type { NarrowedRuntime } from './launch-flags.js';

// The checks a session passes before anything of the agent runs. Each returns a value or throws
// a CordonError; a check that refuses the launch under the policy throws LaunchRefusedError,
// whose decision the caller records (recordLaunchRefusal) before it reports the error.

/** A runtime the session mounts, and the manifest rule that grants it. */
export interface MountedRuntime {
  readonly path: string;
  readonly rule: string;
}

/**
 * The runtimes this session mounts: the manifest's agentRuntimes, or, with `--agent-runtime`,
 * only the given paths, each of which must lie within one of them (flags narrow, never widen;
 * RUNTIME_NOT_IN_MANIFEST otherwise).
 */
export function agentRuntimes(
  m: Manifest,
  home: string,
  narrowed: readonly NarrowedRuntime[],
): MountedRuntime[] {
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

/** A launch refused under the policy: the error, and the decision its audit event records. */
export class LaunchRefusedError extends CordonError {
  constructor(
    code: CordonCode,
    message: string,
    options: { file?: string; hint: string },
    /** The denial recorded on the refused Launch event. */
    readonly decision: ControlOutcome['decision'],
    /** Extra facts for the event's `unmapped`. */
    readonly unmapped?: Readonly<Record<string, unknown>>,
  ) {
    super(code, message, options);
  }
}

/**
 * Running unconfined widens the signed policy from the command line: only the policy directory
 * may allow that (UNSAFE_NO_SANDBOX_FORBIDDEN otherwise), never the user's (or a planted
 * alias's) flag alone.
 */
export function checkUnsafeNoSandbox(policyDir: string): void {
  const setting = readEnforcement(policyDir);
  if (setting.allowUnsafeNoSandbox) return;
  const reason = `--unsafe-no-sandbox is not allowed by the policy directory (${UNSAFE_NO_SANDBOX_SETTING} is not true in ${setting.file})`;
  throw new LaunchRefusedError(
    'UNSAFE_NO_SANDBOX_FORBIDDEN',
    `refusing to run unconfined: ${reason}`,
    {
      file: setting.file,
      hint: `drop --unsafe-no-sandbox; only the policy directory may allow it: {"allowUnsafeNoSandbox": true} in ${setting.file}`,
    },
    { effect: 'deny', rule: '--unsafe-no-sandbox', code: 'UNSAFE_NO_SANDBOX_FORBIDDEN', reason },
  );
}

/**
 * The command itself is an exec decision: not allowed, not started. A runtime the manifest grants
 * but `--agent-runtime` left out is not allowed either.
 */
export function launchDecision(
  policy: Pick<EnforcedPolicy, 'pdp'>,
  argv: readonly [string, ...string[]],
  narrowed: readonly NarrowedRuntime[],
  runtimes: readonly MountedRuntime[],
): Decision {
  const [argv0] = argv;
  const decided = policy.pdp.decide({ kind: 'exec', path: argv0, argv });
  return decided.effect === 'allow' &&
    decided.rule.startsWith('/agentRuntimes/') &&
    narrowed.length > 0 &&
    !runtimes.some((r) => isWithin(argv0, r.path))
    ? {
        ...decided,
        effect: 'deny' as const,
        code: 'NOT_GRANTED',
        rule: '--agent-runtime',
        reason: `Denied: ${argv0} is in the manifest's agentRuntimes, but not in the narrower --agent-runtime list of this session.`,
      }
    : decided;
}

/** Throws COMMAND_NOT_ALLOWED (a LaunchRefusedError) unless the launch decision allows. */
export function checkLaunchAllowed(
  policy: Pick<EnforcedPolicy, 'guardrails'>,
  argv0: string,
  decision: Decision,
): void {
  if (decision.effect === 'allow') return;
  throw new LaunchRefusedError(
    'COMMAND_NOT_ALLOWED',
    `${argv0} may not run: ${decision.reason}`,
    {
      hint: 'add it to commandsAllowed in the manifest, or its runtime (executable or directory) to agentRuntimes, and sign it again',
    },
    decision,
    { guardrails: guardrailsFacts(policy.guardrails) },
  );
}

/**
 * Cordon's own code runs on the host at the next `cordon run`: no grant may reach it
 * (SANDBOX_PACKAGE_EXPOSED, a LaunchRefusedError).
 */
export function checkPackageExposure(
  manifest: Manifest,
  home: string,
  /** The client's own ways in (the links it was started through, its `cordon` on PATH). */
  clientEntries: readonly string[] = [],
): void {
  const exposed = packageExposure(manifest, home, packageDirs(), [
    ...new Set([...packageEntries(), ...clientEntries]),
  ]);
  if (exposed === undefined) return;
  const reason =
    exposed.entry === undefined
      ? `the grant ${exposed.pattern} (${exposed.path}) reaches Cordon's own installation ${exposed.packageDir}: an agent could change the code the next cordon run executes`
      : `the grant ${exposed.pattern} (${exposed.path}) can replace ${exposed.entry}, on the way to Cordon's own installation ${exposed.packageDir} or the node binary running it: an agent could choose the code the next cordon run executes`;
  throw new LaunchRefusedError(
    'SANDBOX_PACKAGE_EXPOSED',
    reason,
    { hint: 'narrow the grant, or install Cordon (and node) outside every write grant (npm i -g)' },
    { effect: 'deny', rule: 'sandbox', code: 'SANDBOX_PACKAGE_EXPOSED', reason },
  );
}

/** What a refused Launch event says about the launch. */
export interface LaunchFacts {
  readonly context: EventContext;
  readonly now: () => Date;
  readonly path: string;
  readonly argv: readonly string[];
  readonly manifest: ManifestRef;
}

/** Record a refused launch as a blocked Launch; resolves once the record is durable. */
export async function recordLaunchRefusal(
  append: (e: OcsfEvent) => Promise<unknown>,
  launch: LaunchFacts,
  refusal: Pick<LaunchRefusedError, 'decision' | 'unmapped'>,
): Promise<void> {
  await append(
    processActivityEvent(
      { ...launch.context, time: launch.now().getTime() },
      {
        activity: 'launch',
        path: launch.path,
        argv: launch.argv,
        control: { decision: refusal.decision, manifest: launch.manifest },
        ...(refusal.unmapped === undefined ? {} : { unmapped: refusal.unmapped }),
      },
    ),
  );
}
