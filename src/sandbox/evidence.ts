import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { readAfter } from '../audit/reader.js';
import { auditPaths } from '../audit/store.js';
import type { ProcessInfo } from './linux/procfs.js';
import { envelopeDigest, type SessionRecord } from './sessions.js';

export interface EvidenceInput {
  readonly session: SessionRecord;
  readonly stateDir: string;
  readonly processes: readonly ProcessInfo[];
  readonly connections: readonly { local: string; remote: string; state: string }[];
  readonly quarantinedAt: string;
  readonly containmentMs: number;
  readonly outDir: string;
  /** The manifest bytes the session was verified and enforced with. */
  readonly manifest?: Buffer;
}

export interface EvidenceBundle {
  readonly path: string;
  readonly sha256: string;
  readonly records: number;
  readonly sessionEvents: number;
  /** What the bundle could not include as it should, for the responder. */
  readonly warnings: readonly string[];
}

// ustar, as POSIX.1-1988 defines it: 512-byte headers, octal fields, space-filled checksum.
function tarHeader(name: string, size: number, mtime: number): Buffer {
  const h = Buffer.alloc(512);
  const put = (text: string, off: number, len: number): void => {
    h.write(text.slice(0, len), off, len, 'latin1');
  };
  const octal = (n: number, len: number): string => n.toString(8).padStart(len - 1, '0') + '\0';
  put(name, 0, 100);
  put(octal(0o600, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(size, 12), 124, 12);
  put(octal(mtime, 12), 136, 12);
  put('        ', 148, 8);
  put('0', 156, 1);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  let sum = 0;
  for (const b of h) sum += b;
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
  return h;
}

/** A gzip-compressed ustar archive of these files. */
export function tarGz(files: readonly (readonly [string, Buffer])[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  for (const [name, data] of files) {
    parts.push(tarHeader(name, data.length, mtime), data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad > 0) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(parts));
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Package what a responder needs after a quarantine: the audit records from the session's
 * start to now, verbatim (each carries seq, the previous record's hash and its own: a
 * contiguous slice of the hash chain), the last signed checkpoint, the manifest, and the
 * processes and connections at the moment of containment, with a SHA-256 manifest of it all.
 */
export function writeEvidenceBundle(e: EvidenceInput): EvidenceBundle {
  const p = auditPaths(e.stateDir);
  const lines: Buffer[] = [];
  let sessionEvents = 0;
  readAfter(p, Math.max(0, (e.session.auditSeqAtStart ?? 1) - 1), (line) => {
    lines.push(Buffer.from(line));
    if (line.includes(e.session.id)) sessionEvents++;
    return true;
  });
  // The manifest the session verified: the copy kept at launch, else the file at its path only
  // if it still has the session's digest (it may lie in a write grant and have been rewritten).
  const warnings: string[] = [];
  const digest = e.session.manifestDigest;
  let manifest: Buffer | undefined =
    e.manifest !== undefined && envelopeDigest(e.manifest) === digest ? e.manifest : undefined;
  if (manifest === undefined) {
    try {
      const found = readFileSync(e.session.manifestPath);
      if (envelopeDigest(found) === digest) manifest = found;
      else
        warnings.push(
          `${e.session.manifestPath} no longer has the session's digest ${digest} (${envelopeDigest(found) ?? 'not a signed manifest'}): it was changed after launch and is not included`,
        );
    } catch (err) {
      warnings.push(`${e.session.manifestPath}: ${(err as Error).message}`);
    }
  }
  let checkpoint: Buffer;
  try {
    checkpoint = readFileSync(p.checkpoint);
  } catch {
    checkpoint = Buffer.from('{}\n');
  }
  const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v, null, 2) + '\n');
  const files: [string, Buffer][] = [
    [
      'session.json',
      json({
        ...e.session,
        quarantinedAt: e.quarantinedAt,
        containmentMs: e.containmentMs,
      }),
    ],
    manifest === undefined
      ? ['manifest.MISSING.txt', Buffer.from(warnings.join('\n') + '\n')]
      : ['manifest.signed.json', manifest],
    ['processes.json', json(e.processes)],
    ['connections.json', json(e.connections)],
    ['audit-records.ndjson', Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')]))],
    ['audit-checkpoint.json', checkpoint],
  ];
  const sums = files.map(([name, data]) => `${sha256(data)}  ${name}\n`).join('');
  files.push(['SHA256SUMS', Buffer.from(sums)]);
  const archive = tarGz(files, Math.floor(Date.parse(e.quarantinedAt) / 1000));
  mkdirSync(e.outDir, { recursive: true, mode: 0o700 });
  const path = join(
    e.outDir,
    `evidence-${e.session.id}-${e.quarantinedAt.replace(/[:.]/g, '')}.tar.gz`,
  );
  writeFileSync(path, archive, { mode: 0o600, flag: 'wx' });
  return { path, sha256: sha256(archive), records: lines.length, sessionEvents, warnings };
}
