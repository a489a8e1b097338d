// GET /metrics: the registry's Prometheus text, rendered one metric family per event-loop turn.
// prom-client's registry.metrics() renders every family in one go (its collectors resolve in
// microtasks): at 1 000 units (~1.1 MB of text) that blocked the event loop — and with it the
// control loops and the lease keepalive — for ~100 ms at every scrape.
import { setImmediate } from 'node:timers/promises';
import type { Registry } from 'prom-client';

export async function renderMetrics(registry: Registry): Promise<string> {
  const parts: string[] = [];
  for (const { name } of registry.getMetricsAsArray()) {
    // A reload may have replaced a family while we yielded: render what is registered now.
    if (registry.getSingleMetric(name)) parts.push(await registry.getSingleMetricAsString(name));
    await setImmediate();
  }
  // The same framing as registry.metrics() for the Prometheus text format.
  return `${parts.join('\n\n')}\n`;
}
