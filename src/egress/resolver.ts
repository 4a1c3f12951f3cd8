import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { CordonError } from '../errors.js';

/**
 * The one place the proxy turns names into addresses. Every address returned is checked by the
 * decision point, and the proxy connects only to an address it checked: there is no second
 * lookup for a rebinding DNS server to answer differently.
 */
export interface Resolver {
  /** All addresses for `host`, in the order to try them; rejects when there are none. */
  resolve(host: string): Promise<readonly string[]>;
  /** Answers known without waiting (fixed entries); undefined means "call resolve". */
  resolveSync?(host: string): readonly string[] | undefined;
}

/** The system resolver (getaddrinfo: /etc/hosts, then DNS), all families, in its own order. */
export function systemResolver(): Resolver {
  return {
    async resolve(host) {
      const found = await lookup(host, { all: true, verbatim: true });
      if (found.length === 0) throw new Error(`no addresses for ${host}`);
      return found.map((a) => a.address);
    },
  };
}

/**
 * Fixed answers for some names, like curl's `--resolve`; other names go to `fallback` (or fail
 * when there is none). Used by tests and to pin names on locked-down machines.
 *
 * @example
 * staticResolver({ 'api.example.com': ['203.0.113.7'] }, systemResolver());
 */
export function staticResolver(
  table: Readonly<Record<string, readonly string[]>>,
  fallback?: Resolver,
): Resolver {
  const map = new Map<string, readonly string[]>();
  for (const [name, addrs] of Object.entries(table)) {
    for (const a of addrs)
      if (isIP(a) === 0)
        throw new CordonError('RESOLVE_ENTRY_INVALID', `${name}: "${a}" is not an IP address`, {
          hint: 'write NAME=ADDRESS[,ADDRESS...] with IPv4 or IPv6 addresses',
        });
    map.set(normaliseName(name), addrs);
  }
  return {
    resolveSync(host) {
      return map.get(normaliseName(host));
    },
    async resolve(host) {
      const hit = map.get(normaliseName(host));
      if (hit !== undefined) return hit;
      if (fallback === undefined) throw new Error(`no addresses for ${host}`);
      return fallback.resolve(host);
    },
  };
}

function normaliseName(n: string): string {
  const l = n.toLowerCase();
  return l.endsWith('.') ? l.slice(0, -1) : l;
}

/** Parse `NAME=ADDR[,ADDR...]` entries (the CLI's `--resolve`). */
export function parseResolveEntries(entries: readonly string[]): Record<string, string[]> {
  const table: Record<string, string[]> = {};
  for (const e of entries) {
    const eq = e.indexOf('=');
    const name = e.slice(0, eq);
    const addrs = e
      .slice(eq + 1)
      .split(',')
      .map((a) => a.trim().replace(/^\[|\]$/g, ''));
    if (eq <= 0 || addrs.some((a) => a === ''))
      throw new CordonError('RESOLVE_ENTRY_INVALID', `--resolve "${e}" is not NAME=ADDRESS`, {
        hint: 'e.g. --resolve api.example.com=203.0.113.7',
      });
    table[name] = [...(table[name] ?? []), ...addrs];
  }
  return table;
}
