import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { raw, startEnv, startUpstreams, type ProxyEnv, type Upstreams } from './harness.js';

let up: Upstreams;
let env: ProxyEnv;
beforeAll(async () => {
  up = await startUpstreams();
  env = await startEnv({ up, socks: true });
});
afterAll(async () => {
  await env.close();
  await up.close();
});

/** curl through the SOCKS5 listener; `h` makes the proxy resolve names (socks5h). */
function curlSocks(
  url: string,
  resolveRemotely = true,
): Promise<{ code: number; body: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      [
        '-sS',
        '--noproxy',
        '',
        '--max-time',
        '20',
        '--cacert',
        up.ca,
        '-x',
        `${resolveRemotely ? 'socks5h' : 'socks5'}://127.0.0.1:${env.proxy.socksPort}`,
        url,
      ],
      { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } },
      (err, stdout, stderr) =>
        resolve({
          code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1,
          body: stdout,
          stderr,
        }),
    );
  });
}

describe('egress proxy: SOCKS5', () => {
  it('tunnels an allowed HTTPS request (the ClientHello checked as for CONNECT) and plain HTTP', async () => {
    const r = await curlSocks(`https://secure.test:${up.httpsPort}/bytes?n=4096`);
    expect(r.stderr).toBe('');
    expect(r.body.length).toBe(4096);
    const h = await curlSocks(`http://app.test:${up.httpPort}/bytes?n=10`);
    expect(h.body.length).toBe(10);
    const events = await env.events();
    expect(
      events.some((e) => e['activity_name'] === 'Open' && e['status_code'] === 'ALLOWED'),
    ).toBe(true);
  });

  it('refuses what the manifest does not grant, internal addresses, and rebinding names', async () => {
    for (const [url, remote] of [
      ['https://evil.test/', true],
      [`http://rebind.test:${up.hiddenPort}/`, true],
      ['http://169.254.169.254/latest/', false],
    ] as const) {
      const r = await curlSocks(url, remote);
      expect(r.code, url).not.toBe(0);
      expect(r.stderr, url).toMatch(/SOCKS5|connection/i);
    }
    const codes = (await env.events()).map((e) => e['status_code']);
    expect(codes).toContain('NOT_GRANTED');
    expect(codes).toContain('NET_INTERNAL_ADDRESS');
  });

  it('answers other commands, versions and address types with SOCKS errors', async () => {
    const port = env.proxy.socksPort;
    const bind = await raw(port, Buffer.from([5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80]));
    expect([...Buffer.from(bind.text, 'latin1')]).toEqual([5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
    const v4 = await raw(port, Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0]));
    expect(v4.closed).toBe(true);
    const auth = await raw(port, Buffer.from([5, 1, 2]));
    expect([...Buffer.from(auth.text, 'latin1')]).toEqual([5, 0xff]);
    const atyp = await raw(port, Buffer.from([5, 1, 0, 5, 1, 0, 9, 0, 0]));
    expect([...Buffer.from(atyp.text, 'latin1')]).toEqual([5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0]);
    const malformed = (await env.events()).filter((e) => e['status_code'] === 'REQUEST_MALFORMED');
    expect(malformed.length).toBeGreaterThanOrEqual(3);
  });
});
