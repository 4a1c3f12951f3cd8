import { CordonError, type CordonCode } from '../errors.js';
import type { LintCode } from '../manifest/lint.js';
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

/**
 * What kind of failure a code is, for the exit code: the command line was wrong (`usage`, exit
 * 2), the machine's files or processes are not as needed (`environment`, exit 3), or the input
 * was refused (`invalid`, exit 1).
 */
export type ExitClass = 'usage' | 'environment' | 'invalid';

const EXIT_OF_CLASS: Record<ExitClass, number> = {
  usage: EXIT.USAGE,
  environment: EXIT.ENVIRONMENT,
  invalid: EXIT.INVALID,
};

/**
 * The exit class of every code but the lint rules' (each of which refuses a manifest: invalid
 * input). A total map: a code added to a domain's union in src/errors.ts does not compile until
 * it is given its class here. (The lint rules are not listed so that every verb does not load
 * the linter to exit.)
 */
const EXIT_CLASS: Record<Exclude<CordonCode, LintCode>, ExitClass> = {
  // manifest
  JSON_TOO_LARGE: 'invalid',
  JSON_ENCODING: 'invalid',
  JSON_SYNTAX: 'invalid',
  JSON_DUPLICATE_KEY: 'invalid',
  JSON_TOO_DEEP: 'invalid',
  CANONICAL_UNREPRESENTABLE: 'invalid',
  MANIFEST_INVALID: 'invalid',
  MANIFEST_UNKNOWN_FIELD: 'invalid',
  MANIFEST_MISSING_FIELD: 'invalid',
  MANIFEST_TYPE: 'invalid',
  MANIFEST_VERSION: 'invalid',
  MANIFEST_VALIDITY_INVERTED: 'invalid',
  MANIFEST_LINT: 'invalid',
  COMMAND_NOT_ABSOLUTE: 'invalid',
  RUNTIME_NOT_ONE_PATH: 'invalid',
  API_SCOPE_SYNTAX: 'invalid',
  PATH_EMPTY: 'invalid',
  PATH_RELATIVE: 'invalid',
  PATH_NUL: 'invalid',
  PATH_CONTROL_CHAR: 'invalid',
  PATH_DOTDOT: 'invalid',
  PATH_EMPTY_SEGMENT: 'invalid',
  PATH_TILDE_USER: 'invalid',
  PATH_GLOB_SYNTAX: 'invalid',
  PATH_TOO_LONG: 'invalid',
  NET_SCOPE_SYNTAX: 'invalid',
  NET_SCHEME: 'invalid',
  NET_USERINFO: 'invalid',
  NET_WILDCARD_ALL: 'invalid',
  NET_WILDCARD_SYNTAX: 'invalid',
  NET_WILDCARD_PUBLIC_SUFFIX: 'invalid',
  NET_HOST_INVALID: 'invalid',
  NET_IP_NONCANONICAL: 'invalid',
  NET_CIDR_INVALID: 'invalid',
  NET_PORT: 'invalid',
  NET_PATH: 'invalid',
  TEMPLATE_UNKNOWN: 'usage',
  TEMPLATE_PARAMS: 'usage',
  ENVELOPE_INVALID: 'invalid',
  PAYLOAD_TYPE_MISMATCH: 'invalid',
  KEY_CORRUPT: 'invalid',
  KEY_NOT_ED25519: 'invalid',
  KEY_PASSPHRASE_REQUIRED: 'invalid',
  KEY_PASSPHRASE_WRONG: 'invalid',
  KEY_PURPOSE: 'invalid',
  KEY_REVOKED: 'invalid',
  KEY_EXPIRED: 'invalid',
  KEY_NOT_YET_VALID: 'invalid',
  SIGNATURE_MISSING: 'invalid',
  SIGNATURE_INVALID: 'invalid',
  SIGNATURE_UNTRUSTED: 'invalid',
  SIGNATURE_DUPLICATE: 'invalid',
  THRESHOLD_NOT_MET: 'invalid',
  MANIFEST_UNSIGNED: 'invalid',
  MANIFEST_NOT_CANONICAL: 'invalid',
  MANIFEST_NOT_YET_VALID: 'invalid',
  MANIFEST_EXPIRED: 'invalid',
  MANIFEST_REVOKED: 'invalid',
  MANIFEST_ROLLBACK: 'invalid',
  MANIFEST_VERSION_REUSED: 'invalid',
  TRUST_STORE_INVALID: 'invalid',
  REVOCATION_LIST_MISSING: 'invalid',
  REVOCATION_LIST_INVALID: 'invalid',
  REVOCATION_LIST_UNTRUSTED: 'invalid',
  REVOCATION_LIST_ROLLBACK: 'invalid',
  VERIFY_ERROR: 'invalid',
  // policy
  GUARDRAIL_SYNTAX: 'invalid',
  GUARDRAIL_INVALID: 'invalid',
  GUARDRAIL_PERMIT: 'invalid',
  CEDAR_UNTRANSLATABLE: 'invalid',
  POLICY_COMPILE: 'invalid',
  POLICY_TEST_INVALID: 'invalid',
  // audit
  AUDIT_EVENT_INVALID: 'invalid',
  AUDIT_RECORD_MALFORMED: 'invalid',
  AUDIT_LOG_LOCKED: 'environment',
  AUDIT_LOG_CLOSED: 'invalid',
  AUDIT_LOG_CORRUPT: 'invalid',
  AUDIT_LOG_MISSING: 'environment',
  AUDIT_WRITE_FAILED: 'environment',
  AUDIT_STATE_CORRUPT: 'invalid',
  AUDIT_CHECKPOINT_INVALID: 'invalid',
  AUDIT_NO_VERIFIER: 'environment',
  AUDIT_NO_SINKS: 'environment',
  AUDIT_PROOF_INVALID: 'invalid',
  AUDIT_PROOF_UNAVAILABLE: 'invalid',
  AUDIT_WITNESS_FAILED: 'invalid',
  AUDIT_WITNESS_INVALID: 'invalid',
  NOTE_MALFORMED: 'invalid',
  NOTE_UNSIGNED: 'invalid',
  NOTE_SIGNATURE_INVALID: 'invalid',
  // store
  FILE_NOT_FOUND: 'environment',
  FILE_UNREADABLE: 'environment',
  FILE_UNWRITABLE: 'environment',
  FILE_NOT_REGULAR: 'environment',
  FILE_TOO_LARGE: 'environment',
  FILE_EXISTS: 'environment',
  FILE_LOCKED: 'environment',
  STATE_CORRUPT: 'environment',
  KEY_NAME_INVALID: 'usage',
  PASSPHRASE_WEAK: 'invalid',
  TRUST_KEY_EXISTS: 'invalid',
  CONFIG_INVALID: 'invalid',
  NATIVE_UNAVAILABLE: 'invalid',
  // sandbox
  SANDBOX_UNAVAILABLE: 'invalid',
  SANDBOX_SETUP_FAILED: 'invalid',
  SANDBOX_LIMIT_UNENFORCEABLE: 'invalid',
  SANDBOX_PACKAGE_EXPOSED: 'invalid',
  PERSISTENCE_GUARD_FAILED: 'invalid',
  SESSION_NOT_FOUND: 'invalid',
  // egress
  PROXY_LISTEN_FAILED: 'environment',
  RESOLVE_ENTRY_INVALID: 'usage',
  // endpoint
  GUARDRAILS_REQUIRED: 'invalid',
  COMMAND_NOT_FOUND: 'invalid',
  COMMAND_NOT_ALLOWED: 'invalid',
  RUNTIME_NOT_IN_MANIFEST: 'invalid',
  UNSAFE_NO_SANDBOX_FORBIDDEN: 'invalid',
  // daemon
  PEER_UNKNOWN: 'invalid',
  POLICY_RECHECK_FAILED: 'invalid',
  DAEMON_INSTALL_FAILED: 'environment',
  DAEMON_INSTALL_UNSAFE: 'invalid',
  DAEMON_INSTALL_NOT_ROOT: 'invalid',
  DAEMON_INSTALL_CONFLICT: 'invalid',
  DAEMON_UNREACHABLE: 'environment',
  DAEMON_PROTOCOL: 'invalid',
  DAEMON_RUNNING: 'environment',
  DAEMON_BUSY: 'environment',
  DAEMON_SOCKET_PATH_TOO_LONG: 'environment',
  DAEMON_DIR_UNSAFE: 'invalid',
  DAEMON_FORBIDDEN: 'invalid',
  DAEMON_LISTEN_FAILED: 'environment',
  DAEMON_OPTION_FORBIDDEN: 'invalid',
  DAEMON_SOCKET_INVALID: 'invalid',
  DAEMON_USER_UNKNOWN: 'invalid',
  SESSION_UNAUTHORIZED: 'invalid',
  EVENT_INVALID: 'invalid',
  EVENT_SEQUENCE_GAP: 'invalid',
  EVENTS_PENDING: 'environment',
  REQUEST_INVALID: 'invalid',
  BODY_TOO_LARGE: 'invalid',
  METHOD_NOT_ALLOWED: 'invalid',
  NOT_FOUND: 'invalid',
  INTERNAL: 'invalid',
  // cli
  USAGE: 'usage',
  GROUP_UNKNOWN: 'usage',
  GROUP_MAPPING_INVALID: 'invalid',
  KEY_UNKNOWN: 'invalid',
  ALREADY_REVOKED: 'invalid',
};

/** The exit code of a failure with this code (documented in the README). */
export function exitCodeFor(code: CordonCode): number {
  const known: Partial<Record<CordonCode, ExitClass>> = EXIT_CLASS;
  return EXIT_OF_CLASS[known[code] ?? 'invalid'];
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
