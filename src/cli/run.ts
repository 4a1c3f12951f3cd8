import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { processActivityEvent, type EventContext } from '../audit/events.js';
import { connectDaemonWith } from '../daemon/client.js';
import { SYSTEM_PATHS, userRuntimeDir } from '../daemon/paths.js';
import type { CordonDirs } from '../env.js';
import { parseStrictJson } from '../manifest/json.js';
import { ClientSession, clientContext } from '../daemon/client-session.js';
import { CordonError } from '../errors.js';
import { ENVELOPE_MAX_BYTES } from '../manifest/limits.js';
import type { Manifest } from '../manifest/schema.js';
import { openSessionAnswer } from '../protocol/answers.js';
import {
  narrowedRuntimes,
  resolveCommand,
  sandboxLimits,
  sandboxPrerequisites,
} from '../endpoint/launch-flags.js';
import {
  draftPlan,
  runSession,
  type PlanDraft,
  type PlanDraftInput,
  type SessionControl,
} from '../sandbox/launcher.js';
import { recoverPersistence, settlePersistence } from '../sandbox/persistence.js';
import { readFileCapped } from '../store/files.js';
import { packageEntries } from '../package-files.js';
import {
  renderError,
  resolveDirs,
  RUN_EXIT,
  usage,
  type CliIo,
  type GlobalOptions,
} from './context.js';

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
  const cwd = process.cwd();
  const argv0 = resolveCommand(command[0], cwd, io.env['PATH'] ?? '');
  const narrowed = narrowedRuntimes(opts.agentRuntime ?? []);
  // Before anything runs: the sandbox must be installed; the service verifies the manifest.
  const prereq = opts.unsafeNoSandbox === true ? undefined : sandboxPrerequisites();
  // One read: what the service verifies is what is enforced.
  const bytes = readFileCapped(opts.manifest, ENVELOPE_MAX_BYTES);
  const diag = (m: string): void => io.stderr(`cordon run: ${m}\n`);
  const command_ = [argv0, ...command.slice(1)];
  const openBody = {
    manifest: bytes.toString('base64'),
    manifestPath: resolvePath(opts.manifest),
    command: command_,
    cwd,
    home: io.home,
    ...(narrowed.length === 0 ? {} : { agentRuntimes: narrowed }),
    ...(opts.guardrails === undefined ? {} : { guardrails: opts.guardrails }),
    ...(opts.resolve === undefined ? {} : { resolve: opts.resolve }),
    ...(opts.config === undefined ? {} : { config: resolvePath(opts.config) }),
    ...(opts.unsafeNoSandbox === true ? { unsafeNoSandbox: true } : {}),
    installationEntries: packageEntries(),
  };
  // The open request is the first thing said to the service: no round trip before it.
  const { client, answer: opening } = await connectDaemonWith(io.env, io.home, dirs, (c) =>
    c.request('POST', '/v1/sessions', openBody, openSessionAnswer),
  );
  // While the service verifies the manifest and opens the session, the sandbox is planned from
  // the manifest as read here; the plan is used only if the session turns out to have been
  // opened with exactly what it was made from.
  opening.catch(() => undefined);
  let draft: PlanDraft | undefined;
  if (prereq !== undefined && narrowed.length === 0) {
    // Once the request is on its way.
    await new Promise((r) => setImmediate(r));
    draft = draftFromBytes(bytes, {
      home: io.home,
      cwd,
      command: command_,
      hidden: [
        ...new Set([
          dirs.policyDir,
          dirs.stateDir,
          ...expectedServiceDirs(client.socket, io.env, dirs),
        ]),
      ],
      helperPath: prereq.helper,
      parentEnv: io.env,
      limits,
    });
  }
  // Sessions whose `cordon run` died before its persistence guard ran are checked once it is open.
  const recovered = recoverPersistence(dirs.stateDir);
  const opened = await opening;
  const session = new ClientSession(client, opened, diag);
  const manifest = opened.manifest as unknown as Manifest;
  // One look-up of the user (the passwd database) for every event of the session.
  const base = clientContext();
  const context = {
    ...base,
    actor: { ...base.actor, name: opened.ref.agent, session: session.id },
  };
  let exitCode: number | undefined;
  let closing: Promise<void> | undefined;
  try {
    await settlePersistence(
      dirs.stateDir,
      recovered,
      [...new Set(recovered.map((f) => f.session))],
      {
        append: (e) => session.append(e),
        context: () => ({ ...context, time: io.now().getTime() }),
        onDiagnostic: diag,
      },
    );
    if (opts.unsafeNoSandbox === true) {
      exitCode = await runUnsandboxed(io, argv0, command, control, session, context);
      return exitCode;
    }
    const result = await runSession(
      {
        id: session.id,
        link: session,
        manifest,
        ref: opened.ref,
        context,
        stateDir: dirs.stateDir,
        command: command_,
        agentRuntimes: opened.agentRuntimes,
        ...(draft === undefined ? {} : { draft }),
        guardrails: { facts: opened.guardrails, text: opened.guardrailsText },
        egressDir: opened.egressDir,
        hidden: [...new Set([dirs.policyDir, dirs.stateDir, ...opened.hidden])],
        limits,
        home: io.home,
        cwd,
        env: io.env,
        bwrap: prereq?.bwrap ?? 'bwrap',
        helper: prereq?.helper ?? '',
        now: io.now,
        onDiagnostic: diag,
      },
      (s: SessionControl) =>
        control.onStart((sig) => {
          if (sig === 'SIGCONT') s.resume();
          else if (sig === 'quarantine')
            s.quarantine('quarantined by SIGUSR1 (cordon quarantine)').catch((e: unknown) =>
              diag(`quarantine: ${(e as Error).message}`),
            );
          else s.signal(sig);
        }),
    );
    if (result.quarantined) diag(`session ${session.id} was quarantined`);
    exitCode = result.exitCode;
    // The Terminate record and the close go out together; the close is answered once the record
    // is durable. A record that cannot be made durable fails the run, as before the close.
    closing = closeSession(session, exitCode, diag);
    const [recorded] = await Promise.allSettled([result.terminated, closing]);
    if (recorded.status === 'rejected') throw recorded.reason;
    return result.exitCode;
  } finally {
    await (closing ?? closeSession(session, exitCode, diag));
  }
}

