import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startUpstreams } from './harness.js';

describe('test servers', () => {
  it('leave no CA private key behind once closed', async () => {
    const up = await startUpstreams();
    const dir = dirname(up.ca);
    expect(existsSync(join(dir, 'ca.key'))).toBe(true);
    await up.close();
    expect(existsSync(dir)).toBe(false);
  });
});
