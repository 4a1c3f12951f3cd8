import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { validateManifest } from '../../src/manifest/parse.js';
import type { Manifest } from '../../src/manifest/schema.js';
import { CEDAR_SCHEMA } from '../../src/policy/cedar-schema.js';
import { cedarCallFor } from '../../src/policy/guardrails.js';
import { createPdp } from '../../src/policy/pdp.js';
import { manifestToCedar } from '../../src/policy/to-cedar.js';
import type { Effect, PolicyRequest } from '../../src/policy/types.js';
import { referenceDecide } from './reference.js';

const HOME = '/home/u';
const SEG = ['a', 'b', 'Work', 'data', 'x.csv', 'y.txt', '.git', 'hooks', 'config', 'notes'];
const GLOB_SEG = ['*', '*.csv', '?.txt', 'x*', '**'];

const seg = fc.constantFrom(...SEG);
const literalPattern = fc
  .tuple(fc.constantFrom('~', '/srv'), fc.array(seg, { maxLength: 3 }), fc.boolean())
  .map(([root, s, tail]) => {
    const base = [root, ...s].join('/');
    return tail ? `${base}/**` : base;
  });
const globPattern = fc
  .tuple(
    fc.constantFrom('~', '/srv'),
    fc.array(fc.oneof(seg, fc.constantFrom(...GLOB_SEG)), { minLength: 1, maxLength: 4 }),
  )
  .map(([root, s]) => [root, ...s].join('/'));
const scopeText = fc
  .tuple(
    fc.constantFrom('https', 'http'),
    fc.constantFrom(
      'api.example.com',
      '*.example.com',
      'x.corp.example.net',
      '[10.0.0.0/8]',
      '127.0.0.1',
      '[2001:db8::/32]',
      '169.254.169.254',
    ),
    fc.constantFrom('', ':8443'),
    fc.constantFrom('', '/v1'),
  )
  .map(([s, h, p, path]) => `${s}://${h}${p}${path}`);
const apiGrant = fc.constantFrom(
  'sheets:read',
  'sheets:*',
  'mcp:fs:*',
  'mcp:fs:read_file',
  'mcp:git:push',
);
const commands = fc.subarray(['/usr/bin/git', '/usr/bin/make', `${HOME}/.ssh/tool`, '/srv/a/run']);
const denyIds = ['ssh', 'aws', 'shell-startup', 'git-hooks', 'kube'];

function manifestArb(pattern: fc.Arbitrary<string>): fc.Arbitrary<Manifest | undefined> {
  return fc
    .record({
      readPaths: fc.array(pattern, { maxLength: 4 }),
      writePaths: fc.array(pattern, { maxLength: 3 }),
      networkScopes: fc.array(scopeText, { maxLength: 4 }),
      apiScopes: fc.array(apiGrant, { maxLength: 3 }),
      commandsAllowed: commands,
      approvals: fc.array(
        fc.oneof(
          pattern.map((p) => `write:${p}`),
          pattern.map((p) => `read:${p}`),
          pattern,
          fc.constantFrom('exec:/usr/bin/make', 'exec:/usr/bin/git'),
          scopeText,
          fc.constantFrom('sheets:*', 'mcp:fs:write_file', 'mcp:git:push'),
        ),
        { maxLength: 3 },
      ),
      overrides: fc.array(
        fc.record({
          deny: fc.constantFrom(...denyIds),
          access: fc.constantFrom('read', 'write'),
          paths: fc.option(
            fc.constantFrom(['~/.ssh/config'], ['~/.aws'], ['~/.bashrc'], ['/srv/.git/hooks']),
            { nil: undefined },
          ),
        }),
        { maxLength: 2 },
      ),
      secrets: fc.subarray(['TOKEN', 'KEY']),
    })
    .map((g) => {
      const seen = new Set<string>();
      const overrides = g.overrides
        .filter((o) => !seen.has(o.deny) && seen.add(o.deny))
        .map((o) => ({
          deny: o.deny,
          access: o.access,
          reason: 'generated for a differential test',
          ...(o.paths === undefined ? {} : { paths: o.paths }),
        }));
      const r = validateManifest({
        apiVersion: 'cordon.dev/v1',
        agentName: 'diff',
        version: '1.0.0',
        role: 'developer',
        dataClassification: 'internal',
        owner: 'o',
        notAfter: '2099-01-01T00:00:00Z',
        readPaths: g.readPaths,
        writePaths: g.writePaths,
        networkScopes: g.networkScopes,
        apiScopes: g.apiScopes,
        commandsAllowed: g.commandsAllowed,
        requiresApproval: g.approvals,
        overrides,
        secrets: g.secrets,
      });
      return r.ok ? r.manifest : undefined;
    });
}

