import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../fixtures/cedar-stress.mjs', import.meta.url));
const bin = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

function run(
  args: string[],
): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code, signal) => res({ code, signal, out, err }));
  });
}

describe('Cedar under load, as the cordon bin runs it', () => {
  it('the bin starts Node with JS-to-wasm inlining off', async () => {
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(bin, 'utf8').split('\n')[0]).toBe(
      '#!/usr/bin/env -S node --no-turbo-inline-js-wasm-calls',
    );
  });

  it('30 processes of 10,000 guardrail decisions each finish with 0 crashes', async () => {
    const PROCESSES = 30;
    const PARALLEL = 3;
    const results: Awaited<ReturnType<typeof run>>[] = [];
    for (let i = 0; i < PROCESSES; i += PARALLEL) {
      results.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(PARALLEL, PROCESSES - i) }, () =>
            run(['--no-turbo-inline-js-wasm-calls', script, '10000']),
          ),
        )),
      );
    }
    const crashed = results.filter((r) => r.code !== 0);
    expect(crashed.map((r) => `${r.code ?? r.signal ?? ''} ${r.err.slice(0, 300)}`)).toEqual([]);
    for (const r of results) expect((JSON.parse(r.out) as { ran: number }).ran).toBe(10000);
  }, 600_000);
});
