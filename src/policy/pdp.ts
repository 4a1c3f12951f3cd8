import { createHash } from 'node:crypto';
import { canonicalize } from '../manifest/canonical.js';
import { DEFAULT_PORTS, type NetworkScheme } from '../manifest/network.js';
import type { Manifest } from '../manifest/schema.js';
import {
  compileManifest,
  scopeAdmits,
  type ApiEntry,
  type CompiledManifest,
  type CompileOptions,
  type PathEntry,
  type ScopeEntry,
} from './compile.js';
import { classifyAddress, parseIpAny, type IpAddress } from './ip.js';
import { normaliseRequestPath, type PathProblem } from './paths.js';
import type {
  ApprovalVerifier,
  Decision,
  DecisionCode,
  PathResolver,
  PolicyRequest,
} from './types.js';

/** Org guardrails, consulted only when the manifest layer would allow or ask. */
export interface GuardrailEvaluator {
  /** Returns a deny decision when a guardrail forbids the request, undefined otherwise. */
  evaluate(request: PolicyRequest, facts: RequestFacts, manifest: Manifest): Decision | undefined;
}

/** What the PDP established about a request, for guardrails and audit. */
export interface RequestFacts {
  /** file.*, exec: the resolved path that was judged. */
  readonly path?: string;
  readonly to?: string;
  /** net.connect, http.request: normalised host, port, scheme, path. */
  readonly host?: string;
  readonly port?: number;
  readonly scheme?: string;
  readonly urlPath?: string;
  /** Whether the manifest layer would ask for approval. */
  readonly needsApproval: boolean;
}

export interface PdpOptions extends CompileOptions {
  readonly manifest: Manifest;
  /** `sha256:<hex>` of the signed manifest; requests naming another digest are denied. */
  readonly manifestDigest?: string;
  /** Resolves symlinks as the kernel would. Default: lexical only (tests, benchmarks). */
  readonly resolvePath?: PathResolver;
  readonly guardrails?: GuardrailEvaluator;
  readonly verifyApproval?: ApprovalVerifier;
}

export interface Pdp {
  decide(request: PolicyRequest): Decision;
  readonly compiled: CompiledManifest;
}

const SCHEMES = new Set(['https', 'http', 'wss', 'ws']);

function d(
  effect: Decision['effect'],
  code: DecisionCode,
  rule: string,
  reason: string,
  overrides?: readonly string[],
): Decision {
  return overrides === undefined || overrides.length === 0
    ? { effect, code, rule, reason }
    : { effect, code, rule, reason, overrides };
}

const PATH_PROBLEM_REASON: Record<PathProblem, string> = {
  relative: 'the path is not absolute; resolve it against the working directory first',
  control: 'the path contains control or invisible characters',
  'not-nfc': 'the path is not in Unicode NFC; its NFC spelling would name a different file',
  'too-long': 'the path is longer than 4096 characters',
  'proc-alias':
    "the path goes through /proc/<pid>/{root,cwd,fd,...} or /dev/fd, another process's view of the filesystem",
};

/**
 * Digest that binds an approval to one exact request: SHA-256 over the RFC 8785 form of the
 * request without its token.
 */
export function requestDigest(request: PolicyRequest): string {
  const rest: Record<string, unknown> = { ...request };
  delete rest['approvalToken'];
  return 'sha256:' + createHash('sha256').update(canonicalize(rest)).digest('hex');
}

/**
 * Build the policy decision point for one manifest. Order, fail-closed at every step:
 * mandatory denies → manifest grants (deny by default, most specific grant named) → org
 * guardrails (a forbid always wins) → requiresApproval turns allow into ask → a valid approval
 * token bound to this exact request turns ask into allow. Any exception is a deny (PDP_ERROR).
 *
 * @example
 * const pdp = createPdp({ manifest, home: '/home/alice' });
 * pdp.decide({ kind: 'file.read', path: '/home/alice/.ssh/id_ed25519' }).effect; // 'deny'
 */
