import type { AuditConfig, SinkConfig } from '../audit/config.js';
import { readAfter } from '../audit/reader.js';
import { scanRecord } from '../audit/record.js';
import { readCursor, Shipper, type SinkCursor, type SinkStatus } from '../audit/sinks/runner.js';
import type { AuditPaths } from '../audit/store.js';

/**
 * The sink shippers of the endpoint service: one per configured sink, running for as long as the
 * daemon runs. Each reads the log through its own persisted cursor (src/audit/sinks/runner.ts)
 * and moves it only once the receiver acknowledged a batch, so an unreachable sink queues (the
 * log itself is the queue) and reports, and never drops. Shipping happens off the append path:
 * `kick()` only wakes a caught-up shipper, and a sink that is down never slows the writer.
 */

export interface ContinuousShipperOptions {
  readonly paths: AuditPaths;
  readonly config: AuditConfig;
  /** The writer's durable head: only records on disk are shipped. */
  readonly durableSeq: () => number;
  /** Look for new records this often even without a kick (default 1000 ms). */
  readonly pollMs?: number;
  /**
   * After a kick, wait this long for more records before sending, so a steady trickle of
   * appends goes out in batches rather than one request per record (default 100 ms).
   */
  readonly lingerMs?: number;
  readonly now?: () => number;
  /** Deliveries, failures and restarts, for the daemon's log. */
  readonly onEvent?: (
    sink: string,
    what: 'delivered' | 'failed' | 'restarted',
    detail: string,
  ) => void;
}

export interface ContinuousSinkStatus extends SinkStatus {
  /**
   * `idle`: everything durable was delivered; `shipping`: records are waiting or on their way;
   * `retrying`: the last attempt failed and the shipper is backing off; `stopped`.
   */
  readonly state: 'idle' | 'shipping' | 'retrying' | 'stopped';
  /** When the last failure happened. */
  readonly lastErrorAt?: string;
}

interface SinkRun {
  readonly sink: SinkConfig;
  shipper: Shipper | undefined;
  loop: Promise<void> | undefined;
  cursor: SinkCursor | undefined;
  /** A shipper loop that ended with an error (unreadable cursor, log or credentials). */
  crash: { message: string; at: string } | undefined;
  crashes: number;
  restart: NodeJS.Timeout | undefined;
  /** The time of the first record after the cursor, looked up once per cursor position. */
  oldest: { seq: number; time: string | undefined } | undefined;
}

/**
 * Ships the audit log to every configured sink continuously.
 *
 * @example
 * const shipper = new ContinuousShipper({ paths: log.paths, config, durableSeq: () => log.durableHead.seq });
 * shipper.start();
 * await log.append(event);
 * shipper.kick();
 * shipper.status(); // [{ name: 'splunk', pending: 0, state: 'idle', ... }]
 * await shipper.stop();
 */
export class ContinuousShipper {
  readonly #o: ContinuousShipperOptions;
  readonly #runs: SinkRun[];
  readonly #now: () => number;
  #linger: NodeJS.Timeout | undefined;
  #started = false;
  #stopped = false;

