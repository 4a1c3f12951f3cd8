// Endpoint service soak: N concurrent `cordon run` sessions (default 20) under one daemon, each
// agent a bash loop that makes HTTP requests through its session's proxy to a loopback upstream
// and starts processes, for D seconds (default 60). While they run, `cordon ps --json` must list
// every session and the daemon's RSS is sampled every second; at the end every request answered
// 2xx, every `cordon run` exited 0, the log is one chain that verifies, and RSS after warm-up
// stays flat (rssVerdict says exactly what that means).
// Baselines in the same run: the same agent loops run directly (no sandbox, no proxy) for the
// request rate, and the daemon's RSS before any session opened.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// The `cordon` bin users run (package.json), which runs the single-file bundle.
const BIN = join(ROOT, 'dist/cli/bin.cjs');
const MIB = 1024 * 1024;
const TIMEOUT_S = 30;

export interface SoakOptions {
  /** Concurrent sessions. */
  readonly sessions: number;
  /** Seconds each agent loops. */
  readonly seconds: number;
  /** Seconds the direct baseline loops run. */
  readonly baselineSeconds: number;
  /** Seconds between samples of `cordon ps`. */
  readonly sampleSeconds: number;
  /** Extra node flags for the daemon (to measure a V8 setting beside the default). */
  readonly daemonFlags: readonly string[];
}

