import { describe, expect, it } from 'vitest';
import { explainManifest, renderExplanation } from '../../src/manifest/explain.js';
import { validateManifest } from '../../src/manifest/parse.js';
import type { Manifest } from '../../src/manifest/schema.js';
import { HOME, manifest, NOW } from '../helpers.js';

function parsed(over: Parameters<typeof manifest>[0] = {}): Manifest {
  const r = validateManifest(manifest(over));
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.manifest;
}
const explain = (over: Parameters<typeof manifest>[0] = {}) =>
  explainManifest(parsed(over), { home: HOME, now: NOW });

describe('explainManifest', () => {
  it('low risk: read-only, no egress, no interpreters', () => {
    const e = explain({ writePaths: [], networkScopes: [], requiresApproval: [] });
    expect(e.risk.level).toBe('low');
    expect(e.risk.reasons).toEqual([]);
  });

  it('medium: write access plus egress is an exfiltration path', () => {
    const e = explain();
    expect(e.risk.level).toBe('medium');
    expect(e.risk.reasons.map((r) => r.code)).toContain('EXFILTRATION_PATH');
  });

  it.each([
    ['FULL_DISK', { readPaths: ['/'] }],
    ['HOME_ACCESS', { readPaths: ['~'] }],
    ['BROAD_EGRESS', { networkScopes: ['https://acme-exports.blob.core.windows.net'] }],
    ['INTERPRETER_EGRESS', { commandsAllowed: ['/usr/bin/python3'] }],
    ['UNAPPROVED_SENSITIVE_WRITES', { dataClassification: 'restricted' }],
    [
      'MANDATORY_DENY_LIFTED',
      {
        readPaths: ['~/.kube/config'],
        overrides: [{ deny: 'kube', reason: 'reads cluster names for reports' }],
      },
    ],
    ['PRIVILEGED_COMMAND', { commandsAllowed: ['/usr/bin/sudo'] }],
  ] as [string, Record<string, unknown>][])('high: %s', (code, over) => {
    const e = explain(over);
    expect(e.risk.level).toBe('high');
    expect(e.risk.reasons[0]?.level).toBe('high');
    expect(e.risk.reasons.map((r) => r.code)).toContain(code);
  });

  it.each([
    ['INTERPRETER', { commandsAllowed: ['/bin/sh'], networkScopes: [], requiresApproval: [] }],
    ['LONG_VALIDITY', { notAfter: '2028-12-31T00:00:00Z', writePaths: [] }],
    ['WILDCARD_EGRESS', { networkScopes: ['https://*.corp.example.com'], writePaths: [] }],
    [
      'PLAINTEXT_EGRESS',
      { networkScopes: ['http://internal-api.corp.example.com'], writePaths: [] },
    ],
    [
      'BROAD_PATHS',
      { readPaths: ['/srv/**'], writePaths: [], networkScopes: [], requiresApproval: [] },
    ],
    ['INTERNAL_NETWORK', { networkScopes: ['https://10.2.3.4'], writePaths: [] }],
    ['NO_APPROVALS', { dataClassification: 'confidential', writePaths: [], requiresApproval: [] }],
  ] as [string, Record<string, unknown>][])('medium: %s', (code, over) => {
    const e = explain(over);
    expect(e.risk.level).toBe('medium');
    expect(e.risk.reasons.map((r) => r.code)).toContain(code);
  });

  it('says what the agent may do, what needs approval, and when it expires', () => {
    const e = explain();
    expect(e.read).toEqual(['~/Work/Reports/**', '~/Work/Reports/outgoing/**']);
    expect(e.approvals).toEqual(['sheets:write:restricted']);
    expect(e.expiresInDays).toBe(218);
    const text = renderExplanation(e);
    expect(text).toContain(
      'May write (create, modify, delete, rename):\n  - ~/Work/Reports/outgoing/**',
    );
    expect(text).toContain('Risk: MEDIUM');
    expect(text).toContain('SSH keys');
  });

  it('shows the agent runtime the manifest grants', () => {
    const e = explain({ agentRuntimes: ['/opt/claude', '~/.local/bin/codex'] });
    expect(e.runtimes).toEqual(['/opt/claude', '~/.local/bin/codex']);
    expect(renderExplanation(e)).toContain(
      "Agent runtime (may run; a directory's programs all may run):\n  - /opt/claude\n  - ~/.local/bin/codex",
    );
    expect(renderExplanation(explain())).toMatch(/Agent runtime .*:\n {2}none/);
  });
});
