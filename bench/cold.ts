// Cold start to the first decision: module loading, manifest validation and compile, and with
// --guardrails the Cedar wasm instantiation and guardrail preparse. Prints two numbers in ms:
// from process start (including Node's own boot) and from this script's first line. Every
// Cordon module is imported dynamically, after the clock starts.
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const scriptStart = performance.now();
const withGuardrails = process.argv.includes('--guardrails');
const { benchManifest, HOME } = await import('./fixtures.js');
const { createPdp } = await import('../src/policy/pdp.js');
let guardrails;
if (withGuardrails) {
  const { loadGuardrails } = await import('../src/policy/guardrails.js');
  const dir = new URL('../../examples/guardrails/', import.meta.url);
  guardrails = loadGuardrails(
    readdirSync(dir).map((f) => ({ name: f, text: readFileSync(new URL(f, dir), 'utf8') })),
  );
}
const pdp = createPdp({
  manifest: benchManifest(50, 20, 20, 20),
  home: HOME,
  ...(guardrails === undefined ? {} : { guardrails }),
});
pdp.decide({ kind: 'file.read', path: `${HOME}/Work/project-0/src/a.ts` });
const now = performance.now();
process.stdout.write(`${now} ${now - scriptStart}`);
