import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fileActivityEvent } from '../../src/audit/events.js';
import { AuditLog } from '../../src/audit/log.js';
import { buildExportProof } from '../../src/audit/proofs.js';
import { auditPaths } from '../../src/audit/store.js';
import { generateSigningKey } from '../../src/manifest/keys.js';
import { CordonError } from '../../src/errors.js';

// The ways the witness, export proofs and the native addon fail, each as a user meets it.
const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'dist', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'cordon-audit-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function home(name: string): { env: Record<string, string>; cordonHome: string } {
  const h = join(dir, name);
  mkdirSync(h);
  const cordonHome = join(h, '.cordon');
  return { env: { PATH: '/usr/bin:/bin', HOME: h, CORDON_HOME: cordonHome }, cordonHome };
}

function cordon(env: Record<string, string>, args: string[], bin = BIN) {
  return spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8' });
}

function witnessAt(cordonHome: string, path: string): void {
  writeFileSync(
    join(cordonHome, 'policy', 'audit.json'),
    JSON.stringify({ apiVersion: 'cordon.dev/v1', kind: 'AuditConfig', witness: { path } }),
  );
}

describe('audit failures a user can meet', () => {
  it('a witness the writer cannot append to is reported on stderr (AUDIT_WITNESS_FAILED), the log stays durable, and verify does not claim completeness', () => {
    expect(existsSync(BIN), 'npm run build first').toBe(true);
    // Preconditions: root to set the immutable attribute (which refuses appends even to root).
    expect(process.getuid?.(), 'runs as root (CI)').toBe(0);
    expect(existsSync('/usr/bin/chattr'), 'chattr (e2fsprogs)').toBe(true);
    const { env, cordonHome } = home('witness-failed');
    expect(cordon(env, ['init']).status).toBe(0);
    const witness = join(dir, 'immutable-witness.ndjson');
    writeFileSync(witness, '');
    const attr = spawnSync('chattr', ['+i', witness], { encoding: 'utf8' });
    expect(attr.status, attr.stderr).toBe(0);
    try {
      witnessAt(cordonHome, witness);
      const emit = cordon(env, ['audit', 'emit-test', '--count', '20']);
      expect(emit.status, emit.stderr).toBe(0);
      expect(emit.stderr).toContain('AUDIT_WITNESS_FAILED');
      expect(emit.stderr).toContain(witness);
      const verify = cordon(env, ['audit', 'verify', '--json']);
      const out = JSON.parse(verify.stdout) as { ok: boolean };
      // The witness holds nothing the log could be checked against: never "proven".
      expect(verify.status, verify.stdout).toBe(4);
      expect(out.ok).toBe(false);
    } finally {
      spawnSync('chattr', ['-i', witness]);
    }
  });

  it('a witness path that is not a readable file stops the writer (AUDIT_WITNESS_INVALID), not an internal error', () => {
    const { env, cordonHome } = home('witness-dir');
    expect(cordon(env, ['init']).status).toBe(0);
    const witness = join(dir, 'witness-is-a-dir');
    mkdirSync(witness);
    witnessAt(cordonHome, witness);
    const emit = cordon(env, ['audit', 'emit-test', '--count', '2', '--json']);
    expect(emit.status).not.toBe(0);
    expect(emit.status).not.toBe(70);
    expect(JSON.parse(emit.stdout)).toMatchObject({ ok: false, code: 'AUDIT_WITNESS_INVALID' });
  });

  it('a witness that is not a list of witnessed checkpoints is refused by verify (AUDIT_WITNESS_INVALID)', () => {
    const { env, cordonHome } = home('witness-invalid');
    expect(cordon(env, ['init']).status).toBe(0);
    expect(cordon(env, ['audit', 'emit-test', '--count', '5']).status).toBe(0);
    const witness = join(dir, 'garbage-witness.ndjson');
    writeFileSync(witness, '{"size":"many"}\n');
    witnessAt(cordonHome, witness);
    const verify = cordon(env, ['audit', 'verify', '--witness', witness, '--json']);
    expect(verify.status).not.toBe(0);
    const out = JSON.parse(verify.stdout) as { ok: boolean; code?: string; message?: string };
    expect(out.ok).toBe(false);
    expect(out.code).toBe('AUDIT_WITNESS_INVALID');
    expect(out.message).toContain(`${witness}:1`);
  });

  it('a proof file that holds no proof is refused (AUDIT_PROOF_INVALID)', () => {
    const { env } = home('proof-invalid');
    expect(cordon(env, ['init']).status).toBe(0);
    expect(cordon(env, ['audit', 'emit-test', '--count', '10']).status).toBe(0);
    const copy = join(dir, 'copy.ndjson');
    const exp = cordon(env, ['audit', 'export', '--format', 'ocsf-ndjson', '--out', copy]);
    expect(exp.status, exp.stderr).toBe(0);
    const bad = join(dir, 'not-a-proof.json');
    writeFileSync(bad, '{"hello":"world"}\n');
    const verify = cordon(env, ['audit', 'verify', '--exported', copy, '--proof', bad, '--json']);
    expect(verify.status).not.toBe(0);
    const out = JSON.parse(verify.stdout) as { ok: boolean; code?: string };
    expect(out).toMatchObject({ ok: false, code: 'AUDIT_PROOF_INVALID' });
  });

  it('records after the last signed checkpoint have no proof yet (AUDIT_PROOF_UNAVAILABLE)', async () => {
    const stateDir = join(dir, 'unavailable-state');
    mkdirSync(stateDir);
    const log = AuditLog.open({
      stateDir,
      deviceKey: generateSigningKey().privateKey,
      origin: 'cordon.audit/test/unavailable',
      context: {
        productVersion: 'test',
        device: { hostname: 'h', uid: 'u', osName: 'Linux' },
        actor: { name: 'test', pid: process.pid, processName: 'vitest' },
      },
      checkpointEvery: 1_000_000,
      checkpointIntervalMs: 3_600_000,
    });
    try {
      for (let i = 0; i < 3; i++)
        await log.append(
          fileActivityEvent(
            {
              productVersion: 'test',
              device: { hostname: 'h', uid: 'u', osName: 'Linux' },
              actor: { name: 'test', pid: process.pid, processName: 'vitest' },
              time: Date.now(),
            },
            { activity: 'read', path: `/w/${i}` },
          ),
        );
      let caught: unknown;
      try {
        buildExportProof(auditPaths(stateDir), 1, 3);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(CordonError);
      expect((caught as CordonError).code).toBe('AUDIT_PROOF_UNAVAILABLE');
    } finally {
      await log.close();
    }
  });

  it('an install whose native addon is missing refuses to write the log (NATIVE_UNAVAILABLE) and names the fix', () => {
    const copy = join(dir, 'pkg-no-addon');
    mkdirSync(copy);
    for (const f of ['dist', 'package.json'])
      cpSync(join(ROOT, f), join(copy, f), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
    const { env } = home('native-missing');
    const bin = join(copy, 'dist', 'cli', 'main.js');
    expect(cordon(env, ['init'], bin).status).toBe(0);
    const emit = cordon(env, ['audit', 'emit-test', '--count', '1', '--json'], bin);
    expect(emit.status).not.toBe(0);
    const out = JSON.parse(emit.stdout) as { ok: boolean; code?: string; hint?: string };
    expect(out).toMatchObject({ ok: false, code: 'NATIVE_UNAVAILABLE' });
    expect(JSON.stringify(out)).toContain('build-native');
    // Nothing was written without the lock.
    const segments = join(env.CORDON_HOME!, 'state', 'audit', 'segments');
    const written = existsSync(segments)
      ? readdirSync(segments).filter((f) => statSync(join(segments, f)).size > 0)
      : [];
    expect(written).toEqual([]);
  });
});
