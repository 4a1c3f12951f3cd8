import { describe, expect, it } from 'vitest';
import { LINT_RULES, lintManifest, type LintCode } from '../../src/manifest/lint.js';
import { validateManifest } from '../../src/manifest/parse.js';
import type { Manifest } from '../../src/manifest/schema.js';
import { HOME, manifest, NOW } from '../helpers.js';

function parsed(over: Parameters<typeof manifest>[0] = {}): Manifest {
  const r = validateManifest(manifest(over));
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.manifest;
}

function codes(over: Parameters<typeof manifest>[0] = {}, cordonDirs: string[] = []): string[] {
  return lintManifest(parsed(over), {
    home: HOME,
    now: NOW,
    cordonDirs,
    packageDirs: ['/opt/cordon/lib/node_modules/cordon'],
  }).map((f) => `${f.code} ${f.pointer}`);
}

describe('lintManifest', () => {
  it('the baseline manifest is clean', () => {
    expect(codes()).toEqual([]);
  });

  it('env: ordinary names are clean (names that only look alike included)', () => {
    expect(
      codes({ env: ['EDITOR', 'TOKENIZERS_PARALLELISM', 'KEYBOARD_LAYOUT', 'PAGER'] }),
    ).toEqual([]);
  });

  it('agentRuntimes: a runtime’s own directory or executable, and folders in /usr/lib, are clean', () => {
    expect(
      codes({
        agentRuntimes: [
          '/opt/claude',
          '/usr/bin/node',
          '/usr/lib/node_modules/@anthropic-ai/claude-code',
          '~/.local/share/claude',
        ],
      }),
    ).toEqual([]);
  });

  // One case per rule: [rule, manifest change, expected pointer].
  const cases: [LintCode, Parameters<typeof manifest>[0], string][] = [
    ['APPROVAL_NO_MATCH', { requiresApproval: ['sheets:delete'] }, '/requiresApproval/0'],
    ['APPROVAL_NO_MATCH', { requiresApproval: ['write:~/Other/**'] }, '/requiresApproval/0'],
    [
      'APPROVAL_NO_MATCH',
      { requiresApproval: ['https://other.example.com'] },
      '/requiresApproval/0',
    ],
    ['APPROVAL_NO_MATCH', { requiresApproval: ['exec:/usr/bin/rm'] }, '/requiresApproval/0'],
    ['ENV_RESERVED', { env: ['LD_PRELOAD'] }, '/env/0'],
    ['VALIDITY_EXPIRED', { notAfter: '2026-11-01T00:00:00Z' }, '/notAfter'],
    ['RUNTIME_SYSTEM_DIR', { agentRuntimes: ['/usr/bin'] }, '/agentRuntimes/0'],
    ['RUNTIME_SYSTEM_DIR', { agentRuntimes: ['/opt/claude', '/bin'] }, '/agentRuntimes/1'],
    ['RUNTIME_SYSTEM_DIR', { agentRuntimes: ['/usr/local/bin'] }, '/agentRuntimes/0'],
    ['RUNTIME_SYSTEM_DIR', { agentRuntimes: ['/sbin'] }, '/agentRuntimes/0'],
    ['RUNTIME_SYSTEM_DIR', { agentRuntimes: ['/usr/sbin'] }, '/agentRuntimes/0'],
    ['RUNTIME_SYSTEM_DIR', { agentRuntimes: ['/usr/lib'] }, '/agentRuntimes/0'],
    ['RUNTIME_SYSTEM_DIR', { agentRuntimes: ['/usr'] }, '/agentRuntimes/0'],
    ['RUNTIME_WRITABLE', { agentRuntimes: ['~/Work/Reports/outgoing/bin'] }, '/agentRuntimes/0'],
    // A runtime directory that contains a writable path.
    ['RUNTIME_WRITABLE', { agentRuntimes: ['~/Work/Reports'] }, '/agentRuntimes/0'],
    [
      'RUNTIME_WRITABLE',
      { agentRuntimes: ['/home/alice/Work/Reports/outgoing/node'] },
      '/agentRuntimes/0',
    ],
    ['ENV_RESERVED', { env: ['HTTPS_PROXY'] }, '/env/0'],
    ['PATH_CORDON_DIR', { readPaths: ['~/.config/cordon/trust.json'] }, '/readPaths/0'],
    ['PATH_CORDON_PACKAGE', { writePaths: ['/opt/**'] }, '/writePaths/0'],
    [
      'PATH_CORDON_PACKAGE',
      { readPaths: ['/opt/cordon/lib/node_modules/cordon/dist/**'] },
      '/readPaths/0',
    ],
    ['PATH_ROOT_GRANT', { readPaths: ['/'] }, '/readPaths/0'],
    ['PATH_ROOT_GRANT', { readPaths: ['/**/*.pdf'] }, '/readPaths/0'],
    ['PATH_HOME_GRANT', { readPaths: ['~'] }, '/readPaths/0'],
    ['PATH_HOME_GRANT', { writePaths: ['~/**'] }, '/writePaths/0'],
    ['PATH_HOME_GRANT', { readPaths: ['/home/**'] }, '/readPaths/0'],
    ['PATH_HOME_GRANT', { readPaths: ['/home/alice'] }, '/readPaths/0'],
    ['PATH_BROAD_GLOB', { readPaths: ['/usr/**'] }, '/readPaths/0'],
    ['PATH_MANDATORY_DENY', { readPaths: ['~/.ssh/config'] }, '/readPaths/0'],
    ['PATH_MANDATORY_DENY', { readPaths: ['/home/alice/.aws/credentials'] }, '/readPaths/0'],
    ['PATH_MANDATORY_DENY', { readPaths: ['~/.config/**'] }, '/readPaths/0'],
    ['PATH_MANDATORY_DENY', { writePaths: ['~/.bashrc'] }, '/writePaths/0'],
    ['PATH_MANDATORY_DENY', { writePaths: ['~/src/app/.git/hooks/pre-commit'] }, '/writePaths/0'],
    ['CMD_INTERPRETER', { commandsAllowed: ['/usr/bin/python3.11'] }, '/commandsAllowed/0'],
    ['CMD_INTERPRETER', { commandsAllowed: ['/bin/bash'] }, '/commandsAllowed/0'],
    ['CMD_PRIVILEGED', { commandsAllowed: ['/usr/bin/sudo'] }, '/commandsAllowed/0'],
    [
      'CMD_IN_WRITE_PATH',
      { writePaths: ['~/bin/**'], commandsAllowed: ['/home/alice/bin/tool'] },
      '/commandsAllowed/0',
    ],
    ['NET_SHARED_DOMAIN', { networkScopes: ['https://*.amazonaws.com'] }, '/networkScopes/0'],
    ['NET_SHARED_DOMAIN', { networkScopes: ['https://pastebin.com'] }, '/networkScopes/0'],
    [
      'NET_PLAINTEXT',
      { networkScopes: ['http://internal-api.corp.example.com'] },
      '/networkScopes/0',
    ],
    ['NET_INTERNAL_ADDRESS', { networkScopes: ['http://169.254.169.254'] }, '/networkScopes/0'],
    ['NET_INTERNAL_ADDRESS', { networkScopes: ['https://[fd00::/8]'] }, '/networkScopes/0'],
    ['VALIDITY_LONG', { notAfter: '2029-01-01T00:00:00Z' }, '/notAfter'],
    ['WRITE_NO_APPROVAL', { dataClassification: 'confidential' }, '/writePaths/0'],
    ['ENV_CODE_INJECTION', { env: ['NODE_OPTIONS'] }, '/env/0'],
    ['ENV_CODE_INJECTION', { env: ['GCONV_PATH'] }, '/env/0'],
    ['ENV_CODE_INJECTION', { env: ['GLIBC_TUNABLES'] }, '/env/0'],
    ['ENV_CODE_INJECTION', { env: ['SHELLOPTS'] }, '/env/0'],
    ['ENV_CODE_INJECTION', { env: ['PS4'] }, '/env/0'],
    ['ENV_RESERVED', { env: ['BASH_ENV'] }, '/env/0'],
    ['ENV_RESERVED', { env: ['ENV'] }, '/env/0'],
    ['ENV_CREDENTIAL', { env: ['AWS_SECRET_ACCESS_KEY'] }, '/env/0'],
    ['ENV_CREDENTIAL', { env: ['GITHUB_TOKEN'] }, '/env/0'],
    ['ENV_CREDENTIAL', { env: ['EDITOR', 'SLACK_BOT_TOKEN'] }, '/env/1'],
    ['ENV_CREDENTIAL', { env: ['STRIPE_SECRET'] }, '/env/0'],
    ['ENV_CREDENTIAL', { env: ['DB_PASSWORD'] }, '/env/0'],
    ['ENV_CREDENTIAL', { env: ['OPENAI_API_KEY'] }, '/env/0'],
    ['ENV_CREDENTIAL', { env: ['MAPS_APIKEY'] }, '/env/0'],
    ['ENV_CREDENTIAL', { env: ['SIGNER_PRIVATE_KEY'] }, '/env/0'],
    ['ENV_CREDENTIAL', { env: ['GCP_CREDENTIALS'] }, '/env/0'],
    ['ENV_CREDENTIAL', { env: ['PGPASSWORD'] }, '/env/0'],
    ['ENV_CREDENTIAL', { env: ['sentry_dsn'] }, '/env/0'],
    [
      'OVERRIDE_USED',
      {
        readPaths: ['~/.aws/config'],
        overrides: [{ deny: 'aws', reason: 'reads the region from the AWS config' }],
      },
      '/overrides/0',
    ],
    [
      'OVERRIDE_UNUSED',
      { overrides: [{ deny: 'kube', reason: 'left over from an older version' }] },
      '/overrides/0',
    ],
    ['DUPLICATE_ENTRY', { apiScopes: ['sheets:read', 'sheets:read'] }, '/apiScopes/1'],
    ['SECRET_NO_EGRESS', { secrets: ['SHEETS_TOKEN'], networkScopes: [] }, '/secrets'],
    ['NO_DESCRIPTION', { description: undefined }, ''],
    ['ADMIT_BROAD_ACCESS', { readPaths: ['~'] }, '/readPaths/0'],
    [
      'ADMIT_BROAD_ACCESS',
      { writePaths: ['/**'], dataClassification: 'restricted' },
      '/writePaths/0',
    ],
    ['ADMIT_VALIDITY_MAX', { notAfter: '2030-01-01T00:00:00Z' }, '/notAfter'],
  ];
  it.each(cases)('%s fires for %j', (code, over, pointer) => {
    expect(codes(over)).toContain(`${code} ${pointer}`);
  });

  it('every rule has at least one case above', () => {
    const covered = new Set(cases.map(([c]) => c));
    expect(Object.keys(LINT_RULES).filter((c) => !covered.has(c as LintCode))).toEqual([]);
  });

  it('severity comes from the rule table', () => {
    const f = lintManifest(parsed({ env: ['LD_PRELOAD', 'NODE_OPTIONS'] }), {
      home: HOME,
      now: NOW,
    });
    expect(f.find((x) => x.code === 'ENV_RESERVED')?.severity).toBe('error');
    expect(f.find((x) => x.code === 'ENV_CODE_INJECTION')?.severity).toBe('warning');
  });

  it('admission: home-wide access is fine for public data; the validity maximum is configurable', () => {
    expect(codes({ readPaths: ['~'], dataClassification: 'public' })).not.toContain(
      'ADMIT_BROAD_ACCESS /readPaths/0',
    );
    const f = lintManifest(parsed({ notAfter: '2027-06-30T00:00:00Z' }), {
      home: HOME,
      now: NOW,
      maxValidityDays: 90,
    });
    expect(f.find((x) => x.code === 'ADMIT_VALIDITY_MAX')?.severity).toBe('error');
  });

  it('guards the configured Cordon directories, not only the defaults', () => {
    expect(codes({ readPaths: ['/srv/cordon/policy/**'] }, ['/srv/cordon/policy'])).toContain(
      'PATH_CORDON_DIR /readPaths/0',
    );
  });

  it('an override silences the collision but is itself reported', () => {
    const c = codes({
      readPaths: ['~/.aws/config'],
      overrides: [{ deny: 'aws', reason: 'reads the region from the AWS config' }],
    });
    expect(c).not.toContain('PATH_MANDATORY_DENY /readPaths/0');
    expect(c).toContain('OVERRIDE_USED /overrides/0');
  });

  it('approval entries that select grants are accepted, and approved writes satisfy WRITE_NO_APPROVAL', () => {
    expect(
      codes({
        dataClassification: 'restricted',
        requiresApproval: [
          'write:~/Work/Reports/outgoing/**',
          'https://internal-api.corp.example.com',
          'sheets:*',
          'exec:/usr/bin/pdftotext',
          '~/Work/Reports/q3',
        ],
      }),
    ).toEqual([]);
  });
});