/** Close the session at the service; a failure is reported, the exit code stands. */
function closeSession(
  session: ClientSession,
  exitCode: number | undefined,
  diag: (m: string) => void,
): Promise<void> {
  return session
    .close(exitCode)
    .then(() => undefined)
    .catch((e: unknown) => diag(`closing the session: ${(e as Error).message}`));
}

/** The debugging escape hatch: no sandbox at all, only the proxy variables. Audited loudly. */
async function runUnsandboxed(
  io: CliIo,
  argv0: string,
  command: readonly string[],
  control: RunControl,
  session: ClientSession,
  context: EventContext,
): Promise<number> {
  io.stderr(
    'cordon run: WARNING: --unsafe-no-sandbox: the agent runs with your full rights; only its proxy-aware traffic is governed. This is recorded in the audit log.\n',
  );
  const url = session.opened.proxyUrl;
  if (url === undefined)
    throw new CordonError(
      'DAEMON_PROTOCOL',
      'the service gave no proxy for the unconfined session',
      {
        hint: 'use a client and daemon of the same version',
      },
    );
  await session.append(
    processActivityEvent(
      { ...context, time: io.now().getTime() },
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
          manifest: session.opened.ref,
        },
        unmapped: { guardrails: session.opened.guardrails },
      },
    ),
  );
  const env: NodeJS.ProcessEnv = { ...io.env, NO_PROXY: '', no_proxy: '' };
  for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY']) {
    env[k] = url;
    env[k.toLowerCase()] = url;
  }
  const child = spawn(argv0, command.slice(1), { stdio: 'inherit', env, argv0: command[0] });
  control.onStart((sig) => child.kill(sig === 'quarantine' ? 'SIGKILL' : sig));
  session.watch(() => child.kill('SIGKILL'));
  const code = await new Promise<number>((resolve) => {
    child.on('error', () => resolve(RUN_EXIT.NOT_RUNNABLE));
    child.on('close', (c, sig) => resolve(c ?? 128 + (sig === null ? 0 : constants.signals[sig])));
  });
  await session.append(
    processActivityEvent(
      { ...context, time: io.now().getTime() },
      { activity: 'terminate', path: argv0, argv: command, exitCode: code },
    ),
  );
  return code;
}

