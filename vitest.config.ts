import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests bind real sockets; run files in parallel but keep it to the 2 cores we have.
    maxWorkers: 2,
    // A test must fail on any unhandled rejection or error.
    dangerouslyIgnoreUnhandledErrors: false,
  },
});
