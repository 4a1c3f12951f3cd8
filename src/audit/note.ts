import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { CordonError } from '../errors.js';

/**
 * C2SP signed notes (https://c2sp.org/signed-note), the format transparency logs use for
 * checkpoints: UTF-8 text ending in a newline, a blank line, then one signature line per signer,
 * `— <key name> <base64(key id || Ed25519 signature)>`. The signature covers the text including
 * its final newline. Only Ed25519 (signature type 0x01) is produced or accepted.
 */
export type NoteErrorCode = 'NOTE_MALFORMED' | 'NOTE_UNSIGNED' | 'NOTE_SIGNATURE_INVALID';

const ED25519 = 0x01;
const SIG_PREFIX = '\u2014 ';
/** The fixed 12-byte DER prefix of an Ed25519 SubjectPublicKeyInfo. */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const MAX_NOTE_BYTES = 1024 * 1024;

function malformed(message: string): CordonError {
  return new CordonError('NOTE_MALFORMED', message, {
    hint: 'a signed note is text ending in a newline, a blank line, then "— name base64" lines',
  });
}

/** The raw 32-byte Ed25519 public key. */
export function rawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const der = pub.export({ type: 'spki', format: 'der' });
  if (!der.subarray(0, 12).equals(SPKI_ED25519_PREFIX) || der.length !== 44) {
    throw new CordonError('KEY_NOT_ED25519', 'signed notes need an Ed25519 key', {
      hint: 'use the device key written by `cordon init`',
    });
  }
  return der.subarray(12);
}

function checkName(name: string): void {
  if (name === '' || /[\s+]/u.test(name)) {
    throw malformed(`key name ${JSON.stringify(name)} must be non-empty, without spaces or "+"`);
  }
}

/** key id = SHA-256(name || 0x0A || 0x01 || public key)[:4] */
export function noteKeyId(name: string, publicKey: KeyObject): Buffer {
  return createHash('sha256')
    .update(name, 'utf8')
    .update(Buffer.from([0x0a, ED25519]))
    .update(rawPublicKey(publicKey))
    .digest()
    .subarray(0, 4);
}

/** A verifier key as text: `name+hex(key id)+base64(0x01 || public key)`. */
export function verifierKey(name: string, publicKey: KeyObject): string {
  checkName(name);
  const body = Buffer.concat([Buffer.from([ED25519]), rawPublicKey(publicKey)]);
  return `${name}+${noteKeyId(name, publicKey).toString('hex')}+${body.toString('base64')}`;
}

export interface NoteVerifier {
  readonly name: string;
  readonly keyId: Buffer;
  readonly publicKey: KeyObject;
}

/** Parse a `name+hex+base64` verifier key, checking that the key id matches the key. */
export function parseVerifierKey(vkey: string): NoteVerifier {
  // The base64 key may itself contain "+": split at the first two only.
  const m = /^([^+]+)\+([^+]*)\+(.+)$/.exec(vkey.trim());
  if (m === null) throw malformed('a verifier key is name+keyid+key');
  const [, name, hex, b64] = m as unknown as [string, string, string, string];
  checkName(name);
  const body = Buffer.from(b64, 'base64');
  if (!/^[0-9a-f]{8}$/.test(hex) || body.length !== 33 || body[0] !== ED25519) {
    throw malformed('verifier key is not an Ed25519 (type 0x01) key');
  }
  const publicKey = createPublicKey({
    key: Buffer.concat([SPKI_ED25519_PREFIX, body.subarray(1)]),
    format: 'der',
    type: 'spki',
  });
  const keyId = noteKeyId(name, publicKey);
  if (keyId.toString('hex') !== hex) throw malformed('verifier key id does not match its key');
  return { name, keyId, publicKey };
}

function checkText(text: string): void {
  if (text === '' || !text.endsWith('\n')) throw malformed('note text must end with a newline');
  if (text.includes('\n\n')) throw malformed('note text must not contain a blank line');
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text))
    throw malformed('note text has control characters');
}

/** Sign `text` (which must end in a newline) as `name`. */
export function signNote(text: string, name: string, privateKey: KeyObject): string {
  checkName(name);
  checkText(text);
  const sig = sign(null, Buffer.from(text, 'utf8'), privateKey);
  const blob = Buffer.concat([noteKeyId(name, privateKey), sig]).toString('base64');
  return `${text}\n${SIG_PREFIX}${name} ${blob}\n`;
}

