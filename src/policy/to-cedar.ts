import { CordonError } from '../errors.js';
import { parseApiScope } from '../manifest/api-scopes.js';
import { INTERNAL_RANGES } from '../manifest/ip.js';
import { MANDATORY_DENIES } from '../manifest/mandatory-denies.js';
import { parseNetworkScope, type NetworkScope } from '../manifest/network.js';
import { expandHome, parsePathPattern } from '../manifest/paths.js';
import type { Manifest } from '../manifest/schema.js';

export interface ToCedarOptions {
  readonly home: string;
  readonly cordonDirs?: readonly string[];
}

const A = (kind: string): string => `Cordon::Action::"${kind}"`;
const FILE_READ = `action in [${A('file.read')}, ${A('file.write')}]`;
const NET = `action in [${A('net.connect')}, ${A('http.request')}]`;

function str(s: string): string {
  return JSON.stringify(s);
}

/** Cedar `like` patterns treat `*` as a wildcard; a literal star is written `\*`. */
function likeLiteral(s: string): string {
  return JSON.stringify(s).slice(1, -1).replace(/\*/g, '\\*');
}

function untranslatable(pointer: string, what: string): CordonError {
  return new CordonError(
    'CEDAR_UNTRANSLATABLE',
    `${pointer}: ${what} has no exact Cedar equivalent`,
    {
      pointer,
      hint: "Cedar's `like` has only `*`, which also matches `/`: write the grant as a directory (or DIR/**), or keep it out of Cedar analysis",
    },
  );
}

/** Cedar condition for a path pattern: literal paths and trailing `/**` only. */
function pathCondition(pointer: string, absolute: string, attr = 'resource.path'): string {
  const p = parsePathPattern(absolute);
  if (p.hasGlob) {
    const tailOnly =
      p.segments.length === p.literalDepth + 1 && p.segments[p.literalDepth] === '**';
    if (!tailOnly) throw untranslatable(pointer, `the pattern ${absolute}`);
  }
  const base = '/' + p.segments.slice(0, p.literalDepth).join('/');
  if (base === '/') return 'true';
  return `(${attr} == ${str(base)} || ${attr} like "${likeLiteral(base)}/*")`;
}

function scopeCondition(s: NetworkScope): string {
  const parts: string[] = [];
  parts.push(`(resource.scheme == ${str(s.scheme)} || resource.scheme == "")`);
  parts.push(`resource.port == ${s.port}`);
  if (s.kind === 'dns') {
    parts.push(
      s.wildcard
        ? `resource.host like "*.${likeLiteral(s.host)}"`
        : `resource.host == ${str(s.host)}`,
    );
  } else {
    const cidr = `${s.host}/${s.prefixLength}`;
    parts.push(
      `resource has ip && resource.ip.${s.kind === 'ipv4' ? 'isIpv4' : 'isIpv6'}() && resource.ip.isInRange(ip(${str(cidr)}))`,
    );
  }
  if (s.pathPrefix !== '/')
    parts.push(
      `(resource.path == ${str(s.pathPrefix)} || resource.path like "${likeLiteral(s.pathPrefix)}/*")`,
    );
  return parts.join(' && ');
}

// Cedar cannot look inside IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4,
// compatible), so those ranges are internal as a whole unless granted as IP literals.
const CEDAR_INTERNAL = [
  ...INTERNAL_RANGES.map((r) => r.cidr),
  '::ffff:0:0/96',
  '::ffff:0:0:0/96',
  '64:ff9b::/96',
  '2002::/16',
  '::/96',
];

/**
 * Express a manifest's grants as Cedar policies, so teams that analyse Cedar can analyse
 * manifests too. Grants become `permit`s, mandatory denies (minus overrides) and internal
 * addresses become `forbid`s, and each requiresApproval entry becomes `forbid ... unless
 * { context.approved }`. Patterns Cedar cannot express exactly (`*` or `?` inside a segment,
 * `**` anywhere but at the end) are refused with CEDAR_UNTRANSLATABLE rather than approximated.
 *
 * @example
 * const text = manifestToCedar(manifest, { home: '/home/alice' });
 */
