import {
  manifestLifecycleEvent,
  type EventContext,
  type ManifestActivity,
  type OcsfEvent,
} from '../audit/events.js';
import type { EgressProxy } from '../egress/proxy.js';
import { CordonError } from '../errors.js';
import { describeGuardrails, guardrailsFacts } from '../policy/in-force.js';
import type { EnforcedPolicy } from './policy.js';

/** What the state machine drives: an egress proxy (tests may pass their own). */
export type ControlledProxy = Pick<EgressProxy, 'reload' | 'denyAll' | 'resume'>;

/** The manifest put in force, replaced or withdrawn, recorded as an Application Lifecycle event. */
export interface ManifestLifecycle {
  readonly activity: ManifestActivity;
  readonly ok: boolean;
  readonly code: string;
  readonly reason: string;
}

/** Build the Application Lifecycle event of `policy` (guardrails named when it is in force). */
export function manifestLifecycle(
  context: EventContext,
  now: () => Date,
  policy: Pick<EnforcedPolicy, 'ref' | 'guardrails'>,
  e: ManifestLifecycle,
): OcsfEvent {
  return manifestLifecycleEvent(
    { ...context, time: now().getTime() },
    {
      activity: e.activity,
      manifest: policy.ref,
      ok: e.ok,
      code: e.code,
      reason: e.ok ? `${e.reason}; guardrails: ${describeGuardrails(policy.guardrails)}` : e.reason,
      ...(e.ok ? { unmapped: { guardrails: guardrailsFacts(policy.guardrails) } } : {}),
    },
  );
}

export interface ProxyPolicyControlOptions {
  readonly proxy: ControlledProxy;
  /** The policy in force when the proxy started. */
  readonly policy: EnforcedPolicy;
  /** Load and verify the manifest again (a reload); throws when it must not be put in force. */
  readonly load: () => EnforcedPolicy;
  /** Append an event; a rejection is reported through onDiagnostic (the proxy denies on its own). */
  readonly append: (e: OcsfEvent) => Promise<unknown>;
  readonly context: EventContext;
  readonly now: () => Date;
  /** Operator diagnostics (stderr for `cordon proxy`). */
  readonly onDiagnostic: (message: string) => void;
}

/**
 * The egress proxy's reload and deny-all state machine. A reload puts a freshly verified manifest
 * in force; a reload that fails (the manifest no longer verifies) denies everything until a good
 * one is loaded. A quarantine denies everything for good: no reload lifts it.
 *
 * @example
 * const control = new ProxyPolicyControl({ proxy, policy, load, append, context, now, onDiagnostic });
 * process.on('SIGHUP', () => control.reload());
 */
export class ProxyPolicyControl {
  #policy: EnforcedPolicy;
  #reloadFailed = false;
  #quarantined = false;
  readonly #o: ProxyPolicyControlOptions;

  constructor(o: ProxyPolicyControlOptions) {
    this.#o = o;
    this.#policy = o.policy;
  }

  /** The policy in force (the last one that loaded). */
  get policy(): EnforcedPolicy {
    return this.#policy;
  }

  get quarantined(): boolean {
    return this.#quarantined;
  }

  /** Whether the last reload failed, so egress is denied until a verified manifest loads. */
  get reloadFailed(): boolean {
    return this.#reloadFailed;
  }

  /** SIGHUP reloads, SIGUSR1 (deny-all) quarantines. */
  handle(what: 'reload' | 'deny-all'): void {
    if (what === 'deny-all') this.quarantine();
    else this.reload();
  }

  /** Deny everything and close every tunnel, for good. */
  quarantine(reason = 'the agent is quarantined: all network access is suspended'): void {
    this.#quarantined = true;
    this.#o.proxy.denyAll(reason);
    this.#o.onDiagnostic('deny-all: every tunnel closed, every request denied');
  }

  /** Load the manifest again; true when the reloaded manifest is in force. */
  reload(): boolean {
    const { proxy } = this.#o;
    try {
      this.#policy = this.#o.load();
      const closed = proxy.reload(this.#policy.pdp, this.#policy.ref);
      // A good manifest lifts the deny-all of a failed reload, never a quarantine.
      if (this.#reloadFailed && !this.#quarantined) proxy.resume();
      this.#reloadFailed = false;
      this.#o.onDiagnostic(
        `reloaded manifest ${this.#policy.ref.version} (${this.#policy.ref.digest}); ${closed} tunnel(s) it no longer allows closed`,
      );
      this.#record({
        activity: 'update',
        ok: true,
        code: 'VERIFIED',
        reason: 'the egress proxy verified the manifest again and put it in force (reload)',
      });
      return true;
    } catch (e) {
      const msg = e instanceof CordonError ? `${e.code}: ${e.message}` : (e as Error).message;
      this.#reloadFailed = true;
      this.#record({
        activity: 'disable',
        ok: false,
        code: e instanceof CordonError ? e.code : 'VERIFY_ERROR',
        reason: `manifest reload failed, egress denied until a verified manifest is loaded: ${msg}`,
      });
      if (!this.#quarantined)
        proxy.denyAll(
          `the manifest reload failed (${msg}); nothing is allowed until a verified manifest is loaded`,
        );
      this.#o.onDiagnostic(`reload failed, denying everything: ${msg}`);
      return false;
    }
  }

  // A reload's event that cannot be written is reported; the proxy then denies on its own.
  #record(e: ManifestLifecycle): void {
    this.#o
      .append(manifestLifecycle(this.#o.context, this.#o.now, this.#policy, e))
      .catch((err: unknown) => this.#o.onDiagnostic(`audit: ${(err as Error).message}`));
  }
}
