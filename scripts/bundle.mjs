// `npm run build` step: bundle the CLI into one CommonJS file (dist/cli/cordon.cjs) and write
// the `cordon` bin (dist/cli/bin.js, from src/cli/bin.ts) is a loader that runs the bundle with V8's code cache.
// Loading one file instead of a few hundred modules, compiled from a cache instead of from
// source, is what keeps `cordon run`'s start-up down. Cedar's wasm package loads its .wasm
// beside itself, so it stays external.
import { sep } from 'node:path';
import { build } from 'esbuild';

const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['@cedar-policy/cedar-wasm'],
  // import.meta.url in the sources names the module's own file; in the bundle, the bundle.
  define: { 'import.meta.url': '__cordonBundleUrl' },
  banner: { js: "const __cordonBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
  plugins: [
    {
      // zod re-exports every locale's messages (about 50) as `z.locales`; Cordon's messages are
      // its own and English. Only the English locale is kept, which zod installs by default.
      name: 'zod-english-only',
      setup(b) {
        b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
          args.importer.includes(`${sep}zod${sep}`)
            ? { path: 'zod-locales', namespace: 'zod-english-only' }
            : undefined,
        );
        b.onLoad({ filter: /.*/, namespace: 'zod-english-only' }, () => ({
          contents: "export { default as en } from 'zod/v4/locales/en.js';",
          resolveDir: process.cwd(),
        }));
      },
    },
  ],
};
await build({ ...common, entryPoints: ['dist/cli/main.js'], outfile: 'dist/cli/cordon.cjs' });
// `cordon run` alone: the bin runs an ordinary `cordon run` command line from this much smaller
// bundle (no commander, no policy engine, no proxy), and everything else from the whole CLI.
await build({
  ...common,
  entryPoints: ['dist/cli/run-entry.js'],
  outfile: 'dist/cli/cordon-run.cjs',
});

// The bin again as CommonJS (`bin.cjs`, the package's `cordon`): Node starts a CommonJS entry
// without its ES module loader, a few milliseconds of every command. `bin.js` stays for those
// who run it by that name.
await build({
  entryPoints: ['dist/cli/bin.js'],
  outfile: 'dist/cli/bin.cjs',
  bundle: false,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  define: common.define,
  banner: common.banner,
  logLevel: 'warning',
});

// Fill the code cache now, so the first real start is already fast.
const { spawnSync } = await import('node:child_process');
spawnSync(process.execPath, ['--no-turbo-inline-js-wasm-calls', 'dist/cli/bin.js', '--version'], {
  stdio: 'ignore',
});
