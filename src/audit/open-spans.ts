import { join } from 'node:path';
import { z } from 'zod';
import { parseStrictJson } from '../manifest/json.js';
import { readFileIfExists, writeFileAtomic } from '../store/files.js';
import {
  httpActivityEvent,
  networkActivityEvent,
  type AgentActor,
  type ControlOutcome,
  type Destination,
  type EventContext,
  type OcsfEvent,
  type TlsInfo,
} from './events.js';
import type { AuditLog } from './log.js';
import { parseRecordLine, readAfter } from './reader.js';
import type { AuditPaths } from './store.js';

/**
 * Exchanges and tunnels that were open when their writer died. The egress proxy records a
 * plain-HTTP exchange's decision and a tunnel's Open durably before forwarding a byte, reports
 * their traffic at an interval, and records their end; a writer killed in between (SIGKILL, power
 * loss) leaves spans without an end. The next writer to open the log finds them and records, for
 * each, an end with code ENDED_BY_CRASH and the bytes last reported.
 *
 * Only records from a hint onwards are scanned: `<audit>/open-from.json` holds a sequence number
 * before which nothing is open. The proxy moves it forward at each report interval; a stale
 * value only means a longer scan.
 */
export const ENDED_BY_CRASH = 'ENDED_BY_CRASH';

const HintSchema = z.strictObject({ version: z.literal(1), seq: z.number().int().min(1) });

/** A span still open in the log: its opening record and the traffic last reported for it. */
export interface OpenSpan {
  readonly kind: 'tunnel' | 'exchange';
  readonly seq: number;
  readonly event: Record<string, unknown>;
  bytesOut: number;
  bytesIn: number;
}

function hintFile(p: AuditPaths): string {
  return join(p.dir, 'open-from.json');
}

