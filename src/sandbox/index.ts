/**
 * The OS sandbox `cordon run` launches agents in: bubblewrap namespaces, Landlock and seccomp
 * through the cordon-sandbox helper, egress only through the governed proxy.
 */
export { runSession } from './launcher.js';
export type {
  SandboxErrorCode,
  SessionControl,
  SessionOptions,
  SessionResult,
} from './launcher.js';
export { checkSandboxSupport, helperPath, MIN_LANDLOCK_ABI } from './linux/doctor.js';
export type { LayerCheck, SandboxSupport } from './linux/doctor.js';
export { planSandbox, SANDBOX_PROXY_PORT } from './linux/plan.js';
export type { MountedGrant, SandboxLimits, SandboxPlan, SandboxPlanInput } from './linux/plan.js';
export type { SessionRecord } from './sessions.js';