interface Done {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface Summary {
  readonly requests: number;
  readonly ok: number;
  readonly errors: number;
  readonly processErrors: number;
  readonly seconds: number;
  /** Seconds each 2xx request took, as curl measured it. */
  readonly times: number[];
}

/** Run a process to its end, collecting its output. */
function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Done> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/**
 * The agent: curl the upstream (through the proxy the sandbox's HTTP_PROXY names, or directly),
 * start /usr/bin/true, sleep 10-50 ms; then one summary line. Only bash, curl, true and sleep run.
 */
function agentScript(url: string, seconds: number): string {
  return [
    `n=0; ok=0; err=0; perr=0; t0=$EPOCHREALTIME; end=$((SECONDS+${seconds}))`,
    'echo ready',
    `while [ $SECONDS -lt $end ]; do`,
    // A generous timeout: on a loaded machine a slow answer is latency (reported), not an error.
    `  r=$(curl -sS -o /dev/null -m ${TIMEOUT_S} -w 'http=%{http_code} time=%{time_total}' ${url} 2>&1)`,
    '  n=$((n+1))',
    '  case "$r" in',
    '    *http=2??\\ time=*) ok=$((ok+1)); echo "soak-time ${r##*time=}";;',
    `    *) err=$((err+1)); echo "soak-error \${r//$'\\n'/ }" >&2;;`,
    '  esac',
    '  /usr/bin/true || perr=$((perr+1))',
    '  sleep 0.0$((RANDOM % 5 + 1))',
    'done',
    'echo "soak-summary requests=$n ok=$ok errors=$err process-errors=$perr t0=$t0 t1=$EPOCHREALTIME"',
  ].join('\n');
}

function parseSummary(stdout: string): Summary | undefined {
  const m =
    /soak-summary requests=(\d+) ok=(\d+) errors=(\d+) process-errors=(\d+) t0=([\d.]+) t1=([\d.]+)/.exec(
      stdout,
    );
  if (m === null) return undefined;
  return {
    requests: Number(m[1]),
    ok: Number(m[2]),
    errors: Number(m[3]),
    processErrors: Number(m[4]),
    seconds: Number(m[6]) - Number(m[5]),
    times: [...stdout.matchAll(/^soak-time ([\d.]+)$/gm)].map((t) => Number(t[1])),
  };
}

/** An upstream HTTP server in its own process: 200 to everything, counts per first path part. */
function startUpstream(): Promise<{ p: ChildProcess; port: number }> {
  const src = `
    const counts = {};
    const s = require('http').createServer((q, r) => {
      if (q.url === '/__count') { r.setHeader('content-type', 'application/json'); r.end(JSON.stringify(counts)); return; }
      const k = q.url.split('/')[1] || '';
      counts[k] = (counts[k] || 0) + 1;
      q.resume();
      q.on('end', () => r.end('ok\\n'));
    });
    s.keepAliveTimeout = 5000;
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'pipe', 'inherit'] });
    p.stdout.once('data', (d: Buffer) => resolve({ p, port: Number(d.toString().trim()) }));
    p.on('error', reject);
    p.on('exit', (code) => reject(new Error(`upstream exited ${code}`)));
  });
}

function upstreamCounts(port: number): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/__count' }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(JSON.parse(body) as Record<string, number>));
    })
      .on('error', reject)
      .end();
  });
}

/** VmRSS of a process in bytes (NaN when it is gone). */
function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? NaN : Number(m[1]) * 1024;
  } catch {
    return NaN;
  }
}

/** Start N copies of an agent at once; resolves when each has printed "ready". */
async function startAll(
  n: number,
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ pids: number[]; done: Promise<Done[]>; finishing: () => boolean }> {
  const ready: Promise<void>[] = [];
  const done: Promise<Done>[] = [];
  const pids: number[] = [];
  let finishing = false;
  for (let i = 0; i < n; i++) {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    pids.push(p.pid ?? -1);
    let stdout = '';
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const closed = new Promise<Done>((resolve) =>
      p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
    );
    ready.push(
      new Promise<void>((resolve, reject) => {
        p.stdout.on('data', (d: Buffer) => {
          stdout += d.toString();
          if (stdout.includes('ready')) resolve();
          if (stdout.includes('soak-summary')) finishing = true;
        });
        void closed.then((r) =>
          reject(new Error(`agent ${i} exited ${r.code} before "ready": ${r.stderr}`)),
        );
      }),
    );
    done.push(closed);
  }
  await Promise.all(ready);
  return { pids, done: Promise.all(done), finishing: () => finishing };
}

const quantile = (xs: readonly number[], q: number): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One sample of the daemon's RSS: seconds since the sessions were up, bytes, requests so far. */
interface RssSample {
  readonly t: number;
  readonly rss: number;
  readonly requests: number;
}

/** How much the late window's mean RSS may exceed the early window's and still be flat. */
const FLAT_TOLERANCE = 0.1;

interface RssVerdict {
  readonly requests: number;
  readonly youngSettledAt: number;
  readonly warmup: readonly RssSample[];
  readonly early: readonly RssSample[];
  readonly late: readonly RssSample[];
  readonly earlyMean: number;
  readonly lateMean: number;
  readonly growthPct: number;
  /** Least-squares slope over the early and late windows, in bytes per second. */
  readonly slopePerSecond: number;
  /** The same over the requests answered, in bytes per request. */
  readonly slopePerRequest: number;
  readonly flat: boolean;
}

const mean = (xs: readonly number[]): number => xs.reduce((a, x) => a + x, 0) / xs.length;

/** Least-squares slope of y over x. */
function slope(xs: readonly number[], ys: readonly number[]): number {
  const mx = mean(xs);
  const my = mean(ys);
  let num = 0;
  let den = 0;
  for (const [i, x] of xs.entries()) {
    num += (x - mx) * ((ys[i] ?? my) - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/**
 * "Flat after warm-up", measured against work done rather than time, so that a loaded machine
 * (fewer requests a second) does not move the windows. Warm-up is the first third of the run's
 * requests (sessions opening, code being optimised), and lasts at least until V8's young
 * generation last changed size and has been filled since (`youngSettledAt`, seconds: the second
 * scavenge after it grew, when both its semi-spaces are resident): V8 doubles it, up to a fixed maximum
 * (16 MiB per semi-space), after enough bytes survived scavenges, i.e. after an amount of work,
 * not of time — a bounded step that can come late on a loaded machine and cannot hide a leak,
 * which grows the old generation. The samples after warm-up are split by requests into an early
 * and a late half; RSS is flat when the late half's mean exceeds the early half's by at most
 * FLAT_TOLERANCE. A leak (memory per request or per second) shows as the late mean above the
 * early one; V8's collection cycle (a few MiB up, then down) averages out within each window.
 */
function rssVerdict(mem: readonly RssSample[], youngSettledAt: number): RssVerdict {
  const requests = mem[mem.length - 1]?.requests ?? 0;
  const warmup = mem.filter((x) => x.requests < requests / 3 || x.t < youngSettledAt);
  const from = warmup[warmup.length - 1]?.requests ?? 0;
  const half = (from + requests) / 2;
  const after = mem.slice(warmup.length);
  const early = after.filter((x) => x.requests < half);
  const late = after.filter((x) => x.requests >= half);
  const earlyMean = mean(early.map((x) => x.rss));
  const lateMean = mean(late.map((x) => x.rss));
  const steady = [...early, ...late];
  return {
    requests,
    youngSettledAt,
    warmup,
    early,
    late,
    earlyMean,
    lateMean,
    growthPct: (lateMean / earlyMean - 1) * 100,
    slopePerSecond: slope(
      steady.map((x) => x.t),
      steady.map((x) => x.rss),
    ),
    slopePerRequest: slope(
      steady.map((x) => x.requests),
      steady.map((x) => x.rss),
    ),
    // Three samples at least in each window: fewer is no measurement.
    flat: early.length >= 3 && late.length >= 3 && lateMean <= earlyMean * (1 + FLAT_TOLERANCE),
  };
}

function flatText(v: RssVerdict): string {
  const span = (xs: readonly RssSample[]): string =>
    xs.length === 0
      ? 'no samples'
      : `${xs[0]?.t.toFixed(0)}-${xs[xs.length - 1]?.t.toFixed(0)} s, ${xs.length} samples`;
  return (
    `warm-up (the first third of the ${v.requests.toLocaleString('en-US')} requests, and until V8's young generation, grown last, was filled at ${v.youngSettledAt.toFixed(0)} s) ${span(v.warmup)}; ` +
    `early window ${span(v.early)}, mean ${(v.earlyMean / MIB).toFixed(1)} MiB; ` +
    `late window ${span(v.late)}, mean ${(v.lateMean / MIB).toFixed(1)} MiB ` +
    `(${v.growthPct >= 0 ? '+' : ''}${v.growthPct.toFixed(1)}%); slope over both ` +
    `${((v.slopePerSecond * 60) / MIB).toFixed(2)} MiB/min, ${((v.slopePerRequest * 1000) / MIB).toFixed(2)} MiB per 1,000 requests`
  );
}

/** A line of the daemon's CORDON_DAEMON_MEMTRACE file (the fields the bench reports). */
interface MemtraceLine {
  readonly t: number;
  readonly rss: number;
  readonly heapTotal: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly spaces: Record<string, [number, number]>;
  readonly smaps: { anonymous: number; file: number };
}

function readMemtrace(file: string): MemtraceLine[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as MemtraceLine);
  } catch {
    return [];
  }
}

