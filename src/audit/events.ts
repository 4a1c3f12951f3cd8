import { randomUUID } from 'node:crypto';
import type { Decision, PolicyRequest } from '../policy/types.js';

/**
 * Typed builders for the OCSF 1.8.0 events Cordon writes: one function per event kind, each
 * taking only the fields that kind may carry and filling the classification (class, activity,
 * type_uid), the `security_control` profile and the metadata itself. A test validates every
 * builder's output against the OCSF schema files.
 *
 * Nothing secret enters an event: HTTP header values with credential-like names and URL
 * userinfo and credential-like query values are replaced by `[REDACTED]`, there is no field for
 * a body, and DLP findings carry a type and where it was found, never the matched text.
 */
export type OcsfEvent = Readonly<Record<string, unknown>> & {
  readonly class_uid: number;
  readonly activity_id: number;
  readonly type_uid: number;
  readonly time: number;
};

export const OCSF_VERSION = '1.8.0';
export const REDACTED = '[REDACTED]';

/** Who is acting: the agent, its session and process, and the person it runs as. */
export interface AgentActor {
  readonly name: string;
  readonly session?: string;
  readonly pid?: number;
  readonly processName?: string;
  readonly user?: Person;
}

export interface Person {
  readonly name: string;
  readonly uid?: string;
  readonly email?: string;
}

/** The host this endpoint runs on; `uid` is the device key id. */
export interface DeviceInfo {
  readonly hostname: string;
  readonly uid?: string;
  readonly osName?: string;
}

export interface EventContext {
  readonly productVersion: string;
  readonly device: DeviceInfo;
  readonly actor: AgentActor;
  /** Milliseconds since the epoch; defaults to now. */
  readonly time?: number;
}

/** The manifest a decision was made under. */
export interface ManifestRef {
  readonly agent: string;
  readonly version: string;
  readonly digest: string;
}

/** The outcome a security control reached, in Cordon's terms. */
export interface ControlOutcome {
  /** A decision point's decision, or an enforcement point's own (its codes may be wider). */
  readonly decision: Omit<Decision, 'code'> & { readonly code: string };
  readonly manifest?: ManifestRef;
  /** Set when a person approved this action: the event records disposition Approved. */
  readonly approver?: Person;
}

const SEVERITY = { info: 1, low: 2, medium: 3, high: 4, critical: 5 } as const;
export type Severity = keyof typeof SEVERITY;

const CATEGORY = { system: 1, findings: 2, iam: 3, network: 4, application: 6 } as const;

function classification(
  category: keyof typeof CATEGORY,
  classUid: number,
  className: string,
  activityId: number,
  activityName: string,
): Record<string, unknown> & {
  class_uid: number;
  activity_id: number;
  type_uid: number;
} {
  // Captions a SIEM derives from the ids anyway (category_name, type_name) are left out to keep
  // records small; class_name and activity_name stay for people reading raw events.
  return {
    category_uid: CATEGORY[category],
    class_uid: classUid,
    class_name: className,
    activity_id: activityId,
    activity_name: activityName,
    type_uid: classUid * 100 + activityId,
  };
}

/**
 * Events the builders made. Their keys are in canonical order at every level (a test checks
 * every kind), so the log serialises them with JSON.stringify alone; events are values, never
 * mutated after building (the type is read-only, and the log re-checks a sample).
 */
const BUILT = new WeakSet<object>();

/** Whether `e` came from a builder here (and so is already in canonical key order). */
export function isBuiltEvent(e: object): boolean {
  return BUILT.has(e);
}

function sortedKeys(o: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k];
  return out;
}

/** Rebuild the top level in key order, so the log can serialise the event with JSON.stringify. */
function event(o: Record<string, unknown> & OcsfEvent): OcsfEvent {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k];
  BUILT.add(out);
  return out as OcsfEvent;
}

function metadata(ctx: EventContext): Record<string, unknown> {
  return {
    product: { name: 'Cordon', vendor_name: 'Cordon', version: ctx.productVersion },
    profiles: ['host', 'security_control'],
    version: OCSF_VERSION,
  };
}

