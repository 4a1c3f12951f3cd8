// The endpoint service's figures, each beside a baseline measured in the same run: a decision
// through the socket from a warm client (beside the same decision in-process), a fresh client
// process asking one decision (beside `node -e 0`), and audit appends from 8 concurrent client
// processes (beside AuditLog.append in one process).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileActivityEvent, type EventContext, type OcsfEvent } from '../src/audit/events.js';
import { AuditLog } from '../src/audit/log.js';
import { DaemonClient } from '../src/daemon/client.js';
import { loadEnforcedPolicy } from '../src/endpoint/policy.js';
import type { PolicyRequest } from '../src/policy/types.js';
import {
  DecideResponseSchema,
  EmitTestResponseSchema,
  OpenSessionResponseSchema,
} from '../src/protocol/daemon.js';
import { appendPipelined } from './pipeline.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'dist/cli/bin.cjs');
const HOOK = join(ROOT, 'dist-bench/bench/daemon-hook.js');
const APPENDER = join(ROOT, 'dist-bench/bench/daemon-appender.js');

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const quantile = (xs: readonly number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
};
const median = (xs: readonly number[]): number => quantile(xs, 0.5);

export interface DaemonBench {
  lines: string[];
  checks: [string, boolean][];
}

function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr.toString()}`);
  return ms;
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  const f = readFileSync(`/proc/${pid ?? 0}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function lines(child: ChildProcess, onLine: (l: string) => void): void {
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
}

