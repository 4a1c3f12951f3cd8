/** The guardrails a decision point decides under, as named in launch and start events. */
export type GuardrailsInForce =
  | {
      readonly inForce: true;
      readonly dir: string;
      /** `sha256:` over the guardrail files' names and texts, in load order. */
      readonly digest: string;
      readonly policies: readonly string[];
      /** Set when these are not the organisation's own guardrails: what allowed that. */
      readonly allowedBy?: string;
    }
  | {
      readonly inForce: false;
      /** Why there are none: `--no-guardrails`, an empty directory, another directory. */
      readonly why: string;
      /** What allowed running without them. */
      readonly allowedBy: string;
    };

/** One line for people and audit events: what guardrails are in force. */
export function describeGuardrails(g: GuardrailsInForce): string {
  return g.inForce
    ? `${g.policies.length} guardrail polic${g.policies.length === 1 ? 'y' : 'ies'} from ${g.dir} (${g.digest})${g.allowedBy === undefined ? '' : `, allowed by ${g.allowedBy}`}`
    : `none (${g.why}), allowed by ${g.allowedBy}`;
}

/** The same facts as an audit `unmapped` object (snake_case keys in canonical order, as events need). */
export function guardrailsFacts(g: GuardrailsInForce): Record<string, unknown> {
  return g.inForce
    ? {
        ...(g.allowedBy === undefined ? {} : { allowed_by: g.allowedBy }),
        digest: g.digest,
        dir: g.dir,
        in_force: true,
        policies: [...g.policies],
      }
    : { allowed_by: g.allowedBy, in_force: false, why: g.why };
}
