// Endpoint service soak: N concurrent `cordon run` sessions (default 20) under one daemon, each
// agent a bash loop that makes HTTP requests through its session's proxy to a loopback upstream
// and starts processes, for D seconds (default 60). While they run, `cordon ps --json` must list
// every session and the daemon's RSS is sampled; at the end every request answered 2xx, every
// `cordon run` exited 0, the log is one chain that verifies, and RSS after warm-up stays flat.
// Baselines in the same run: the same agent loops run directly (no sandbox, no proxy) for the
// request rate, and the daemon's RSS before any session opened.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// The `cordon` bin users run: the single-file bundle.
const BIN = join(ROOT, 'dist/cli/bin.js');
const MIB = 1024 * 1024;
const TIMEOUT_S = 30;

export interface SoakOptions {
  /** Concurrent sessions. */
  readonly sessions: number;
  /** Seconds each agent loops. */
  readonly seconds: number;
  /** Seconds the direct baseline loops run. */
  readonly baselineSeconds: number;
  /** Seconds after the sessions are up before the warm-up RSS sample. */
  readonly warmupSeconds: number;
  /** Seconds between samples of `cordon ps` and the daemon's RSS. */
  readonly sampleSeconds: number;
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
    // --trace-gc only prints: after each major GC, the heap still live, which tells a leak
    // (live heap growing) from V8 letting garbage accumulate between major GCs (RSS growing).
    const daemonStart = performance.now();
    daemon = spawn(
      process.execPath,
      ['--trace-gc', '--heapsnapshot-signal=SIGUSR2', BIN, 'daemon'],
      {
        env,
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
    const samples: { t: number; rss: number; listed: number; ours: number; states: string }[] = [];
    const t0 = performance.now();
    const loads: number[] = [];
    // Sample while every agent still loops: the first summary line (an agent done, its session
    // about to close) ends the window in which every session must be listed. A sample whose
    // `cordon ps` was still running then is not counted.
    while (!s.finishing()) {
      const rss = rssOf(pid);
      const ps = await exec(process.execPath, [BIN, 'ps', '--json'], env);
      const listed =
        ps.code === 0
          ? (JSON.parse(ps.stdout) as { sessions: { clientPid: number; state: string }[] }).sessions
          : [];
      if (s.finishing()) break;
      samples.push({
        t: (performance.now() - t0) / 1000,
        rss,
        listed: listed.length,
        ours: listed.filter((x) => s.pids.includes(x.clientPid) && x.state === 'running').length,
        states: [...new Set(listed.map((x) => x.state))].join(','),
      });
      loads.push(loadavg()[0] ?? NaN);
      await sleep(o.sampleSeconds * 1000);
    }
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
    const warm = samples.find((x) => x.t >= o.warmupSeconds) ?? samples[0];
    const last = samples[samples.length - 1];
    const half = samples.find((x) => x.t >= (last?.t ?? 0) / 2);
    const steady = samples.filter((x) => x.t >= (warm?.t ?? 0));
    const peak = Math.max(...steady.map((x) => x.rss));
    const growth = (last?.rss ?? NaN) - (warm?.rss ?? NaN);
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
      `  daemon RSS: idle ${mib(idleRss)} (baseline), warm-up (${warm?.t.toFixed(0) ?? '?'} s) ${mib(warm?.rss ?? NaN)}, end (${last?.t.toFixed(0) ?? '?'} s) ${mib(last?.rss ?? NaN)}, growth ${mib(growth)} (${((growth / (warm?.rss ?? NaN)) * 100).toFixed(1)}%), peak ${mib(peak)}, after the sessions closed ${mib(afterRss)}`,
      `  daemon RSS over the second half of the soak (${half?.t.toFixed(0) ?? '?'} s to ${last?.t.toFixed(0) ?? '?'} s): ${mib(half?.rss ?? NaN)} to ${mib(last?.rss ?? NaN)}, growth ${mib((last?.rss ?? NaN) - (half?.rss ?? NaN))}`,
      `  daemon RSS 5 s after the sessions closed: ${mib(settledRss)}`,
      `  daemon live heap after each major GC (s since the sessions were up: MiB live / committed): ${gcs.map((g) => `${g.t.toFixed(0)}: ${g.live.toFixed(1)} / ${g.committed.toFixed(1)}`).join(', ')}`,
      `  RSS samples (s: MiB): ${samples.map((x) => `${x.t.toFixed(0)}:${(x.rss / MIB).toFixed(0)}`).join(' ')}`,
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
        `soak: daemon RSS flat after warm-up: growth ${mib(growth)} <= 10% of ${mib(warm?.rss ?? NaN)}`,
        growth <= 0.1 * (warm?.rss ?? NaN),
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

/** Options from CORDON_BENCH_SOAK_* (or `--sessions N --seconds S` when run on its own). */
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
    warmupSeconds: num('warmup', 'CORDON_BENCH_SOAK_WARMUP_SECONDS', Math.min(10, seconds / 4)),
    sampleSeconds: num('sample', 'CORDON_BENCH_SOAK_SAMPLE_SECONDS', 3),
  };
}

// Run on its own: node dist-bench/bench/soak.js [--sessions N] [--seconds S]
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await benchSoak(soakOptions(process.argv.slice(2)));
  for (const line of r.lines) console.log(line);
  for (const [text, ok] of r.checks) console.log(`  ${ok ? 'PASS' : 'FAIL'}  ${text}`);
  if (r.checks.some(([, ok]) => !ok)) process.exitCode = 1;
}
