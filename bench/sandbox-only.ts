// `node dist-bench/bench/sandbox-only.js`: the `cordon run` and `cordon quarantine` benchmarks alone.
import { benchSandbox } from './sandbox.js';

const r = await benchSandbox(Number(process.env['CORDON_BENCH_RUN_ROUNDS'] ?? '15'));
for (const line of r.lines) console.log(line);
console.log('');
for (const [text, ok] of r.checks) console.log(`  ${ok ? 'PASS' : 'FAIL'}  ${text}`);
if (r.checks.some(([, ok]) => !ok)) process.exitCode = 1;
