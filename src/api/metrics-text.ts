// GET /metrics: the registry's Prometheus text, rendered in slices of a few ms of work between
// event-loop turns and streamed family by family. prom-client's registry.metrics() renders every
// family in one go (its collectors resolve in microtasks): at 1 000 units (~1.1 MB of text) that
// blocked the event loop — and with it the control loops and the lease keepalive — for ~100 ms at
// every scrape. Rendered in turns but joined at the end, the families' text outlived V8's young
// generation and ~15 MB per scrape went to the old one (a mark-compact every few scrapes); streamed,
// each family's text is garbage once it is on the socket. The large families (per device, per unit,
// per rack) render their own text in chunks of a few dozen devices (metrics/text.ts): prom-client's
// formatting of their lines was still ~1 MB/s of old-space garbage at 1 000 units.
// A turn is given back after each slice of SLICE_MS, not after every family or chunk: a turn per
// chunk made a scrape wait behind every timer and socket of the node ~200 times over.
import { Readable } from 'node:stream';
import { setImmediate } from 'node:timers/promises';
import type { Registry } from 'prom-client';
import { rendersOwnText } from '../metrics/text.ts';

/** Work between two event-loop turns: well inside the control loops' lag budget (20 ms p99). */
const SLICE_MS = 3;
/**
 * Text handed to the socket at once. The families come in pieces of a few lines to a few dozen KB;
 * written one by one, a scrape at 1 000 units was ~600 socket writes, each its own syscall and,
 * under backpressure, its own event-loop turn.
 */
const WRITE_CHARS = 64 * 1024;

/** The families as registry.metrics() frames them (Prometheus text format), in pieces of ~64 KB. */
async function* metricFamilies(registry: Registry): AsyncGenerator<string> {
  let first = true;
  let pending = '';
  let sliceFrom = performance.now();
  const turn = async () => {
    if (performance.now() - sliceFrom < SLICE_MS) return;
    await setImmediate();
    sliceFrom = performance.now();
  };
  for (const { name } of registry.getMetricsAsArray()) {
    // A reload may have replaced a family while we yielded: render what is registered now.
    const metric = registry.getSingleMetric(name);
    if (!metric) continue;
    if (rendersOwnText(metric)) {
      if (!first) pending += '\n\n';
      for (const chunk of metric.textChunks()) {
        pending += chunk;
        if (pending.length >= WRITE_CHARS) {
          yield pending;
          pending = '';
        }
        await turn();
      }
    } else {
      const text = await registry.getSingleMetricAsString(name);
      pending += first ? text : `\n\n${text}`;
      if (pending.length >= WRITE_CHARS) {
        yield pending;
        pending = '';
      }
      await turn();
    }
    first = false;
  }
  yield `${pending}\n`;
}

/** The Prometheus text of `registry` as a byte stream (for the HTTP answer). */
export function metricsStream(registry: Registry): Readable {
  return Readable.from(metricFamilies(registry), { objectMode: false });
}
