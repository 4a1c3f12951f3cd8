import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEnv, startUpstreams, type ProxyEnv, type Upstreams } from './harness.js';

const GIB = 1024 * 1024 * 1024;
let up: Upstreams;
let env: ProxyEnv;
beforeAll(async () => {
  up = await startUpstreams();
  env = await startEnv({ up });
});
afterAll(async () => {
  await env.close();
  await up.close();
});

/** Peak RSS growth (MB) of this process (proxy and servers) while `work` runs. */
async function peakGrowth<T>(work: () => Promise<T>): Promise<{ value: T; growthMb: number }> {
  global.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 50);
  try {
    const value = await work();
    return { value, growthMb: (peak - base) / 1024 / 1024 };
  } finally {
    clearInterval(timer);
  }
}

/** Run curl through the proxy; `input` is streamed to its stdin. */
function curlRun(
  args: string[],
  input?: (stdin: NodeJS.WritableStream) => void,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(
      'curl',
      ['-sS', '-x', env.proxy.url, '--noproxy', '', '--max-time', '180', ...args],
      { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } },
    );
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    if (input !== undefined) input(p.stdin);
    else p.stdin.end();
  });
}

const CHUNK = Buffer.alloc(1024 * 1024);
for (let i = 0; i < CHUNK.length; i++) CHUNK[i] = (i * 13 + 5) & 0xff;

/** Write 1 GiB to `out` with backpressure, hashing what was written. */
function feed(out: NodeJS.WritableStream, hash: ReturnType<typeof createHash>): void {
  let left = GIB / CHUNK.length;
  const pump = (): void => {
    while (left > 0) {
      left--;
      hash.update(CHUNK);
      if (!out.write(CHUNK)) {
        out.once('drain', pump);
        return;
      }
    }
    out.end();
  };
  pump();
}

async function eventWith(
  pred: (e: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  for (let i = 0; i < 200; i++) {
    const e = (await env.events()).find(pred);
    if (e !== undefined) return e;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('event not found');
}

describe('egress proxy: large transfers stream with constant memory', () => {
  it('uploads 1 GiB (chunked) through the proxy intact, and the event counts every byte', async () => {
    const sent = createHash('sha256');
    const { value: r, growthMb } = await peakGrowth(() =>
      curlRun(['-T', '-', `http://app.test:${up.httpPort}/echo`], (stdin) => feed(stdin, sent)),
    );
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ bytes: GIB, sha256: sent.digest('hex') });
    expect(growthMb).toBeLessThan(128);
    const ev = await eventWith(
      (e) => e['class_uid'] === 4002 && e['activity_name'] === 'Put' && e['traffic'] !== undefined,
    );
    expect(ev['traffic']).toMatchObject({ bytes_out: GIB });
  });

  it('downloads 1 GiB over plain HTTP and 1 GiB through a TLS tunnel', async () => {
    const { value: plain, growthMb: g1 } = await peakGrowth(() =>
      curlRun([
        '-o',
        '/dev/null',
        '-w',
        '%{size_download}',
        `http://app.test:${up.httpPort}/bytes?n=${GIB}`,
      ]),
    );
    expect(plain.stdout).toBe(String(GIB));
    expect(g1).toBeLessThan(128);
    const ev = await eventWith(
      (e) =>
        e['class_uid'] === 4002 &&
        (e['traffic'] as { bytes_in?: number } | undefined)?.bytes_in === GIB,
    );
    expect(ev['http_status']).toBe(200);
    const { value: tunnel, growthMb: g2 } = await peakGrowth(() =>
      curlRun([
        '--cacert',
        up.ca,
        '-o',
        '/dev/null',
        '-w',
        '%{size_download}',
        `https://secure.test:${up.httpsPort}/bytes?n=${GIB}`,
      ]),
    );
    expect(tunnel.stdout).toBe(String(GIB));
    expect(g2).toBeLessThan(128);
    const close = await eventWith((e) => e['activity_name'] === 'Close');
    expect((close['traffic'] as { bytes_in: number }).bytes_in).toBeGreaterThan(GIB);
  });
});