function person(p: Person): Record<string, unknown> {
  return {
    ...(p.email === undefined ? {} : { email_addr: p.email }),
    name: p.name,
    ...(p.uid === undefined ? {} : { uid: p.uid }),
  };
}

function actor(a: AgentActor, approver?: Person): Record<string, unknown> {
  const user = approver ?? a.user;
  return {
    app_name: a.name,
    ...(a.pid === undefined
      ? {}
      : {
          process: { ...(a.processName === undefined ? {} : { name: a.processName }), pid: a.pid },
        }),
    ...(a.session === undefined ? {} : { session: { uid: a.session } }),
    ...(user === undefined ? {} : { user: person(user) }),
  };
}

/** The OCSF device object of an event (the endpoint service stamps it on its clients' events). */
export function deviceObject(d: DeviceInfo): Record<string, unknown> {
  return {
    hostname: d.hostname,
    ...(d.osName === undefined ? {} : { os: { name: d.osName, type_id: 200 } }),
    type_id: 0,
    ...(d.uid === undefined ? {} : { uid: d.uid }),
  };
}

function base(
  ctx: EventContext,
  cls: ReturnType<typeof classification>,
  severity: Severity,
  approver?: Person,
): Record<string, unknown> & OcsfEvent {
  return {
    ...cls,
    time: ctx.time ?? Date.now(),
    timezone_offset: 0,
    severity_id: SEVERITY[severity],
    metadata: metadata(ctx),
    actor: actor(ctx.actor, approver),
    device: deviceObject(ctx.device),
  };
}

/**
 * The `security_control` profile for a decision: allow → Allowed/Allowed (Approved when a person
 * approved it), deny → Denied/Blocked, ask → Denied/Delayed (waiting for an approval). The policy
 * names the deciding rule; status carries the decision code.
 */
function control(o: ControlOutcome | undefined): Record<string, unknown> {
  if (o === undefined) return {};
  const d = o.decision;
  const [actionId, dispositionId, disposition] =
    d.effect === 'allow'
      ? o.approver !== undefined || d.code === 'APPROVED'
        ? [1, 8, 'Approved']
        : [1, 1, 'Allowed']
      : d.effect === 'ask'
        ? [2, 14, 'Delayed']
        : [2, 2, 'Blocked'];
  return {
    action_id: actionId,
    disposition_id: dispositionId,
    disposition,
    is_alert: false,
    // The reason is in status_detail; the policy names the deciding rule and the manifest.
    policy: {
      ...(o.manifest === undefined ? {} : { group: { name: o.manifest.agent } }),
      name: d.rule,
      ...(o.manifest === undefined ? {} : { uid: o.manifest.digest, version: o.manifest.version }),
    },
    status_id: d.effect === 'allow' ? 1 : 2,
    status_code: d.code,
    status_detail: d.reason,
    ...(d.overrides === undefined || d.overrides.length === 0
      ? {}
      : { unmapped: { mandatory_deny_overrides: [...d.overrides] } }),
  };
}

function severityOf(o: ControlOutcome | undefined): Severity {
  if (o === undefined) return 'info';
  return o.decision.effect === 'deny' && o.decision.code === 'MANDATORY_DENY'
    ? 'medium'
    : o.decision.effect === 'allow'
      ? 'info'
      : 'low';
}

function basename(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 || i === path.length - 1 ? path : path.slice(i + 1);
}

function fileObject(path: string): Record<string, unknown> {
  return { name: basename(path), path, type: 'Regular File', type_id: 1 };
}

// ---------------------------------------------------------------- File System Activity (1001)

const FILE_ACTIVITY = {
  create: [1, 'Create'],
  read: [2, 'Read'],
  update: [3, 'Update'],
  delete: [4, 'Delete'],
  rename: [5, 'Rename'],
} as const;
export type FileActivity = keyof typeof FILE_ACTIVITY;

export function fileActivityEvent(
  ctx: EventContext,
  e: { activity: FileActivity; path: string; to?: string; control?: ControlOutcome },
): OcsfEvent {
  const [id, name] = FILE_ACTIVITY[e.activity];
  return event({
    ...base(
      ctx,
      classification('system', 1001, 'File System Activity', id, name),
      severityOf(e.control),
      e.control?.approver,
    ),
    file: fileObject(e.path),
    ...(e.to === undefined ? {} : { file_result: fileObject(e.to) }),
    ...control(e.control),
  });
}

