import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseManifest, validateManifest } from '../../src/manifest/parse.js';
import { LIST_FIELDS, manifestJsonSchema, ManifestSchema } from '../../src/manifest/schema.js';
import { manifest } from '../helpers.js';

function issues(value: unknown): { code: string; pointer: string }[] {
  const r = validateManifest(value);
  return r.ok ? [] : r.issues.map((i) => ({ code: i.code, pointer: i.pointer }));
}

describe('manifest schema', () => {
  it('accepts the design example and normalises entries', () => {
    const r = validateManifest(
      manifest({
        readPaths: ['~/Work/Reports/./**'],
        networkScopes: ['HTTPS://*.Sheets.Example.com:443'],
      }),
    );
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.manifest.readPaths).toEqual(['~/Work/Reports/**']);
      expect(r.manifest.networkScopes).toEqual(['https://*.sheets.example.com']);
      expect(r.manifest.secrets).toEqual([]);
    }
  });

  it('rejects unknown fields at any level (a typo never changes policy)', () => {
    expect(issues(manifest({ readPath: ['/srv'] }))).toContainEqual({
      code: 'MANIFEST_UNKNOWN_FIELD',
      pointer: '/readPath',
    });
    expect(
      issues(
        manifest({ overrides: [{ deny: 'ssh', reason: 'deploy keys for CI', acess: 'write' }] }),
      ),
    ).toContainEqual({
      code: 'MANIFEST_UNKNOWN_FIELD',
      pointer: '/overrides/0/acess',
    });
  });

  it('reports wrong types, missing fields and bad values with pointers', () => {
    expect(issues(manifest({ readPaths: '/srv' as unknown as string[] }))).toContainEqual({
      code: 'MANIFEST_TYPE',
      pointer: '/readPaths',
    });
    const noOwner: Record<string, unknown> = { ...manifest() };
    delete noOwner['owner'];

    expect(issues(noOwner)).toContainEqual({ code: 'MANIFEST_MISSING_FIELD', pointer: '/owner' });
    expect(issues(manifest({ version: '1.0' }))).toContainEqual({
      code: 'MANIFEST_VERSION',
      pointer: '/version',
    });
    expect(issues(manifest({ apiVersion: 'cordon.dev/v2' }))).toContainEqual({
      code: 'MANIFEST_INVALID',
      pointer: '/apiVersion',
    });
    expect(issues(manifest({ notBefore: '2027-07-01T00:00:00Z' }))).toContainEqual({
      code: 'MANIFEST_VALIDITY_INVERTED',
      pointer: '/notAfter',
    });
    expect(issues(manifest({ notAfter: 'next year' }))).toContainEqual({
      code: 'MANIFEST_INVALID',
      pointer: '/notAfter',
    });
    expect(issues(manifest({ readPaths: ['relative/path'] }))).toContainEqual({
      code: 'PATH_RELATIVE',
      pointer: '/readPaths/0',
    });
    expect(issues(manifest({ writePaths: ['/srv/../..'] }))).toContainEqual({
      code: 'PATH_DOTDOT',
      pointer: '/writePaths/0',
    });
    expect(issues(manifest({ readPaths: ['/srv/a\u0000'] }))).toContainEqual({
      code: 'PATH_NUL',
      pointer: '/readPaths/0',
    });
    expect(issues(manifest({ networkScopes: ['https://*.com'] }))).toContainEqual({
      code: 'NET_WILDCARD_PUBLIC_SUFFIX',
      pointer: '/networkScopes/0',
    });
    expect(issues(manifest({ commandsAllowed: ['python3'] }))).toContainEqual({
      code: 'PATH_RELATIVE',
      pointer: '/commandsAllowed/0',
    });
    expect(issues(manifest({ commandsAllowed: ['/usr/bin/*'] }))).toContainEqual({
      code: 'COMMAND_NOT_ABSOLUTE',
      pointer: '/commandsAllowed/0',
    });
    expect(issues(manifest({ commandsAllowed: ['~/bin/tool'] }))).toContainEqual({
      code: 'COMMAND_NOT_ABSOLUTE',
      pointer: '/commandsAllowed/0',
    });
    expect(issues(manifest({ agentRuntimes: ['/opt/*/bin'] }))).toContainEqual({
      code: 'RUNTIME_NOT_ONE_PATH',
      pointer: '/agentRuntimes/0',
    });
    expect(issues(manifest({ agentRuntimes: ['opt/claude'] }))).toContainEqual({
      code: 'PATH_RELATIVE',
      pointer: '/agentRuntimes/0',
    });
    expect(issues(manifest({ apiScopes: ['*'] }))).toContainEqual({
      code: 'API_SCOPE_SYNTAX',
      pointer: '/apiScopes/0',
    });
    expect(issues(manifest({ overrides: [{ deny: 'ssh', reason: 'x' }] }))).toContainEqual({
      code: 'MANIFEST_INVALID',
      pointer: '/overrides/0/reason',
    });
    expect(
      issues(
        manifest({ overrides: [{ deny: 'cordon', reason: 'the agent wants to edit its policy' }] }),
      ),
    ).toContainEqual({
      code: 'MANIFEST_INVALID',
      pointer: '/overrides/0/deny',
    });
    expect(issues(manifest({ env: ['NOT-A-NAME'] }))).toContainEqual({
      code: 'MANIFEST_INVALID',
      pointer: '/env/0',
    });
  });

  it('accepts requiresApproval entries of every kind', () => {
    const r = validateManifest(
      manifest({
        requiresApproval: [
          'write:~/Work/Reports/outgoing/**',
          'exec:/usr/bin/pdftotext',
          'https://internal-api.corp.example.com',
          'sheets:write:*',
        ],
      }),
    );
    expect(r.ok).toBe(true);
  });

  it('parses bytes strictly: duplicate keys, invalid UTF-8, size cap', () => {
    const text = JSON.stringify(manifest());
    const dup = text.replace('"readPaths":', '"readPaths":["/"],"readPaths":');
    const r = parseManifest(dup);
    expect(r.ok ? 'ok' : r.issues[0]?.code).toBe('JSON_DUPLICATE_KEY');
    const bad = parseManifest(
      Buffer.concat([
        Buffer.from(text.slice(0, -1)),
        Buffer.from([0x2c, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]),
      ]),
    );
    expect(bad.ok ? 'ok' : bad.issues[0]?.code).toBe('JSON_ENCODING');
    const huge = parseManifest(JSON.stringify(manifest({ description: 'x'.repeat(300 * 1024) })));
    expect(huge.ok ? 'ok' : huge.issues[0]?.code).toBe('JSON_TOO_LARGE');
  });

  it('never crashes on random JSON or bytes; every rejection has a code', () => {
    const known = /^(JSON_|MANIFEST_|PATH_|NET_|API_SCOPE_|COMMAND_|RUNTIME_)/;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue().map((v) => JSON.stringify(v)),
          fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
        ),
        (input) => {
          const r = parseManifest(input);
          if (!r.ok) for (const i of r.issues) expect(i.code).toMatch(known);
        },
      ),
      { numRuns: 1000 },
    );
    // Random values placed into real fields, so the field parsers see hostile input too.
    const fields = [...LIST_FIELDS];
    fc.assert(
      fc.property(
        fc.constantFrom(...fields),
        fc.array(fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.jsonValue())),
        (field, values) => {
          const r = validateManifest({ ...manifest(), [field]: values });
          if (!r.ok) for (const i of r.issues) expect(i.code).toMatch(known);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('generates a JSON Schema 2020-12 that lists every field and forbids others', () => {
    const s = manifestJsonSchema() as {
      $schema: string;
      properties: Record<string, unknown>;
      additionalProperties: boolean;
      required: string[];
    };
    expect(s.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(Object.keys(s.properties).sort()).toEqual(Object.keys(ManifestSchema.shape).sort());
    expect(s.additionalProperties).toBe(false);
    expect(s.required).toEqual(
      expect.arrayContaining(['apiVersion', 'agentName', 'version', 'notAfter']),
    );
  });
});
