import { join } from 'node:path';
import { z } from 'zod';
import { CordonError } from '../../errors.js';
import { parseStrictJson } from '../../manifest/json.js';
import { readFileCapped, readFileIfExists, writeFileAtomic } from '../../store/files.js';
import type { AuditConfig, SinkConfig } from '../config.js';
import { parseRecordLine, readAfter, type ReadPosition } from '../reader.js';
import type { AuditRecord } from '../record.js';
import type { AuditPaths } from '../store.js';
import { hecBody, otlpBody, syslogFrames } from './formats.js';
import { post, sendTls } from './transport.js';

/**
 * Delivery of the chained log to SIEM sinks. Each sink reads the log itself through a persisted
 * cursor (no second copy of the data), sends batches, and moves its cursor only after the
 * receiver accepted a batch: at-least-once, with `seq` in every record for de-duplication.
 * Failures are retried with exponential backoff and jitter and reported, never dropped.
 */
const CursorSchema = z.strictObject({
  version: z.literal(1),
  seq: z.number().int().min(0),
  segment: z.string(),
  offset: z.number().int().min(0),
  delivered: z.number().int().min(0),
  batches: z.number().int().min(0),
  failures: z.number().int().min(0),
  consecutiveFailures: z.number().int().min(0),
  lastError: z.string().optional(),
  lastErrorAt: z.string().optional(),
  lastDeliveredAt: z.string().optional(),
  /**
   * Unacknowledged transports (syslog): where recent batches started and when they went out, so
   * that after a connection failure the last `resendWindowSeconds` are sent again.
   */
  recent: z
    .array(
      z.strictObject({
        seq: z.number().int().min(0),
        segment: z.string(),
        offset: z.number().int().min(0),
        at: z.number().int().min(0),
      }),
    )
    .optional(),
});
export type SinkCursor = z.infer<typeof CursorSchema>;

const EMPTY: SinkCursor = {
  version: 1,
  seq: 0,
  segment: '',
  offset: 0,
  delivered: 0,
  batches: 0,
  failures: 0,
  consecutiveFailures: 0,
};

export function cursorFile(p: AuditPaths, sink: string): string {
  return join(p.sinks, `${sink}.json`);
}

export function readCursor(p: AuditPaths, sink: string): SinkCursor {
  const file = cursorFile(p, sink);
  const raw = readFileIfExists(file, 64 * 1024);
  if (raw === undefined) return EMPTY;
  const r = CursorSchema.safeParse(
    (() => {
      try {
        return parseStrictJson(raw);
      } catch {
        return undefined;
      }
    })(),
  );
  if (!r.success) {
    throw new CordonError('AUDIT_STATE_CORRUPT', `${file}: not a sink cursor`, {
      file,
      hint: 'delete this file to resend the whole log to this sink (duplicates are marked by seq)',
    });
  }
  return r.data;
}

function writeCursor(p: AuditPaths, sink: string, c: SinkCursor): void {
  writeFileAtomic(cursorFile(p, sink), JSON.stringify(c) + '\n', 0o600);
}

/** Send one batch; throws when the receiver did not accept all of it. */
export type SendBatch = (records: readonly AuditRecord[]) => Promise<void>;

