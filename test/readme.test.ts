import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { lintRuleTable, manifestFieldTable } from '../src/manifest/docs.js';
import { MANDATORY_DENIES } from '../src/manifest/mandatory-denies.js';
import { VERIFY_STEPS } from '../src/manifest/verify.js';
import { ProxyLimitsSchema } from '../src/egress/config.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('starts with the quick start and test commands', () => {
    const quick = readme.indexOf('npm ci && npm run quickstart');
    const tests = readme.indexOf('npm ci && npm test');
    expect(quick).toBeGreaterThan(0);
    expect(tests).toBeGreaterThan(quick);
    expect(readme.indexOf('## Prerequisites')).toBeLessThan(quick);
  });

  it('has the manifest field table and lint table generated from the code (run `npm run docs` after changing them)', () => {
    expect(readme).toContain(manifestFieldTable());
    expect(readme).toContain(lintRuleTable());
  });

  it('lists every verification step in order and every mandatory deny id', () => {
    const rows = [...readme.matchAll(/^\| `([a-zA-Z]+)` \| /gm)]
      .map((m) => m[1])
      .filter((s) => (VERIFY_STEPS as readonly string[]).includes(s ?? ''));
    expect(rows).toEqual([...VERIFY_STEPS]);
    for (const d of MANDATORY_DENIES) expect(readme, d.id).toContain(`\`${d.id}\``);
  });

  it('documents every exit code the CLI uses', () => {
    for (const code of [0, 1, 2, 3, 70])
      expect(readme).toMatch(new RegExp(`^\\| ${code} \\|`, 'm'));
  });

  it('documents every audit verb, damage kind, event class and sink type', () => {
    for (const verb of ['verify', 'tail', 'export', 'status', 'emit-test', 'ship']) {
      expect(readme, verb).toContain(`cordon audit ${verb}`);
    }
    for (const kind of [
      'modified',
      'deleted',
      'inserted',
      'reordered',
      'truncated',
      'segment-missing',
      'checkpoint-invalid',
    ]) {
      expect(readme, kind).toMatch(new RegExp(`^\\| \`${kind}\` \\|`, 'm'));
    }
    for (const uid of [1001, 1007, 1008, 2004, 2006, 3004, 4001, 4002, 6002, 6003]) {
      expect(readme, String(uid)).toMatch(new RegExp(`\\| ${uid} \\|`));
    }
    for (const type of ['splunk-hec', 'otlp-http', 'syslog-tls'])
      expect(readme).toContain(`\`${type}\``);
  });

  it('documents the proxy: the cordon proxy verb, every limit and every denial code it adds', () => {
    expect(readme).toContain('cordon proxy --manifest');
    for (const field of Object.keys(ProxyLimitsSchema.shape))
      expect(readme, field).toMatch(new RegExp(`^\\| \`${field}\` \\|`, 'm'));
    for (const code of [
      'NOT_GRANTED',
      'NET_INTERNAL_ADDRESS',
      'APPROVAL_REQUIRED',
      'REQUEST_INVALID',
      'NET_SNI_MISSING',
      'NET_SNI_MISMATCH',
      'NET_NOT_TLS',
      'NET_RESOLVE_FAILED',
      'PROXY_DENY_ALL',
      'DECISION_UNRECORDED',
    ])
      expect(readme, code).toContain(`\`${code}\``);
  });

  it('documents cordon run, doctor, ps and quarantine and every code the sandbox adds', () => {
    for (const verb of ['cordon run --manifest', 'cordon doctor', 'cordon ps', 'cordon quarantine'])
      expect(readme, verb).toContain(verb);
    for (const code of [
      'SANDBOX_UNAVAILABLE',
      'SANDBOX_SETUP_FAILED',
      'SANDBOX_STARTED',
      'SANDBOX_EXEC_FAILED',
      'SANDBOX_BRIDGE_RESTARTED',
      'SANDBOX_BRIDGE_FAILED',
      'SANDBOX_LIMIT_UNENFORCEABLE',
      'SESSION_QUARANTINED',
      'UNSAFE_NO_SANDBOX',
      'COMMAND_NOT_ALLOWED',
      'COMMAND_NOT_FOUND',
    ])
      expect(readme, code).toContain(`\`${code}\``);
  });
});
