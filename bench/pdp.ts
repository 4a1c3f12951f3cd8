import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { Manifest } from '../src/manifest/schema.js';
import { cedarCallFor, loadGuardrails } from '../src/policy/guardrails.js';
import { createPdp, type Pdp } from '../src/policy/pdp.js';
import { manifestToCedar } from '../src/policy/to-cedar.js';
import type { PolicyRequest } from '../src/policy/types.js';
import { createFsPathResolver } from '../src/store/path-resolver.js';
import { benchManifest, benchRequests, HOME } from './fixtures.js';

export interface LatencyRow {
  name: string;
  meanUs: number;
  p50Us: number;
  p99Us: number;
  perSecond: number;
}

const TIMER_SAMPLES = 200_000;

/** Overhead of reading the clock twice, subtracted from per-call samples. */
function timerOverheadNs(): number {
  const xs = new Float64Array(TIMER_SAMPLES);
  for (let i = 0; i < TIMER_SAMPLES; i++) {
    const s = process.hrtime.bigint();
    xs[i] = Number(process.hrtime.bigint() - s);
  }
  xs.sort();
  return xs[TIMER_SAMPLES >> 1] ?? 0;
}

/** Per-call latency percentiles (clock overhead subtracted) and throughput of a separate timed loop. */
export function latency(
  name: string,
  fn: (i: number) => void,
  samples: number,
  overheadNs: number,
): LatencyRow {
  for (let i = 0; i < Math.min(samples, 100_000); i++) fn(i);
  // (warm-up: as many calls as samples, at most 100,000)
  const xs = new Float64Array(samples);
  for (let i = 0; i < samples; i++) {
    const s = process.hrtime.bigint();
    fn(i);
    xs[i] = Math.max(0, Number(process.hrtime.bigint() - s) - overheadNs);
  }
  xs.sort();
  const start = process.hrtime.bigint();
  for (let i = 0; i < samples; i++) fn(i);
  const meanNs = Number(process.hrtime.bigint() - start) / samples;
  return {
    name,
    meanUs: meanNs / 1000,
    p50Us: (xs[samples >> 1] ?? 0) / 1000,
    p99Us: (xs[Math.floor(samples * 0.99)] ?? 0) / 1000,
    perSecond: 1e9 / meanNs,
  };
}

let bundle = 0;
let freshSession = 0;
/** The same requests decided by Cedar alone, with the manifest translated by to-cedar. */
function cedarAlone(m: Manifest, reqs: readonly PolicyRequest[]): (i: number) => void {
  const id = `bench-cedar-${++bundle}`;
  const text = manifestToCedar(m, { home: HOME });
  const pre = cedar.preparsePolicySet(id, { staticPolicies: text });
  if (pre.type !== 'success') throw new Error('cedar preparse failed');
  const calls = reqs.map((req) => cedarCallFor(m, req, id, false));
  return (i: number) => {
    const a = cedar.statefulIsAuthorized(
      calls[i % calls.length] as cedar.StatefulAuthorizationCall,
    );
    if (a.type !== 'success') throw new Error('cedar failed');
  };
}

export interface PdpBench {
  rows: LatencyRow[];
  coldMs: { manifestOnly: number; withGuardrails: number; nodeBoot: number };
  realpathUs: number;
  cedarRatio: number;
}

export function benchPdp(): PdpBench {
  const overhead = timerOverheadNs();
  const rows: LatencyRow[] = [];
  let cedarRatio = 0;
  const examples = new URL('../../examples/guardrails/', import.meta.url);
  const guardrails = loadGuardrails(
    readdirSync(examples).map((f) => ({
      name: f,
      text: readFileSync(new URL(f, examples), 'utf8'),
    })),
  );
  const sizes: [string, [number, number, number, number]][] = [
    ['realistic (50 paths, 20 hosts, 20 commands, 20 scopes)', [50, 20, 20, 20]],
    ['large (1,000 entries of each kind)', [1000, 1000, 1000, 1000]],
  ];
  for (const [label, size] of sizes) {
    const m = benchManifest(...size);
    const reqs = benchRequests(...size);
    const pdp: Pdp = createPdp({ manifest: m, home: HOME });
    const manifestRow = latency(
      `manifest layer, ${label}`,
      (i) => void pdp.decide(reqs[i % reqs.length] as PolicyRequest),
      500_000,
      overhead,
    );
    rows.push(manifestRow);
    const withG = createPdp({ manifest: m, home: HOME, guardrails });
    rows.push(
      latency(
        `with Cedar guardrails, repeated requests, ${label}`,
        (i) => void withG.decide(reqs[i % reqs.length] as PolicyRequest),
        20_000,
        overhead,
      ),
    );
    // A new session id per call makes every request new to Cedar: no outcome can be reused.
    rows.push(
      latency(
        `with Cedar guardrails, every request new, ${label}`,
        (i) =>
          void withG.decide({
            ...(reqs[i % reqs.length] as PolicyRequest),
            session: `s${++freshSession}`,
          }),
        size[0] > 100 ? 1_000 : 10_000,
        overhead,
      ),
    );
    // Cedar evaluates every policy of the set per request: on the large manifest each call takes milliseconds.
    const alone = latency(
      `baseline: Cedar alone (manifest as Cedar), ${label}`,
      cedarAlone(m, reqs),
      size[0] > 100 ? 500 : 20_000,
      overhead,
    );
    rows.push(alone);
    if (size[0] === 50) cedarRatio = alone.meanUs / manifestRow.meanUs;
  }
  const resolver = createFsPathResolver();
  const paths = [
    '/usr/bin/env',
    '/usr/lib/os-release',
    '/etc/hosts',
    '/usr/local/bin/does-not-exist/x',
    '/proc/cpuinfo',
  ];
  const rp = latency(
    'realpath resolution (lstat per component; excluded from the manifest layer)',
    (i) => void resolver(paths[i % paths.length] as string),
    50_000,
    overhead,
  );
  rows.push(rp);
  // Medians of 5 runs of [ms from process start, ms from the script's first line] to the first decision.
  const cold = (args: string[]): [number, number] => {
    const script = fileURLToPath(new URL('./cold.js', import.meta.url));
    const xs: [number, number][] = [];
    for (let i = 0; i < 5; i++) {
      const r = spawnSync(process.execPath, ['--no-turbo-inline-js-wasm-calls', script, ...args], {
        encoding: 'utf8',
      });
      if (r.status !== 0) throw new Error(r.stderr);
      const [total = 0, own = 0] = r.stdout.split(' ').map(Number);
      xs.push([total, own]);
    }
    xs.sort((a, b) => a[1] - b[1]);
    return xs[2] ?? [0, 0];
  };
  const plain = cold([]);
  const guarded = cold(['--guardrails']);
  return {
    rows,
    coldMs: { manifestOnly: plain[1], withGuardrails: guarded[1], nodeBoot: plain[0] - plain[1] },
    realpathUs: rp.meanUs,
    cedarRatio,
  };
}