export function senderFor(sink: SinkConfig): SendBatch {
  switch (sink.type) {
    case 'splunk-hec': {
      const token =
        sink.token ??
        readFileCapped(sink.tokenFile ?? '', 64 * 1024)
          .toString('utf8')
          .trim();
      const url = new URL('/services/collector/event', sink.url).href;
      return async (records) => {
        const res = await post(
          url,
          hecBody(records, { sourcetype: sink.sourcetype, index: sink.index }),
          { authorization: `Splunk ${token}`, 'content-type': 'application/json' },
          sink,
          sink.timeoutMs,
        );
        if (res.status !== 200)
          throw new Error(`HEC answered ${res.status}: ${res.body.slice(0, 200)}`);
      };
    }
    case 'otlp-http':
      return async (records) => {
        const res = await post(
          sink.url,
          otlpBody(records),
          { ...sink.headers, 'content-type': 'application/json' },
          sink,
          sink.timeoutMs,
        );
        if (res.status < 200 || res.status > 299) {
          throw new Error(`OTLP receiver answered ${res.status}: ${res.body.slice(0, 200)}`);
        }
        // A partial success means some records were refused: send the batch again.
        if (/"rejectedLogRecords"\s*:\s*"?[1-9]/.test(res.body)) {
          throw new Error(`OTLP receiver rejected part of the batch: ${res.body.slice(0, 200)}`);
        }
      };
    case 'syslog-tls':
      return (records) =>
        sendTls(
          sink.host,
          sink.port,
          sink.serverName,
          sink,
          syslogFrames(records, sink.appName),
          sink.timeoutMs,
        );
  }
}

export interface SinkStatus {
  readonly name: string;
  readonly type: string;
  readonly delivered: number;
  readonly pending: number;
  readonly failures: number;
  readonly consecutiveFailures: number;
  readonly lastError?: string;
  readonly lastDeliveredAt?: string;
  /** Lag: how long ago the oldest record not yet delivered was written (seconds). */
  readonly oldestPendingSeconds?: number;
}

export function sinkStatus(
  p: AuditPaths,
  sink: SinkConfig,
  headSeq: number,
  now: number = Date.now(),
): SinkStatus {
  const c = readCursor(p, sink.name);
  let oldest: string | undefined;
  if (headSeq > c.seq) {
    readAfter(
      p,
      c.segment === '' ? c.seq : { seq: c.seq, segment: c.segment, offset: c.offset },
      (line) => {
        // The first record after the cursor: note its time, read no further.
        oldest = parseRecordLine(line).time;
        return false;
      },
    );
  }
  return {
    ...(oldest === undefined
      ? {}
      : { oldestPendingSeconds: Math.max(0, Math.round((now - Date.parse(oldest)) / 1000)) }),
    name: sink.name,
    type: sink.type,
    delivered: c.seq,
    pending: Math.max(0, headSeq - c.seq),
    failures: c.failures,
    consecutiveFailures: c.consecutiveFailures,
    ...(c.lastError === undefined ? {} : { lastError: c.lastError }),
    ...(c.lastDeliveredAt === undefined ? {} : { lastDeliveredAt: c.lastDeliveredAt }),
  };
}

export interface ShipperOptions {
  readonly paths: AuditPaths;
  readonly config: AuditConfig;
  /** Only records up to this seq are shipped (the writer's durable head, when in-process). */
  readonly durableSeq?: () => number;
  /** How often to look for new records when caught up. */
  readonly pollMs?: number;
  readonly onEvent?: (sink: string, what: 'delivered' | 'failed', detail: string) => void;
  /** Told the cursor of a sink when it is loaded and after every change is on disk. */
  readonly onCursor?: (sink: string, cursor: SinkCursor) => void;
}

/**
 * Wait `ms`, or less if `signal` aborts (or, with `wakers`, someone calls the waker it adds
 * there). The abort listener is removed when the timer fires: the shipper sleeps twice a second
 * for as long as it runs, on one signal.
 */
const sleep = (ms: number, signal: AbortSignal, wakers?: Set<() => void>) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      wakers?.delete(done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    wakers?.add(done);
  });

/**
 * Ship every configured sink until `stop()` (or, with `untilCaughtUp`, until each sink has
 * delivered everything or failed `maxAttempts` times in a row).
 */
export class Shipper {
  readonly #o: ShipperOptions;
  readonly #abort = new AbortController();
  readonly #loops: Promise<void>[] = [];
  /** Loops waiting for new records (never ones backing off after a failure). */
  readonly #idle = new Set<() => void>();

  constructor(o: ShipperOptions) {
    this.#o = o;
  }

