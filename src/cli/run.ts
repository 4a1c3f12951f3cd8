import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { processActivityEvent } from '../audit/events.js';
import { openDeviceLog } from '../audit/open.js';
import { readProxyConfig } from '../egress/config.js';
import { EgressProxy } from '../egress/proxy.js';
import type { Resolver } from '../egress/resolver.js';
import {
  agentRuntimes,
  checkLaunchAllowed,
  checkPackageExposure,
  checkUnsafeNoSandbox,
  launchDecision,
  LaunchRefusedError,
  narrowedRuntimes,
  recordLaunchRefusal,
  resolveCommand,
  sandboxLimits,
  sandboxPrerequisites,
} from '../endpoint/launch.js';
import { loadEnforcedPolicy, readManifestFile, type EnforcedPolicy } from '../endpoint/policy.js';
import { resolverFor } from '../endpoint/resolver.js';
import { runSession, type SessionControl } from '../sandbox/launcher.js';
import { recoverPersistence, settlePersistence } from '../sandbox/persistence.js';
import { guardrailsFacts } from '../policy/in-force.js';
import { reapSessions } from '../sandbox/sessions.js';
import { resolveDirs, RUN_EXIT, usage, type CliIo, type GlobalOptions } from './context.js';

export interface RunOptions extends GlobalOptions {
  manifest: string;
  agentRuntime?: string[];
  maxProcesses?: string;
  maxMemory?: string;
  maxCpuSeconds?: string;
  maxFileSize?: string;
  maxTmpSize?: string;
  resolve?: string[];
  config?: string;
  guardrails?: string | false;
  unsafeNoSandbox?: boolean;
}

/** What the caller wires to process signals. */
export interface RunControl {
  /** Called once the session runs, with a function taking a signal name. */
  readonly onStart: (handle: (sig: NodeJS.Signals | 'quarantine') => void) => void;
}

/**
 * `cordon run --manifest M -- CMD ARGS...`: verify the manifest, start the egress proxy, run
 * CMD in the sandbox, and return its exit code. Fails closed: no sandbox, no run (unless
 * `--unsafe-no-sandbox`, which is audited as such).
 */
export async function runRun(
  io: CliIo,
  opts: RunOptions,
  command: readonly string[],
  control: RunControl,
): Promise<number> {
  if (command.length === 0 || command[0] === undefined || command[0] === '')
    throw usage('no command to run', 'e.g. cordon run --manifest agent.signed.json -- bash');
  const limits = sandboxLimits(opts, opts.unsafeNoSandbox === true);
  const dirs = resolveDirs(io, opts);
  const config = readProxyConfig(dirs.policyDir, opts.config);
  const resolver = resolverFor(opts.resolve);
  const cwd = process.cwd();
  const argv0 = resolveCommand(command[0], cwd, io.env['PATH'] ?? '');
  const narrowed = narrowedRuntimes(opts.agentRuntime ?? []);

  // Before anything runs: the sandbox must be installed, the manifest verified.
  const prereq = opts.unsafeNoSandbox === true ? undefined : sandboxPrerequisites();
  const loaded = loadEnforcedPolicy({
    dirs,
    home: io.home,
    now: io.now,
    source: opts.manifest,
    bytes: readManifestFile(opts.manifest),
    verify: true,
    recordAcceptance: true,
    enforce: true,
    ...(opts.guardrails === undefined ? {} : { guardrails: opts.guardrails }),
  });
  const runtimes = agentRuntimes(loaded.manifest, io.home, narrowed);
  const opened = openDeviceLog(dirs);
  // What crashed sessions left behind (records, run directories) goes now, not at the next `ps`.
  reapSessions(dirs.stateDir);
  const session = randomUUID();
  const context = {
    ...opened.context,
    actor: { ...opened.context.actor, name: loaded.ref.agent, session },
  };
  const diag = (m: string): void => io.stderr(`cordon run: ${m}\n`);
  try {
    // Sessions whose `cordon run` died before its persistence guard ran are checked now.
    const recovered = recoverPersistence(dirs.stateDir);
    await settlePersistence(
      dirs.stateDir,
      recovered,
      [...new Set(recovered.map((f) => f.session))],
      {
        append: (e) => opened.log.append(e),
        context: () => ({ ...opened.context, time: io.now().getTime() }),
        onDiagnostic: diag,
      },
    );
    try {
      if (opts.unsafeNoSandbox === true) checkUnsafeNoSandbox(dirs.policyDir);
      checkLaunchAllowed(
        loaded,
        argv0,
        launchDecision(loaded, [argv0, ...command.slice(1)], narrowed, runtimes),
      );
      if (opts.unsafeNoSandbox !== true) checkPackageExposure(loaded.manifest, io.home);
    } catch (e) {
      // A launch refused before anything started is recorded as a blocked Launch.
      if (e instanceof LaunchRefusedError)
        await recordLaunchRefusal(
          (ev) => opened.log.append(ev),
          { context, now: io.now, path: argv0, argv: command, manifest: loaded.ref },
          e,
        );
      throw e;
    }
    if (opts.unsafeNoSandbox === true)
      return await runUnsandboxed(io, argv0, command, control, {
        loaded,
        opened,
        context,
        config: config.limits,
        resolver,
      });
    const result = await runSession(
      {
        id: session,
        manifest: loaded.manifest,
        manifestPath: resolvePath(opts.manifest),
        manifestBytes: loaded.bytes,
        ref: loaded.ref,
        pdp: loaded.pdp,
        audit: opened.log,
        context,
        stateDir: dirs.stateDir,
        command: [argv0, ...command.slice(1)],
        agentRuntimes: runtimes,
        guardrails: loaded.guardrails,
        hidden: [dirs.policyDir, dirs.stateDir],
        limits,
        home: io.home,
        cwd,
        env: io.env,
        bwrap: prereq?.bwrap ?? 'bwrap',
        helper: prereq?.helper ?? '',
        proxyLimits: config.limits,
        resolver,
        now: io.now,
        onDiagnostic: diag,
        onOpenFrom: (seq) => opened.spans.hint.update(seq),
      },
      (s: SessionControl) =>
        control.onStart((sig) => {
          if (sig === 'SIGCONT') s.resume();
          else if (sig === 'quarantine')
            s.quarantine('quarantined by SIGUSR1 (cordon quarantine)').catch((e: unknown) =>
              diag(`audit: ${(e as Error).message}`),
            );
          else s.signal(sig);
        }),
    );
    if (result.quarantined) diag(`session ${session} was quarantined`);
    return result.exitCode;
  } finally {
    await opened.log.close();
  }
}

