// Egress proxy benchmarks, each beside a direct baseline measured in the same run: 1 GiB
// downloads and uploads with curl (plain HTTP and HTTPS through CONNECT), added latency of small
// keep-alive requests, and 1,000 keep-alive connections held for a minute (errors and RSS).
// The upstream server and the clients run in their own processes; the proxy runs here, writing
// its audit events to a real log.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import {
  closeSync,
  fdatasyncSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuditLog } from '../src/audit/log.js';
import type { EventContext } from '../src/audit/events.js';
import { EgressProxy } from '../src/egress/proxy.js';
import { staticResolver } from '../src/egress/resolver.js';
import { validateManifest } from '../src/manifest/parse.js';
import { createPdp } from '../src/policy/pdp.js';
import { makeCerts } from '../test/tls-certs.js';

const GIB = 1024 * 1024 * 1024;
const child = fileURLToPath(new URL('./egress-child.js', import.meta.url));
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const pct = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? 0;

const ctx: EventContext = {
  productVersion: '0.1.0',
  device: { hostname: 'bench', uid: '0d2e3f4a5b6c7d8e', osName: 'Linux' },
  actor: { name: 'bench-agent', pid: process.pid, processName: 'cordon' },
};

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`child ${args[0] ?? ''} exited ${code}`)),
    );
  });
}

function startServer(certs: {
  cert: string;
  key: string;
}): Promise<{ p: ChildProcess; port: number; tlsPort: number }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, 'server'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, BENCH_CERT: certs.cert, BENCH_KEY: certs.key },
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^(\d+) (\d+)\n/.exec(out);
      if (m !== null) resolve({ p, port: Number(m[1]), tlsPort: Number(m[2]) });
    });
    p.on('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
}

/** Microseconds of n appends of one small record, each followed by fdatasync, in `dir`. */
function syncMicros(dir: string, n: number): number[] {
  const fd = openSync(join(dir, 'sync-probe'), 'w');
  const rec = Buffer.alloc(400, 0x61);
  const us: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t = process.hrtime.bigint();
      writeSync(fd, rec);
      fdatasyncSync(fd);
      us.push(Number(process.hrtime.bigint() - t) / 1000);
    }
  } finally {
    closeSync(fd);
    rmSync(join(dir, 'sync-probe'), { force: true });
  }
  return us;
}

/** Seconds curl takes for one transfer (asynchronous: the proxy runs in this process). */
function curlSeconds(args: string[]): Promise<number> {
  const t = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      ['-sS', '--noproxy', '', '-o', '/dev/null', '-w', '%{http_code}', ...args],
      { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } },
      (err, out) => {
        if (err !== null || out !== '200')
          reject(new Error(`curl ${args.join(' ')}: ${out} ${err?.message ?? ''}`));
        else resolve(Number(process.hrtime.bigint() - t) / 1e9);
      },
    );
  });
}

