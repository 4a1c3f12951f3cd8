import { readdirSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, join } from 'node:path';
import { CordonError } from '../errors.js';
import { policyPaths } from '../store/policy-dir.js';

/**
 * The policy watcher of the endpoint service: when the revocation list, the trust store, the
 * enforcement settings or the guardrails change, or a manifest in force reaches its notAfter,
 * every session whose manifest no longer verifies is reported once, so the daemon can cut its
 * egress and quarantine it.
 *
 * Changes are seen two ways, because either alone misses some: `fs.watch` on the policy
 * directory (immediate, but it loses events under load, on some filesystems and across a
 * directory replaced by rename) and a stat poll of every watched file (device, inode, size,
 * mtime and ctime in nanoseconds) every `pollMs`. Bursts are coalesced into one re-check.
 */

/** Codes this module produces itself (others come from `reverify`). */
export type WatchErrorCode = 'POLICY_RECHECK_FAILED' | 'MANIFEST_EXPIRED';

export interface WatchedSession {
  readonly id: string;
  /** The in-force manifest envelope, exactly the bytes that were verified at open. */
  readonly bytes: Uint8Array;
  /** The manifest's notAfter: the session is reported when it passes. */
  readonly notAfter?: Date;
}

export type Reverification = { ok: true } | { ok: false; code: string; reason: string };

export interface PolicyWatcherOptions {
  readonly policyDir: string;
  /** The sessions in force now (called on every check and poll). */
  readonly sessions: () => readonly WatchedSession[];
  /** Re-verify in-force bytes against the policy dir as it is now; ok or the reason + code. */
  readonly reverify: (s: WatchedSession) => Reverification;
  /**
   * Called once per session that no longer holds; the daemon denies its egress and quarantines
   * it. `trigger` says what made the watcher look (e.g. `policy-change: revocations.json`).
   */
  readonly onInvalid: (s: WatchedSession, code: string, reason: string, trigger: string) => void;
  readonly now?: () => Date;
  /** Stat poll interval (default 250 ms). */
  readonly pollMs?: number;
  /** Every session is re-verified this often even without a visible change (default 60 s): a trust-store key's own notAfter passes without any file changing. */
  readonly recheckMs?: number;
  /** How long a burst of changes is gathered into one re-check (default 15 ms). */
  readonly coalesceMs?: number;
  /**
   * A failure that may come from a file caught half-written (unreadable, unparsable, a thrown
   * error) is confirmed by a second re-check this much later before it is reported (default
   * 150 ms; 0 reports at once). A verdict reached on complete, signed files (revoked manifest or
   * key, untrusted signer, expiry) is reported at once.
   */
  readonly confirmMs?: number;
  /** Use fs.watch as well as the poll (default true; tests turn it off to show the poll alone). */
  readonly fsWatch?: boolean;
  readonly onDiagnostic?: (m: string) => void;
}

/**
 * Verdicts that can only come from complete files whose signatures verified: a torn write cannot
 * produce them, so they are acted on without a confirming second look.
 */
const DEFINITIVE = new Set([
  'MANIFEST_REVOKED',
  'KEY_REVOKED',
  'KEY_EXPIRED',
  'KEY_NOT_YET_VALID',
  'KEY_PURPOSE',
  'SIGNATURE_UNTRUSTED',
  'SIGNATURE_INVALID',
  'THRESHOLD_NOT_MET',
  'MANIFEST_EXPIRED',
  'MANIFEST_NOT_YET_VALID',
  'REVOCATION_LIST_UNTRUSTED',
  'REVOCATION_LIST_ROLLBACK',
]);

/** setTimeout's longest delay (2^31 - 1 ms, about 24.8 days); longer ones fire at once. */
const MAX_TIMER_MS = 2_147_483_647;

/** Files in the policy directory whose change can turn a verified manifest invalid. */
const TOP_FILES = ['trust.json', 'revocations.json', 'enforcement.json'] as const;

function isGuardrailFile(name: string): boolean {
  return name.endsWith('.cedar') || name === 'admission.json';
}

