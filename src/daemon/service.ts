import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import type net from 'node:net';
import { join } from 'node:path';
import {
  apiActivityEvent,
  deviceObject,
  logActivityEvent,
  processActivityEvent,
  type EventContext,
  type ManifestRef,
  type OcsfEvent,
} from '../audit/events.js';
import type { OpenedLog } from '../audit/open.js';
import { parseRecordLine, readAfter } from '../audit/reader.js';
import { auditPaths } from '../audit/store.js';
import { readProxyConfig } from '../egress/config.js';
import { EgressProxy, type DestinationStats } from '../egress/proxy.js';
import { parseResolveEntries, staticResolver, systemResolver } from '../egress/resolver.js';
import { CordonError } from '../errors.js';
import { parseStrictJson } from '../manifest/json.js';
import type { Decision, PolicyRequest } from '../policy/types.js';
import { describeGuardrails, guardrailsFacts } from '../policy/in-force.js';
import { quarantineSession } from '../endpoint/quarantine.js';
import { manifestLifecycle, ProxyPolicyControl } from '../endpoint/proxy-control.js';
import type { SessionRecord } from '../sandbox/sessions.js';
import { MAX_EVENT_BYTES } from '../protocol/daemon.js';
import type {
  OpenSessionRequest,
  OpenSessionResponse,
  QuarantineResponse,
  SessionInfo,
  WatchMessage,
} from '../protocol/daemon.js';
import { isAlive, startTime } from '../sandbox/linux/procfs.js';
import { loadEnforcedPolicy, type EnforcedPolicy } from '../endpoint/policy.js';
import { lintOptionsFor } from '../endpoint/verify.js';
import { isLoopbackHost } from '../manifest/ip.js';
import { ManifestVerifier } from '../manifest/verify.js';
import { FileAcceptanceStore } from '../store/acceptance.js';
import { readRevocationBytes, readTrustStore } from '../store/policy-dir.js';
import { checkLaunch } from './launch-check.js';
import {
  checkSocketPath,
  EGRESS_SOCKET_NAME,
  passwdEntry,
  sessionEgressDir,
  type DaemonPaths,
} from './paths.js';
import { tcpPeerUid, type Peer } from './peer.js';

/** One session the daemon serves: its verified policy, its proxy, its client. */
export interface DaemonSession {
  readonly id: string;
  readonly kind: 'run' | 'proxy';
  readonly uid: number;
  readonly clientPid: number;
  readonly clientStart: string | undefined;
  readonly capabilityHash: Buffer;
  /** The envelope's bytes as verified: what is enforced, and what revocations are checked on. */
  readonly bytes: Buffer;
  readonly request: Omit<OpenSessionRequest, 'manifest'>;
  readonly home: string;
  readonly startedAt: string;
  readonly auditSeqAtStart: number;
  policy: EnforcedPolicy;
  proxy: EgressProxy | undefined;
  readonly egressDir: string;
  sandboxPid?: number;
  sandboxStart?: string;
  quarantinedAt?: string;
  quarantineReason?: string;
  /** A standalone proxy's reload and deny-all machine. */
  control?: ProxyPolicyControl;
  /** The bytes a reload puts in force (sent by the client, verified by `control`). */
  pending?: Buffer;
  /** What the reload machine last said (returned to the client that asked). */
  lastDiagnostic?: string | undefined;
  /** Highest client sequence number whose event is durable. */
  acked: number;
  /** Appends in flight, chained so a session's events keep the client's order. */
  tail: Promise<unknown>;
  readonly watchers: Set<(m: WatchMessage) => void>;
}

/** What persists of a session across daemon restarts. */
interface SessionFile {
  id: string;
  kind: 'run' | 'proxy';
  uid: number;
  clientPid: number;
  clientStart?: string;
  capabilityHash: string;
  manifest: string;
  request: Omit<OpenSessionRequest, 'manifest'>;
  home: string;
  startedAt: string;
  auditSeqAtStart: number;
  sandboxPid?: number;
  sandboxStart?: string;
  quarantinedAt?: string;
  quarantineReason?: string;
}

/** A session id as the service makes them (`randomUUID`). */
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Sessions one ordinary user may have open at once (root and administrators are not limited). */
export const MAX_SESSIONS_PER_USER = 256;

/**
 * Space kept on the state filesystem for each session's last records: given up when the disk is
 * full, so its Terminate record (and the log's checkpoint) can still be written.
 */
const RESERVE_BYTES = 256 * 1024;
/** Process Activity's Terminate (OCSF activity_id 2): a session's last record. */
const TERMINATE_ACTIVITY = 2;

/** Marks an event the server found over MAX_EVENT_BYTES (its size), refused when stamped. */
export const OVERSIZE = '__cordon_oversize';

/** Event classes a client may append: what `cordon run` sees and what its guard finds. */
const CLIENT_CLASSES = new Set([1001, 1007, 1008, 2004, 6003]);

export interface ServiceOptions {
  readonly paths: DaemonPaths;
  readonly opened: OpenedLog;
  /** The home of the user-mode daemon's user; system mode looks the caller's up. */
  readonly home: string;
  readonly homeOf: (uid: number) => string | undefined;
  readonly isAdmin: (peer: Peer) => boolean;
  readonly now: () => Date;
  readonly onDiagnostic: (m: string) => void;
}

/**
 * The endpoint service's state and operations, independent of the transport: the HTTP layer
 * (server.ts) parses, authenticates and calls these.
 */
export class EndpointService {
  readonly sessions = new Map<string, DaemonSession>();
  /** Since when the log cannot be written, and why (a full disk): egress is denied meanwhile. */
  #failure: { since: Date; error: string } | undefined;
  #resuming = false;
  readonly #o: ServiceOptions;
  readonly #dir: string;
  readonly started = Date.now();

  constructor(o: ServiceOptions) {
    this.#o = o;
    this.#dir = join(o.paths.dirs.stateDir, 'daemon', 'sessions');
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
  }

  get log(): OpenedLog['log'] {
    return this.#o.opened.log;
  }

  get paths(): DaemonPaths {
    return this.#o.paths;
  }

  isAdmin(peer: Peer): boolean {
    return this.#o.isAdmin(peer);
  }

