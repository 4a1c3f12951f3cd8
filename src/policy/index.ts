/** The policy decision point: decide() for every agent action, with organisation guardrails in Cedar. */
export { CEDAR_SCHEMA } from './cedar-schema.js';
export { compileManifest, type CompiledManifest, type CompileOptions } from './compile.js';
export {
  hostEntity,
  loadGuardrails,
  type GuardrailFile,
  type GuardrailPolicy,
  type Guardrails,
} from './guardrails.js';
export { classifyAddress, parseIpAny, type AddressClass, type IpAddress } from '../manifest/ip.js';
export { normaliseRequestPath, type PathProblem } from './paths.js';
export {
  createPdp,
  requestDigest,
  type GuardrailEvaluator,
  type Pdp,
  type PdpOptions,
  type RequestFacts,
} from './pdp.js';
export {
  caseRequest,
  PolicyTestFileSchema,
  runPolicyTests,
  type PolicyTestCase,
  type PolicyTestFile,
  type PolicyTestResult,
} from './policy-test.js';
export { manifestToCedar, type ToCedarOptions } from './to-cedar.js';
export type {
  ApprovalVerifier,
  Decision,
  DecisionCode,
  Effect,
  PathResolver,
  PolicyRequest,
  RequestKind,
} from './types.js';
