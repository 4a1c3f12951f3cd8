import { randomUUID } from 'node:crypto';
import { openDeviceLog } from '../audit/open.js';
import { readProxyConfig } from '../egress/config.js';
import { EgressProxy, type ListenTarget } from '../egress/proxy.js';
import { loadEnforcedPolicy, readManifestFile, type EnforcedPolicy } from '../endpoint/policy.js';
import { manifestLifecycle, ProxyPolicyControl } from '../endpoint/proxy-control.js';
import { resolverFor } from '../endpoint/resolver.js';
import { isLoopbackHost } from '../manifest/ip.js';
import { describeGuardrails } from '../policy/in-force.js';
import { reapSessions } from '../sandbox/sessions.js';
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
  const resolver = resolverFor(opts.resolve);
  const load = (): EnforcedPolicy =>
    loadEnforcedPolicy({
      dirs,
      home: io.home,
      now: io.now,
      source: opts.manifest,
      bytes: readManifestFile(opts.manifest),
      verify: true,
      // The manifest put in force is accepted: a later reload to an older version is refused.
      recordAcceptance: true,
      enforce: true,
      ...(opts.guardrails === undefined ? {} : { guardrails: opts.guardrails }),
    });
  // Fails closed: an unverifiable manifest means no proxy at all.
  const loaded = load();
  const opened = openDeviceLog(dirs);
  reapSessions(dirs.stateDir);
  const session = randomUUID();
  const context = {
    ...opened.context,
    actor: { ...opened.context.actor, name: loaded.ref.agent, session },
  };
  const diag = (m: string): void => io.stderr(`cordon proxy: ${m}\n`);
  let proxy: EgressProxy;
  try {
    await opened.log.append(
      manifestLifecycle(context, io.now, loaded, {
        activity: 'enable',
        ok: true,
        code: 'VERIFIED',
        reason: 'the egress proxy verified the manifest and put it in force',
      }),
    );
    proxy = await EgressProxy.start(
      {
        pdp: loaded.pdp,
        manifest: loaded.ref,
        audit: opened.log,
        context,
        resolver,
        limits: config.limits,
        onDiagnostic: diag,
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
  const policyControl = new ProxyPolicyControl({
    proxy,
    policy: loaded,
    load,
    append: (e) => opened.log.append(e),
    context,
    now: io.now,
    onDiagnostic: diag,
  });
  control.subscribe?.((what) => policyControl.handle(what));
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