  /**
   * The audit context for events about a session. Who an event names: the calling process
   * (`peer`, its identity from the kernel), or the service itself; `owner` is the uid
   * of the session the service acts for (its egress proxy, its quarantine), so those events name
   * the session's user and that user sees them in the records it may read.
   */
  context(
    agent: string,
    session: string | undefined,
    peer: Peer | undefined,
    owner?: number,
  ): EventContext {
    const base = this.#o.opened.context;
    const uid = peer?.uid ?? owner;
    return {
      ...base,
      time: this.#o.now().getTime(),
      actor: {
        name: agent,
        ...(session === undefined ? {} : { session }),
        ...(peer === undefined
          ? { pid: process.pid, processName: 'cordond' }
          : { pid: peer.pid, processName: 'cordon' }),
        user:
          uid === undefined
            ? (base.actor.user ?? { name: 'cordon' })
            : { name: this.#userName(uid), uid: String(uid) },
      },
    };
  }

  /** User names by uid, looked up at most once a minute (every event names its user). */
  readonly #names = new Map<number, { name: string; at: number }>();

  #userName(uid: number): string {
    const cached = this.#names.get(uid);
    const now = Date.now();
    if (cached !== undefined && now - cached.at < 60_000) return cached.name;
    const name = this.#lookupUserName(uid);
    this.#names.set(uid, { name, at: now });
    return name;
  }

