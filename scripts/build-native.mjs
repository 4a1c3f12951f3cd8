// npm install hook: build native/cordon-sandbox.c (the sandbox helper) and native/cordon-native.c
// (the Node-API addon: the audit log's writer lock, a socket's peer credentials) with node-gyp
// (the copy npm ships). Node's own headers are used when they are on the machine, so nothing is
// downloaded.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

if (process.platform !== 'linux') {
  console.error(
    'cordon: the sandbox helper is built on Linux only; `cordon run` is unavailable here',
  );
  process.exit(0);
}
const require = createRequire(import.meta.url);
const candidates = [
  process.env.npm_config_node_gyp,
  join(
    dirname(process.execPath),
    '..',
    'lib',
    'node_modules',
    'npm',
    'node_modules',
    'node-gyp',
    'bin',
    'node-gyp.js',
  ),
];
try {
  candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
} catch {
  // not installed as a package; npm's own copy is used
}
const gyp = candidates.find((p) => p !== undefined && existsSync(p));
if (gyp === undefined) {
  console.error(
    'cordon: node-gyp not found; install npm (it ships node-gyp) or `npm i -g node-gyp`',
  );
  process.exit(1);
}
const args = [gyp, 'rebuild', '--loglevel=warn'];
if (!process.env.npm_config_nodedir) {
  const prefix = join(dirname(process.execPath), '..');
  for (const dir of [prefix, '/usr', '/usr/local']) {
    if (existsSync(join(dir, 'include', 'node', 'common.gypi'))) {
      args.push(`--nodedir=${dir}`);
      break;
    }
  }
}
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
// An installed package ships dist/: fill the CLI's code cache for this Node version.
if (r.status === 0 && existsSync('dist/cli/bin.js'))
  spawnSync(process.execPath, ['dist/cli/bin.js', '--version'], { stdio: 'ignore' });
process.exit(r.status ?? 1);
