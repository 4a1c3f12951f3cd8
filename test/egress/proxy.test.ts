import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { WebSocket } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OCSF_DIR, OcsfSchema } from '../audit/ocsf-schema.js';
import {
  curl,
  fetch,
  raw,
  startEnv,
  startUpstreams,
  viaProxy,
  MANIFEST_REF,
  type ProxyEnv,
  type Upstreams,
} from './harness.js';
import { writeFileSync } from 'node:fs';
import { tempDir } from '../helpers.js';
import { join } from 'node:path';

const schema = new OcsfSchema(OCSF_DIR);
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

type Ev = Record<string, unknown>;
const get = (e: Ev, path: string): unknown =>
  path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], e);

async function waitFor<T>(fn: () => Promise<T | undefined>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The first event after `since` events matching `pred`. */
async function eventWhere(since: number, pred: (e: Ev) => boolean): Promise<Ev> {
  return waitFor(async () => (await env.events()).slice(since).find(pred));
}

const count = async (): Promise<number> => (await env.events()).length;

function decisionHeader(headers: string): string | undefined {
  return /^x-cordon-decision: (.*)$/im.exec(headers)?.[1]?.trim();
}

describe('egress proxy: plain HTTP', () => {
  it('forwards an allowed request (curl and fetch) and records it with status and bytes', async () => {
    const n0 = await count();
    const r = await curl(env.proxy.url, [`http://app.test:${up.httpPort}/bytes?n=1234`]);
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(1234);
    const ev = await eventWhere(n0, (e) => e['class_uid'] === 4002 && e['traffic'] !== undefined);
    // The decision was recorded before the request went upstream; the end carries the same uid.
    const uid = get(ev, 'http_request.uid');
    expect(typeof uid).toBe('string');
    const all = (await env.events()).slice(n0);
    const decision = all.find((e) => get(e, 'http_request.uid') === uid);
    expect(decision).toMatchObject({ status_code: 'ALLOWED', disposition: 'Allowed' });
    expect(decision?.['traffic']).toBeUndefined();
    const endAt = all.findIndex(
      (e) => get(e, 'http_request.uid') === uid && e['traffic'] !== undefined,
    );
    expect(all.indexOf(decision!)).toBeLessThan(endAt);
    expect(schema.validate(decision!)).toEqual([]);
    expect(ev).toMatchObject({
      activity_name: 'Get',
      status_code: 'ALLOWED',
      http_status: 200,
      traffic: { bytes_in: 1234, bytes_out: 0 },
      dst_endpoint: { hostname: 'app.test', ip: '127.0.0.1', port: up.httpPort },
      policy: { name: '/networkScopes/0', uid: MANIFEST_REF.digest },
    });
    expect(schema.validate(ev)).toEqual([]);
    const res = await fetch(`http://app.test:${up.httpPort}/echo`, {
      method: 'POST',
      body: 'x'.repeat(5000),
      dispatcher: viaProxy(env.proxy.url),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ bytes: 5000 });
  });

  it('denies a host outside the manifest with 403, the decision header, a readable body and an event', async () => {
    const n0 = await count();
    const r = await curl(env.proxy.url, ['http://evil.test/collect?x=1']);
    expect(r.status).toBe(403);
    expect(decisionHeader(r.headers)).toBe('deny; rule=default-deny; code=NOT_GRANTED');
    expect(r.body).toMatch(/Cordon denied GET http:\/\/evil\.test/);
    expect(r.body).toMatch(/code: NOT_GRANTED/);
    const ev = await eventWhere(n0, (e) => e['class_uid'] === 4002);
    expect(ev).toMatchObject({
      status_code: 'NOT_GRANTED',
      disposition: 'Blocked',
      http_status: 403,
    });
    expect(schema.validate(ev)).toEqual([]);
    // fetch sending absolute-form requests sees the 403 and its header ...
    const res = await fetch('http://evil.test/', {
      dispatcher: viaProxy(env.proxy.url, undefined, false),
    });
    expect(res.status).toBe(403);
    expect(res.headers.get('x-cordon-decision')).toMatch(/code=NOT_GRANTED/);
    // ... and fetch tunnelling http:// through CONNECT (undici's default) fails on the 403.
    await expect(
      fetch('http://evil.test/', { dispatcher: viaProxy(env.proxy.url) }),
    ).rejects.toThrow();
  });

  it('denies a granted host on another port', async () => {
    const r = await curl(env.proxy.url, [`http://app.test:${up.httpPort + 1}/`]);
    expect(r.status).toBe(403);
    expect(decisionHeader(r.headers)).toMatch(/code=NOT_GRANTED/);
  });

  it('denies the metadata address and granted names that resolve inside (rebinding)', async () => {
    for (const url of [
      'http://169.254.169.254/latest/meta-data/',
      'http://meta.test/latest/meta-data/',
      `http://rebind.test:${up.hiddenPort}/`,
      // One public and one loopback answer: any internal answer refuses the name.
      `http://split.test:${up.hiddenPort}/`,
      `http://localhost:${up.httpPort}/`,
    ]) {
      const r = await curl(env.proxy.url, [url]);
      expect(r.status, url).toBe(403);
      expect(decisionHeader(r.headers), url).toMatch(
        /rule=internal-address; code=NET_INTERNAL_ADDRESS/,
      );
    }
  });

  it('denies every notation of a denied address: decimal, octal, hex, short and IPv6-mapped', async () => {
    // Sent raw so that no client normalises the address first.
    for (const host of [
      '2852039166',
      '0251.0376.0251.0376',
      '0xa9fea9fe',
      '0xa9.0xfe.0xa9.0xfe',
      '169.254.43518',
      '[::ffff:169.254.169.254]',
      '[::ffff:a9fe:a9fe]',
      '[64:ff9b::a9fe:a9fe]',
      '[64:ff9b:1::a9fe:a9fe]',
      '[::ffff:0:169.254.169.254]',
      `[::ffff:0:127.0.0.1]:${up.hiddenPort}`,
      `2130706433:${up.hiddenPort}`,
      `0x7f.1:${up.hiddenPort}`,
      `[::ffff:127.0.0.1]:${up.hiddenPort}`,
    ]) {
      const r = await raw(
        env.proxy.port,
        `GET http://${host}/latest/ HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      );
      expect(r.text, host).toMatch(/^HTTP\/1\.1 403 /);
      expect(r.text, host).toMatch(/code=NET_INTERNAL_ADDRESS/);
      const c = await raw(
        env.proxy.port,
        `CONNECT ${host.includes(':') && !host.startsWith('[') ? host : `${host}:443`} HTTP/1.1\r\nHost: x\r\n\r\n`,
      );
      expect(c.text, `CONNECT ${host}`).toMatch(/^HTTP\/1\.1 (403|400) /);
      expect(c.text).not.toMatch(/200 Connection Established/);
    }
  });

  it('denies an absolute-form target whose Host header names another host', async () => {
    const n0 = await count();
    const r = await raw(
      env.proxy.port,
      `GET http://app.test:${up.httpPort}/ HTTP/1.1\r\nHost: internal.corp:80\r\nConnection: close\r\n\r\n`,
    );
    expect(r.text).toMatch(/^HTTP\/1\.1 403 /);
    expect(r.text).toMatch(/code=REQUEST_INVALID/);
    await eventWhere(n0, (e) => e['status_code'] === 'REQUEST_INVALID');
  });

  it('asks for approval (403 APPROVAL_REQUIRED) for a destination under requiresApproval', async () => {
    const r = await curl(env.proxy.url, [`https://ask.test:${up.httpsPort}/`], up.ca);
    expect(r.status).toBe(403);
    expect(decisionHeader(r.headers)).toMatch(/code=APPROVAL_REQUIRED/);
  });

  it('strips hop-by-hop and proxy headers before forwarding, and sets Host from the target', async () => {
    const r = await raw(
      env.proxy.port,
      `GET http://app.test:${up.httpPort}/headers HTTP/1.1\r\nHost: app.test:${up.httpPort}\r\n` +
        'Proxy-Authorization: Basic c2VjcmV0\r\nConnection: close, X-Drop\r\nX-Drop: 1\r\nX-Keep: 2\r\n\r\n',
    );
    const body = r.text.slice(r.text.indexOf('\r\n\r\n') + 4);
    const sent = (JSON.parse(body) as string[])
      .filter((_, i) => i % 2 === 0)
      .map((h) => h.toLowerCase());
    expect(sent).toContain('x-keep');
    expect(sent).not.toContain('proxy-authorization');
    expect(sent).not.toContain('x-drop');
  });

  it('keeps a connection alive across requests, and decides each one', async () => {
    const reqs =
      `GET http://app.test:${up.httpPort}/ HTTP/1.1\r\nHost: app.test:${up.httpPort}\r\n\r\n` +
      'GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n' +
      `GET http://app.test:${up.httpPort}/ HTTP/1.1\r\nHost: app.test:${up.httpPort}\r\nConnection: close\r\n\r\n`;
    const r = await raw(env.proxy.port, reqs);
    const statuses = [...r.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
    expect(statuses).toEqual(['200', '403', '200']);
  });
});

describe('egress proxy: CONNECT and TLS', () => {
  it('tunnels an allowed HTTPS request (curl and fetch) and counts the bytes exactly', async () => {
    const n0 = await count();
    const before = up.rawSockets.length;
    const file = join(tempDir(), 'body');
    writeFileSync(file, Buffer.alloc(300_000, 7));
    const r = await curl(
      env.proxy.url,
      ['--data-binary', `@${file}`, `https://secure.test:${up.httpsPort}/echo`],
      up.ca,
    );
    expect(r?.status).toBe(200);
    const ev = await eventWhere(
      n0,
      (e) => e['class_uid'] === 4001 && e['activity_name'] === 'Close',
    );
    const open = (await env.events()).slice(n0).find((e) => e['activity_name'] === 'Open');
    expect(open).toMatchObject({ status_code: 'ALLOWED', tls: { sni: 'secure.test' } });
    const sock = up.rawSockets[before];
    expect(sock).toBeDefined();
    await waitFor(() => Promise.resolve(sock!.destroyed ? true : undefined));
    expect(get(ev, 'traffic.bytes_out')).toBe(sock!.bytesRead);
    expect(get(ev, 'traffic.bytes_in')).toBe(sock!.bytesWritten);
    expect(get(ev, 'connection_info.uid')).toBe(get(open!, 'connection_info.uid'));
    expect(schema.validate(ev)).toEqual([]);
    expect(schema.validate(open!)).toEqual([]);
    const res = await fetch(`https://secure.test:${up.httpsPort}/bytes?n=100000`, {
      dispatcher: viaProxy(env.proxy.url, up.ca),
    });
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBe(100000);
  });

  it('denies CONNECT to a host outside the manifest, to a wrong port, and to a rebinding name', async () => {
    for (const [target, code] of [
      ['evil.test:443', 'NOT_GRANTED'],
      [`secure.test:${up.httpsPort + 1}`, 'NOT_GRANTED'],
      [`rebind.test:${up.hiddenPort}`, 'NET_INTERNAL_ADDRESS'],
      ['169.254.169.254:443', 'NET_INTERNAL_ADDRESS'],
    ] as const) {
      const r = await raw(env.proxy.port, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
      expect(r.text, target).toMatch(/^HTTP\/1\.1 403 /);
      expect(r.text, target).toContain(`code=${code}`);
      expect(r.closed).toBe(true);
    }
  });

  it('refuses a ClientHello whose SNI differs from the CONNECT host (openssl s_client -servername)', async () => {
    const n0 = await count();
    const out = await new Promise<string>((resolve) => {
      const p = execFile(
        'openssl',
        [
          's_client',
          '-proxy',
          `127.0.0.1:${env.proxy.port}`,
          '-connect',
          `secure.test:${up.httpsPort}`,
          '-servername',
          'other.test',
          '-CAfile',
          up.ca,
        ],
        { timeout: 10_000 },
        (_e, stdout, stderr) => resolve(stdout + stderr),
      );
      p.stdin?.end();
    });
    expect(out).toMatch(/alert access denied/);
    expect(out).not.toMatch(/BEGIN CERTIFICATE|Server certificate/);
    const ev = await eventWhere(n0, (e) => e['status_code'] === 'NET_SNI_MISMATCH');
    expect(ev).toMatchObject({ activity_name: 'Refuse', tls: { sni: 'other.test' } });
    expect(schema.validate(ev)).toEqual([]);
  });

  it('refuses a tunnel with no SNI to a name, and one that does not carry TLS', async () => {
    const noSni = await new Promise<string>((resolve) => {
      const s = net.connect(env.proxy.port, '127.0.0.1', () =>
        s.write(`CONNECT secure.test:${up.httpsPort} HTTP/1.1\r\nHost: x\r\n\r\n`),
      );
      s.once('data', () => {
        const t = tls.connect({ socket: s, ca: readFileSync(up.ca), servername: '' });
        t.on('error', (e: Error) => resolve(e.message));
        t.on('secureConnect', () => resolve('connected'));
      });
    });
    expect(noSni).toMatch(/access denied/);
    const ssh = await raw(
      env.proxy.port,
      `CONNECT secure.test:${up.httpsPort} HTTP/1.1\r\nHost: x\r\n\r\nSSH-2.0-OpenSSH_9.2p1\r\n`,
    );
    expect(ssh.text).toMatch(/200 Connection Established/);
    expect(ssh.closed).toBe(true);
    await eventWhere(0, (e) => e['status_code'] === 'NET_NOT_TLS');
    await eventWhere(0, (e) => e['status_code'] === 'NET_SNI_MISSING');
  });

  it('decides each request of a plain-HTTP tunnel like an absolute-form one', async () => {
    // Clients such as undici tunnel http:// URLs through CONNECT: the requests inside are
    // visible, so each is decided under http:// scopes (secure.test is granted only https).
    const t = await raw(
      env.proxy.port,
      `CONNECT app.test:${up.httpPort} HTTP/1.1\r\nHost: x\r\n\r\n` +
        `GET /bytes?n=10 HTTP/1.1\r\nHost: app.test:${up.httpPort}\r\n\r\n` +
        `GET / HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n`,
    );
    expect([...t.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1])).toEqual([
      '200',
      '200',
      '403',
    ]);
    expect(t.text).toContain('code=REQUEST_INVALID');
    const s = await raw(
      env.proxy.port,
      `CONNECT secure.test:${up.httpsPort} HTTP/1.1\r\nHost: x\r\n\r\n` +
        `GET / HTTP/1.1\r\nHost: secure.test:${up.httpsPort}\r\nConnection: close\r\n\r\n`,
    );
    expect(s.text).toMatch(/403 Forbidden[\s\S]*code=NOT_GRANTED/);
    const res = await fetch(`http://app.test:${up.httpPort}/bytes?n=2048`, {
      dispatcher: viaProxy(env.proxy.url),
    });
    expect((await res.arrayBuffer()).byteLength).toBe(2048);
  });

  it('allows a tunnel to a granted IP literal without SNI', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      const s = net.connect(env.proxy.port, '127.0.0.1', () =>
        s.write(`CONNECT 127.0.0.1:${up.httpsPort} HTTP/1.1\r\nHost: x\r\n\r\n`),
      );
      s.once('data', () => {
        const t = tls.connect({
          socket: s,
          ca: readFileSync(up.ca),
          servername: '',
          checkServerIdentity: (_h, cert) => tls.checkServerIdentity('127.0.0.1', cert),
        });
        t.on('error', reject);
        t.on('secureConnect', () =>
          t.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'),
        );
        let text = '';
        t.on('data', (d: Buffer) => (text += d.toString()));
        t.on('end', () => resolve(text));
      });
    });
    expect(body).toMatch(/^HTTP\/1\.1 200/);
  });

  it('carries WebSocket over CONNECT (wss) and over an absolute-form upgrade (ws)', async () => {
    for (const url of [
      `wss://secure.test:${up.httpsPort}/chat`,
      `ws://app.test:${up.httpPort}/chat`,
    ]) {
      const ws = new WebSocket(url, { dispatcher: viaProxy(env.proxy.url, up.ca) });
      const reply = await new Promise<string>((resolve, reject) => {
        ws.addEventListener('open', () => ws.send('hello'));
        ws.addEventListener('message', (m) => resolve(String(m.data)));
        ws.addEventListener('error', (e) =>
          reject(new Error(String((e as { message?: string }).message))),
        );
      });
      expect(reply, url).toBe('echo:hello');
      ws.close();
    }
  });
});

