import { CordonError } from '../errors.js';
import { memoise } from './memo.js';

export type ApiScopeErrorCode = 'API_SCOPE_SYNTAX';

/** An API scope: `service:action[:qualifier]`, MCP tools as `mcp:<server>:<tool>`. */
export interface ApiScope {
  readonly text: string;
  readonly segments: readonly string[];
  /** The last segment is `*`: any value of that segment (and nothing deeper). */
  readonly wildcard: boolean;
}

const SEGMENT = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * Parse an API scope. `*` is allowed only as the whole final segment (`sheets:*`,
 * `mcp:fs:*`); a bare `*` or a partial wildcard (`sheets:wr*`) is an error.
 *
 * @example
 * parseApiScope('mcp:fs:write_file').segments; // ['mcp', 'fs', 'write_file']
 */
function parseApiScopeUncached(raw: string): ApiScope {
  const fail = (message: string, hint: string): never => {
    throw new CordonError('API_SCOPE_SYNTAX', `"${raw}": ${message}`, { hint });
  };
  const segments = raw.split(':');
  if (segments.length < 2 || segments.length > 3) {
    fail(
      'needs 2 or 3 segments',
      'write service:action or service:action:qualifier (MCP tools: mcp:server:tool)',
    );
  }
  segments.forEach((seg, i) => {
    if (seg === '*') {
      if (i !== segments.length - 1)
        fail('* is allowed only as the last segment', 'write e.g. sheets:*');
      if (i === 0) fail('* would allow every service', 'name the service');
      return;
    }
    if (seg.includes('*'))
      fail('* must be a whole segment', 'write sheets:* rather than sheets:wr*');
    if (!SEGMENT.test(seg))
      fail(
        `segment "${seg}" has characters other than letters, digits, _ . -`,
        'rename the segment',
      );
  });
  if (segments[0] === 'mcp' && segments.length !== 3) {
    fail(
      'MCP tools are written mcp:<server>:<tool>',
      'write mcp:<server>:<tool> or mcp:<server>:*',
    );
  }
  return { text: raw, segments, wildcard: segments[segments.length - 1] === '*' };
}

/** Whether `scope` allows the concrete scope `requested` (e.g. `sheets:write:restricted`). */
export function apiScopeAllows(scope: ApiScope, requested: string): boolean {
  const req = requested.split(':');
  if (!scope.wildcard) return scope.text === requested;
  const fixed = scope.segments.length - 1;
  if (req.length < scope.segments.length) return false;
  for (let i = 0; i < fixed; i++) if (req[i] !== scope.segments[i]) return false;
  return true;
}

/** Whether two scopes may allow a common concrete scope. */
export function apiScopesOverlap(a: ApiScope, b: ApiScope): boolean {
  const n = Math.min(a.segments.length, b.segments.length);
  for (let i = 0; i < n; i++) {
    const x = a.segments[i];
    const y = b.segments[i];
    if (x === '*' || y === '*') return true;
    if (x !== y) return false;
  }
  return a.segments.length === b.segments.length;
}

/** Memoised: manifests repeat the same entries across parse, lint and compile. */
export const parseApiScope = memoise(parseApiScopeUncached);