  /** New records were appended: loops that are caught up look now instead of at their next poll. */
  kick(): void {
    for (const wake of [...this.#idle]) wake();
  }

  start(opts: { untilCaughtUp?: boolean; maxAttempts?: number } = {}): Promise<void> {
    for (const sink of this.#o.config.sinks) this.#loops.push(this.#run(sink, opts));
    return Promise.all(this.#loops).then(() => undefined);
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await Promise.all(this.#loops);
  }

  async #run(
    sink: SinkConfig,
    opts: { untilCaughtUp?: boolean; maxAttempts?: number },
  ): Promise<void> {
    const p = this.#o.paths;
    const send = senderFor(sink);
    const signal = this.#abort.signal;
    const { initialMs, maxMs } = this.#o.config.retry;
    const save = (c: SinkCursor): void => {
      writeCursor(p, sink.name, c);
      this.#o.onCursor?.(sink.name, c);
    };
    let cursor = readCursor(p, sink.name);
    this.#o.onCursor?.(sink.name, cursor);
    while (!signal.aborted) {
      const limit = this.#o.durableSeq?.() ?? Number.MAX_SAFE_INTEGER;
      const batch: AuditRecord[] = [];
      const start: ReadPosition | number =
        cursor.segment === ''
          ? cursor.seq
          : { seq: cursor.seq, segment: cursor.segment, offset: cursor.offset };
      const end = readAfter(p, start, (line, seq) => {
        if (seq > limit || batch.length >= sink.batchSize) return false;
        batch.push(parseRecordLine(line));
        return true;
      });
      if (batch.length === 0 || end === undefined) {
        if (opts.untilCaughtUp === true) return;
        await sleep(this.#o.pollMs ?? 500, signal, this.#idle);
        continue;
      }
      try {
        await send(batch);
      } catch (e) {
        const message = (e as Error).message;
        // syslog has no acknowledgement: a receiver that died may have read, but not kept, what
        // was sent just before. Rewind to the oldest batch sent within the resend window.
        const rewindTo =
          sink.type === 'syslog-tls'
            ? cursor.recent?.find((r) => Date.now() - r.at <= sink.resendWindowSeconds * 1000)
            : undefined;
        cursor = {
          ...cursor,
          ...(rewindTo === undefined
            ? {}
            : {
                seq: rewindTo.seq,
                segment: rewindTo.segment,
                offset: rewindTo.offset,
                recent: [],
              }),
          failures: cursor.failures + 1,
          consecutiveFailures: cursor.consecutiveFailures + 1,
          lastError: message.slice(0, 500),
          lastErrorAt: new Date().toISOString(),
        };
        save(cursor);
        this.#o.onEvent?.(sink.name, 'failed', message);
        if (opts.maxAttempts !== undefined && cursor.consecutiveFailures >= opts.maxAttempts)
          return;
        // Exponential backoff with full jitter between half and all of the step.
        const step = Math.min(maxMs, initialMs * 2 ** Math.min(cursor.consecutiveFailures - 1, 30));
        await sleep(step / 2 + Math.random() * (step / 2), signal);
        continue;
      }
      const now = Date.now();
      const recent =
        sink.type === 'syslog-tls'
          ? [
              ...(cursor.recent ?? []).filter((r) => now - r.at <= sink.resendWindowSeconds * 1000),
              { seq: cursor.seq, segment: cursor.segment, offset: cursor.offset, at: now },
            ]
          : undefined;
      cursor = {
        ...cursor,
        seq: end.seq,
        segment: end.segment,
        offset: end.offset,
        ...(recent === undefined ? {} : { recent }),
        delivered: cursor.delivered + batch.length,
        batches: cursor.batches + 1,
        consecutiveFailures: 0,
        lastDeliveredAt: new Date().toISOString(),
      };
      save(cursor);
      this.#o.onEvent?.(sink.name, 'delivered', `${batch.length} records up to ${end.seq}`);
    }
  }
}
