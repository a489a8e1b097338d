import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // COOLCTL_TEST_LINKS (plain | secure) checked once before any file runs.
    globalSetup: ['test/support/links-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // One file at a time: the cluster and chaos files run real etcd clusters with 2 s leases and
    // real processes; two of them (or a simulator) competing for this machine's 2 cores would
    // starve etcd and expire leases, which tests the machine, not the product.
    fileParallelism: false,
    // A test must fail on any unhandled rejection or error.
    dangerouslyIgnoreUnhandledErrors: false,
  },
});
