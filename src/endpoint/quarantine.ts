import { join } from 'node:path';
import { writeEvidenceBundle, type EvidenceBundle } from '../sandbox/evidence.js';
import { isAlive, processTree, tcpConnections } from '../sandbox/linux/procfs.js';
import type { SessionRecord } from '../sandbox/sessions.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) return false;
    await sleep(1);
  }
  return true;
}

/** A session to quarantine, as the service holds it. */
export interface QuarantineTarget {
  /** What the evidence bundle says about the session. */
  readonly record: SessionRecord;
  /** The manifest's bytes as verified at launch. */
  readonly manifest: Buffer;
  /**
   * Deny all egress at once, mark the session quarantined, record why, and tell its client to end
   * the sandbox; resolves once egress is denied and the record is durable.
   */
  deny(): Promise<void>;
  /** Whether the session's client still holds it open (it closes it once its sandbox is gone). */
  isOpen(): boolean;
}

/** How one session's quarantine went. */
export interface QuarantineOutcome {
  /** No process left in the sandbox. */
  readonly sandboxGone: boolean;
  /** Egress denied and the quarantine recorded. */
  readonly denied: boolean;
  readonly contained: boolean;
  /** From `startedAt` to containment. */
  readonly containmentMs: number;
  readonly processesKilled: number;
  readonly bundle: EvidenceBundle;
}

export interface QuarantineOptions {
  readonly stateDir: string;
  readonly now: () => Date;
  /** `performance.now()` when the quarantine was asked for: containment is timed from it. */
  readonly startedAt: number;
  /** Where the evidence bundle goes; default `<stateDir>/evidence`. */
  readonly outDir?: string;
}

/**
 * Quarantine one session: note what was running and connected, kill the sandbox's whole process
 * tree where this process may, deny its egress and record the quarantine, wait for the sandbox
 * to be gone and the session's last records, and write an evidence bundle.
 */
export async function quarantineSession(
  t: QuarantineTarget,
  o: QuarantineOptions,
): Promise<QuarantineOutcome> {
  const s = t.record;
  // What was running and connected at this moment, before anything is touched.
  const sandbox =
    s.sandboxPid !== undefined && isAlive(s.sandboxPid, s.sandboxStart) ? s.sandboxPid : undefined;
  const processes = sandbox === undefined ? [] : processTree(sandbox);
  const connections = sandbox === undefined ? [] : tcpConnections(sandbox);
  // The sandbox's init is pid 1 of its namespace: killing it kills every process inside. Another
  // user's sandbox (system mode) is killed by its own client, told by `deny`.
  if (sandbox !== undefined) {
    try {
      process.kill(sandbox, 'SIGKILL');
    } catch {
      // already gone, or not ours to signal
    }
  }
  let denied = true;
  try {
    await t.deny();
  } catch {
    denied = false;
  }
  const sandboxGone = await until(
    () => sandbox === undefined || !isAlive(sandbox, s.sandboxStart),
    5000,
  );
  const containmentMs = performance.now() - o.startedAt;
  const quarantinedAt = o.now().toISOString();
  // The evidence waits for the session's client to write its last records and close it.
  await until(() => !t.isOpen(), 10_000);
  const bundle = writeEvidenceBundle({
    session: { ...s, quarantinedAt },
    stateDir: o.stateDir,
    processes,
    connections,
    quarantinedAt,
    containmentMs,
    outDir: o.outDir ?? join(o.stateDir, 'evidence'),
    manifest: t.manifest,
  });
  return {
    sandboxGone,
    denied,
    contained: sandboxGone && denied,
    containmentMs,
    processesKilled: processes.length,
    bundle,
  };
}
