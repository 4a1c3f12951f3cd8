/**
 * The fast start of `cordon run`: the `cordon` bin loads this small bundle (`cordon-run.cjs`)
 * instead of the whole CLI when the command line is an ordinary `cordon run`. It reads the
 * options of that command line itself and runs the verb exactly as the full CLI does; anything
 * it does not recognise (help, an unknown or malformed option, a missing `--` or `--manifest`)
 * is left to the full CLI, which parses, reports and refuses as always. Commander, the full
 * manifest schema, Cedar and the proxy stay out of the process that only launches.
 */
import { RUN_EXIT, processIo, type CliIo } from './context.js';
import { runRunWithSignals, type RunOptions } from './run.js';

/** Options that take a value, by their flag, with the key commander gives them. */
const VALUE_OPTIONS: Readonly<Record<string, keyof RunOptions>> = {
  '--manifest': 'manifest',
  '--max-processes': 'maxProcesses',
  '--max-memory': 'maxMemory',
  '--max-cpu-seconds': 'maxCpuSeconds',
  '--max-file-size': 'maxFileSize',
  '--max-tmp-size': 'maxTmpSize',
  '--config': 'config',
  '--guardrails': 'guardrails',
  '--policy-dir': 'policyDir',
  '--state-dir': 'stateDir',
};
/** Options that may be given more than once, each value collected. */
const LIST_OPTIONS: Readonly<Record<string, 'agentRuntime' | 'resolve'>> = {
  '--agent-runtime': 'agentRuntime',
  '--resolve': 'resolve',
};

/** A `cordon run` command line this entry runs: its options and the agent's command. */
export interface FastRun {
  readonly opts: RunOptions;
  readonly command: string[];
}

/**
 * The options of `cordon [--policy-dir D] [--state-dir D] run OPTIONS -- COMMAND...`, as
 * commander gives them to the verb; undefined for anything else, which the full CLI handles
 * (and reports, in its own words). Values that look like options, `--flag=value` forms and
 * anything before `--` that is not one of the verb's options are left to it too.
 */
export function parseRunArgv(argv: readonly string[]): FastRun | undefined {
  const opts: Record<string, unknown> = {};
  let i = 0;
  // Program options before the verb.
  for (; i < argv.length && argv[i] !== 'run'; i += 2) {
    const flag = argv[i] ?? '';
    const value = argv[i + 1];
    if ((flag !== '--policy-dir' && flag !== '--state-dir') || !plainValue(value)) return undefined;
    opts[flag === '--policy-dir' ? 'policyDir' : 'stateDir'] = value;
  }
  if (argv[i] !== 'run') return undefined;
  for (i++; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') break;
    const single = VALUE_OPTIONS[a];
    const list = LIST_OPTIONS[a];
    if (single !== undefined || list !== undefined) {
      const value = argv[++i];
      if (!plainValue(value)) return undefined;
      if (single !== undefined) opts[single] = value;
      else if (list !== undefined)
        opts[list] = [...((opts[list] as string[] | undefined) ?? []), value];
    } else if (a === '--no-guardrails') opts['guardrails'] = false;
    else if (a === '--unsafe-no-sandbox') opts['unsafeNoSandbox'] = true;
    else return undefined;
  }
  const command = argv.slice(i + 1);
  if (i >= argv.length || command.length === 0 || typeof opts['manifest'] !== 'string')
    return undefined;
  return { opts: opts as unknown as RunOptions, command };
}

/** A value commander would take as the option's value and nothing else. */
function plainValue(v: string | undefined): v is string {
  return v !== undefined && v !== '' && !v.startsWith('-');
}

let ran = false;

/** Whether this process ran a session (its code cache then holds the session's code). */
export function sessionRan(): boolean {
  return ran;
}

/**
 * Run `cordon run` from this command line, or return undefined (nothing done) when it is one the
 * full CLI must handle. The exit code, messages and signal handling are the full CLI's.
 */
export async function runEntry(
  argv: readonly string[],
  io: CliIo = processIo(),
): Promise<number | undefined> {
  const parsed = parseRunArgv(argv);
  if (parsed === undefined) return undefined;
  // The agent's output and Cordon's diagnostics may go to a reader that leaves: the session
  // goes on enforcing and recording; only messages are lost.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  try {
    const code = await runRunWithSignals(io, parsed.opts, parsed.command);
    ran = true;
    return code;
  } catch (e) {
    // An unexpected failure is a bug; say so plainly and exit non-zero.
    io.stderr(`internal error: ${(e as Error).stack ?? String(e)}\n`);
    return RUN_EXIT.SETUP;
  }
}
