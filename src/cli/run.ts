import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { constants } from 'node:os';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { processActivityEvent, type ControlOutcome } from '../audit/events.js';
import { openDeviceLog } from '../audit/open.js';
import { readProxyConfig } from '../egress/config.js';
import { EgressProxy } from '../egress/proxy.js';
import { parseResolveEntries, staticResolver, systemResolver } from '../egress/resolver.js';
import { CordonError } from '../errors.js';
import { launchPrerequisites, which } from '../sandbox/linux/doctor.js';
import { isWithin, packageExposure, type SandboxLimits } from '../sandbox/linux/plan.js';
import { packageDirs, packageEntries } from '../package-files.js';
import { runSession, type SessionControl } from '../sandbox/launcher.js';
import { recoverPersistence, settlePersistence } from '../sandbox/persistence.js';
import { expandHome, parsePathPattern } from '../manifest/paths.js';
import type { Manifest } from '../manifest/schema.js';
import { guardrailsFacts } from '../policy/in-force.js';
import { reapSessions } from '../sandbox/sessions.js';
import { readEnforcement, UNSAFE_NO_SANDBOX_SETTING } from '../store/policy-dir.js';
import { buildPdp } from './check.js';
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

const SIZE = /^(\d+)([KMGT]?)i?B?$/i;

/** `512M`, `2G`, `1048576` → bytes. */
export function parseSize(text: string, flag: string): number {
  const m = SIZE.exec(text.trim());
  if (m === null)
    throw usage(
      `${flag} "${text}" is not a size`,
      `e.g. ${flag} 2G (K, M, G, T are powers of 1024)`,
    );
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[
    (m[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'
  ];
  return Number(m[1]) * mult;
}

function parseCount(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1)
    throw usage(`${flag} "${text}" is not a positive whole number`, `e.g. ${flag} 512`);
  return n;
}

/** A scratch tmpfs size: at least 1 MiB (bubblewrap takes 0 as "half the RAM"). */
function parseTmpSize(text: string): number {
  const n = parseSize(text, '--max-tmp-size');
  if (n < 1024 ** 2)
    throw usage(`--max-tmp-size "${text}" is below 1M`, 'e.g. --max-tmp-size 512M');
  return n;
}

/**
 * Whether this process is root of the initial user namespace, the one user RLIMIT_NPROC does not
 * bind (root mapped from another user in a container is bound like anyone else).
 */
function isInitialRoot(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    const map = readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    return map[0] === '0' && map[1] === '0';
  } catch {
    return true;
  }
}

/** argv[0] as an absolute real path: a path is taken as given, a bare name is looked up on PATH. */
function resolveCommand(name: string, cwd: string, path: string): string {
  const found = name.includes('/') ? resolvePath(cwd, name) : which(name, path);
  if (found === undefined)
    throw new CordonError('COMMAND_NOT_FOUND', `${name}: not found on PATH`, {
      hint: 'give the command by its absolute path, or fix PATH',
    });
  try {
    return realpathSync(found);
  } catch {
    throw new CordonError('COMMAND_NOT_FOUND', `${found}: no such file`, {
      hint: 'give the path of an installed program',
    });
  }
}

/**
 * The runtimes this session mounts: the manifest's agentRuntimes, or, with `--agent-runtime`,
 * only the given paths, each of which must lie within one of them (flags narrow, never widen).
 */
