import { spawn, type ChildProcess } from 'node:child_process';
import { parseStrictJson } from '../manifest/json.js';
import { closeSync, constants as fsConstants, fstatSync, openSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { basename } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import {
  processActivityEvent,
  type EventContext,
  type ManifestRef,
  type OcsfEvent,
} from '../audit/events.js';
import { CordonError } from '../errors.js';
import type { Decision, PolicyRequest } from '../policy/types.js';
import { canonicalize } from '../manifest/canonical.js';
import {
  FIRST_COPY_FD,
  planSandbox,
  SANDBOX_HELPER,
  type SandboxPlan,
  type SandboxPlanInput,
} from './linux/plan.js';
import { fileId, isAlive, processPath, processTree, startTime } from './linux/procfs.js';
import {
  checkPersistence,
  guardScope,
  recordPersistence,
  settlePersistence,
} from './persistence.js';

/**
 * The session as the endpoint service holds it: the launcher records through it (acknowledged
 * once durable), asks it for decisions, and is told by it to quarantine.
 */
export interface SessionLink {
  readonly id: string;
  append(event: OcsfEvent): Promise<unknown>;
  decide(requests: readonly PolicyRequest[]): Promise<Decision[]>;
  setSandbox(pid: number, start: string | undefined): Promise<void>;
  /** Ask the service to quarantine the session (it denies egress and records it). */
  quarantine(reason: string): Promise<void>;
  /** Follow the service's orders; `onQuarantine` kills the sandbox. */
  watch(onQuarantine: (code: string, reason: string) => void): void;
}

export type SandboxErrorCode =
  | 'SANDBOX_UNAVAILABLE'
  | 'SANDBOX_SETUP_FAILED'
  | 'SANDBOX_PACKAGE_EXPOSED'
  | 'UNSAFE_NO_SANDBOX_FORBIDDEN'
  | 'SANDBOX_LIMIT_UNENFORCEABLE'
  | 'COMMAND_NOT_FOUND'
  | 'COMMAND_NOT_ALLOWED';

export interface SessionOptions extends Pick<
  SandboxPlanInput,
  'manifest' | 'home' | 'cwd' | 'command' | 'agentRuntimes' | 'hidden' | 'limits'
> {
  readonly id: string;
  readonly link: SessionLink;
  readonly ref: ManifestRef;
  /** Audit context; the actor's session is set to the session id. */
  readonly context: EventContext;
  /** Where the persistence guard keeps its launch-time records (the user's own state). */
  readonly stateDir: string;
  /** The guardrails in force: their facts and one line, named in the launch event. */
  readonly guardrails: { readonly facts: Record<string, unknown>; readonly text: string };
  /** The directory holding the service's egress socket for this session. */
  readonly egressDir: string;
  readonly env: NodeJS.ProcessEnv;
  readonly bwrap: string;
  readonly helper: string;
  readonly now: () => Date;
  readonly onDiagnostic: (message: string) => void;
  /** How often the process tree is sampled for the audit log (after 3 s of 100 ms). */
  readonly sampleIntervalMs?: number;
  /** A plan made while the service was opening the session (used only if made from the same). */
  readonly draft?: PlanDraft;
}

export interface SessionResult {
  readonly exitCode: number;
  readonly signal?: number;
  readonly quarantined: boolean;
  readonly plan: SandboxPlan;
  /**
   * The session's Terminate record, on its way: resolved once durable, rejected if it cannot be
   * (the caller fails as when any record is refused). Left to the caller so that the record and
   * the close of the session travel together.
   */
  readonly terminated: Promise<unknown>;
}

/** What the caller can do to a running session. */
export interface SessionControl {
  /** Pass a signal to the agent's process group. */
  signal(sig: NodeJS.Signals): void;
  /** This process was continued (SIGCONT) after the agent was suspended from its terminal. */
  resume(): void;
  /** Kill everything in the sandbox, deny all egress, and record why. */
  quarantine(reason: string): Promise<void>;
}

/** Whether this process's group is the foreground of its controlling terminal (/proc/self/stat). */
function inForeground(): boolean {
  try {
    const stat = readFileSync('/proc/self/stat', 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: state ppid pgrp session tty_nr tpgid ...
    return f[2] !== undefined && f[2] === f[5];
  } catch {
    return false;
  }
}

const FAST_SAMPLES = 30;
const FAST_SAMPLE_MS = 100;
// Processes sampled into the log per session; beyond this, one event says sampling stopped.
const MAX_PROCESS_EVENTS = 1000;
// Rounds of decisions the plan may ask for (each round answers what the previous one asked).
const PLAN_ROUNDS = 4;

/** The manifest's fields a plan is made from (planSandbox reads no others). */
const PLAN_FIELDS = [
  'readPaths',
  'writePaths',
  'overrides',
  'requiresApproval',
  'commandsAllowed',
  'env',
] as const;

/** What a plan is made of, but the session it is for. */
export type PlanDraftInput = Omit<
  SandboxPlanInput,
  'egressDir' | 'session' | 'allows' | 'createMissing'
>;

/**
 * A sandbox plan made ahead of the session, while the service verifies the manifest and opens
 * it, from the manifest as read here: `key` names everything it was made from.
 */
export interface PlanDraft {
  readonly key: string;
  readonly plan: SandboxPlan;
}

// Stand-ins for the session's egress directory and id, known once it is open. A NUL is in no
// path or environment value, so they cannot be mistaken for anything else.
const EGRESS_STAND_IN = '\0egress';
const SESSION_STAND_IN = '\0session';

/** Everything a plan depends on but the session, in one canonical string. */
function planKey(input: PlanDraftInput): string {
  const m = input.manifest as unknown as Record<string, unknown>;
  return canonicalize({
    manifest: Object.fromEntries(PLAN_FIELDS.map((f) => [f, m[f] ?? null])),
    home: input.home,
    cwd: input.cwd,
    command: input.command,
    agentRuntimes: input.agentRuntimes,
    hidden: input.hidden,
    helperPath: input.helperPath,
    // (process.env is no plain object)
    parentEnv: { ...input.parentEnv },
    limits: input.limits,
  });
}

/**
 * Plan the sandbox ahead of the session, from a manifest not yet verified: it only reads the
 * file system (a plan that would make a directory stops), and it is used only if the session
 * the service opens has exactly these inputs (the verified manifest's fields, the runtimes, the
 * hidden directories); anything else (an error, a question for the decision point) gives no
 * draft, and the plan is made after the session is open, as without one.
 */
export function draftPlan(input: PlanDraftInput): PlanDraft | undefined {
  let asked = false;
  try {
    const plan = planSandbox({
      ...input,
      egressDir: EGRESS_STAND_IN,
      session: SESSION_STAND_IN,
      createMissing: false,
      allows: () => {
        asked = true;
        return false;
      },
    });
    return asked ? undefined : { key: planKey(input), plan };
  } catch {
    return undefined;
  }
}

/** The draft as the plan of this session, if it was made from exactly these inputs. */
export function planFromDraft(
  draft: PlanDraft | undefined,
  input: Omit<SandboxPlanInput, 'allows'>,
): SandboxPlan | undefined {
  if (draft === undefined || draft.key !== planKey(input)) return undefined;
  const bwrapArgs = draft.plan.bwrapArgs.map((a) => (a === EGRESS_STAND_IN ? input.egressDir : a));
  const env = { ...draft.plan.env, CORDON_SESSION: input.session };
  // Each stand-in was replaced where the plan put it, and nowhere else was one.
  if (
    bwrapArgs.filter((a) => a === input.egressDir).length !== 1 ||
    [...bwrapArgs, ...Object.values(env)].some((a) => a.includes('\0'))
  )
    return undefined;
  return { ...draft.plan, bwrapArgs, env };
}

/**
 * Plan the sandbox with the service's decisions: the plan asks whether a path reached through a
 * link is allowed; unknown answers count as "no" for one round, are asked of the service in one
 * batch, and the plan is made again with them, until it asks nothing new.
 */
async function planWithDecisions(
  o: SessionOptions,
  input: Omit<SandboxPlanInput, 'allows'>,
): Promise<SandboxPlan> {
  const drafted = planFromDraft(o.draft, input);
  if (drafted !== undefined) return drafted;
  const known = new Map<string, boolean>();
  for (let round = 0; ; round++) {
    const asked = new Map<string, PolicyRequest>();
    const plan = planSandbox({
      ...input,
      allows: (path, write) => {
        const k = `${write ? 'w' : 'r'}\0${path}`;
        const v = known.get(k);
        if (v !== undefined) return v;
        asked.set(k, { kind: write ? 'file.write' : 'file.read', path });
        return false;
      },
    });
    if (asked.size === 0) return plan;
    if (round >= PLAN_ROUNDS)
      throw new CordonError(
        'SANDBOX_SETUP_FAILED',
        'the sandbox plan kept changing while it was made (paths under the grants are changing)',
        { hint: 'run again; check whether another session is changing the granted paths' },
      );
    const keys = [...asked.keys()];
    const decisions = await o.link.decide([...asked.values()]);
    keys.forEach((k, i) => known.set(k, decisions[i]?.effect === 'allow'));
  }
}

/**
 * Open the files the plan copies into the sandbox, in its order. Each must still be a regular
 * file (opened without waiting on a FIFO put in its place): anything else stops the launch.
 */
function openCopies(paths: readonly string[]): number[] {
  const fds: number[] = [];
  try {
    for (const p of paths) {
      const fd = openSync(p, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      fds.push(fd);
      if (!fstatSync(fd).isFile())
        throw new CordonError('SANDBOX_SETUP_FAILED', `${p} is no longer a regular file`, {
          hint: 'run again; check what replaced it',
        });
    }
    return fds;
  } catch (e) {
    for (const fd of fds) closeSync(fd);
    throw e;
  }
}

/**
 * Run one agent session: the sandbox from the manifest with egress only through the service's
 * proxy for this session, the session's audit events, and complete cleanup when the agent exits.
 */
export async function runSession(
  o: SessionOptions,
  attach: (control: SessionControl) => void,
): Promise<SessionResult> {
  const ctx = (): EventContext => ({ ...o.context, time: o.now().getTime() });
  const append = (e: OcsfEvent): Promise<unknown> => o.link.append(e);
  let child: ChildProcess | undefined;
  let sampler: NodeJS.Timeout | undefined;
  let guarded = false;
  // The files bubblewrap copies into the sandbox, open until it has them.
  let copyFds: number[] = [];
  const closeCopies = (): void => {
    for (const fd of copyFds.splice(0)) closeSync(fd);
  };
  try {
    // Planning reads the grants as they are now; another session may be changing them. Any
    // failure is a refused launch, audited, never an internal error with nothing recorded.
    let plan: SandboxPlan;
    try {
      plan = await planWithDecisions(o, {
        manifest: o.manifest,
        home: o.home,
        cwd: o.cwd,
        command: o.command,
        agentRuntimes: o.agentRuntimes,
        hidden: o.hidden,
        helperPath: o.helper,
        egressDir: o.egressDir,
        parentEnv: o.env,
        session: o.id,
        limits: o.limits,
      });
      copyFds = openCopies(plan.copies);
    } catch (e) {
      const known = e instanceof CordonError ? e : undefined;
      const reason = `the sandbox could not be planned: ${(e as Error).message}; the agent did not run`;
      await append(
        processActivityEvent(ctx(), {
          activity: 'launch',
          path: o.command[0] ?? '',
          argv: o.command,
          control: {
            decision: {
              effect: 'deny',
              rule: 'sandbox',
              code: known?.code ?? 'SANDBOX_SETUP_FAILED',
              reason,
            },
            manifest: o.ref,
          },
        }),
      );
      throw (
        known ??
        new CordonError('SANDBOX_SETUP_FAILED', reason, {
          hint: 'a path under the grants changed while the launch was planned (is another session changing it?); run again',
          cause: e,
        })
      );
    }
    for (const w of plan.warnings) o.onDiagnostic(w);
    const argv0 = o.command[0] ?? '';
    // Node passes on every descriptor its caller left open without close-on-exec; the helper's
    // launch step closes all but these six before it execs bubblewrap. With a terminal on 0-2,
    // it runs bubblewrap on a pseudo-terminal of the session's own and relays it, and says so on
    // the status pipe (fd 4) before bubblewrap starts.
    const own = ['inherit', 'inherit', 'inherit', 'pipe', 'pipe', 'pipe'] as const;
    const copiesAt: number = FIRST_COPY_FD;
    if (own.length !== copiesAt) throw new Error('the plan numbers copied files from another fd');
    // The files bubblewrap copies in follow, from FIRST_COPY_FD on.
    const stdio = [...own, ...copyFds];
    child = spawn(
      o.helper,
      [
        '--launch',
        '--keep-fds',
        String(stdio.length),
        '--status-fd',
        '4',
        '--',
        o.bwrap,
        ...plan.bwrapArgs,
      ],
      { env: plan.env, stdio: [...stdio] },
    );
    closeCopies();
    const spawned = child;
    // Every listener is attached before the first await: a sandbox that fails at once must not
    // close unobserved.
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      spawned.on('close', (code, signal) => resolve({ code, signal })),
    );
    let spawnFailed = false;
    spawned.on('error', () => {
      spawnFailed = true;
    });
    const helperEvents: Record<string, unknown>[] = [];
    // The egress bridge is the agent's only way out: its deaths are recorded as they happen.
    const bridgeReports: Promise<unknown>[] = [];
    const reportBridge = (e: Record<string, unknown>): Promise<unknown> => {
      const failed = e['event'] === 'bridge-failed';
      const how =
        typeof e['signal'] === 'number' && e['signal'] !== 0
          ? `was killed by signal ${e['signal']}`
          : `exited with status ${String(e['code'])}`;
      const reason = failed
        ? `the egress bridge ${how} after ${String(e['restarts'])} restarts; the session was ended (no network is not a state the agent is left in)`
        : `the egress bridge ${how}; restarted (${String(e['restarts'])} of ${String(e['maxRestarts'])})`;
      o.onDiagnostic(reason);
      return append(
        processActivityEvent(ctx(), {
          activity: failed ? 'terminate' : 'launch',
          path: SANDBOX_HELPER,
          ...(typeof e['pid'] === 'number' ? { pid: e['pid'] } : {}),
          control: {
            decision: failed
              ? { effect: 'deny', rule: 'sandbox', code: 'SANDBOX_BRIDGE_FAILED', reason }
              : { effect: 'allow', rule: 'sandbox', code: 'SANDBOX_BRIDGE_RESTARTED', reason },
            manifest: o.ref,
          },
        }),
      ).catch((err: unknown) => o.onDiagnostic(`audit: ${(err as Error).message}`));
    };
    const helperOut = spawned.stdio[4] as Readable;
    helperOut.setEncoding('utf8');
    let helperBuf = '';
    let relayed = false;
    helperOut.on('data', (d: string) => {
      helperBuf += d;
      let nl;
      while ((nl = helperBuf.indexOf('\n')) >= 0) {
        let event: Record<string, unknown> | undefined;
        try {
          event = parseStrictJson(helperBuf.slice(0, nl)) as Record<string, unknown>;
        } catch {
          event = undefined; // not a status line
        }
        if (event?.['event'] === 'bridge-restarted' || event?.['event'] === 'bridge-failed')
          bridgeReports.push(reportBridge(event));
        if (event?.['event'] === 'terminal') relayed = true;
        else if (event?.['event'] === 'stopped') {
          // The agent was suspended (Ctrl-Z on its terminal): the job stops, so the user's shell
          // sees it stopped and takes its terminal back; `fg` continues it, and the helper the
          // agent. The terminal relay first gives the user's terminal back as it was, then
          // stops the job itself.
          if (relayed) spawned.kill('SIGTSTP');
          else process.kill(process.pid, 'SIGSTOP');
        } else if (event !== undefined) helperEvents.push(event);
        helperBuf = helperBuf.slice(nl + 1);
      }
    });
    // bwrap's status (fd 3) is read from the start: if bwrap exits before anyone reads it, Node
    // drains and discards it.
    const sandboxPidKnown = new Promise<number | undefined>((resolve) => {
      let buf = '';
      const status = spawned.stdio[3] as Readable;
      status.setEncoding('utf8');
      status.on('data', (d: string) => {
        buf += d;
        const m = /"child-pid"\s*:\s*(\d+)/.exec(buf);
        if (m !== null) resolve(Number(m[1]));
      });
      status.on('end', () => resolve(undefined));
      if (spawnFailed) resolve(undefined);
      spawned.on('error', () => resolve(undefined));
    });
    const go = (spawned.stdio as unknown as (Writable | null)[])[5] as Writable;
    go.on('error', () => undefined); // a sandbox that died early; reported from its exit
    // What the user's own tools would run after the session (git hooks and config, agents'
    // settings, shell start-up files) is recorded before the agent starts; no record, no agent.
    // Both are made while bubblewrap builds the sandbox (it only mounts what the plan made; the
    // agent waits for the go byte).
    try {
      const recorded = recordPersistence(
        o.stateDir,
        guardScope(
          o.id,
          o.home,
          plan.grants.filter((g) => g.access === 'write').map((g) => g.path),
          o.manifest.overrides,
          o.hidden,
        ),
        Date.now(),
      );
      guarded = recorded.watching;
      if (recorded.incomplete)
        o.onDiagnostic(
          'persistence guard: the write grants hold more than it walks; files beyond its bounds are not watched',
        );
    } catch (e) {
      // The helper reads end-of-file instead of the go byte and stops before the agent runs.
      go.destroy();
      spawned.kill('SIGKILL');
      const reason = `the persistence guard could not record the write grants: ${(e as Error).message}; the agent did not run`;
      await append(
        processActivityEvent(ctx(), {
          activity: 'launch',
          path: argv0,
          argv: o.command,
          control: {
            decision: { effect: 'deny', rule: 'sandbox', code: 'PERSISTENCE_GUARD_FAILED', reason },
            manifest: o.ref,
          },
        }),
      );
      throw new CordonError('PERSISTENCE_GUARD_FAILED', reason, {
        hint: 'check that the state directory is writable and has space',
      });
    }
    // The launch is recorded before the agent runs: no audit record, no agent. The record is
    // written while bubblewrap builds the sandbox; the helper waits for the go byte.
    const launchRecorded = append(
      processActivityEvent(ctx(), {
        activity: 'launch',
        path: argv0,
        argv: o.command,
        control: {
          decision: {
            effect: 'allow',
            rule: 'sandbox',
            code: 'SANDBOX_STARTED',
            reason: `session ${o.id} launching in the sandbox: ${plan.grants.length} grants mounted, ${plan.masked.length} paths masked, egress only through the proxy; guardrails: ${o.guardrails.text}`,
          },
          manifest: o.ref,
        },
        unmapped: {
          guardrails: o.guardrails.facts,
          sandbox: {
            agent_runtimes: o.agentRuntimes.map((r) => `${r.path} (${r.rule})`),
            cwd: plan.cwd,
            grants: plan.grants.map((g) => `${g.access} ${g.path}${g.widened ? ' (widened)' : ''}`),
            masked: [...plan.masked],
            // Mandatory denies the manifest lifts, each with its reason: every use is reported.
            overrides: o.manifest.overrides.map((x) => `${x.deny} (${x.access}): ${x.reason}`),
            warnings: [...plan.warnings],
          },
        },
      }),
    );
    try {
      await launchRecorded;
    } catch (e) {
      // The helper reads end-of-file instead of the go byte and stops before the agent runs.
      go.destroy();
      spawned.kill('SIGKILL');
      throw e;
    }
    go.end('g');
    const sandboxPid = await sandboxPidKnown;
    // The start time pins the pid: the service never acts on a reused one.
    const sandboxStart = sandboxPid === undefined ? undefined : startTime(sandboxPid);
    if (sandboxPid !== undefined)
      o.link.setSandbox(sandboxPid, sandboxStart).catch((e: unknown) => {
        // An agent that has already ended (`true`) leaves no process to name: nothing to say.
        if (!isAlive(sandboxPid, sandboxStart)) return;
        o.onDiagnostic(`cannot tell the service the sandbox's pid: ${(e as Error).message}`);
      });

    let quarantined = false;
    const killSandbox = (): void => {
      if (sandboxPid === undefined) return;
      try {
        process.kill(sandboxPid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    // The service quarantines (a responder, a revoked manifest): egress is already denied there;
    // the sandbox runs as this user, so this process ends it.
    o.link.watch((code, reason) => {
      quarantined = true;
      o.onDiagnostic(`session quarantined by the service (${code}): ${reason}`);
      killSandbox();
    });
    const seen = new Set<number>();
    let sampled = 0;
    const helperId = fileId(o.helper);
    const ownHelpers = new Set<number>();
    const sample = (): void => {
      if (sandboxPid === undefined) return;
      if (sampled > MAX_PROCESS_EVENTS) return;
      // The sandbox's init and the egress bridge it forks are Cordon's own (the launch event
      // covers them). The helper is a file mounted on its own, which the host cannot name by
      // path ('/'): it is known by its identity. A helper the agent starts itself is recorded.
      for (const p of processTree(sandboxPid)) {
        if (p.pid === sandboxPid || seen.has(p.pid)) continue;
        const isHelper = helperId !== undefined && p.exeId === helperId;
        // An exited helper child (a zombie) has no executable left to compare, only its name.
        const wasHelper = p.exeId === undefined && p.comm === basename(SANDBOX_HELPER);
        if ((isHelper || wasHelper) && (p.ppid === sandboxPid || ownHelpers.has(p.ppid))) {
          ownHelpers.add(p.pid);
          continue;
        }
        seen.add(p.pid);
        if (++sampled > MAX_PROCESS_EVENTS) {
          o.onDiagnostic(`more than ${MAX_PROCESS_EVENTS} processes: sampling stopped`);
          return;
        }
        append(
          processActivityEvent(ctx(), {
            activity: 'launch',
            path: isHelper ? SANDBOX_HELPER : processPath(p),
            argv: p.argv,
            pid: p.pid,
            parentPid: p.ppid,
          }),
        ).catch((e: unknown) => o.onDiagnostic(`audit: ${(e as Error).message}`));
      }
    };
    if (sandboxPid !== undefined) {
      // Agents start their helpers (shells, language servers, tools) early: sample every 100 ms
      // for the first seconds, then at the steady interval.
      const steady = o.sampleIntervalMs ?? 1000;
      let ticks = 0;
      const tick = (): void => {
        try {
          sample();
        } catch (e) {
          // The timer must never take the session down; what failed is reported.
          o.onDiagnostic(`sampling failed: ${(e as Error).message}`);
        }
        sampler = setTimeout(tick, ++ticks < FAST_SAMPLES ? FAST_SAMPLE_MS : steady);
        sampler.unref();
      };
      // The first sample waits: the helper has only just been started.
      sampler = setTimeout(tick, FAST_SAMPLE_MS);
      sampler.unref();
    }

    attach({
      resume: () => {
        // `fg` or `bg` continued this job: the agent gets the terminal only in the foreground.
        // The helper names the real-time signals it takes for this (its libc's SIGRTMIN + 1, + 2).
        const started = helperEvents.find((e) => e['event'] === 'started');
        const fg = started?.['resumeForeground'];
        const bg = started?.['resumeBackground'];
        if (sandboxPid === undefined || typeof fg !== 'number' || typeof bg !== 'number') return;
        try {
          process.kill(sandboxPid, inForeground() ? fg : bg);
        } catch {
          // already gone
        }
      },
      signal: (sig) => {
        if (sandboxPid !== undefined) {
          try {
            process.kill(sandboxPid, sig);
          } catch {
            // already gone
          }
        }
      },
      quarantine: async (reason) => {
        if (quarantined) return;
        quarantined = true;
        killSandbox();
        await o.link.quarantine(reason);
      },
    });

    const { code, signal } = await exited;
    await Promise.all(bridgeReports);
    // The helper reports `started` once it has forked the agent; without it, bubblewrap or the
    // helper stopped during setup and the agent never ran.
    const agentStarted = helperEvents.some(
      (e) => e['event'] === 'started' || e['event'] === 'exec-failed',
    );
    const setupFailed = async (message: string, hint: string): Promise<never> => {
      await append(
        processActivityEvent(ctx(), {
          activity: 'terminate',
          path: argv0,
          argv: o.command,
          ...(code === null ? {} : { exitCode: code }),
          control: {
            decision: {
              effect: 'deny',
              rule: 'sandbox',
              code: 'SANDBOX_SETUP_FAILED',
              reason: message,
            },
            manifest: o.ref,
          },
        }),
      );
      throw new CordonError('SANDBOX_SETUP_FAILED', message, { hint });
    };
    const setup = helperEvents.find((e) => e['event'] === 'setup-failed');
    if (setup?.['step'] === 'mounts')
      return await setupFailed(
        'a planned mount point was changed while the sandbox was built (a path swapped for a symbolic link?); the agent did not run',
        'see the path on stderr; check whether another session with a write grant is changing it',
      );
    if (setup !== undefined)
      return await setupFailed(
        `the sandbox helper failed at step "${String(setup['step'])}"; the agent did not run`,
        'run `cordon doctor`; nothing ran outside the sandbox',
      );
    if (sandboxPid === undefined || !agentStarted)
      return await setupFailed(
        `bubblewrap could not set up the sandbox (exit ${String(code ?? signal)}); the agent did not run`,
        'run `cordon doctor` to see which layer is missing and how to fix it',
      );
    const exitEvent = helperEvents.find((e) => e['event'] === 'exited');
    // bubblewrap killed by a signal (a responder's SIGKILL, the OOM killer) ended the session
    // with it: 128 + N, as a shell reports it.
    const exitCode = code ?? 128 + (signal === null ? 0 : constants.signals[signal]);
    const sig = typeof exitEvent?.['signal'] === 'number' ? exitEvent['signal'] : 0;
    const execFailed = helperEvents.find((e) => e['event'] === 'exec-failed');
    const terminated = append(
      processActivityEvent(ctx(), {
        activity: 'terminate',
        path: argv0,
        argv: o.command,
        pid: sandboxPid,
        exitCode,
        ...(execFailed === undefined
          ? {}
          : {
              control: {
                decision: {
                  effect: 'deny',
                  rule: 'sandbox',
                  code: 'SANDBOX_EXEC_FAILED',
                  reason: `the sandbox could not run ${argv0} (errno ${String(execFailed['errno'])})`,
                },
                manifest: o.ref,
              },
            }),
      }),
    );
    // Observed here, awaited by the caller (a rejection with nobody listening yet is not lost).
    terminated.catch(() => undefined);
    // A session with a persistence guard to settle has its Terminate made durable first: the
    // guard's clean-up below removes files on the log's disk, and on a full disk the record goes
    // into the space the session reserved for it, not into room the clean-up happened to make.
    if (guarded) await terminated;
    return { exitCode, ...(sig === 0 ? {} : { signal: sig }), quarantined, plan, terminated };
  } finally {
    closeCopies();
    if (sampler !== undefined) clearTimeout(sampler);
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const dead = new Promise((r) => child?.once('close', r));
      child.kill('SIGKILL');
      // The persistence guard below must not look while the sandbox is still going.
      if (guarded) await Promise.race([dead, new Promise((r) => setTimeout(r, 5000))]);
    }
    // The sandbox is gone: compare what it left with the launch-time record and neutralise
    // what it planted. A failure leaves the record for the next `cordon run` or `cordon ps`.
    if (guarded) {
      try {
        await settlePersistence(o.stateDir, checkPersistence(o.stateDir, o.id), [o.id], {
          append,
          context: ctx,
          onDiagnostic: o.onDiagnostic,
        });
      } catch (e) {
        o.onDiagnostic(`persistence guard: ${(e as Error).message}`);
      }
    }
  }
}
