import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A focused or skipped test must never make the suite green.
    allowOnly: false,
    testTimeout: 30_000,
    pool: 'forks',
  },
});
