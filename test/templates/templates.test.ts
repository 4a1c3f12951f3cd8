import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { explainManifest } from '../../src/manifest/explain.js';
import { parseStrictJson } from '../../src/manifest/json.js';
import { validateManifest } from '../../src/manifest/parse.js';
import { instantiateTemplate, TEMPLATES } from '../../src/manifest/templates.js';
import { createPdp } from '../../src/policy/pdp.js';
import { PolicyTestFileSchema, runPolicyTests } from '../../src/policy/policy-test.js';
import { NOW } from '../helpers.js';

// The policy test files ship with the package (policy-tests/), one per built-in template.
const dir = new URL('../../policy-tests/', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.policy.json'));

describe('role templates', () => {
  it('every built-in template has a policy test file', () => {
    expect(files.map((f) => f.replace('.policy.json', '')).sort()).toEqual(
      TEMPLATES.map((t) => t.name).sort(),
    );
  });

  for (const file of files) {
    const spec = PolicyTestFileSchema.parse(parseStrictJson(readFileSync(new URL(file, dir))));
    const template = spec.template ?? '';
    describe(template, () => {
      const input = instantiateTemplate({
        template,
        agentName: `test-${template}`,
        now: NOW,
        params: spec.params ?? {},
      });
      const r = validateManifest(input);
      if (!r.ok) throw new Error(JSON.stringify(r.issues));
      const m = r.manifest;
      const e = explainManifest(m, { home: spec.home, now: NOW });

      it('is valid, lint-clean (no errors or warnings) and of the expected risk', () => {
        expect(e.findings.filter((f) => f.severity !== 'info')).toEqual([]);
        expect(e.risk.level).toBe(spec.risk);
        expect(m.dataClassification).toBe(spec.dataClassification);
        expect(e.expiresInDays).toBeLessThanOrEqual(90);
      });

      it('passes its policy test file through the decision point', () => {
        const results = runPolicyTests(createPdp({ manifest: m, home: spec.home }), spec.cases);
        expect(
          results
            .filter((x) => !x.ok)
            .map(
              (x) =>
                `${x.name}: expected ${x.expected.effect}, got ${x.decision.effect} (${x.decision.code})`,
            ),
        ).toEqual([]);
      });
    });
  }

  it('rejects unknown templates and parameters with a clear code', () => {
    expect(() => instantiateTemplate({ template: 'admin', agentName: 'x', now: NOW })).toThrow(
      expect.objectContaining({ code: 'TEMPLATE_UNKNOWN' }),
    );
    expect(() =>
      instantiateTemplate({
        template: 'developer',
        agentName: 'x',
        now: NOW,
        params: { workdir: '~/x' },
      }),
    ).toThrow(expect.objectContaining({ code: 'TEMPLATE_PARAMS' }));
    expect(() =>
      instantiateTemplate({
        template: 'developer',
        agentName: 'x',
        now: NOW,
        params: { validityDays: 1000 },
      }),
    ).toThrow(expect.objectContaining({ code: 'TEMPLATE_PARAMS' }));
    expect(() =>
      instantiateTemplate({
        template: 'developer',
        agentName: 'x',
        now: NOW,
        params: { workDir: '~/src/*' },
      }),
    ).toThrow(expect.objectContaining({ code: 'TEMPLATE_PARAMS' }));
  });
});

describe('the CLI help names every template host parameter', () => {
  it('TEMPLATE_HOST_PARAMS matches the templates', async () => {
    const { TEMPLATES } = await import('../../src/manifest/templates.js');
    const { TEMPLATE_HOST_PARAMS } = await import('../../src/manifest/template-hosts.js');
    expect(TEMPLATE_HOST_PARAMS).toEqual(
      TEMPLATES.map((t) => ({ name: t.name, hostParam: t.hostParam.name })),
    );
  });
});
