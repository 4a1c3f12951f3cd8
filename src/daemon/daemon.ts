import {
  appendFileSync,
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from 'node:v8';
import { dirname, join } from 'node:path';
import { recordDecision, type DecisionLog } from '../endpoint/decision-log.js';
import { openDeviceLog, type OpenedLog } from '../audit/open.js';
import { CordonError } from '../errors.js';
import { loadEnforcedPolicy } from '../endpoint/policy.js';
import { lockExclusive } from '../native.js';
import type { Decision, PolicyRequest } from '../policy/types.js';
import type { CheckRequest, StatusResponse } from '../protocol/daemon.js';
import { VERSION } from '../version.js';
import { ADMIN_GROUP, passwdEntry, ensurePrivateDir, type DaemonPaths } from './paths.js';
import { peerOf, type Peer } from './peer.js';
import { createApiServer, listenSocket, type ApiServer } from './server.js';
import { ContinuousShipper } from './shipper.js';
import { PolicyWatcher } from './watch.js';
import { auditPaths } from '../audit/store.js';
import { syntheticEvents } from '../audit/synthetic.js';
import { parseRecordLine, readAfter } from '../audit/reader.js';
import { EndpointService } from './service.js';

export interface DaemonOptions {
  readonly paths: DaemonPaths;
  readonly home: string;
  readonly now?: () => Date;
  /** Exit after this long with no session and no request (on-demand user daemons). */
  readonly idleExitMs?: number;
  readonly onDiagnostic?: (m: string) => void;
}

export interface DaemonHandle {
  readonly service: EndpointService;
  readonly server: ApiServer;
  /** Resolves when the daemon has stopped (a `stop` request, a signal, idle exit). */
  readonly stopped: Promise<void>;
  stop(reason: string): Promise<void>;
}

/** Members of a group, from /etc/group. */
function groupMembers(name: string): { gid: number; members: Set<string> } | undefined {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f[2] !== undefined)
        return { gid: Number(f[2]), members: new Set((f[3] ?? '').split(',').filter(Boolean)) };
    }
  } catch {
    // no group database: nobody is in the group
  }
  return undefined;
}

