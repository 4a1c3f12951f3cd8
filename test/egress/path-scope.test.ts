import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ambiguousPath } from '../../src/policy/pdp.js';
import { curl, startEnv, type ProxyEnv } from './harness.js';

// A scope restricted to a path prefix (`http://host/v1`) must not admit a path that a server
// which decodes before it normalises would serve from elsewhere (`/v1/..%2fadmin/`).

let env: ProxyEnv;
beforeAll(async () => {
  // The name resolves to loopback, so the address is granted as a literal too (same prefix).
  env = await startEnv({
    scopes: (u) => [`http://app.test:${u.httpPort}/v1`, `http://127.0.0.1:${u.httpPort}/v1`],
  });
});
afterAll(() => env.close());

describe('path-restricted network scopes', () => {
  it('refuse encoded separators, backslashes and dot segments with PATH_AMBIGUOUS (real proxy, curl --path-as-is)', async () => {
    const base = `http://app.test:${env.up.httpPort}`;
    const ok = await curl(env.proxy.url, ['--path-as-is', `${base}/v1/reports/q3`]);
    expect(ok.status, ok.headers).toBe(200);
    const outside = await curl(env.proxy.url, ['--path-as-is', `${base}/admin/users`]);
    expect(outside.status).toBe(403);
    expect(outside.headers).toMatch(/code=NOT_GRANTED/);
    for (const path of [
      '/v1/..%2fadmin/users',
      '/v1/..%2Fadmin/users',
      '/v1/%2e%2e%2fadmin/users',
      '/v1/%2E%2E%2Fadmin/users',
      '/v1/%252e%252e%252fadmin/users',
      '/v1/..%5cadmin/users',
      '/v1/..\\admin/users',
      '/v1/%2e%2e/admin/users',
      '/v1/..;/admin/users',
    ]) {
      const r = await curl(env.proxy.url, ['--path-as-is', `${base}${path}`]);
      expect(r.status, path).toBe(403);
      expect(r.headers, path).toMatch(/code=(PATH_AMBIGUOUS|NOT_GRANTED)/);
      // Forms the URL parser resolves itself (%2e%2e/ is ../, \ is /) fall outside the prefix
      // and are not granted at all.
      if (!['/v1/%2e%2e/admin/users', '/v1/..\\admin/users'].includes(path))
        expect(r.headers, path).toMatch(/code=PATH_AMBIGUOUS/);
    }
    const events = await env.events();
    expect(events.some((e) => e['status_code'] === 'PATH_AMBIGUOUS')).toBe(true);
  });

  it('leaves ordinary encoded paths alone, and a scope of the whole host admits any path', () => {
    expect(ambiguousPath('/v1/files/a%20b.txt')).toBeUndefined();
    expect(ambiguousPath('/v1/.well-known/x')).toBeUndefined();
    expect(ambiguousPath('/v1/..x/y')).toBeUndefined();
    expect(ambiguousPath('/v1/%25252f')).toMatch(/encoded \//);
    expect(ambiguousPath('/v1/%zz')).toMatch(/malformed/);
  });
});
