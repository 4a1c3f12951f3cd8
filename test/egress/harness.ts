import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';
import { ProxyAgent, fetch as undiciFetch } from 'undici';
import { AuditLog } from '../../src/audit/log.js';
import { parseRecordLine, readAfter } from '../../src/audit/reader.js';
import { auditPaths } from '../../src/audit/store.js';
import type { ProxyLimits } from '../../src/egress/config.js';
import { EgressProxy, type AuditAppender } from '../../src/egress/proxy.js';
import { staticResolver, type Resolver } from '../../src/egress/resolver.js';
import { createPdp, type Pdp } from '../../src/policy/pdp.js';
import { deviceKey, ORIGIN } from '../audit/helpers.js';
import { ctx } from '../audit/samples.js';
import { validManifest } from '../helpers.js';
import { makeCerts } from '../tls-certs.js';

/** Bytes the test servers send: a cheap deterministic pattern, generated as it streams. */
const PATTERN = Buffer.alloc(64 * 1024);
for (let i = 0; i < PATTERN.length; i++) PATTERN[i] = (i * 31 + 7) & 0xff;

/**
 * Routes of the upstream test servers: `/bytes?n=N` streams N bytes; `/echo` reads the body
 * and answers `{bytes, sha256}`; `/slow?ms=M` answers after M ms; `/headers` returns the request
 * headers it got; anything else answers 200 "ok".
 */
function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const u = new URL(req.url ?? '/', 'http://x');
  if (u.pathname === '/bytes') {
    let left = Number(u.searchParams.get('n') ?? '0');
    res.writeHead(200, { 'Content-Length': left, 'Content-Type': 'application/octet-stream' });
    const pump = (): void => {
      while (left > 0) {
        const chunk = left >= PATTERN.length ? PATTERN : PATTERN.subarray(0, left);
        left -= chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
    return;
  }
  if (u.pathname === '/echo') {
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      h.update(c);
    });
    req.on('end', () => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ bytes: n, sha256: h.digest('hex') }));
    });
    return;
  }
  if (u.pathname === '/drip') {
    // `chunks` chunks of 1000 bytes, one every `ms` milliseconds.
    let left = Number(u.searchParams.get('chunks') ?? '5');
    res.writeHead(200, { 'Content-Length': left * 1000 });
    const timer = setInterval(
      () => {
        res.write(PATTERN.subarray(0, 1000));
        if (--left === 0) {
          clearInterval(timer);
          res.end();
        }
      },
      Number(u.searchParams.get('ms') ?? '100'),
    );
    res.on('close', () => clearInterval(timer));
    return;
  }
  if (u.pathname === '/slow') {
    setTimeout(() => res.end('slow ok'), Number(u.searchParams.get('ms') ?? '500'));
    return;
  }
  if (u.pathname === '/headers') {
    const body = JSON.stringify(req.rawHeaders);
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
    return;
  }
  req.resume();
  res.end('ok');
}

