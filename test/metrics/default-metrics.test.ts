// The default Node process metrics keep prom-client's names, and process_open_fds is counted off the
// event loop (prom-client's own lists /proc/self/fd with readdirSync at every scrape).
import { readdirSync } from 'node:fs';
import { type Gauge, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parseMetrics } from '../../bench/lib/scale-probe.ts';
import { registerDefaultMetrics } from '../../src/metrics/default-metrics.ts';

describe('default process metrics', () => {
  it('says process_open_fds from an asynchronous listing, with prom-client’s name and help', async () => {
    const registry = new Registry();
    registerDefaultMetrics(registry);
    const fds = registry.getSingleMetric('process_open_fds') as Gauge & { collect: () => unknown };
    expect(fds).toBeDefined();
    // A promise: the listing runs on libuv's thread pool, not on the event loop.
    const pending = fds.collect();
    expect(pending).toBeInstanceOf(Promise);
    await pending;
    const text = await registry.metrics();
    expect(text).toContain(
      '# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge',
    );
    const open = parseMetrics(text).find((s) => s.name === 'process_open_fds')!.value;
    const now = readdirSync('/proc/self/fd').length - 1;
    expect(Math.abs(open - now)).toBeLessThanOrEqual(5);
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ])
      expect(registry.getSingleMetric(name)).toBeDefined();
  });
});
