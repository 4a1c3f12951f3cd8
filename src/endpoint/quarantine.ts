import { join } from 'node:path';
import { CordonError } from '../errors.js';
import { writeEvidenceBundle, type EvidenceBundle } from '../sandbox/evidence.js';
import { isAlive, processTree, tcpConnections } from '../sandbox/linux/procfs.js';
import {
  liveSessions,
  readSession,
  readSessionManifest,
  type SessionRecord,
} from '../sandbox/sessions.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) return false;
    await sleep(1);
  }
  return true;
}

/**
 * The running sessions to quarantine: the one named (SESSION_NOT_FOUND when it is not running),
 * or every live one when `id` is undefined.
 */
export function quarantineTargets(stateDir: string, id: string | undefined): SessionRecord[] {
  if (id === undefined) return liveSessions(stateDir);
  const s = readSession(stateDir, id);
  if (s === undefined || !isAlive(s.cordonPid, s.cordonStart))
    throw new CordonError('SESSION_NOT_FOUND', `no running session ${id}`, {
      hint: 'see `cordon ps` for running sessions',
    });
  return [s];
}

/** How one session's quarantine went. */
export interface QuarantineOutcome {
  readonly session: SessionRecord;
  /** No process left in the sandbox. */
  readonly sandboxGone: boolean;
  /** The session confirmed deny-all (or its `cordon run` is gone). */
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
 * Quarantine one session: kill its whole process tree, have its own process switch its egress
 * proxy to deny-all and record the quarantine, and write an evidence bundle of what was running
 * and connected at that moment.
 *
 * @example
 * for (const s of quarantineTargets(stateDir, id)) await quarantineSession(s, { stateDir, now, startedAt: performance.now() });
 */
export async function quarantineSession(
  s: SessionRecord,
  o: QuarantineOptions,
): Promise<QuarantineOutcome> {
  const { stateDir } = o;
  // The manifest as verified at launch; `cordon run` removes it when it exits.
  const manifest = readSessionManifest(stateDir, s.id);
  // What was running and connected at this moment, before anything is touched.
  const sandbox =
    s.sandboxPid !== undefined && isAlive(s.sandboxPid, s.sandboxStart) ? s.sandboxPid : undefined;
  const processes = sandbox === undefined ? [] : processTree(sandbox);
  const connections = sandbox === undefined ? [] : tcpConnections(sandbox);
  // The sandbox's init is pid 1 of its namespace: killing it kills every process inside.
  if (sandbox !== undefined) {
    try {
      process.kill(sandbox, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  // The session's own process switches its proxy to deny-all and records the quarantine.
  try {
    process.kill(s.cordonPid, 'SIGUSR1');
  } catch {
    // it exited meanwhile
  }
  const sandboxGone = await until(
    () => sandbox === undefined || !isAlive(sandbox, s.sandboxStart),
    5000,
  );
  const denied = await until(
    () =>
      readSession(stateDir, s.id)?.quarantinedAt !== undefined ||
      !isAlive(s.cordonPid, s.cordonStart),
    5000,
  );
  const containmentMs = performance.now() - o.startedAt;
  const quarantinedAt = readSession(stateDir, s.id)?.quarantinedAt ?? o.now().toISOString();
  // The evidence waits for `cordon run` to write its last records and exit.
  await until(() => !isAlive(s.cordonPid, s.cordonStart), 10_000);
  const bundle = writeEvidenceBundle({
    session: s,
    stateDir,
    processes,
    connections,
    quarantinedAt,
    containmentMs,
    outDir: o.outDir ?? join(stateDir, 'evidence'),
    ...(manifest === undefined ? {} : { manifest }),
  });
  return {
    session: s,
    sandboxGone,
    denied,
    contained: sandboxGone && denied,
    containmentMs,
    processesKilled: processes.length,
    bundle,
  };
}
