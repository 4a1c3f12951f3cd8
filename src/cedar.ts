import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import type * as CedarWasm from '@cedar-policy/cedar-wasm/nodejs';

// Loading Cedar's wasm engine and configuring V8 for it are process-wide effects, kept out of
// the guardrails engine (a core module) so that it stays free of process and I/O built-ins.

// Node 20's V8 can crash inside JS-to-wasm call inlining; every process that evaluates Cedar
// must run with inlining off. The cordon bin sets it before it loads the full CLI (`cordon run`'s
// own bundle holds no Cedar and runs without it); this covers every other process that loads
// Cedar, library users among them (it takes effect for code not yet optimised).
setFlagsFromString('--no-turbo-inline-js-wasm-calls');

let cedarModule: typeof CedarWasm | undefined;

/**
 * Cedar's wasm engine, compiled on first use: a process whose policy directory has no
 * guardrails (and every `cordon run` start-up until it needs one) does not pay for it.
 */
export function cedarEngine(): typeof CedarWasm {
  cedarModule ??= createRequire(import.meta.url)(
    '@cedar-policy/cedar-wasm/nodejs',
  ) as typeof CedarWasm;
  return cedarModule;
}
