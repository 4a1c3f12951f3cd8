import type { KeyObject } from 'node:crypto';
import { hostname } from 'node:os';
import { keyIdOf } from '../manifest/keys.js';
import { loadPublicKeyPem } from '../manifest/keys.js';
import { ensureDeviceKey, policyPaths } from '../store/policy-dir.js';
import { readFileIfExists } from '../store/files.js';
import type { EventContext } from './events.js';
import { processContext } from './process-context.js';
import type { CordonError } from '../errors.js';
import { AuditLog, type AuditLogOptions } from './log.js';
import { recoverOpenSpans, type SpanRecovery } from './open-spans.js';
import { parseVerifierKey, verifierKey, type NoteVerifier } from './note.js';
import { readAuditConfig, type AuditConfig } from './config.js';

/** The checkpoint origin (and signer name) for this device's log. */
export function logOrigin(deviceKeyId: string): string {
  const host = hostname().replace(/[^A-Za-z0-9.-]/g, '-') || 'host';
  return `cordon.audit/${host}/${deviceKeyId.slice(0, 16)}`;
}

export { processContext };

export interface OpenedLog {
  readonly log: AuditLog;
  readonly config: AuditConfig;
  readonly context: EventContext;
  readonly verifierKey: string;
  /** Exchanges and tunnels a crashed writer left open, ended as ENDED_BY_CRASH on open. */
  readonly spans: SpanRecovery;
}

/**
 * Open this device's audit log with the settings in `<policyDir>/audit.json` and the device key,
 * created on first use, and end what a crashed writer left open (see open-spans.ts).
 */
export function openDeviceLog(
  dirs: {
    policyDir: string;
    stateDir: string;
    /** Where the device key lives (default the policy directory; the system service's state). */
    deviceKeyDir?: string;
  },
  extra: Partial<AuditLogOptions> = {},
): OpenedLog {
  // Write failures reach the caller through the rejected append; a witness that cannot be
  // appended to reaches nobody that way (the log itself stays durable), so it is reported here.
  const onError =
    extra.onError ??
    ((e: CordonError): void => {
      if (e.code === 'AUDIT_WITNESS_FAILED')
        process.stderr.write(`cordon: ${e.code}: ${e.message}\n`);
    });
  const config = readAuditConfig(dirs.policyDir);
  const device = ensureDeviceKey(dirs.deviceKeyDir ?? dirs.policyDir);
  const origin = logOrigin(device.keyId);
  const context = processContext(device.keyId);
  const log = AuditLog.open({
    stateDir: dirs.stateDir,
    deviceKey: device.key,
    origin,
    context,
    checkpointEvery: config.checkpoint.everyRecords,
    checkpointIntervalMs: config.checkpoint.everySeconds * 1000,
    segmentMaxBytes: config.segment.maxBytes,
    segmentMaxAgeMs: config.segment.maxAgeSeconds * 1000,
    ...(config.witness === undefined ? {} : { witness: config.witness.path }),
    ...extra,
    onError,
  });
  const spans = recoverOpenSpans(log, context);
  return { log, config, context, verifierKey: verifierKey(origin, device.key), spans };
}

/** The verifier for this device's checkpoints, from its public key (no private key needed). */
export function deviceVerifier(policyDir: string): NoteVerifier | undefined {
  const pem = readFileIfExists(policyPaths(policyDir).devicePub, 64 * 1024);
  if (pem === undefined) return undefined;
  const pub: KeyObject = loadPublicKeyPem(pem);
  return parseVerifierKey(verifierKey(logOrigin(keyIdOf(pub)), pub));
}