// ---------------------------------------------------------------- Process Activity (1007)

const PROCESS_ACTIVITY = { launch: [1, 'Launch'], terminate: [2, 'Terminate'] } as const;
export type ProcessActivity = keyof typeof PROCESS_ACTIVITY;

export function processActivityEvent(
  ctx: EventContext,
  e: {
    activity: ProcessActivity;
    path: string;
    argv?: readonly string[];
    pid?: number;
    parentPid?: number;
    exitCode?: number;
    control?: ControlOutcome;
    /** Extra facts kept under `unmapped` (keys in canonical order), e.g. the sandbox profile. */
    unmapped?: Readonly<Record<string, unknown>>;
  },
): OcsfEvent {
  const [id, name] = PROCESS_ACTIVITY[e.activity];
  const ctl = control(e.control);
  return event({
    ...base(
      ctx,
      classification('system', 1007, 'Process Activity', id, name),
      severityOf(e.control),
      e.control?.approver,
    ),
    process: {
      ...(e.argv === undefined ? {} : { cmd_line: e.argv.join(' ') }),
      file: fileObject(e.path),
      name: basename(e.path),
      ...(e.parentPid === undefined ? {} : { parent_process: { pid: e.parentPid } }),
      // A process that is only being decided on has no pid yet; it gets an id of its own.
      ...(e.pid === undefined ? { uid: randomUUID() } : { pid: e.pid }),
    },
    ...(e.exitCode === undefined ? {} : { exit_code: e.exitCode }),
    ...ctl,
    ...(e.unmapped === undefined
      ? {}
      : { unmapped: sortedKeys({ ...(ctl['unmapped'] as object | undefined), ...e.unmapped }) }),
  });
}

// ---------------------------------------------------------------- network endpoints, traffic

export interface Destination {
  readonly hostname?: string;
  readonly ip?: string;
  readonly port: number;
}

export interface Traffic {
  /** Bytes sent to the destination in the interval this event covers. */
  readonly bytesOut: number;
  /** Bytes received from the destination in the interval this event covers. */
  readonly bytesIn: number;
  readonly durationMs?: number;
  /** Totals since the connection opened, when this event covers only the latest interval. */
  readonly cumulative?: { readonly bytesOut: number; readonly bytesIn: number };
}

/** What the proxy saw of a TLS session: the ClientHello's server name and version. */
export interface TlsInfo {
  readonly sni?: string;
  readonly version: string;
}

function endpoint(d: Destination): Record<string, unknown> {
  return {
    ...(d.hostname === undefined ? {} : { hostname: d.hostname }),
    ...(d.ip === undefined ? {} : { ip: d.ip }),
    port: d.port,
  };
}

function traffic(t: Traffic | undefined): Record<string, unknown> {
  if (t === undefined) return {};
  return {
    ...(t.cumulative === undefined
      ? {}
      : {
          cumulative_traffic: {
            bytes: t.cumulative.bytesOut + t.cumulative.bytesIn,
            bytes_in: t.cumulative.bytesIn,
            bytes_out: t.cumulative.bytesOut,
          },
        }),
    ...(t.durationMs === undefined ? {} : { duration: t.durationMs }),
    traffic: { bytes: t.bytesOut + t.bytesIn, bytes_in: t.bytesIn, bytes_out: t.bytesOut },
  };
}

function connectionInfo(uid: string | undefined): Record<string, unknown> {
  return {
    direction: 'Outbound',
    direction_id: 2,
    protocol_name: 'tcp',
    ...(uid === undefined ? {} : { uid }),
  };
}

function srcEndpoint(ctx: EventContext): Record<string, unknown> {
  return { src_endpoint: { hostname: ctx.device.hostname } };
}

// ---------------------------------------------------------------- Network Activity (4001)

