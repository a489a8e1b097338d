import { existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// Test halls (etcd data, process logs) go to tmpfs where there is one: on this shared VM a disk
// stall froze every process that wrote a log line or an etcd WAL entry for ~10 s at once (etcd,
// the simulator and the controllers together), which tests the disk, not the product.
const TMPFS = '/dev/shm';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // One file at a time: the cluster and chaos files run real etcd clusters with 2 s leases and
    // real processes; two of them (or a simulator) competing for this machine's 2 cores would
    // starve etcd and expire leases, which tests the machine, not the product.
    fileParallelism: false,
    // A test must fail on any unhandled rejection or error.
    dangerouslyIgnoreUnhandledErrors: false,
    env: existsSync(TMPFS) ? { TMPDIR: TMPFS } : {},
  },
});
