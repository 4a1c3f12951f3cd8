import type * as CedarWasm from '@cedar-policy/cedar-wasm/nodejs';
import { cedarEngine } from '../cedar.js';
import { CordonError, type PolicyCode } from '../errors.js';
import { isInterpreter } from '../manifest/lint.js';
import type { Manifest } from '../manifest/schema.js';
import { CEDAR_SCHEMA } from './cedar-schema.js';
import type { GuardrailEvaluator, RequestFacts } from './pdp.js';
import type { Decision, PolicyRequest } from './types.js';

/** A guardrail source file. */
export interface GuardrailFile {
  readonly name: string;
  readonly text: string;
}

/** One guardrail policy as loaded. */
export interface GuardrailPolicy {
  readonly id: string;
  readonly file: string;
  readonly line: number;
  /** Text of an `@ask("...")` annotation: a match asks for approval instead of denying. */
  readonly ask: string | undefined;
  readonly text: string;
}

export interface Guardrails extends GuardrailEvaluator {
  readonly policies: readonly GuardrailPolicy[];
}

const BASE_PERMIT_ID = 'cordon-base-permit';
let bundleCounter = 0;

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

function guardrailError(
  code: PolicyCode,
  file: string,
  line: number,
  policyId: string | undefined,
  message: string,
  hint: string,
): CordonError {
  return new CordonError(
    code,
    `${file}:${line}${policyId === undefined ? '' : ` (policy ${policyId})`}: ${message}`,
    { file, hint },
  );
}

/**
 * Parse, check and validate guardrail files against Cordon's Cedar schema (strict mode), then
 * preparse them once. Guardrails only restrict: every policy must be a `forbid` (a `permit`
 * could never grant what the manifest does not, so it is refused as a mistake). Errors name
 * the file, the line and the policy id.
 *
 * @example
 * const g = loadGuardrails([{ name: 'org.cedar', text }]);
 */
