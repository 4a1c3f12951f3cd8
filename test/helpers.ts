import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { afterEach } from 'vitest';
import { CordonError } from '../src/errors.js';
import { canonicalBytes } from '../src/manifest/canonical.js';
import { signEnvelope, type Envelope } from '../src/manifest/dsse.js';
import { exportPublicKeyPem, generateSigningKey } from '../src/manifest/keys.js';
import {
  emptyRevocationList,
  signRevocationList,
  type RevocationList,
} from '../src/manifest/revocation.js';
import { validateManifest } from '../src/manifest/parse.js';
import {
  MANIFEST_PAYLOAD_TYPE,
  type Manifest,
  type ManifestInput,
} from '../src/manifest/schema.js';
import { loadTrustStore, type KeyPurpose, type TrustStore } from '../src/manifest/trust.js';

export const HOME = '/home/alice';
export const NOW = new Date('2026-11-23T12:00:00Z');

/** A valid, lint-clean manifest; override any field. */
export function manifest(over: Record<string, unknown> = {}): ManifestInput {
  return {
    apiVersion: 'cordon.dev/v1',
    agentName: 'cowork-lite',
    version: '1.0.0',
    role: 'finance-analyst',
    dataClassification: 'internal',
    owner: 'finance-it@example.com',
    description: 'Test agent',
    notAfter: '2027-06-30T00:00:00Z',
    readPaths: ['~/Work/Reports/**'],
    writePaths: ['~/Work/Reports/outgoing/**'],
    networkScopes: ['https://internal-api.corp.example.com'],
    apiScopes: ['sheets:read', 'sheets:write:restricted'],
    commandsAllowed: ['/usr/bin/pdftotext'],
    requiresApproval: ['sheets:write:restricted'],
    ...over,
  };
}

export interface TestKey {
  readonly name: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly keyId: string;
}

export function key(name: string): TestKey {
  return { name, ...generateSigningKey() };
}

export function trustStore(
  entries: { k: TestKey; purposes?: KeyPurpose[]; notBefore?: string; notAfter?: string }[],
  manifestThreshold = 1,
): TrustStore {
  return loadTrustStore(
    JSON.stringify({
      apiVersion: 'cordon.dev/v1',
      kind: 'TrustStore',
      manifestThreshold,
      keys: entries.map((e) => ({
        name: e.k.name,
        keyId: e.k.keyId,
        publicKey: exportPublicKeyPem(e.k.publicKey),
        purposes: e.purposes ?? ['manifest', 'revocation'],
        ...(e.notBefore === undefined ? {} : { notBefore: e.notBefore }),
        ...(e.notAfter === undefined ? {} : { notAfter: e.notAfter }),
      })),
    }),
  );
}

export function revocations(k: TestKey, change: Partial<RevocationList> = {}): string {
  return JSON.stringify(
    signRevocationList({ ...emptyRevocationList(NOW), ...change }, k.privateKey),
  );
}

/** Sign arbitrary JSON as a manifest payload (no validation: tests plant bad content this way). */
export function signRaw(value: unknown, ...keys: TestKey[]): Envelope {
  const payload = canonicalBytes(value);
  const [first, ...rest] = keys;
  if (first === undefined) throw new Error('need a key');
  const env = signEnvelope(MANIFEST_PAYLOAD_TYPE, payload, first.privateKey);
  for (const k of rest)
    env.signatures.push(signEnvelope(MANIFEST_PAYLOAD_TYPE, payload, k.privateKey).signatures[0]!);
  return env;
}

/** A parsed manifest from a minimal valid base plus `over` (throws on invalid input). */
export function validManifest(over: Record<string, unknown>): Manifest {
  const r = validateManifest({
    apiVersion: 'cordon.dev/v1',
    agentName: 'test-agent',
    version: '1.0.0',
    role: 'developer',
    dataClassification: 'internal',
    owner: 'o@example.com',
    notAfter: '2099-01-01T00:00:00Z',
    ...over,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.manifest;
}

/** The code of the CordonError `fn` throws, or 'OK' when it returns. */
export function errorCode(fn: () => unknown): string {
  try {
    fn();
    return 'OK';
  } catch (e) {
    if (e instanceof CordonError) return e.code;
    throw e;
  }
}

const dirs: string[] = [];
/** A temporary directory removed after the test. */
export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cordon-test-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
