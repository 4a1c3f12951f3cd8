import { statSync, existsSync, writeFileSync } from 'node:fs';
import { parseResolveEntries, staticResolver } from '../../src/egress/resolver.js';
import { MAX_DESTINATIONS, OTHER_DESTINATIONS } from '../../src/egress/proxy.js';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  curl,
  getOver,
  pdpFor,
  raw,
  scopesFor,
  startEnv,
  startUpstreams,
  tlsTunnel,
  MANIFEST_REF,
  type ProxyEnv,
  type Upstreams,
} from './harness.js';
import { OCSF_DIR, OcsfSchema } from '../audit/ocsf-schema.js';

const schema = new OcsfSchema(OCSF_DIR);
let up: Upstreams;
beforeAll(async () => {
  up = await startUpstreams();
});
afterAll(async () => {
  await up.close();
});

type Ev = Record<string, unknown>;

async function until(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function withEnv(
  fn: (env: ProxyEnv) => Promise<void>,
  opts: Parameters<typeof startEnv>[0] = {},
): Promise<void> {
  const env = await startEnv({ up, ...opts });
  try {
    await fn(env);
  } finally {
    await env.close();
  }
}

describe('egress proxy: reload, deny-all, shutdown', () => {
  it('reload keeps tunnels the new manifest allows and closes the others', async () => {
    await withEnv(async (env) => {
      const byName = await tlsTunnel(env.proxy.port, 'secure.test', up.httpsPort, up.ca);
      const byIp = await tlsTunnel(env.proxy.port, '127.0.0.1', up.httpsPort, up.ca);
      expect(await getOver(byName)).toMatch(/200/);
      expect(await getOver(byIp, '/', '127.0.0.1')).toMatch(/200/);
      const narrowed = scopesFor(up).filter((s) => !s.startsWith('https://secure.test'));
      const closed = env.proxy.reload(pdpFor(narrowed), { ...MANIFEST_REF, version: '1.0.1' });
      expect(closed).toBe(1);
      await until(() => byName.destroyed);
      // The other tunnel was never interrupted.
      expect(await getOver(byIp, '/', '127.0.0.1')).toMatch(/200/);
      const events = await env.events();
      const close = events.find(
        (e) =>
          e['activity_name'] === 'Close' && (e['tls'] as Ev | undefined)?.['sni'] === 'secure.test',
      );
      expect(close).toMatchObject({ disposition: 'Blocked', status_code: 'NOT_GRANTED' });
      // New tunnels are decided under the new manifest.
      await expect(tlsTunnel(env.proxy.port, 'secure.test', up.httpsPort, up.ca)).rejects.toThrow(
        /403/,
      );
      byIp.destroy();
    });
  });

  it('reload re-checks the address a tunnel reached: a withdrawn IP-literal grant closes it', async () => {
    await withEnv(async (env) => {
      // secure.test resolves to 127.0.0.1, allowed only because that literal is granted too.
      const t = await tlsTunnel(env.proxy.port, 'secure.test', up.httpsPort, up.ca);
      expect(await getOver(t)).toMatch(/200/);
      const withoutLiteral = scopesFor(up).filter((s) => s !== `https://127.0.0.1:${up.httpsPort}`);
      expect(env.proxy.reload(pdpFor(withoutLiteral), MANIFEST_REF)).toBe(1);
      await until(() => t.destroyed);
      const close = (await env.events()).find((e) => e['activity_name'] === 'Close');
      expect(close).toMatchObject({ status_code: 'NET_INTERNAL_ADDRESS' });
    });
  });

  it('deny-all closes every tunnel and connection at once and denies everything after', async () => {
    await withEnv(async (env) => {
      const tunnels = await Promise.all(
        [1, 2, 3].map(() => tlsTunnel(env.proxy.port, 'secure.test', up.httpsPort, up.ca)),
      );
      for (const t of tunnels) expect(await getOver(t)).toMatch(/200/);
      const started = Date.now();
      env.proxy.denyAll('quarantined by the SOC');
      await until(() => tunnels.every((t) => t.destroyed));
      expect(Date.now() - started).toBeLessThan(1000);
      const r = await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`]);
      expect(r.status).toBe(403);
      expect(r.headers).toMatch(/code=PROXY_DENY_ALL/);
      expect(r.body).toMatch(/quarantined by the SOC/);
      env.proxy.resume();
      expect((await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`])).status).toBe(200);
    });
  });

  it('drains an exchange in flight on shutdown and refuses new connections', async () => {
    const env = await startEnv({ up });
    const pending = curl(env.proxy.url, [`http://app.test:${up.httpPort}/slow?ms=700`]);
    await until(() => env.proxy.stats().exchanges === 1);
    const closing = env.proxy.close();
    const r = await pending;
    expect(r.status).toBe(200);
    expect(r.body).toBe('slow ok');
    await closing;
    const after = await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`]);
    expect(after.status).toBe(0);
    await env.close();
  });

  it('denies everything once the audit log cannot record (fail closed)', async () => {
    await withEnv(async (env) => {
      expect((await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`])).status).toBe(200);
      await env.log.close(); // further appends are refused, as on a broken disk
      // A tunnel's open must be recorded before any byte goes upstream: this one never opens.
      const before = up.rawSockets.length;
      const t = await curl(env.proxy.url, [`https://secure.test:${up.httpsPort}/`], up.ca);
      expect(t.code).not.toBe(0);
      expect(up.rawSockets.length).toBe(before);
      const r = await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`]);
      expect(r.status).toBe(403);
      expect(r.headers).toMatch(/rule=audit; code=DECISION_UNRECORDED/);
      expect(env.diagnostics.join('\n')).toMatch(/audit/);
    });
  });
});

describe('egress proxy: accounting', () => {
  it('reports long-lived tunnels and exchanges periodically; the intervals add up to the totals', async () => {
    await withEnv(
      async (env) => {
        const t = await tlsTunnel(env.proxy.port, 'secure.test', up.httpsPort, up.ca);
        const raw0 = up.rawSockets[up.rawSockets.length - 1];
        const stop = Date.now() + 2600;
        while (Date.now() < stop) {
          await getOver(t, '/bytes?n=20000');
          await new Promise((r) => setTimeout(r, 150));
        }
        t.end();
        const drip = await curl(env.proxy.url, [
          `http://app.test:${up.httpPort}/drip?chunks=25&ms=100`,
        ]);
        expect(drip.body.length).toBe(25_000);
        await until(async () => (await env.events()).some((e) => e['activity_name'] === 'Close'));
        const events = await env.events();
        const uid = (events.find((e) => e['activity_name'] === 'Open')?.['connection_info'] as Ev)[
          'uid'
        ];
        const mine = events.filter(
          (e) => (e['connection_info'] as Ev | undefined)?.['uid'] === uid,
        );
        const traffic = mine.filter((e) => e['activity_name'] === 'Traffic');
        expect(traffic.length).toBeGreaterThanOrEqual(2);
        const close = mine.find((e) => e['activity_name'] === 'Close') as Ev;
        const sum = (k: string): number =>
          [...traffic, close].reduce((n, e) => n + ((e['traffic'] as Ev)[k] as number), 0);
        const total = close['cumulative_traffic'] as Ev;
        expect(sum('bytes_in')).toBe(total['bytes_in']);
        expect(sum('bytes_out')).toBe(total['bytes_out']);
        expect(total['bytes_in']).toBe(raw0!.bytesWritten);
        expect(total['bytes_out']).toBe(raw0!.bytesRead);
        for (const e of [...traffic, close]) expect(schema.validate(e)).toEqual([]);
        // The 2.5-second plain-HTTP download reported along the way too.
        const http = events.filter((e) => e['class_uid'] === 4002 && e['http_status'] === 200);
        const last = http[http.length - 1] as Ev;
        const dripUid = (last['connection_info'] as Ev)['uid'];
        const dripTraffic = events.filter(
          (e) =>
            e['activity_name'] === 'Traffic' && (e['connection_info'] as Ev)['uid'] === dripUid,
        );
        expect(dripTraffic.length).toBeGreaterThanOrEqual(1);
        const dripIn =
          dripTraffic.reduce((n, e) => n + ((e['traffic'] as Ev)['bytes_in'] as number), 0) +
          ((last['traffic'] as Ev)['bytes_in'] as number);
        expect(dripIn).toBe(25_000);
        expect((last['cumulative_traffic'] as Ev)['bytes_in']).toBe(25_000);
      },
      { limits: { reportIntervalMs: 1000 } },
    );
  });

  it('keeps per-destination totals', async () => {
    await withEnv(async (env) => {
      await curl(env.proxy.url, [`http://app.test:${up.httpPort}/bytes?n=3000`]);
      await curl(env.proxy.url, [`http://app.test:${up.httpPort}/bytes?n=4000`]);
      await curl(env.proxy.url, ['http://evil.test/']);
      await until(() => env.proxy.stats().exchanges === 0);
      const s = env.proxy.stats().destinations;
      expect(s.get(`app.test:${up.httpPort}`)).toMatchObject({ requests: 2, bytesIn: 7000 });
      expect(s.get('evil.test:80')).toMatchObject({ requests: 1, denied: 1 });
    });
  });
});

