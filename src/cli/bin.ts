#!/usr/bin/env -S node --no-turbo-inline-js-wasm-calls
/**
 * The `cordon` command: runs the single-file CLI bundle (`cordon.cjs`, built by
 * `npm run build`) through V8's code cache, so a start-up compiles almost nothing. The cache
 * (`cordon.cjs.cache`) is made on the machine that runs it: at `npm install` and after a run
 * where the package directory is writable. It is not shipped in the package, because V8 keeps
 * the file name it was made under (stack traces would name the packing machine's files); a
 * cache made under another path, or rejected by V8 (another Node version or flags), is ignored
 * and replaced: it only ever saves time.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { Script } from 'node:vm';

// The same V8 flags however the bin is started (a cache made under other flags is rejected);
// this one also keeps Cedar's wasm calls out of an inlining path that crashed.
setFlagsFromString('--no-turbo-inline-js-wasm-calls');

const dir = dirname(fileURLToPath(import.meta.url));
const file = join(dir, 'cordon.cjs');
const cacheFile = `${file}.cache`;
// The bundle keeps main.ts's hashbang line; as a function body it must be a comment.
const source = readFileSync(file, 'utf8').replace(/^#!/, '//');
// The cache starts with the bundle's path it was made for, then a NUL, then V8's data.
const header = Buffer.from(`${file}\0`);
let cachedData: Buffer | undefined;
try {
  const raw = readFileSync(cacheFile);
  cachedData = raw.subarray(0, header.length).equals(header)
    ? raw.subarray(header.length)
    : undefined;
} catch {
  cachedData = undefined;
}
const wrapped = `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
const script = new Script(wrapped, {
  filename: file,
  ...(cachedData === undefined ? {} : { cachedData }),
});
const module = { exports: {} };
(script.runInThisContext() as (...a: unknown[]) => void)(
  module.exports,
  createRequire(file),
  module,
  file,
  dir,
);
if (cachedData === undefined || script.cachedDataRejected === true) {
  // After the run, the cache also holds the functions this run compiled.
  process.once('beforeExit', () => {
    try {
      const tmp = `${cacheFile}.${process.pid}`;
      writeFileSync(tmp, Buffer.concat([header, script.createCachedData()]));
      renameSync(tmp, cacheFile);
    } catch {
      // a read-only install: every start compiles from source
    }
  });
}
