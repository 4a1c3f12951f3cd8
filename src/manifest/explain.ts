import { lintManifest, type LintFinding, type LintOptions } from './lint.js';
import { MANDATORY_DENIES } from './mandatory-denies.js';
import { parseNetworkScope } from './network.js';
import type { ResolvedManifest } from './resolve.js';
import type { Manifest } from './schema.js';

export type RiskLevel = 'low' | 'medium' | 'high';

export interface RiskReason {
  readonly level: RiskLevel;
  readonly code: string;
  readonly reason: string;
}

/** A plain-language account of a manifest, for reviewers, approvers and the people running the agent. */
export interface Explanation {
  readonly agent: string;
  readonly version: string;
  readonly role: string;
  readonly owner: string;
  readonly dataClassification: Manifest['dataClassification'];
  readonly description: string | undefined;
  readonly read: readonly string[];
  readonly write: readonly string[];
  readonly run: readonly string[];
  /** The agent's own runtime (agentRuntimes): executables, or directories run as a whole. */
  readonly runtimes: readonly string[];
  readonly reach: readonly string[];
  readonly call: readonly string[];
  readonly approvals: readonly string[];
  readonly secrets: readonly string[];
  readonly overrides: readonly string[];
  readonly alwaysDenied: readonly string[];
  readonly validFrom: string | undefined;
  readonly validUntil: string;
  readonly expiresInDays: number;
  readonly risk: { readonly level: RiskLevel; readonly reasons: readonly RiskReason[] };
  readonly findings: readonly LintFinding[];
}

const ORDER: Record<RiskLevel, number> = { low: 0, medium: 1, high: 2 };
const DAY = 86_400_000;

/**
 * Explain a manifest and classify its risk with the playbook criteria: full-disk or home
 * access, broad egress, interpreters, write access plus egress (an exfiltration path), no
 * approvals on sensitive writes, long validity, and lifted mandatory denies.
 */
export function explainManifest(
  m: Manifest,
  options: LintOptions,
  resolved?: ResolvedManifest,
): Explanation {
  const findings = lintManifest(m, options);
  const now = options.now ?? new Date();
  const has = (code: string): boolean => findings.some((f) => f.code === code);
  const reasons: RiskReason[] = [];
  const add = (level: RiskLevel, code: string, reason: string): void => {
    reasons.push({ level, code, reason });
  };
  const sensitive =
    m.dataClassification === 'confidential' || m.dataClassification === 'restricted';
  const egress = m.networkScopes.length > 0;

  if (has('PATH_ROOT_GRANT')) add('high', 'FULL_DISK', 'it may access the whole filesystem');
  if (has('PATH_HOME_GRANT')) add('high', 'HOME_ACCESS', 'it may access the whole home directory');
  if (has('PATH_BROAD_GLOB'))
    add('medium', 'BROAD_PATHS', 'a path pattern covers a whole top-level directory');
  if (has('NET_SHARED_DOMAIN'))
    add('high', 'BROAD_EGRESS', 'it may send data to shared domains where anyone can receive it');
  else if (
    m.networkScopes.some(
      (s) =>
        parseNetworkScope(s).wildcard ||
        (parseNetworkScope(s).prefixLength < (parseNetworkScope(s).kind === 'ipv6' ? 128 : 32) &&
          parseNetworkScope(s).kind !== 'dns'),
    )
  ) {
    add(
      'medium',
      'WILDCARD_EGRESS',
      'a network scope covers many hosts (wildcard or address range)',
    );
  }
  if (has('CMD_INTERPRETER')) {
    if (egress)
      add(
        'high',
        'INTERPRETER_EGRESS',
        'it may run an interpreter and reach the network, so it can run any code and send anything it reads',
      );
    else
      add(
        'medium',
        'INTERPRETER',
        'it may run a shell or interpreter, so any code within its other grants',
      );
  }
  if (has('CMD_PRIVILEGED'))
    add('high', 'PRIVILEGED_COMMAND', 'it may run a privilege-changing command');
  if (m.writePaths.length > 0 && egress) {
    add(
      'medium',
      'EXFILTRATION_PATH',
      'it may write files and reach the network: data can leave through an allowed destination',
    );
  }
  if (sensitive && has('WRITE_NO_APPROVAL')) {
    add(
      'high',
      'UNAPPROVED_SENSITIVE_WRITES',
      `it handles ${m.dataClassification} data and writes without approval`,
    );
  }
  if (has('VALIDITY_LONG')) add('medium', 'LONG_VALIDITY', 'it stays valid for more than a year');
  if (m.overrides.length > 0)
    add(
      'high',
      'MANDATORY_DENY_LIFTED',
      `it lifts mandatory denies: ${m.overrides.map((o) => o.deny).join(', ')}`,
    );
  if (has('NET_PLAINTEXT')) add('medium', 'PLAINTEXT_EGRESS', 'it may send data unencrypted');
  if (has('NET_INTERNAL_ADDRESS'))
    add('medium', 'INTERNAL_NETWORK', 'it may reach internal network addresses');
  if (sensitive && egress && m.requiresApproval.length === 0) {
    add(
      'medium',
      'NO_APPROVALS',
      `it handles ${m.dataClassification} data and nothing needs approval`,
    );
  }
  const level = reasons.reduce<RiskLevel>(
    (acc, r) => (ORDER[r.level] > ORDER[acc] ? r.level : acc),
    'low',
  );
  reasons.sort((a, b) => ORDER[b.level] - ORDER[a.level]);

  const lifted = new Set(m.overrides.map((o) => o.deny));
  return {
    agent: m.agentName,
    version: m.version,
    role: m.role,
    owner: m.owner,
    dataClassification: m.dataClassification,
    description: m.description,
    read: [...new Set([...m.readPaths, ...m.writePaths])],
    write: m.writePaths,
    run:
      resolved === undefined
        ? m.commandsAllowed
        : resolved.commands.map((c) =>
            c.resolved === undefined
              ? `${c.declared} (not found on this machine)`
              : c.resolved === c.declared
                ? c.declared
                : `${c.declared} (-> ${c.resolved}; both allowed)`,
          ),
    runtimes: m.agentRuntimes,
    reach: m.networkScopes,
    call: m.apiScopes,
    approvals: m.requiresApproval,
    secrets: m.secrets,
    overrides: m.overrides.map(
      (o) =>
        `${o.deny} (${o.access}${o.paths === undefined ? '' : `: ${o.paths.join(', ')}`}): ${o.reason}`,
    ),
    alwaysDenied: MANDATORY_DENIES.filter((d) => !lifted.has(d.id)).map(
      (d) => `${d.description}${d.access === 'write' ? ' (writing)' : ''}`,
    ),
    validFrom: m.notBefore,
    validUntil: m.notAfter,
    expiresInDays: Math.floor((Date.parse(m.notAfter) - now.getTime()) / DAY),
    risk: { level, reasons },
    findings,
  };
}