export async function benchDaemon(
  opts: { appendsPerClient?: number; rounds?: number } = {},
): Promise<DaemonBench> {
  const perClient = opts.appendsPerClient ?? 25_000;
  const rounds = opts.rounds ?? 3;
  const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-daemon-'));
  const cordonHome = join(dir, 'cordon');
  const policyDir = join(cordonHome, 'policy');
  const stateDir = join(cordonHome, 'state');
  const socket = join(dir, 'd.sock');
  const env = { PATH: '/usr/bin:/bin', HOME: dir, CORDON_HOME: cordonHome };
  const cli = (args: string[]): string => {
    const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cordon ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  let daemon: ChildProcess | undefined;
  try {
    cli(['init']);
    writeFileSync(
      join(policyDir, 'enforcement.json'),
      JSON.stringify({ allowWithoutGuardrails: true }),
    );
    cli(['keys', 'generate', '--name', 'bench']);
    cli([
      'keys',
      'trust',
      '--name',
      'bench',
      '--pub',
      join(policyDir, 'keys/bench.pub'),
      '--purpose',
      'manifest',
    ]);
    const m = join(dir, 'm.json');
    writeFileSync(
      m,
      JSON.stringify({
        apiVersion: 'cordon.dev/v1',
        agentName: 'bench',
        version: '1.0.0',
        role: 'developer',
        dataClassification: 'internal',
        owner: 'bench@example.com',
        notAfter: new Date(Date.now() + 300 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
        commandsAllowed: ['/usr/bin/true', '/usr/bin/git'],
      }),
    );
    cli(['manifest', 'sign', m, '--key', join(policyDir, 'keys/bench.key')]);
    const manifest = join(dir, 'm.signed.json');
    const bytes = readFileSync(manifest);

    // The daemon in the foreground, as systemd runs it.
    daemon = spawn(
      process.execPath,
      [BIN, 'daemon', '--socket', socket, '--policy-dir', policyDir, '--state-dir', stateDir],
      { env, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    await new Promise<void>((resolve, reject) => {
      daemon?.stderr?.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('cordond: serving')) resolve();
      });
      daemon?.on('exit', () => reject(new Error(`the daemon exited: ${err}`)));
    });

    // --- a decision through the socket from a warm client, beside the same decision in-process
    const client = new DaemonClient({ socket, via: 'CORDON_SOCKET' });
    const opened = await client.request(
      'POST',
      '/v1/sessions',
      {
        manifest: bytes.toString('base64'),
        manifestPath: manifest,
        command: ['/usr/bin/true'],
        cwd: '/',
        home: dir,
      },
      OpenSessionResponseSchema,
    );
    const request: PolicyRequest = {
      kind: 'exec',
      path: '/usr/bin/git',
      argv: ['/usr/bin/git', 'status'],
    };
    const policy = loadEnforcedPolicy({
      dirs: { policyDir, stateDir },
      home: dir,
      now: () => new Date(),
      source: manifest,
      bytes,
      verify: true,
      enforce: true,
    });
    const decideRemote = async (): Promise<string> => {
      const r = await client.request(
        'POST',
        `/v1/sessions/${opened.session}/decide`,
        { requests: [request] },
        DecideResponseSchema,
        { capability: opened.capability },
      );
      return r.decisions[0]?.effect ?? '';
    };
    if ((await decideRemote()) !== policy.pdp.decide(request).effect)
      throw new Error('the daemon and the in-process PDP disagree');
    const remote: number[] = [];
    const local: number[] = [];
    for (let i = 0; i < 2000; i++) await decideRemote();
    for (let r = 0; r < 5; r++) {
      for (let i = 0; i < 2000; i++) {
        const t = process.hrtime.bigint();
        policy.pdp.decide(request);
        local.push(Number(process.hrtime.bigint() - t) / 1000);
      }
      for (let i = 0; i < 2000; i++) {
        const t = process.hrtime.bigint();
        await decideRemote();
        remote.push(Number(process.hrtime.bigint() - t) / 1000);
      }
    }
    // The floor: the same transport's round trip (a frame out, a frame back over the Unix
    // socket) to a process that answers every frame with a fixed body.
    const bareSocket = join(dir, 'bare.sock');
    const bare = spawn(
      process.execPath,
      [
        '-e',
        `require('node:net').createServer((c) => { let b = Buffer.alloc(0); let magic = false; c.on('data', (d) => { b = Buffer.concat([b, d]); if (!magic) { if (b.length < 8) return; b = b.subarray(8); magic = true; } while (b.length >= 4 && b.length >= 4 + b.readUInt32BE(0)) { const n = b.readUInt32BE(0); const id = JSON.parse(b.subarray(4, 4 + n)).id; b = b.subarray(4 + n); const out = Buffer.from(JSON.stringify({ id, status: 200, body: { ok: true } })); const h = Buffer.alloc(4); h.writeUInt32BE(out.length); c.write(Buffer.concat([h, out])); } }); }).listen(${JSON.stringify(bareSocket)}, () => console.log('up'))`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve) => lines(bare, () => resolve()));
    const bareClient = new DaemonClient({ socket: bareSocket, via: 'CORDON_SOCKET' });
    const any = { safeParse: (v: unknown) => ({ success: true as const, data: v }) };
    const bareRound: number[] = [];
    try {
      for (let i = 0; i < 2000; i++)
        await bareClient.request('POST', '/', { requests: [request] }, any);
      for (let i = 0; i < 10_000; i++) {
        const t = process.hrtime.bigint();
        await bareClient.request('POST', '/', { requests: [request] }, any);
        bareRound.push(Number(process.hrtime.bigint() - t) / 1000);
      }
    } finally {
      bare.kill();
    }
    const us = (x: number): string => `${x.toFixed(1)} µs`;
    const dP50 = quantile(remote, 0.5);
    const dP99 = quantile(remote, 0.99);

    // --- a fresh client process asking one decision, beside `node -e 0` ---
    const hookArgs = [HOOK, socket, opened.session, opened.capability, JSON.stringify(request)];
    timed(process.execPath, hookArgs, env); // page cache
    const fresh: Record<'node' | 'hook' | 'status', number[]> = { node: [], hook: [], status: [] };
    for (let i = 0; i < 15; i++) {
      fresh.node.push(timed(process.execPath, ['-e', '0'], env));
      fresh.hook.push(timed(process.execPath, hookArgs, env));
      fresh.status.push(
        timed(process.execPath, [BIN, 'daemon', 'status', '--socket', socket], env),
      );
    }
    // The same client bundled into one file (as the CLI is): what module loading costs.
    const bundled = join(dir, 'hook.cjs');
    const { build } = await import('esbuild');
    await build({
      entryPoints: [HOOK],
      outfile: bundled,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      logLevel: 'warning',
      plugins: [
        {
          // As scripts/bundle.mjs: only zod's English messages.
          name: 'zod-english-only',
          setup(b) {
            b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
              args.importer.includes('/zod/')
                ? { path: 'zod-locales', namespace: 'zod-english-only' }
                : undefined,
            );
            b.onLoad({ filter: /.*/, namespace: 'zod-english-only' }, () => ({
              contents: "export { default as en } from 'zod/v4/locales/en.js';",
              resolveDir: ROOT,
            }));
          },
        },
      ],
    });
    const bundledArgs = [bundled, ...hookArgs.slice(1)];
    timed(process.execPath, bundledArgs, env);
    const bundledRuns: number[] = [];
    for (let i = 0; i < 15; i++) bundledRuns.push(timed(process.execPath, bundledArgs, env));
    const hookMs = median(fresh.hook);
    const bundledMs = median(bundledRuns);
    const nodeMs = median(fresh.node);
    const statusMs = median(fresh.status);

    // --- audit appends: 8 client processes through the daemon, beside AuditLog.append in one
    // process (the daemon's own writer, with the same events) ---
    const ctx: EventContext = {
      productVersion: '0.1.0',
      device: { hostname: 'bench', osName: 'Linux' },
      actor: { name: 'bench', pid: process.pid, processName: 'cordon' },
      time: Date.now(),
    };
    const events: OcsfEvent[] = Array.from({ length: 8 * perClient }, (_, i) =>
      fileActivityEvent(ctx, { activity: 'read', path: `/w/src/file-${i % perClient}.ts` }),
    );
    const inProcess: number[] = [];
    const viaDaemon: number[] = [];
    // How much of the time the daemon's process was on a CPU: what bounds the rate.
    const busy: number[] = [];
    const daemonOwn: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const logDir = mkdtempSync(join(dir, 'log-'));
      const log = AuditLog.open({
        stateDir: logDir,
        deviceKey: generateKeyPairSync('ed25519').privateKey,
        origin: 'cordon.audit/bench/0d2e3f4a5b6c7d8e',
        context: ctx,
      });
      const t0 = process.hrtime.bigint();
      await appendPipelined(log, events, events.length);
      inProcess.push(events.length / (Number(process.hrtime.bigint() - t0) / 1e9));
      await log.close();
      // What the daemon does of its own: it builds and appends the same number of events itself
      // (`cordon audit emit-test`), measured inside the daemon process.
      const own = await client.request(
        'POST',
        '/v1/audit/emit-test',
        { count: 8 * perClient },
        EmitTestResponseSchema,
        { timeoutMs: 600_000 },
      );
      daemonOwn.push(own.eventsPerSecond);
      rmSync(logDir, { recursive: true, force: true });

      const clients = Array.from({ length: 8 }, () =>
        spawn(process.execPath, [APPENDER, socket, manifest, dir, String(perClient)], {
          env,
          stdio: ['pipe', 'pipe', 'inherit'],
        }),
      );
      const exited = clients.map((c) => new Promise((r) => c.on('exit', r)));
      const ready = clients.map(
        (c) => new Promise<void>((resolve) => lines(c, (l) => l === 'ready' && resolve())),
      );
      await Promise.all(ready);
      const done = clients.map(
        (c) =>
          new Promise<number>((resolve) =>
            lines(c, (l) => {
              if (l.startsWith('done ')) resolve(Number(l.slice(5)));
            }),
          ),
      );
      const t1 = process.hrtime.bigint();
      const cpu0 = cpuSeconds(daemon.pid);
      for (const c of clients) c.stdin?.write('go\n');
      const failed = await Promise.all(done);
      const wall = Number(process.hrtime.bigint() - t1) / 1e9;
      viaDaemon.push((8 * perClient) / wall);
      busy.push((cpuSeconds(daemon.pid) - cpu0) / wall);
      if (failed.some((f) => f !== 0)) throw new Error(`appends failed: ${failed.join(', ')}`);
      await Promise.all(exited);
    }
    const appendRate = median(viaDaemon);
    const baseRate = median(inProcess);
    const ratio = appendRate / baseRate;

    const ms = (x: number): string => `${x.toFixed(1)} ms`;
    return {
      lines: [
        `endpoint service — a decision through the socket from a warm client (framed transport, one connection, one request per call, ${remote.length} calls)`,
        `  p50 ${us(dP50)}   p99 ${us(dP99)}   mean ${us(remote.reduce((a, b) => a + b, 0) / remote.length)}`,
        `  baseline: the same decision in-process (pdp.decide): p50 ${us(quantile(local, 0.5))}   p99 ${us(quantile(local, 0.99))}`,
        `  baseline: the same transport's round trip to a process answering a fixed frame (same client): p50 ${us(quantile(bareRound, 0.5))}   p99 ${us(quantile(bareRound, 0.99))}`,
        `endpoint service — a fresh client process asking one decision (what an agent hook does), median of ${fresh.hook.length}`,
        `  ${ms(bundledMs)} bundled into one file, CommonJS, as Cordon ships its entry points; baseline node -e 0 ${ms(nodeMs)}: +${ms(bundledMs - nodeMs)}`,
        `  the same client as separate modules (dist-bench/bench/daemon-hook.js): ${ms(hookMs)} (+${ms(hookMs - nodeMs)})`,
        `  \`cordon daemon status\` through the CLI bundle: ${ms(statusMs)} (+${ms(statusMs - nodeMs)})`,
        `endpoint service — audit appends from 8 concurrent client processes (ClientSession, batches of up to 1,024), ${fmt(8 * perClient)} events, median of ${rounds}`,
        `  ${fmt(appendRate).padStart(10)} durable events/s through the daemon (all: ${viaDaemon.map(fmt).join(', ')})`,
        `  ${fmt(baseRate).padStart(10)} durable events/s baseline: AuditLog.append in one process, same events (all: ${inProcess.map(fmt).join(', ')})`,
        `  ${fmt(median(daemonOwn)).padStart(10)} durable events/s the daemon builds and appends in its own process (emit-test, building the events included, so not the ratio's baseline; all: ${daemonOwn.map(fmt).join(', ')})`,
        `  ratio ${ratio.toFixed(2)}x (against AuditLog.append); the daemon was on a CPU ${busy.map((b) => `${Math.round(b * 100)}%`).join(', ')} of each round`,
      ],
      checks: [
        [`warm decision through the socket p50 ${us(dP50)} <= 150 µs`, dP50 <= 150],
        [`warm decision through the socket p99 ${us(dP99)} <= 1000 µs`, dP99 <= 1000],
        [
          `fresh client process, one decision: ${ms(bundledMs)} <= node -e 0 (${ms(nodeMs)}) + 20 ms`,
          bundledMs <= nodeMs + 20,
        ],
        [`audit appends through the daemon ${fmt(appendRate)}/s >= 50,000/s`, appendRate >= 50_000],
        [`audit appends through the daemon ${ratio.toFixed(2)}x in-process >= 0.6x`, ratio >= 0.6],
      ],
    };
  } finally {
    daemon?.kill('SIGTERM');
    if (daemon !== undefined && daemon.exitCode === null)
      await new Promise((r) => daemon?.on('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}
