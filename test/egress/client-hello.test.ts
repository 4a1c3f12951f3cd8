import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseClientHello } from '../../src/egress/client-hello.js';
import { capture, reframe, withExtra } from './tls-hello.js';

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
