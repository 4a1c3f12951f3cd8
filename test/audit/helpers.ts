import { generateKeyPairSync } from 'node:crypto';
import { AuditLog, type AuditLogOptions } from '../../src/audit/log.js';
import { parseVerifierKey, verifierKey } from '../../src/audit/note.js';
import { ctx } from './samples.js';

export const deviceKey = generateKeyPairSync('ed25519').privateKey;
export const ORIGIN = 'cordon.audit/test-host/0123456789abcdef';
export const verifier = parseVerifierKey(verifierKey(ORIGIN, deviceKey));

export function openLog(stateDir: string, extra: Partial<AuditLogOptions> = {}): AuditLog {
  return AuditLog.open({ stateDir, deviceKey, origin: ORIGIN, context: ctx, ...extra });
}

/** Reads a child's output line by line: each call resolves with the next line. */
export function lineReader(stream: NodeJS.ReadableStream): () => Promise<string> {
  const lines: string[] = [];
  const waiting: ((l: string) => void)[] = [];
  let buf = '';
  stream.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    for (const l of parts) {
      const w = waiting.shift();
      if (w === undefined) lines.push(l);
      else w(l);
    }
  });
  return () => {
    const l = lines.shift();
    return l === undefined ? new Promise((r) => waiting.push(r)) : Promise.resolve(l);
  };
}