const reqPath = fc
  .tuple(
    fc.constantFrom(HOME, '/srv', `${HOME}/.ssh`, `${HOME}/.aws`, `${HOME}/.config/cordon`, '/etc'),
    fc.array(fc.oneof(seg, fc.constantFrom('.bashrc', 'id_rsa', 'pre-commit')), { maxLength: 4 }),
  )
  .map(([root, s]) => [root, ...s].join('/'));
const host = fc.constantFrom(
  'api.example.com',
  'a.example.com',
  'b.a.example.com',
  'example.com',
  'x.corp.example.net',
  '10.1.2.3',
  '127.0.0.1',
  '8.8.8.8',
  '[2001:db8::1]',
  '[2001:db9::1]',
  'localhost',
  '169.254.169.254',
  '[::1]',
  '[fe80::1]',
);
const requestArb: fc.Arbitrary<PolicyRequest> = fc.oneof(
  reqPath.map((path): PolicyRequest => ({ kind: 'file.read', path })),
  reqPath.map((path): PolicyRequest => ({ kind: 'file.write', path })),
  fc
    .constantFrom(
      '/usr/bin/git',
      '/usr/bin/make',
      '/usr/bin/perl',
      `${HOME}/.ssh/tool`,
      '/srv/a/run',
    )
    .map((path): PolicyRequest => ({ kind: 'exec', path })),
  fc
    .tuple(
      fc.constantFrom('https', 'http'),
      host,
      fc.constantFrom('', ':8443', ':443', ':80'),
      fc.constantFrom('/', '/v1', '/v1/x', '/v2', '/v10'),
    )
    .map(([s, h, p, path]): PolicyRequest => ({
      kind: 'http.request',
      method: 'GET',
      url: `${s}://${h}${p}${path}`,
    })),
  fc
    .tuple(
      host,
      fc.constantFrom(443, 80, 8443),
      fc.option(fc.constantFrom('https', 'http'), { nil: undefined }),
    )
    .map(([h, port, scheme]): PolicyRequest => ({
      kind: 'net.connect',
      host: h.replace(/^\[|\]$/g, ''),
      port,
      ...(scheme === undefined ? {} : { scheme }),
    })),
  fc
    .constantFrom(
      'sheets:read',
      'sheets:write',
      'sheets:write:x',
      'mcp:fs:read_file',
      'mcp:fs:write_file',
      'mcp:git:push',
      'mcp:git:pull',
    )
    .map((scope): PolicyRequest => ({ kind: 'api.call', scope })),
  fc
    .constantFrom('TOKEN', 'KEY', 'OTHER')
    .map((name): PolicyRequest => ({ kind: 'secret.get', name })),
);

const CASES_PER_MANIFEST = 40;
const MANIFESTS = 250;