/** Where the daemon's memory went between two memtrace lines. */
function breakdown(a: MemtraceLine | undefined, b: MemtraceLine | undefined): string {
  if (a === undefined || b === undefined) return 'no memtrace';
  const m = (f: (x: MemtraceLine) => number): string =>
    `${(f(a) / MIB).toFixed(1)} -> ${(f(b) / MIB).toFixed(1)}`;
  const space = (name: string) => (x: MemtraceLine) => x.spaces[name]?.[0] ?? NaN;
  return [
    `RSS ${m((x) => x.rss)} MiB`,
    `V8 heap committed ${m((x) => x.heapTotal)} (young ${m(space('new_space'))}, old ${m(space('old_space'))}), in use ${m((x) => x.heapUsed)}`,
    `external ${m((x) => x.external)}`,
    `anonymous outside the V8 heap (malloc, thread stacks) ${m((x) => x.smaps.anonymous - x.heapTotal)}`,
    `file-backed ${m((x) => x.smaps.file)}`,
  ].join('; ');
}

export async function benchSoak(
  o: SoakOptions,
): Promise<{ lines: string[]; checks: [string, boolean][] }> {
  const dir = mkdtempSync(join(tmpdir(), 'cordon-bench-soak-'));
  const run = join(dir, 'run');
  mkdirSync(run, { mode: 0o700 });
  const env: NodeJS.ProcessEnv = {
    PATH: '/usr/bin:/bin',
    HOME: join(dir, 'home'),
    CORDON_HOME: join(dir, 'cordon'),
    XDG_RUNTIME_DIR: run,
    LANG: 'C.UTF-8',
  };
  mkdirSync(join(dir, 'home'));
  const cli = async (args: string[], ok: number[] = [0]): Promise<Done> => {
    const r = await exec(process.execPath, [BIN, ...args], env);
    if (!ok.includes(r.code ?? -1))
      throw new Error(`cordon ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
    return r;
  };
  const upstream = await startUpstream();
  let daemon: ChildProcess | undefined;
  let daemonOut = '';
  try {
    await cli(['init']);
    writeFileSync(
      join(dir, 'cordon/policy/enforcement.json'),
      JSON.stringify({ allowWithoutGuardrails: true }),
    );
    await cli(['keys', 'generate', '--name', 'soak']);
    const keys = join(dir, 'cordon/policy/keys');
    await cli([
      'keys',
      'trust',
      '--name',
      'soak',
      '--pub',
      join(keys, 'soak.pub'),
      '--purpose',
      'manifest',
    ]);
    const m = join(dir, 'soak.json');
    writeFileSync(
      m,
      JSON.stringify({
        apiVersion: 'cordon.dev/v1',
        agentName: 'soak',
        version: '1.0.0',
        role: 'developer',
        dataClassification: 'internal',
        owner: 'bench@example.com',
        notAfter: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
        networkScopes: [`http://127.0.0.1:${upstream.port}`],
        commandsAllowed: ['/usr/bin/bash', '/usr/bin/curl', '/usr/bin/true', '/usr/bin/sleep'],
      }),
    );
    await cli(['manifest', 'sign', m, '--key', join(keys, 'soak.key')]);
    const signed = join(dir, 'soak.signed.json');

    // The daemon in the foreground, as systemd runs it (no idle exit).
    const memtraceFile = join(dir, 'memtrace.jsonl');
    // --trace-gc only prints: after each major GC, the heap still live, which tells a leak
    // (live heap growing) from V8 letting garbage accumulate between major GCs (RSS growing).
    const daemonStart = performance.now();
    daemon = spawn(
      process.execPath,
      ['--trace-gc', '--heapsnapshot-signal=SIGUSR2', ...o.daemonFlags, BIN, 'daemon'],
      {
        // Where the daemon's memory is, once a second (see startMemtrace in src/daemon/daemon.ts).
        env: { ...env, CORDON_DAEMON_MEMTRACE: memtraceFile },
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let daemonErr = '';
    daemon.stderr?.on('data', (d: Buffer) => (daemonErr += d.toString()));
    daemon.stdout?.on('data', (d: Buffer) => (daemonOut += d.toString()));
    const majorGcs = (): { t: number; before: number; live: number; committed: number }[] =>
      [
        ...daemonOut.matchAll(
          /\s(\d+) ms: Mark-Compact (?:\(reduce\) )?([\d.]+) \(([\d.]+)\) -> ([\d.]+) \(([\d.]+)\) MB/g,
        ),
      ].map((m) => ({
        t: Number(m[1]) / 1000,
        before: Number(m[2]),
        live: Number(m[4]),
        committed: Number(m[5]),
      }));
    let pid = NaN;
    for (let i = 0; i < 100 && Number.isNaN(pid); i++) {
      await sleep(100);
      const s = await exec(process.execPath, [BIN, 'daemon', 'status', '--json'], env);
      if (s.code === 0) pid = (JSON.parse(s.stdout) as { pid: number }).pid;
    }
    if (Number.isNaN(pid)) throw new Error(`the daemon did not start: ${daemonErr}`);
    if (pid !== daemon.pid) throw new Error(`daemon status names pid ${pid}, not ${daemon.pid}`);
    await sleep(1000);
    const idleRss = rssOf(pid);

    // Baseline: the same loops, directly (no sandbox, no proxy), as many at once.
    const direct = agentScript(`http://127.0.0.1:${upstream.port}/direct`, o.baselineSeconds);
    const b = await startAll(o.sessions, '/usr/bin/bash', ['-c', direct], { PATH: env['PATH'] });
    const bDone = await b.done;
    const bSum = bDone.map((r) => parseSummary(r.stdout));
    const bRate = bSum.reduce((a, s) => a + (s === undefined ? 0 : s.requests / s.seconds), 0);

    // The soak.
    const load0 = loadavg()[0] ?? NaN;
    const agent = agentScript(`http://127.0.0.1:${upstream.port}/soak`, o.seconds);
    const started = performance.now();
    const s = await startAll(
      o.sessions,
      process.execPath,
      [BIN, 'run', '--manifest', signed, '--', '/usr/bin/bash', '-c', agent],
      env,
    );
    const upMs = performance.now() - started;
    const samples: { t: number; listed: number; ours: number; states: string }[] = [];
    const t0 = performance.now();
    // The daemon's RSS once a second, with the requests answered so far (the upstream's count).
    const mem: RssSample[] = [];
    const memLoop = (async () => {
      while (!s.finishing()) {
        const tick = performance.now();
        const rss = rssOf(pid);
        const requests = (await upstreamCounts(upstream.port))['soak'] ?? 0;
        if (s.finishing()) break;
        mem.push({ t: (tick - t0) / 1000, rss, requests });
        await sleep(Math.max(0, 1000 - (performance.now() - tick)));
      }
    })();
    const loads: number[] = [];
    // Sample while every agent still loops: the first summary line (an agent done, its session
    // about to close) ends the window in which every session must be listed. A sample whose
    // `cordon ps` was still running then is not counted.
    while (!s.finishing()) {
      const ps = await exec(process.execPath, [BIN, 'ps', '--json'], env);
      const listed =
        ps.code === 0
          ? (JSON.parse(ps.stdout) as { sessions: { clientPid: number; state: string }[] }).sessions
          : [];
      if (s.finishing()) break;
      samples.push({
        t: (performance.now() - t0) / 1000,
        listed: listed.length,
        ours: listed.filter((x) => s.pids.includes(x.clientPid) && x.state === 'running').length,
        states: [...new Set(listed.map((x) => x.state))].join(','),
      });
      loads.push(loadavg()[0] ?? NaN);
      await sleep(o.sampleSeconds * 1000);
    }
    await memLoop;
    const runs = await s.done;
    const wall = (performance.now() - started) / 1000;
    await sleep(500);
    const afterRss = rssOf(pid);
    // The live heap once every session closed: V8's memory reducer often runs a major GC within
    // seconds of the load stopping; if it has not after 5 s, a heap snapshot (written into the
    // bench's directory, after every RSS figure is taken) forces one.
    const closedAt = (performance.now() - daemonStart) / 1000;
    const gcSince = (): boolean => majorGcs().some((g) => g.t >= closedAt);
    for (let i = 0; i < 10 && !gcSince(); i++) await sleep(500);
    const settledRss = rssOf(pid);
    if (!gcSince()) process.kill(pid, 'SIGUSR2');
    for (let i = 0; i < 60 && !gcSince(); i++) await sleep(500);
    const sums = runs.map((r) => parseSummary(r.stdout));
    const times = sums.flatMap((x) => x?.times ?? []);
    const bTimes = bSum.flatMap((x) => x?.times ?? []);
    const lat = (xs: number[]): string =>
      `p50 ${(quantile(xs, 0.5) * 1000).toFixed(0)} ms, p99 ${(quantile(xs, 0.99) * 1000).toFixed(0)} ms, max ${(Math.max(...xs) * 1000).toFixed(0)} ms`;
    const rate = sums.reduce((a, x) => a + (x === undefined ? 0 : x.requests / x.seconds), 0);
    const total = (k: Exclude<keyof Summary, 'times'>): number =>
      sums.reduce((a, x) => a + (x?.[k] ?? 0), 0);
    const counts = await upstreamCounts(upstream.port);
    const psAfter = await cli(['ps', '--json']);
    const leftOver = (JSON.parse(psAfter.stdout) as { sessions: unknown[] }).sessions.length;

    const verify = await cli(['audit', 'verify', '--json'], [0, 1, 4]);
    const v = JSON.parse(verify.stdout) as { intact: boolean; records: number; segments: number };
    // Every proxied request is an HTTP Activity event (class 4002) in the log.
    const classes = new Map<number, number>();
    const segs = join(dir, 'cordon/state/audit/segments');
    for (const f of readdirSync(segs).sort())
      for (const line of readFileSync(join(segs, f), 'utf8').split('\n')) {
        if (line === '') continue;
        const c = (JSON.parse(line) as { event: { class_uid: number } }).event.class_uid;
        classes.set(c, (classes.get(c) ?? 0) + 1);
      }

    const soakStart = (t0 - daemonStart) / 1000;
    const gcs = majorGcs().map((g) => ({ ...g, t: g.t - soakStart }));
    // During the soak: the first major GC once every session was up (else the last before).
    const during = gcs.filter((g) => g.t < closedAt - soakStart);
    const warmGc = during.find((g) => g.t >= 0) ?? during[during.length - 1];
    const endGc = gcs.find((g) => g.t >= closedAt - soakStart);
    const liveGrowth = (endGc?.live ?? NaN) - (warmGc?.live ?? NaN);
    // The memtrace's clock starts at the daemon's start, the samples' at the sessions' start.
    const soakAt = (t0 - daemonStart) / 1000;
    const traced = readMemtrace(memtraceFile);
    const tracedAt = (t: number): MemtraceLine | undefined =>
      traced.find((x) => x.t >= t - 0.5) ?? traced[traced.length - 1];
    const young = (x: MemtraceLine | undefined): number => x?.spaces['new_space']?.[0] ?? NaN;
    const sampledUntil = soakAt + (mem[mem.length - 1]?.t ?? 0);
    let youngGrewAt = -Infinity;
    for (const [i, x] of traced.entries())
      if (i > 0 && x.t <= sampledUntil && young(x) !== young(traced[i - 1])) youngGrewAt = x.t;
    // Its new pages are resident once both semi-spaces have been filled: two scavenges later.
    const scavenges = [...daemonOut.matchAll(/\s(\d+) ms: Scavenge/g)].map(
      (m) => Number(m[1]) / 1000,
    );
    const youngSettled =
      scavenges.filter((t) => t > youngGrewAt)[1] ?? (youngGrewAt === -Infinity ? 0 : Infinity);
    const flat = rssVerdict(mem, Math.max(0, youngSettled - soakAt));
    // What the collections cost while every session looped: the pause each --trace-gc line gives.
    const pauses = (kind: string): number[] =>
      [...daemonOut.matchAll(new RegExp(`\\s(\\d+) ms: ${kind}[^,]*?MB, ([\\d.]+) /`, 'g'))]
        .filter((m) => Number(m[1]) / 1000 >= soakAt && Number(m[1]) / 1000 <= sampledUntil)
        .map((m) => Number(m[2]));
    const scavengePauses = pauses('Scavenge');
    const fullPauses = pauses('Mark-Compact');
    const sum = (xs: readonly number[]): number => xs.reduce((a, x) => a + x, 0);
    const sampledSeconds = sampledUntil - soakAt;
    const from = tracedAt(soakAt + (flat.early[0]?.t ?? NaN));
    const to = tracedAt(soakAt + (flat.late[flat.late.length - 1]?.t ?? NaN));
    const errors = total('errors');
    const failedRuns = runs.filter((r) => r.code !== 0);
    const missing = sums.filter((x) => x === undefined).length;
    const notListed = samples.filter((x) => x.ours !== o.sessions);
    const missed = notListed
      .map((x) => `at ${x.t.toFixed(0)} s ${x.ours} running of ${x.listed} listed (${x.states})`)
      .join('; ');
    const mib = (n: number): string => `${(n / MIB).toFixed(1)} MiB`;
    const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
    const errorText = runs
      .flatMap((r) => r.stderr.split('\n').filter((l) => l.startsWith('soak-error')))
      .slice(0, 3)
      .join('; ');

    const lines = [
      `endpoint service soak — ${o.sessions} concurrent cordon run sessions x ${o.seconds} s, each: curl through its proxy, /usr/bin/true, sleep 10-50 ms`,
      `  machine: ${cpus().length} cores; 1-min load ${load0.toFixed(1)} before, ${Math.max(...loads).toFixed(1)} peak during (other work shares these cores)`,
      `  all ${o.sessions} sessions up in ${upMs.toFixed(0)} ms; cordon run wall ${wall.toFixed(1)} s`,
      `  requests ${fmt(total('requests'))} (2xx ${fmt(total('ok'))}, errors ${errors}${errorText === '' ? '' : `: ${errorText}`}), process starts failed ${total('processErrors')}, upstream saw ${fmt(counts['soak'] ?? 0)}`,
      `  requests/s through the proxies ${rate.toFixed(1)}; baseline, the same ${o.sessions} loops directly for ${o.baselineSeconds} s: ${bRate.toFixed(1)}/s (ratio ${(rate / bRate).toFixed(2)}x)`,
      `  request time (curl's time_total): through the proxies ${lat(times)}; directly ${lat(bTimes)}`,
      `  cordon run exit codes: ${failedRuns.length === 0 ? 'all 0' : failedRuns.map((r) => `${r.code ?? r.signal}`).join(', ')}${missing > 0 ? `; ${missing} agents printed no summary` : ''}`,
      `  cordon ps: ${samples.length} samples, ${samples.length - notListed.length} listing all ${o.sessions} sessions running${missed === '' ? '' : `: ${missed}`}; after the run ${leftOver} listed`,
      `  audit log: ${fmt(v.records)} records in ${v.segments} segment(s), verify exit ${verify.code} (${verify.code === 4 ? 'intact; completeness unproven without a witness' : v.intact ? 'intact' : 'DAMAGED'}); HTTP Activity events ${fmt(classes.get(4002) ?? 0)}, Process Activity ${fmt(classes.get(1007) ?? 0)}`,
      `  daemon RSS (sampled every 1 s${o.daemonFlags.length === 0 ? '' : `; daemon started with ${o.daemonFlags.join(' ')}`}): idle before any session ${mib(idleRss)} (baseline); ${flatText(flat)}; peak ${mib(Math.max(...mem.map((x) => x.rss)))}; after the sessions closed ${mib(afterRss)}, 5 s later ${mib(settledRss)}`,
      `  daemon memory from the early window's start to the end (CORDON_DAEMON_MEMTRACE): ${breakdown(from, to)}`,
      `  RSS samples (s: MiB): ${mem.map((x) => `${x.t.toFixed(0)}:${(x.rss / MIB).toFixed(0)}`).join(' ')}`,
      `  daemon GC while every session looped (${sampledSeconds.toFixed(0)} s): ${scavengePauses.length} scavenges, ${sum(scavengePauses).toFixed(0)} ms; ${fullPauses.length} full collections, ${sum(fullPauses).toFixed(0)} ms (longest ${Math.max(0, ...fullPauses).toFixed(0)} ms); ${(sum([...scavengePauses, ...fullPauses]) / 10 / sampledSeconds || 0).toFixed(1)}% of the wall time`,
      `  daemon live heap after each major GC (s since the sessions were up: MiB live / committed): ${gcs.map((g) => `${g.t.toFixed(0)}: ${g.live.toFixed(1)} / ${g.committed.toFixed(1)}`).join(', ')}`,
    ];
    const checks: [string, boolean][] = [
      [
        `soak: 0 errors (${errors} non-2xx, ${total('processErrors')} failed process starts, ${failedRuns.length} cordon run exits != 0, ${missing} agents without a summary)`,
        errors === 0 && total('processErrors') === 0 && failedRuns.length === 0 && missing === 0,
      ],
      [
        `soak: every request reached the upstream once and is in the log, its decision and its outcome (${fmt(total('ok'))} 2xx, upstream ${fmt(counts['soak'] ?? 0)}, HTTP Activity events ${fmt(classes.get(4002) ?? 0)} = 2 x ${fmt(total('ok'))})`,
        total('ok') === (counts['soak'] ?? 0) && (classes.get(4002) ?? 0) === 2 * total('ok'),
      ],
      [
        `soak: one chain that verifies (audit verify exit ${verify.code}: 0, or 4 without a witness)`,
        v.intact && (verify.code === 0 || verify.code === 4),
      ],
      [
        `soak: cordon ps lists all ${o.sessions} sessions in every sample (${samples.length - notListed.length} of ${samples.length}), none after`,
        samples.length > 0 && notListed.length === 0 && leftOver === 0,
      ],
      [
        `soak: daemon RSS flat after warm-up: late-window mean ${mib(flat.lateMean)} <= early-window mean ${mib(flat.earlyMean)} + ${FLAT_TOLERANCE * 100}% (${flat.growthPct.toFixed(1)}%)`,
        flat.flat,
      ],
      [
        `soak: no leak: daemon live heap after a major GC once the sessions closed ${endGc?.live.toFixed(1) ?? '?'} MB vs during the soak ${warmGc?.live.toFixed(1) ?? '?'} MB: growth ${liveGrowth.toFixed(1)} MB <= 10% or 2 MB`,
        endGc !== undefined &&
          warmGc !== undefined &&
          endGc !== warmGc &&
          liveGrowth <= Math.max(2, 0.1 * warmGc.live),
      ],
    ];
    return { lines, checks };
  } finally {
    if (daemon !== undefined && daemon.exitCode === null) {
      const gone = new Promise((r) => daemon?.on('exit', r));
      daemon.kill('SIGTERM');
      await Promise.race([gone, sleep(5000)]);
    }
    upstream.p.removeAllListeners('exit');
    upstream.p.kill();
    // CORDON_BENCH_SOAK_KEEP=1 keeps the log and the daemon's output for a look afterwards.
    if (process.env['CORDON_BENCH_SOAK_KEEP'] === '1') {
      writeFileSync(join(dir, 'daemon.out'), daemonOut);
      console.error(`soak bench: kept ${dir}`);
    } else rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Options from CORDON_BENCH_SOAK_* (or `--sessions N --seconds S --daemon-flags '...'` when run
 * on its own).
 */
export function soakOptions(argv: readonly string[] = []): SoakOptions {
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const num = (name: string, envName: string, dflt: number): number => {
    const raw = arg(name) ?? process.env[envName];
    const n = raw === undefined ? dflt : Number(raw);
    if (!Number.isFinite(n) || n <= 0)
      throw new Error(`soak bench: --${name} / ${envName} must be a positive number, not ${raw}`);
    return n;
  };
  const seconds = num('seconds', 'CORDON_BENCH_SOAK_SECONDS', 60);
  return {
    sessions: Math.floor(num('sessions', 'CORDON_BENCH_SOAK_SESSIONS', 20)),
    seconds,
    baselineSeconds: num(
      'baseline-seconds',
      'CORDON_BENCH_SOAK_BASELINE_SECONDS',
      Math.min(seconds, 15),
    ),
    sampleSeconds: num('sample', 'CORDON_BENCH_SOAK_SAMPLE_SECONDS', 3),
    daemonFlags: (arg('daemon-flags') ?? process.env['CORDON_BENCH_SOAK_DAEMON_FLAGS'] ?? '')
      .split(' ')
      .filter(Boolean),
  };
}

// Run on its own: node dist-bench/bench/soak.js [--sessions N] [--seconds S]
//   [--daemon-flags '--heap-growing-percent=0'] (node flags for the daemon, e.g. V8's default
//   heap growth to measure beside the daemon's own)
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await benchSoak(soakOptions(process.argv.slice(2)));
  for (const line of r.lines) console.log(line);
  for (const [text, ok] of r.checks) console.log(`  ${ok ? 'PASS' : 'FAIL'}  ${text}`);
  if (r.checks.some(([, ok]) => !ok)) process.exitCode = 1;
}