export interface OpenedNote {
  readonly text: string;
  /** Signer names whose signatures verified. */
  readonly verifiedBy: readonly string[];
}

/**
 * Check a signed note against known verifiers. Lines from unknown keys are ignored (the spec
 * allows co-signers such as witnesses); a bad signature from a known key rejects the note, and
 * so does a note no known key signed.
 */
export function openNote(note: string, verifiers: readonly NoteVerifier[]): OpenedNote {
  if (Buffer.byteLength(note) > MAX_NOTE_BYTES) throw malformed('note larger than 1 MiB');
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw malformed('note has no signature block');
  const text = note.slice(0, split + 1);
  checkText(text);
  const lines = note.slice(split + 2, -1).split('\n');
  if (lines.length > 100) throw malformed('note has more than 100 signatures');
  const verifiedBy: string[] = [];
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX)) throw malformed(`signature line ${JSON.stringify(line)}`);
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.lastIndexOf(' ');
    if (space <= 0) throw malformed(`signature line ${JSON.stringify(line)}`);
    const name = rest.slice(0, space);
    const blob = Buffer.from(rest.slice(space + 1), 'base64');
    if (blob.length < 5 || blob.toString('base64') !== rest.slice(space + 1)) {
      throw malformed(`signature line ${JSON.stringify(line)} is not base64`);
    }
    const id = blob.subarray(0, 4);
    const v = verifiers.find((k) => k.name === name && k.keyId.equals(id));
    if (v === undefined) continue;
    const ok =
      blob.length === 68 && verify(null, Buffer.from(text, 'utf8'), v.publicKey, blob.subarray(4));
    if (!ok) {
      throw new CordonError('NOTE_SIGNATURE_INVALID', `the signature by ${name} does not verify`, {
        hint: 'the note was altered after signing, or signed by another key with the same name',
      });
    }
    if (!verifiedBy.includes(name)) verifiedBy.push(name);
  }
  if (verifiedBy.length === 0) {
    throw new CordonError('NOTE_UNSIGNED', 'no signature on this note is from a known key', {
      hint: 'pass the device verifier key shown by `cordon audit status`',
    });
  }
  return { text, verifiedBy };
}

/** A transparency-log checkpoint (C2SP tlog-checkpoint) plus Cordon's extension lines. */
export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  /** Merkle root over record hashes, 32 bytes. */
  readonly root: Buffer;
  /** SHA-256 of the previous signed checkpoint note, or undefined for the first. */
  readonly prev: Buffer | undefined;
  /** Seconds since the epoch when the checkpoint was made. */
  readonly time: number;
}

export function checkpointText(c: Checkpoint): string {
  const lines = [c.origin, String(c.size), c.root.toString('base64')];
  if (c.prev !== undefined) lines.push(`prev ${c.prev.toString('base64')}`);
  lines.push(`time ${c.time}`);
  return lines.join('\n') + '\n';
}

export function parseCheckpointText(text: string): Checkpoint {
  const lines = text.slice(0, -1).split('\n');
  const [origin, size, root, ...ext] = lines;
  if (origin === undefined || origin === '' || size === undefined || root === undefined) {
    throw malformed('a checkpoint needs origin, size and root lines');
  }
  if (!/^(0|[1-9][0-9]{0,15})$/.test(size)) throw malformed(`checkpoint size ${size}`);
  const rootBytes = Buffer.from(root, 'base64');
  if (rootBytes.length !== 32 || rootBytes.toString('base64') !== root) {
    throw malformed('checkpoint root is not a base64 SHA-256 hash');
  }
  let prev: Buffer | undefined;
  let time = 0;
  for (const line of ext) {
    const [key, value = ''] = line.split(' ', 2);
    if (key === 'prev') {
      prev = Buffer.from(value, 'base64');
      if (prev.length !== 32) throw malformed('checkpoint prev is not a SHA-256 hash');
    } else if (key === 'time' && /^[0-9]{1,12}$/.test(value)) time = Number(value);
  }
  return { origin, size: Number(size), root: rootBytes, prev, time };
}

/** SHA-256 of a whole signed note, which the next checkpoint names as `prev`. */
export function noteHash(note: string): Buffer {
  return createHash('sha256').update(note, 'utf8').digest();
}
