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
