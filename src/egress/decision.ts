import type { Decision, DecisionCode } from '../policy/types.js';

/**
 * Codes the proxy adds to the decision point's own: what it found on the wire, in DNS or in its
 * own state. They are denials like any other, with the same header and audit event.
 */
export type ProxyDecisionCode =
  | DecisionCode
  | 'NET_SNI_MISSING'
  | 'NET_SNI_MISMATCH'
  | 'NET_NOT_TLS'
  | 'NET_RESOLVE_FAILED'
  | 'NET_UPSTREAM_FAILED'
  | 'REQUEST_MALFORMED'
  | 'PROXY_DENY_ALL'
  | 'PROXY_OVERLOADED';

export interface ProxyDecision extends Omit<Decision, 'code'> {
  readonly code: ProxyDecisionCode;
}

export function proxyDeny(code: ProxyDecisionCode, rule: string, reason: string): ProxyDecision {
  return { effect: 'deny', code, rule, reason };
}

// Header parameter values are tokens; anything else in a rule (a guardrail id) is %-encoded.
const TOKEN_UNSAFE = /[^A-Za-z0-9/:._~!#$&'*+^`|-]/g;

/** `X-Cordon-Decision: deny; rule=/networkScopes/0; code=NOT_GRANTED` */
export function decisionHeader(d: ProxyDecision): string {
  const rule = d.rule.replace(TOKEN_UNSAFE, (c) =>
    [...Buffer.from(c)].map((b) => '%' + b.toString(16).toUpperCase().padStart(2, '0')).join(''),
  );
  return `deny; rule=${rule}; code=${d.code}`;
}

/** The short text an agent gets with a denial: what happened, why, what to do. */
export function denialBody(d: ProxyDecision, what: string): string {
  const next =
    d.code === 'APPROVAL_REQUIRED'
      ? 'This destination needs a person to approve it first; ask the user to approve it and retry.'
      : d.code === 'PROXY_DENY_ALL'
        ? 'All network access for this agent is suspended; do not retry.'
        : d.code === 'DECISION_UNRECORDED'
          ? 'The audit log cannot record this request; retry later.'
          : 'Do not retry this request; use a destination the manifest grants or ask its owner to widen it.';
  return `Cordon denied ${what}.\n${d.reason}\nrule: ${d.rule}\ncode: ${d.code}\n${next}\n`;
}

/** Sanitize text from the wire before it goes into a reason (no control characters, bounded). */
export function shown(s: string, max = 200): string {
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > max ? clean.slice(0, max) + '...' : clean;
}
