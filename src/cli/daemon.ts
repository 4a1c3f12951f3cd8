import { dirname } from 'node:path';
import { connectDaemon, daemonTarget, DaemonClient } from '../daemon/client.js';
import { SYSTEM_PATHS, userRuntimeDir, userSocket, type DaemonPaths } from '../daemon/paths.js';
import { OkResponseSchema, StatusResponseSchema } from '../protocol/daemon.js';
import { EXIT, printResult, resolveDirs, type CliIo, type GlobalOptions } from './context.js';

export interface DaemonRunOptions extends GlobalOptions {
  system?: boolean;
  onDemand?: boolean;
  socket?: string;
  runtimeDir?: string;
  idleExit?: string;
}

/** The paths a daemon started with these options serves. */
export function daemonPaths(io: CliIo, opts: DaemonRunOptions): DaemonPaths {
  if (opts.system === true) {
    const socket = opts.socket ?? SYSTEM_PATHS.socket;
    return {
      mode: 'system',
      dirs: {
        policyDir: opts.policyDir ?? SYSTEM_PATHS.policyDir,
        stateDir: opts.stateDir ?? SYSTEM_PATHS.stateDir,
      },
      runtimeDir: opts.runtimeDir ?? dirname(socket),
      socket,
    };
  }
  const dirs = resolveDirs(io, opts);
  const socket = opts.socket ?? userSocket(io.env, io.home, dirs);
  // Sessions' egress sockets go under the user's runtime directory itself (short paths), shared
  // by the user's daemons: session names are random.
  return {
    mode: 'user',
    dirs,
    runtimeDir:
      opts.runtimeDir ?? (opts.socket === undefined ? userRuntimeDir(io.env) : dirname(socket)),
    socket,
  };
}

/**
 * `cordon daemon`: run the endpoint service in the foreground until SIGTERM/SIGINT or
 * `cordon daemon stop`. Started on demand by a client (`--on-demand`), it exits when idle.
 */
export async function runDaemon(io: CliIo, opts: DaemonRunOptions): Promise<number> {
  const paths = daemonPaths(io, opts);
  const idleSeconds =
    opts.idleExit !== undefined
      ? Number(opts.idleExit)
      : opts.onDemand === true
        ? Number(io.env['CORDON_DAEMON_IDLE_SECONDS'] ?? 600)
        : undefined;
  // The service itself (policy, proxy, log) is loaded only to run it: `daemon status` and
  // `daemon stop` are thin clients.
  const { startDaemon } = await import('../daemon/daemon.js');
  const d = await startDaemon({
    paths,
    home: io.home,
    now: io.now,
    ...(idleSeconds === undefined || !Number.isFinite(idleSeconds)
      ? {}
      : { idleExitMs: idleSeconds * 1000 }),
    onDiagnostic: (m) => io.stderr(`cordond: ${m}\n`),
  });
  io.stderr(
    `cordond: serving ${paths.socket} (${paths.mode} mode; policy ${paths.dirs.policyDir}, state ${paths.dirs.stateDir})\n`,
  );
  const onSignal = (sig: NodeJS.Signals): void => void d.stop(sig);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await d.stopped;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
  return EXIT.OK;
}

function clientFor(io: CliIo, opts: DaemonRunOptions): DaemonClient {
  if (opts.socket !== undefined)
    return new DaemonClient({ socket: opts.socket, via: 'CORDON_SOCKET' });
  if (opts.system === true) return new DaemonClient({ socket: SYSTEM_PATHS.socket, via: 'system' });
  return new DaemonClient(daemonTarget(io.env, io.home, resolveDirs(io, opts)));
}

/** `cordon daemon status`: the service's log head, sinks and their lag, sessions, manifests. */
export async function runDaemonStatus(
  io: CliIo,
  opts: DaemonRunOptions & { json?: boolean },
): Promise<number> {
  const client = clientFor(io, opts);
  const s = await client.request('GET', '/v1/status', undefined, StatusResponseSchema);
  if (opts.json === true) {
    printResult(io, s);
    return EXIT.OK;
  }
  io.stdout(
    [
      `cordond ${s.version} (${s.mode} mode), pid ${s.pid}, up ${s.uptimeSeconds}s`,
      `  socket     ${s.socket}`,
      `  policy     ${s.policyDir}`,
      `  state      ${s.stateDir}`,
      `  audit log  head ${s.log.seq} (durable ${s.log.durableSeq})`,
      `  sessions   ${s.sessions.running} running, ${s.sessions.quarantined} quarantined (${s.sessions.yours} yours)`,
      ...s.manifests.map(
        (m) => `  manifest   ${m.agent}@${m.version} ${m.digest} (${m.sessions} sessions)`,
      ),
      ...(s.sinks.length === 0
        ? ['  sinks      none configured']
        : s.sinks.map(
            (k) =>
              `  sink       ${k.name}: ${k.lagRecords} records behind${k.lagSeconds === undefined ? '' : ` (${k.lagSeconds.toFixed(1)} s)`}${k.lastError === undefined ? '' : `; last error: ${k.lastError}`}`,
          )),
    ].join('\n') + '\n',
  );
  return EXIT.OK;
}

/** `cordon daemon stop`: ask the service to stop (root, an admin, or the user-mode owner). */
export async function runDaemonStop(
  io: CliIo,
  opts: DaemonRunOptions & { json?: boolean },
): Promise<number> {
  const client = clientFor(io, opts);
  await client.request('POST', '/v1/stop', {}, OkResponseSchema);
  if (opts.json === true) printResult(io, { ok: true, socket: client.socket, stopped: true });
  else io.stdout(`cordond on ${client.socket}: stopping\n`);
  return EXIT.OK;
}

/** A connected client for verbs that use the daemon (started on demand in user mode). */
export function daemonFor(io: CliIo, opts: GlobalOptions): Promise<DaemonClient> {
  return connectDaemon(io.env, io.home, resolveDirs(io, opts));
}