describe('egress proxy: bounded state', () => {
  it('caps the per-destination table when an agent invents names', async () => {
    await withEnv(async (env) => {
      const conns = 10;
      const per = Math.ceil((MAX_DESTINATIONS + 50) / conns);
      await Promise.all(
        Array.from({ length: conns }, (_, c) => {
          let reqs = '';
          for (let i = 0; i < per; i++)
            reqs += `GET http://n${c}-${i}.evil.test/ HTTP/1.1\r\nHost: n${c}-${i}.evil.test\r\n\r\n`;
          reqs +=
            'GET http://last.evil.test/ HTTP/1.1\r\nHost: last.evil.test\r\nConnection: close\r\n\r\n';
          return raw(env.proxy.port, reqs, 60_000);
        }),
      );
      const d = env.proxy.stats().destinations;
      expect(d.size).toBe(MAX_DESTINATIONS + 1);
      expect(d.get(OTHER_DESTINATIONS)?.denied).toBeGreaterThanOrEqual(50);
    });
  }, 120_000);
});

describe('egress proxy: connection cap', () => {
  it('refuses connections over maxConnections, reports them, and serves again once below', async () => {
    await withEnv(
      async (env) => {
        const held = await Promise.all(
          [1, 2, 3].map(
            () =>
              new Promise<net.Socket>((resolve) => {
                const s = net.connect(env.proxy.port, '127.0.0.1', () => resolve(s));
                s.on('error', () => undefined);
              }),
          ),
        );
        await until(() => env.proxy.stats().clients === 3);
        const over = await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`]);
        expect(over.status).toBe(0);
        expect(env.proxy.stats().dropped).toBeGreaterThanOrEqual(1);
        await until(async () =>
          (await env.events()).some((e) => e['status_code'] === 'PROXY_OVERLOADED'),
        );
        for (const s of held) s.destroy();
        await until(() => env.proxy.stats().clients === 0);
        expect((await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`])).status).toBe(200);
      },
      { limits: { maxConnections: 3 } },
    );
  });
});

