/** What an enforcement point asks the policy decision point. */
export type PolicyRequest =
  | (RequestContext & { readonly kind: 'file.read'; readonly path: string })
  | (RequestContext & {
      readonly kind: 'file.write';
      readonly path: string;
      /** create, modify, delete or rename (a rename also needs `to` writable). */
      readonly op?: 'create' | 'modify' | 'delete' | 'rename';
      readonly to?: string;
    })
  | (RequestContext & {
      readonly kind: 'exec';
      readonly path: string;
      readonly argv?: readonly string[];
    })
  | (RequestContext & {
      readonly kind: 'net.connect';
      /** Omitted for a bare CONNECT tunnel: any granted scheme with that port matches. */
      readonly scheme?: string;
      readonly host: string;
      readonly port: number;
      /** The address the enforcement point resolved and will connect to. */
      readonly address?: string;
    })
  | (RequestContext & {
      readonly kind: 'http.request';
      readonly method: string;
      readonly url: string;
      readonly address?: string;
    })
  | (RequestContext & {
      readonly kind: 'api.call';
      readonly scope: string;
      readonly arguments?: unknown;
    })
  | (RequestContext & { readonly kind: 'secret.get'; readonly name: string });

export type RequestKind = PolicyRequest['kind'];

export interface RequestContext {
  readonly agent?: string;
  readonly session?: string;
  /** Digest of the manifest the enforcement point believes is in force; a mismatch is a deny. */
  readonly manifestDigest?: string;
  /** An approval token presented for this exact request (verified by the injected verifier). */
  readonly approvalToken?: string;
}

export type Effect = 'allow' | 'deny' | 'ask';

/** A decision is a value: what to do, why, and which rule decided. */
export interface Decision {
  readonly effect: Effect;
  /** A sentence an agent or a person can act on. */
  readonly reason: string;
  /**
   * What decided: a manifest entry as a JSON pointer (`/readPaths/2`), `deny:<id>` for a
   * mandatory deny, `guardrail:<policy id>`, or `default-deny`.
   */
  readonly rule: string;
  readonly code: DecisionCode;
  /** Mandatory-deny overrides this decision relied on (each use is reported). */
  readonly overrides?: readonly string[];
}

export type DecisionCode =
  | 'ALLOWED'
  | 'APPROVED'
  | 'APPROVAL_REQUIRED'
  | 'APPROVAL_INVALID'
  | 'NOT_GRANTED'
  | 'MANDATORY_DENY'
  | 'GUARDRAIL_FORBID'
  | 'GUARDRAIL_ERROR'
  | 'PATH_INVALID'
  | 'PATH_PROC_ALIAS'
  | 'PATH_UNRESOLVABLE'
  | 'NET_INTERNAL_ADDRESS'
  | 'NET_HOST_INVALID'
  | 'PATH_AMBIGUOUS'
  | 'REQUEST_INVALID'
  | 'MANIFEST_DIGEST_MISMATCH'
  | 'PDP_ERROR'
  /** An enforcement point could not make the decision durable: a decision not recorded is a deny. */
  | 'DECISION_UNRECORDED';

/**
 * Verifies an approval token for one exact request. Tokens arrive in a later layer; this is
 * the interface the PDP calls. Returns true only when the token is valid, unexpired, unrevoked
 * and bound to this request (see {@link requestDigest}).
 */
export type ApprovalVerifier = (
  token: string,
  request: PolicyRequest,
  requestDigest: string,
) => boolean;

/**
 * Resolves a lexically normalised absolute path to the path the kernel would open: symlinks
 * followed component by component (a dangling final symlink is followed to where it points),
 * the part that does not exist yet appended as written. Returns undefined when resolution
 * fails (loops, permission errors): the PDP then denies.
 */
export type PathResolver = (path: string) => string | undefined;
