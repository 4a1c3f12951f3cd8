import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameReader, WIRE_MAGIC } from '../../src/protocol/wire.js';
import { sandboxEnv, type SandboxEnv } from '../sandbox/harness.js';
import { request, startEnvDaemon, stopDaemonProcess, type DaemonProcess } from './harness.js';

// A session's client appends events built to make the log record something other than what the
// service means to write: identities of its choosing, keys and numbers whose canonical form
// differs from JSON.stringify's, duplicate keys. Whatever is accepted must be recorded with the
// service's identity, and the log must still verify.
let s: SandboxEnv;
let d: DaemonProcess | undefined;
let socket: string;
let manifest: string;

beforeAll(async () => {
  s = sandboxEnv('stamp-attack');
  manifest = s.sign({ commandsAllowed: ['/usr/bin/true'] });
  ({ daemon: d, socket } = await startEnvDaemon(s));
});
afterAll(async () => {
  await stopDaemonProcess(d);
  rmSync(s.dir, { recursive: true, force: true });
});

/** One raw frame (its JSON text as given, duplicate keys and all) on a fresh connection. */
function wireRaw(json: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socket);
    const reader = new FrameReader(1 << 27);
    sock.on('data', (b: Buffer) => {
      for (const f of reader.push(b)) {
        sock.destroy();
        resolve(f.value as { status: number; body: Record<string, unknown> });
      }
    });
    sock.on('error', reject);
    sock.on('connect', () => {
      const body = Buffer.from(json, 'utf8');
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length, 0);
      sock.write(Buffer.concat([WIRE_MAGIC, head, body]));
    });
  });
}

