import { connectDaemon } from '../daemon/client.js';
import { CordonError } from '../errors.js';
import {
  QuarantineResponseSchema,
  SessionListResponseSchema,
  type SessionInfo,
} from '../protocol/daemon.js';
import { resolve as resolvePath } from 'node:path';
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
 * `cordon quarantine SESSION | --all`: through the endpoint service, deny the session's egress at
 * once, kill its whole process tree, mark it quarantined, and write an evidence bundle. Prints
 * the time from the command to containment (no process left in the sandbox, egress denied).
 * Sees the sessions the caller may see: its own, or every one for root and the service admins.
 */
export async function runQuarantine(
  io: CliIo,
  id: string | undefined,
  opts: QuarantineOptions,
): Promise<number> {
  if ((id === undefined) === (opts.all !== true))
    throw usage('name one SESSION or give --all', 'see `cordon ps` for session ids');
  // A user daemon that is not running is started: it takes back the sessions it served.
  const client = await connectDaemon(io.env, io.home, resolveDirs(io, opts));
  const listed = await client.request('GET', '/v1/sessions', undefined, SessionListResponseSchema);
  let targets: SessionInfo[];
  if (id !== undefined) {
    const s = listed.sessions.find((x) => x.id === id);
    if (s === undefined)
      throw new CordonError('SESSION_NOT_FOUND', `no running session ${id}`, {
        hint: 'see `cordon ps` for running sessions',
      });
    targets = [s];
  } else targets = listed.sessions;
  const results: Record<string, unknown>[] = [];
  let failed = false;
  for (const s of targets) {
    const q = await client.request(
      'POST',
      `/v1/sessions/${s.id}/quarantine`,
      {
        reason: `quarantined by cordon quarantine${id === undefined ? ' --all' : ''}`,
        evidence: true,
        ...(opts.out === undefined ? {} : { out: resolvePath(opts.out) }),
      },
      QuarantineResponseSchema,
      { timeoutMs: 60_000 },
    );
    const bundle = q.evidence;
    for (const w of bundle?.warnings ?? []) io.stderr(`cordon quarantine: evidence: ${w}\n`);
    const contained = q.contained === true;
    failed ||= !contained;
    results.push({
      session: s.id,
      agent: s.agent,
      contained,
      containmentMs: q.containmentMs,
      processesKilled: q.processesKilled,
      evidence: bundle?.path,
      evidenceSha256: bundle?.sha256,
      auditRecords: bundle?.records,
      ...(bundle === undefined || bundle.warnings.length === 0
        ? {}
        : { evidenceWarnings: bundle.warnings }),
    });
    if (opts.json !== true)
      io.stdout(
        contained
          ? `quarantined ${s.id} (${s.agent}): ${q.processesKilled ?? 0} processes killed, egress denied, contained in ${(q.containmentMs ?? 0).toFixed(1)} ms\n  evidence ${bundle?.path ?? '-'}\n  sha256   ${bundle?.sha256 ?? '-'}\n`
          : `quarantine of ${s.id} is INCOMPLETE: ${q.sandboxGone === true ? '' : 'processes still running; '}${q.denied === true ? '' : 'egress not confirmed denied'}\n  evidence ${bundle?.path ?? '-'}\n`,
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
