import type { LintCode } from './manifest/lint.js';

/**
 * One error type for the whole project. Every failure carries a stable `code` that tests and
 * callers branch on; messages are for people and may change.
 *
 * @example
 * throw new CordonError('MANIFEST_INVALID', 'readPaths/0: relative path', { pointer: '/readPaths/0' });
 */
/**
 * Every code a CordonError can carry, one string-literal union per domain. A code is added here
 * (and given its exit class in src/cli/context.ts, which fails to compile until it is) before it
 * can be thrown; one code per meaning.
 */
export type ManifestCode =
  /** A lint error refused at signing or verification (the rule's own code). */
  | LintCode
  // Strict JSON
  | 'JSON_TOO_LARGE'
  | 'JSON_ENCODING'
  | 'JSON_SYNTAX'
  | 'JSON_DUPLICATE_KEY'
  | 'JSON_TOO_DEEP'
  | 'CANONICAL_UNREPRESENTABLE'
  // The manifest document
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN_FIELD'
  | 'MANIFEST_MISSING_FIELD'
  | 'MANIFEST_TYPE'
  | 'MANIFEST_VERSION'
  | 'MANIFEST_VALIDITY_INVERTED'
  | 'MANIFEST_LINT'
  | 'COMMAND_NOT_ABSOLUTE'
  | 'RUNTIME_NOT_ONE_PATH'
  | 'API_SCOPE_SYNTAX'
  | 'PATH_EMPTY'
  | 'PATH_RELATIVE'
  | 'PATH_NUL'
  | 'PATH_CONTROL_CHAR'
  | 'PATH_DOTDOT'
  | 'PATH_EMPTY_SEGMENT'
  | 'PATH_TILDE_USER'
  | 'PATH_GLOB_SYNTAX'
  | 'PATH_TOO_LONG'
  | 'NET_SCOPE_SYNTAX'
  | 'NET_SCHEME'
  | 'NET_USERINFO'
  | 'NET_WILDCARD_ALL'
  | 'NET_WILDCARD_SYNTAX'
  | 'NET_WILDCARD_PUBLIC_SUFFIX'
  | 'NET_HOST_INVALID'
  | 'NET_IP_NONCANONICAL'
  | 'NET_CIDR_INVALID'
  | 'NET_PORT'
  | 'NET_PATH'
  | 'TEMPLATE_UNKNOWN'
  | 'TEMPLATE_PARAMS'
  // Envelopes, keys, signatures, verification
  | 'ENVELOPE_INVALID'
  | 'PAYLOAD_TYPE_MISMATCH'
  | 'KEY_CORRUPT'
  | 'KEY_NOT_ED25519'
  | 'KEY_PASSPHRASE_REQUIRED'
  | 'KEY_PASSPHRASE_WRONG'
  | 'KEY_PURPOSE'
  | 'KEY_REVOKED'
  | 'KEY_EXPIRED'
  | 'KEY_NOT_YET_VALID'
  | 'SIGNATURE_MISSING'
  | 'SIGNATURE_INVALID'
  | 'SIGNATURE_UNTRUSTED'
  | 'SIGNATURE_DUPLICATE'
  | 'THRESHOLD_NOT_MET'
  | 'MANIFEST_UNSIGNED'
  | 'MANIFEST_NOT_CANONICAL'
  | 'MANIFEST_NOT_YET_VALID'
  | 'MANIFEST_EXPIRED'
  | 'MANIFEST_REVOKED'
  | 'MANIFEST_ROLLBACK'
  | 'MANIFEST_VERSION_REUSED'
  | 'TRUST_STORE_INVALID'
  | 'REVOCATION_LIST_MISSING'
  | 'REVOCATION_LIST_INVALID'
  | 'REVOCATION_LIST_UNTRUSTED'
  | 'REVOCATION_LIST_ROLLBACK'
  /** A verification step failed in a way none of the others names (a bug, an I/O error). */
  | 'VERIFY_ERROR';

export type PolicyCode =
  | 'GUARDRAIL_SYNTAX'
  | 'GUARDRAIL_INVALID'
  | 'GUARDRAIL_PERMIT'
  | 'CEDAR_UNTRANSLATABLE'
  | 'POLICY_COMPILE'
  | 'POLICY_TEST_INVALID';

export type AuditCode =
  | 'AUDIT_EVENT_INVALID'
  | 'AUDIT_RECORD_MALFORMED'
  | 'AUDIT_LOG_LOCKED'
  | 'AUDIT_LOG_CLOSED'
  | 'AUDIT_LOG_CORRUPT'
  | 'AUDIT_LOG_MISSING'
  | 'AUDIT_WRITE_FAILED'
  | 'AUDIT_STATE_CORRUPT'
  | 'AUDIT_CHECKPOINT_INVALID'
  | 'AUDIT_NO_VERIFIER'
  | 'AUDIT_NO_SINKS'
  | 'AUDIT_PROOF_INVALID'
  | 'AUDIT_PROOF_UNAVAILABLE'
  | 'AUDIT_WITNESS_FAILED'
  | 'AUDIT_WITNESS_INVALID'
  | 'NOTE_MALFORMED'
  | 'NOTE_UNSIGNED'
  | 'NOTE_SIGNATURE_INVALID';