const NETWORK_ACTIVITY = {
  open: [1, 'Open'],
  close: [2, 'Close'],
  fail: [4, 'Fail'],
  refuse: [5, 'Refuse'],
  traffic: [6, 'Traffic'],
} as const;
export type NetworkActivity = keyof typeof NETWORK_ACTIVITY;

export function networkActivityEvent(
  ctx: EventContext,
  e: {
    activity: NetworkActivity;
    /** Omitted when the destination was never known (a request refused before it was parsed). */
    dst?: Destination;
    traffic?: Traffic;
    control?: ControlOutcome;
    /** Ties together the open, traffic and close events of one connection. */
    connectionUid?: string;
    tls?: TlsInfo;
    /** The plain-HTTP exchange whose traffic this reports (its `http_request.uid`). */
    requestUid?: string;
  },
): OcsfEvent {
  const [id, name] = NETWORK_ACTIVITY[e.activity];
  const ctl = control(e.control);
  return event({
    ...base(
      ctx,
      classification('network', 4001, 'Network Activity', id, name),
      severityOf(e.control),
      e.control?.approver,
    ),
    ...srcEndpoint(ctx),
    connection_info: connectionInfo(e.connectionUid),
    ...(e.dst === undefined ? {} : { dst_endpoint: endpoint(e.dst) }),
    ...(e.tls === undefined
      ? {}
      : {
          tls: { ...(e.tls.sni === undefined ? {} : { sni: e.tls.sni }), version: e.tls.version },
        }),
    ...traffic(e.traffic),
    ...ctl,
    ...(e.requestUid === undefined
      ? {}
      : {
          unmapped: sortedKeys({
            ...(ctl['unmapped'] as object | undefined),
            http_request_uid: e.requestUid,
          }),
        }),
  });
}

// ---------------------------------------------------------------- HTTP Activity (4002)

const HTTP_METHODS = {
  CONNECT: 1,
  DELETE: 2,
  GET: 3,
  HEAD: 4,
  OPTIONS: 5,
  POST: 6,
  PUT: 7,
  TRACE: 8,
  PATCH: 9,
} as const;

/** Header names whose values are credentials or session state. */
const SECRET_HEADER =
  /^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key|x-auth-token|x-amz-security-token|x-goog-api-key|x-csrf-token|x-xsrf-token)$|(auth|token|secret|passw|api[-_]?key|session|credential|signature)/i;
const SECRET_PARAM =
  /(auth|token|secret|passw|pwd|api[-_]?key|key|session|credential|signature|sig|code)/i;

/** Header values with credential-like names become `[REDACTED]`; names are kept. */
export function redactHeaders(
  headers: Readonly<Record<string, string | readonly string[] | undefined>>,
): { name: string; value: string }[] {
  const out: { name: string; value: string }[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const values = typeof value === 'string' ? [value] : value;
    for (const v of values) out.push({ name, value: SECRET_HEADER.test(name) ? REDACTED : v });
  }
  return out;
}

/** A URL with userinfo and credential-like query values replaced; unparsable URLs are dropped to their length. */
export function redactUrl(raw: string): Record<string, unknown> {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { path: REDACTED, url_string: REDACTED };
  }
  if (u.username !== '' || u.password !== '') {
    u.username = u.username === '' ? '' : 'REDACTED';
    u.password = u.password === '' ? '' : 'REDACTED';
  }
  for (const key of [...u.searchParams.keys()]) {
    if (SECRET_PARAM.test(key)) u.searchParams.set(key, REDACTED);
  }
  return {
    hostname: u.hostname,
    path: u.pathname,
    ...(u.port === '' ? {} : { port: Number(u.port) }),
    ...(u.search === '' ? {} : { query_string: u.search.slice(1) }),
    scheme: u.protocol.slice(0, -1),
    url_string: u.href,
  };
}