/** The explanation as text for a terminal. */
export function renderExplanation(e: Explanation): string {
  const lines: string[] = [];
  const section = (title: string, items: readonly string[], none: string): void => {
    lines.push(`${title}:`);
    if (items.length === 0) lines.push(`  ${none}`);
    for (const i of items) lines.push(`  - ${i}`);
  };
  lines.push(
    `Agent ${e.agent} ${e.version} (role ${e.role}, ${e.dataClassification} data, owner ${e.owner})`,
  );
  if (e.description !== undefined) lines.push(e.description);
  lines.push('');
  section('May read', e.read, 'nothing');
  section('May write (create, modify, delete, rename)', e.write, 'nothing');
  section('May run', e.run, 'no commands');
  section("Agent runtime (may run; a directory's programs all may run)", e.runtimes, 'none');
  section('May reach', e.reach, 'no network destinations');
  section('May call', e.call, 'no APIs or MCP tools');
  section('Needs a human approval each time for', e.approvals, 'nothing');
  section('Credentials injected by the proxy (never given to the agent)', e.secrets, 'none');
  section('Exceptions to mandatory denies', e.overrides, 'none');
  section('Always denied, whatever the grants say', e.alwaysDenied, 'nothing');
  lines.push('');
  const expiry =
    e.expiresInDays < 0
      ? `expired ${-e.expiresInDays} days ago`
      : `expires in ${e.expiresInDays} days`;
  lines.push(
    `Valid ${e.validFrom === undefined ? '' : `from ${e.validFrom} `}until ${e.validUntil} (${expiry}).`,
  );
  lines.push('');
  lines.push(`Risk: ${e.risk.level.toUpperCase()}`);
  for (const r of e.risk.reasons) lines.push(`  - [${r.level}] ${r.reason} (${r.code})`);
  if (e.risk.reasons.length === 0)
    lines.push('  - narrow grants, no interpreters, no exfiltration path found');
  return lines.join('\n') + '\n';
}
