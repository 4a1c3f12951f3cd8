import { CordonError } from '../errors.js';
import { defaultDirs, userHome, type CordonDirs } from '../env.js';
import type { EndpointContext } from '../endpoint/verify.js';

/** Where a verb writes and what it knows about its environment; tests pass their own. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
  readonly now: () => Date;
  readonly home: string;
  /** Whether stderr is a terminal: progress lines are shown only there. */
  readonly stderrIsTTY?: boolean;
}

export function processIo(): CliIo {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    env: process.env,
    now: () => new Date(),
    home: userHome(),
    stderrIsTTY: process.stderr.isTTY,
  };
}

/** Progress of long work: one line on stderr, rewritten in place. */
export interface Progress {
  update(done: number, total?: number): void;
  /** Clear the line, so that what follows starts on a clean one. */
  end(): void;
}

/**
 * Progress for long work (`audit verify`, `emit-test`, `export`) on a terminal only: logs and
 * pipes get nothing, so scripts and `--json` readers see the same output as before.
 */
export function progress(io: CliIo, label: string): Progress {
  if (io.stderrIsTTY !== true) return { update: () => undefined, end: () => undefined };
  let last = 0;
  let shown = false;
  return {
    update(done, total) {
      const now = Date.now();
      // A few updates a second are enough to see it move; more would cost the work itself.
      if (now - last < 200) return;
      last = now;
      shown = true;
      const of =
        total === undefined || total === 0
          ? ''
          : ` of ${total} (${Math.floor((done * 100) / total)}%)`;
      io.stderr(`\r${label}: ${done}${of}\x1b[K`);
    },
    end() {
      if (shown) io.stderr('\r\x1b[K');
    },
  };
}

export interface GlobalOptions {
  policyDir?: string;
  stateDir?: string;
}

export function resolveDirs(io: CliIo, opts: GlobalOptions): CordonDirs {
  const d = defaultDirs(io.env, io.home);
  return { policyDir: opts.policyDir ?? d.policyDir, stateDir: opts.stateDir ?? d.stateDir };
}

/** The directories, home and clock the endpoint modules take, from the verb's options. */
export function endpointContext(io: CliIo, opts: GlobalOptions): EndpointContext {
  return { dirs: resolveDirs(io, opts), home: io.home, now: io.now };
}

/** Exit codes, documented in the README. */
export const EXIT = {
  OK: 0,
  INVALID: 1,
  USAGE: 2,
  ENVIRONMENT: 3,
  /** `audit verify` found no damage but cannot prove the log complete or a copy authentic. */
  UNPROVEN: 4,
  /** A bug in Cordon (EX_SOFTWARE). */
  INTERNAL: 70,
  /** The reader closed the output pipe (128 + SIGPIPE, as a process the signal ended). */
  CLOSED_PIPE: 141,
} as const;

/** Exit codes of `cordon run` itself; any other code is the agent's own. */
export const RUN_EXIT = { SETUP: 125, NOT_RUNNABLE: 126, NOT_FOUND: 127 } as const;

const USAGE_CODES = new Set([
  'USAGE',
  'TEMPLATE_UNKNOWN',
  'TEMPLATE_PARAMS',
  'KEY_NAME_INVALID',
  'GROUP_UNKNOWN',
  'RESOLVE_ENTRY_INVALID',
]);
const ENVIRONMENT_CODES =
  /^(FILE_|STATE_CORRUPT$|DIR_|PROXY_LISTEN_FAILED$|DAEMON_INSTALL_FAILED$|AUDIT_(LOG_MISSING|LOG_LOCKED|WRITE_FAILED|NO_VERIFIER|NO_SINKS)$)/;

export function exitCodeFor(code: string): number {
  if (USAGE_CODES.has(code)) return EXIT.USAGE;
  if (ENVIRONMENT_CODES.test(code)) return EXIT.ENVIRONMENT;
  return EXIT.INVALID;
}

export function usage(message: string, hint: string): CordonError {
  return new CordonError('USAGE', message, { hint });
}

/** Render an error for a person. */
export function renderError(e: CordonError): string {
  const lines = [`error[${e.code}]: ${e.message}`];
  if (e.file !== undefined) lines.push(`  file: ${e.file}`);
  if (e.pointer !== undefined && e.pointer !== '') lines.push(`  field: ${e.pointer}`);
  if (e.hint !== undefined) lines.push(`  fix: ${e.hint}`);
  return lines.join('\n') + '\n';
}

/** Print a JSON document that is the verb's product itself (a schema, a manifest). */
export function printJson(io: CliIo, value: unknown): void {
  io.stdout(JSON.stringify(value, null, 2) + '\n');
}

/**
 * What every `--json` output is: one object whose `ok` is true exactly when the exit code is 0,
 * lists inside it, and on failure a stable `code` and a `message` beside the details.
 */
export type JsonResult =
  | ({ readonly ok: true } & Readonly<Record<string, unknown>>)
  | ({ readonly ok: false; readonly code: string; readonly message: string } & Readonly<
      Record<string, unknown>
    >);

/**
 * Print a verb's `--json` result. Verbs with `--json` print through this and nothing else, so
 * that scripts can rely on one shape (test/cli/json-output.test.ts holds every verb to it).
 *
 * @example
 * printResult(io, { ok: true, sessions });
 */
export function printResult(io: CliIo, result: JsonResult): void {
  io.stdout(JSON.stringify(result, null, 2) + '\n');
}

/** A failure as a `--json` result: `{ ok: false, code, message, file?, pointer?, hint? }`. */
export function errorResult(e: CordonError): JsonResult {
  const j = e.toJSON();
  return { ok: false, ...j, code: e.code, message: e.message };
}