/** The debugging escape hatch: no sandbox at all, only the proxy variables. Audited loudly. */
async function runUnsandboxed(
  io: CliIo,
  argv0: string,
  command: readonly string[],
  control: RunControl,
  s: {
    loaded: EnforcedPolicy;
    opened: ReturnType<typeof openDeviceLog>;
    context: ReturnType<typeof openDeviceLog>['context'];
    config: ReturnType<typeof readProxyConfig>['limits'];
    resolver: Resolver;
  },
): Promise<number> {
  io.stderr(
    'cordon run: WARNING: --unsafe-no-sandbox: the agent runs with your full rights; only its proxy-aware traffic is governed. This is recorded in the audit log.\n',
  );
  await s.opened.log.append(
    processActivityEvent(
      { ...s.context, time: io.now().getTime() },
      {
        activity: 'launch',
        path: argv0,
        argv: command,
        control: {
          decision: {
            effect: 'allow',
            rule: '--unsafe-no-sandbox',
            code: 'UNSAFE_NO_SANDBOX',
            reason:
              'started WITHOUT the sandbox (--unsafe-no-sandbox): files, commands and direct network access are not enforced',
          },
          manifest: s.loaded.ref,
        },
        unmapped: { guardrails: guardrailsFacts(s.loaded.guardrails) },
      },
    ),
  );
  const proxy = await EgressProxy.start(
    {
      pdp: s.loaded.pdp,
      manifest: s.loaded.ref,
      audit: s.opened.log,
      context: s.context,
      resolver: s.resolver,
      limits: s.config,
      onOpenFrom: (seq) => s.opened.spans.hint.update(seq),
    },
    { host: '127.0.0.1', port: 0 },
  );
  try {
    const url = proxy.url;
    const env: NodeJS.ProcessEnv = { ...io.env, NO_PROXY: '', no_proxy: '' };
    for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY']) {
      env[k] = url;
      env[k.toLowerCase()] = url;
    }
    const child = spawn(argv0, command.slice(1), { stdio: 'inherit', env, argv0: command[0] });
    control.onStart((sig) => child.kill(sig === 'quarantine' ? 'SIGKILL' : sig));
    const code = await new Promise<number>((resolve) => {
      child.on('error', () => resolve(RUN_EXIT.NOT_RUNNABLE));
      child.on('close', (c, sig) =>
        resolve(c ?? 128 + (sig === null ? 0 : constants.signals[sig])),
      );
    });
    await s.opened.log.append(
      processActivityEvent(
        { ...s.context, time: io.now().getTime() },
        { activity: 'terminate', path: argv0, argv: command, exitCode: code },
      ),
    );
    return code;
  } finally {
    await proxy.close();
  }
}