/** Files and directories on disk, the policy directory's settings, the native addon. */
export type StoreCode =
  | 'FILE_NOT_FOUND'
  | 'FILE_UNREADABLE'
  | 'FILE_UNWRITABLE'
  | 'FILE_NOT_REGULAR'
  | 'FILE_TOO_LARGE'
  | 'FILE_EXISTS'
  | 'FILE_LOCKED'
  | 'STATE_CORRUPT'
  | 'KEY_NAME_INVALID'
  | 'PASSPHRASE_WEAK'
  | 'TRUST_KEY_EXISTS'
  /**
   * A settings file of the policy directory (audit.json, proxy.json, enforcement.json,
   * admission.json) does not match its schema; the error names the file and the field.
   */
  | 'CONFIG_INVALID'
  | 'NATIVE_UNAVAILABLE';

export type SandboxCode =
  | 'SANDBOX_UNAVAILABLE'
  | 'SANDBOX_SETUP_FAILED'
  | 'SANDBOX_LIMIT_UNENFORCEABLE'
  | 'SANDBOX_PACKAGE_EXPOSED'
  | 'PERSISTENCE_GUARD_FAILED'
  | 'SESSION_NOT_FOUND';

export type EgressCode = 'PROXY_LISTEN_FAILED' | 'RESOLVE_ENTRY_INVALID';

/** Putting a manifest in force and launching under it. */
export type EndpointCode =
  | 'GUARDRAILS_REQUIRED'
  | 'COMMAND_NOT_FOUND'
  | 'COMMAND_NOT_ALLOWED'
  | 'RUNTIME_NOT_IN_MANIFEST'
  | 'UNSAFE_NO_SANDBOX_FORBIDDEN';

export type DaemonCode =
  | 'PEER_UNKNOWN'
  | 'POLICY_RECHECK_FAILED'
  | 'DAEMON_INSTALL_FAILED'
  | 'DAEMON_INSTALL_UNSAFE'
  | 'DAEMON_INSTALL_NOT_ROOT'
  | 'DAEMON_INSTALL_CONFLICT'
  | 'DAEMON_UNREACHABLE'
  | 'DAEMON_PROTOCOL'
  | 'DAEMON_RUNNING'
  | 'DAEMON_DIR_UNSAFE'
  | 'DAEMON_FORBIDDEN'
  | 'DAEMON_LISTEN_FAILED'
  | 'DAEMON_OPTION_FORBIDDEN'
  | 'DAEMON_SOCKET_INVALID'
  | 'DAEMON_USER_UNKNOWN'
  | 'DAEMON_SOCKET_PATH_TOO_LONG'
  | 'DAEMON_BUSY'
  | 'SESSION_UNAUTHORIZED'
  | 'EVENT_INVALID'
  | 'EVENT_SEQUENCE_GAP'
  | 'EVENTS_PENDING'
  // The local API's own answers to a malformed request
  | 'REQUEST_INVALID'
  | 'BODY_TOO_LARGE'
  | 'METHOD_NOT_ALLOWED'
  | 'NOT_FOUND'
  | 'INTERNAL';

/** The command line itself: arguments and names a person typed. */
export type CliCode =
  'USAGE' | 'GROUP_UNKNOWN' | 'GROUP_MAPPING_INVALID' | 'KEY_UNKNOWN' | 'ALREADY_REVOKED';

export type CordonCode =
  | ManifestCode
  | PolicyCode
  | AuditCode
  | StoreCode
  | SandboxCode
  | EgressCode
  | EndpointCode
  | DaemonCode
  | CliCode;

export class CordonError<C extends CordonCode = CordonCode> extends Error {
  override readonly name = 'CordonError';
  /** Stable code, declared in its domain's union above. */
  readonly code: C;
  /** JSON pointer (RFC 6901) of the offending field, when there is one. */
  readonly pointer: string | undefined;
  /** File the error is about, when there is one. */
  readonly file: string | undefined;
  /** What the user should do about it. */
  readonly hint: string | undefined;

  /**
   * `e instanceof CordonError` (or a subclass) narrows to an error whose code is a CordonCode,
   * not `any` as TypeScript would make of the class's type parameter.
   */
  static override [Symbol.hasInstance]<T>(
    this: abstract new (...args: never[]) => T,
    value: unknown,
  ): value is T {
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  constructor(
    code: C,
    message: string,
    options: { pointer?: string; file?: string; hint?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.pointer = options.pointer;
    this.file = options.file;
    this.hint = options.hint;
  }

  /** A copy of this error that names the file it came from. */
  withFile(file: string): CordonError<C> {
    const copy = new CordonError(this.code, this.message, {
      ...(this.pointer === undefined ? {} : { pointer: this.pointer }),
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      file,
      cause: this.cause,
    });
    return copy;
  }

  toJSON(): Record<string, string> {
    const out: Record<string, string> = { code: this.code, message: this.message };
    if (this.file !== undefined) out['file'] = this.file;
    if (this.pointer !== undefined) out['pointer'] = this.pointer;
    if (this.hint !== undefined) out['hint'] = this.hint;
    return out;
  }
}

export function isCordonError(e: unknown): e is CordonError {
  return e instanceof CordonError;
}

/** Escape one JSON pointer token (RFC 6901). */
export function pointerToken(token: string | number): string {
  return String(token).replaceAll('~', '~0').replaceAll('/', '~1');
}

/** Build a JSON pointer from path tokens. */
export function toPointer(path: readonly (string | number)[]): string {
  return path.length === 0 ? '' : '/' + path.map(pointerToken).join('/');
}