function agentRuntimes(
  m: Manifest,
  home: string,
  narrowed: readonly { given: string; real: string }[],
): { path: string; rule: string }[] {
  const granted = m.agentRuntimes.map((r, i) => {
    const path = expandHome(parsePathPattern(r), home);
    let real = path;
    try {
      real = realpathSync(path);
    } catch {
      // Not installed here: the sandbox plan warns and mounts nothing for it.
    }
    return { path, real, rule: `/agentRuntimes/${i}` };
  });
  if (narrowed.length === 0) return granted.map(({ path, rule }) => ({ path, rule }));
  return narrowed.map((n) => {
    const within = granted.find((g) => isWithin(n.real, g.real));
    if (within === undefined)
      throw new CordonError(
        'RUNTIME_NOT_IN_MANIFEST',
        `--agent-runtime ${n.given}${n.real === n.given ? '' : ` (${n.real})`} is not within the manifest's agentRuntimes${granted.length === 0 ? ' (the manifest lists none)' : `: ${granted.map((g) => g.path).join(', ')}`}`,
        {
          hint: `add "${n.given}" to agentRuntimes in the manifest and sign it again; --agent-runtime can only narrow what the signed manifest allows`,
        },
      );
    return { path: n.real, rule: `${within.rule} (narrowed by --agent-runtime ${n.given})` };
  });
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
  const limits: SandboxLimits = {
    ...(opts.maxProcesses === undefined
      ? {}
      : { processes: parseCount(opts.maxProcesses, '--max-processes') }),
    ...(opts.maxMemory === undefined
      ? {}
      : { memoryBytes: parseSize(opts.maxMemory, '--max-memory') }),
    ...(opts.maxCpuSeconds === undefined
      ? {}
      : { cpuSeconds: parseCount(opts.maxCpuSeconds, '--max-cpu-seconds') }),
    ...(opts.maxFileSize === undefined
      ? {}
      : { fileSizeBytes: parseSize(opts.maxFileSize, '--max-file-size') }),
    ...(opts.maxTmpSize === undefined ? {} : { tmpBytes: parseTmpSize(opts.maxTmpSize) }),
  };
  if (limits.processes !== undefined && opts.unsafeNoSandbox !== true && isInitialRoot())
    throw new CordonError(
      'SANDBOX_LIMIT_UNENFORCEABLE',
      '--max-processes cannot be enforced for root: the kernel does not apply RLIMIT_NPROC to the root user',
      {
        hint: 'run cordon as an ordinary user (the limit holds there), or leave out --max-processes',
      },
    );
  const dirs = resolveDirs(io, opts);
  const config = readProxyConfig(dirs.policyDir, opts.config);
  const table = parseResolveEntries(opts.resolve ?? []);
  const resolver =
    Object.keys(table).length === 0 ? systemResolver() : staticResolver(table, systemResolver());
  const cwd = process.cwd();
  const argv0 = resolveCommand(command[0], cwd, io.env['PATH'] ?? '');
  const narrowed = (opts.agentRuntime ?? []).map((r) => {
    if (!isAbsolute(r))
      throw usage(`--agent-runtime ${r} is not absolute`, 'give its absolute path');
    try {
      return { given: r, real: realpathSync(r) };
    } catch {
      throw usage(`--agent-runtime ${r}: no such file or directory`, 'give an installed runtime');
    }
  });

  // Before anything runs: the sandbox must be installed, the manifest verified.
  const prereq = opts.unsafeNoSandbox === true ? undefined : launchPrerequisites();
  if (Array.isArray(prereq)) {
    throw new CordonError(
      'SANDBOX_UNAVAILABLE',
      `the sandbox is incomplete: ${prereq.map((c) => `${c.id}: ${c.detail}`).join('; ')}`,
      { hint: prereq.map((c) => c.fix).join('; ') },
    );
  }
  const loaded = buildPdp(io, {
    manifest: opts.manifest,
    verify: true,
    recordAcceptance: true,
    enforce: true,
    ...(opts.policyDir === undefined ? {} : { policyDir: opts.policyDir }),
    ...(opts.stateDir === undefined ? {} : { stateDir: opts.stateDir }),
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
  /** A launch refused before anything started is recorded as a blocked Launch. */
  const refuseLaunch = (decision: ControlOutcome['decision'], unmapped?: Record<string, unknown>) =>
    opened.log.append(
      processActivityEvent(
        { ...context, time: io.now().getTime() },
        {
          activity: 'launch',
          path: argv0,
          argv: command,
          control: { decision, manifest: loaded.ref },
          ...(unmapped === undefined ? {} : { unmapped }),
        },
      ),
    );
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
    // Running unconfined widens the signed policy from the command line: only the policy
    // directory may allow that, never the user's (or a planted alias's) flag alone.
    if (opts.unsafeNoSandbox === true) {
      const setting = readEnforcement(dirs.policyDir);
      if (!setting.allowUnsafeNoSandbox) {
        const reason = `--unsafe-no-sandbox is not allowed by the policy directory (${UNSAFE_NO_SANDBOX_SETTING} is not true in ${setting.file})`;
        await refuseLaunch({
          effect: 'deny',
          rule: '--unsafe-no-sandbox',
          code: 'UNSAFE_NO_SANDBOX_FORBIDDEN',
          reason,
        });
        throw new CordonError(
          'UNSAFE_NO_SANDBOX_FORBIDDEN',
          `refusing to run unconfined: ${reason}`,
          {
            file: setting.file,
            hint: `drop --unsafe-no-sandbox; only the policy directory may allow it: {"allowUnsafeNoSandbox": true} in ${setting.file}`,
          },
        );
      }
    }
    // The command itself is an exec decision: not allowed, not started. A runtime the manifest
    // grants but `--agent-runtime` left out is not allowed either.
    const decided = loaded.pdp.decide({
      kind: 'exec',
      path: argv0,
      argv: [argv0, ...command.slice(1)],
    });
    const decision =
      decided.effect === 'allow' &&
      decided.rule.startsWith('/agentRuntimes/') &&
      narrowed.length > 0 &&
      !runtimes.some((r) => isWithin(argv0, r.path))
        ? {
            ...decided,
            effect: 'deny' as const,
            code: 'NOT_GRANTED',
            rule: '--agent-runtime',
            reason: `Denied: ${argv0} is in the manifest's agentRuntimes, but not in the narrower --agent-runtime list of this session.`,
          }
        : decided;
    if (decision.effect !== 'allow') {
      await refuseLaunch(decision, { guardrails: guardrailsFacts(loaded.guardrails) });
      throw new CordonError('COMMAND_NOT_ALLOWED', `${argv0} may not run: ${decision.reason}`, {
        hint: 'add it to commandsAllowed in the manifest, or its runtime (executable or directory) to agentRuntimes, and sign it again',
      });
    }
    // Cordon's own code runs on the host at the next `cordon run`: no grant may reach it.
    const exposed =
      opts.unsafeNoSandbox === true
        ? undefined
        : packageExposure(loaded.manifest, io.home, packageDirs(), packageEntries());
    if (exposed !== undefined) {
      const reason =
        exposed.entry === undefined
          ? `the grant ${exposed.pattern} (${exposed.path}) reaches Cordon's own installation ${exposed.packageDir}: an agent could change the code the next cordon run executes`
          : `the grant ${exposed.pattern} (${exposed.path}) can replace ${exposed.entry}, on the way to Cordon's own installation ${exposed.packageDir} or the node binary running it: an agent could choose the code the next cordon run executes`;
      await refuseLaunch({
        effect: 'deny',
        rule: 'sandbox',
        code: 'SANDBOX_PACKAGE_EXPOSED',
        reason,
      });
      throw new CordonError('SANDBOX_PACKAGE_EXPOSED', reason, {
        hint: 'narrow the grant, or install Cordon (and node) outside every write grant (npm i -g)',
      });
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
    loaded: ReturnType<typeof buildPdp>;
    opened: ReturnType<typeof openDeviceLog>;
    context: ReturnType<typeof openDeviceLog>['context'];
    config: ReturnType<typeof readProxyConfig>['limits'];
    resolver: ReturnType<typeof systemResolver>;
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
