import type { EventContext, OcsfEvent } from '../audit/events.js';
import { processContext } from '../audit/process-context.js';
import type { Decision, PolicyRequest } from '../policy/types.js';
import {
  closeAnswer,
  decideAnswer,
  eventsAnswer,
  reloadAnswer,
  sessionAnswer,
  watchMessage,
} from '../protocol/answers.js';
import type { CloseResponse, OpenSessionResponse } from '../protocol/daemon.js';
import { MAX_BATCH, MAX_BODY_BYTES } from '../protocol/limits.js';
import { DaemonError, type DaemonClient } from './client.js';

/** The log cannot write now (a full disk, a failing witness): worth sending again. */
const RETRY_CODES = new Set(['AUDIT_WRITE_FAILED', 'AUDIT_LOG_CLOSED']);

/**
 * Events per `events` call (the service's most), and their JSON bytes (well under its body
 * limit): a client with a backlog sends it in few calls, each one group write at the service.
 */
const BATCH = MAX_BATCH;
/**
 * A batch's JSON in UTF-16 code units: at most 3 bytes of UTF-8 each, so a batch stays under half
 * the service's body limit without measuring every event's bytes.
 */
const BATCH_UNITS = MAX_BODY_BYTES / 2 / 3;

interface Pending {
  /** Its JSON, once serialised (measured for the batch, then sent as it is). */
  json: string | undefined;
  readonly seq: number;
  readonly event: OcsfEvent;
  readonly resolve: (v: { seq: number }) => void;
  readonly reject: (e: unknown) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A session as its client (`cordon run`) holds it: events go to the daemon in order, each with
 * the client's sequence number, and are acknowledged only once durable. While the daemon is
 * unreachable (it died; systemd or the next client restarts it) events wait in order and are
 * sent again; the daemon recognises resent ones by their numbers. The watch stream carries the
 * daemon's orders (quarantine) and is re-established after a restart.
 */
export class ClientSession {
  readonly id: string;
  readonly opened: OpenSessionResponse;
  readonly #client: DaemonClient;
  readonly #capability: string;
  #seq = 0;
  #queue: Pending[] = [];
  #flushing = false;
  readonly #idleWaiters: (() => void)[] = [];
  #closed = false;
  #stopWatch: (() => void) | undefined;
  #retry: NodeJS.Timeout | undefined;
  #onQuarantine: ((code: string, reason: string) => void) | undefined;
  #onDiagnostic: (m: string) => void;
  #unreachableSince: number | undefined;

  constructor(
    client: DaemonClient,
    opened: OpenSessionResponse,
    onDiagnostic: (m: string) => void,
  ) {
    this.#client = client;
    this.opened = opened;
    this.id = opened.session;
    this.#capability = opened.capability;
    this.#onDiagnostic = onDiagnostic;
  }

  /** Follow the daemon's orders for this session; reconnects when the daemon restarts. */
  watch(onQuarantine: (code: string, reason: string) => void): void {
    this.#onQuarantine = onQuarantine;
    this.#watch(0);
  }

  #watch(attempt: number): void {
    if (this.#closed) return;
    this.#stopWatch = this.#client.watch(
      this.id,
      this.#capability,
      watchMessage,
      (m) => {
        if (m.type === 'attached') {
          if (attempt > 0) this.#onDiagnostic('the cordon daemon is back: session re-attached');
          attempt = 0;
        } else if (m.type === 'quarantine') this.#onQuarantine?.(m.code, m.reason);
        else if (m.type === 'notice') this.#onDiagnostic(m.text);
      },
      (why) => {
        if (this.#closed) return;
        if (attempt === 0)
          this.#onDiagnostic(
            `lost the cordon daemon (${why}): egress is cut until it is back; events are kept in order`,
          );
        const wait = Math.min(1000, 50 * 2 ** Math.min(attempt, 5));
        // Not unref'd: a client with nothing else to do (`cordon proxy`) waits for the service
        // to come back rather than exiting; close() clears it.
        this.#retry = setTimeout(() => this.#watch(attempt + 1), wait);
      },
    );
  }

