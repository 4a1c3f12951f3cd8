import { resolve as resolvePath } from 'node:path';
import { connectDaemon } from '../daemon/client.js';
import { ClientSession } from '../daemon/client-session.js';
import { readManifestFile } from '../endpoint/policy.js';
import { isLoopbackHost } from '../manifest/ip.js';
import { openSessionAnswer } from '../protocol/answers.js';
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
  const listen = opts.unix !== undefined ? undefined : parseListen(opts.listen ?? '127.0.0.1:3128');
  const socks = opts.socks === undefined ? undefined : parseListen(opts.socks, '--socks');
  const dirs = resolveDirs(io, opts);
  const diag = (m: string): void => io.stderr(`cordon proxy: ${m}\n`);
  // The endpoint service verifies the manifest (fails closed: no verified manifest, no proxy),
  // runs the proxy and records every decision; this process holds the session open.
  const client = await connectDaemon(io.env, io.home, dirs);
  const opened = await client.request(
    'POST',
    '/v1/sessions',
    {
      kind: 'proxy',
      manifest: readManifestFile(opts.manifest).toString('base64'),
      manifestPath: resolvePath(opts.manifest),
      command: ['cordon', 'proxy'],
      cwd: process.cwd(),
      home: io.home,
      ...(listen === undefined ? {} : { listen }),
      ...(opts.unix === undefined ? {} : { unix: resolvePath(opts.unix) }),
      ...(socks === undefined ? {} : { socks }),
      ...(opts.guardrails === undefined ? {} : { guardrails: opts.guardrails }),
      ...(opts.resolve === undefined ? {} : { resolve: opts.resolve }),
      ...(opts.config === undefined ? {} : { config: resolvePath(opts.config) }),
    },
    openSessionAnswer,
  );
  const session = new ClientSession(client, opened, diag);
  session.watch((code, reason) => diag(`the service denies everything now (${code}): ${reason}`));
  if (socks !== undefined)
    io.stdout(
      `cordon proxy: SOCKS5 on socks5h://${socks.host}:${opened.socksPort ?? socks.port}\n`,
    );
  io.stdout(
    `cordon proxy: listening on ${opened.proxyUrl ?? '?'} (agent ${opened.ref.agent} ${opened.ref.version}, manifest ${opened.ref.digest}, session ${session.id}; guardrails: ${opened.guardrailsText})\n`,
  );
  control.subscribe?.((what) => {
    const done =
      what === 'reload'
        ? session.reload(readManifestFile(opts.manifest)).then((r) => diag(r.message))
        : session
            .quarantine('the agent is quarantined: all network access is suspended')
            .then(() => diag('deny-all: every tunnel closed, every request denied'));
    done.catch((e: unknown) => diag(`${what}: ${(e as Error).message}`));
  });
  await new Promise<void>((resolve) => {
    if (control.stop.aborted) resolve();
    else control.stop.addEventListener('abort', () => resolve(), { once: true });
  });
  io.stderr('cordon proxy: draining\n');
  const destinations = await session.close();
  for (const d of destinations)
    io.stderr(
      `cordon proxy: ${d.destination}: ${d.requests} request(s), ${d.connections} tunnel(s), ${d.denied} denied, ${d.bytesOut} B out, ${d.bytesIn} B in\n`,
    );
  return EXIT.OK;
}
