import net from 'node:net';
import tls from 'node:tls';

/** The first flight a real TLS client (Node's OpenSSL) sends, captured from a TCP server. */
export async function capture(opts: tls.ConnectionOptions): Promise<Buffer> {
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
export function reframe(hello: Buffer, size: number): Buffer {
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
export function withExtra(hello: Buffer, type: number, data: Buffer): Buffer {
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
