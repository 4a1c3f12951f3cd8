import { randomUUID } from 'node:crypto';
import { CordonError } from '../errors.js';
import { manifestLifecycleEvent, type ManifestActivity } from '../audit/events.js';
import { openDeviceLog } from '../audit/open.js';
import { readProxyConfig } from '../egress/config.js';
import { EgressProxy, type ListenTarget } from '../egress/proxy.js';
import { parseResolveEntries, staticResolver, systemResolver } from '../egress/resolver.js';
import { isLoopbackHost } from '../manifest/ip.js';
import { describeGuardrails, guardrailsFacts } from '../policy/in-force.js';
import { reapSessions } from '../sandbox/sessions.js';
import { buildPdp } from './check.js';
import { EXIT, resolveDirs, usage, type CliIo, type GlobalOptions } from './context.js';

export interface ProxyOptions extends GlobalOptions {
  manifest: string;
  listen?: string;
  unix?: string;
  socks?: string;
  resolve?: string[];
  config?: string;
  guardrails?: string | false;
}

/** What the running proxy can be told from outside: stop, reload the manifest, deny all. */
export interface ProxyControl {
  readonly stop: AbortSignal;
  /** Called with a handler the caller invokes on SIGHUP (reload) and SIGUSR1 (deny all). */
  readonly subscribe?: (handler: (what: 'reload' | 'deny-all') => void) => void;
}

/** Parse `--listen HOST:PORT`; only loopback addresses (anyone who can connect gets egress). */
export function parseListen(text: string, flag = '--listen'): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (m === null || !Number.isInteger(port) || port > 65535)
    throw usage(`${flag} "${text}" is not HOST:PORT`, `e.g. ${flag} 127.0.0.1:3128`);
  const host = (m[1] ?? '').replace(/^\[|\]$/g, '');
  if (!isLoopbackHost(host) || host === 'localhost' || host.endsWith('.localhost'))
    throw usage(
      `${flag} ${text} is not a loopback address`,
      'listen on 127.0.0.1 or [::1] (anyone who can connect to the proxy gets the agent’s egress), or use --unix PATH',
    );
  return { host, port };
}

/**
 * `cordon proxy`: verify the manifest, open the audit log, and serve until stopped. SIGHUP
 * reloads the manifest (a manifest that fails verification puts the proxy in deny-all until a
 * good one is loaded); SIGUSR1 denies everything and closes every tunnel (quarantine).
 */