/**
 * A plan drafted from the manifest file as read here (not yet verified: the draft is used only
 * if the verified manifest has the same fields), with the runtimes the service will give a
 * session that does not narrow them.
 */
function draftFromBytes(
  bytes: Buffer,
  input: Omit<PlanDraftInput, 'manifest' | 'agentRuntimes'>,
): PlanDraft | undefined {
  let manifest: Record<string, unknown>;
  try {
    const envelope = parseStrictJson(bytes) as { payload?: unknown };
    if (typeof envelope.payload !== 'string') return undefined;
    manifest = parseStrictJson(Buffer.from(envelope.payload, 'base64')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const list = (k: string): unknown[] => {
    const v = manifest[k];
    return Array.isArray(v) ? v : [];
  };
  const agentRuntimes = list('agentRuntimes').map((r, i) => ({
    path: typeof r === 'string' && r.startsWith('~/') ? join(input.home, r.slice(2)) : String(r),
    rule: `/agentRuntimes/${i}`,
  }));
  return draftPlan({
    ...input,
    manifest: Object.fromEntries(
      ['readPaths', 'writePaths', 'overrides', 'requiresApproval', 'commandsAllowed', 'env'].map(
        (k) => [k, list(k)],
      ),
    ) as unknown as Manifest,
    agentRuntimes,
  });
}

/** The directories the service hides from its sessions, as this client expects them. */
function expectedServiceDirs(socket: string, env: NodeJS.ProcessEnv, dirs: CordonDirs): string[] {
  const runtime = userRuntimeDir(env);
  return socket.startsWith(runtime + '/')
    ? [dirs.policyDir, dirs.stateDir, runtime]
    : [SYSTEM_PATHS.policyDir, SYSTEM_PATHS.stateDir, SYSTEM_PATHS.runtimeDir];
}

/**
 * `cordon run` as both of its entry points run it: the signals a user sends are passed on
 * (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR2 and SIGCONT to the agent, SIGUSR1 as quarantine;
 * those that arrive while the session starts, once it runs), and a refusal is printed and
 * mapped to run's exit codes. Resolves with the exit status; anything but a CordonError is
 * thrown (a bug, for the caller to report).
 */
export async function runRunWithSignals(
  io: CliIo,
  opts: RunOptions,
  command: readonly string[],
): Promise<number> {
  const handlers: [NodeJS.Signals, () => void][] = [];
  let handle: ((sig: NodeJS.Signals | 'quarantine') => void) | undefined;
  const early: (NodeJS.Signals | 'quarantine')[] = [];
  for (const sig of [
    'SIGTERM',
    'SIGINT',
    'SIGHUP',
    'SIGQUIT',
    'SIGUSR2',
    'SIGUSR1',
    'SIGCONT',
  ] as const) {
    const h = (): void => {
      const what = sig === 'SIGUSR1' ? 'quarantine' : sig;
      if (handle === undefined) early.push(what);
      else handle(what);
    };
    process.on(sig, h);
    handlers.push([sig, h]);
  }
  try {
    return await runRun(io, opts, [...command], {
      onStart: (fn) => {
        handle = fn;
        for (const what of early.splice(0)) fn(what);
      },
    });
  } catch (e) {
    if (!(e instanceof CordonError)) throw e;
    io.stderr(renderError(e));
    return e.code === 'COMMAND_NOT_FOUND'
      ? RUN_EXIT.NOT_FOUND
      : e.code === 'COMMAND_NOT_ALLOWED'
        ? RUN_EXIT.NOT_RUNNABLE
        : RUN_EXIT.SETUP;
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
  }
}
