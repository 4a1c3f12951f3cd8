// `node dist-bench/bench/egress-only.js`: the egress proxy benchmarks alone.
import { benchEgress } from './egress.js';

const r = await benchEgress(Number(process.env['CORDON_BENCH_PROXY_SOAK_SECONDS'] ?? '60'));
for (const line of r.lines) console.log(line);
console.log('');
for (const [text, ok] of r.checks) console.log(`  ${ok ? 'PASS' : 'FAIL'}  ${text}`);
if (r.checks.some(([, ok]) => !ok)) process.exitCode = 1;