export function createPdp(options: PdpOptions): Pdp {
  const compiled = compileManifest(options.manifest, options);
  const resolvePath = options.resolvePath;
  const scratch: PathEntry[] = [];

  const pathDecision = (
    path: string,
    write: boolean,
  ): {
    decision?: Decision;
    grant?: PathEntry;
    ask?: PathEntry;
    overrides?: string[];
    resolved: string;
  } => {
    const lexical = normaliseRequestPath(path);
    if (lexical.charCodeAt(0) !== 0x2f) {
      const problem = lexical as PathProblem;
      return {
        decision: d(
          'deny',
          problem === 'proc-alias' ? 'PATH_PROC_ALIAS' : 'PATH_INVALID',
          'path-rules',
          `Denied: ${PATH_PROBLEM_REASON[problem]}.`,
        ),
        resolved: path,
      };
    }
    let resolved = lexical;
    if (resolvePath !== undefined) {
      const r = resolvePath(lexical);
      if (r === undefined) {
        return {
          decision: d(
            'deny',
            'PATH_UNRESOLVABLE',
            'path-rules',
            `Denied: ${lexical} could not be resolved (symlink loop or unreadable directory).`,
          ),
          resolved: lexical,
        };
      }
      const again = normaliseRequestPath(r);
      if (again.charCodeAt(0) !== 0x2f) {
        const problem = again as PathProblem;
        return {
          decision: d(
            'deny',
            problem === 'proc-alias' ? 'PATH_PROC_ALIAS' : 'PATH_INVALID',
            'path-rules',
            `Denied: ${lexical} resolves to a path that ${PATH_PROBLEM_REASON[problem].replace(/^the path /, '')}.`,
          ),
          resolved: r,
        };
      }
      resolved = again;
    }
    // Mandatory denies are checked on both the path as asked and the path it resolves to.
    const used: string[] = [];
    for (const p of resolved === lexical ? [lexical] : [lexical, resolved]) {
      scratch.length = 0;
      compiled.paths.match(p === '/' ? '/' : p, scratch);
      for (const e of scratch) {
        if (e.kind !== 'deny-all' && !(write && e.kind === 'deny-write')) continue;
        const o = e.denyId === undefined ? undefined : compiled.overrides.get(e.denyId);
        const lifted =
          o !== undefined &&
          e.denyId !== 'cordon' &&
          (o.write || !write) &&
          (o.paths === undefined || matchesAny(o.paths, p));
        if (lifted) {
          used.push(o.rule);
          continue;
        }
        return {
          decision: d(
            'deny',
            'MANDATORY_DENY',
            e.rule,
            `Denied: ${p === lexical ? lexical : `${lexical} (resolves to ${resolved})`} is inside ${e.denyPath ?? 'a protected location'}, which no agent may ${write ? 'change' : 'read'}.`,
          ),
          resolved,
        };
      }
    }
    scratch.length = 0;
    compiled.paths.match(resolved, scratch);
    let grant: PathEntry | undefined;
    let ask: PathEntry | undefined;
    for (const e of scratch) {
      if (grant === undefined && (e.kind === 'write' || (!write && e.kind === 'read'))) grant = e;
      else if (
        ask === undefined &&
        (e.kind === 'ask-any' || e.kind === (write ? 'ask-write' : 'ask-read'))
      )
        ask = e;
    }
    return {
      ...(grant === undefined ? {} : { grant }),
      ...(ask === undefined ? {} : { ask }),
      overrides: used,
      resolved,
    };
  };

  const decideFile = (
    req: PolicyRequest & { kind: 'file.read' | 'file.write' },
  ): [Decision, RequestFacts] => {
    const write = req.kind === 'file.write';
    const targets = write && req.op === 'rename' ? [req.path, req.to ?? ''] : [req.path];
    if (write && req.op === 'rename' && (req.to === undefined || req.to === '')) {
      return [
        d(
          'deny',
          'REQUEST_INVALID',
          'request',
          'Denied: a rename needs the destination path (to).',
        ),
        { needsApproval: false },
      ];
    }
    let ask: PathEntry | undefined;
    let rule = '';
    const overrides: string[] = [];
    const resolved: string[] = [];
    for (const t of targets) {
      const r = pathDecision(t, write);
      resolved.push(r.resolved);
      if (r.decision !== undefined) return [r.decision, { path: r.resolved, needsApproval: false }];
      if (r.grant === undefined) {
        return [
          d(
            'deny',
            'NOT_GRANTED',
            'default-deny',
            `Denied: the manifest does not let this agent ${write ? 'write' : 'read'} ${r.resolved === t ? t : `${t} (resolves to ${r.resolved})`}.`,
          ),
          { path: r.resolved, needsApproval: false },
        ];
      }
      rule ||= r.grant.rule;
      ask ??= r.ask;
      overrides.push(...(r.overrides ?? []));
    }
    const facts: RequestFacts = {
      path: resolved[0] ?? req.path,
      ...(resolved[1] === undefined ? {} : { to: resolved[1] }),
      needsApproval: ask !== undefined,
    };
    if (ask !== undefined) {
      return [
        d(
          'ask',
          'APPROVAL_REQUIRED',
          ask.rule,
          `Needs approval: ${write ? 'writing' : 'reading'} ${req.path} requires a human approval (${ask.rule}).`,
          overrides,
        ),
        facts,
      ];
    }
    return [d('allow', 'ALLOWED', rule, `Allowed by ${rule}.`, overrides), facts];
  };

  const decideExec = (req: PolicyRequest & { kind: 'exec' }): [Decision, RequestFacts] => {
    const r = pathDecision(req.path, false);
    if (r.decision !== undefined) return [r.decision, { path: r.resolved, needsApproval: false }];
    const rule = compiled.commands.get(r.resolved);
    if (rule === undefined) {
      return [
        d(
          'deny',
          'NOT_GRANTED',
          'default-deny',
          `Denied: ${req.path}${r.resolved === req.path ? '' : ` (resolves to ${r.resolved})`} is not in commandsAllowed.`,
        ),
        { path: r.resolved, needsApproval: false },
      ];
    }
    scratch.length = 0;
    compiled.paths.match(r.resolved, scratch);
    const ask = scratch.find((e) => e.kind === 'ask-exec' || e.kind === 'ask-any');
    if (ask === undefined && r.resolved !== req.path) {
      scratch.length = 0;
      const lexical = normaliseRequestPath(req.path);
      compiled.paths.match(lexical, scratch);
    }
    const ask2 = ask ?? scratch.find((e) => e.kind === 'ask-exec' || e.kind === 'ask-any');
    const facts: RequestFacts = { path: r.resolved, needsApproval: ask2 !== undefined };
    if (ask2 !== undefined)
      return [
        d(
          'ask',
          'APPROVAL_REQUIRED',
          ask2.rule,
          `Needs approval: running ${req.path} requires a human approval (${ask2.rule}).`,
        ),
        facts,
      ];
    return [d('allow', 'ALLOWED', rule, `Allowed by ${rule}.`), facts];
  };

  const decideNet = (
    req: PolicyRequest & { kind: 'net.connect' | 'http.request' },
  ): [Decision, RequestFacts] => {
    let scheme: string | undefined;
    let hostText: string;
    let port: number;
    let urlPath: string | undefined;
    try {
      if (req.kind === 'http.request') {
        const u = new URL(req.url);
        scheme = u.protocol.slice(0, -1);
        if (!SCHEMES.has(scheme))
          return [
            d('deny', 'REQUEST_INVALID', 'request', `Denied: scheme ${scheme} is not supported.`),
            { needsApproval: false },
          ];
        hostText = u.hostname;
        port = u.port === '' ? DEFAULT_PORTS[scheme as NetworkScheme] : Number(u.port);
        urlPath = u.pathname;
      } else {
        scheme = req.scheme?.toLowerCase();
        if (scheme !== undefined && !SCHEMES.has(scheme))
          return [
            d('deny', 'REQUEST_INVALID', 'request', `Denied: scheme ${scheme} is not supported.`),
            { needsApproval: false },
          ];
        const raw = req.host.replace(/%[^\]]*/, '');
        const inner = raw.startsWith('[') ? raw : raw.includes(':') ? `[${raw}]` : raw;
        hostText = new URL(`http://${inner}/`).hostname;
        port = req.port;
        if (!Number.isInteger(port) || port < 1 || port > 65535)
          return [
            d('deny', 'REQUEST_INVALID', 'request', `Denied: port ${String(port)} is not valid.`),
            { needsApproval: false },
          ];
      }
    } catch {
      return [
        d(
          'deny',
          'NET_HOST_INVALID',
          'request',
          'Denied: the destination is not a valid URL or host.',
        ),
        { needsApproval: false },
      ];
    }
    const host = hostText.startsWith('[') ? hostText.slice(1, -1) : hostText.replace(/\.$/, '');
    const ip = parseIpAny(host);
    const facts = {
      host: ip?.text ?? host,
      port,
      ...(scheme === undefined ? {} : { scheme }),
      ...(urlPath === undefined ? {} : { urlPath }),
    };
    const admits = (e: ScopeEntry): boolean => scopeAdmits(e.scope, scheme, port, urlPath);
    // Internal addresses, whether named directly or reached through DNS, need an IP-literal grant.
    const internal = (addr: IpAddress, what: string): Decision | undefined => {
      const cls = classifyAddress(addr);
      if (cls === undefined) return undefined;
      const found: ScopeEntry[] = [];
      compiled.scopes.matchHost(addr.text, addr.bytes, addr.version, found);
      if (found.some((e) => !e.ask && admits(e))) return undefined;
      const shown = what === addr.text ? what : `${what} (${addr.text})`;
      return d(
        'deny',
        'NET_INTERNAL_ADDRESS',
        'internal-address',
        `Denied: ${shown} is a ${cls} address; only a manifest scope naming that IP literal can allow it.`,
      );
    };
    if (ip !== undefined) {
      const no = internal(ip, host);
      if (no !== undefined) return [no, { ...facts, needsApproval: false }];
    } else if (host === 'localhost' || host.endsWith('.localhost')) {
      return [
        d(
          'deny',
          'NET_INTERNAL_ADDRESS',
          'internal-address',
          `Denied: ${host} always means this machine (loopback); grant an IP literal such as http://127.0.0.1:PORT instead.`,
        ),
        { ...facts, needsApproval: false },
      ];
    }
    if (req.address !== undefined) {
      const a = parseIpAny(req.address);
      if (a === undefined)
        return [
          d(
            'deny',
            'REQUEST_INVALID',
            'request',
            `Denied: resolved address ${req.address} is not an IP address.`,
          ),
          { ...facts, needsApproval: false },
        ];
      const no = internal(a, a.text);
      if (no !== undefined)
        return [
          d(
            'deny',
            'NET_INTERNAL_ADDRESS',
            'internal-address',
            `Denied: ${host} resolves to ${a.text}, a ${classifyAddress(a) ?? 'internal'} address (DNS rebinding protection).`,
          ),
          { ...facts, needsApproval: false },
        ];
    }
    const found: ScopeEntry[] = [];
    compiled.scopes.matchHost(ip?.text ?? host, ip?.bytes, ip?.version, found);
    let grant: ScopeEntry | undefined;
    let ask: ScopeEntry | undefined;
    for (const e of found) {
      if (!admits(e)) continue;
      if (e.ask) ask ??= e;
      // Most specific: an exact host beats a wildcard, a longer path prefix beats a shorter one.
      else if (grant === undefined || specificity(e) > specificity(grant)) grant = e;
    }
    const where =
      req.kind === 'http.request'
        ? `${req.method} ${req.url}`
        : `${scheme ?? 'tcp'}://${host}:${port}`;
    if (grant === undefined) {
      const pathOnly =
        req.kind === 'net.connect' &&
        found.some((e) => !e.ask && scopeAdmits(e.scope, scheme, port, e.scope.pathPrefix));
      return [
        d(
          'deny',
          'NOT_GRANTED',
          'default-deny',
          pathOnly
            ? `Denied: ${where} is granted only for some paths, which a tunnel cannot check.`
            : `Denied: the manifest does not let this agent reach ${where}.`,
        ),
        { ...facts, needsApproval: false },
      ];
    }
    if (ask !== undefined)
      return [
        d(
          'ask',
          'APPROVAL_REQUIRED',
          ask.rule,
          `Needs approval: reaching ${where} requires a human approval (${ask.rule}).`,
        ),
        { ...facts, needsApproval: true },
      ];
    return [
      d('allow', 'ALLOWED', grant.rule, `Allowed by ${grant.rule}.`),
      { ...facts, needsApproval: false },
    ];
  };

  const decideApi = (req: PolicyRequest & { kind: 'api.call' }): [Decision, RequestFacts] => {
    const scope = req.scope;
    if (
      typeof scope !== 'string' ||
      !/^[A-Za-z0-9_.-]{1,128}(:[A-Za-z0-9_.-]{1,128}){1,2}$/.test(scope)
    ) {
      return [
        d(
          'deny',
          'REQUEST_INVALID',
          'request',
          'Denied: the API scope is not service:action[:qualifier].',
        ),
        { needsApproval: false },
      ];
    }
    const found: ApiEntry[] = [];
    compiled.apis.match(scope, found);
    const grant = found.find((e) => !e.ask);
    if (grant === undefined)
      return [
        d('deny', 'NOT_GRANTED', 'default-deny', `Denied: the manifest does not grant ${scope}.`),
        { needsApproval: false },
      ];
    const ask = found.find((e) => e.ask);
    if (ask !== undefined)
      return [
        d(
          'ask',
          'APPROVAL_REQUIRED',
          ask.rule,
          `Needs approval: ${scope} requires a human approval (${ask.rule}).`,
        ),
        { needsApproval: true },
      ];
    return [
      d('allow', 'ALLOWED', grant.rule, `Allowed by ${grant.rule}.`),
      { needsApproval: false },
    ];
  };

  const decideSecret = (req: PolicyRequest & { kind: 'secret.get' }): [Decision, RequestFacts] => {
    const rule = compiled.secrets.get(req.name);
    if (rule === undefined)
      return [
        d(
          'deny',
          'NOT_GRANTED',
          'default-deny',
          `Denied: the manifest does not name the secret ${req.name}.`,
        ),
        { needsApproval: false },
      ];
    return [d('allow', 'ALLOWED', rule, `Allowed by ${rule}.`), { needsApproval: false }];
  };

  const manifestLayer = (req: PolicyRequest): [Decision, RequestFacts] => {
    switch (req.kind) {
      case 'file.read':
      case 'file.write':
        return decideFile(req);
      case 'exec':
        return decideExec(req);
      case 'net.connect':
      case 'http.request':
        return decideNet(req);
      case 'api.call':
        return decideApi(req);
      case 'secret.get':
        return decideSecret(req);
      default:
        return [
          d(
            'deny',
            'REQUEST_INVALID',
            'request',
            `Denied: unknown request kind ${String((req as { kind: unknown }).kind)}.`,
          ),
          { needsApproval: false },
        ];
    }
  };

  const decide = (req: PolicyRequest): Decision => {
    try {
      if (
        typeof req !== 'object' ||
        req === null ||
        typeof (req as { kind?: unknown }).kind !== 'string'
      ) {
        return d(
          'deny',
          'REQUEST_INVALID',
          'request',
          'Denied: the request is not an object with a kind.',
        );
      }
      if (
        req.manifestDigest !== undefined &&
        options.manifestDigest !== undefined &&
        req.manifestDigest !== options.manifestDigest
      ) {
        return d(
          'deny',
          'MANIFEST_DIGEST_MISMATCH',
          'request',
          `Denied: the request names manifest ${req.manifestDigest}, but ${options.manifestDigest} is in force.`,
        );
      }
      const [decision, facts] = manifestLayer(req);
      if (decision.effect === 'deny') return decision;
      if (options.guardrails !== undefined) {
        const g = options.guardrails.evaluate(req, facts, options.manifest);
        if (g !== undefined) return g;
      }
      if (
        decision.effect === 'ask' &&
        req.approvalToken !== undefined &&
        options.verifyApproval !== undefined
      ) {
        if (options.verifyApproval(req.approvalToken, req, requestDigest(req))) {
          return d(
            'allow',
            'APPROVED',
            decision.rule,
            `Allowed with a human approval bound to this request (${decision.rule}).`,
            decision.overrides,
          );
        }
        return d(
          'ask',
          'APPROVAL_INVALID',
          decision.rule,
          'Needs approval: the approval token presented is not valid for this exact request.',
          decision.overrides,
        );
      }
      return decision;
    } catch (e) {
      return d(
        'deny',
        'PDP_ERROR',
        'pdp-error',
        `Denied: the policy decision failed (${(e as Error).message}).`,
      );
    }
  };

  return { decide, compiled };
}

function specificity(e: ScopeEntry): number {
  return (
    (e.scope.wildcard ? 0 : 1_000_000) + e.scope.host.length * 1000 + e.scope.pathPrefix.length
  );
}

function matchesAny(table: { match(path: string, out: PathEntry[]): void }, path: string): boolean {
  const out: PathEntry[] = [];
  table.match(path, out);
  return out.length > 0;
}
