// coolctl_event_loop_delay_seconds: the event loop's delay as a cumulative Prometheus histogram.
//
// prom-client's nodejs_eventloop_lag_p99_seconds is the p99 of the samples since the previous
// collect, which then resets them: each scrape sees one window, a rule can only read the last one,
// and the two servers of an HA Prometheus pair cut each other's windows in half. A histogram's
// buckets only grow, so any window can be read from any scraper:
// histogram_quantile(0.99, rate(coolctl_event_loop_delay_seconds_bucket[5m])).
//
// A sample is what Node's monitorEventLoopDelay (and so prom-client's lag) records: the time
// between two turns of a timer due every 10 ms. An idle loop reads ~10 ms; what the node's own work
// adds is the figure minus that (nodejs/node#34661).
import { Histogram, type Registry } from 'prom-client';

export const EVENT_LOOP_DELAY_RESOLUTION_MS = 10;
/** Bounds in seconds: fine from the 10 ms floor to the 20 ms target, coarse above. */
export const EVENT_LOOP_DELAY_BUCKETS = [
  0.011, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.05, 0.1, 0.25, 1, 5,
];

export interface EventLoopDelayTimers {
  now(): number;
  every(ms: number, fn: () => void): () => void;
}

const realTimers: EventLoopDelayTimers = {
  now: () => performance.now(),
  every(ms, fn) {
    const t = setInterval(fn, ms);
    t.unref();
    return () => clearInterval(t);
  },
};

/** Starts sampling into `coolctl_event_loop_delay_seconds` on `registry`; returns the stop. */
export function registerEventLoopDelay(
  registry: Registry,
  timers: EventLoopDelayTimers = realTimers,
): () => void {
  const histogram = new Histogram({
    name: 'coolctl_event_loop_delay_seconds',
    help: `Time between two turns of a ${EVENT_LOOP_DELAY_RESOLUTION_MS} ms timer on the event loop (an idle loop reads ${EVENT_LOOP_DELAY_RESOLUTION_MS} ms); cumulative, never reset by a scrape.`,
    buckets: EVENT_LOOP_DELAY_BUCKETS,
    registers: [registry],
  });
  let last = timers.now();
  return timers.every(EVENT_LOOP_DELAY_RESOLUTION_MS, () => {
    const now = timers.now();
    histogram.observe((now - last) / 1000);
    last = now;
  });
}
