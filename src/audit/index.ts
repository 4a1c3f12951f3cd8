/**
 * `cordon/audit`: OCSF event builders, the chained log, checkpoints, verification and sinks.
 */
export {
  apiActivityEvent,
  dataSecurityFindingEvent,
  decisionEvent,
  detectionFindingEvent,
  fileActivityEvent,
  httpActivityEvent,
  logActivityEvent,
  manifestLifecycleEvent,
  networkActivityEvent,
  processActivityEvent,
  redactHeaders,
  redactUrl,
  tokenEvent,
  OCSF_VERSION,
  type AgentActor,
  type ControlOutcome,
  type DeviceInfo,
  type EventContext,
  type ManifestRef,
  type OcsfEvent,
} from './events.js';
export { ChainVerifier, type ChainReport, type Damage, type DamageKind } from './chain.js';
export { AuditLog, type AppendResult, type AuditLogOptions } from './log.js';
export { MerkleFrontier, leafHash, nodeHash } from './merkle.js';
export {
  checkpointText,
  openNote,
  parseCheckpointText,
  parseVerifierKey,
  signNote,
  verifierKey,
  type Checkpoint,
  type NoteVerifier,
} from './note.js';
export { encodeRecord, fromExported, scanRecord, toExported, type AuditRecord } from './record.js';
export { openDeviceLog, deviceVerifier } from './open.js';
export { parseAuditConfig, readAuditConfig, type AuditConfig, type SinkConfig } from './config.js';
export { Shipper, sinkStatus } from './sinks/runner.js';
export { verifyExported, verifyLog, type LogVerifyReport } from './verify.js';
export { syntheticEvents } from './synthetic.js';