export function httpActivityEvent(
  ctx: EventContext,
  e: {
    method: string;
    url: string;
    dst: Destination;
    headers?: Readonly<Record<string, string | readonly string[] | undefined>>;
    status?: number;
    traffic?: Traffic;
    control?: ControlOutcome;
    /** The client connection the request came on. */
    connectionUid?: string;
    /**
     * One forwarded exchange: its decision (recorded before anything is forwarded), its traffic
     * reports and its end share this uid.
     */
    requestUid?: string;
  },
): OcsfEvent {
  const method = e.method.toUpperCase();
  const id = (HTTP_METHODS as Record<string, number>)[method] ?? 99;
  return event({
    ...base(
      ctx,
      classification(
        'network',
        4002,
        'HTTP Activity',
        id,
        id === 99 ? 'Other' : method.charAt(0) + method.slice(1).toLowerCase(),
      ),
      severityOf(e.control),
      e.control?.approver,
    ),
    ...(e.connectionUid === undefined ? {} : { connection_info: connectionInfo(e.connectionUid) }),
    ...srcEndpoint(ctx),
    ...(e.dst.hostname === undefined && e.dst.ip === undefined
      ? {}
      : { dst_endpoint: endpoint(e.dst) }),
    http_request: {
      // OCSF enumerates nine methods; any other (WebDAV, made-up) is kept under unmapped.
      ...(e.headers === undefined ? {} : { http_headers: redactHeaders(e.headers) }),
      ...(id === 99 ? {} : { http_method: method }),
      ...(e.requestUid === undefined ? {} : { uid: e.requestUid }),
      url: redactUrl(e.url),
    },
    ...(id === 99 ? { unmapped: { http_method: method.slice(0, 64) } } : {}),
    ...(e.status === undefined ? {} : { http_response: { code: e.status }, http_status: e.status }),
    ...traffic(e.traffic),
    ...control(e.control),
  });
}

// ---------------------------------------------------------------- API Activity (6003)

const API_ACTIVITY = {
  create: [1, 'Create'],
  read: [2, 'Read'],
  update: [3, 'Update'],
  delete: [4, 'Delete'],
  other: [99, 'Other'],
} as const;
export type ApiActivity = keyof typeof API_ACTIVITY;

export function apiActivityEvent(
  ctx: EventContext,
  e: { activity: ApiActivity; operation: string; service?: string; control?: ControlOutcome },
): OcsfEvent {
  const [id, name] = API_ACTIVITY[e.activity];
  return event({
    ...base(
      ctx,
      classification('application', 6003, 'API Activity', id, name),
      severityOf(e.control),
      e.control?.approver,
    ),
    ...srcEndpoint(ctx),
    api: {
      operation: e.operation,
      ...(e.service === undefined ? {} : { service: { name: e.service } }),
    },
    ...control(e.control),
  });
}

// ---------------------------------------------------------------- Application Lifecycle (6002)

const APP_ACTIVITY = {
  enable: [6, 'Enable'],
  disable: [7, 'Disable'],
  update: [8, 'Update'],
} as const;
export type ManifestActivity = keyof typeof APP_ACTIVITY;

/** A manifest was verified and put in force (enable), replaced (update) or withdrawn (disable). */
export function manifestLifecycleEvent(
  ctx: EventContext,
  e: {
    activity: ManifestActivity;
    manifest: ManifestRef;
    ok: boolean;
    code: string;
    reason: string;
    /** Extra facts kept under `unmapped`, e.g. the guardrails in force. */
    unmapped?: Readonly<Record<string, unknown>>;
  },
): OcsfEvent {
  const [id, name] = APP_ACTIVITY[e.activity];
  return event({
    ...base(
      ctx,
      classification('application', 6002, 'Application Lifecycle', id, name),
      e.ok ? 'info' : 'medium',
    ),
    app: {
      name: e.manifest.agent,
      uid: e.manifest.digest,
      vendor_name: 'Cordon capability manifest',
      version: e.manifest.version,
    },
    status_id: e.ok ? 1 : 2,
    status_code: e.code,
    status_detail: e.reason,
    action_id: e.ok ? 1 : 2,
    disposition_id: e.ok ? 1 : 2,
    disposition: e.ok ? 'Allowed' : 'Blocked',
    ...(e.unmapped === undefined ? {} : { unmapped: sortedKeys({ ...e.unmapped }) }),
  });
}

// ---------------------------------------------------------------- Entity Management (3004)

const TOKEN_ACTIVITY = {
  mint: [1, 'Create'],
  use: [2, 'Read'],
  revoke: [4, 'Delete'],
  expire: [11, 'Deactivate'],
} as const;
export type TokenActivity = keyof typeof TOKEN_ACTIVITY;

