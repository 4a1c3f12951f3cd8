import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  exportPrivateKeyPem,
  exportPublicKeyPem,
  generateSigningKey,
  keyIdOf,
  loadPrivateKeyPem,
  loadPublicKeyPem,
} from '../../src/manifest/keys.js';
import { loadTrustStore } from '../../src/manifest/trust.js';
import { errorCode, key } from '../helpers.js';

const code = errorCode;

describe('keys', () => {
  it('key id is the hex SHA-256 of the SPKI DER, same for both halves', () => {
    const { privateKey, publicKey, keyId } = generateSigningKey();
    expect(keyId).toMatch(/^[0-9a-f]{64}$/);
    expect(keyIdOf(privateKey)).toBe(keyId);
    expect(keyIdOf(loadPublicKeyPem(exportPublicKeyPem(publicKey)))).toBe(keyId);
  });

  it('round-trips encrypted and plain PKCS#8 PEM', () => {
    const { privateKey, keyId } = generateSigningKey();
    const enc = exportPrivateKeyPem(privateKey, 'correct horse battery');
    expect(enc).toContain('BEGIN ENCRYPTED PRIVATE KEY');
    expect(keyIdOf(loadPrivateKeyPem(enc, 'correct horse battery'))).toBe(keyId);
    expect(keyIdOf(loadPrivateKeyPem(exportPrivateKeyPem(privateKey)))).toBe(keyId);
  });

  it('a wrong passphrase, a missing passphrase, a corrupt file and a non-Ed25519 key are distinct errors', () => {
    const { privateKey } = generateSigningKey();
    const enc = exportPrivateKeyPem(privateKey, 'correct horse battery');
    expect(code(() => loadPrivateKeyPem(enc, 'wrong passphrase'))).toBe('KEY_PASSPHRASE_WRONG');
    expect(code(() => loadPrivateKeyPem(enc))).toBe('KEY_PASSPHRASE_REQUIRED');
    const plain = exportPrivateKeyPem(privateKey);
    const lines = plain.split('\n');
    const truncated = [lines[0], (lines[1] ?? '').slice(0, 20), ...lines.slice(2)].join('\n');
    expect(code(() => loadPrivateKeyPem(truncated))).toBe('KEY_CORRUPT');

    expect(code(() => loadPrivateKeyPem('not a key'))).toBe('KEY_CORRUPT');
    expect(
      code(() => loadPublicKeyPem('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')),
    ).toBe('KEY_CORRUPT');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(
      code(() =>
        loadPrivateKeyPem(rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()),
      ),
    ).toBe('KEY_NOT_ED25519');
    expect(
      code(() =>
        loadPublicKeyPem(rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString()),
      ),
    ).toBe('KEY_NOT_ED25519');
  });
});

describe('trust store', () => {
  const k = key('org');
  const entry = {
    name: 'org',
    keyId: k.keyId,
    publicKey: exportPublicKeyPem(k.publicKey),
    purposes: ['manifest'],
  };
  const doc = (keys: unknown[], extra: Record<string, unknown> = {}) =>
    JSON.stringify({ apiVersion: 'cordon.dev/v1', kind: 'TrustStore', keys, ...extra });

  it('loads a valid store', () => {
    const t = loadTrustStore(doc([entry]));
    expect(t.keys.get(k.keyId)?.name).toBe('org');
    expect(t.manifestThreshold).toBe(1);
  });

  it('rejects a key id that is not the key, duplicates, unknown fields, bad keys', () => {
    expect(code(() => loadTrustStore(doc([{ ...entry, keyId: key('x').keyId }])))).toBe(
      'TRUST_STORE_INVALID',
    );
    expect(code(() => loadTrustStore(doc([entry, { ...entry, name: 'again' }])))).toBe(
      'TRUST_STORE_INVALID',
    );
    expect(code(() => loadTrustStore(doc([{ ...entry, purpose: ['manifest'] }])))).toBe(
      'TRUST_STORE_INVALID',
    );
    expect(code(() => loadTrustStore(doc([{ ...entry, publicKey: 'garbage' }])))).toBe(
      'TRUST_STORE_INVALID',
    );
    expect(code(() => loadTrustStore(doc([entry], { manifestThreshold: 0 })))).toBe(
      'TRUST_STORE_INVALID',
    );
    expect(code(() => loadTrustStore('{"keys":[],"keys":[]}'))).toBe('TRUST_STORE_INVALID');
  });
});
