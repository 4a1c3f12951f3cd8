import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A focused or skipped test must never make the suite green.
    allowOnly: false,
    testTimeout: 60_000,
    pool: 'forks',
    // Every process that evaluates Cedar runs with JS-to-wasm inlining off (a V8 crash in Node 20).
    execArgv: ['--no-turbo-inline-js-wasm-calls'],
  },
});
