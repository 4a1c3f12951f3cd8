import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { explainManifest } from '../../src/manifest/explain.js';
import { compileGrants, type GrantAccess } from '../../src/manifest/grants.js';
import { validateManifest } from '../../src/manifest/parse.js';
import { instantiateTemplate, TEMPLATES } from '../../src/manifest/templates.js';
import { NOW } from '../helpers.js';

interface PolicyFile {
  template: string;
  params: Record<string, unknown>;
  home: string;
  risk: string;
  dataClassification: string;
  cases: (Partial<Record<GrantAccess, string>> & { expect: string })[];
}

const dir = new URL('./', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.policy.json'));

describe('role templates', () => {
  it('every built-in template has a policy test file', () => {
    expect(files.map((f) => f.replace('.policy.json', '')).sort()).toEqual(
      TEMPLATES.map((t) => t.name).sort(),
    );
  });

  for (const file of files) {
    const spec = JSON.parse(readFileSync(new URL(file, dir), 'utf8')) as PolicyFile;
    describe(spec.template, () => {
      const input = instantiateTemplate({
        template: spec.template,
        agentName: `test-${spec.template}`,
        now: NOW,
        params: spec.params,
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

      const grants = compileGrants(m, spec.home);
      for (const c of spec.cases) {
        const access = (Object.keys(c) as (GrantAccess | 'expect')[]).find(
          (k) => k !== 'expect',
        ) as GrantAccess;
        it(`${access} ${c[access] ?? ''} -> ${c.expect}`, () => {
          expect(grants.check(access, c[access] ?? '')).toBe(c.expect);
        });
      }
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
