// `node dist-bench/bench/daemon-only.js`: the endpoint service benchmarks alone.
import { benchDaemon } from './daemon.js';

const r = await benchDaemon({
  appendsPerClient: Number(process.env['CORDON_BENCH_DAEMON_APPENDS'] ?? '25000'),
});
for (const line of r.lines) console.log(line);
console.log('');
for (const [text, ok] of r.checks) console.log(`  ${ok ? 'PASS' : 'FAIL'}  ${text}`);
if (r.checks.some(([, ok]) => !ok)) process.exitCode = 1;
