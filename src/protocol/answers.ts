/**
 * The daemon's answers that thin clients read (`cordon run`, `cordon proxy`, hooks), checked
 * without zod. The schemas in ./daemon.ts remain the single source of the protocol's types;
 * building them costs a process that starts, asks and exits several milliseconds (constructing
 * every schema at load, then zod's first parse), which `cordon run`'s start-up budget cannot
 * carry. Each checker here admits exactly what its schema admits: test/protocol/answers.test.ts
 * holds every pair to the same answers on generated input. What a checker refuses, the client
 * treats as a daemon of another version (DAEMON_PROTOCOL), as it did with the schema.
 */
import type {
  CloseResponse,
  ErrorBody,
  OpenSessionResponse,
  SessionInfo,
  WatchMessage,
} from './daemon.js';
import type { Issues } from './issues.js';

/** What a client needs of a schema: zod's `safeParse`, with zod's failure shape. */
export interface AnswerCheck<T> {
  safeParse(v: unknown): { success: true; data: T } | { success: false; error: Issues };
}

type Path = (string | number)[];
/** A check: undefined when `v` passes, else where and why it does not. */
type Check = (v: unknown, path: Path) => { path: Path; message: string } | undefined;

const fail = (path: Path, message: string): { path: Path; message: string } => ({
  path,
  message,
});
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Code points in `s`, as zod measures a string's length: a surrogate pair counts once, a lone
 * surrogate once. Only a string longer than a limit in code units needs counting.
 */
function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    if ((s.charCodeAt(i) & 0xfc00) === 0xd800 && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n--;
      i++;
    }
  }
  return n;
}
/** z.string() with z.maxLength(max): zod counts code points, not UTF-16 code units. */
const str =
  (max: number): Check =>
  (v, path) =>
    typeof v !== 'string'
      ? fail(path, 'expected string')
      : v.length > max && codePoints(v) > max
        ? fail(path, `too big (at most ${max})`)
        : undefined;
/** z.int(): a safe integer. */
const int: Check = (v, path) =>
  typeof v === 'number' && Number.isSafeInteger(v) ? undefined : fail(path, 'expected int');
/** z.int() with z.minimum(0). */
const count: Check = (v, path) =>
  int(v, path) ?? ((v as number) < 0 ? fail(path, 'too small (at least 0)') : undefined);
const bool: Check = (v, path) =>
  typeof v === 'boolean' ? undefined : fail(path, 'expected boolean');
const literal =
  (x: string | boolean): Check =>
  (v, path) =>
    v === x ? undefined : fail(path, `must be ${String(x)}`);
const oneOf =
  (xs: readonly string[]): Check =>
  (v, path) =>
    typeof v === 'string' && xs.includes(v)
      ? undefined
      : fail(path, `must be one of ${xs.join(', ')}`);
/** The session id's form (36 of hex digits and dashes). */
const id: Check = (v, path) =>
  typeof v === 'string' && /^[0-9a-f-]{36}$/.test(v)
    ? undefined
    : fail(path, 'expected a session id');
const arr =
  (item: Check): Check =>
  (v, path) => {
    if (!Array.isArray(v)) return fail(path, 'expected array');
    for (let i = 0; i < v.length; i++) {
      const bad = item(v[i], [...path, i]);
      if (bad !== undefined) return bad;
    }
    return undefined;
  };
/** z.record(z.string(), z.unknown()): any object that is not an array. */
const record: Check = (v, path) => (isObject(v) ? undefined : fail(path, 'expected object'));
/** Marks a field z.optional: absent or undefined passes. */
interface Optional {
  readonly optional: Check;
}
const opt = (c: Check): Optional => ({ optional: c });
/** z.object(shape): unknown keys are allowed (zod strips them; nothing here reads them). */
const obj =
  (shape: Readonly<Record<string, Check | Optional>>): Check =>
  (v, path) => {
    if (!isObject(v)) return fail(path, 'expected object');
    for (const [k, c] of Object.entries(shape)) {
      const x = v[k];
      if (typeof c !== 'function') {
        if (x === undefined) continue;
        const bad = c.optional(x, [...path, k]);
        if (bad !== undefined) return bad;
      } else {
        const bad = c(x, [...path, k]);
        if (bad !== undefined) return bad;
      }
    }
    return undefined;
  };