describe('differential: compiled decide() against a slow reference', () => {
  it(`agrees on ${MANIFESTS * CASES_PER_MANIFEST} generated cases (globs included)`, () => {
    let cases = 0;
    fc.assert(
      fc.property(
        manifestArb(fc.oneof(literalPattern, globPattern)),
        fc.array(requestArb, { minLength: CASES_PER_MANIFEST, maxLength: CASES_PER_MANIFEST }),
        (m, reqs) => {
          if (m === undefined) return;
          const pdp = createPdp({ manifest: m, home: HOME });
          for (const req of reqs) {
            cases++;
            expect(
              pdp.decide(req).effect,
              `${JSON.stringify(req)}\nmanifest ${JSON.stringify(m)}`,
            ).toBe(referenceDecide(m, HOME, req));
          }
        },
      ),
      { numRuns: MANIFESTS },
    );
    expect(cases).toBeGreaterThanOrEqual(MANIFESTS * CASES_PER_MANIFEST * 0.9);
  }, 300_000);
});

let bundle = 0;
function cedarEffect(
  policySetId: string,
  m: Manifest,
  req: PolicyRequest,
  approved: boolean,
): 'allow' | 'deny' {
  const a = cedar.statefulIsAuthorized(cedarCallFor(m, req, policySetId, approved));
  if (a.type === 'failure') throw new Error(a.errors[0]?.message);
  if (a.response.diagnostics.errors.length > 0)
    throw new Error(JSON.stringify(a.response.diagnostics.errors[0]));
  return a.response.decision;
}

describe('differential: compiled decide() against the same manifest as Cedar policies', () => {
  it(`agrees on ${MANIFESTS * CASES_PER_MANIFEST} generated cases (Cedar-expressible manifests)`, () => {
    let cases = 0;
    fc.assert(
      fc.property(
        manifestArb(literalPattern),
        fc.array(requestArb, { minLength: CASES_PER_MANIFEST, maxLength: CASES_PER_MANIFEST }),
        (m, reqs) => {
          if (m === undefined) return;
          const text = manifestToCedar(m, { home: HOME });
          const id = `diff-${++bundle}`;
          const v = cedar.validate({
            schema: CEDAR_SCHEMA,
            policies: { staticPolicies: text },
            validationSettings: { mode: 'strict' },
          });
          expect(
            v.type === 'success' && v.validationErrors.length === 0,
            JSON.stringify(v).slice(0, 500),
          ).toBe(true);
          expect(cedar.preparsePolicySet(id, { staticPolicies: text }).type).toBe('success');
          const pdp = createPdp({ manifest: m, home: HOME });
          for (const req of reqs) {
            cases++;
            const ours: Effect = pdp.decide(req).effect;
            const denied = cedarEffect(id, m, req, false);
            const approved = cedarEffect(id, m, req, true);
            const theirs: Effect =
              denied === 'allow' ? 'allow' : approved === 'allow' ? 'ask' : 'deny';
            expect(ours, `${JSON.stringify(req)}\n${text}`).toBe(theirs);
          }
        },
      ),
      { numRuns: MANIFESTS },
    );
    expect(cases).toBeGreaterThanOrEqual(MANIFESTS * CASES_PER_MANIFEST * 0.9);
  }, 300_000);

  it('refuses globs Cedar cannot express instead of approximating them', () => {
    const r = validateManifest({
      apiVersion: 'cordon.dev/v1',
      agentName: 'x',
      version: '1.0.0',
      role: 'r',
      dataClassification: 'public',
      owner: 'o',
      notAfter: '2099-01-01T00:00:00Z',
      readPaths: ['/srv/*.csv'],
    });
    if (!r.ok) throw new Error('invalid');
    expect(() => manifestToCedar(r.manifest, { home: HOME })).toThrow(
      expect.objectContaining({ code: 'CEDAR_UNTRANSLATABLE', pointer: '/readPaths/0' }),
    );
    for (const p of ['/srv/a/**/b', '/srv/?', '/srv/*']) {
      const r2 = validateManifest({ ...r.manifest, readPaths: [p] });
      if (!r2.ok) throw new Error('invalid');
      expect(() => manifestToCedar(r2.manifest, { home: HOME }), p).toThrow(
        expect.objectContaining({ code: 'CEDAR_UNTRANSLATABLE' }),
      );
    }
  });
});
