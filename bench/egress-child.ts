// Helper processes for the egress proxy benchmark, so the proxy under test has its own process:
//   server                                   upstream HTTP server; prints its port
//   latency <port> <proxyPort|-> <n>         n sequential keep-alive GETs; prints µs per request
//   soak <proxyPort> <port> <conns> <secs>   conns keep-alive connections looping for secs
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const SMALL = Buffer.from('ok');
const BLOCK = Buffer.alloc(256 * 1024, 7);

function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/bytes') {
      let left = Number(u.searchParams.get('n') ?? '0');
      res.writeHead(200, { 'Content-Length': left });
      const pump = (): void => {
        while (left > 0) {
          const c = left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left);
          left -= c.length;
          if (!res.write(c)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    if (u.pathname === '/sink') {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(String(n)));
      return;
    }
    req.resume();
    res.writeHead(200, { 'Content-Length': SMALL.length });
    res.end(SMALL);
  }
}

/** Plain HTTP and HTTPS (certificate from BENCH_CERT / BENCH_KEY); prints both ports. */
function server(): void {
  const s = http.createServer(handler);
  const t = https.createServer(
    {
      cert: readFileSync(process.env['BENCH_CERT'] ?? ''),
      key: readFileSync(process.env['BENCH_KEY'] ?? ''),
    },
    handler,
  );
  s.keepAliveTimeout = 120_000;
  const port = (x: http.Server): number => {
    const a = x.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  };
  s.listen(0, '127.0.0.1', () =>
    t.listen(0, '127.0.0.1', () => console.log(`${port(s)} ${port(t)}`)),
  );
}

function get(agent: http.Agent, port: number, proxyPort: number | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      proxyPort === undefined
        ? { host: '127.0.0.1', port, path: '/small', agent }
        : {
            host: '127.0.0.1',
            port: proxyPort,
            path: `http://app.test:${port}/small`,
            headers: { Host: `app.test:${port}` },
            agent,
          },
      (res) => {
        res.on('data', () => undefined);
        res.on('end', () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`)),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function latency(port: number, proxyPort: number | undefined, n: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 200; i++) await get(agent, port, proxyPort);
  const us: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await get(agent, port, proxyPort);
    us.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  agent.destroy();
  console.log(JSON.stringify(us));
}

async function soak(proxyPort: number, port: number, conns: number, secs: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: conns, maxFreeSockets: conns });
  const end = Date.now() + secs * 1000;
  let requests = 0;
  const errors: string[] = [];
  const loop = async (): Promise<void> => {
    while (Date.now() < end) {
      try {
        await get(agent, port, proxyPort);
        requests++;
      } catch (e) {
        errors.push((e as Error).message);
      }
      // Think time, so 1,000 connections make a steady load rather than a flood.
      await new Promise((r) => setTimeout(r, 150 + Math.random() * 100));
    }
  };
  await Promise.all(Array.from({ length: conns }, loop));
  const sockets = Object.values(agent.sockets).reduce((n, l) => n + (l?.length ?? 0), 0);
  const free = Object.values(agent.freeSockets).reduce((n, l) => n + (l?.length ?? 0), 0);
  agent.destroy();
  console.log(
    JSON.stringify({
      requests,
      errors: errors.length,
      firstErrors: errors.slice(0, 5),
      open: sockets + free,
    }),
  );
}

const [mode, a, b, c, d] = process.argv.slice(2);
if (mode === 'server') server();
else if (mode === 'latency') await latency(Number(a), b === '-' ? undefined : Number(b), Number(c));
else if (mode === 'soak') await soak(Number(a), Number(b), Number(c), Number(d));
else throw new Error(`unknown mode ${mode ?? ''}`);