/** Raw HTTP body, sent as is. */
function httpRaw(path: string, cap: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let got = '';
    c.on('data', (b: Buffer) => (got += b.toString('utf8')));
    c.on('error', reject);
    c.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0)));
    c.on('connect', () =>
      c.write(
        `POST ${path} HTTP/1.1\r\nHost: cordon\r\nAuthorization: Bearer ${cap}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      ),
    );
  });
}

async function openSession(): Promise<{ id: string; cap: string }> {
  const r = await request(socket, 'POST', '/v1/sessions', {
    manifest: readFileSync(manifest).toString('base64'),
    manifestPath: manifest,
    command: ['/usr/bin/true'],
    cwd: '/',
  });
  expect(r.status, r.raw).toBe(200);
  return { id: r.body['session'] as string, cap: r.body['capability'] as string };
}

// Events as JSON text: each is appended alone, so one refused does not hide the others.
const HOSTILE: readonly string[] = [
  // identity claims next to keys of the client's own
  '{"class_uid":1007,"actor":{"zz":1,"user":{"uid":"0","name":"root"},"session":{"uid":"x"},"process":{"pid":1}}}',
  '{"class_uid":1007,"actor":{"__proto__":{"user":{"uid":"0"}},"user":{"uid":"0"}}}',
  '{"class_uid":1007,"actor":{"user":{"uid":"0","name":"root"}},"device":{"hostname":"forged"}}',
  '{"class_uid":1007,"actor":["a","b"],"device":[1]}',
  '{"class_uid":1007,"actor":{"app_name":{"z":1,"a":2},"process":"p"}}',
  // keys out of order, `__proto__` at every level
  '{"unmapped":{"z":1,"a":{"y":1,"b":2}},"class_uid":1007,"__proto__":{"device":1}}',
  '{"class_uid":1007,"unmapped":{"__proto__":[],"constructor":{"prototype":1}}}',
  '{"class_uid":1007,"metadata":{"__proto__":{"sequence":5}}}',
  '{"class_uid":1007,"metadata":[1,2]}',
  '{"class_uid":1007,"unmapped":[1,2]}',
  // numbers whose text changes when written
  '{"class_uid":1007,"unmapped":{"n":[1e21,-0,1e-7,5e-324,9007199254740993,1.7976931348623157e308,0.1e1,-0.0,1E400]}}',
  '{"class_uid":1007,"unmapped":{"n":[1e21,-0,1e-7,5e-324,9007199254740993,1.7976931348623157e308,0.1e1,-0.0]}}',
  // duplicate keys (the framed transport keeps the last; HTTP refuses)
  '{"class_uid":1007,"class_uid":1007,"unmapped":{"a":1,"a":2},"actor":{"user":{"uid":"0"}},"actor":{"zz":{"b":1,"b":2}}}',
  // strings: escaped pairs, escaped lone surrogates, keys ordered by code unit not code point
  '{"class_uid":1007,"unmapped":{"\\uffff":1,"\\ud83d\\ude00":2,"\\u00e9":3,"e\\u0301":4,"":5}}',
  '{"class_uid":1007,"unmapped":{"k":"\\ud800"}}',
  '{"class_uid":1007,"unmapped":{"\\udc00":1}}',
  '{"class_uid":1007,"unmapped":{"k":"\\\\ud800 \\u2028\\u2029\\u007f\\u0000"}}',
  // keys named like the log's own
  '{"class_uid":1007,"unmapped":{"cordon_export":1}}',
  '{"class_uid":1007,"hash":"0","prev":"0","seq":1,"unmapped":{"k":1}}',
];

describe('hostile events from a session client', () => {
  it('are recorded with the service’s identity, and the log verifies', async () => {
    const statuses: string[] = [];
    for (const via of ['wire', 'http'] as const) {
      const one = await openSession();
      let seq = 0;
      for (const e of HOSTILE) {
        const path = `/v1/sessions/${one.id}/events`;
        const body = `{"events":[{"seq":${seq + 1},"event":${e}}]}`;
        const status =
          via === 'wire'
            ? (
                await wireRaw(
                  `{"id":1,"method":"POST","path":"${path}","capability":"${one.cap}","body":${body}}`,
                )
              ).status
            : await httpRaw(path, one.cap, body);
        if (status === 200) seq++;
        statuses.push(`${via} ${status} ${e}`);
      }
    }
    // Lone surrogates (in a key or a value) and a number past the double range are refused by
    // both transports, duplicate keys by HTTP; everything else is taken.
    const refused = (e: string): string[] =>
      [
        e.includes('\\ud800"') || e.includes('"\\udc00"') || e.includes('1E400')
          ? ['wire', 'http']
          : [],
        e.includes('"class_uid":1007,"class_uid"') ? ['http'] : [],
      ].flat();
    for (const via of ['wire', 'http'])
      for (const e of HOSTILE)
        expect(statuses, `${via} ${e}`).toContain(
          `${via} ${refused(e).includes(via) ? 400 : 200} ${e}`,
        );
    const records = s
      .events()
      .filter((e) => (e['unmapped'] as Record<string, unknown> | undefined)?.['client_seq']);
    expect(records).toHaveLength(statuses.filter((x) => / 200 /.test(x)).length);
    for (const r of records) {
      const actor = r['actor'] as Record<string, unknown>;
      expect(Object.getOwnPropertyDescriptor(actor, 'user')?.value, JSON.stringify(r)).toEqual({
        name: expect.any(String) as unknown,
        uid: String(process.getuid?.()),
      });
      expect((actor['session'] as { uid?: string }).uid).toMatch(/^[0-9a-f-]{36}$/);
      expect(actor['app_name'], JSON.stringify(r)).toBeTypeOf('string');
      expect((actor['process'] as { name?: string }).name).toBe('cordon');
      expect((actor['user'] as { uid?: string } | undefined)?.uid).not.toBe('x');
      expect(JSON.stringify(actor)).not.toContain('"x"');
      expect(JSON.stringify(r['device'])).not.toContain('forged');
    }
    const verify = await s.cordon(['audit', 'verify'], { env: s.env });
    expect(verify.stdout).toMatch(/chain intact/);
    expect(verify.stdout + verify.stderr).not.toMatch(/damage|broken|mismatch|invalid/i);
    expect(verify.code === 0 || verify.code === 4, verify.stdout + verify.stderr).toBe(true);
  }, 120_000);
});