describe('egress proxy: Unix socket', () => {
  it('listens on a 0600 socket, serves through it, and removes it on close', async () => {
    const env = await startEnv({ up, unix: true });
    const path = join(env.dir, 'proxy.sock');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const body = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        {
          socketPath: path,
          path: `http://app.test:${up.httpPort}/bytes?n=10`,
          headers: { Host: `app.test:${up.httpPort}` },
        },
        (res) => {
          let b = '';
          res.on('data', (d: Buffer) => (b += d.toString('latin1')));
          res.on('end', () => resolve(`${res.statusCode} ${b.length}`));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(body).toBe('200 10');
    await env.proxy.close();
    expect(existsSync(path)).toBe(false);
    await env.close();
  });

  it('a bad client on the socket does not stop the proxy', async () => {
    await withEnv(async (env) => {
      const r = await raw(env.proxy.port, 'garbage\r\n\r\n');
      expect(r.text).toMatch(/^HTTP\/1\.1 400/);
      expect((await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`])).status).toBe(200);
    });
  });
});

describe('egress proxy: startup errors', () => {
  it('fails with PROXY_LISTEN_FAILED on a port in use or a path that is not a socket', async () => {
    const env = await startEnv({ up });
    try {
      await expect(startEnv({ up, port: env.proxy.port })).rejects.toMatchObject({
        code: 'PROXY_LISTEN_FAILED',
      });
      const file = join(env.dir, 'not-a-socket');
      writeFileSync(file, 'x');
      await expect(startEnv({ up, unixPath: file })).rejects.toMatchObject({
        code: 'PROXY_LISTEN_FAILED',
      });
    } finally {
      await env.close();
    }
  });

  it('refuses a malformed --resolve entry', () => {
    expect(() => parseResolveEntries(['app.test'])).toThrow(
      expect.objectContaining({ code: 'RESOLVE_ENTRY_INVALID' }),
    );
    expect(() => staticResolver({ 'a.test': ['not-an-ip'] })).toThrow(
      expect.objectContaining({ code: 'RESOLVE_ENTRY_INVALID' }),
    );
    expect(parseResolveEntries(['a.test=1.2.3.4,[::1]', 'a.test=5.6.7.8'])).toEqual({
      'a.test': ['1.2.3.4', '::1', '5.6.7.8'],
    });
  });
});