export interface Upstreams {
  /** Plain HTTP server on 127.0.0.1 whose loopback literal the manifest grants. */
  readonly httpPort: number;
  /** Plain HTTP server whose literal is not granted: names resolving to it are refused. */
  readonly hiddenPort: number;
  /** HTTPS server (certificate for secure.test, other.test, 127.0.0.1). */
  readonly httpsPort: number;
  readonly ca: string;
  /** Raw TCP sockets accepted by the HTTPS server, for exact byte counts. */
  readonly rawSockets: net.Socket[];
  /** Upgrade requests the WebSocket servers saw. */
  readonly wsSeen: string[];
  close(): Promise<void>;
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

/**
 * The test servers, with their test CA (private key included) written to `dir`. Without `dir`
 * they get a temporary directory of their own, removed by `close()`, so that no CA key is left
 * in /tmp.
 */
export async function startUpstreams(dir?: string): Promise<Upstreams> {
  const own = dir === undefined ? mkdtempSync(join(tmpdir(), 'cordon-up-')) : undefined;
  const certs = makeCerts(
    own ?? dir ?? '',
    'DNS:secure.test,DNS:other.test,DNS:ask.test,IP:127.0.0.1',
  );
  const plain = http.createServer(handler);
  const hidden = http.createServer(handler);
  const tlsServer = https.createServer(
    { key: readFileSync(certs.key), cert: readFileSync(certs.cert) },
    handler,
  );
  const wsSeen: string[] = [];
  for (const s of [plain, tlsServer]) {
    const wss = new WebSocketServer({ server: s });
    wss.on('connection', (ws, req) => {
      wsSeen.push(`${req.headers.host ?? ''}${req.url ?? ''}`);
      ws.on('message', (m: Buffer, binary) => ws.send(binary ? m : `echo:${m.toString()}`));
    });
  }
  const rawSockets: net.Socket[] = [];
  // A TCP front for the TLS server so tests can read exact on-the-wire byte counts.
  const front = net.createServer((s) => {
    rawSockets.push(s);
    tlsServer.emit('connection', s);
  });
  const httpPort = await listen(plain);
  const hiddenPort = await listen(hidden);
  const httpsPort = await listen(front);
  return {
    httpPort,
    hiddenPort,
    httpsPort,
    ca: certs.ca,
    rawSockets,
    wsSeen,
    async close() {
      for (const s of [plain, hidden, tlsServer, front]) {
        if ('closeAllConnections' in s) s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
      for (const s of rawSockets) s.destroy();
      if (own !== undefined) rmSync(own, { recursive: true, force: true });
    },
  };
}

export const NAMES = {
  'app.test': ['127.0.0.1'],
  'secure.test': ['127.0.0.1'],
  'other.test': ['127.0.0.1'],
  'ask.test': ['127.0.0.1'],
  'rebind.test': ['127.0.0.1'],
  'meta.test': ['169.254.169.254'],
  'split.test': ['203.0.113.9', '127.0.0.1'],
} as const;

export function scopesFor(u: Upstreams): string[] {
  return [
    `http://app.test:${u.httpPort}`,
    `ws://app.test:${u.httpPort}`,
    `ws://127.0.0.1:${u.httpPort}`,
    `http://127.0.0.1:${u.httpPort}`,
    `https://secure.test:${u.httpsPort}`,
    `https://127.0.0.1:${u.httpsPort}`,
    `https://ask.test:${u.httpsPort}`,
    // Granted by name, but the name resolves to a loopback port whose literal is not granted.
    `http://rebind.test:${u.hiddenPort}`,
    `https://rebind.test:${u.hiddenPort}`,
    `http://meta.test`,
    `http://split.test:${u.hiddenPort}`,
  ];
}

export function pdpFor(scopes: string[], approval: string[] = []): Pdp {
  return createPdp({
    manifest: validManifest({ networkScopes: scopes, requiresApproval: approval }),
    home: '/home/alice',
  });
}

export const MANIFEST_REF = {
  agent: 'cowork-lite',
  version: '1.0.0',
  digest: `sha256:${'ab'.repeat(32)}`,
};

export interface ProxyEnv {
  readonly dir: string;
  readonly up: Upstreams;
  readonly log: AuditLog;
  readonly proxy: EgressProxy;
  readonly diagnostics: string[];
  /** Every event the proxy has written so far (after waiting for pending appends). */
  events(): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

export async function startEnv(
  opts: {
    limits?: Partial<ProxyLimits>;
    up?: Upstreams;
    unix?: boolean;
    /** Network scopes instead of the usual ones (`scopesFor`). */
    scopes?: (u: Upstreams) => string[];
    resolver?: Resolver;
    port?: number;
    unixPath?: string;
    socks?: boolean;
    /** What the proxy appends to, given the real log (to put a failing disk in between). */
    audit?: (log: AuditLog) => AuditAppender;
  } = {},
): Promise<ProxyEnv> {
  const dir = mkdtempSync(join(tmpdir(), 'cordon-proxy-'));
  const up = opts.up ?? (await startUpstreams(dir));
  const log = AuditLog.open({
    stateDir: join(dir, 'state'),
    deviceKey,
    origin: ORIGIN,
    context: ctx,
  });
  const diagnostics: string[] = [];
  const proxy = await EgressProxy.start(
    {
      pdp:
        opts.scopes === undefined
          ? pdpFor(scopesFor(up), [`https://ask.test:${up.httpsPort}`])
          : pdpFor(opts.scopes(up)),
      manifest: MANIFEST_REF,
      audit: opts.audit === undefined ? log : opts.audit(log),
      context: ctx,
      resolver: opts.resolver ?? staticResolver(NAMES),
      ...(opts.limits === undefined ? {} : { limits: opts.limits }),
      onDiagnostic: (m) => diagnostics.push(m),
    },
    opts.unixPath !== undefined
      ? { path: opts.unixPath }
      : opts.unix === true
        ? { path: join(dir, 'proxy.sock') }
        : { host: '127.0.0.1', port: opts.port ?? 0 },
    opts.socks === true ? { socks: { host: '127.0.0.1', port: 0 } } : {},
  ).catch(async (e: unknown) => {
    await log.close();
    if (opts.up === undefined) await up.close();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  });
  return {
    dir,
    up,
    log,
    proxy,
    diagnostics,
    async events() {
      await proxy.flush();
      const out: Record<string, unknown>[] = [];
      readAfter(auditPaths(join(dir, 'state')), 0, (line) => {
        const ev = parseRecordLine(line).event;
        if (ev['class_uid'] !== 1008) out.push(ev);
        return true;
      });
      return out;
    },
    async close() {
      await proxy.close();
      await log.close();
      if (opts.up === undefined) await up.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface CurlResult {
  code: number;
  status: number;
  headers: string;
  body: string;
  stderr: string;
}

/** Run the real curl through the proxy; the proxy comes only from -x, never the environment. */
export function curl(proxyUrl: string, args: string[], ca?: string): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      [
        '-sS',
        '-x',
        proxyUrl,
        '--noproxy',
        '',
        '-D',
        '-',
        '--max-time',
        '20',
        ...(ca === undefined ? [] : ['--cacert', ca]),
        ...args,
      ],
      { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const text = stdout;
        // With CONNECT, curl prints the proxy's response head first, then the origin's.
        const heads = text.split(/\r\n\r\n/);
        let i = 0;
        while (
          i + 1 < heads.length &&
          /^HTTP\/1\.1 200 Connection Established/i.test(heads[i] ?? '')
        )
          i++;
        const head = heads[i] ?? '';
        const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(head)?.[1] ?? '0');
        resolve({
          code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1,
          status,
          headers: head,
          body: heads.slice(i + 1).join('\r\n\r\n'),
          stderr: stderr,
        });
      },
    );
  });
}

/** Node's fetch (undici) through the proxy. */
export function viaProxy(proxyUrl: string, ca?: string, tunnel = true): ProxyAgent {
  return new ProxyAgent({
    uri: proxyUrl,
    proxyTunnel: tunnel,
    ...(ca === undefined ? {} : { requestTls: { ca: readFileSync(ca) } }),
  });
}

export { undiciFetch as fetch };

/** A TLS connection to `host:port` through the proxy's CONNECT, ready for HTTP/1.1 requests. */
export function tlsTunnel(
  proxyPort: number,
  host: string,
  port: number,
  ca: string,
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(proxyPort, '127.0.0.1', () =>
      s.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`),
    );
    s.on('error', reject);
    s.once('data', (d: Buffer) => {
      if (!d.toString('latin1').startsWith('HTTP/1.1 200')) {
        reject(new Error(d.toString('latin1').split('\r\n')[0]));
        return;
      }
      const isIp = net.isIP(host) !== 0;
      const t = tls.connect({
        socket: s,
        ca: readFileSync(ca),
        ...(isIp ? { servername: '' } : { servername: host }),
        checkServerIdentity: (_h, cert) => tls.checkServerIdentity(host, cert),
      });
      t.on('error', reject);
      t.on('secureConnect', () => resolve(t));
    });
  });
}

/** One keep-alive GET over an established tunnel; resolves with the status line. */
export function getOver(t: tls.TLSSocket, path = '/', host = 'secure.test'): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer): void => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const len = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? '-1');
      if (end !== -1 && len >= 0 && text.length >= end + 4 + len) {
        t.off('data', onData);
        resolve(text.split('\r\n')[0] ?? '');
      }
    };
    t.on('data', onData);
    t.once('close', () => reject(new Error('tunnel closed')));
    t.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  });
}

/** Send raw bytes to the proxy and collect everything until it closes (or `waitMs` passes). */
export function raw(
  port: number,
  bytes: string | Buffer,
  waitMs = 3000,
): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let text = '';
    let closed = false;
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ text, closed });
    }, waitMs);
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve({ text, closed });
    });
    s.write(bytes);
  });
}