/** An approval token was minted, used, revoked or expired. The token itself is never logged. */
export function tokenEvent(
  ctx: EventContext,
  e: {
    activity: TokenActivity;
    tokenId: string;
    requestDigest: string;
    approver?: Person;
    expiresAt?: number;
  },
): OcsfEvent {
  const [id, name] = TOKEN_ACTIVITY[e.activity];
  return event({
    ...base(ctx, classification('iam', 3004, 'Entity Management', id, name), 'info', e.approver),
    entity: {
      data: {
        ...(e.expiresAt === undefined ? {} : { expires_at: e.expiresAt }),
        request_digest: e.requestDigest,
      },
      name: 'approval token',
      type: 'approval-token',
      uid: e.tokenId,
    },
  });
}

// ---------------------------------------------------------------- Detection Finding (2004)

export function detectionFindingEvent(
  ctx: EventContext,
  e: {
    uid: string;
    title: string;
    rule: { name: string; uid: string };
    severity: Severity;
    desc?: string;
    relatedSeq?: readonly number[];
    /** Details of the finding outside the schema; keys in canonical (sorted) order. */
    unmapped?: Readonly<Record<string, unknown>>;
  },
): OcsfEvent {
  const unmapped = {
    ...e.unmapped,
    ...(e.relatedSeq === undefined ? {} : { related_seq: [...e.relatedSeq] }),
  };
  return event({
    ...base(ctx, classification('findings', 2004, 'Detection Finding', 1, 'Create'), e.severity),
    finding_info: {
      analytic: { name: e.rule.name, type: 'Rule', type_id: 1, uid: e.rule.uid },
      ...(e.desc === undefined ? {} : { desc: e.desc }),
      ...(e.relatedSeq === undefined ? {} : { related_events_count: e.relatedSeq.length }),
      title: e.title,
      uid: e.uid,
    },
    status_id: 1,
    is_alert: true,
    action_id: 3,
    disposition_id: 19,
    disposition: 'Alert',
    ...(Object.keys(unmapped).length === 0 ? {} : { unmapped: sortedKeys(unmapped) }),
  });
}

// ---------------------------------------------------------------- Data Security Finding (2006)

/** Where DLP found something: never the text itself. */
export interface DlpLocation {
  readonly jsonPath?: string;
  readonly startLine?: number;
  readonly column?: number;
}

export interface DlpMatch {
  readonly type: string;
  readonly count: number;
  readonly locations: readonly DlpLocation[];
}

export function dataSecurityFindingEvent(
  ctx: EventContext,
  e: {
    uid: string;
    title: string;
    matches: readonly DlpMatch[];
    where: string;
    control?: ControlOutcome;
  },
): OcsfEvent {
  return event({
    ...base(
      ctx,
      classification('findings', 2006, 'Data Security Finding', 1, 'Create'),
      'high',
      e.control?.approver,
    ),
    finding_info: { desc: e.where, title: e.title, uid: e.uid },
    data_security: {
      detection_pattern: e.matches.map((m) => m.type).join(','),
      detection_system: 'DLP Gateway',
      detection_system_id: 2,
      discovery_details: e.matches.map((m) => ({
        count: m.count,
        occurrences: m.locations.map((l) => ({
          ...(l.column === undefined ? {} : { column_number: l.column }),
          ...(l.jsonPath === undefined ? {} : { json_path: l.jsonPath }),
          ...(l.startLine === undefined ? {} : { start_line: l.startLine }),
        })),
        type: m.type,
      })),
    },
    ...control(e.control),
    // Findings have their own status (New, In Progress, ...): this one is new.
    status_id: 1,
    is_alert: true,
  });
}

// ---------------------------------------------------------------- Event Log Activity (1008)

const LOG_ACTIVITY = {
  start: [6, 'Start'],
  rotate: [5, 'Rotate'],
  restart: [8, 'Restart'],
  /** Writes work again after failing (a full disk): the record says since when and what failed. */
  resume: [9, 'Enable'],
  checkpoint: [99, 'Checkpoint'],
} as const;
export type LogActivity = keyof typeof LOG_ACTIVITY;