function readHint(p: AuditPaths): number {
  try {
    const raw = readFileIfExists(hintFile(p), 4096);
    if (raw === undefined) return 1;
    return HintSchema.parse(parseStrictJson(raw)).seq;
  } catch {
    // Unreadable: scan everything (slower, never wrong).
    return 1;
  }
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

const NET = Buffer.from('"class_uid":4001');
const HTTP = Buffer.from('"class_uid":4002');

/** Spans opened at or after `fromSeq` with no end record, oldest first. */
export function findOpenSpans(p: AuditPaths, fromSeq: number): OpenSpan[] {
  const open = new Map<string, OpenSpan>();
  readAfter(p, fromSeq - 1, (line) => {
    const isNet = line.includes(NET);
    if (!isNet && !line.includes(HTTP)) return true;
    const rec = parseRecordLine(line);
    const ev = rec.event;
    const activity = num(ev['activity_id']);
    if (isNet) {
      const conn = str(obj(ev['connection_info'])?.['uid']);
      const req = str(obj(ev['unmapped'])?.['http_request_uid']);
      if (activity === 1 && conn !== undefined)
        open.set(`t:${conn}`, { kind: 'tunnel', seq: rec.seq, event: ev, bytesOut: 0, bytesIn: 0 });
      else if (activity === 6) {
        const span = open.get(req !== undefined ? `x:${req}` : `t:${conn ?? ''}`);
        const total = obj(ev['cumulative_traffic']) ?? obj(ev['traffic']);
        if (span !== undefined && total !== undefined) {
          span.bytesOut = num(total['bytes_out']) ?? span.bytesOut;
          span.bytesIn = num(total['bytes_in']) ?? span.bytesIn;
        }
      } else if ((activity === 2 || activity === 4) && conn !== undefined) open.delete(`t:${conn}`);
      return true;
    }
    const uid = str(obj(ev['http_request'])?.['uid']);
    if (uid === undefined) return true;
    // The decision carries no traffic; every end (completed, refused late, crash) does.
    if (ev['traffic'] === undefined)
      open.set(`x:${uid}`, { kind: 'exchange', seq: rec.seq, event: ev, bytesOut: 0, bytesIn: 0 });
    else open.delete(`x:${uid}`);
    return true;
  });
  return [...open.values()].sort((a, b) => a.seq - b.seq);
}

/** The actor of the crashed writer's record, so the end belongs to the same session. */
function actorOf(ev: Obj): AgentActor {
  const a = obj(ev['actor']) ?? {};
  const proc = obj(a['process']);
  const user = obj(a['user']);
  const session = str(obj(a['session'])?.['uid']);
  const pid = num(proc?.['pid']);
  const processName = str(proc?.['name']);
  const userName = str(user?.['name']);
  const userUid = str(user?.['uid']);
  return {
    name: str(a['app_name']) ?? 'cordon',
    ...(session === undefined ? {} : { session }),
    ...(pid === undefined ? {} : { pid }),
    ...(processName === undefined ? {} : { processName }),
    ...(userName === undefined
      ? {}
      : { user: { name: userName, ...(userUid === undefined ? {} : { uid: userUid }) } }),
  };
}

function destinationOf(ev: Obj): Destination {
  const d = obj(ev['dst_endpoint']) ?? {};
  const hostname = str(d['hostname']);
  const ip = str(d['ip']);
  return {
    ...(hostname === undefined ? {} : { hostname }),
    ...(ip === undefined ? {} : { ip }),
    port: num(d['port']) ?? 0,
  };
}

/** The end record of a span left open by a crash. */
export function crashEndEvent(span: OpenSpan, ctx: EventContext): OcsfEvent {
  const ev = span.event;
  const actor = actorOf(ev);
  const c: EventContext = { ...ctx, actor };
  const policy = obj(ev['policy']);
  const agent = str(obj(policy?.['group'])?.['name']);
  const digest = str(policy?.['uid']);
  const version = str(policy?.['version']);
  const what = span.kind === 'tunnel' ? 'tunnel' : 'exchange';
  const outcome: ControlOutcome = {
    decision: {
      effect: 'allow',
      rule: str(policy?.['name']) ?? 'egress',
      code: ENDED_BY_CRASH,
      reason:
        `The ${what} opened in record ${span.seq} was still open when its writer` +
        `${actor.pid === undefined ? '' : ` (pid ${actor.pid})`} stopped without recording its end ` +
        `(a crash, or a write that failed). Last reported: ${span.bytesOut} bytes out, ` +
        `${span.bytesIn} bytes in; what moved after that report is unknown.`,
    },
    ...(agent !== undefined && digest !== undefined && version !== undefined
      ? { manifest: { agent, digest, version } }
      : {}),
  };
  const traffic = {
    bytesOut: 0,
    bytesIn: 0,
    cumulative: { bytesOut: span.bytesOut, bytesIn: span.bytesIn },
  };
  const conn = str(obj(ev['connection_info'])?.['uid']);
  if (span.kind === 'tunnel') {
    const t = obj(ev['tls']);
    const tls: TlsInfo | undefined =
      t === undefined
        ? undefined
        : {
            version: str(t['version']) ?? '',
            ...(str(t['sni']) === undefined ? {} : { sni: str(t['sni']) ?? '' }),
          };
    return networkActivityEvent(c, {
      activity: 'close',
      dst: destinationOf(ev),
      traffic,
      control: outcome,
      ...(conn === undefined ? {} : { connectionUid: conn }),
      ...(tls === undefined ? {} : { tls }),
    });
  }
  const req = obj(ev['http_request']) ?? {};
  const method = str(req['http_method']) ?? str(obj(ev['unmapped'])?.['http_method']) ?? 'OTHER';
  return httpActivityEvent(c, {
    method,
    url: str(obj(req['url'])?.['url_string']) ?? '',
    dst: destinationOf(ev),
    traffic,
    control: outcome,
    ...(conn === undefined ? {} : { connectionUid: conn }),
    ...(str(req['uid']) === undefined ? {} : { requestUid: str(req['uid']) ?? '' }),
  });
}

/**
 * Keeps `<audit>/open-from.json`: the writer tells it where the oldest open span starts; it
 * never moves past spans whose crash ends are not yet durable. A failed write (full disk) is
 * ignored: the old value is only older, never wrong.
 */
export class OpenFromHint {
  readonly #file: string;
  #floor = Infinity;
  #written: number;

  constructor(p: AuditPaths, current: number) {
    this.#file = hintFile(p);
    this.#written = current;
  }

  /** Hold the hint at or below `seq` until `release`. */
  hold(seq: number): void {
    this.#floor = Math.min(this.#floor, seq);
  }

  release(): void {
    this.#floor = Infinity;
  }

  /** Nothing before `seq` is open (as far as this writer knows). */
  update(seq: number): void {
    const v = Math.min(seq, this.#floor);
    if (v === this.#written) return;
    try {
      writeFileAtomic(this.#file, JSON.stringify({ version: 1, seq: v }) + '\n', 0o600);
      this.#written = v;
    } catch {
      // Kept at its older value: a longer scan after a crash, nothing lost.
    }
  }
}

export interface SpanRecovery {
  /** Spans found open and ended here. */
  readonly ended: number;
  /** Resolves once their end records are durable (or failed: then the next writer retries). */
  readonly done: Promise<void>;
  readonly hint: OpenFromHint;
}

/**
 * Run once by each writer right after it opened the log: end every span a crashed writer left
 * open. Never stops the open: a scan that fails leaves the hint where it was.
 */
export function recoverOpenSpans(log: AuditLog, ctx: EventContext): SpanRecovery {
  const p = log.paths;
  const from = readHint(p);
  const hint = new OpenFromHint(p, from);
  const head = log.head.seq;
  let spans: OpenSpan[];
  try {
    spans = findOpenSpans(p, from);
  } catch {
    return { ended: 0, done: Promise.resolve(), hint };
  }
  const first = spans[0];
  if (first === undefined) {
    // A short scan is cheaper than a durable write at every open (`check --audit`).
    if (head + 1 - from >= 1000) hint.update(head + 1);
    return { ended: 0, done: Promise.resolve(), hint };
  }
  hint.hold(first.seq);
  const now = Date.now();
  const done = Promise.all(
    spans.map((s) => log.append(crashEndEvent(s, { ...ctx, time: now }))),
  ).then(
    () => {
      hint.release();
      hint.update(head + 1);
    },
    () => undefined,
  );
  return { ended: spans.length, done, hint };
}
