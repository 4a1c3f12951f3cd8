import { describe, expect, it } from 'vitest';
import { errorCode } from '../helpers.js';
import { apiScopeAllows, apiScopesOverlap, parseApiScope } from '../../src/manifest/api-scopes.js';

const code = (raw: string): string => errorCode(() => parseApiScope(raw));

describe('api scopes', () => {
  it('accepts service:action[:qualifier] and mcp:server:tool, * only as a whole last segment', () => {
    for (const ok of [
      'sheets:read',
      'sheets:write:restricted',
      'sheets:*',
      'mcp:fs:read_file',
      'mcp:fs:*',
    ])
      expect(code(ok), ok).toBe('OK');
    for (const bad of [
      '*',
      'sheets',
      'sheets:wr*',
      '*:read',
      'sheets:*:x',
      'a:b:c:d',
      'mcp:fs',
      'sheets:re ad',
      'sheets::read',
    ]) {
      expect(code(bad), bad).toBe('API_SCOPE_SYNTAX');
    }
  });

  it('matches exactly, or by the wildcard prefix', () => {
    expect(apiScopeAllows(parseApiScope('sheets:read'), 'sheets:read')).toBe(true);
    expect(apiScopeAllows(parseApiScope('sheets:read'), 'sheets:read:restricted')).toBe(false);
    expect(apiScopeAllows(parseApiScope('sheets:*'), 'sheets:write:restricted')).toBe(true);
    expect(apiScopeAllows(parseApiScope('mcp:fs:*'), 'mcp:fs:write_file')).toBe(true);
    expect(apiScopeAllows(parseApiScope('mcp:fs:*'), 'mcp:git:push')).toBe(false);
    expect(apiScopeAllows(parseApiScope('mcp:fs:*'), 'mcp:fs')).toBe(false);
    expect(apiScopesOverlap(parseApiScope('sheets:*'), parseApiScope('sheets:write:x'))).toBe(true);
    expect(apiScopesOverlap(parseApiScope('sheets:read'), parseApiScope('sheets:write'))).toBe(
      false,
    );
  });
});