  #lookupUserName(uid: number): string {
    return passwdEntry(uid)?.name ?? `uid:${uid}`;
  }

  homeFor(peer: Peer): string {
    if (this.#o.paths.mode === 'user') return this.#o.home;
    const home = this.#o.homeOf(peer.uid);
    if (home === undefined)
      throw new CordonError(
        'DAEMON_USER_UNKNOWN',
        `uid ${peer.uid} has no home directory in the user database`,
        { hint: 'add the user to /etc/passwd (or your directory service) before running agents' },
      );
    return home;
  }

  // ---------------------------------------------------------------- sessions

  async open(
    peer: Peer,
    req: OpenSessionRequest,
  ): Promise<OpenSessionResponse & { capability: string }> {
    // Each session holds a proxy, its listener and a record: one user's many must not exhaust
    // the service for the others.
    if (!this.isAdmin(peer)) {
      let mine = 0;
      for (const x of this.sessions.values()) if (x.uid === peer.uid) mine++;
      if (mine >= MAX_SESSIONS_PER_USER)
        throw new CordonError(
          'DAEMON_BUSY',
          `uid ${peer.uid} already has ${mine} sessions open at the service`,
          { hint: 'end some sessions (`cordon ps`), then start this one again' },
        );
    }
    const bytes = Buffer.from(req.manifest, 'base64');
    // A user-mode daemon serves one user, who may run it under another HOME; the system
    // service takes the home from the user database, never from the caller.
    const home =
      this.#o.paths.mode === 'user' && req.home !== undefined ? req.home : this.homeFor(peer);
    if (this.#o.paths.mode === 'system' && req.config !== undefined)
      throw new CordonError(
        'DAEMON_OPTION_FORBIDDEN',
        '--config is not taken by the system service: the proxy settings come from its policy directory',
        { hint: `drop --config; an administrator sets them in ${this.#o.paths.dirs.policyDir}` },
      );
    // Answering a granted name with another address would send the agent's traffic for an
    // allowed host to any server the user picks: the system service resolves names itself.
    if (this.#o.paths.mode === 'system' && (req.resolve ?? []).length > 0)
      throw new CordonError(
        'DAEMON_OPTION_FORBIDDEN',
        '--resolve is not taken by the system service: it resolves names itself (a name answered with another address would widen what the manifest grants)',
        { hint: 'drop --resolve' },
      );
    const kind = req.kind ?? 'run';
    const id = randomUUID();
    const ctx = (agent: string): EventContext => this.context(agent, id, peer);
    const policy = this.#load(
      bytes,
      req.manifestPath,
      home,
      true,
      req.guardrails,
      req.installationEntries ?? [],
    );
    const append = (e: OcsfEvent): Promise<unknown> => this.log.append(e);
    const checked =
      kind === 'run'
        ? await checkLaunch({
            policy,
            dirs: this.#o.paths.dirs,
            home,
            command: req.command as [string, ...string[]],
            narrowed: req.agentRuntimes ?? [],
            unsafeNoSandbox: req.unsafeNoSandbox === true,
            // Only ever more paths to refuse on: a client cannot narrow the check with them.
            clientEntries: req.installationEntries ?? [],
            append,
            context: ctx(policy.ref.agent),
            now: this.#o.now,
          })
        : { agentRuntimes: [] };
    const egressDir = sessionEgressDir(this.#o.paths.runtimeDir, id);
    const capability = randomBytes(32).toString('base64url');
    const s: DaemonSession = {
      id,
      kind,
      uid: peer.uid,
      clientPid: peer.pid,
      clientStart: startTime(peer.pid),
      capabilityHash: createHash('sha256').update(capability).digest(),
      bytes,
      request: withoutManifest(req),
      home,
      startedAt: this.#o.now().toISOString(),
      auditSeqAtStart: this.log.head.seq + 1,
      policy,
      proxy: undefined,
      egressDir,
      acked: 0,
      tail: Promise.resolve(),
      watchers: new Set(),
    };
    await this.#startProxy(s);
    this.sessions.set(id, s);
    this.#save(s);
    this.#reserve(s);
    if (this.#failure !== undefined) s.proxy?.setUnavailable(`audit log: ${this.#failure.error}`);
    if (kind === 'proxy') {
      await this.log.append(
        manifestLifecycle(ctx(policy.ref.agent), this.#o.now, policy, {
          activity: 'enable',
          ok: true,
          code: 'VERIFIED',
          reason: 'the egress proxy verified the manifest and put it in force',
        }),
      );
    }
    return {
      ok: true,
      session: id,
      capability,
      manifest: policy.manifest as unknown as Record<string, unknown>,
      ref: policy.ref,
      guardrails: guardrailsFacts(policy.guardrails),
      guardrailsText: describeGuardrails(policy.guardrails),
      agentRuntimes: checked.agentRuntimes,
      egressDir,
      egressSocket: join(egressDir, EGRESS_SOCKET_NAME),
      hidden: [this.#o.paths.dirs.policyDir, this.#o.paths.dirs.stateDir, this.#o.paths.runtimeDir],
      home,
      auditSeqAtStart: s.auditSeqAtStart,
      ...(s.proxy !== undefined && (req.unsafeNoSandbox === true || kind === 'proxy')
        ? { proxyUrl: s.proxy.url }
        : {}),
      ...(s.proxy !== undefined && req.socks !== undefined ? { socksPort: s.proxy.socksPort } : {}),
    };
  }

  #load(
    bytes: Buffer,
    source: string,
    home: string,
    record: boolean,
    guardrails: string | false | undefined,
    clientPackageEntries: readonly string[] = [],
  ): EnforcedPolicy {
    return loadEnforcedPolicy({
      dirs: this.#o.paths.dirs,
      home,
      clientPackageEntries,
      now: this.#o.now,
      source,
      bytes,
      verify: true,
      recordAcceptance: record,
      enforce: true,
      ...(guardrails === undefined ? {} : { guardrails }),
    });
  }

  async #startProxy(s: DaemonSession): Promise<void> {
    const r = s.request;
    const table = parseResolveEntries(r.resolve ?? []);
    const resolver =
      Object.keys(table).length === 0 ? systemResolver() : staticResolver(table, systemResolver());
    const config = readProxyConfig(this.#o.paths.dirs.policyDir, r.config);
    // The directory, not the socket, is bound into the sandbox: a restarted daemon's new socket
    // appears in it. Everyone may pass through; only the session's user may connect.
    // The client checks this too; the service does not take its word for it.
    for (const [flag, at] of [
      ['--listen', r.listen],
      ['--socks', r.socks],
    ] as const)
      if (
        at !== undefined &&
        (!isLoopbackHost(at.host) || at.host === 'localhost' || at.host.endsWith('.localhost'))
      )
        throw new CordonError('REQUEST_INVALID', `${flag} ${at.host} is not a loopback address`, {
          hint: 'listen on 127.0.0.1 or ::1 (anyone who can connect to the proxy gets the agent’s egress)',
        });
    mkdirSync(s.egressDir, { recursive: true, mode: 0o755 });
    if (s.kind === 'proxy' && r.unix !== undefined && this.#o.paths.mode === 'system')
      throw new CordonError(
        'DAEMON_OPTION_FORBIDDEN',
        '--unix is not taken by the system service: it listens on loopback addresses only',
        { hint: 'use --listen 127.0.0.1:PORT' },
      );
    const target =
      s.kind === 'proxy'
        ? r.unix !== undefined
          ? { path: r.unix }
          : (r.listen ?? { host: '127.0.0.1', port: 3128 })
        : r.unsafeNoSandbox === true
          ? { host: '127.0.0.1', port: 0 }
          : { path: join(s.egressDir, EGRESS_SOCKET_NAME) };
    if ('path' in target) checkSocketPath(target.path);
    const proxy = await EgressProxy.start(
      {
        pdp: s.policy.pdp,
        manifest: s.policy.ref,
        audit: this.log,
        context: this.context(s.policy.ref.agent, s.id, undefined, s.uid),
        resolver,
        limits: config.limits,
        onDiagnostic: (m) => this.#o.onDiagnostic(`session ${s.id}: ${m}`),
        onOpenFrom: (seq) => this.#o.opened.spans.hint.update(seq),
        socketMode: 0o666,
        acceptClient: (sock: net.Socket) => this.#acceptEgress(s, sock),
      },
      target,
      r.socks === undefined ? {} : { socks: r.socks },
    );
    s.proxy = proxy;
    if (s.kind === 'proxy') {
      // A restarted service listens where the first one did (a port 0 became a real one).
      const url = proxy.url;
      const m = /:(\d+)$/.exec(url);
      if (r.listen !== undefined && r.listen.port === 0 && m !== null)
        (s as { request: Omit<OpenSessionRequest, 'manifest'> }).request = {
          ...r,
          listen: { host: r.listen.host, port: Number(m[1]) },
          ...(r.socks !== undefined && r.socks.port === 0
            ? { socks: { host: r.socks.host, port: proxy.socksPort } }
            : {}),
        };
      s.control = new ProxyPolicyControl({
        proxy,
        policy: s.policy,
        load: () => {
          const bytes = s.pending ?? s.bytes;
          const policy = this.#load(
            bytes,
            s.request.manifestPath,
            s.home,
            true,
            s.request.guardrails,
          );
          (s as { bytes: Buffer }).bytes = bytes;
          s.policy = policy;
          return policy;
        },
        append: (e) => this.log.append(e),
        context: this.context(s.policy.ref.agent, s.id, undefined, s.uid),
        now: this.#o.now,
        onDiagnostic: (m) => {
          s.lastDiagnostic = m;
          this.#o.onDiagnostic(`session ${s.id}: ${m}`);
        },
      });
    }
    if (s.quarantinedAt !== undefined)
      proxy.denyAll(s.quarantineReason ?? 'the session is quarantined');
  }

  /** Only the session's own user reaches its egress socket (peer credentials). */
  #acceptEgress(s: DaemonSession, sock: net.Socket): string | undefined {
    if (sock.remoteAddress !== undefined) {
      // Loopback TCP (an unconfined session, a standalone proxy): every local user can connect
      // to it; the kernel's socket table says whose connection this is.
      const uid = tcpPeerUid(sock);
      if (uid === undefined)
        return `the user of a connection from ${sock.remoteAddress}:${sock.remotePort} could not be established`;
      return uid === s.uid ? undefined : `uid ${uid} is not the session's user (${s.uid})`;
    }
    const peer = this.peerOf(sock);
    if (peer.uid !== s.uid) return `uid ${peer.uid} is not the session's user (${s.uid})`;
    return undefined;
  }

  /** Set by the server: the peer credentials of a socket. */
  peerOf: (sock: net.Socket) => Peer = () => {
    throw new CordonError('PEER_UNKNOWN', 'peer credentials are not available');
  };

  /** The session, if the caller holds its capability. */
  authorize(id: string, capability: string | undefined): DaemonSession {
    const s = this.sessions.get(id);
    const h = createHash('sha256')
      .update(capability ?? '')
      .digest();
    if (s === undefined || capability === undefined || !timingSafeEqual(h, s.capabilityHash))
      throw new CordonError('SESSION_UNAUTHORIZED', `no session ${id} for this capability`, {
        hint: "only the session's own client (the cordon run that opened it) may do this",
      });
    return s;
  }

  /** A session the caller may see: its own, or any for an administrator. */
  visible(peer: Peer, id: string): DaemonSession {
    const s = this.sessions.get(id);
    if (s === undefined || (s.uid !== peer.uid && !this.isAdmin(peer)))
      throw new CordonError('SESSION_NOT_FOUND', `no running session ${id}`, {
        hint: 'see `cordon ps` for the sessions you may see',
      });
    return s;
  }

  list(peer: Peer): SessionInfo[] {
    return [...this.sessions.values()]
      .filter((s) => s.uid === peer.uid || this.isAdmin(peer))
      .map((s) => this.info(s));
  }

  info(s: DaemonSession): SessionInfo {
    let bytesOut = 0;
    let bytesIn = 0;
    for (const d of s.proxy?.stats().destinations.values() ?? []) {
      bytesOut += d.bytesOut;
      bytesIn += d.bytesIn;
    }
    return {
      id: s.id,
      kind: s.kind,
      agent: s.policy.ref.agent,
      manifestVersion: s.policy.ref.version,
      manifestDigest: s.policy.ref.digest,
      manifestPath: s.request.manifestPath,
      uid: s.uid,
      clientPid: s.clientPid,
      ...(s.sandboxPid === undefined ? {} : { sandboxPid: s.sandboxPid }),
      command: [...s.request.command],
      startedAt: s.startedAt,
      auditSeqAtStart: s.auditSeqAtStart,
      bytesOut,
      bytesIn,
      state: s.quarantinedAt === undefined ? 'running' : 'quarantined',
      attached: s.watchers.size > 0,
      ...(s.quarantinedAt === undefined ? {} : { quarantinedAt: s.quarantinedAt }),
      ...(s.quarantineReason === undefined ? {} : { quarantineReason: s.quarantineReason }),
      ...(s.request.unsafeNoSandbox === true ? { unsafeNoSandbox: true } : {}),
    };
  }

  /**
   * Verify a running session's manifest again against the policy directory as it is now:
   * signature, trust, key and manifest revocation, expiry, schema, lint. Not rollback: a newer
   * version accepted since (another session) does not end sessions of the older one. When it
   * holds and the guardrails changed, the session decides under the new ones from now on.
   */
  recheck(s: DaemonSession): { ok: true } | { ok: false; code: string; reason: string } {
    const dirs = this.#o.paths.dirs;
    const disk = new FileAcceptanceStore(dirs.stateDir);
    const report = new ManifestVerifier({
      trust: readTrustStore(dirs.policyDir),
      revocationList: readRevocationBytes(dirs.policyDir),
      // Rollback was checked when the session opened; an older revocation list still is not.
      store: {
        lastAccepted: () => undefined,
        accept: () => undefined,
        revocationSerial: () => disk.revocationSerial(),
        acceptRevocationSerial: () => undefined,
      },
      lint: lintOptionsFor({
        dirs,
        home: s.home,
        now: this.#o.now,
        clientPackageEntries: s.request.installationEntries ?? [],
      }),
      now: this.#o.now,
      record: false,
    }).verify(s.bytes);
    if (!report.ok)
      return { ok: false, code: report.code ?? 'VERIFY_ERROR', reason: report.message };
    const fresh = loadEnforcedPolicy({
      dirs,
      home: s.home,
      now: this.#o.now,
      source: s.request.manifestPath,
      bytes: s.bytes,
      verify: false,
      enforce: true,
      ...(s.request.guardrails === undefined ? {} : { guardrails: s.request.guardrails }),
    });
    const digestOf = (p: EnforcedPolicy): string | undefined =>
      p.guardrails.inForce ? p.guardrails.digest : undefined;
    if (digestOf(fresh) !== digestOf(s.policy)) {
      s.policy = fresh;
      s.proxy?.reload(fresh.pdp, fresh.ref);
    }
    return { ok: true };
  }

  /** A standalone proxy's SIGHUP: the client's manifest bytes, verified and put in force. */
  reload(s: DaemonSession, bytes: Buffer): { inForce: boolean; message: string } {
    if (s.control === undefined)
      throw new CordonError('DAEMON_FORBIDDEN', `session ${s.id} is not a standalone proxy`, {
        hint: 'only `cordon proxy` sessions reload a manifest; start a new `cordon run` instead',
      });
    s.pending = bytes;
    s.lastDiagnostic = undefined;
    const inForce = s.control.reload();
    if (inForce) this.#save(s);
    return {
      inForce,
      message:
        s.lastDiagnostic ??
        (inForce
          ? `reloaded manifest ${s.policy.ref.version} (${s.policy.ref.digest})`
          : 'reload failed: everything is denied until a verified manifest is loaded'),
    };
  }

  destinations(s: DaemonSession): {
    destination: string;
    requests: number;
    connections: number;
    denied: number;
    bytesOut: number;
    bytesIn: number;
  }[] {
    const all: ReadonlyMap<string, Readonly<DestinationStats>> = s.proxy?.stats().destinations ??
    new Map<string, DestinationStats>();
    return [...all.entries()].map(([destination, d]) => ({
      destination,
      requests: d.requests,
      connections: d.connections,
      denied: d.denied,
      bytesOut: d.bytesOut,
      bytesIn: d.bytesIn,
    }));
  }

  decide(s: DaemonSession, requests: readonly unknown[]): Decision[] {
    return requests.map((r) => s.policy.pdp.decide(r as PolicyRequest));
  }

  /**
   * Record the sandbox's pid, which quarantine signals. The client's word is not enough: the
   * pid must be a live process of the session's user descending from the session's client
   * (pinned by its start time), or an ordinary user could have the service kill itself or
   * anything else it may signal.
   */
  setState(
    s: DaemonSession,
    state: { sandboxPid?: number | undefined; sandboxStart?: string | undefined },
  ): void {
    if (state.sandboxPid !== undefined && !isAlive(state.sandboxPid, state.sandboxStart)) {
      // The sandbox already ended (a command that ran for a moment): nothing left to signal.
    } else if (state.sandboxPid !== undefined) {
      const pid = state.sandboxPid;
      const start = state.sandboxStart ?? startTime(pid);
      if (!startedBy(pid, start, s.uid, s.clientPid))
        throw new CordonError(
          'REQUEST_INVALID',
          `sandboxPid ${pid} is not a running process of uid ${s.uid} started by the session's client (pid ${s.clientPid})`,
          { hint: 'send the pid of the sandbox this client launched, with its start time' },
        );
      s.sandboxPid = pid;
      if (start !== undefined) s.sandboxStart = start;
    } else if (state.sandboxStart !== undefined) s.sandboxStart = state.sandboxStart;
    this.#save(s);
  }

  /**
   * Append a session client's events, in its order, each once: a resend after a lost answer
   * (the daemon restarted) is recognised by its sequence number and not written again. The
   * caller's identity from the kernel, the session and this device replace whatever the event
   * said about them.
   */
  appendEvents(
    s: DaemonSession,
    peer: Peer,
    events: readonly { seq: number; event: Record<string, unknown> }[],
  ): Promise<{ acked: number; logSeq: number }> {
    const run = async (): Promise<{ acked: number; logSeq: number }> => {
      // The whole batch is queued at once, in order, so it shares the log's group writes; it is
      // acknowledged afterwards only as far as every event is durable.
      const queued: { seq: number; done: Promise<{ seq: number }> }[] = [];
      let last = s.acked;
      let stop: Error | undefined;
      // Who sent the batch and where: the same for every event in it.
      const ctx = this.context(s.policy.ref.agent, s.id, peer);
      const user = ctx.actor.user;
      const stamp: Stamp = {
        device: deviceObject(ctx.device),
        actor: {
          app_name: s.policy.ref.agent,
          process: { name: 'cordon', pid: peer.pid },
          session: { uid: s.id },
          ...(user === undefined
            ? {}
            : { user: { name: user.name, ...(user.uid === undefined ? {} : { uid: user.uid }) } }),
        },
      };
      for (const { seq, event } of events) {
        if (seq <= last) continue;
        if (seq !== last + 1) {
          stop = new CordonError(
            'EVENT_SEQUENCE_GAP',
            `event ${seq} follows ${last}: events must come in order, without gaps`,
            { hint: 'resend from the first event not acknowledged' },
          );
          break;
        }
        let done: Promise<{ seq: number }>;
        try {
          const head = this.log.head.seq;
          // Every string in it was checked on receipt (both transports refuse lone surrogates).
          done = this.log.append(this.#stamp(stamp, event, seq), { wellFormed: true });
          // The log sequences a record as append() is called; an event it refused outright
          // (not storable as sent, or the log closed) did not take a place in the order.
          if (this.log.head.seq === head) await done;
        } catch (e) {
          const code = e instanceof CordonError ? e.code : '';
          if (code !== 'EVENT_INVALID' && code !== 'AUDIT_EVENT_INVALID') {
            stop = e instanceof Error ? e : new Error(String(e));
            break;
          }
          // An event that cannot be stored as sent is recorded as refused, so the sequence goes
          // on and the log shows that the client sent something it should not have.
          done = this.log.append({
            ...apiActivityEvent(this.context(s.policy.ref.agent, s.id, peer), {
              activity: 'other',
              operation: `event ${seq} refused: ${(e as Error).message}`,
              service: 'cordond.events',
              control: {
                decision: {
                  effect: 'deny',
                  rule: 'events',
                  code: 'EVENT_INVALID',
                  reason: (e as Error).message,
                },
                manifest: s.policy.ref,
              },
            }),
            unmapped: { client_seq: seq },
          });
        }
        queued.push({ seq, done });
        last = seq;
      }
      let logSeq = 0;
      const results = await Promise.allSettled(queued.map((q) => q.done));
      for (const [i, r] of results.entries()) {
        if (r.status === 'rejected') {
          stop = r.reason instanceof Error ? r.reason : new Error(String(r.reason));
          break;
        }
        logSeq = r.value.seq;
        s.acked = queued[i]?.seq ?? s.acked;
      }
      if (stop !== undefined) throw stop;
      return { acked: s.acked, logSeq };
    };
    // On a full disk the session's reserved space is given up for its last records (its
    // Terminate) and they are tried once more, so they are written whenever at all possible.
    // Other events wait for space like any other write.
    const last = events.some(
      (e) => e.event['class_uid'] === 1007 && e.event['activity_id'] === TERMINATE_ACTIVITY,
    );
    const withReserve = async (): Promise<{ acked: number; logSeq: number }> => {
      try {
        return await run();
      } catch (e) {
        const file = this.#reserveFile(s);
        if (
          !last ||
          !(e instanceof CordonError) ||
          e.code !== 'AUDIT_WRITE_FAILED' ||
          !existsSync(file)
        )
          throw e;
        rmSync(file, { force: true });
        this.#notice(s, `audit: ${e.message}; retrying with the space reserved for it`);
        return await run();
      }
    };
    const p = s.tail.then(withReserve, withReserve);
    s.tail = p.catch(() => undefined);
    return p;
  }

  #stamp(stamp: Stamp, event: Record<string, unknown>, seq: number): OcsfEvent {
    const oversize = event[OVERSIZE];
    if (typeof oversize === 'number')
      throw new CordonError(
        'EVENT_INVALID',
        `event ${seq} is ${oversize} bytes; at most ${MAX_EVENT_BYTES}`,
        { hint: 'send smaller events' },
      );
    const cls = event['class_uid'];
    if (typeof cls !== 'number' || !CLIENT_CLASSES.has(cls))
      throw new CordonError(
        'EVENT_INVALID',
        `class_uid ${String(cls)} is not one a session's client may append`,
        { hint: `send one of ${[...CLIENT_CLASSES].join(', ')}` },
      );
    const actor = (event['actor'] ?? {}) as Record<string, unknown>;
    const metadata = (event['metadata'] ?? {}) as Record<string, unknown>;
    const unmapped = (event['unmapped'] ?? {}) as Record<string, unknown>;
    if (
      typeof actor !== 'object' ||
      actor === null ||
      typeof metadata !== 'object' ||
      metadata === null ||
      typeof unmapped !== 'object' ||
      unmapped === null
    )
      throw new CordonError('EVENT_INVALID', 'actor and metadata must be objects', {
        hint: 'send events built by the audit event builders',
      });
    // In place: the event was parsed from this request for this call alone, and a copy of every
    // event (a dozen fields each) was the largest cost of a batch after parsing it. Keys stay in
    // code-unit order, as the event builders make them: the log's canonical form of an event in
    // that order is JSON.stringify's, several times faster than serialising it key by key. An
    // actor with nothing but the fields the service sets (what its clients send) is the batch's
    // one stamped actor, shared.
    let own = true;
    for (const k in actor) if (!STAMPED_ACTOR.has(k)) own = false;
    if (own) event['actor'] = stamp.actor;
    else {
      const merged = { ...actor, ...stamp.actor };
      // No identity the client claims stays: without the kernel's, the actor names no user.
      if (!('user' in stamp.actor)) delete merged['user'];
      event['actor'] = inKeyOrder(merged);
    }
    event['metadata'] = metadata;
    event['unmapped'] = inKeyOrder({ ...unmapped, client_seq: seq });
    if ('device' in event) {
      event['device'] = stamp.device;
      return event as unknown as OcsfEvent;
    }
    return inKeyOrder({ ...event, device: stamp.device }) as unknown as OcsfEvent;
  }

  watch(s: DaemonSession, send: (m: WatchMessage) => void): () => void {
    s.watchers.add(send);
    send({ type: 'attached', session: s.id });
    if (s.quarantinedAt !== undefined)
      send({
        type: 'quarantine',
        code: 'SESSION_QUARANTINED',
        reason: s.quarantineReason ?? 'quarantined',
      });
    return () => s.watchers.delete(send);
  }

  /**
   * Quarantine: egress denied at once, the session marked, its client told to kill the sandbox
   * (it runs as the session's user; the daemon may not be able to signal it), and the event.
   */
  async quarantine(s: DaemonSession, reason: string, code = 'SESSION_QUARANTINED'): Promise<void> {
    if (s.control !== undefined) s.control.quarantine(reason);
    else s.proxy?.denyAll(reason);
    if (s.quarantinedAt !== undefined) return;
    s.quarantinedAt = this.#o.now().toISOString();
    s.quarantineReason = reason;
    for (const w of s.watchers) w({ type: 'quarantine', code, reason });
    // Where the daemon may signal the sandbox (same user, or root), it does not wait for the client.
    if (
      s.sandboxPid !== undefined &&
      s.sandboxStart !== undefined &&
      isAlive(s.sandboxPid, s.sandboxStart)
    ) {
      try {
        process.kill(s.sandboxPid, 'SIGKILL');
      } catch {
        // another user's sandbox: its client kills it
      }
    }
    this.#save(s);
    await this.log.append(
      processActivityEvent(this.context(s.policy.ref.agent, s.id, undefined, s.uid), {
        activity: 'terminate',
        path: s.request.command[0] ?? '',
        argv: s.request.command,
        ...(s.sandboxPid === undefined ? {} : { pid: s.sandboxPid }),
        control: {
          decision: { effect: 'deny', rule: 'quarantine', code, reason },
          manifest: s.policy.ref,
        },
      }),
    );
  }

  /**
   * `cordon quarantine`: deny, kill where this process may (its client kills the rest), wait for
   * containment and the session's last records, and write the evidence bundle.
   */
  async quarantineWithEvidence(
    s: DaemonSession,
    reason: string,
    startedAt: number,
    out: string | undefined,
  ): Promise<QuarantineResponse> {
    if (out !== undefined && this.#o.paths.mode === 'system')
      throw new CordonError(
        'DAEMON_OPTION_FORBIDDEN',
        '--out is not taken by the system service: evidence stays in its state directory',
        {
          hint: `drop --out; the bundle is written to ${join(this.#o.paths.dirs.stateDir, 'evidence')}`,
        },
      );
    const q = await quarantineSession(
      {
        record: this.record(s),
        manifest: s.bytes,
        deny: () => this.quarantine(s, reason),
        isOpen: () => this.sessions.has(s.id),
      },
      {
        stateDir: this.#o.paths.dirs.stateDir,
        now: this.#o.now,
        startedAt,
        ...(out === undefined ? {} : { outDir: out }),
      },
    );
    return {
      ok: true,
      session: this.info(s),
      contained: q.contained,
      sandboxGone: q.sandboxGone,
      denied: q.denied,
      containmentMs: Number(q.containmentMs.toFixed(1)),
      processesKilled: q.processesKilled,
      evidence: {
        path: q.bundle.path,
        sha256: q.bundle.sha256,
        records: q.bundle.records,
        warnings: [...q.bundle.warnings],
      },
    };
  }

  /** The session as the evidence bundle describes it. */
  record(s: DaemonSession): SessionRecord {
    const i = this.info(s);
    return {
      id: s.id,
      agent: i.agent,
      manifestVersion: i.manifestVersion,
      manifestDigest: i.manifestDigest,
      manifestPath: i.manifestPath,
      command: i.command,
      cordonPid: s.clientPid,
      ...(s.clientStart === undefined ? {} : { cordonStart: s.clientStart }),
      ...(s.sandboxPid === undefined ? {} : { sandboxPid: s.sandboxPid }),
      ...(s.sandboxStart === undefined ? {} : { sandboxStart: s.sandboxStart }),
      startedAt: s.startedAt,
      runDir: s.egressDir,
      auditSeqAtStart: s.auditSeqAtStart,
      bytesOut: i.bytesOut,
      bytesIn: i.bytesIn,
      ...(s.quarantinedAt === undefined ? {} : { quarantinedAt: s.quarantinedAt }),
      ...(s.request.unsafeNoSandbox === true ? { unsafeNoSandbox: true } : {}),
    };
  }

  /** Space kept for the session's last records, given up when the disk is full at its end. */
  #reserve(s: DaemonSession): void {
    try {
      writeFileSync(this.#reserveFile(s), Buffer.alloc(RESERVE_BYTES), { mode: 0o600 });
    } catch (e) {
      rmSync(this.#reserveFile(s), { force: true });
      this.#o.onDiagnostic(`session ${s.id}: no space reserved: ${(e as Error).message}`);
    }
  }

  #reserveFile(s: DaemonSession): string {
    return join(this.#dir, `.${s.id}.reserve`);
  }

  #notice(s: DaemonSession, text: string): void {
    for (const w of s.watchers) w({ type: 'notice', text });
  }

  /**
   * Called periodically: a log that cannot be written (a full disk) denies every session's egress
   * and tells each session's user why; once a write works again, each session records what
   * failed and since when, and egress is restored. Agents keep running throughout.
   */
  watchWrites(): void {
    const err = this.log.lastError;
    if (err !== undefined && this.#failure === undefined) {
      this.#failure = { since: this.#o.now(), error: err.message };
      for (const s of this.sessions.values()) {
        s.proxy?.setUnavailable(`audit log: ${err.message}`);
        this.#notice(
          s,
          `cannot write the audit log (${err.message}): egress is denied until it can be written; the agent keeps running`,
        );
      }
      return;
    }
    const f = this.#failure;
    if (f === undefined || this.#resuming) return;
    this.#resuming = true;
    const all = [...this.sessions.values()];
    const record = (s: DaemonSession | undefined): Promise<unknown> =>
      this.log.append(
        logActivityEvent(this.context(s?.policy.ref.agent ?? 'cordond', s?.id, undefined), {
          activity: 'resume',
          detail: `${s === undefined ? 'the endpoint service' : `session ${s.id}`}: writing the audit log failed from ${f.since.toISOString()} (${f.error}); egress was denied meanwhile and works again`,
          failure: { since: f.since.toISOString(), what: ['audit log'], error: f.error },
        }),
      );
    (all.length === 0 ? record(undefined) : Promise.all(all.map(record)))
      .then(
        () => {
          this.#failure = undefined;
          for (const s of all) {
            if (s.quarantinedAt === undefined) s.proxy?.setUnavailable(undefined);
            this.#notice(s, 'the audit log can be written again: egress restored');
          }
        },
        () => undefined,
      )
      .finally(() => {
        this.#resuming = false;
      });
  }

  /**
   * Once the session's events in hand are settled: refuses (EVENTS_PENDING) unless every event up
   * to the client's `lastSeq` is durable. A close sent behind its events, on the same connection,
   * is answered once they are written; one that overtook them, or followed events that failed,
   * is refused and sent again after them.
   */
  async settled(s: DaemonSession, lastSeq: number): Promise<void> {
    await s.tail;
    if (s.acked < lastSeq)
      throw new CordonError(
        'EVENTS_PENDING',
        `events up to ${lastSeq} are not all durable (${s.acked} are): the session stays open`,
        { hint: 'send the events again, then close' },
      );
  }

  async close(s: DaemonSession): Promise<void> {
    rmSync(this.#reserveFile(s), { force: true });
    this.sessions.delete(s.id);
    await s.tail;
    await s.proxy?.close();
    // A session's records end under a signed checkpoint, as when its writer closed the log.
    await this.log
      .checkpoint()
      .catch((e: unknown) => this.#o.onDiagnostic(`checkpoint: ${(e as Error).message}`));
    rmSync(s.egressDir, { recursive: true, force: true });
    rmSync(join(this.#dir, `${s.id}.json`), { force: true });
  }

  #save(s: DaemonSession): void {
    const f: SessionFile = {
      id: s.id,
      kind: s.kind,
      uid: s.uid,
      clientPid: s.clientPid,
      ...(s.clientStart === undefined ? {} : { clientStart: s.clientStart }),
      capabilityHash: s.capabilityHash.toString('hex'),
      manifest: s.bytes.toString('base64'),
      request: s.request,
      home: s.home,
      startedAt: s.startedAt,
      auditSeqAtStart: s.auditSeqAtStart,
      ...(s.sandboxPid === undefined ? {} : { sandboxPid: s.sandboxPid }),
      ...(s.sandboxStart === undefined ? {} : { sandboxStart: s.sandboxStart }),
      ...(s.quarantinedAt === undefined ? {} : { quarantinedAt: s.quarantinedAt }),
      ...(s.quarantineReason === undefined ? {} : { quarantineReason: s.quarantineReason }),
    };
    const tmp = join(this.#dir, `.${s.id}.tmp`);
    writeFileSync(tmp, JSON.stringify(f) + '\n', { mode: 0o600 });
    renameSync(tmp, join(this.#dir, `${s.id}.json`));
  }

  /**
   * Take back the sessions a previous daemon served: each one's manifest is verified again (one
   * revoked meanwhile comes back quarantined), its proxy listens again at the same path, and the
   * client sequence numbers already in the log are found so resent events are not written twice.
   * A session whose client is gone is ended and recorded.
   */
  async restore(): Promise<void> {
    if (!existsSync(this.#dir)) return;
    const files = readdirSync(this.#dir).filter((n) => n.endsWith('.json'));
    const restored: DaemonSession[] = [];
    for (const name of files) {
      let f: SessionFile;
      try {
        f = parseStrictJson(readFileSync(join(this.#dir, name))) as unknown as SessionFile;
      } catch (e) {
        this.#o.onDiagnostic(`session record ${name} unreadable: ${(e as Error).message}`);
        continue;
      }
      // The id names the session's files (its record, its egress directory, which closing it
      // removes): one that is not the file's own random id is not a record this service wrote.
      if (f.id !== name.slice(0, -'.json'.length) || !SESSION_ID.test(f.id)) {
        this.#o.onDiagnostic(`session record ${name} names another id; removed, not taken back`);
        rmSync(join(this.#dir, name), { force: true });
        continue;
      }
      const bytes = Buffer.from(f.manifest, 'base64');
      let policy: EnforcedPolicy;
      let invalid: string | undefined;
      try {
        policy = this.#load(bytes, f.request.manifestPath, f.home, false, f.request.guardrails);
      } catch (e) {
        invalid = (e as Error).message;
        // Verification no longer holds: serve it quarantined (deny-all) until its client ends.
        try {
          policy = loadEnforcedPolicy({
            dirs: this.#o.paths.dirs,
            home: f.home,
            now: this.#o.now,
            source: f.request.manifestPath,
            bytes,
            verify: false,
            lexical: true,
          });
        } catch {
          rmSync(join(this.#dir, name), { force: true });
          continue;
        }
      }
      // Quarantine signals the sandbox: only while it is still the process the session's client
      // started (a pid reused meanwhile, or one the record merely names, is dropped).
      const sandbox =
        f.sandboxPid !== undefined && startedBy(f.sandboxPid, f.sandboxStart, f.uid, f.clientPid);
      const s: DaemonSession = {
        id: f.id,
        kind: f.kind,
        uid: f.uid,
        clientPid: f.clientPid,
        clientStart: f.clientStart,
        capabilityHash: Buffer.from(f.capabilityHash, 'hex'),
        bytes,
        request: f.request,
        home: f.home,
        startedAt: f.startedAt,
        auditSeqAtStart: f.auditSeqAtStart,
        policy,
        proxy: undefined,
        egressDir: sessionEgressDir(this.#o.paths.runtimeDir, f.id),
        ...(sandbox ? { sandboxPid: f.sandboxPid, sandboxStart: f.sandboxStart } : {}),
        ...(f.quarantinedAt === undefined ? {} : { quarantinedAt: f.quarantinedAt }),
        ...(f.quarantineReason === undefined ? {} : { quarantineReason: f.quarantineReason }),
        acked: 0,
        tail: Promise.resolve(),
        watchers: new Set(),
      };
      restored.push(s);
      this.sessions.set(s.id, s);
      if (!isAlive(s.clientPid, s.clientStart)) {
        await this.log.append(
          logActivityEvent(this.context(s.policy.ref.agent, s.id, undefined, s.uid), {
            activity: 'resume',
            detail: `session ${s.id}: its client (pid ${s.clientPid}) ended while the service was down; the session is closed`,
          }),
        );
        await this.close(s);
        continue;
      }
      // A manifest that no longer verifies is quarantined before its proxy listens again, so the
      // proxy starts denying everything (never a moment of egress under a revoked manifest).
      if (invalid !== undefined) await this.quarantine(s, invalid, 'MANIFEST_NO_LONGER_VALID');
      await this.#startProxy(s);
    }
    this.#recoverAcked(restored.filter((s) => this.sessions.has(s.id)));
  }

  /** The highest client sequence number of each session already in the log. */
  #recoverAcked(sessions: readonly DaemonSession[]): void {
    if (sessions.length === 0) return;
    const byId = new Map(sessions.map((s) => [s.id, s]));
    const from = Math.min(...sessions.map((s) => s.auditSeqAtStart)) - 1;
    readAfter(auditPaths(this.#o.paths.dirs.stateDir), from, (line) => {
      const e = parseRecordLine(line).event as {
        actor?: { session?: { uid?: unknown } };
        unmapped?: { client_seq?: unknown };
      };
      const id = e.actor?.session?.uid;
      const seq = e.unmapped?.client_seq;
      const s = typeof id === 'string' ? byId.get(id) : undefined;
      if (s !== undefined && typeof seq === 'number' && seq > s.acked) s.acked = seq;
      return true;
    });
  }

  /** Sessions whose client went away without closing: ended, recorded. */
  async reap(): Promise<void> {
    for (const s of [...this.sessions.values()]) {
      if (isAlive(s.clientPid, s.clientStart)) continue;
      await this.log
        .append(
          logActivityEvent(this.context(s.policy.ref.agent, s.id, undefined, s.uid), {
            activity: 'resume',
            detail: `session ${s.id}: its client (pid ${s.clientPid}) exited without closing it; the session is closed`,
          }),
        )
        .catch((e: unknown) => this.#o.onDiagnostic(`audit: ${(e as Error).message}`));
      await this.close(s);
    }
  }

  /** The manifests of the sessions `peer` may see (all of them without a peer, or for an admin). */
  manifestsInForce(
    peer?: Peer,
  ): { agent: string; version: string; digest: string; sessions: number }[] {
    const by = new Map<string, { ref: ManifestRef; n: number }>();
    for (const s of this.sessions.values()) {
      if (peer !== undefined && s.uid !== peer.uid && !this.isAdmin(peer)) continue;
      const k = s.policy.ref.digest;
      const e = by.get(k) ?? { ref: s.policy.ref, n: 0 };
      e.n++;
      by.set(k, e);
    }
    return [...by.values()].map(({ ref, n }) => ({ ...ref, sessions: n }));
  }

  async closeAll(): Promise<void> {
    // The sessions stay on disk: a restarted daemon takes them back.
    for (const s of this.sessions.values()) {
      await s.tail;
      await s.proxy?.close();
    }
  }
}

/**
 * Whether `pid` is alive, is the process that started at `start`, runs as `uid` (real uid, from
 * the kernel) and descends from `ancestor`.
 */
function startedBy(pid: number, start: string | undefined, uid: number, ancestor: number): boolean {
  if (pid <= 1 || pid === process.pid || start === undefined || !isAlive(pid, start)) return false;
  const field = (p: number, re: RegExp): number | undefined => {
    try {
      const m = re.exec(readFileSync(`/proc/${p}/status`, 'latin1'));
      return m?.[1] === undefined ? undefined : Number(m[1]);
    } catch {
      return undefined;
    }
  };
  if (field(pid, /^Uid:\s+(\d+)/m) !== uid) return false;
  let p = pid;
  for (let depth = 0; depth < 64; depth++) {
    const parent = field(p, /^PPid:\s+(\d+)/m);
    if (parent === undefined || parent <= 1) return false;
    if (parent === ancestor) return true;
    p = parent;
  }
  return false;
}

function withoutManifest(req: OpenSessionRequest): Omit<OpenSessionRequest, 'manifest'> {
  const rest: Partial<OpenSessionRequest> = { ...req };
  delete rest.manifest;
  return rest as Omit<OpenSessionRequest, 'manifest'>;
}

/** `o` when its own keys come in code-unit order, else a shallow copy with them in that order. */
function inKeyOrder(o: Record<string, unknown>): Record<string, unknown> {
  let prev: string | undefined;
  for (const k of Object.keys(o)) {
    if (prev !== undefined && !(prev < k))
      return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    prev = k;
  }
  return o;
}

/** What the service sets on every event of a session's batch (from the kernel and itself). */
interface Stamp {
  readonly device: Record<string, unknown>;
  readonly actor: Record<string, unknown>;
}

/** The actor fields the service sets; an event's actor with no others is replaced whole. */
const STAMPED_ACTOR = new Set(['app_name', 'process', 'session', 'user']);
