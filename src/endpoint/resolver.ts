import {
  parseResolveEntries,
  staticResolver,
  systemResolver,
  type Resolver,
} from '../egress/resolver.js';

/**
 * The resolver of an egress proxy: the system's, with fixed answers for the names `entries` pin
 * (`--resolve NAME=ADDR[,ADDR...]`). Throws RESOLVE_ENTRY_INVALID for an entry that is not
 * NAME=ADDRESS.
 *
 * @example
 * resolverFor(['api.example.com=203.0.113.7']);
 */
export function resolverFor(entries: readonly string[] = []): Resolver {
  const table = parseResolveEntries(entries);
  return Object.keys(table).length === 0
    ? systemResolver()
    : staticResolver(table, systemResolver());
}
