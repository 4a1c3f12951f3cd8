// `npm run build` step: bundle the CLI into one file (dist/cli/cordon.mjs, the `cordon` bin).
// Loading one file instead of a few hundred modules halves the CLI's start-up, which every
// `cordon run` pays. Cedar's wasm package loads its .wasm beside itself, so it stays external.
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/cli/main.js'],
  outfile: 'dist/cli/cordon.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['@cedar-policy/cedar-wasm'],
  // CommonJS dependencies call require(); give the ES module bundle one.
  banner: {
    js: "import { createRequire as __cordonRequire } from 'node:module'; const require = __cordonRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
