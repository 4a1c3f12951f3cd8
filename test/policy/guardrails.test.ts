import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadGuardrails } from '../../src/policy/guardrails.js';
import { validManifest } from '../helpers.js';
import { createPdp, requestDigest } from '../../src/policy/pdp.js';
import type { PolicyRequest } from '../../src/policy/types.js';

const dir = new URL('../../examples/guardrails/', import.meta.url);
const examples = readdirSync(dir).map((f) => ({
  name: f,
  text: readFileSync(new URL(f, dir), 'utf8'),
}));

const m = validManifest;

const code = (fn: () => unknown): string => {
  try {
    fn();
    return 'OK';
  } catch (e) {
    return (e as { code: string }).code;
  }
};

describe('guardrails', () => {
  const g = loadGuardrails(examples);

  it('load the shipped examples with ids, files and lines', () => {
    expect(g.policies.map((p) => p.id).sort()).toEqual([
      'confidential-interpreters-need-approval',
      'restricted-internal-egress-only',
      'sensitive-writes-need-scope',
    ]);
    expect(g.policies.find((p) => p.id === 'sensitive-writes-need-scope')?.line).toBe(2);
    expect(
      g.policies.find((p) => p.id === 'confidential-interpreters-need-approval')?.ask,
    ).toContain('approval');
  });

  it('writes under /sensitive need the files:sensitive-write scope', () => {
    const without = createPdp({
      manifest: m({ writePaths: ['/sensitive/**', '/tmp/x'] }),
      home: '/home/u',
      guardrails: g,
    });
    expect(without.decide({ kind: 'file.write', path: '/sensitive/plan.docx' })).toMatchObject({
      effect: 'deny',
      code: 'GUARDRAIL_FORBID',
      rule: 'guardrail:sensitive-writes-need-scope',
    });
    expect(without.decide({ kind: 'file.write', path: '/sensitive' }).code).toBe(
      'GUARDRAIL_FORBID',
    );
    expect(without.decide({ kind: 'file.read', path: '/sensitive/plan.docx' }).effect).toBe(
      'allow',
    );
    expect(without.decide({ kind: 'file.write', path: '/tmp/x/y' }).effect).toBe('allow');
    expect(without.decide({ kind: 'file.write', path: '/sensitivex/y' }).code).toBe('NOT_GRANTED');
    const withScope = createPdp({
      manifest: m({ writePaths: ['/sensitive/**'], apiScopes: ['files:sensitive-write'] }),
      home: '/home/u',
      guardrails: g,
    });
    expect(withScope.decide({ kind: 'file.write', path: '/sensitive/plan.docx' }).effect).toBe(
      'allow',
    );
    // A rename into /sensitive is judged on its destination too.
    expect(
      without.decide({ kind: 'file.write', op: 'rename', path: '/tmp/x/a', to: '/sensitive/a' })
        .code,
    ).toBe('GUARDRAIL_FORBID');
  });

  it('restricted agents reach internal hosts only; others are unaffected', () => {
    const scopes = ['https://api.example.com', 'https://wiki.corp.example.com'];
    const restricted = createPdp({
      manifest: m({ dataClassification: 'restricted', networkScopes: scopes }),
      home: '/home/u',
      guardrails: g,
    });
    const internal = createPdp({
      manifest: m({ dataClassification: 'internal', networkScopes: scopes }),
      home: '/home/u',
      guardrails: g,
    });
    const out: PolicyRequest = {
      kind: 'http.request',
      method: 'GET',
      url: 'https://api.example.com/x',
    };
    const inside: PolicyRequest = { kind: 'net.connect', host: 'wiki.corp.example.com', port: 443 };
    expect(restricted.decide(out)).toMatchObject({
      effect: 'deny',
      rule: 'guardrail:restricted-internal-egress-only',
    });
    expect(restricted.decide(inside).effect).toBe('allow');
    expect(internal.decide(out).effect).toBe('allow');
  });

  it('interpreters for confidential agents ask for approval, and an approval for this request lets them run', () => {
    const conf = createPdp({
      manifest: m({
        dataClassification: 'confidential',
        commandsAllowed: ['/usr/bin/python3', '/usr/bin/git'],
      }),
      home: '/home/u',
      guardrails: g,
      verifyApproval: (token, _r, digest) => token === digest,
    });
    const py: PolicyRequest = { kind: 'exec', path: '/usr/bin/python3', argv: ['python3', 'x.py'] };
    const asked = conf.decide(py);
    expect(asked).toMatchObject({
      effect: 'ask',
      code: 'APPROVAL_REQUIRED',
      rule: 'guardrail:confidential-interpreters-need-approval',
    });
    expect(conf.decide({ ...py, approvalToken: requestDigest(py) })).toMatchObject({
      effect: 'allow',
      code: 'APPROVED',
      rule: 'guardrail:confidential-interpreters-need-approval',
    });
    expect(conf.decide({ ...py, approvalToken: 'forged' }).code).toBe('APPROVAL_INVALID');
    expect(conf.decide({ kind: 'exec', path: '/usr/bin/git' }).effect).toBe('allow');
  });

  it('guardrails only restrict: a manifest deny stays a deny, and permit policies are refused', () => {
    const pdp = createPdp({ manifest: m({}), home: '/home/u', guardrails: g });
    expect(pdp.decide({ kind: 'file.read', path: '/etc/passwd' }).code).toBe('NOT_GRANTED');
    expect(
      code(() =>
        loadGuardrails([{ name: 'p.cedar', text: 'permit (principal, action, resource);' }]),
      ),
    ).toBe('GUARDRAIL_PERMIT');
  });

  it('errors name the file, the line and the policy id', () => {
    const bad =
      '// header\n\n@id("typo")\nforbid (principal, action == Cordon::Action::"file.write", resource)\nwhen { resource.paht like "/x/*" };\n';
    try {
      loadGuardrails([{ name: 'org/typo.cedar', text: bad }]);
      expect.unreachable();
    } catch (e) {
      expect((e as { code: string }).code).toBe('GUARDRAIL_INVALID');
      expect((e as Error).message).toMatch(/^org\/typo\.cedar:5 \(policy typo\): .*paht/);
    }
    try {
      loadGuardrails([
        { name: 's.cedar', text: '\n\nforbid (principal, action, resource) when { ;' },
      ]);
      expect.unreachable();
    } catch (e) {
      expect((e as { code: string }).code).toBe('GUARDRAIL_SYNTAX');
      expect((e as Error).message).toMatch(/^s\.cedar:3/);
    }
    const dup =
      '@id("x") forbid (principal, action, resource) when { false };\n@id("x") forbid (principal, action, resource) when { false };';
    expect(code(() => loadGuardrails([{ name: 'd.cedar', text: dup }]))).toBe('GUARDRAIL_INVALID');
    expect(
      code(() =>
        loadGuardrails([
          { name: 't.cedar', text: 'forbid (principal == ?principal, action, resource);' },
        ]),
      ),
    ).toBe('GUARDRAIL_INVALID');
  });

  it('a guardrail that fails to evaluate denies (fail closed), it does not silently stop applying', () => {
    // Valid under strict validation, but Long overflow makes it an evaluation error at run time.
    const text =
      '@id("overflows") forbid (principal, action == Cordon::Action::"http.request", resource) when { resource.port * 9223372036854775807 > 0 };';
    const loaded = loadGuardrails([{ name: 'e.cedar', text }]);
    const pdp = createPdp({
      manifest: m({ networkScopes: ['https://api.example.com'] }),
      home: '/home/u',
      guardrails: loaded,
    });
    expect(
      pdp.decide({ kind: 'http.request', method: 'GET', url: 'https://api.example.com/' }),
    ).toMatchObject({
      effect: 'deny',
      code: 'GUARDRAIL_ERROR',
      rule: 'guardrail:overflows',
    });
    // Evaluation errors are not remembered: the same request fails closed again.
    expect(
      pdp.decide({ kind: 'http.request', method: 'GET', url: 'https://api.example.com/' }).code,
    ).toBe('GUARDRAIL_ERROR');
    // Kinds the guardrail does not name never reach Cedar, so they cannot hit its error.
    const reads = createPdp({
      manifest: m({ readPaths: ['/srv/**'], networkScopes: ['https://api.example.com'] }),
      home: '/home/u',
      guardrails: loaded,
    });
    expect(reads.decide({ kind: 'file.read', path: '/srv/a' }).effect).toBe('allow');
    // Unguarded optional attributes are refused at load by strict validation.
    const unsafe =
      '@id("needs-ip") forbid (principal, action == Cordon::Action::"http.request", resource) when { resource.ip.isLoopback() };';
    expect(code(() => loadGuardrails([{ name: 'u.cedar', text: unsafe }]))).toBe(
      'GUARDRAIL_INVALID',
    );
  });

  it('runs in a process with JS-to-wasm inlining turned off', () => {
    expect(process.execArgv).toContain('--no-turbo-inline-js-wasm-calls');
  });
});

describe('guardrails see the manifest scopes they name', () => {
  it('a guardrail reading apiScopes sees every scope, whatever the other guardrails do', () => {
    const text =
      '@id("needs-audit-scope") forbid (principal, action == Cordon::Action::"secret.get", resource) unless { principal.manifest.apiScopes.contains("audit:read") };';
    const g = loadGuardrails([{ name: 's.cedar', text }]);
    const scopes = Array.from({ length: 300 }, (_, i) => `svc${i}:read`);
    const withScope = createPdp({
      manifest: validManifest({ secrets: ['TOKEN'], apiScopes: [...scopes, 'audit:read'] }),
      home: '/home/u',
      guardrails: g,
    });
    const without = createPdp({
      manifest: validManifest({ secrets: ['TOKEN'], apiScopes: scopes }),
      home: '/home/u',
      guardrails: g,
    });
    expect(withScope.decide({ kind: 'secret.get', name: 'TOKEN' }).effect).toBe('allow');
    expect(without.decide({ kind: 'secret.get', name: 'TOKEN' }).rule).toBe(
      'guardrail:needs-audit-scope',
    );
  });
});