/** The supplementary groups of a process, from /proc (the kernel's view, not the caller's word). */
function groupsOf(pid: number): number[] {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^Groups:\s*(.*)$/m.exec(status);
    return (m?.[1] ?? '').split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function passwdHome(uid: number): string | undefined {
  const home = passwdEntry(uid)?.home;
  return home !== undefined && home.startsWith('/') ? home : undefined;
}

/**
 * How far V8 lets the old generation grow past the live heap before a full collection, in
 * percent. V8 sizes that step at each full collection from its collection speed against the
 * program's allocation speed at that moment (a factor of 1.1 to 4 of the live heap). The daemon
 * promotes a steady ~0.7 MB/s of per-request objects at 120 proxied requests/s while its live
 * heap stays ~16 MB, so the factor V8 happened to pick decided its RSS: in 60 s soaks of 20
 * sessions, a low one levelled it at ~115 MiB, one near 4 let the old generation grow from 11 to
 * 49 MB before the next collection (RSS 91 -> 150 MiB, rising all through the run). A
 * long-running service should hold about what it uses, whatever the load when a collection
 * happened: at 25 % (V8 keeps a floor of 8 MB per step) a full collection of the ~16 MB heap
 * comes every 6-10 s under that load, ~20 ms each. A node flag on the daemon's own command line
 * (`node --heap-growing-percent=N`) wins over this.
 */
export const DAEMON_HEAP_GROWING_PERCENT = 25;

/** Apply DAEMON_HEAP_GROWING_PERCENT unless node was started with its own setting. */
function boundHeapGrowth(): void {
  if (process.execArgv.some((a) => /^--heap[-_]growing[-_]percent\b/.test(a))) return;
  // V8 reads this at every full collection; set at run time, it needs no flag on the command
  // line the daemon is started with (a command-line V8 flag would also make the daemon reject,
  // and rewrite, the code cache the cordon bin shares with its clients).
  setFlagsFromString(`--heap-growing-percent=${DAEMON_HEAP_GROWING_PERCENT}`);
}

/**
 * CORDON_DAEMON_MEMTRACE=<file>: once a second, one JSON line of where the daemon's memory is —
 * process.memoryUsage(), V8's spaces (committed and used) and its malloced memory, the kernel's
 * view (/proc/self/smaps_rollup: resident, anonymous, file-backed), live handles by type and the
 * session count — so a growing RSS can be told apart: a live heap that grows is a leak; committed
 * V8 space or native memory that grows while the live heap stays flat is allocator behaviour.
 * A diagnostic for benchmarks and bug reports; it costs nothing unless set.
 */
function startMemtrace(file: string, sessions: () => number): () => void {
  const kb = (text: string, field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m === null ? NaN : Number(m[1]) * 1024;
  };
  const sample = (): void => {
    let smaps = '';
    try {
      smaps = readFileSync('/proc/self/smaps_rollup', 'utf8');
    } catch {
      // not Linux: the kernel's view is left out
    }
    const spaces: Record<string, [number, number]> = {};
    for (const s of getHeapSpaceStatistics())
      spaces[s.space_name] = [s.space_size, s.space_used_size];
    const handles: Record<string, number> = {};
    for (const r of process.getActiveResourcesInfo()) handles[r] = (handles[r] ?? 0) + 1;
    const h = getHeapStatistics();
    const line = {
      // Seconds since the process started, the clock of node's --trace-gc lines.
      t: process.uptime(),
      ...process.memoryUsage(),
      malloced: h.malloced_memory,
      spaces,
      smaps: {
        rss: kb(smaps, 'Rss'),
        anonymous: kb(smaps, 'Anonymous'),
        file: kb(smaps, 'Rss') - kb(smaps, 'Anonymous'),
      },
      handles,
      sessions: sessions(),
    };
    try {
      appendFileSync(file, `${JSON.stringify(line)}\n`);
    } catch {
      // a diagnostic that cannot be written is not a reason to stop serving
    }
  };
  sample();
  const timer = setInterval(sample, 1000);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Take the daemon lock of a state directory: a second daemon on it is refused. The kernel drops
 * the lock however the holder ends, so a crashed daemon never blocks its successor.
 */
function takeLock(stateDir: string): number {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, 'daemon.lock');
  const fd = openSync(file, 'a', 0o600);
  if (!fstatSync(fd).isFile() || !lockExclusive(fd)) {
    closeSync(fd);
    throw new CordonError('DAEMON_RUNNING', `another cordon daemon is serving ${stateDir}`, {
      file,
      hint: 'use it (`cordon daemon status`), or stop it first (`cordon daemon stop`)',
    });
  }
  return fd;
}

/**
 * Run the endpoint service until stopped: the only writer of the audit log, the sessions'
 * proxies, and the local API on the Unix socket.
 */
export async function startDaemon(o: DaemonOptions): Promise<DaemonHandle> {
  const now = o.now ?? (() => new Date());
  const diag = o.onDiagnostic ?? ((m: string) => process.stderr.write(`cordond: ${m}\n`));
  const { paths } = o;
  const lockFd = takeLock(paths.dirs.stateDir);
  boundHeapGrowth();
  const witnessFailures: string[] = [];
  let opened: OpenedLog | undefined;
  try {
    if (paths.mode === 'user') {
      ensurePrivateDir(paths.runtimeDir);
      ensurePrivateDir(dirname(paths.socket));
    } else {
      // Governed users pass through to their sessions' egress sockets; nothing else is theirs.
      mkdirSync(paths.runtimeDir, { recursive: true, mode: 0o755 });
    }
    mkdirSync(join(paths.runtimeDir, 's'), { recursive: true, mode: 0o755 });
    // In system mode the device key is the service's, beside the log it signs, out of reach of
    // the governed users (the policy directory is root's and readable by all).
    opened = openDeviceLog(
      {
        ...paths.dirs,
        ...(paths.mode === 'system' ? { deviceKeyDir: paths.dirs.stateDir } : {}),
      },
      {
        // The log stays durable when its witness cannot be appended to; the operator is told,
        // here and in the answers of the calls that wrote checkpoints meanwhile.
        onError: (e) => {
          if (e.code !== 'AUDIT_WITNESS_FAILED') return;
          witnessFailures.push(`${e.code}: ${e.message}`);
          diag(`${e.code}: ${e.message}`);
        },
      },
    );
    const log = opened;
    const ownUid = process.getuid?.() ?? 0;
    const admins = paths.mode === 'system' ? groupMembers(ADMIN_GROUP) : undefined;
    const isAdmin = (p: Peer): boolean =>
      p.uid === 0 ||
      (paths.mode === 'user' && p.uid === ownUid) ||
      (admins !== undefined && (p.gid === admins.gid || groupsOf(p.pid).includes(admins.gid)));
    const service = new EndpointService({
      paths,
      opened: log,
      home: o.home,
      homeOf: passwdHome,
      isAdmin,
      now,
      onDiagnostic: diag,
    });
    service.peerOf = peerOf;
    await service.restore();

    let sinks: () => StatusResponse['sinks'] = () => [];
    let lastActivity = Date.now();
    let stopping: Promise<void> | undefined;
    let resolveStopped: () => void = () => undefined;
    const stopped = new Promise<void>((r) => (resolveStopped = r));

    const status = (peer: Peer): StatusResponse => {
      const sessions = [...service.sessions.values()];
      return {
        ok: true,
        mode: paths.mode,
        pid: process.pid,
        version: VERSION,
        uptimeSeconds: Math.floor((Date.now() - service.started) / 1000),
        socket: paths.socket,
        policyDir: paths.dirs.policyDir,
        stateDir: paths.dirs.stateDir,
        log: {
          seq: log.log.head.seq,
          hash: log.log.head.hash,
          durableSeq: log.log.durableHead.seq,
        },
        sinks: sinks(),
        sessions: {
          running: sessions.filter((s) => s.quarantinedAt === undefined).length,
          quarantined: sessions.filter((s) => s.quarantinedAt !== undefined).length,
          yours: sessions.filter((s) => s.uid === peer.uid).length,
        },
        // Which agents other users run is theirs: only an administrator sees every session's.
        manifests: service.manifestsInForce(peer),
        caller: { uid: peer.uid, pid: peer.pid, admin: isAdmin(peer) },
      };
    };

    const check = async (peer: Peer, body: CheckRequest): Promise<Record<string, unknown>> => {
      // The system service's log holds decisions under verified manifests only: an ordinary user
      // must not fill it with allows under a manifest nobody signed.
      if (paths.mode === 'system' && body.verify === false)
        throw new CordonError(
          'DAEMON_OPTION_FORBIDDEN',
          '--no-verify is not taken by the system service: audited decisions are made under verified manifests',
          { hint: 'drop --no-verify, or drop --audit to try an unsigned manifest' },
        );
      const policy = loadEnforcedPolicy({
        dirs: paths.dirs,
        home: service.homeFor(peer),
        now,
        source: body.manifestPath,
        bytes: Buffer.from(body.manifest, 'base64'),
        ...(body.verify === undefined ? {} : { verify: body.verify }),
        ...(body.guardrails === undefined ? {} : { guardrails: body.guardrails }),
        ...(body.lexical === undefined ? {} : { lexical: body.lexical }),
        ...(body.home === undefined || paths.mode === 'system' ? {} : { decisionHome: body.home }),
      });
      const decisions: Decision[] = [];
      const records: number[] = [];
      const dlog: DecisionLog = {
        log: log.log,
        context: service.context(policy.ref.agent, undefined, peer),
        ref: policy.ref,
        service: 'cordon.check',
        now,
      };
      for (const [i, req] of body.requests.entries()) {
        const invalid = body.invalid?.[i] ?? undefined;
        let seq = 0;
        const d = await recordDecision(
          { ...dlog, onRecorded: (n) => (seq = n) },
          invalid === undefined ? req : undefined,
          invalid === undefined
            ? policy.pdp.decide(req as PolicyRequest)
            : { effect: 'deny', code: 'REQUEST_INVALID', rule: 'request', reason: invalid.reason },
          invalid?.operation ?? 'invalid request',
        );
        decisions.push(d);
        records.push(seq);
      }
      await log.log.checkpoint();
      return {
        ok: true,
        decisions,
        signed: policy.signed,
        verified: policy.verified,
        ref: policy.ref,
        records,
      };
    };

    const shipper = new ContinuousShipper({
      paths: auditPaths(paths.dirs.stateDir),
      config: log.config,
      durableSeq: () => log.log.durableHead.seq,
      onEvent: (sink, what, detail) => {
        if (what !== 'delivered') diag(`sink ${sink} ${what}: ${detail}`);
      },
    });
    sinks = () =>
      shipper.status().map((k) => ({
        name: k.name,
        lagRecords: k.pending,
        ...(k.oldestPendingSeconds === undefined ? {} : { lagSeconds: k.oldestPendingSeconds }),
        ...(k.lastError === undefined ? {} : { lastError: k.lastError }),
        ...(k.lastDeliveredAt === undefined ? {} : { lastShippedAt: k.lastDeliveredAt }),
      }));
    const watcher = new PolicyWatcher({
      policyDir: paths.dirs.policyDir,
      sessions: () =>
        [...service.sessions.values()]
          .filter((s) => s.quarantinedAt === undefined)
          .map((s) => ({
            id: s.id,
            bytes: s.bytes,
            notAfter: new Date(s.policy.manifest.notAfter),
          })),
      reverify: (w) => {
        const s = service.sessions.get(w.id);
        if (s === undefined) return { ok: true };
        return service.recheck(s);
      },
      onInvalid: (w, code, reason, trigger) => {
        const s = service.sessions.get(w.id);
        if (s === undefined) return;
        service
          .quarantine(
            s,
            `the manifest in force no longer holds (${code}: ${reason}); noticed on ${trigger}`,
            'MANIFEST_NO_LONGER_VALID',
          )
          .catch((e: unknown) => diag(`quarantine of ${s.id}: ${(e as Error).message}`));
      },
      now,
      onDiagnostic: diag,
    });

    const server = createApiServer(service, {
      peerOf,
      status,
      check,
      reload: () => {
        watcher.check('reload');
        return Promise.resolve('every session re-checked against the policy directory');
      },
      records: (peer, after, limit) => {
        const admin = isAdmin(peer);
        const records: string[] = [];
        let next = after;
        // Read only what is durable: a record is shown once it has been acknowledged.
        const durable = log.log.durableHead.seq;
        readAfter(auditPaths(paths.dirs.stateDir), after, (line, seq) => {
          if (seq > durable) return false;
          next = seq;
          if (!admin) {
            const e = parseRecordLine(line).event as { actor?: { user?: { uid?: unknown } } };
            if (e.actor?.user?.uid !== String(peer.uid)) return true;
          }
          records.push(line.toString('utf8'));
          return records.length < limit;
        });
        return { ok: true, records, next, head: durable };
      },
      emitTest: async (count) => {
        const next = syntheticEvents({ ...log.context, time: now().getTime() }, count);
        const started = process.hrtime.bigint();
        const writes = log.log.stats.writes;
        let failed: Error | undefined;
        // Appenders as at a busy enforcement point: groups of 1,024, up to 8 groups in flight.
        const inFlight: Promise<unknown>[] = [];
        for (let i = 0; i < count && failed === undefined;) {
          const group: Promise<unknown>[] = [];
          for (const end = Math.min(count, i + 1024); i < end; i++)
            group.push(
              log.log
                .append(next())
                .catch(
                  (e: unknown) => (failed ??= e instanceof Error ? e : new Error('append failed')),
                ),
            );
          inFlight.push(Promise.all(group));
          if (inFlight.length >= 8) await inFlight.shift();
        }
        await Promise.all(inFlight);
        if (failed !== undefined) throw failed;
        // As a writer closing the log would: everything written is under a signed checkpoint.
        const seen = witnessFailures.length;
        await log.log.checkpoint();
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        return {
          ok: true,
          appended: count,
          lastSeq: log.log.head.seq,
          seconds: Math.round(seconds * 1000) / 1000,
          eventsPerSecond: Math.round(count / seconds),
          writes: log.log.stats.writes - writes,
          warnings: witnessFailures.slice(seen),
        };
      },
      stop: (peer) => void stop(`stop requested by uid ${peer.uid} (pid ${peer.pid})`),
      onActivity: () => {
        lastActivity = Date.now();
        shipper.kick();
      },
      onDiagnostic: diag,
    });
    await listenSocket(server.server, paths.socket, paths.mode === 'system' ? 0o666 : 0o600);
    shipper.start();
    watcher.start();

    // Sessions whose client died are ended; an idle on-demand daemon goes away.
    const logDir = auditPaths(paths.dirs.stateDir).segments;
    const timer = setInterval(() => {
      service.watchWrites();
      service.reap().catch((e: unknown) => diag(`reap: ${(e as Error).message}`));
      if (
        o.idleExitMs !== undefined &&
        service.sessions.size === 0 &&
        Date.now() - lastActivity > o.idleExitMs
      )
        void stop('idle');
      // An on-demand daemon whose log was removed (its state directory deleted) would go on
      // writing records nobody can read: it stops instead, its sessions' egress with it, and the
      // next client starts a daemon on a new log.
      else if (o.idleExitMs !== undefined && !existsSync(logDir))
        void stop(`its audit log ${logDir} was removed`);
    }, 500);
    timer.unref();
    const memtrace = process.env['CORDON_DAEMON_MEMTRACE'];
    const stopMemtrace =
      memtrace === undefined || memtrace === ''
        ? () => undefined
        : startMemtrace(memtrace, () => service.sessions.size);

    function stop(reason: string): Promise<void> {
      stopping ??= (async () => {
        diag(`stopping: ${reason}`);
        clearInterval(timer);
        stopMemtrace();
        watcher.close();
        server.close();
        // Each step runs whatever the one before did: a log that cannot write its last
        // checkpoint (a full disk) must not keep the service, its socket or its lock alive.
        const step = async (what: string, fn: () => unknown): Promise<void> => {
          try {
            await fn();
          } catch (e) {
            diag(`stopping: ${what}: ${(e as Error).message}`);
          }
        };
        await step('sessions', () => service.closeAll());
        await step('sinks', () => shipper.stop());
        await step('audit log', () => log.log.close());
        rmSync(paths.socket, { force: true });
        closeSync(lockFd);
        resolveStopped();
      })();
      return stopping;
    }

    return { service, server, stopped, stop };
  } catch (e) {
    await opened?.log.close();
    closeSync(lockFd);
    throw e;
  }
}
