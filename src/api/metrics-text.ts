// GET /metrics: the registry's Prometheus text from its one MetricsExposition (src/metrics/
// exposition.ts): rendered in slices between event-loop turns, one render shared by the scrapes
// that come together, handed to the socket as one buffer, lent until the answer is sent.
import type { Registry } from 'prom-client';
import { MetricsExposition, type MetricsLease } from '../metrics/exposition.ts';

const expositions = new WeakMap<Registry, MetricsExposition>();

/** The exposition of `registry` (made on first use; one per registry, so scrapes share renders). */
export function expositionOf(registry: Registry): MetricsExposition {
  let e = expositions.get(registry);
  if (!e) {
    e = new MetricsExposition(registry);
    expositions.set(registry, e);
  }
  return e;
}

/** The Prometheus text of `registry`, UTF-8, to keep. */
export function metricsBody(registry: Registry): Promise<Buffer> {
  return expositionOf(registry).body();
}

/** The same text lent to one HTTP answer: release() once it is sent (its buffer serves later renders). */
export function metricsLease(registry: Registry): Promise<MetricsLease> {
  return expositionOf(registry).lease();
}
