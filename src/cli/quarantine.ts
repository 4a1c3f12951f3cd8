import { join } from 'node:path';
import { CordonError } from '../errors.js';
import { writeEvidenceBundle } from '../sandbox/evidence.js';
import { isAlive, processTree, tcpConnections } from '../sandbox/linux/procfs.js';
import {
  liveSessions,
  readSession,
  readSessionManifest,
  type SessionRecord,
} from '../sandbox/sessions.js';
import {
  EXIT,
  printResult,
  resolveDirs,
  usage,
  type CliIo,
  type GlobalOptions,
} from './context.js';

export interface QuarantineOptions extends GlobalOptions {
  all?: boolean;
  out?: string;
  json?: boolean;
}

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
 * `cordon quarantine SESSION | --all`: kill the session's whole process tree, switch its egress
 * proxy to deny-all, mark it quarantined, and write an evidence bundle. Prints the time from the
 * command to containment (no process left in the sandbox, egress denied).
 */
export async function runQuarantine(
  io: CliIo,
  id: string | undefined,
  opts: QuarantineOptions,
): Promise<number> {
  if ((id === undefined) === (opts.all !== true))
    throw usage('name one SESSION or give --all', 'see `cordon ps` for session ids');
  const t0 = performance.now();
  const { stateDir } = resolveDirs(io, opts);
  let targets: SessionRecord[];
  if (id !== undefined) {
    const s = readSession(stateDir, id);
    if (s === undefined || !isAlive(s.cordonPid, s.cordonStart))
      throw new CordonError('SESSION_NOT_FOUND', `no running session ${id}`, {
        hint: 'see `cordon ps` for running sessions',
      });
    targets = [s];
  } else targets = liveSessions(stateDir);
  const results: Record<string, unknown>[] = [];
  let failed = false;
  for (const s of targets) {
    // The manifest as verified at launch; `cordon run` removes it when it exits.
    const manifest = readSessionManifest(stateDir, s.id);
    // What was running and connected at this moment, before anything is touched.
    const sandbox =
      s.sandboxPid !== undefined && isAlive(s.sandboxPid, s.sandboxStart)
        ? s.sandboxPid
        : undefined;
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
    const containmentMs = performance.now() - t0;
    const quarantinedAt = readSession(stateDir, s.id)?.quarantinedAt ?? io.now().toISOString();
    // The evidence waits for `cordon run` to write its last records and exit.
    await until(() => !isAlive(s.cordonPid, s.cordonStart), 10_000);
    const bundle = writeEvidenceBundle({
      session: s,
      stateDir,
      processes,
      connections,
      quarantinedAt,
      containmentMs,
      outDir: opts.out ?? join(stateDir, 'evidence'),
      ...(manifest === undefined ? {} : { manifest }),
    });
    for (const w of bundle.warnings) io.stderr(`cordon quarantine: evidence: ${w}\n`);
    const ok = sandboxGone && denied;
    failed ||= !ok;
    results.push({
      session: s.id,
      agent: s.agent,
      contained: ok,
      containmentMs: Number(containmentMs.toFixed(1)),
      processesKilled: processes.length,
      evidence: bundle.path,
      evidenceSha256: bundle.sha256,
      auditRecords: bundle.records,
      ...(bundle.warnings.length === 0 ? {} : { evidenceWarnings: bundle.warnings }),
    });
    if (opts.json !== true)
      io.stdout(
        ok
          ? `quarantined ${s.id} (${s.agent}): ${processes.length} processes killed, egress denied, contained in ${containmentMs.toFixed(1)} ms\n  evidence ${bundle.path}\n  sha256   ${bundle.sha256}\n`
          : `quarantine of ${s.id} is INCOMPLETE: ${sandboxGone ? '' : 'processes still running; '}${denied ? '' : 'the session did not confirm deny-all'}\n  evidence ${bundle.path}\n`,
      );
  }
  if (opts.json === true)
    printResult(io, {
      ...(failed
        ? {
            ok: false,
            code: 'QUARANTINE_INCOMPLETE',
            message:
              'a session was not contained: processes still running or egress not confirmed denied',
          }
        : { ok: true }),
      sessions: results,
    });
  else if (targets.length === 0) io.stdout('no sessions running\n');
  return failed ? EXIT.INVALID : EXIT.OK;
}