describe('egress proxy: bad traffic', () => {
  const good = async (): Promise<void> => {
    const r = await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`]);
    expect(r.status).toBe(200);
  };
  const target = (): string => `http://app.test:${up.httpPort}/echo`;
  const host = (): string => `app.test:${up.httpPort}`;

  const bad: [string, () => string, number][] = [
    [
      'Content-Length with Transfer-Encoding',
      () =>
        `POST ${target()} HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://evil.test/ HTTP/1.1\r\n\r\n`,
      400,
    ],
    [
      'duplicate Content-Length',
      () =>
        `POST ${target()} HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd`,
      400,
    ],
    [
      'Transfer-Encoding not ending in chunked',
      () =>
        `POST ${target()} HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`,
      400,
    ],
    [
      'obfuscated Transfer-Encoding',
      () =>
        `POST ${target()} HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n`,
      400,
    ],
    [
      'CR inside a header value',
      () => `GET ${target()} HTTP/1.1\r\nHost: ${host()}\r\nX-A: a\rInjected: 1\r\n\r\n`,
      400,
    ],
    [
      'LF line ending in a header',
      () => `GET ${target()} HTTP/1.1\r\nHost: ${host()}\nX-Evil: 1\r\n\r\n`,
      400,
    ],
    ['malformed request line', () => 'GET  HTTP/1.1 extra\r\n\r\n', 400],
    ['CONNECT without a port', () => 'CONNECT evil.test HTTP/1.1\r\nHost: evil.test\r\n\r\n', 400],
    ['unknown method', () => `FROB ${target()} HTTP/1.1\r\nHost: ${host()}\r\n\r\n`, 400],
    ['unsupported method', () => `PROPFIND ${target()} HTTP/1.1\r\nHost: ${host()}\r\n\r\n`, 405],
    ['TRACE', () => `TRACE ${target()} HTTP/1.1\r\nHost: ${host()}\r\n\r\n`, 405],
    [
      'an Expect other than 100-continue',
      () => `GET ${target()} HTTP/1.1\r\nHost: ${host()}\r\nExpect: 200-ok\r\n\r\n`,
      417,
    ],
    [
      'an upgrade that is not WebSocket',
      () =>
        `GET ${target()} HTTP/1.1\r\nHost: ${host()}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n`,
      400,
    ],
    ['origin-form request to the proxy', () => `GET / HTTP/1.1\r\nHost: ${host()}\r\n\r\n`, 400],
    [
      'oversized headers',
      () =>
        `GET ${target()} HTTP/1.1\r\nHost: ${host()}\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`,
      431,
    ],
    [
      'bad chunk size',
      () =>
        `POST ${target()} HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`,
      400,
    ],
  ];
  it.each(bad)(
    '%s gets a clean error and the connection closed',
    async (_name, request, status) => {
      const n0 = await count();
      const r = await raw(env.proxy.port, request());
      expect(r.text).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      // One response only: nothing smuggled behind it was answered.
      expect(r.text.match(/HTTP\/1\.1 \d{3}/g)?.length).toBe(1);
      expect(r.closed).toBe(true);
      if (status === 431) expect(r.text).toContain('HPE_HEADER_OVERFLOW');
      // Every refusal is an audit event too (the SOC sees smuggling attempts).
      const ev = await eventWhere(
        n0,
        (e) => e['activity_name'] === 'Refuse' && e['disposition'] === 'Blocked',
      );
      // Well-formed but refused (method, expectation, upgrade) vs malformed.
      const invalid = status === 405 || status === 417 || /upgrade/.test(_name);
      expect(ev['status_code']).toBe(invalid ? 'REQUEST_INVALID' : 'REQUEST_MALFORMED');
      expect(String(ev['status_detail'])).toContain(`refused with ${status}`);
      expect(schema.validate(ev)).toEqual([]);
      await good();
    },
  );

  it('closes a slowloris client that never finishes its headers, and serves others meanwhile', async () => {
    const slow = await startEnv({ up, limits: { headersTimeoutMs: 1000 } });
    try {
      const started = Date.now();
      const s = net.connect(slow.proxy.port, '127.0.0.1');
      s.on('error', () => undefined);
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.write(`GET http://app.test:${up.httpPort}/ HTTP/1.1\r\nHost: app.test\r\n`);
      const drip = setInterval(() => s.writable && s.write('X-A: b\r\n'), 200);
      const closedAfter = await new Promise<number>((r) =>
        s.on('close', () => r(Date.now() - started)),
      );
      clearInterval(drip);
      expect(closedAfter).toBeLessThan(4000);
      // Node reports the timeout as ERR_HTTP_REQUEST_TIMEOUT (HPE_HEADER_TIMEOUT in older parsers).
      expect(got).toMatch(/^HTTP\/1\.1 408 [\s\S]*(ERR_HTTP_REQUEST_TIMEOUT|HPE_HEADER_TIMEOUT)/);
      const r = await curl(slow.proxy.url, [`http://app.test:${up.httpPort}/`]);
      expect(r.status).toBe(200);
    } finally {
      await slow.close();
    }
  });

  it('survives clients that disconnect mid-request, mid-tunnel and mid-download', async () => {
    for (let i = 0; i < 5; i++) {
      const a = net.connect(env.proxy.port, '127.0.0.1');
      a.on('error', () => undefined);
      a.write(`POST ${target()} HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 100000\r\n\r\nabc`);
      const b = net.connect(env.proxy.port, '127.0.0.1');
      b.on('error', () => undefined);
      b.write(`CONNECT secure.test:${up.httpsPort} HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01`);
      const c = net.connect(env.proxy.port, '127.0.0.1');
      c.on('error', () => undefined);
      c.write(
        `GET http://app.test:${up.httpPort}/bytes?n=50000000 HTTP/1.1\r\nHost: ${host()}\r\n\r\n`,
      );
      await new Promise((r) => setTimeout(r, 60));
      a.destroy();
      b.destroy();
      c.destroy();
    }
    await good();
    await waitFor(() =>
      Promise.resolve(
        env.proxy.stats().exchanges === 0 && env.proxy.stats().tunnels === 0 ? true : undefined,
      ),
    );
  });
});
