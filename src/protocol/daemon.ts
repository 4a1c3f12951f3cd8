/**
 * The endpoint service's local API: every request and response body, as zod schemas. This module
 * is the single source of the types the daemon and its clients use; both parse what they receive
 * with it. It uses `zod/mini` so that thin clients (`cordon run`, hooks) load little.
 *
 * Transport: HTTP/1.1 with JSON bodies over the daemon's Unix socket, paths under `/v1/`. The
 * caller's identity is never read from a body: the daemon takes it from the socket's peer
 * credentials. A session's own client proves itself with the capability `open` returned, sent as
 * `Authorization: Bearer <capability>`.
 *
 * @example
 * curl --unix-socket "$XDG_RUNTIME_DIR/cordon/daemon.sock" http://cordon/v1/status
 */
import * as z from 'zod/mini';
import { MAX_BATCH, MAX_BODY_BYTES } from './limits.js';

export { MAX_BATCH, MAX_BODY_BYTES, MAX_EVENT_BYTES } from './limits.js';

export const API_PREFIX = '/v1';

const Str = (max: number) => z.string().check(z.maxLength(max));
const Id = z.string().check(z.regex(/^[0-9a-f-]{36}$/));
const Count = z.int().check(z.minimum(0));

/** Every failure: a stable code, a sentence, and what to do. */
export const ErrorBodySchema = z.object({
  ok: z.literal(false),
  code: Str(64),
  message: Str(16384),
  hint: z.optional(Str(4096)),
  file: z.optional(Str(4096)),
  pointer: z.optional(Str(4096)),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

export const ManifestRefSchema = z.object({
  agent: Str(256),
  version: Str(64),
  digest: Str(128),
});

export const DecisionSchema = z.object({
  effect: z.enum(['allow', 'deny', 'ask']),
  reason: Str(8192),
  rule: Str(1024),
  code: Str(64),
  overrides: z.optional(z.array(Str(1024))),
});
export type WireDecision = z.infer<typeof DecisionSchema>;

// ---- status -------------------------------------------------------------------------------

export const SinkLagSchema = z.object({
  name: Str(256),
  lagRecords: Count,
  lagSeconds: z.optional(z.number()),
  lastError: z.optional(Str(4096)),
  lastShippedAt: z.optional(Str(64)),
});

export const StatusResponseSchema = z.object({
  ok: z.literal(true),
  mode: z.enum(['user', 'system']),
  pid: z.int(),
  version: Str(64),
  uptimeSeconds: z.number(),
  socket: Str(4096),
  policyDir: Str(4096),
  stateDir: Str(4096),
  log: z.object({ seq: Count, hash: Str(128), durableSeq: Count }),
  sinks: z.array(SinkLagSchema),
  sessions: z.object({ running: Count, quarantined: Count, yours: Count }),
  manifests: z.array(
    z.object({ agent: Str(256), version: Str(64), digest: Str(128), sessions: Count }),
  ),
  /** The caller as the daemon sees it (from the socket's peer credentials). */
  caller: z.object({ uid: z.int(), pid: z.int(), admin: z.boolean() }),
});
export type StatusResponse = z.infer<typeof StatusResponseSchema>;

// ---- sessions -----------------------------------------------------------------------------

export const OpenSessionRequestSchema = z.strictObject({
  /** The signed manifest envelope's bytes, base64: what the client read, once. */
  manifest: Str(MAX_BODY_BYTES),
  /** Where the client read it (for messages and `ps`; the daemon never reads it). */
  manifestPath: Str(4096),
  /** The command, argv[0] as the absolute real path the client resolved. */
  command: z.array(Str(65536)).check(z.minLength(1), z.maxLength(4096)),
  cwd: Str(4096),
  /** The caller's home, for `~` in the manifest (user mode; the system service looks it up). */
  home: z.optional(Str(4096)),
  /** `--agent-runtime` narrowing: each path as given and as resolved. */
  agentRuntimes: z.optional(
    z.array(z.strictObject({ given: Str(4096), real: Str(4096) })).check(z.maxLength(256)),
  ),
  guardrails: z.optional(z.union([Str(4096), z.literal(false)])),
  resolve: z.optional(z.array(Str(1024)).check(z.maxLength(1024))),
  config: z.optional(Str(4096)),
  unsafeNoSandbox: z.optional(z.boolean()),
  /**
   * The client's ways into Cordon's installation (the links it was started through, `cordon` on
   * its PATH): no write grant may reach them either. Only adds paths to refuse on.
   */
  installationEntries: z.optional(z.array(Str(4096)).check(z.maxLength(256))),
  /** `proxy`: a standalone proxy (`cordon proxy`) rather than a sandboxed command. */
  kind: z.optional(z.enum(['run', 'proxy'])),
  /** Where a standalone proxy listens: a loopback address, or a Unix socket (user mode). */
  listen: z.optional(
    z.strictObject({ host: Str(256), port: z.int().check(z.minimum(0), z.maximum(65535)) }),
  ),
  unix: z.optional(Str(4096)),
  socks: z.optional(
    z.strictObject({ host: Str(256), port: z.int().check(z.minimum(0), z.maximum(65535)) }),
  ),
});
export type OpenSessionRequest = z.infer<typeof OpenSessionRequestSchema>;

export const OpenSessionResponseSchema = z.object({
  ok: z.literal(true),
  session: Id,
  /** Present it as `Authorization: Bearer …` on every call about this session. */
  capability: Str(128),
  /** The verified manifest, as enforced. */
  manifest: z.record(z.string(), z.unknown()),
  ref: ManifestRefSchema,
  guardrails: z.record(z.string(), z.unknown()),
  guardrailsText: Str(8192),
  agentRuntimes: z.array(z.object({ path: Str(4096), rule: Str(4096) })),
  /** Directory holding the session's egress socket; bind it (read-only) into the sandbox. */
  egressDir: Str(4096),
  egressSocket: Str(4096),
  /** Directories the sandbox must never show (policy, state, the daemon's runtime). */
  hidden: z.array(Str(4096)),
  home: Str(4096),
  auditSeqAtStart: Count,
  /** With `unsafeNoSandbox` or a standalone proxy: the proxy's URL. */
  proxyUrl: z.optional(Str(1024)),
  socksPort: z.optional(z.int()),
});
export type OpenSessionResponse = z.infer<typeof OpenSessionResponseSchema>;

export const DecideRequestSchema = z.strictObject({
  requests: z.array(z.unknown()).check(z.minLength(1), z.maxLength(MAX_BATCH)),
  /** Record each decision in the audit log (the caller denies what could not be recorded). */
  audit: z.optional(z.boolean()),
});
export const DecideResponseSchema = z.object({
  ok: z.literal(true),
  decisions: z.array(DecisionSchema),
});

export const EventsRequestSchema = z.strictObject({
  events: z
    .array(
      z.strictObject({
        /** The client's own sequence number, from 1, without gaps: resends are deduplicated. */
        seq: z.int().check(z.minimum(1)),
        event: z.record(z.string(), z.unknown()),
      }),
    )
    .check(z.minLength(1), z.maxLength(MAX_BATCH)),
});
export type EventsRequest = z.infer<typeof EventsRequestSchema>;

/**
 * Whether a body passes EventsRequestSchema, decided without zod's walk of every key of every
 * event (this runs for each event a session sends). Only the answer is used: a body it refuses
 * is parsed with the schema again for the message naming the field. A property test holds the
 * two to the same answers.
 */
export function isEventsRequest(v: unknown): v is EventsRequest {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const body = v as Record<string, unknown>;
  const events = body['events'];
  if (!Array.isArray(events) || events.length < 1 || events.length > MAX_BATCH) return false;
  for (const k in body) if (k !== 'events') return false;
  for (const e of events as unknown[]) {
    if (typeof e !== 'object' || e === null || Array.isArray(e)) return false;
    const x = e as Record<string, unknown>;
    let keys = 0;
    for (const k in x) {
      if (k !== 'seq' && k !== 'event') return false;
      keys++;
    }
    const seq = x['seq'];
    const event = x['event'];
    if (keys !== 2 || !Number.isSafeInteger(seq) || (seq as number) < 1) return false;
    if (typeof event !== 'object' || event === null || Array.isArray(event)) return false;
  }
  return true;
}
export const EventsResponseSchema = z.object({
  ok: z.literal(true),
  /** Every client sequence number up to this one is durable in the log. */
  acked: Count,
  logSeq: Count,
});

export const SessionStateRequestSchema = z.strictObject({
  sandboxPid: z.optional(z.int().check(z.minimum(1))),
  sandboxStart: z.optional(Str(64)),
});

export const CloseRequestSchema = z.strictObject({
  exitCode: z.optional(z.int()),
  /**
   * The client's last event sequence number, sent with events still unanswered: the session is
   * closed only once every event up to it is durable; otherwise the answer is EVENTS_PENDING
   * (409) and the session stays open.
   */
  lastSeq: z.optional(z.int().check(z.minimum(1))),
});

/** Traffic per destination (`host:port`) of a session's proxy. */
export const DestinationSchema = z.object({
  destination: Str(1024),
  requests: Count,
  connections: Count,
  denied: Count,
  bytesOut: Count,
  bytesIn: Count,
});
export const CloseResponseSchema = z.object({
  ok: z.literal(true),
  destinations: z.array(DestinationSchema),
});

export type CloseResponse = z.infer<typeof CloseResponseSchema>;

/** A standalone proxy's manifest, read again by its client (SIGHUP). */
export const ReloadRequestSchema = z.strictObject({ manifest: Str(MAX_BODY_BYTES) });
export const ReloadResponseSchema = z.object({
  ok: z.literal(true),
  /** Whether the new manifest is in force; false: egress is denied until one verifies. */
  inForce: z.boolean(),
  message: Str(8192),
});

export const QuarantineRequestSchema = z.strictObject({
  reason: z.optional(Str(1024)),
  /** Wait for containment and write an evidence bundle (`cordon quarantine`). */
  evidence: z.optional(z.boolean()),
  /** Where the bundle goes (user mode only; the system service keeps it in its state). */
  out: z.optional(Str(4096)),
});

export const SessionInfoSchema = z.object({
  id: Id,
  kind: z.enum(['run', 'proxy']),
  agent: Str(256),
  manifestVersion: Str(64),
  manifestDigest: Str(128),
  manifestPath: Str(4096),
  uid: z.int(),
  clientPid: z.int(),
  sandboxPid: z.optional(z.int()),
  command: z.array(z.string()),
  startedAt: Str(64),
  auditSeqAtStart: Count,
  bytesOut: Count,
  bytesIn: Count,
  state: z.enum(['running', 'quarantined']),
  /** Whether the session's client is connected to this daemon now. */
  attached: z.boolean(),
  quarantinedAt: z.optional(Str(64)),
  quarantineReason: z.optional(Str(4096)),
  unsafeNoSandbox: z.optional(z.boolean()),
});
export type SessionInfo = z.infer<typeof SessionInfoSchema>;

export const SessionListResponseSchema = z.object({
  ok: z.literal(true),
  sessions: z.array(SessionInfoSchema),
});
export const SessionResponseSchema = z.object({
  ok: z.literal(true),
  session: SessionInfoSchema,
});

export const QuarantineResponseSchema = z.object({
  ok: z.literal(true),
  session: SessionInfoSchema,
  contained: z.optional(z.boolean()),
  sandboxGone: z.optional(z.boolean()),
  denied: z.optional(z.boolean()),
  containmentMs: z.optional(z.number()),
  processesKilled: z.optional(Count),
  evidence: z.optional(
    z.object({
      path: Str(4096),
      sha256: Str(128),
      records: Count,
      warnings: z.array(Str(4096)),
    }),
  ),
});
export type QuarantineResponse = z.infer<typeof QuarantineResponseSchema>;

/** What the daemon tells a session's client on its watch stream (one JSON object per line). */
export const WatchMessageSchema = z.union([
  z.object({ type: z.literal('attached'), session: Id }),
  z.object({ type: z.literal('quarantine'), code: Str(64), reason: Str(4096) }),
  z.object({ type: z.literal('ping') }),
  /** Something the session's user should know (the log cannot be written, egress denied). */
  z.object({ type: z.literal('notice'), text: Str(8192) }),
]);
export type WatchMessage = z.infer<typeof WatchMessageSchema>;

// ---- decisions without a session (`cordon check --audit`) ---------------------------------

export const CheckRequestSchema = z.strictObject({
  manifest: Str(MAX_BODY_BYTES),
  manifestPath: Str(4096),
  requests: z.array(z.unknown()).check(z.minLength(1), z.maxLength(MAX_BATCH)),
  verify: z.optional(z.boolean()),
  guardrails: z.optional(z.union([Str(4096), z.literal(false)])),
  lexical: z.optional(z.boolean()),
  /** The home `~` expands to in these decisions (user mode; `cordon check --home`). */
  home: z.optional(Str(4096)),
  /**
   * Per request, set when the client could not even parse it (`cordon check --stdin`): it is
   * denied and recorded with this operation and reason.
   */
  invalid: z.optional(
    z.array(z.nullable(z.strictObject({ operation: Str(1024), reason: Str(4096) }))),
  ),
});
export type CheckRequest = z.infer<typeof CheckRequestSchema>;
export const CheckResponseSchema = z.object({
  ok: z.literal(true),
  decisions: z.array(DecisionSchema),
  signed: z.boolean(),
  verified: z.boolean(),
  ref: ManifestRefSchema,
  /** Log sequence numbers of the records, one per decision. */
  records: z.array(Count),
});

/** Synthetic events of every kind, written by the service (`cordon audit emit-test`). */
export const EmitTestRequestSchema = z.strictObject({
  count: z.int().check(z.minimum(1), z.maximum(100_000_000)),
});
export const EmitTestResponseSchema = z.object({
  ok: z.literal(true),
  appended: Count,
  lastSeq: Count,
  seconds: z.number(),
  eventsPerSecond: z.number(),
  writes: Count,
  /** What went wrong beside the log meanwhile (a witness it could not append to). */
  warnings: z.optional(z.array(Str(8192))),
});

/**
 * Records of the log after a sequence number (`cordon audit tail` against the system service):
 * each the record's line as written. Administrators get every record; another caller only those
 * whose actor is its own uid.
 */
export const RecordsResponseSchema = z.object({
  ok: z.literal(true),
  records: z.array(z.string()),
  /** The sequence number to ask after next (the last record looked at, shown or not). */
  next: Count,
  head: Count,
});

export const OkResponseSchema = z.object({ ok: z.literal(true), message: z.optional(Str(4096)) });

export { describeIssues } from './issues.js';