  /** Append one event; resolves once the daemon has made it durable. */
  append(event: OcsfEvent): Promise<{ seq: number }> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ seq: ++this.#seq, event, json: undefined, resolve, reject });
      void this.#flush();
    });
  }

  /**
   * The next events to send: at most BATCH of them and BATCH_UNITS of JSON, so that a batch never
   * exceeds the service's body limit (one event alone may be up to its own limit).
   */
  #nextBatch(): { batch: Pending[]; body: string } {
    const batch: Pending[] = [];
    const parts: string[] = [];
    let units = 0;
    for (const p of this.#queue) {
      // Each event's JSON as measured: serialised once, kept for a resend.
      const json = (p.json ??= JSON.stringify(p.event));
      if (batch.length > 0 && (batch.length >= BATCH || units + json.length > BATCH_UNITS)) break;
      batch.push(p);
      parts.push(`{"seq":${p.seq},"event":${json}}`);
      units += json.length;
    }
    return { batch, body: `{"events":[${parts.join(',')}]}` };
  }

  async #flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      let attempt = 0;
      while (this.#queue.length > 0) {
        const { batch, body } = this.#nextBatch();
        try {
          const r = await this.#client.requestJson(
            'POST',
            `/v1/sessions/${this.id}/events`,
            body,
            eventsAnswer,
            { capability: this.#capability },
          );
          if (this.#unreachableSince !== undefined) {
            this.#onDiagnostic(
              `events sent again after ${((Date.now() - this.#unreachableSince) / 1000).toFixed(1)} s without the daemon`,
            );
            this.#unreachableSince = undefined;
          }
          attempt = 0;
          // The queue is in sequence order: what is acknowledged is a prefix of it.
          let n = 0;
          while (n < this.#queue.length && (this.#queue[n]?.seq ?? Infinity) <= r.acked) n++;
          const done = this.#queue.splice(0, n);
          for (const p of done) p.resolve({ seq: r.logSeq });
          if (done.length === 0)
            throw new DaemonError(200, 'DAEMON_PROTOCOL', 'the daemon acknowledged nothing');
        } catch (e) {
          const code = e instanceof DaemonError ? e.code : '';
          // Unreachable, or the log cannot write now (full disk): wait and send again, in order.
          if (code === 'DAEMON_UNREACHABLE' || RETRY_CODES.has(code)) {
            this.#unreachableSince ??= Date.now();
            if (this.#closed && attempt > 50) {
              for (const p of this.#queue.splice(0)) p.reject(e);
              return;
            }
            await sleep(Math.min(1000, 20 * 2 ** Math.min(attempt++, 6)));
            continue;
          }
          // Anything else will not get better by retrying: the events fail (the caller denies).
          for (const p of this.#queue.splice(0, batch.length)) p.reject(e);
        }
      }
    } finally {
      this.#flushing = false;
      if (this.#queue.length === 0) for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  decide(requests: readonly PolicyRequest[]): Promise<Decision[]> {
    return this.#client
      .request('POST', `/v1/sessions/${this.id}/decide`, { requests }, decideAnswer, {
        capability: this.#capability,
      })
      .then((r) => r.decisions as Decision[]);
  }

  async setSandbox(pid: number, start: string | undefined): Promise<void> {
    await this.#client.request(
      'POST',
      `/v1/sessions/${this.id}/state`,
      { sandboxPid: pid, ...(start === undefined ? {} : { sandboxStart: start }) },
      sessionAnswer,
      { capability: this.#capability },
    );
  }

  /** Ask the daemon to quarantine this session (SIGUSR1 on `cordon run`). */
  async quarantine(reason: string): Promise<void> {
    await this.#client.request(
      'POST',
      `/v1/sessions/${this.id}/quarantine`,
      { reason },
      sessionAnswer,
    );
  }

  /** A standalone proxy's manifest, read again (SIGHUP). */
  reload(manifest: Buffer): Promise<{ inForce: boolean; message: string }> {
    return this.#client.request(
      'POST',
      `/v1/sessions/${this.id}/reload`,
      { manifest: manifest.toString('base64') },
      reloadAnswer,
      { capability: this.#capability },
    );
  }

  /**
   * Wait for every event, then close the session at the daemon (retried while it restarts).
   * Resolves with the traffic its proxy carried.
   */
  async close(exitCode?: number): Promise<CloseResponse['destinations']> {
    this.#closed = true;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    // The watch stays until the close is answered: what the service says about the last events
    // (a full disk, the session's reserved space used for them) still reaches the user.
    try {
      return await this.#close(exitCode);
    } finally {
      this.#stopWatch?.();
    }
  }

  async #close(exitCode: number | undefined): Promise<CloseResponse['destinations']> {
    // With events unanswered, the close goes out at once behind them, naming the last: the
    // service closes only once they are durable (one round trip for both). If it is refused
    // (they failed, or were not sent yet), the close waits for them and goes out again.
    let lastSeq = this.#queue.length > 0 || this.#flushing ? this.#seq : undefined;
    for (let attempt = 0; ; attempt++) {
      if (lastSeq === undefined) await this.#idle();
      try {
        const r = await this.#client.request(
          'POST',
          `/v1/sessions/${this.id}/close`,
          {
            ...(exitCode === undefined ? {} : { exitCode }),
            ...(lastSeq === undefined ? {} : { lastSeq }),
          },
          closeAnswer,
          { capability: this.#capability },
        );
        return r.destinations;
      } catch (e) {
        const code = e instanceof DaemonError ? e.code : '';
        if (code === 'EVENTS_PENDING' && lastSeq !== undefined) {
          lastSeq = undefined;
          continue;
        }
        if (code !== 'DAEMON_UNREACHABLE' || attempt >= 50) throw e;
        lastSeq = undefined;
        await sleep(Math.min(1000, 20 * 2 ** Math.min(attempt, 6)));
      }
    }
  }

  /** Resolves once no event is queued or in flight (sent and answered, or failed). */
  #idle(): Promise<void> {
    if (this.#queue.length === 0 && !this.#flushing) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }
}

/**
 * What events a client builds say about where they come from. The service replaces the actor's
 * identity (from the socket's peer credentials), the session and the device with its own.
 */
export function clientContext(): EventContext {
  return processContext(undefined);
}
