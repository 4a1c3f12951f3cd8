import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';
import { cli, type CliResult } from './harness.js';

let root: string;
let cordonHome: string;
let policy: string;
const run = (...args: string[]): Promise<CliResult> =>
  cli(args, { home: '/home/alice', cordonHome });
const runAt = (now: Date, ...args: string[]): Promise<CliResult> =>
  cli(args, { home: '/home/alice', cordonHome, now });

beforeEach(async () => {
  root = tempDir();
  cordonHome = join(root, 'cordon');
  policy = join(cordonHome, 'policy');
  expect((await run('init')).code).toBe(0);
});

async function newManifest(name: string, ...extra: string[]): Promise<string> {
  const file = join(root, `${name}.json`);
  const r = await run(
    'manifest',
    'new',
    '--template',
    'finance-analyst',
    '--agent',
    name,
    '--out',
    file,
    ...extra,
  );
  expect(r.code, r.stderr).toBe(0);
  return file;
}

async function signedManifest(name = 'cowork-lite', ...extra: string[]): Promise<string> {
  const file = await newManifest(name, ...extra);
  const r = await run('manifest', 'sign', file, '--key', join(policy, 'keys/org.key'));
  expect(r.code, r.stderr).toBe(0);
  return file.replace(/\.json$/, '.signed.json');
}

function editManifest(file: string, change: (m: Record<string, unknown>) => void): void {
  const m = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  change(m);
  writeFileSync(file, JSON.stringify(m, null, 2));
}

describe('cordon init', () => {
  it('creates the admin layout with a 0600 org key, and is idempotent', async () => {
    for (const f of [
      'trust.json',
      'revocations.json',
      'keys/org.key',
      'keys/org.pub',
      'groups.json',
      'guardrails/README.md',
      'guardrails/examples/sensitive-writes.cedar',
      'manifests/developer.example.json',
    ]) {
      expect(existsSync(join(policy, f)), f).toBe(true);
    }
    expect(statSync(join(policy, 'keys/org.key')).mode & 0o777).toBe(0o600);
    const before = readFileSync(join(policy, 'trust.json'), 'utf8');
    const again = await run('init', '--json');
    expect(again.code).toBe(0);
    expect((again.json() as { created: string[] }).created).toEqual([]);
    expect(readFileSync(join(policy, 'trust.json'), 'utf8')).toBe(before);
  });

  it('--endpoint installs trust and revocations and a device key, but no signing key', async () => {
    const ep = join(root, 'endpoint');
    const r = await run(
      'init',
      ep,
      '--endpoint',
      '--trust',
      join(policy, 'trust.json'),
      '--revocations',
      join(policy, 'revocations.json'),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(ep, 'device.key'))).toBe(true);
    expect(statSync(join(ep, 'device.key')).mode & 0o777).toBe(0o600);
    expect(existsSync(join(ep, 'keys'))).toBe(false);
    // The endpoint verifies with no private key at all.
    const signed = await signedManifest();
    const v = await run('--policy-dir', ep, 'manifest', 'verify', signed);
    expect(v.code, v.stdout).toBe(0);
  });

  it('--endpoint refuses a revocation list the trust store does not vouch for', async () => {
    const other = join(root, 'other');
    await run('init', other);
    const r = await run(
      'init',
      join(root, 'ep'),
      '--endpoint',
      '--trust',
      join(policy, 'trust.json'),
      '--revocations',
      join(other, 'revocations.json'),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('REVOCATION_LIST_UNTRUSTED');
  });

  it('flag misuse is a usage error (exit 2)', async () => {
    expect((await run('init', '--endpoint')).code).toBe(2);
    expect((await run('init', '--trust', 'x')).code).toBe(2);
    expect((await run('manifest', 'lint')).code).toBe(2);
    expect((await run('nonsense')).code).toBe(2);
    expect((await run('manifest', 'lint', 'x.json', '--format', 'xml')).code).toBe(2);
  });
});

