import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OcsfEvent } from '../../src/audit/events.js';
import type { AuditLog } from '../../src/audit/log.js';
import { CordonError } from '../../src/errors.js';
import { curl, getOver, startEnv, startUpstreams, tlsTunnel, type Upstreams } from './harness.js';

let up: Upstreams;
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cordon-durability-'));
  up = await startUpstreams(dir);
});
afterAll(async () => {
  await up.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The real log behind a disk that refuses the next `n` writes (ENOSPC), as a full disk does. */
function failingDisk(): {
  wrap: (log: AuditLog) => { append: (e: OcsfEvent) => Promise<unknown> };
  fail: (n: number) => void;
} {
  let refuse = 0;
  return {
    fail: (n) => (refuse = n),
    wrap: (log) => ({
      append: (e: OcsfEvent) => {
        if (refuse > 0) {
          refuse--;
          const cause = Object.assign(new Error('ENOSPC: no space left on device, write'), {
            code: 'ENOSPC',
          });
          return Promise.reject(
            new CordonError('AUDIT_WRITE_FAILED', `cannot write the audit log: ${cause.message}`, {
              cause,
            }),
          );
        }
        return log.append(e);
      },
    }),
  };
}

describe('egress proxy: nothing answered or relayed without a durable record', () => {
  it('a request whose decision cannot be written is refused with 403, never answered 200 without a record', async () => {
    const disk = failingDisk();
    const env = await startEnv({ up, audit: disk.wrap });
    try {
      expect((await curl(env.proxy.url, [`http://app.test:${up.httpPort}/headers`])).status).toBe(
        200,
      );
      disk.fail(1);
      const r = await curl(env.proxy.url, [`http://app.test:${up.httpPort}/bytes?n=77`]);
      expect(r.status).toBe(403);
      expect(r.headers).toMatch(/code=DECISION_UNRECORDED/);
      // Nothing in the log says this request was allowed, and the client got no 200 for it.
      const allowed = (await env.events()).filter(
        (e) =>
          e['class_uid'] === 4002 &&
          e['disposition'] === 'Allowed' &&
          JSON.stringify(e['http_request']).includes('bytes?n=77'),
      );
      expect(allowed).toEqual([]);
      expect(env.diagnostics.join('\n')).toMatch(/ENOSPC/);
    } finally {
      await env.close();
    }
  });

  it('an open tunnel is closed when a record cannot be written (its traffic could not be accounted)', async () => {
    const disk = failingDisk();
    const env = await startEnv({ up, audit: disk.wrap });
    try {
      const t = await tlsTunnel(env.proxy.port, 'secure.test', up.httpsPort, up.ca);
      expect(await getOver(t, '/bytes?n=1000')).toMatch(/200/);
      const closed = new Promise<void>((r) => t.once('close', () => r()));
      disk.fail(1);
      // Any write failure: here the decision of another request.
      expect((await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`])).status).toBe(403);
      await closed;
      expect(env.proxy.stats().tunnels).toBe(0);
      // Writes work again: once a record succeeds (the tunnel's Close, or a denial), requests
      // are served.
      let status = 0;
      for (let i = 0; i < 20 && status !== 200; i++)
        status = (await curl(env.proxy.url, [`http://app.test:${up.httpPort}/`])).status;
      expect(status).toBe(200);
    } finally {
      await env.close();
    }
  });

  it('a CONNECT answered 200 whose client leaves before its first bytes is recorded, not lost', async () => {
    const env = await startEnv({ up });
    try {
      const n0 = (await env.events()).length;
      await new Promise<void>((resolve, reject) => {
        const c = net.connect(env.proxy.port, '127.0.0.1');
        c.on('error', reject);
        c.write(`CONNECT secure.test:${up.httpsPort} HTTP/1.1\r\nHost: secure.test\r\n\r\n`);
        c.once('data', (d: Buffer) => {
          expect(d.toString('latin1')).toMatch(/^HTTP\/1\.1 200/);
          c.destroy();
          resolve();
        });
      });
      const end = Date.now() + 5000;
      let refused: Record<string, unknown> | undefined;
      while (refused === undefined && Date.now() < end) {
        refused = (await env.events())
          .slice(n0)
          .find((e) => e['class_uid'] === 4001 && e['activity_name'] === 'Refuse');
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(refused).toMatchObject({
        status_code: 'NET_NOT_TLS',
        dst_endpoint: { hostname: 'secure.test', port: up.httpsPort },
      });
      expect(String(refused?.['status_detail'])).toMatch(/closed the tunnel before/);
    } finally {
      await env.close();
    }
  });
});
