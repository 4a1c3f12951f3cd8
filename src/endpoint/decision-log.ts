import {
  apiActivityEvent,
  decisionEvent,
  type EventContext,
  type ManifestRef,
  type OcsfEvent,
} from '../audit/events.js';
import type { AuditLog } from '../audit/log.js';
import { openDeviceLog } from '../audit/open.js';
import type { CordonDirs } from '../env.js';
import { CordonError } from '../errors.js';
import type { Decision, PolicyRequest } from '../policy/types.js';

/**
 * The code of every denial made because the decision could not be recorded, wherever it is made
 * (`cordon check --audit`, the egress proxy): an action that cannot be audited does not happen.
 */
export const DECISION_UNRECORDED = 'DECISION_UNRECORDED' as const;

/** The denial that replaces a decision whose record could not be made durable. */
export function unrecordedDecision(cause: string): Decision {
  return {
    effect: 'deny',
    code: DECISION_UNRECORDED,
    rule: 'audit',
    reason: `Denied: the decision could not be written to the audit log (${cause}).`,
  };
}

/** Where audited decisions go, and what their events say about who decided under what. */
export interface DecisionLog {
  readonly log: Pick<AuditLog, 'append'>;
  readonly context: EventContext;
  readonly ref: ManifestRef;
  /** The service named on events of requests too malformed for their own class. */
  readonly service: string;
  readonly now: () => Date;
  /** Told each record's sequence number once it is durable. */
  readonly onRecorded?: (seq: number) => void;
  /** Told why a decision could not be recorded (it became a DECISION_UNRECORDED deny). */
  readonly onUnrecorded?: (error: unknown) => void;
}

/** An open device log with decisions attributed to the manifest's agent; close `log` when done. */
export interface OpenedDecisionLog extends DecisionLog {
  readonly log: AuditLog;
}

/** Open this device's audit log for audited decisions under `ref`. */
export function openDecisionLog(
  dirs: CordonDirs,
  opts: Omit<DecisionLog, 'log' | 'context'>,
): OpenedDecisionLog {
  const opened = openDeviceLog(dirs);
  return {
    ...opts,
    log: opened.log,
    context: { ...opened.context, actor: { ...opened.context.actor, name: opts.ref.agent } },
  };
}

const REQUEST_KINDS = new Set([
  'file.read',
  'file.write',
  'exec',
  'net.connect',
  'http.request',
  'api.call',
  'secret.get',
]);

/**
 * Record a decision and return what stands: the decision itself once its record is durable, or
 * a DECISION_UNRECORDED deny when no record could be made. A request too malformed for its own
 * event class (not JSON, an unknown kind, fields of the wrong type) is recorded as an API
 * Activity of the service (`what` names it), so every denial is in the log.
 *
 * @example
 * const d = await recordDecision(dlog, req, pdp.decide(req));
 */
export async function recordDecision(
  dlog: DecisionLog,
  req: unknown,
  d: Decision,
  what = 'invalid request',
): Promise<Decision> {
  const ctx = { ...dlog.context, time: dlog.now().getTime() };
  const outcome = { decision: d, manifest: dlog.ref };
  const builds: (() => OcsfEvent)[] = [];
  const kind = (req as { kind?: unknown } | null)?.kind;
  if (
    typeof req === 'object' &&
    req !== null &&
    typeof kind === 'string' &&
    REQUEST_KINDS.has(kind)
  )
    builds.push(() => decisionEvent(ctx, req as PolicyRequest, outcome));
  builds.push(() =>
    apiActivityEvent(ctx, {
      activity: 'other',
      operation: what,
      service: dlog.service,
      control: outcome,
    }),
  );
  let failure: unknown;
  for (const build of builds) {
    try {
      const { seq } = await dlog.log.append(build());
      dlog.onRecorded?.(seq);
      return d;
    } catch (e) {
      failure = e;
    }
  }
  dlog.onUnrecorded?.(failure);
  return unrecordedDecision(failure instanceof CordonError ? failure.code : 'AUDIT_WRITE_FAILED');
}