describe('cordon manifest', () => {
  it('new → lint → sign → verify → explain, on real files', async () => {
    const file = await newManifest(
      'cowork-lite',
      '--param',
      'workDir=~/Work/Finance',
      '--owner',
      'fin-it@example.com',
    );
    expect((await run('manifest', 'lint', file)).code).toBe(0);
    const signed = await signedManifest('agent-two');
    const v = await run('manifest', 'verify', signed, '--json');
    expect(v.code).toBe(0);
    const report = v.json() as {
      ok: boolean;
      steps: { name: string; status: string }[];
      digest: string;
    };
    expect(report.ok).toBe(true);
    expect(report.steps).toHaveLength(10);
    const e = await run('manifest', 'explain', signed, '--json');
    expect((e.json() as { risk: { level: string } }).risk.level).toBe('medium');
    const text = await run('manifest', 'explain', file);
    expect(text.stdout).toContain('Risk: MEDIUM');
  });

  it('lint reports codes, pointers and lines in text, json and sarif; exit 1 on errors', async () => {
    const file = await newManifest('linty');
    editManifest(file, (m) => {
      m['readPaths'] = ['~', '~/.ssh/config'];
      m['env'] = ['LD_PRELOAD'];
      // Public data: home-wide access is a warning, not an admission error.
      m['dataClassification'] = 'public';
    });
    const text = await run('manifest', 'lint', file);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/linty\.json:\d+:\d+ error ENV_RESERVED \/env\/0/);
    const json = await run('manifest', 'lint', file, '--format', 'json');
    const j = json.json() as {
      errors: number;
      findings: { code: string; pointer: string; line: number }[];
    };
    expect(j.errors).toBe(1);
    expect(j.findings.map((f) => f.code)).toEqual(
      expect.arrayContaining(['PATH_HOME_GRANT', 'PATH_MANDATORY_DENY', 'ENV_RESERVED']),
    );
    expect((await run('manifest', 'lint', file, '--json')).json()).toEqual(j);
    expect((await run('manifest', 'lint', file, '--json', '--format', 'sarif')).code).toBe(2);
    const sarif = await run('manifest', 'lint', file, '--format', 'sarif');
    const s = sarif.json() as {
      version: string;
      runs: {
        results: {
          ruleId: string;
          level: string;
          locations: { physicalLocation: { region?: { startLine: number } } }[];
        }[];
      }[];
    };
    expect(s.version).toBe('2.1.0');
    const res = s.runs[0]!.results.find((r) => r.ruleId === 'ENV_RESERVED')!;
    expect(res.level).toBe('error');
    expect(res.locations[0]!.physicalLocation.region!.startLine).toBeGreaterThan(1);
    // Warnings alone pass, unless --max-warnings says otherwise.
    editManifest(file, (m) => {
      m['env'] = [];
    });
    expect((await run('manifest', 'lint', file)).code).toBe(0);
    expect((await run('manifest', 'lint', file, '--max-warnings', '0')).code).toBe(1);
  });

  it('lint turns unreadable JSON into a finding for machines, and an error for people', async () => {
    const file = join(root, 'dup.json');
    writeFileSync(file, '{"apiVersion":"cordon.dev/v1","apiVersion":"cordon.dev/v1"}');
    const j = await run('manifest', 'lint', file, '--format', 'json');
    expect(j.code).toBe(1);
    expect((j.json() as { findings: { code: string }[] }).findings[0]!.code).toBe(
      'JSON_DUPLICATE_KEY',
    );
    const t = await run('manifest', 'lint', file);
    expect(t.code).toBe(1);
    expect(t.stderr).toContain('error[JSON_DUPLICATE_KEY]');
    expect(t.stderr).toContain(`file: ${file}`);
  });

  it('sign refuses invalid manifests, naming the file and field', async () => {
    const file = await newManifest('bad');
    editManifest(file, (m) => {
      m['readPaths'] = ['Work/relative'];
    });
    const r = await run('manifest', 'sign', file, '--key', join(policy, 'keys/org.key'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[PATH_RELATIVE]');
    expect(r.stderr).toContain('field: /readPaths/0');
    expect(r.stderr).toContain(`file: ${file}`);
    expect(r.stderr).toContain('fix: ');
  });

  it('sign never overwrites an existing signed file (exit 3), co-signing rewrites in place', async () => {
    const file = await newManifest('twice');
    expect((await run('manifest', 'sign', file, '--key', join(policy, 'keys/org.key'))).code).toBe(
      0,
    );
    const again = await run('manifest', 'sign', file, '--key', join(policy, 'keys/org.key'));
    expect(again.code).toBe(3);
    expect(again.stderr).toContain('FILE_EXISTS');
    // Co-sign with a second key: threshold 2 is then met.
    expect((await run('keys', 'generate', '--name', 'vendor')).code).toBe(0);
    expect(
      (
        await run(
          'keys',
          'trust',
          '--name',
          'vendor',
          '--pub',
          join(policy, 'keys/vendor.pub'),
          '--purpose',
          'manifest',
        )
      ).code,
    ).toBe(0);
    const signed = file.replace(/\.json$/, '.signed.json');
    expect((await run('manifest', 'verify', signed, '--threshold', '2', '--no-record')).code).toBe(
      1,
    );
    const co = await run(
      'manifest',
      'sign',
      signed,
      '--key',
      join(policy, 'keys/vendor.key'),
      '--json',
    );
    expect((co.json() as { signatures: number }).signatures).toBe(2);
    expect((await run('manifest', 'verify', signed, '--threshold', '2')).code).toBe(0);
    const dup = await run('manifest', 'sign', signed, '--key', join(policy, 'keys/vendor.key'));
    expect(dup.stderr).toContain('SIGNATURE_DUPLICATE');
  });

  it('verify: expired manifest, rollback, revoked digest, revoked key — each exit 1 with its code', async () => {
    const v2 = await signedManifest('roll', '--param', 'version=2.0.0');
    expect((await run('manifest', 'verify', v2)).code).toBe(0);
    const v1 = await signedManifest('roll-old', '--param', 'version=1.0.0');
    // Same agentName as v2 (which this device accepted), lower version.
    const older = await newManifest('roll-1');
    editManifest(older, (m) => {
      m['agentName'] = 'roll';
      m['version'] = '1.9.0';
    });
    await run('manifest', 'sign', older, '--key', join(policy, 'keys/org.key'));
    const rb = await run('manifest', 'verify', older.replace(/\.json$/, '.signed.json'), '--json');
    expect(rb.code).toBe(1);
    expect((rb.json() as { code: string }).code).toBe('MANIFEST_ROLLBACK');

    const later = new Date(Date.now() + 200 * 86_400_000);
    const exp = await runAt(later, 'manifest', 'verify', v2, '--json');
    expect((exp.json() as { code: string }).code).toBe('MANIFEST_EXPIRED');

    const rev = await run(
      'revoke',
      'manifest',
      v1,
      '--reason',
      'superseded after review',
      '--key',
      join(policy, 'keys/org.key'),
    );
    expect(rev.code, rev.stderr).toBe(0);
    const r1 = await run('manifest', 'verify', v1, '--json');
    expect((r1.json() as { code: string }).code).toBe('MANIFEST_REVOKED');

    await run('keys', 'generate', '--name', 'ops');
    await run(
      'keys',
      'trust',
      '--name',
      'ops',
      '--pub',
      join(policy, 'keys/ops.pub'),
      '--purpose',
      'manifest',
    );
    const opsFile = await newManifest('ops-agent');
    await run('manifest', 'sign', opsFile, '--key', join(policy, 'keys/ops.key'));
    const opsSigned = opsFile.replace(/\.json$/, '.signed.json');
    expect((await run('manifest', 'verify', opsSigned, '--no-record')).code).toBe(0);
    expect(
      (
        await run(
          'revoke',
          'key',
          'ops',
          '--reason',
          'key left on a shared drive',
          '--key',
          join(policy, 'keys/org.key'),
        )
      ).code,
    ).toBe(0);
    const k = await run('manifest', 'verify', opsSigned, '--json');
    expect((k.json() as { code: string }).code).toBe('KEY_REVOKED');
    const listed = await run('keys', 'list', '--json');
    expect(
      (listed.json() as { keys: { name: string; revoked: boolean; source: string }[] }).keys.find(
        (x) => x.name === 'ops' && x.source === 'trust-store',
      )?.revoked,
    ).toBe(true);
    // Revoking twice is reported, and the list is not changed.
    expect(
      (
        await run(
          'revoke',
          'key',
          'ops',
          '--reason',
          'again',
          '--key',
          join(policy, 'keys/org.key'),
        )
      ).stderr,
    ).toContain('ALREADY_REVOKED');
  });

  it('verify: a revocation list replaced by an older signed copy is refused', async () => {
    const signed = await signedManifest();
    const old = readFileSync(join(policy, 'revocations.json'));
    expect((await run('manifest', 'verify', signed)).code).toBe(0);
    await run(
      'revoke',
      'manifest',
      `sha256:${'a'.repeat(64)}`,
      '--reason',
      'test',
      '--key',
      join(policy, 'keys/org.key'),
    );
    expect((await run('manifest', 'verify', signed)).code).toBe(0);
    writeFileSync(join(policy, 'revocations.json'), old);
    const r = await run('manifest', 'verify', signed, '--json');
    expect((r.json() as { code: string }).code).toBe('REVOCATION_LIST_ROLLBACK');
  });

  it('verify: a damaged rollback state is an environment error, never a silent reset', async () => {
    const signed = await signedManifest();
    expect((await run('manifest', 'verify', signed)).code).toBe(0);
    writeFileSync(join(cordonHome, 'state', 'accepted.json'), '{not json');
    const r = await run('manifest', 'verify', signed);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('STATE_CORRUPT');
  });

  it('missing files are environment errors (exit 3); huge and non-regular files are refused before reading', async () => {
    const r = await run('manifest', 'verify', join(root, 'nope.json'));
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('FILE_NOT_FOUND');
    const huge = join(root, 'huge.json');
    writeFileSync(huge, Buffer.alloc(2 * 1024 * 1024, 0x20));
    expect((await run('manifest', 'verify', huge)).stderr).toContain('FILE_TOO_LARGE');
    expect((await run('manifest', 'lint', '/dev/zero')).stderr).toContain('FILE_NOT_REGULAR');
  });

  it('schema prints JSON Schema 2020-12', async () => {
    const r = await run('manifest', 'schema');
    expect((r.json() as { $schema: string }).$schema).toBe(
      'https://json-schema.org/draft/2020-12/schema',
    );
  });
});

describe('cordon keys', () => {
  it('generate writes a 0600 PKCS#8 key, refuses to overwrite, supports passphrases', async () => {
    const g = await run('keys', 'generate', '--name', 'ci', '--json');
    expect(g.code).toBe(0);
    const k = g.json() as { privateFile: string; keyId: string };
    expect(statSync(k.privateFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(k.privateFile, 'utf8')).toContain('BEGIN PRIVATE KEY');
    const again = await run('keys', 'generate', '--name', 'ci');
    expect(again.code).toBe(3);
    expect(again.stderr).toContain('FILE_EXISTS');

    const pass = join(root, 'pass.txt');
    writeFileSync(pass, 'correct horse battery staple\n');
    const enc = await run(
      'keys',
      'generate',
      '--name',
      'locked',
      '--passphrase-file',
      pass,
      '--json',
    );
    const lockedFile = (enc.json() as { privateFile: string }).privateFile;
    expect(readFileSync(lockedFile, 'utf8')).toContain('ENCRYPTED');
    const m = await newManifest('p');
    const noPass = await run('manifest', 'sign', m, '--key', lockedFile);
    expect(noPass.stderr).toContain('KEY_PASSPHRASE_REQUIRED');
    const wrong = join(root, 'wrong.txt');
    writeFileSync(wrong, 'not the passphrase\n');
    const bad = await run('manifest', 'sign', m, '--key', lockedFile, '--passphrase-file', wrong);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('KEY_PASSPHRASE_WRONG');
    expect(
      (await run('manifest', 'sign', m, '--key', lockedFile, '--passphrase-file', pass)).code,
    ).toBe(0);
    const weak = join(root, 'weak.txt');
    writeFileSync(weak, 'short');
    expect(
      (await run('keys', 'generate', '--name', 'weak', '--passphrase-file', weak)).stderr,
    ).toContain('PASSPHRASE_WEAK');
  });

  it('a corrupt key file is refused with its own code', async () => {
    const bad = join(root, 'corrupt.key');
    writeFileSync(
      bad,
      '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n',
    );
    const m = await newManifest('c');
    const r = await run('manifest', 'sign', m, '--key', bad);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('KEY_CORRUPT');
    expect(r.stderr).toContain(bad);
  });

  it('list shows trusted keys and key files; trust validates its input', async () => {
    const l = await run('keys', 'list');
    expect(l.stdout).toMatch(/org\s+[0-9a-f]{64}\s+trusted for manifest, revocation/);
    expect(
      (
        await run(
          'keys',
          'trust',
          '--name',
          'x',
          '--pub',
          join(policy, 'keys/org.pub'),
          '--purpose',
          'everything',
        )
      ).code,
    ).toBe(2);
    const dupe = await run(
      'keys',
      'trust',
      '--name',
      'org2',
      '--pub',
      join(policy, 'keys/org.pub'),
      '--purpose',
      'manifest',
    );
    expect(dupe.stderr).toContain('TRUST_KEY_EXISTS');
  });

  it('a key trusted only until yesterday no longer verifies', async () => {
    await run('keys', 'generate', '--name', 'old');
    await run(
      'keys',
      'trust',
      '--name',
      'old',
      '--pub',
      join(policy, 'keys/old.pub'),
      '--purpose',
      'manifest',
      '--not-after',
      '2020-01-01T00:00:00Z',
    );
    const m = await newManifest('old-signed');
    await run('manifest', 'sign', m, '--key', join(policy, 'keys/old.key'));
    const r = await run('manifest', 'verify', m.replace(/\.json$/, '.signed.json'), '--json');
    expect((r.json() as { code: string }).code).toBe('KEY_EXPIRED');
  });
});

describe('cordon templates', () => {
  it('list and resolve a group through the mapping file', async () => {
    const l = await run('templates', 'list', '--json');
    expect((l.json() as { templates: { name: string }[] }).templates.map((t) => t.name)).toEqual([
      'finance-analyst',
      'legal-drafting',
      'sre-oncall',
      'developer',
    ]);
    const r = await run('templates', 'resolve', '--group', 'developers');
    expect(r.code, r.stderr).toBe(0);
    expect((r.json() as { role: string; readPaths: string[] }).readPaths).toEqual([
      '~/src/project/**',
    ]);
    const mapping = join(root, 'groups.json');
    writeFileSync(
      mapping,
      JSON.stringify({
        apiVersion: 'cordon.dev/v1',
        kind: 'GroupMapping',
        groups: {
          'FIN-EMEA': {
            template: 'finance-analyst',
            owner: 'emea-fin@example.com',
            params: { workDir: '/srv/finance/emea', validityDays: 30 },
          },
        },
      }),
    );
    const emea = await run('templates', 'resolve', '--group', 'FIN-EMEA', '--mapping', mapping);
    const m = emea.json() as { agentName: string; owner: string; writePaths: string[] };
    expect(m.agentName).toBe('finance-analyst-fin-emea');
    expect(m.owner).toBe('emea-fin@example.com');
    expect(m.writePaths).toEqual(['/srv/finance/emea/outgoing/**']);
    const unknown = await run('templates', 'resolve', '--group', 'nobody', '--mapping', mapping);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('GROUP_UNKNOWN');
    writeFileSync(
      mapping,
      JSON.stringify({
        apiVersion: 'cordon.dev/v1',
        kind: 'GroupMapping',
        groups: { x: { template: 'developer', parms: {} } },
      }),
    );
    expect(
      (await run('templates', 'resolve', '--group', 'x', '--mapping', mapping)).stderr,
    ).toContain('GROUP_MAPPING_INVALID');
  });
});

describe('environment failures', () => {
  it('an unreadable path (symlink loop) and an unwritable directory are exit 3 with the path named', async () => {
    const { symlinkSync } = await import('node:fs');
    const loop = join(root, 'loop.json');
    symlinkSync(loop, loop);
    const r = await run('manifest', 'lint', loop);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('FILE_UNREADABLE');
    const notDir = join(root, 'plain-file');
    writeFileSync(notDir, 'x');
    const w = await run('keys', 'generate', '--dir', join(notDir, 'keys'));
    expect(w.code).toBe(3);
    expect(w.stderr).toContain('FILE_UNWRITABLE');
    expect(w.stderr).toContain(notDir);
  });

  it('a key name that could escape the key directory is refused', async () => {
    const r = await run('keys', 'generate', '--name', '../escape');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('KEY_NAME_INVALID');
  });

  it('revoking a key name that is not trusted says so', async () => {
    const r = await run(
      'revoke',
      'key',
      'nobody',
      '--reason',
      'test',
      '--key',
      join(policy, 'keys/org.key'),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('KEY_UNKNOWN');
  });
});

describe('commands are resolved through symlinks at load', () => {
  it('explain shows the declared and the real executable, and says when one is missing', async () => {
    const { symlinkSync, mkdirSync } = await import('node:fs');
    const bin = join(root, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'tool-1.2'), '#!/bin/sh\n');
    symlinkSync(join(bin, 'tool-1.2'), join(bin, 'tool'));
    const file = await newManifest('cmds');
    editManifest(file, (m) => {
      m['commandsAllowed'] = [join(bin, 'tool'), join(bin, 'absent')];
    });
    const r = await run('manifest', 'explain', file, '--json');
    expect(r.code, r.stderr).toBe(0);
    expect((r.json() as { run: string[] }).run).toEqual([
      `${join(bin, 'tool')} (-> ${join(bin, 'tool-1.2')}; both allowed)`,
      `${join(bin, 'absent')} (not found on this machine)`,
    ]);
  });
});

describe('admission settings', () => {
  it('guardrails/admission.json sets the maximum validity; a damaged file is refused', async () => {
    const file = await newManifest('adm', '--param', 'validityDays=120');
    expect((await run('manifest', 'lint', file)).code).toBe(0);
    writeFileSync(
      join(policy, 'guardrails', 'admission.json'),
      JSON.stringify({ maxValidityDays: 60 }),
    );
    const r = await run('manifest', 'lint', file, '--json');
    expect(r.code).toBe(1);
    expect((r.json() as { findings: { code: string }[] }).findings.map((f) => f.code)).toContain(
      'ADMIT_VALIDITY_MAX',
    );
    expect(
      (await run('manifest', 'sign', file, '--key', join(policy, 'keys/org.key'))).stderr,
    ).toContain('ADMIT_VALIDITY_MAX');
    writeFileSync(
      join(policy, 'guardrails', 'admission.json'),
      JSON.stringify({ maxValidityDays: 60, extra: 1 }),
    );
    const bad = await run('manifest', 'lint', file);
    expect(bad.stderr).toContain('CONFIG_INVALID');
  });
});