const union =
  (...cs: Check[]): Check =>
  (v, path) =>
    cs.some((c) => c(v, path) === undefined) ? undefined : fail(path, 'matches no variant');

function answer<T>(check: Check): AnswerCheck<T> {
  return {
    safeParse(v) {
      const bad = check(v, []);
      if (bad === undefined) return { success: true, data: v as T };
      return {
        success: false,
        error: {
          issues: [
            { code: 'custom', path: bad.path, message: bad.message, input: v },
          ] as unknown as Issues['issues'],
        },
      };
    },
  };
}

// Each below mirrors the schema of the same name in ./daemon.ts.

export const errorAnswer = answer<ErrorBody>(
  obj({
    ok: literal(false),
    code: str(64),
    message: str(16384),
    hint: opt(str(4096)),
    file: opt(str(4096)),
    pointer: opt(str(4096)),
  }),
);

const ManifestRef = obj({ agent: str(256), version: str(64), digest: str(128) });

export const openSessionAnswer = answer<OpenSessionResponse>(
  obj({
    ok: literal(true),
    session: id,
    capability: str(128),
    manifest: record,
    ref: ManifestRef,
    guardrails: record,
    guardrailsText: str(8192),
    agentRuntimes: arr(obj({ path: str(4096), rule: str(4096) })),
    egressDir: str(4096),
    egressSocket: str(4096),
    hidden: arr(str(4096)),
    home: str(4096),
    auditSeqAtStart: count,
    proxyUrl: opt(str(1024)),
    socksPort: opt(int),
  }),
);

export const eventsAnswer = answer<{ ok: true; acked: number; logSeq: number }>(
  obj({ ok: literal(true), acked: count, logSeq: count }),
);

export const closeAnswer = answer<CloseResponse>(
  obj({
    ok: literal(true),
    destinations: arr(
      obj({
        destination: str(1024),
        requests: count,
        connections: count,
        denied: count,
        bytesOut: count,
        bytesIn: count,
      }),
    ),
  }),
);

const SessionInfoCheck = obj({
  id,
  kind: oneOf(['run', 'proxy']),
  agent: str(256),
  manifestVersion: str(64),
  manifestDigest: str(128),
  manifestPath: str(4096),
  uid: int,
  clientPid: int,
  sandboxPid: opt(int),
  command: arr((v, path) => (typeof v === 'string' ? undefined : fail(path, 'expected string'))),
  startedAt: str(64),
  auditSeqAtStart: count,
  bytesOut: count,
  bytesIn: count,
  state: oneOf(['running', 'quarantined']),
  attached: bool,
  quarantinedAt: opt(str(64)),
  quarantineReason: opt(str(4096)),
  unsafeNoSandbox: opt(bool),
});

export const sessionAnswer = answer<{ ok: true; session: SessionInfo }>(
  obj({ ok: literal(true), session: SessionInfoCheck }),
);

export const reloadAnswer = answer<{ ok: true; inForce: boolean; message: string }>(
  obj({ ok: literal(true), inForce: bool, message: str(8192) }),
);

export const watchMessage = answer<WatchMessage>(
  union(
    obj({ type: literal('attached'), session: id }),
    obj({ type: literal('quarantine'), code: str(64), reason: str(4096) }),
    obj({ type: literal('ping') }),
    obj({ type: literal('notice'), text: str(8192) }),
  ),
);

/** A decision as the service answers it (DecisionSchema's fields). */
export interface AnsweredDecision {
  readonly effect: 'allow' | 'deny' | 'ask';
  readonly reason: string;
  readonly rule: string;
  readonly code: string;
  readonly overrides?: readonly string[];
}

export const decideAnswer = answer<{ ok: true; decisions: AnsweredDecision[] }>(
  obj({
    ok: literal(true),
    decisions: arr(
      obj({
        effect: oneOf(['allow', 'deny', 'ask']),
        reason: str(8192),
        rule: str(1024),
        code: str(64),
        overrides: opt(arr(str(1024))),
      }),
    ),
  }),
);
