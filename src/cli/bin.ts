#!/usr/bin/env node
/**
 * The `cordon` command: runs the single-file CLI bundle (`cordon.cjs`, built by
 * `npm run build`) through V8's code cache, so a start-up compiles almost nothing. An ordinary
 * `cordon run` command line first goes to the smaller bundle of that verb alone
 * (`cordon-run.cjs`), which hands anything it does not recognise back to the whole CLI.
 *
 * Each cache (`<bundle>.cache`) is made on the machine that runs it: at `npm install` and after
 * a run where the package directory is writable. It is not shipped in the package, because V8
 * keeps the file name it was made under (stack traces would name the packing machine's files);
 * a cache made under another path, or rejected by V8 (another Node version or flags), is
 * ignored and replaced: it only ever saves time.
 */
import { createRequire } from 'node:module';
import type * as Fs from 'node:fs';
import type * as Path from 'node:path';
import type * as Url from 'node:url';
import type * as V8 from 'node:v8';
import type * as Vm from 'node:vm';

// Built-in modules through require: importing one as an ES module builds a facade of all its
// exports, and node:fs's include getters that load the stream modules (time every start pays).
const builtin = createRequire(import.meta.url);
const fs = builtin('node:fs') as typeof Fs;
const path = builtin('node:path') as typeof Path;
const { fileURLToPath } = builtin('node:url') as typeof Url;
const { Script } = builtin('node:vm') as typeof Vm;

/**
 * The whole CLI may evaluate Cedar, whose wasm calls crash Node 20's V8 on an inlining path:
 * inlining is turned off before that bundle loads (and its cache is made and checked under that
 * flag). `cordon run`'s own bundle never evaluates Cedar (the service does) and runs without
 * it: any flag off V8's defaults makes V8 reject Node's built-in code cache, and every built-in
 * module the process loads afterwards is compiled from source (about 10 ms of each start).
 */
function cedarSafeFlags(): void {
  (builtin('node:v8') as typeof V8).setFlagsFromString('--no-turbo-inline-js-wasm-calls');
}

const dir = path.dirname(fileURLToPath(import.meta.url));
// The kinds of cache (below): made by a run that used all of its bundle, or part of it.
const F = 0x46;
const P = 0x50;

/**
 * Run one bundle (CommonJS) from its code cache; returns its exports and a function that makes
 * the cache again when it is missing or rejected, or when it was made by a run that used only
 * part of the bundle (`complete` says whether this run used all of it: a `cordon run` that
 * failed early compiled little of the session's code).
 */
function load(
  name: string,
  complete: () => boolean = () => true,
): { exports: Record<string, unknown>; saveCache: () => void } {
  const file = path.join(dir, name);
  const cacheFile = `${file}.cache`;
  // The bundle keeps its entry's hashbang line; as a function body it must be a comment.
  const source = fs.readFileSync(file, 'utf8').replace(/^#!/, '//');
  // The cache starts with the bundle's path it was made for, then a NUL, then F (made by a run
  // that used all of the bundle) or P (part of it), then V8's data.
  const header = Buffer.from(`${file}\0`);
  let cachedData: Buffer | undefined;
  let partial = false;
  try {
    const raw = fs.readFileSync(cacheFile);
    const kind = raw[header.length];
    if (raw.subarray(0, header.length).equals(header) && (kind === F || kind === P)) {
      cachedData = raw.subarray(header.length + 1);
      partial = kind === P;
    }
  } catch {
    cachedData = undefined;
  }
  const wrapped = `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
  const script = new Script(wrapped, {
    filename: file,
    ...(cachedData === undefined ? {} : { cachedData }),
  });
  const module = { exports: {} as Record<string, unknown> };
  (script.runInThisContext() as (...a: unknown[]) => void)(
    module.exports,
    createRequire(file),
    module,
    file,
    dir,
  );
  const saveCache = (): void => {
    const full = complete();
    if (cachedData !== undefined && script.cachedDataRejected !== true && !(partial && full))
      return;
    // After the run, the cache also holds the functions this run compiled.
    try {
      const tmp = `${cacheFile}.${process.pid}`;
      fs.writeFileSync(
        tmp,
        Buffer.concat([header, Buffer.of(full ? F : P), script.createCachedData()]),
      );
      fs.renameSync(tmp, cacheFile);
    } catch {
      // a read-only install: every start compiles from source
    }
  };
  return { exports: module.exports, saveCache };
}

/** Whether the verb is `run` (past the program's own options, each with its value). */
function isRun(argv: readonly string[]): boolean {
  let i = 0;
  while (argv[i] === '--policy-dir' || argv[i] === '--state-dir') i += 2;
  return argv[i] === 'run';
}

/** `cordon run` from its own bundle when it can, else the whole CLI. */
async function start(argv: readonly string[]): Promise<void> {
  if (isRun(argv)) {
    const run = load('cordon-run.cjs', () => (run.exports['sessionRan'] as () => boolean)());
    const fast = await (
      run.exports['runEntry'] as (a: readonly string[]) => Promise<number | undefined>
    )(argv);
    if (fast !== undefined) {
      run.saveCache();
      // The session is over and closed, everything it recorded acknowledged, and the standard
      // streams are written synchronously: what is left is tearing down the heap, which
      // exiting now skips (a few milliseconds of every `cordon run`).
      process.exit(fast);
    }
    // Its cache is made now, under the flags it was loaded with.
    run.saveCache();
  }
  cedarSafeFlags();
  // The whole CLI runs itself when loaded as the `cordon` bin's bundle.
  process.once('beforeExit', load('cordon.cjs').saveCache);
}

// No top-level await: the same file also runs as CommonJS (`bin.cjs`, below).
void start(process.argv.slice(2));