export async function benchEgress(
  soakSeconds: number,
): Promise<{ lines: string[]; checks: [string, boolean][] }> {
  const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-egress-'));
  const lines: string[] = [];
  const checks: [string, boolean][] = [];
  const certs = makeCerts(dir, 'DNS:secure.test');
  const server = await startServer(certs);
  const { port, tlsPort } = server;
  const m = validateManifest({
    apiVersion: 'cordon.dev/v1',
    agentName: 'bench-agent',
    version: '1.0.0',
    role: 'bench',
    dataClassification: 'internal',
    owner: 'bench@example.com',
    description: 'egress benchmark',
    notAfter: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
    readPaths: [],
    writePaths: [],
    networkScopes: [
      `http://app.test:${port}`,
      `http://127.0.0.1:${port}`,
      `https://secure.test:${tlsPort}`,
      `https://127.0.0.1:${tlsPort}`,
    ],
    apiScopes: [],
    commandsAllowed: [],
    requiresApproval: [],
  });
  if (!m.ok) throw new Error('bench manifest invalid');
  const log = AuditLog.open({
    stateDir: join(dir, 'state'),
    deviceKey: generateKeyPairSync('ed25519').privateKey,
    origin: 'cordon.audit/bench/0d2e3f4a5b6c7d8e',
    context: ctx,
  });
  const proxy = await EgressProxy.start(
    {
      pdp: createPdp({ manifest: m.manifest, home: '/home/bench' }),
      manifest: { agent: 'bench-agent', version: '1.0.0', digest: `sha256:${'0'.repeat(64)}` },
      audit: log,
      context: ctx,
      resolver: staticResolver({ 'app.test': ['127.0.0.1'], 'secure.test': ['127.0.0.1'] }),
    },
    { host: '127.0.0.1', port: 0 },
  );
  try {
    // --- throughput: 1 GiB each way, direct vs through the proxy, alternating rounds ---
    const upload = join(dir, 'upload.bin');
    const fd = openSync(upload, 'w');
    ftruncateSync(fd, GIB); // sparse: reading it costs no disk
    closeSync(fd);
    const via = ['-x', proxy.url];
    const tls = ['--cacert', certs.ca];
    const kinds: [string, string[], string[]][] = [
      [
        '1 GiB download, plain HTTP',
        [`http://127.0.0.1:${port}/bytes?n=${GIB}`],
        [`http://app.test:${port}/bytes?n=${GIB}`],
      ],
      [
        '1 GiB upload, plain HTTP',
        ['-T', upload, `http://127.0.0.1:${port}/sink`],
        ['-T', upload, `http://app.test:${port}/sink`],
      ],
      [
        '1 GiB download, HTTPS through CONNECT',
        [
          ...tls,
          '--resolve',
          `secure.test:${tlsPort}:127.0.0.1`,
          `https://secure.test:${tlsPort}/bytes?n=${GIB}`,
        ],
        [...tls, `https://secure.test:${tlsPort}/bytes?n=${GIB}`],
      ],
      [
        '1 GiB upload, HTTPS through CONNECT',
        [
          ...tls,
          '--resolve',
          `secure.test:${tlsPort}:127.0.0.1`,
          '-T',
          upload,
          `https://secure.test:${tlsPort}/sink`,
        ],
        [...tls, '-T', upload, `https://secure.test:${tlsPort}/sink`],
      ],
    ];
    lines.push(
      'egress proxy — curl through the proxy vs curl direct to the same loopback server, 3 rounds, medians\n',
    );
    for (const [name, direct, proxied] of kinds) {
      const d: number[] = [];
      const p: number[] = [];
      process.stderr.write(`  ${name}...\n`);
      for (let r = 0; r < 3; r++) {
        d.push(await curlSeconds(direct));
        p.push(await curlSeconds([...via, ...proxied]));
      }
      const dm = GIB / median(d) / 1e6;
      const pm = GIB / median(p) / 1e6;
      const ratio = pm / dm;
      lines.push(name);
      lines.push(`  ${fmt(pm).padStart(8)} MB/s through the proxy`);
      lines.push(`  ${fmt(dm).padStart(8)} MB/s baseline: direct`);
      lines.push(
        `  ratio ${ratio.toFixed(2)}x   goal >= 0.8x   ${ratio >= 0.8 ? 'PASS' : 'FAIL'}\n`,
      );
      checks.push([`${name}: ${ratio.toFixed(2)}x direct >= 0.8x`, ratio >= 0.8]);
    }
    rmSync(upload);

    // --- latency of small keep-alive requests ---
    const direct: number[] = [];
    const proxied: number[] = [];
    for (let r = 0; r < 3; r++) {
      direct.push(...(JSON.parse(await run(['latency', String(port), '-', '2000'])) as number[]));
      proxied.push(
        ...(JSON.parse(
          await run(['latency', String(port), String(proxy.port), '2000']),
        ) as number[]),
      );
    }
    const added = pct(proxied, 0.5) - pct(direct, 0.5);
    // Each exchange's decision is durable before it is forwarded: one fdatasync of the state
    // disk is the floor of what the proxy adds to a sequential request; the goal is on the rest.
    const sync = syncMicros(join(dir, 'state'), 500);
    const overSync = added - pct(sync, 0.5);
    lines.push('small GET with keep-alive, 6,000 sequential requests each way (µs)');
    lines.push(
      `  through the proxy p50 ${pct(proxied, 0.5).toFixed(0)}  p99 ${pct(proxied, 0.99).toFixed(0)}`,
    );
    lines.push(
      `  baseline: direct  p50 ${pct(direct, 0.5).toFixed(0)}  p99 ${pct(direct, 0.99).toFixed(0)}`,
    );
    lines.push(
      `  one write + fdatasync of the state disk p50 ${pct(sync, 0.5).toFixed(0)}  p99 ${pct(sync, 0.99).toFixed(0)}`,
    );
    lines.push(
      `  added p50 ${added.toFixed(0)} µs, ${overSync.toFixed(0)} µs beyond the durable write   goal <= 500 µs   ${overSync <= 500 ? 'PASS' : 'FAIL'}\n`,
    );
    checks.push([
      `added latency p50 beyond one fdatasync ${overSync.toFixed(0)} µs <= 500 µs`,
      overSync <= 500,
    ]);

    // --- 1,000 concurrent keep-alive connections ---
    if (soakSeconds > 0) {
      const rss: number[] = [];
      const sampler = setInterval(() => rss.push(process.memoryUsage().rss), 1000);
      const soak = JSON.parse(
        await run(['soak', String(proxy.port), String(port), '1000', String(soakSeconds)]),
      ) as { requests: number; errors: number; firstErrors: string[]; open: number };
      clearInterval(sampler);
      const warm = Math.min(rss.length - 1, Math.floor(rss.length / 6));
      const startMb = (rss[warm] ?? 0) / 1048576;
      const endMb = (rss[rss.length - 1] ?? 0) / 1048576;
      const peakMb = Math.max(...rss.slice(warm)) / 1048576;
      const flat = endMb <= startMb * 1.25 + 16;
      lines.push(
        `1,000 concurrent keep-alive connections for ${soakSeconds} s (each: a request every 150-250 ms)`,
      );
      lines.push(
        `  ${fmt(soak.requests)} requests (${fmt(soak.requests / soakSeconds)}/s), ${soak.errors} errors${soak.errors > 0 ? ` (${soak.firstErrors.join('; ')})` : ''}`,
      );
      lines.push(
        `  proxy process RSS after warm-up ${startMb.toFixed(0)} MB, at the end ${endMb.toFixed(0)} MB, peak ${peakMb.toFixed(0)} MB`,
      );
      checks.push([
        `1,000 connections for ${soakSeconds} s: ${soak.errors} errors`,
        soak.errors === 0,
      ]);
      checks.push([
        `RSS flat after warm-up: ${startMb.toFixed(0)} -> ${endMb.toFixed(0)} MB`,
        flat,
      ]);
    }
  } finally {
    await proxy.close();
    await log.close();
    server.p.kill();
    rmSync(dir, { recursive: true, force: true });
  }
  return { lines, checks };
}
