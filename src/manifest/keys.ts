import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { CordonError } from '../errors.js';

export type KeyErrorCode =
  'KEY_CORRUPT' | 'KEY_NOT_ED25519' | 'KEY_PASSPHRASE_REQUIRED' | 'KEY_PASSPHRASE_WRONG';

/** Key id: lower-case hex SHA-256 of the public key's SPKI DER encoding. */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** A fresh Ed25519 key pair. */
export function generateSigningKey(): {
  privateKey: KeyObject;
  publicKey: KeyObject;
  keyId: string;
} {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) };
}

/** PKCS#8 PEM, encrypted with AES-256-CBC (PBES2, scrypt-free: OpenSSL defaults) when a passphrase is given. */
export function exportPrivateKeyPem(key: KeyObject, passphrase?: string): string {
  if (passphrase === undefined) return key.export({ type: 'pkcs8', format: 'pem' }).toString();
  return key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }).toString();
}

/** SPKI PEM of a public key (a private key is reduced to its public half). */
export function exportPublicKeyPem(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ type: 'spki', format: 'pem' }).toString();
}

function requireEd25519(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new CordonError(
      'KEY_NOT_ED25519',
      `${what} is a ${key.asymmetricKeyType ?? 'non-asymmetric'} key, not Ed25519`,
      {
        hint: 'generate a key with `cordon keys generate`',
      },
    );
  }
  return key;
}

/** Load a PKCS#8 PEM private key, decrypting it with `passphrase` when it is encrypted. */
export function loadPrivateKeyPem(pem: string | Buffer, passphrase?: string): KeyObject {
  const text = pem.toString();
  const encrypted = text.includes('BEGIN ENCRYPTED PRIVATE KEY');
  if (!encrypted && !text.includes('BEGIN PRIVATE KEY')) {
    throw new CordonError('KEY_CORRUPT', 'not a PKCS#8 PEM private key', {
      hint: 'point at the .key file written by `cordon keys generate`',
    });
  }
  if (encrypted && passphrase === undefined) {
    throw new CordonError('KEY_PASSPHRASE_REQUIRED', 'the private key is encrypted', {
      hint: 'pass --passphrase-file with the passphrase the key was generated with',
    });
  }
  try {
    return requireEd25519(
      createPrivateKey(
        encrypted
          ? { key: text, format: 'pem', passphrase: passphrase ?? '' }
          : { key: text, format: 'pem' },
      ),
      'the private key',
    );
  } catch (cause) {
    if (cause instanceof CordonError) throw cause;
    if (encrypted) {
      throw new CordonError(
        'KEY_PASSPHRASE_WRONG',
        'the passphrase does not decrypt the private key (or the file is damaged)',
        {
          hint: 'check the passphrase file; it must hold the passphrase the key was generated with',
          cause,
        },
      );
    }
    throw new CordonError('KEY_CORRUPT', 'the private key file is damaged', {
      hint: 'restore the key from backup or generate a new one',
      cause,
    });
  }
}

/** Load an SPKI PEM public key. */
export function loadPublicKeyPem(pem: string | Buffer): KeyObject {
  try {
    return requireEd25519(
      createPublicKey({ key: pem.toString(), format: 'pem' }),
      'the public key',
    );
  } catch (cause) {
    if (cause instanceof CordonError) throw cause;
    throw new CordonError('KEY_CORRUPT', 'not a valid SPKI PEM public key', {
      hint: 'use the .pub file written by `cordon keys generate`',
      cause,
    });
  }
}