export function loadGuardrails(files: readonly GuardrailFile[]): Guardrails {
  const policies: GuardrailPolicy[] = [];
  const texts: Record<string, string> = {};
  // Actions some guardrail names; requests of other kinds skip Cedar entirely.
  const targeted = new Set<string>();
  let allKinds = false;
  const where = new Map<string, { file: GuardrailFile; offset: number }>();
  for (const file of files) {
    const parts = cedarEngine().policySetTextToParts(file.text);
    if (parts.type === 'failure') {
      const e = parts.errors[0];
      const at = e?.sourceLocations?.[0]?.start ?? 0;
      throw guardrailError(
        'GUARDRAIL_SYNTAX',
        file.name,
        lineOf(file.text, at),
        undefined,
        e?.message ?? 'does not parse',
        'fix the Cedar syntax at that line',
      );
    }
    if (parts.policy_templates.length > 0) {
      throw guardrailError(
        'GUARDRAIL_INVALID',
        file.name,
        1,
        undefined,
        'policy templates are not supported in guardrails',
        'write static forbid policies',
      );
    }
    let cursor = 0;
    parts.policies.forEach((text, n) => {
      const found = file.text.indexOf(text, cursor);
      const offset = found === -1 ? cursor : found;
      cursor = found === -1 ? cursor : found + text.length;
      const line = lineOf(file.text, offset);
      const json = cedarEngine().policyToJson(text);
      if (json.type === 'failure') {
        throw guardrailError(
          'GUARDRAIL_SYNTAX',
          file.name,
          line,
          undefined,
          json.errors[0]?.message ?? 'does not parse',
          'fix the Cedar syntax',
        );
      }
      const annotations = (json.json.annotations ?? {}) as Record<string, string | null>;
      const id = annotations['id'] ?? `${file.name}#${n + 1}`;
      if (id === BASE_PERMIT_ID || Object.prototype.hasOwnProperty.call(texts, id)) {
        throw guardrailError(
          'GUARDRAIL_INVALID',
          file.name,
          line,
          id,
          'the policy id is used twice',
          'give each guardrail a unique @id',
        );
      }
      if (json.json.effect !== 'forbid') {
        throw guardrailError(
          'GUARDRAIL_PERMIT',
          file.name,
          line,
          id,
          'guardrails may only forbid; a permit could never grant what the manifest does not',
          'rewrite it as a forbid with an unless clause, or grant the access in the manifest',
        );
      }
      const action = json.json.action as {
        op: string;
        entity?: { type: string; id: string };
        entities?: { type: string; id: string }[];
      };
      if (action.op === 'All') allKinds = true;
      else
        for (const e of action.entity === undefined ? (action.entities ?? []) : [action.entity])
          targeted.add(e.id);
      const askText = annotations['ask'];
      texts[id] = text;
      where.set(id, { file, offset });
      policies.push({
        id,
        file: file.name,
        line,
        ask: askText === undefined ? undefined : (askText ?? 'needs approval'),
        text,
      });
    });
  }
  texts[BASE_PERMIT_ID] = 'permit (principal, action, resource);';
  const v = cedarEngine().validate({
    schema: CEDAR_SCHEMA,
    policies: { staticPolicies: texts },
    validationSettings: { mode: 'strict' },
  });
  if (v.type === 'failure') {
    throw new CordonError(
      'GUARDRAIL_INVALID',
      `guardrails could not be validated: ${v.errors[0]?.message ?? 'unknown error'}`,
      { hint: 'check the guardrail files' },
    );
  }
  const first = v.validationErrors[0];
  if (first !== undefined) {
    const w = where.get(first.policyId);
    const start = first.error.sourceLocations?.[0]?.start ?? 0;
    const file = w?.file.name ?? 'guardrails';
    const line = w === undefined ? 1 : lineOf(w.file.text, w.offset + start);
    throw guardrailError(
      'GUARDRAIL_INVALID',
      file,
      line,
      first.policyId,
      first.error.message.replace(/^for policy `[^`]*`, /, ''),
      `check it against the schema (\`cordon policy schema\`)${v.validationErrors.length > 1 ? `; ${v.validationErrors.length - 1} more error(s)` : ''}`,
    );
  }
  const bundleId = `cordon-guardrails-${process.pid}-${++bundleCounter}`;
  const pre = cedarEngine().preparsePolicySet(bundleId, { staticPolicies: texts });
  if (pre.type === 'failure')
    throw new CordonError(
      'GUARDRAIL_INVALID',
      `guardrails could not be prepared: ${pre.errors[0]?.message ?? ''}`,
      { hint: 'check the guardrail files' },
    );
  const byId = new Map(policies.map((p) => [p.id, p]));
  // No guardrail text names apiScopes: no policy can read it, so it need not cross into wasm on
  // every call (a manifest may list a thousand scopes).
  const usesScopes = policies.some((p) => p.text.includes('apiScopes'));
  return new CedarGuardrails(bundleId, policies, byId, allKinds ? undefined : targeted, usesScopes);
}

export type CedarEntity = {
  uid: { type: string; id: string };
  attrs: Record<string, CedarWasm.CedarValueJson>;
  parents: [];
};

class CedarGuardrails implements Guardrails {
  private readonly principals = new WeakMap<Manifest, CedarEntity>();

  /** Outcomes per manifest, keyed by everything Cedar sees: evaluation is a pure function of it. */
  private readonly outcomes = new WeakMap<Manifest, Map<string, Decision | null>>();

  constructor(
    private readonly bundleId: string,
    readonly policies: readonly GuardrailPolicy[],
    private readonly byId: ReadonlyMap<string, GuardrailPolicy>,
    /** Request kinds some guardrail targets; undefined when one targets every action. */
    private readonly kinds: ReadonlySet<string> | undefined,
    private readonly usesScopes: boolean,
  ) {}

  private principal(m: Manifest, digest: string): CedarEntity {
    let p = this.principals.get(m);
    if (p === undefined) {
      p = {
        uid: { type: 'Cordon::Agent', id: m.agentName },
        attrs: {
          name: m.agentName,
          role: m.role,
          dataClassification: m.dataClassification,
          manifest: {
            digest,
            version: m.version,
            apiScopes: this.usesScopes ? [...m.apiScopes] : [],
          },
        },
        parents: [],
      };
      this.principals.set(m, p);
    }
    return p;
  }

  evaluate(
    request: PolicyRequest,
    facts: RequestFacts,
    manifest: Manifest,
    approved = false,
    digest = '',
  ): Decision | undefined {
    if (this.kinds !== undefined && !this.kinds.has(request.kind)) return undefined;
    const resources = resourcesFor(request, facts);
    const context: Record<string, CedarWasm.CedarValueJson> = {
      session: request.session ?? '',
      approved,
      needsApproval: facts.needsApproval,
      argv: request.kind === 'exec' ? [...(request.argv ?? [])] : [],
      method: request.kind === 'http.request' ? request.method : '',
    };
    let memo = this.outcomes.get(manifest);
    if (memo === undefined) {
      memo = new Map();
      this.outcomes.set(manifest, memo);
    }
    const key = JSON.stringify([request.kind, digest, resources.map((r) => r.attrs), context]);
    const hit = memo.get(key);
    if (hit !== undefined) return hit ?? undefined;
    const outcome = this.evaluateCedar(request, resources, context, manifest, digest);
    // Errors are not remembered: a failing guardrail is re-evaluated (and denies) every time.
    if (outcome?.code !== 'GUARDRAIL_ERROR') {
      if (memo.size >= 10_000) memo.clear();
      memo.set(key, outcome ?? null);
    }
    return outcome;
  }

  private evaluateCedar(
    request: PolicyRequest,
    resources: readonly CedarEntity[],
    context: Record<string, CedarWasm.CedarValueJson>,
    manifest: Manifest,
    digest: string,
  ): Decision | undefined {
    const principal = this.principal(manifest, digest);
    let ask: Decision | undefined;
    for (const resource of resources) {
      const answer = cedarEngine().statefulIsAuthorized({
        principal: principal.uid,
        action: { type: 'Cordon::Action', id: request.kind },
        resource: resource.uid,
        context,
        entities: [principal, resource],
        preparsedPolicySetId: this.bundleId,
        validateRequest: false,
      });
      if (answer.type === 'failure') {
        return {
          effect: 'deny',
          code: 'GUARDRAIL_ERROR',
          rule: 'guardrails',
          reason: `Denied: guardrails could not be evaluated (${answer.errors[0]?.message ?? 'unknown error'}).`,
        };
      }
      const diag = answer.response.diagnostics;
      if (diag.errors.length > 0) {
        // A guardrail that errors must not silently stop applying: fail closed.
        const e = diag.errors[0];
        return {
          effect: 'deny',
          code: 'GUARDRAIL_ERROR',
          rule: `guardrail:${e?.policyId ?? '?'}`,
          reason: `Denied: guardrail ${e?.policyId ?? '?'} failed to evaluate (${e?.error.message ?? ''}).`,
        };
      }
      if (answer.response.decision === 'allow') continue;
      const ids = diag.reason.filter((id) => id !== BASE_PERMIT_ID);
      const hard = ids.find((id) => this.byId.get(id)?.ask === undefined);
      if (hard !== undefined) {
        return {
          effect: 'deny',
          code: 'GUARDRAIL_FORBID',
          rule: `guardrail:${hard}`,
          reason: `Denied by the organisation guardrail ${hard}.`,
        };
      }
      const soft = ids[0];
      if (soft !== undefined && ask === undefined) {
        ask = {
          effect: 'ask',
          code: 'APPROVAL_REQUIRED',
          rule: `guardrail:${soft}`,
          reason: `Needs approval: ${this.byId.get(soft)?.ask ?? 'an organisation guardrail requires it'} (guardrail ${soft}).`,
        };
      }
      if (soft === undefined) {
        return {
          effect: 'deny',
          code: 'GUARDRAIL_ERROR',
          rule: 'guardrails',
          reason: 'Denied: guardrails denied without naming a policy.',
        };
      }
    }
    return ask;
  }
}

function resourcesFor(request: PolicyRequest, facts: RequestFacts): CedarEntity[] {
  switch (request.kind) {
    case 'file.read':
    case 'file.write': {
      const paths =
        facts.to === undefined
          ? [facts.path ?? request.path]
          : [facts.path ?? request.path, facts.to];
      return paths.map((path) => ({
        uid: { type: 'Cordon::File', id: path },
        attrs: { path },
        parents: [],
      }));
    }
    case 'exec': {
      const path = facts.path ?? request.path;
      const name = path.slice(path.lastIndexOf('/') + 1);
      return [
        {
          uid: { type: 'Cordon::Command', id: path },
          attrs: { path, name, interpreter: isInterpreter(path) },
          parents: [],
        },
      ];
    }
    case 'net.connect':
    case 'http.request':
      return [
        hostEntity(facts.host ?? '', facts.port ?? 0, facts.scheme ?? '', facts.urlPath ?? ''),
      ];
    case 'api.call':
      return [
        {
          uid: { type: 'Cordon::ApiScope', id: request.scope },
          attrs: { scope: request.scope, service: request.scope.split(':')[0] ?? '' },
          parents: [],
        },
      ];
    case 'secret.get':
      return [
        {
          uid: { type: 'Cordon::Secret', id: request.name },
          attrs: { name: request.name },
          parents: [],
        },
      ];
  }
}

/** The Cedar Host entity for a normalised destination (IP hosts carry an `ip` attribute). */
export function hostEntity(host: string, port: number, scheme: string, path: string): CedarEntity {
  const isIp = /^[\d.]+$|:/.test(host);
  return {
    uid: { type: 'Cordon::Host', id: `${scheme}://${host}:${port}` },
    attrs: {
      host,
      port,
      scheme,
      path,
      isIp,
      ...(isIp ? { ip: { __extn: { fn: 'ip', arg: host } } } : {}),
    },
    parents: [],
  };
}

/**
 * The Cedar authorization call for a request that is already normalised (absolute clean path,
 * lower-case host): what Cedar sees when it decides alone, with the manifest translated by
 * `manifestToCedar`. Used to compare the compiled decision point with Cedar.
 */
export function cedarCallFor(
  manifest: Manifest,
  request: PolicyRequest,
  policySetId: string,
  approved: boolean,
): CedarWasm.StatefulAuthorizationCall {
  let facts: RequestFacts = { needsApproval: false };
  if (request.kind === 'http.request') {
    const u = new URL(request.url);
    const scheme = u.protocol.slice(0, -1);
    facts = {
      needsApproval: false,
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port === '' ? (scheme === 'https' || scheme === 'wss' ? 443 : 80) : Number(u.port),
      scheme,
      urlPath: u.pathname,
    };
  } else if (request.kind === 'net.connect') {
    facts = {
      needsApproval: false,
      host: request.host,
      port: request.port,
      scheme: request.scheme,
    };
  }
  const principal: CedarEntity = {
    uid: { type: 'Cordon::Agent', id: manifest.agentName },
    attrs: {
      name: manifest.agentName,
      role: manifest.role,
      dataClassification: manifest.dataClassification,
      manifest: { digest: '', version: manifest.version, apiScopes: [...manifest.apiScopes] },
    },
    parents: [],
  };
  const [resource] = resourcesFor(request, facts);
  if (resource === undefined) throw new Error('no resource');
  return {
    principal: principal.uid,
    action: { type: 'Cordon::Action', id: request.kind },
    resource: resource.uid,
    context: { session: '', approved, needsApproval: false, argv: [], method: '' },
    entities: [principal, resource],
    preparsedPolicySetId: policySetId,
  };
}
