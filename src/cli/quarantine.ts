import { quarantineSession, quarantineTargets } from '../endpoint/quarantine.js';
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
  const targets = quarantineTargets(stateDir, id);
  const results: Record<string, unknown>[] = [];
  let failed = false;
  for (const s of targets) {
    const q = await quarantineSession(s, {
      stateDir,
      now: io.now,
      startedAt: t0,
      ...(opts.out === undefined ? {} : { outDir: opts.out }),
    });
    const { bundle, containmentMs } = q;
    for (const w of bundle.warnings) io.stderr(`cordon quarantine: evidence: ${w}\n`);
    failed ||= !q.contained;
    results.push({
      session: s.id,
      agent: s.agent,
      contained: q.contained,
      containmentMs: Number(containmentMs.toFixed(1)),
      processesKilled: q.processesKilled,
      evidence: bundle.path,
      evidenceSha256: bundle.sha256,
      auditRecords: bundle.records,
      ...(bundle.warnings.length === 0 ? {} : { evidenceWarnings: bundle.warnings }),
    });
    if (opts.json !== true)
      io.stdout(
        q.contained
          ? `quarantined ${s.id} (${s.agent}): ${q.processesKilled} processes killed, egress denied, contained in ${containmentMs.toFixed(1)} ms\n  evidence ${bundle.path}\n  sha256   ${bundle.sha256}\n`
          : `quarantine of ${s.id} is INCOMPLETE: ${q.sandboxGone ? '' : 'processes still running; '}${q.denied ? '' : 'the session did not confirm deny-all'}\n  evidence ${bundle.path}\n`,
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
