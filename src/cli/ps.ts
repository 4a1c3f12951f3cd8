import { describeFinding, recoverPersistence } from '../sandbox/persistence.js';
import { connectDaemon } from '../daemon/client.js';
import { SessionListResponseSchema, type SessionInfo } from '../protocol/daemon.js';
import { EXIT, printResult, resolveDirs, type CliIo, type GlobalOptions } from './context.js';

function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** What the STATE column shows; `--json` carries the same word. */
function stateOf(s: SessionInfo): 'running' | 'quarantined' {
  return s.quarantinedAt === undefined ? 'running' : 'quarantined';
}

/**
 * `cordon ps`: the sessions the endpoint service runs that the caller may see (its own; every
 * one for root and the service admins).
 */
export async function runPs(io: CliIo, opts: GlobalOptions & { json?: boolean }): Promise<number> {
  const dirs = resolveDirs(io, opts);
  const { stateDir } = dirs;
  const client = await connectDaemon(io.env, io.home, dirs);
  const { sessions } = await client.request(
    'GET',
    '/v1/sessions',
    undefined,
    SessionListResponseSchema,
  );
  // A session that died before its persistence guard ran is checked here; the next
  // `cordon run` records the findings in the audit log.
  recoverPersistence(stateDir, (f) => io.stderr(`cordon ps: ${describeFinding(f)}\n`));
  const now = io.now().getTime();
  const uptimeMs = (s: SessionInfo): number => Math.max(0, now - Date.parse(s.startedAt));
  if (opts.json === true) {
    // Everything the table shows, as values: the record plus its state and uptime.
    printResult(io, {
      ok: true,
      sessions: sessions.map((s) => ({
        ...s,
        state: stateOf(s),
        uptimeSeconds: Math.floor(uptimeMs(s) / 1000),
      })),
    });
    return EXIT.OK;
  }
  if (sessions.length === 0) {
    io.stdout('no sessions running\n');
    return EXIT.OK;
  }
  const rows = sessions.map((s) => [
    s.id,
    `${s.agent}@${s.manifestVersion}`,
    String(s.sandboxPid ?? '-'),
    duration(uptimeMs(s)),
    bytes(s.bytesOut),
    stateOf(s) === 'running' ? 'running' : 'QUARANTINED',
    s.command.join(' ').slice(0, 60),
  ]);
  const head = ['SESSION', 'MANIFEST', 'PID', 'UPTIME', 'BYTES OUT', 'STATE', 'COMMAND'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  for (const r of [head, ...rows])
    io.stdout(
      r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ') + '\n',
    );
  return EXIT.OK;
}