export function manifestToCedar(m: Manifest, options: ToCedarOptions): string {
  const home = options.home;
  const abs = (t: string): string => expandHome(parsePathPattern(t), home);
  const out: string[] = [
    `// Cedar form of manifest ${m.agentName} ${m.version} (role ${m.role}, ${m.dataClassification}), for user home ${home}.`,
  ];
  const policy = (
    id: string,
    effect: 'permit' | 'forbid',
    scope: string,
    when: string,
    unless?: string,
  ): void => {
    out.push(
      `@id(${str(id)})\n${effect} (principal, ${scope}, resource)\nwhen { ${when} }${unless === undefined ? '' : `\nunless { ${unless} }`};`,
    );
  };

  m.readPaths.forEach((t, i) => {
    policy(
      `/readPaths/${i}`,
      'permit',
      `action == ${A('file.read')}`,
      pathCondition(`/readPaths/${i}`, abs(t)),
    );
  });
  m.writePaths.forEach((t, i) => {
    policy(`/writePaths/${i}`, 'permit', FILE_READ, pathCondition(`/writePaths/${i}`, abs(t)));
  });
  m.commandsAllowed.forEach((c, i) => {
    policy(
      `/commandsAllowed/${i}`,
      'permit',
      `action == ${A('exec')}`,
      `resource.path == ${str(c)}`,
    );
  });
  const scopes = m.networkScopes.map(parseNetworkScope);
  scopes.forEach((s, i) => {
    policy(`/networkScopes/${i}`, 'permit', NET, scopeCondition(s));
  });
  m.apiScopes.forEach((a, i) => {
    const s = parseApiScope(a);
    const cond = s.wildcard
      ? `resource.scope like "${likeLiteral(s.segments.slice(0, -1).join(':'))}:*"`
      : `resource.scope == ${str(a)}`;
    policy(`/apiScopes/${i}`, 'permit', `action == ${A('api.call')}`, cond);
  });
  m.secrets.forEach((s, i) => {
    policy(`/secrets/${i}`, 'permit', `action == ${A('secret.get')}`, `resource.name == ${str(s)}`);
  });

  // Mandatory denies, with the manifest's overrides as unless clauses.
  const extra = (options.cordonDirs ?? []).map((d) => parsePathPattern(d).text);
  const lifted = new Map(m.overrides.map((o, i) => [o.deny, { o, i }]));
  for (const d of MANDATORY_DENIES) {
    const written = d.id === 'cordon' ? [...d.paths, ...extra] : d.paths;
    const conds = written.map((w) => {
      if (w.startsWith('/**/')) {
        const tail = likeLiteral(w.slice(3));
        return `(resource.path like "*${tail}" || resource.path like "*${tail}/*")`;
      }
      if (w.includes('*')) {
        // `/etc/ssh/*_key`: Cedar's `*` also crosses `/`, which only widens a forbid.
        const glob = w.split('*').map(likeLiteral).join('*');
        return `(resource.path like "${glob}" || resource.path like "${glob}/*")`;
      }
      return pathCondition(`deny:${d.id}`, w.startsWith('~') ? abs(w) : w);
    });
    const when = conds.join(' || ');
    const ov = d.overridable ? lifted.get(d.id) : undefined;
    const unless =
      ov === undefined
        ? undefined
        : ov.o.paths === undefined
          ? 'true'
          : ov.o.paths
              .map((p, j) => pathCondition(`/overrides/${ov.i}/paths/${j}`, abs(p)))
              .join(' || ');
    const readScope = `action == ${A('file.read')}`;
    const writeScope = `action == ${A('file.write')}`;
    const execScope = `action == ${A('exec')}`;
    if (d.access === 'all') {
      policy(`deny:${d.id}:read`, 'forbid', readScope, when, unless);
      policy(`deny:${d.id}:exec`, 'forbid', execScope, when, unless);
    }
    policy(
      `deny:${d.id}:write`,
      'forbid',
      writeScope,
      when,
      ov !== undefined && ov.o.access === 'write' ? unless : undefined,
    );
  }

  // Internal addresses need an IP-literal grant; names for this machine are always internal.
  const ipGrants = scopes.filter((s) => s.kind !== 'dns').map((s) => `(${scopeCondition(s)})`);
  policy(
    'internal-address',
    'forbid',
    NET,
    `(resource has ip && (${CEDAR_INTERNAL.map((r) => `resource.ip.isInRange(ip(${str(r)}))`).join(' || ')})) || resource.host == "localhost" || resource.host like "*.localhost"`,
    ipGrants.length === 0
      ? undefined
      : `!(resource.host == "localhost" || resource.host like "*.localhost") && (${ipGrants.join(' || ')})`,
  );

  m.requiresApproval.forEach((entry, i) => {
    const id = `/requiresApproval/${i}`;
    const k = /^(read|write|exec):([/~].*)$/s.exec(entry);
    if (k !== null) {
      const kind = k[1] ?? '';
      policy(
        id,
        'forbid',
        `action == ${A(kind === 'exec' ? 'exec' : `file.${kind}`)}`,
        pathCondition(id, abs(k[2] ?? '')),
        'context.approved',
      );
    } else if (entry.startsWith('/') || entry.startsWith('~')) {
      policy(
        id,
        'forbid',
        `action in [${A('file.read')}, ${A('file.write')}, ${A('exec')}]`,
        pathCondition(id, abs(entry)),
        'context.approved',
      );
    } else if (entry.includes('://')) {
      policy(id, 'forbid', NET, scopeCondition(parseNetworkScope(entry)), 'context.approved');
    } else {
      const s = parseApiScope(entry);
      const cond = s.wildcard
        ? `resource.scope like "${likeLiteral(s.segments.slice(0, -1).join(':'))}:*"`
        : `resource.scope == ${str(entry)}`;
      policy(id, 'forbid', `action == ${A('api.call')}`, cond, 'context.approved');
    }
  });
  return out.join('\n\n') + '\n';
}