  constructor(o: ContinuousShipperOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#runs = o.config.sinks.map((sink) => ({
      sink,
      shipper: undefined,
      loop: undefined,
      cursor: undefined,
      crash: undefined,
      crashes: 0,
      restart: undefined,
      oldest: undefined,
    }));
  }

  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    for (const r of this.#runs) this.#launch(r);
  }

  /** Records were appended: ship them soon (cheap; call it after every durable append). */
  kick(): void {
    if (this.#stopped || this.#linger !== undefined) return;
    this.#linger = setTimeout(() => {
      this.#linger = undefined;
      for (const r of this.#runs) r.shipper?.kick();
    }, this.#o.lingerMs ?? 100);
    this.#linger.unref();
  }

  /** Stop every shipper; resolves once no send is in flight and every cursor is on disk. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#linger);
    this.#linger = undefined;
    for (const r of this.#runs) {
      clearTimeout(r.restart);
      r.restart = undefined;
    }
    await Promise.all(
      this.#runs.map(async (r) => {
        await r.shipper?.stop().catch(() => undefined);
        await r.loop;
      }),
    );
  }

  /** Per sink: delivered, lag in records (`pending`) and seconds, last error and last success. */
  status(): ContinuousSinkStatus[] {
    const head = this.#o.durableSeq();
    const now = this.#now();
    return this.#runs.map((r) => {
      let c = r.cursor;
      let readError: string | undefined;
      if (c === undefined) {
        try {
          c = readCursor(this.#o.paths, r.sink.name);
        } catch (e) {
          readError = (e as Error).message;
        }
      }
      const seq = c?.seq ?? 0;
      const pending = Math.max(0, head - seq);
      const oldest = pending > 0 ? this.#oldestTime(r, c) : undefined;
      const lastError = r.crash?.message ?? readError ?? c?.lastError;
      const lastErrorAt = r.crash?.at ?? c?.lastErrorAt;
      const failing = r.crash !== undefined || readError !== undefined;
      return {
        name: r.sink.name,
        type: r.sink.type,
        delivered: seq,
        pending,
        failures: (c?.failures ?? 0) + r.crashes,
        consecutiveFailures: (c?.consecutiveFailures ?? 0) + (failing ? 1 : 0),
        ...(lastError === undefined ? {} : { lastError }),
        ...(lastErrorAt === undefined ? {} : { lastErrorAt }),
        ...(c?.lastDeliveredAt === undefined ? {} : { lastDeliveredAt: c.lastDeliveredAt }),
        ...(oldest === undefined
          ? {}
          : {
              oldestPendingSeconds: Math.max(0, Math.round((now - Date.parse(oldest)) / 1000)),
            }),
        state: this.#stopped
          ? 'stopped'
          : failing || (c?.consecutiveFailures ?? 0) > 0
            ? 'retrying'
            : pending > 0
              ? 'shipping'
              : 'idle',
      };
    });
  }

  /** The time of the first record after the cursor: read once per position, from its offset. */
  #oldestTime(r: SinkRun, c: SinkCursor | undefined): string | undefined {
    const seq = c?.seq ?? 0;
    if (r.oldest?.seq === seq && r.oldest.time !== undefined) return r.oldest.time;
    let time: string | undefined;
    try {
      readAfter(
        this.#o.paths,
        c === undefined || c.segment === '' ? seq : { seq, segment: c.segment, offset: c.offset },
        (line) => {
          time = scanRecord(line).time;
          return false;
        },
      );
    } catch {
      // Status must answer even when the log cannot be read; the shipper reports why.
      time = undefined;
    }
    r.oldest = { seq, time };
    return time;
  }

  #launch(r: SinkRun): void {
    const shipper = new Shipper({
      paths: this.#o.paths,
      // One Shipper per sink: a sink whose loop fails is restarted alone.
      config: { ...this.#o.config, sinks: [r.sink] },
      durableSeq: this.#o.durableSeq,
      pollMs: this.#o.pollMs ?? 1000,
      onCursor: (_, c) => {
        // The first call means the loop is up (credentials and cursor read): a previous crash
        // is over. The restart backoff keeps growing until a delivery succeeds.
        if (r.cursor === undefined) r.crash = undefined;
        r.cursor = c;
      },
      onEvent: (sink, what, detail) => {
        if (what === 'delivered') {
          r.crash = undefined;
          r.crashes = 0;
        }
        this.#event(sink, what, detail);
      },
    });
    r.shipper = shipper;
    r.loop = shipper.start().then(
      () => {
        // A continuous loop ends only when stopped; anything else is restarted.
        if (!this.#stopped) this.#crashed(r, new Error('the shipper stopped unexpectedly'));
      },
      (e: unknown) => {
        this.#crashed(r, e instanceof Error ? e : new Error(String(e)));
      },
    );
  }

  /** A loop that failed outside a send: report it and start it again with backoff. */
  #crashed(r: SinkRun, e: Error): void {
    r.crashes++;
    r.crash = { message: e.message.slice(0, 500), at: new Date(this.#now()).toISOString() };
    r.shipper = undefined;
    if (this.#stopped) return;
    const { initialMs, maxMs } = this.#o.config.retry;
    const step = Math.min(maxMs, initialMs * 2 ** Math.min(r.crashes - 1, 30));
    this.#event(r.sink.name, 'failed', e.message);
    r.restart = setTimeout(() => {
      r.restart = undefined;
      if (this.#stopped) return;
      // The cursor on disk is where delivery resumes: at least once, never a gap.
      r.cursor = undefined;
      r.oldest = undefined;
      this.#event(r.sink.name, 'restarted', `after ${r.crashes} failure(s)`);
      this.#launch(r);
    }, step);
    r.restart.unref();
  }

  #event(sink: string, what: 'delivered' | 'failed' | 'restarted', detail: string): void {
    try {
      this.#o.onEvent?.(sink, what, detail);
    } catch {
      // A failing listener must not stop delivery.
    }
  }
}
