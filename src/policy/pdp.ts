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
  type PathEntryKind,
  type ScopeEntry,
} from './compile.js';
import { classifyAddress, parseIpAny, type IpAddress } from '../manifest/ip.js';
import { isPathProblem, normaliseRequestPath, type PathProblem } from './paths.js';
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
  evaluate(
    request: PolicyRequest,
    facts: RequestFacts,
    manifest: Manifest,
    approved: boolean,
    manifestDigest: string,
  ): Decision | undefined;
}

/** What the PDP established about a request, for guardrails and audit. */
export interface RequestFacts {
  /** file.*, exec: the resolved path that was judged. */
  readonly path?: string;
  readonly to?: string;
  /** net.connect, http.request: normalised host, port, scheme, path. */
  readonly host?: string;
  readonly port?: number;
  readonly scheme?: string | undefined;
  readonly urlPath?: string | undefined;
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
// Names the WHATWG URL parser would leave unchanged: lower-case ASCII labels, the last starting
// with a letter (so no IPv4 notation), no trailing dot. Anything else goes through new URL().
const FAST_HOST = /^(?:[a-z0-9-]+\.)*[a-z][a-z0-9-]*$/;
const FAST_URL =
  /^(https?|wss?):\/\/((?:[a-z0-9-]+\.)*[a-z][a-z0-9-]*)(?::(\d{1,5}))?(\/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*)?(?:[?#][^\s]*)?$/;
const DOT_SEGMENT = /\/\.\.?(?:\/|$)/;
const ENCODED_SEPARATOR = /%(2f|5c)/i;
const DOT_SEGMENT_ANY = /^(?:\.|%2e){1,2}(?:;.*)?$/i;

/**
 * Why a URL path (as the WHATWG parser leaves it) could mean another path to a server that
 * decodes before it normalises: an encoded `/` or `\`, a backslash, or a dot segment, at any
 * level of percent-encoding (`%252e` is `%2e` once decoded). Undefined when it cannot.
 */
export function ambiguousPath(path: string): string | undefined {
  let p = path;
  for (let level = 0; level < 8; level++) {
    if (p.includes('\\')) return 'a backslash';
    const sep = ENCODED_SEPARATOR.exec(p);
    if (sep !== null)
      return `an encoded ${sep[1]?.toLowerCase() === '2f' ? '/' : '\\'} (${sep[0]})`;
    if (p.split('/').some((seg) => DOT_SEGMENT_ANY.test(seg))) return 'a dot segment';
    if (!p.includes('%')) return undefined;
    let next: string;
    try {
      next = decodeURIComponent(p);
    } catch {
      return 'a malformed percent-encoding';
    }
    if (next === p) return undefined;
    p = next;
  }
  return 'percent-encoding nested too deep';
}

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
  const netScratch: ScopeEntry[] = [];

  // Allow and ask decisions depend only on the rule, so each is built once and shared.
  const allowByRule = new Map<string, Decision>();
  const allowed = (rule: string): Decision => {
    let dec = allowByRule.get(rule);
    if (dec === undefined) {
      dec = Object.freeze(d('allow', 'ALLOWED', rule, `Allowed by ${rule}.`));
      allowByRule.set(rule, dec);
    }
    return dec;
  };
  const askByRule = new Map<string, Map<string, Decision>>();
  const asked = (rule: string, what: string): Decision => {
    let byWhat = askByRule.get(rule);
    if (byWhat === undefined) {
      byWhat = new Map();
      askByRule.set(rule, byWhat);
    }
    let dec = byWhat.get(what);
    if (dec === undefined) {
      dec = Object.freeze(
        d(
          'ask',
          'APPROVAL_REQUIRED',
          rule,
          `Needs approval: ${what} requires a human approval (${rule}).`,
        ),
      );
      if (byWhat.size < 4096) byWhat.set(what, dec);
    }
    return dec;
  };
  const pathError = (problem: PathProblem, lexical: string | undefined): Decision =>
    d(
      'deny',
      problem === 'proc-alias' ? 'PATH_PROC_ALIAS' : 'PATH_INVALID',
      'path-rules',
      lexical === undefined
        ? `Denied: ${PATH_PROBLEM_REASON[problem]}.`
        : `Denied: ${lexical} resolves to a path where ${PATH_PROBLEM_REASON[problem]}.`,
    );

  /** Outcome of the path checks, in a reused record (decide() is synchronous). */
  const pr = {
    decision: undefined as Decision | undefined,
    grant: undefined as PathEntry | undefined,
    ask: undefined as PathEntry | undefined,
    overrides: undefined as string[] | undefined,
    resolved: '',
  };

  /** Mandatory denies on `p`; returns a deny or undefined, recording overrides used. */
  const checkDenies = (
    p: string,
    lexical: string,
    write: boolean,
    entries: readonly PathEntry[],
  ): Decision | undefined => {
    for (const e of entries) {
      if (e.kind !== 'deny-all' && !(write && e.kind === 'deny-write')) continue;
      const o = e.denyId === undefined ? undefined : compiled.overrides.get(e.denyId);
      if (
        o !== undefined &&
        e.denyId !== 'cordon' &&
        (o.write || !write) &&
        (o.paths === undefined || matchesAny(o.paths, p))
      ) {
        (pr.overrides ??= []).push(o.rule);
        continue;
      }
      const shown = p === lexical ? lexical : `${lexical} (resolves to ${p})`;
      return d(
        'deny',
        'MANDATORY_DENY',
        e.rule,
        `Denied: ${shown} is inside ${e.denyPath ?? 'a protected location'}, which no agent may ${write ? 'change' : 'read'}.`,
      );
    }
    return undefined;
  };

  /**
   * Normalise and resolve `path`, apply mandatory denies to the path as asked and as resolved,
   * and find the most specific grant and any approval entry for the resolved path.
   */
  const pathDecision = (path: string, write: boolean, askKind: PathEntryKind): typeof pr => {
    pr.decision = undefined;
    pr.grant = undefined;
    pr.ask = undefined;
    pr.overrides = undefined;
    pr.resolved = path;
    const lexical = normaliseRequestPath(path);
    if (isPathProblem(lexical)) {
      pr.decision = pathError(lexical, undefined);
      return pr;
    }
    let resolved = lexical;
    if (resolvePath !== undefined) {
      const r = resolvePath(lexical);
      if (r === undefined) {
        pr.decision = d(
          'deny',
          'PATH_UNRESOLVABLE',
          'path-rules',
          `Denied: ${lexical} could not be resolved (symlink loop or unreadable directory).`,
        );
        return pr;
      }
      const again = normaliseRequestPath(r);
      if (isPathProblem(again)) {
        pr.decision = pathError(again, lexical);
        return pr;
      }
      resolved = again;
    }
    pr.resolved = resolved;
    if (resolved !== lexical) {
      scratch.length = 0;
      compiled.paths.match(lexical, scratch, write);
      pr.decision = checkDenies(lexical, lexical, write, scratch);
      if (pr.decision !== undefined) return pr;
    }
    scratch.length = 0;
    compiled.paths.match(resolved, scratch, write);
    pr.decision = checkDenies(resolved, lexical, write, scratch);
    if (pr.decision !== undefined) return pr;
    // Entries run from the root down: walking backwards meets the most specific grant first.
    for (let i = scratch.length - 1; i >= 0; i--) {
      const e = scratch[i] as PathEntry;
      const k = e.kind;
      if (pr.grant === undefined && (k === 'write' || (!write && k === 'read'))) pr.grant = e;
      else if (pr.ask === undefined && (k === 'ask-any' || k === askKind)) pr.ask = e;
    }
    return pr;
  };

  const decideFile = (
    req: PolicyRequest & { kind: 'file.read' | 'file.write' },
  ): [Decision, RequestFacts] => {
    const write = req.kind === 'file.write';
    const verb = write ? 'write' : 'read';
    const rename = write && req.op === 'rename';
    if (rename && (req.to === undefined || req.to === '')) {
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
    let r = pathDecision(req.path, write, write ? 'ask-write' : 'ask-read');
    const path = r.resolved;
    if (r.decision !== undefined) return [r.decision, { path, needsApproval: false }];
    if (r.grant === undefined) {
      return [
        d(
          'deny',
          'NOT_GRANTED',
          'default-deny',
          `Denied: the manifest does not let this agent ${verb} ${path === req.path ? path : `${req.path} (resolves to ${path})`}.`,
        ),
        { path, needsApproval: false },
      ];
    }
    const rule = r.grant.rule;
    let ask = r.ask;
    let overrides = r.overrides;
    let to: string | undefined;
    if (rename) {
      r = pathDecision(req.to ?? '', true, 'ask-write');
      to = r.resolved;
      if (r.decision !== undefined) return [r.decision, { path, to, needsApproval: false }];
      if (r.grant === undefined) {
        return [
          d(
            'deny',
            'NOT_GRANTED',
            'default-deny',
            `Denied: the manifest does not let this agent write ${to} (rename destination).`,
          ),
          { path, to, needsApproval: false },
        ];
      }
      ask ??= r.ask;
      if (r.overrides !== undefined) overrides = [...(overrides ?? []), ...r.overrides];
    }
    const facts: RequestFacts =
      to === undefined
        ? { path, needsApproval: ask !== undefined }
        : { path, to, needsApproval: ask !== undefined };
    if (ask !== undefined) {
      const dec = asked(ask.rule, write ? 'this write' : 'this read');
      return [overrides === undefined ? dec : { ...dec, overrides }, facts];
    }
    const dec = allowed(rule);
    return [overrides === undefined ? dec : { ...dec, overrides }, facts];
  };

  const decideExec = (req: PolicyRequest & { kind: 'exec' }): [Decision, RequestFacts] => {
    const r = pathDecision(req.path, false, 'ask-exec');
    const path = r.resolved;
    if (r.decision !== undefined) return [r.decision, { path, needsApproval: false }];
    const rule =
      compiled.commands.get(path) ??
      compiled.runtimes.find((r) => path === r.path || path.startsWith(`${r.path}/`))?.rule;
    if (rule === undefined) {
      return [
        d(
          'deny',
          'NOT_GRANTED',
          'default-deny',
          `Denied: ${req.path}${path === req.path ? '' : ` (resolves to ${path})`} is not in commandsAllowed or agentRuntimes.`,
        ),
        { path, needsApproval: false },
      ];
    }
    if (r.ask !== undefined)
      return [asked(r.ask.rule, `running ${req.path}`), { path, needsApproval: true }];
    return [allowed(rule), { path, needsApproval: false }];
  };

  const decideNet = (
    req: PolicyRequest & { kind: 'net.connect' | 'http.request' },
  ): [Decision, RequestFacts] => {
    let scheme: string | undefined;
    let hostText: string;
    let port: number;
    let urlPath: string | undefined;
    let plainName = false;
    try {
      if (req.kind === 'http.request') {
        const fast = typeof req.url === 'string' ? FAST_URL.exec(req.url) : null;
        if (
          fast !== null &&
          (fast[4] === undefined || !DOT_SEGMENT.test(fast[4])) &&
          (fast[3] === undefined || Number(fast[3]) <= 65535)
        ) {
          // Already in the form the WHATWG parser would produce: lower-case ASCII name, plain path.
          scheme = fast[1] ?? '';
          hostText = fast[2] ?? '';
          plainName = true;
          port = fast[3] === undefined ? DEFAULT_PORTS[scheme as NetworkScheme] : Number(fast[3]);
          urlPath = fast[4] ?? '/';
        } else {
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
        }
      } else {
        scheme = req.scheme?.toLowerCase();
        if (scheme !== undefined && !SCHEMES.has(scheme))
          return [
            d('deny', 'REQUEST_INVALID', 'request', `Denied: scheme ${scheme} is not supported.`),
            { needsApproval: false },
          ];
        if (typeof req.host === 'string' && FAST_HOST.test(req.host)) {
          hostText = req.host;
          plainName = true;
        } else {
          const raw = req.host.replace(/%[^\]]*/, '');
          const inner = raw.startsWith('[') ? raw : raw.includes(':') ? `[${raw}]` : raw;
          hostText = new URL(`http://${inner}/`).hostname;
        }
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
    const host =
      hostText.charCodeAt(0) === 0x5b
        ? hostText.slice(1, -1)
        : hostText.endsWith('.')
          ? hostText.slice(0, -1)
          : hostText;
    // A name that passed FAST_HOST cannot be an IP address in any notation.
    const ip = plainName || FAST_HOST.test(host) ? undefined : parseIpAny(host);
    const hostKey = ip?.text ?? host;
    const facts = (needsApproval: boolean): RequestFacts => ({
      host: hostKey,
      port,
      scheme,
      urlPath,
      needsApproval,
    });
    const found = netScratch;
    // Internal addresses, whether named directly or reached through DNS, need an IP-literal grant.
    const internal = (addr: IpAddress): string | undefined => {
      const cls = classifyAddress(addr);
      if (cls === undefined) return undefined;
      found.length = 0;
      compiled.scopes.matchHost(addr.text, addr.bytes, addr.version, found);
      for (const e of found)
        if (!e.ask && scopeAdmits(e.scope, scheme, port, urlPath)) return undefined;
      return cls;
    };
    if (ip !== undefined) {
      const cls = internal(ip);
      if (cls !== undefined) {
        const shown = host === ip.text ? host : `${host} (${ip.text})`;
        return [
          d(
            'deny',
            'NET_INTERNAL_ADDRESS',
            'internal-address',
            `Denied: ${shown} is a ${cls} address; only a manifest scope naming that IP literal can allow it.`,
          ),
          facts(false),
        ];
      }
    } else if (host === 'localhost' || host.endsWith('.localhost')) {
      return [
        d(
          'deny',
          'NET_INTERNAL_ADDRESS',
          'internal-address',
          `Denied: ${host} always means this machine (loopback); grant an IP literal such as http://127.0.0.1:PORT instead.`,
        ),
        facts(false),
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
          facts(false),
        ];
      const cls = internal(a);
      if (cls !== undefined) {
        return [
          d(
            'deny',
            'NET_INTERNAL_ADDRESS',
            'internal-address',
            `Denied: ${host} resolves to ${a.text}, a ${cls} address (DNS rebinding protection).`,
          ),
          facts(false),
        ];
      }
    }
    found.length = 0;
    compiled.scopes.matchHost(hostKey, ip?.bytes, ip?.version, found);
    let grant: ScopeEntry | undefined;
    let ask: ScopeEntry | undefined;
    let pathOnly = false;
    for (const e of found) {
      if (!scopeAdmits(e.scope, scheme, port, urlPath)) {
        if (
          !e.ask &&
          urlPath === undefined &&
          scopeAdmits(e.scope, scheme, port, e.scope.pathPrefix)
        )
          pathOnly = true;
        continue;
      }
      if (e.ask) ask ??= e;
      // Most specific: an exact host beats a wildcard, a longer path prefix beats a shorter one.
      else if (grant === undefined || specificity(e) > specificity(grant)) grant = e;
    }
    // Inside a path-restricted scope, a path a server could decode into another one (`/v1/..%2f
    // admin`) is refused with its own code. A scope of the whole host admits any path anyway.
    const chosen = grant ?? ask;
    if (
      chosen !== undefined &&
      chosen.scope.pathPrefix !== '/' &&
      urlPath !== undefined &&
      !found.some((e) => e.scope.pathPrefix === '/' && scopeAdmits(e.scope, scheme, port, urlPath))
    ) {
      const why = ambiguousPath(urlPath);
      if (why !== undefined)
        return [
          d(
            'deny',
            'PATH_AMBIGUOUS',
            chosen.rule,
            `Denied: ${urlPath} contains ${why}; ${chosen.rule} grants only paths under ${chosen.scope.pathPrefix}, and a server that decodes before it normalises could serve another path.`,
          ),
          facts(false),
        ];
    }
    if (grant === undefined) {
      const where =
        req.kind === 'http.request'
          ? `${req.method} ${req.url}`
          : `${scheme ?? 'tcp'}://${host}:${port}`;
      return [
        d(
          'deny',
          'NOT_GRANTED',
          'default-deny',
          pathOnly
            ? `Denied: ${where} is granted only for some paths, which a tunnel cannot check.`
            : `Denied: the manifest does not let this agent reach ${where}.`,
        ),
        facts(false),
      ];
    }
    if (ask !== undefined) return [asked(ask.rule, `reaching ${host}`), facts(true)];
    return [allowed(grant.rule), facts(false)];
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
    if (ask !== undefined) return [asked(ask.rule, scope), { needsApproval: true }];
    return [allowed(grant.rule), { needsApproval: false }];
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
    return [allowed(rule), { needsApproval: false }];
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
      // A token is checked before guardrails, so "unless approved" guardrails can see it.
      const token = req.approvalToken;
      const approved =
        token !== undefined &&
        options.verifyApproval !== undefined &&
        options.verifyApproval(token, req, requestDigest(req));
      const guardrails = options.guardrails;
      if (guardrails !== undefined) {
        const digest = options.manifestDigest ?? '';
        const g = guardrails.evaluate(req, facts, options.manifest, approved, digest);
        if (g !== undefined && g.effect === 'deny') return g;
        if (g !== undefined && !approved)
          return token === undefined ? g : badToken(g.rule, decision.overrides);
        // Approved: name the guardrail the approval satisfied (one extra evaluation, only then).
        const wouldAsk =
          approved && decision.effect === 'allow'
            ? (g ?? guardrails.evaluate(req, facts, options.manifest, false, digest))
            : undefined;
        if (wouldAsk?.effect === 'ask') return approvedBy(wouldAsk.rule, decision.overrides);
      }
      if (decision.effect === 'ask')
        return approved
          ? approvedBy(decision.rule, decision.overrides)
          : token === undefined
            ? decision
            : badToken(decision.rule, decision.overrides);
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

function approvedBy(rule: string, overrides: readonly string[] | undefined): Decision {
  return d(
    'allow',
    'APPROVED',
    rule,
    `Allowed with a human approval bound to this request (${rule}).`,
    overrides,
  );
}

function badToken(rule: string, overrides: readonly string[] | undefined): Decision {
  return d(
    'ask',
    'APPROVAL_INVALID',
    rule,
    'Needs approval: the approval token presented is not valid for this exact request.',
    overrides,
  );
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
