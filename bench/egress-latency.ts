// `node dist-bench/bench/egress-latency.js [rounds]`: latency of small plain-HTTP keep-alive
// requests through the proxy, with its audit log on the state directory's disk (each request's
// decision is made durable before it is forwarded, so this is what one fsync costs here), beside
// the same requests sent directly. Smaller and quicker than egress-only (no 1 GiB transfers, no
// soak).
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuditLog } from '../src/audit/log.js';
import { EgressProxy } from '../src/egress/proxy.js';
import { staticResolver } from '../src/egress/resolver.js';
import { validateManifest } from '../src/manifest/parse.js';
import { createPdp } from '../src/policy/pdp.js';
import { makeCerts } from '../test/tls-certs.js';

const child = fileURLToPath(new URL('./egress-child.js', import.meta.url));
const pct = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? 0;

function run(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env,
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`child ${args[0] ?? ''} exited ${code}`)),
    );
  });
}

const rounds = Number(process.argv[2] ?? '3');
const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-latency-'));
const certs = makeCerts(dir, 'DNS:secure.test');
const server = await new Promise<{ p: ChildProcess; port: number }>((resolve, reject) => {
  const p = spawn(process.execPath, [child, 'server'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, BENCH_CERT: certs.cert, BENCH_KEY: certs.key },
  });
  let out = '';
  p.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    const m = /^(\d+) (\d+)\n/.exec(out);
    if (m !== null) resolve({ p, port: Number(m[1]) });
  });
  p.on('exit', (code) => reject(new Error(`server exited ${code}`)));
});
const m = validateManifest({
  apiVersion: 'cordon.dev/v1',
  agentName: 'bench-agent',
  version: '1.0.0',
  role: 'bench',
  dataClassification: 'internal',
  owner: 'bench@example.com',
  description: 'egress latency benchmark',
  notAfter: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
  readPaths: [],
  writePaths: [],
  networkScopes: [`http://app.test:${server.port}`, `http://127.0.0.1:${server.port}`],
  apiScopes: [],
  commandsAllowed: [],
  requiresApproval: [],
});
if (!m.ok) throw new Error('bench manifest invalid');
const context = {
  productVersion: '0.1.0',
  device: { hostname: 'bench', uid: '0d2e3f4a5b6c7d8e', osName: 'Linux' },
  actor: { name: 'bench-agent', pid: process.pid, processName: 'cordon' },
};
const log = AuditLog.open({
  stateDir: join(dir, 'state'),
  deviceKey: generateKeyPairSync('ed25519').privateKey,
  origin: 'cordon.audit/bench/0d2e3f4a5b6c7d8e',
  context,
});
const proxy = await EgressProxy.start(
  {
    pdp: createPdp({ manifest: m.manifest, home: '/home/bench' }),
    manifest: { agent: 'bench-agent', version: '1.0.0', digest: `sha256:${'0'.repeat(64)}` },
    audit: log,
    context,
    resolver: staticResolver({ 'app.test': ['127.0.0.1'] }),
  },
  { host: '127.0.0.1', port: 0 },
);
const direct: number[] = [];
const proxied: number[] = [];
const sync: number[] = [];
try {
  for (let r = 0; r < rounds; r++) {
    direct.push(
      ...(JSON.parse(await run(['latency', String(server.port), '-', '2000'])) as number[]),
    );
    proxied.push(
      ...(JSON.parse(
        await run(['latency', String(server.port), String(proxy.port), '2000']),
      ) as number[]),
    );
  }
} finally {
  // One small append + fdatasync on the same disk: the floor of a durable decision.
  const fd = openSync(join(dir, 'state', 'sync-probe'), 'w');
  for (let i = 0; i < 1000; i++) {
    const t = process.hrtime.bigint();
    writeSync(fd, Buffer.alloc(400, 0x61));
    fdatasyncSync(fd);
    sync.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  closeSync(fd);
  await proxy.close();
  await log.close();
  server.p.kill();
  rmSync(dir, { recursive: true, force: true });
}
const f = (n: number): string => n.toFixed(0).padStart(6);
console.log(`small GET with keep-alive, ${rounds * 2000} sequential requests each way (µs)`);
console.log(`  through the proxy p50 ${f(pct(proxied, 0.5))}  p99 ${f(pct(proxied, 0.99))}`);
console.log(`  baseline: direct  p50 ${f(pct(direct, 0.5))}  p99 ${f(pct(direct, 0.99))}`);
console.log(`  one write + fdatasync p50 ${f(pct(sync, 0.5))}  p99 ${f(pct(sync, 0.99))}`);
console.log(`  added p50 ${f(pct(proxied, 0.5) - pct(direct, 0.5))}`);
console.log(`  audit writes ${log.stats.writes}, records ${log.stats.records}`);