/**
 * The audit log's own lifecycle: started, rotated, recovered after a crash (restart), and signed
 * checkpoints (carried in `unmapped.checkpoint`, so every sink ships a copy).
 */
export function logActivityEvent(
  ctx: EventContext,
  e: {
    activity: LogActivity;
    detail: string;
    checkpoint?: string;
    cutBytes?: number;
    segment?: string;
    /** For `resume`: what could not be written, since when (ISO time), and the error. */
    failure?: { readonly since: string; readonly what: readonly string[]; readonly error: string };
  },
): OcsfEvent {
  const [id, name] = LOG_ACTIVITY[e.activity];
  return event({
    ...base(
      ctx,
      classification('system', 1008, 'Event Log Activity', id, name),
      e.activity === 'restart' || e.activity === 'resume' ? 'medium' : 'info',
    ),
    log_name: 'cordon-audit',
    log_type_id: 99,
    log_type: 'Cordon chained audit log',
    ...(e.segment === undefined ? {} : { file: fileObject(e.segment) }),
    ...(e.failure === undefined ? {} : { status_code: 'WRITES_FAILED' }),
    status_id: 1,
    status_detail: e.detail,
    ...(e.checkpoint === undefined && e.cutBytes === undefined && e.failure === undefined
      ? {}
      : {
          unmapped: {
            ...(e.checkpoint === undefined ? {} : { checkpoint: e.checkpoint }),
            ...(e.cutBytes === undefined ? {} : { cut_bytes: e.cutBytes }),
            ...(e.failure === undefined
              ? {}
              : {
                  write_failure: {
                    error: e.failure.error,
                    since: e.failure.since,
                    what: [...e.failure.what],
                  },
                }),
          },
        }),
  });
}

// ---------------------------------------------------------------- decisions

/**
 * The event for one PDP decision, in the class that fits the request: file → 1001, exec → 1007,
 * net.connect → 4001, http.request → 4002, api.call and secret.get → 6003.
 */
export function decisionEvent(
  ctx: EventContext,
  request: PolicyRequest,
  outcome: ControlOutcome,
): OcsfEvent {
  switch (request.kind) {
    case 'file.read':
      return fileActivityEvent(ctx, { activity: 'read', path: request.path, control: outcome });
    case 'file.write': {
      const activity: FileActivity =
        request.op === 'rename'
          ? 'rename'
          : request.op === 'delete'
            ? 'delete'
            : request.op === 'create'
              ? 'create'
              : 'update';
      return fileActivityEvent(ctx, {
        activity,
        path: request.path,
        ...(request.to === undefined ? {} : { to: request.to }),
        control: outcome,
      });
    }
    case 'exec':
      return processActivityEvent(ctx, {
        activity: 'launch',
        path: request.path,
        ...(request.argv === undefined ? {} : { argv: request.argv }),
        control: outcome,
      });
    case 'net.connect':
      return networkActivityEvent(ctx, {
        activity: outcome.decision.effect === 'allow' ? 'open' : 'refuse',
        dst: {
          hostname: request.host,
          port: request.port,
          ...(request.address === undefined ? {} : { ip: request.address }),
        },
        control: outcome,
      });
    case 'http.request': {
      let port = 0;
      let hostname: string | undefined;
      try {
        const u = new URL(request.url);
        hostname = u.hostname;
        port = u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port);
      } catch {
        // An unparsable URL was denied by the PDP; the event still records the attempt.
      }
      return httpActivityEvent(ctx, {
        method: request.method,
        url: request.url,
        dst: {
          ...(hostname === undefined ? {} : { hostname }),
          port,
          ...(request.address === undefined ? {} : { ip: request.address }),
        },
        control: outcome,
      });
    }
    case 'api.call':
      return apiActivityEvent(ctx, {
        activity: 'other',
        operation: request.scope,
        control: outcome,
      });
    case 'secret.get':
      return apiActivityEvent(ctx, {
        activity: 'read',
        operation: 'secret.get',
        service: `secret:${request.name}`,
        control: outcome,
      });
  }
}
