import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseClientHello } from '../../src/egress/client-hello.js';

/** The first flight a real TLS client (Node's OpenSSL) sends, captured from a TCP server. */
async function capture(opts: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  const got = new Promise<Buffer>((resolve) => {
    server.on('connection', (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      setTimeout(() => {
        resolve(Buffer.concat(chunks));
        s.destroy();
      }, 150);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const c = tls.connect({ host: '127.0.0.1', port, ...opts });
  c.on('error', () => undefined);
  const bytes = await got;
  c.destroy();
  server.close();
  return bytes;
}

/** Re-frame a single-record ClientHello as several records of at most `size` bytes each. */
function reframe(hello: Buffer, size: number): Buffer {
  const body = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) {
    const part = body.subarray(i, i + size);
    const h = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
    h.writeUInt16BE(part.length, 3);
    out.push(h, part);
  }
  return Buffer.concat(out);
}

/** Rebuild a ClientHello with one more extension appended (type, data). */
function withExtra(hello: Buffer, type: number, data: Buffer): Buffer {
  const body = Buffer.from(hello.subarray(9, 5 + hello.readUInt16BE(3)));
  // Walk to the extensions length: version 2, random 32, sid, suites, compression.
  let at = 34;
  at += 1 + body[at]!;
  at += 2 + body.readUInt16BE(at);
  at += 1 + body[at]!;
  const extLen = body.readUInt16BE(at);
  const ext = Buffer.alloc(4 + data.length);
  ext.writeUInt16BE(type, 0);
  ext.writeUInt16BE(data.length, 2);
  data.copy(ext, 4);
  body.writeUInt16BE(extLen + ext.length, at);
  const newBody = Buffer.concat([body, ext]);
  const hs = Buffer.alloc(4);
  hs[0] = 1;
  hs.writeUIntBE(newBody.length, 1, 3);
  const rec = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
  rec.writeUInt16BE(newBody.length + 4, 3);
  return Buffer.concat([rec, hs, newBody]);
}

function sniExtension(...names: string[]): Buffer {
  const entries = names.map((n) => {
    const b = Buffer.alloc(3 + n.length);
    b[0] = 0;
    b.writeUInt16BE(n.length, 1);
    b.write(n, 3, 'latin1');
    return b;
  });
  const list = Buffer.concat(entries);
  const out = Buffer.alloc(2);
  out.writeUInt16BE(list.length);
  return Buffer.concat([out, list]);
}

describe('ClientHello parser', () => {
  it('reads the server name, version and ALPN from a real TLS client', async () => {
    const hello = await capture({
      servername: 'API.Example.com',
      ALPNProtocols: ['h2', 'http/1.1'],
    });
    const r = parseClientHello(hello);
    expect(r.status).toBe('ok');
    if (r.status !== 'ok') return;
    expect(r.hello.sni).toBe('api.example.com');
    expect(r.hello.version).toBe('TLS 1.3');
    expect(r.hello.alpn).toEqual(['h2', 'http/1.1']);
    expect(r.hello.length).toBe(hello.length);
  });

  it('reports no server name when the client sends none', async () => {
    const r = parseClientHello(await capture({ servername: '' }));
    expect(r.status === 'ok' && r.hello.sni).toBe(undefined);
  });

  it('is incomplete on every prefix, and reassembles a hello split over many records', async () => {
    const hello = await capture({ servername: 'a.example.org' });
    for (let n = 0; n < hello.length; n++)
      expect(parseClientHello(hello.subarray(0, n)).status).toBe('incomplete');
    for (const size of [1, 3, 100]) {
      const split = reframe(hello, size);
      const r = parseClientHello(split);
      expect(r.status === 'ok' && r.hello.sni).toBe('a.example.org');
      expect(parseClientHello(split.subarray(0, split.length - 1)).status).toBe('incomplete');
    }
  });

  it('refuses hellos a server could read differently: two server_name extensions, two names', async () => {
    const hello = await capture({ servername: 'good.example.com' });
    const twice = withExtra(hello, 0, sniExtension('evil.example.net'));
    expect(parseClientHello(twice)).toMatchObject({ status: 'invalid', reason: /twice/ });
    const noSni = await capture({ servername: '' });
    const two = withExtra(noSni, 0, sniExtension('good.example.com', 'evil.example.net'));
    expect(parseClientHello(two)).toMatchObject({ status: 'invalid', reason: /more than one/ });
    const bad = withExtra(noSni, 0, sniExtension('evil\u0000.example.com'));
    expect(parseClientHello(bad)).toMatchObject({ status: 'invalid' });
  });

  it('refuses what is not a TLS handshake', () => {
    expect(parseClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')).status).toBe(
      'invalid',
    );
    expect(parseClientHello(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')).status).toBe('invalid');
    // A record claiming more than 64 KiB of handshake.
    const huge = Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff]);
    expect(parseClientHello(Buffer.concat([huge, Buffer.alloc(0x4000 - 4)])).status).toBe(
      'invalid',
    );
  });

  it('never throws on mangled bytes, and any name it returns is a valid host name', async () => {
    const hello = await capture({ servername: 'api.example.com' });
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: hello.length - 1 }),
        fc.integer({ min: 0, max: 255 }),
        (i, v) => {
          const copy = Buffer.from(hello);
          copy[i] = v;
          const r = parseClientHello(copy);
          if (r.status === 'ok' && r.hello.sni !== undefined)
            expect(r.hello.sni).toMatch(/^[a-z0-9_.-]+$/);
        },
      ),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
        expect(() => parseClientHello(b)).not.toThrow();
      }),
    );
  });
});