/** A file's identity and version as far as stat can tell; equal strings mean "unchanged". */
function signature(file: string): string {
  try {
    const s = statSync(file, { bigint: true, throwIfNoEntry: false });
    if (s === undefined) return 'absent';
    return `${s.dev}:${s.ino}:${s.mode}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (e) {
    return `error:${(e as NodeJS.ErrnoException).code ?? 'unknown'}`;
  }
}

/**
 * Watches a policy directory and the expiry of each session's manifest, and reports every
 * session that no longer verifies, once.
 *
 * @example
 * const w = new PolicyWatcher({
 *   policyDir,
 *   sessions: () => registry.inForce(),
 *   reverify: (s) => endpoint.reverify(s.bytes),
 *   onInvalid: (s, code, reason, trigger) => registry.cutOff(s.id, code, reason, trigger),
 * });
 * w.start();
 */
export class PolicyWatcher {
  readonly #o: PolicyWatcherOptions;
  readonly #now: () => Date;
  readonly #pollMs: number;
  readonly #recheckMs: number;
  readonly #coalesceMs: number;
  readonly #confirmMs: number;
  readonly #paths: ReturnType<typeof policyPaths>;
  /** Sessions already reported: never reported twice. */
  readonly #reported = new Set<string>();
  readonly #expiry = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  readonly #confirming = new Map<string, NodeJS.Timeout>();
  readonly #watchers = new Map<string, { w: FSWatcher; identity: string }>();
  #snapshot = new Map<string, string>();
  #poll: NodeJS.Timeout | undefined;
  #recheck: NodeJS.Timeout | undefined;
  #coalesce: NodeJS.Timeout | undefined;
  readonly #pending = new Set<string>();
  #checking = false;
  #again: string | undefined;
  #started = false;
  #closed = false;

  constructor(o: PolicyWatcherOptions) {
    this.#o = o;
    this.#now = o.now ?? (() => new Date());
    this.#pollMs = Math.max(10, o.pollMs ?? 250);
    this.#recheckMs = Math.max(1000, o.recheckMs ?? 60_000);
    this.#coalesceMs = Math.max(0, o.coalesceMs ?? 15);
    this.#confirmMs = Math.max(0, o.confirmMs ?? 150);
    this.#paths = policyPaths(o.policyDir);
  }

  /**
   * Start watching, and re-verify every session once against the policy as it is now (so
   * `onInvalid` may be called before this returns).
   */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#ensureWatchers();
    this.#poll = setInterval(() => this.#tick(), this.#pollMs);
    this.#poll.unref();
    this.#recheck = setInterval(() => this.check('periodic'), this.#recheckMs);
    this.#recheck.unref();
    // Whatever changed between the sessions' verification and now is caught here.
    this.check('start');
  }

  /**
   * Re-verify every session now (synchronously). `trigger` is passed to `onInvalid`. Calls
   * made from inside `onInvalid` run once the current check is over.
   */
  check(trigger: string): void {
    if (this.#closed) return;
    if (this.#checking) {
      this.#again = trigger;
      return;
    }
    this.#checking = true;
    try {
      // The baseline for the poll is taken before the files are read, so a change racing
      // with this check shows up as a difference at the next tick, never as nothing.
      this.#snapshot = this.#takeSnapshot();
      const list = this.#sessions();
      this.#syncExpiry(list);
      for (const s of list) {
        if (this.#closed) return;
        if (this.#reported.has(s.id)) continue;
        const v = this.#reverify(s);
        if (v.ok) {
          const t = this.#confirming.get(s.id);
          if (t !== undefined) {
            clearTimeout(t);
            this.#confirming.delete(s.id);
          }
          continue;
        }
        if (DEFINITIVE.has(v.code) || this.#confirmMs === 0) this.#report(s, v, trigger);
        else this.#confirmLater(s.id, v, trigger);
      }
    } finally {
      this.#checking = false;
      const again = this.#again;
      this.#again = undefined;
      if (again !== undefined) this.check(again);
    }
  }

  /** Stop every watcher and timer; nothing is reported afterwards. */
  close(): void {
    this.#closed = true;
    for (const { w } of this.#watchers.values()) w.close();
    this.#watchers.clear();
    for (const t of [this.#poll, this.#recheck, this.#coalesce]) clearTimeout(t);
    for (const e of this.#expiry.values()) clearTimeout(e.timer);
    this.#expiry.clear();
    for (const t of this.#confirming.values()) clearTimeout(t);
    this.#confirming.clear();
  }

  #diag(m: string): void {
    try {
      this.#o.onDiagnostic?.(m);
    } catch {
      // A broken diagnostic sink must not stop the watcher.
    }
  }

  #sessions(): readonly WatchedSession[] {
    try {
      return this.#o.sessions();
    } catch (e) {
      this.#diag(`policy watcher: listing the sessions failed: ${(e as Error).message}`);
      return [];
    }
  }

  /** Fail closed: a re-check that throws is a failed verification. */
  #reverify(s: WatchedSession): Reverification {
    try {
      return this.#o.reverify(s);
    } catch (e) {
      // Name the file and the underlying code, so the event says what to repair.
      const where = e instanceof CordonError && e.file !== undefined ? `${e.file}: ` : '';
      const what = e instanceof CordonError ? ` (${e.code})` : '';
      return {
        ok: false,
        code: 'POLICY_RECHECK_FAILED',
        reason: `the policy could not be checked again: ${where}${(e as Error).message}${what}`,
      };
    }
  }

  #report(s: WatchedSession, v: { code: string; reason: string }, trigger: string): void {
    if (this.#reported.has(s.id) || this.#closed) return;
    this.#reported.add(s.id);
    const e = this.#expiry.get(s.id);
    if (e !== undefined) {
      clearTimeout(e.timer);
      this.#expiry.delete(s.id);
    }
    const c = this.#confirming.get(s.id);
    if (c !== undefined) {
      clearTimeout(c);
      this.#confirming.delete(s.id);
    }
    try {
      this.#o.onInvalid(s, v.code, v.reason, trigger);
    } catch (err) {
      this.#diag(
        `policy watcher: cutting off session ${s.id} (${v.code}) failed: ${(err as Error).message}`,
      );
    }
  }

  /** A failure that may be a half-written file: look again shortly, report if it holds. */
  #confirmLater(id: string, first: { code: string; reason: string }, trigger: string): void {
    if (this.#confirming.has(id)) return;
    const t = setTimeout(() => {
      this.#confirming.delete(id);
      if (this.#closed || this.#reported.has(id)) return;
      const s = this.#sessions().find((x) => x.id === id);
      if (s === undefined) return;
      const v = this.#reverify(s);
      if (v.ok) {
        this.#diag(
          `policy watcher: session ${id} failed re-verification once (${first.code}: ${first.reason}) and passed a moment later; a policy file was probably being written in place`,
        );
        return;
      }
      this.#report(s, v, trigger);
    }, this.#confirmMs);
    t.unref();
    this.#confirming.set(id, t);
  }

  /** Arm an expiry timer for each new session; drop the timers of sessions gone. */
  #syncExpiry(list: readonly WatchedSession[]): void {
    const live = new Set<string>();
    for (const s of list) {
      live.add(s.id);
      if (this.#reported.has(s.id) || s.notAfter === undefined) continue;
      const at = s.notAfter.getTime();
      if (Number.isNaN(at)) {
        this.#report(
          s,
          { code: 'MANIFEST_EXPIRED', reason: 'the manifest in force has no valid notAfter' },
          'expiry',
        );
        continue;
      }
      // Also catches a wall clock that jumped past notAfter (suspend, clock set) while the
      // monotonic timer still waits.
      if (at <= this.#now().getTime()) {
        this.#expire(s.id, at);
        continue;
      }
      const armed = this.#expiry.get(s.id);
      if (armed !== undefined && armed.at === at) continue;
      if (armed !== undefined) clearTimeout(armed.timer);
      this.#arm(s.id, at);
    }
    for (const [id, e] of this.#expiry) {
      if (!live.has(id)) {
        clearTimeout(e.timer);
        this.#expiry.delete(id);
      }
    }
  }

  #arm(id: string, at: number): void {
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - this.#now().getTime()));
    const timer = setTimeout(() => {
      if (this.#closed) return;
      // A far notAfter is reached in steps of at most MAX_TIMER_MS; a timer that fired before
      // the wall clock got there is armed again for the rest.
      if (this.#now().getTime() < at) this.#arm(id, at);
      else this.#expire(id, at);
    }, delay);
    timer.unref();
    this.#expiry.set(id, { at, timer });
  }

  #expire(id: string, at: number): void {
    this.#expiry.delete(id);
    if (this.#reported.has(id)) return;
    const s = this.#sessions().find((x) => x.id === id);
    if (s === undefined) return;
    this.#report(
      s,
      {
        code: 'MANIFEST_EXPIRED',
        reason: `the manifest in force expired at ${new Date(at).toISOString()}`,
      },
      'expiry',
    );
  }

  /** The stat signature of every watched file, keyed by its path. */
  #takeSnapshot(): Map<string, string> {
    const snap = new Map<string, string>();
    for (const f of TOP_FILES) {
      const file = join(this.#paths.dir, f);
      snap.set(file, signature(file));
    }
    const g = this.#paths.guardrails;
    let names: string[] = [];
    try {
      names = readdirSync(g).filter(isGuardrailFile);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'unknown';
      // A guardrails directory that cannot be listed is a change too (it may hide forbids).
      if (code !== 'ENOENT') snap.set(g, `error:${code}`);
    }
    for (const n of names.sort()) snap.set(join(g, n), signature(join(g, n)));
    return snap;
  }

  #tick(): void {
    if (this.#closed) return;
    this.#ensureWatchers();
    const next = this.#takeSnapshot();
    const changed = new Set<string>();
    for (const [f, sig] of next) if (this.#snapshot.get(f) !== sig) changed.add(f);
    for (const f of this.#snapshot.keys()) if (!next.has(f)) changed.add(f);
    if (changed.size > 0) {
      this.#snapshot = next;
      this.#schedule(
        `policy-change: ${[...changed].map((f) => f.slice(this.#paths.dir.length + 1)).join(', ')}`,
      );
    }
    // New sessions get their expiry timer; a notAfter passed by a clock jump is acted on.
    this.#syncExpiry(this.#sessions());
  }

  /** Gather changes for `coalesceMs`, then re-check once with every reason seen. */
  #schedule(reason: string): void {
    if (this.#closed) return;
    this.#pending.add(reason);
    if (this.#coalesce !== undefined) return;
    this.#coalesce = setTimeout(() => {
      this.#coalesce = undefined;
      // A directory renamed away or replaced is watched afresh before the files are read.
      this.#ensureWatchers();
      const reasons = [...this.#pending];
      this.#pending.clear();
      this.check(reasons.join('; '));
    }, this.#coalesceMs);
    this.#coalesce.unref();
  }

  /**
   * (Re)create the fs.watch handles: on first start, when the guardrails directory appears, when
   * a watcher failed, and when a watched directory was replaced (its inode changed: the old
   * handle would watch a directory nobody reads any more).
   */
  #ensureWatchers(): void {
    if (this.#o.fsWatch === false || this.#closed) return;
    // A watched directory's own name is an event about the directory itself (renamed away,
    // typically to be replaced by a new copy).
    const relevantTop = new Set<string>([
      ...TOP_FILES,
      basename(this.#paths.guardrails),
      basename(this.#paths.dir),
    ]);
    this.#watch(this.#paths.dir, (name) => name === null || relevantTop.has(name));
    this.#watch(
      this.#paths.guardrails,
      (name) => name === null || isGuardrailFile(name) || name === basename(this.#paths.guardrails),
    );
  }

  #watch(dir: string, relevant: (name: string | null) => boolean): void {
    const identity = signature(dir).split(':').slice(0, 2).join(':');
    const current = this.#watchers.get(dir);
    if (current !== undefined) {
      if (current.identity === identity) return;
      current.w.close();
      this.#watchers.delete(dir);
      // Whatever happened while the old handle watched the wrong directory is looked at now.
      this.#schedule(`policy-change: ${basename(dir)} replaced`);
    }
    let w: FSWatcher;
    try {
      w = watch(dir, { persistent: false }, (_event, name) => {
        if (relevant(name)) this.#schedule(`policy-change: ${name ?? basename(dir)}`);
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // A missing directory is normal (no guardrails yet); the poll sees it appear.
      if (code !== 'ENOENT')
        this.#diag(
          `policy watcher: cannot watch ${dir} (${(e as Error).message}); relying on the ${this.#pollMs} ms poll`,
        );
      return;
    }
    w.on('error', (e: Error) => {
      this.#diag(`policy watcher: watching ${dir} failed (${e.message}); will retry`);
      w.close();
      if (this.#watchers.get(dir)?.w === w) this.#watchers.delete(dir);
    });
    this.#watchers.set(dir, { w, identity });
  }
}