export async function runProxy(
  io: CliIo,
  opts: ProxyOptions,
  control: ProxyControl,
): Promise<number> {
  if (opts.listen !== undefined && opts.unix !== undefined)
    throw usage('give --listen or --unix, not both', 'drop one of them');
  const target: ListenTarget =
    opts.unix !== undefined ? { path: opts.unix } : parseListen(opts.listen ?? '127.0.0.1:3128');
  const socks = opts.socks === undefined ? undefined : parseListen(opts.socks, '--socks');
  const dirs = resolveDirs(io, opts);
  const config = readProxyConfig(dirs.policyDir, opts.config);
  const table = parseResolveEntries(opts.resolve ?? []);
  const resolver =
    Object.keys(table).length === 0 ? systemResolver() : staticResolver(table, systemResolver());
  const load = (): ReturnType<typeof buildPdp> =>
    buildPdp(io, {
      manifest: opts.manifest,
      verify: true,
      // The manifest put in force is accepted: a later reload to an older version is refused.
      recordAcceptance: true,
      enforce: true,
      ...(opts.policyDir === undefined ? {} : { policyDir: opts.policyDir }),
      ...(opts.stateDir === undefined ? {} : { stateDir: opts.stateDir }),
      ...(opts.guardrails === undefined ? {} : { guardrails: opts.guardrails }),
    });
  // Fails closed: an unverifiable manifest means no proxy at all.
  let loaded = load();
  const opened = openDeviceLog(dirs);
  reapSessions(dirs.stateDir);
  const session = randomUUID();
  const context = {
    ...opened.context,
    actor: { ...opened.context.actor, name: loaded.ref.agent, session },
  };
  /** The manifest put in force, replaced or withdrawn, as an Application Lifecycle event. */
  const lifecycle = (
    activity: ManifestActivity,
    ok: boolean,
    code: string,
    reason: string,
  ): Promise<unknown> =>
    opened.log.append(
      manifestLifecycleEvent(
        { ...context, time: io.now().getTime() },
        {
          activity,
          manifest: loaded.ref,
          ok,
          code,
          reason: ok ? `${reason}; guardrails: ${describeGuardrails(loaded.guardrails)}` : reason,
          ...(ok ? { unmapped: { guardrails: guardrailsFacts(loaded.guardrails) } } : {}),
        },
      ),
    );
  // A reload's event that cannot be written is reported; the proxy then denies on its own.
  const lifecycleLater = (...a: Parameters<typeof lifecycle>): void => {
    lifecycle(...a).catch((e: unknown) =>
      io.stderr(`cordon proxy: audit: ${(e as Error).message}\n`),
    );
  };
  let proxy: EgressProxy;
  try {
    await lifecycle(
      'enable',
      true,
      'VERIFIED',
      'the egress proxy verified the manifest and put it in force',
    );
    proxy = await EgressProxy.start(
      {
        pdp: loaded.pdp,
        manifest: loaded.ref,
        audit: opened.log,
        context,
        resolver,
        limits: config.limits,
        onDiagnostic: (m) => io.stderr(`cordon proxy: ${m}\n`),
        onOpenFrom: (seq) => opened.spans.hint.update(seq),
      },
      target,
      socks === undefined ? {} : { socks },
    );
  } catch (e) {
    await opened.log.close();
    throw e;
  }
  if (socks !== undefined)
    io.stdout(`cordon proxy: SOCKS5 on socks5h://${socks.host}:${proxy.socksPort}\n`);
  io.stdout(
    `cordon proxy: listening on ${proxy.url} (agent ${loaded.ref.agent} ${loaded.ref.version}, manifest ${loaded.ref.digest}, session ${session}; guardrails: ${describeGuardrails(loaded.guardrails)})\n`,
  );
  let reloadFailed = false;
  let quarantined = false;
  control.subscribe?.((what) => {
    if (what === 'deny-all') {
      quarantined = true;
      proxy.denyAll('the agent is quarantined: all network access is suspended');
      io.stderr('cordon proxy: deny-all: every tunnel closed, every request denied\n');
      return;
    }
    try {
      loaded = load();
      const closed = proxy.reload(loaded.pdp, loaded.ref);
      // A good manifest lifts the deny-all of a failed reload, never a quarantine.
      if (reloadFailed && !quarantined) proxy.resume();
      reloadFailed = false;
      io.stderr(
        `cordon proxy: reloaded manifest ${loaded.ref.version} (${loaded.ref.digest}); ${closed} tunnel(s) it no longer allows closed\n`,
      );
      lifecycleLater(
        'update',
        true,
        'VERIFIED',
        'the egress proxy verified the manifest again and put it in force (reload)',
      );
    } catch (e) {
      const msg = e instanceof CordonError ? `${e.code}: ${e.message}` : (e as Error).message;
      reloadFailed = true;
      lifecycleLater(
        'disable',
        false,
        e instanceof CordonError ? e.code : 'VERIFY_ERROR',
        `manifest reload failed, egress denied until a verified manifest is loaded: ${msg}`,
      );
      if (!quarantined)
        proxy.denyAll(
          `the manifest reload failed (${msg}); nothing is allowed until a verified manifest is loaded`,
        );
      io.stderr(`cordon proxy: reload failed, denying everything: ${msg}\n`);
    }
  });
  await new Promise<void>((resolve) => {
    if (control.stop.aborted) resolve();
    else control.stop.addEventListener('abort', () => resolve(), { once: true });
  });
  io.stderr('cordon proxy: draining\n');
  await proxy.close();
  await opened.log.close();
  const s = proxy.stats();
  for (const [dest, d] of s.destinations)
    io.stderr(
      `cordon proxy: ${dest}: ${d.requests} request(s), ${d.connections} tunnel(s), ${d.denied} denied, ${d.bytesOut} B out, ${d.bytesIn} B in\n`,
    );
  return EXIT.OK;
}
