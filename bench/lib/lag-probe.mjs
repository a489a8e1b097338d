// Preloaded (`--import`) into the scale bench's controller by `--lag-attribution`: every event-loop
// turn that held a 10 ms timer back by more than 10 ms — a sample over 20 ms on the node's own
// delay histogram (src/metrics/event-loop-delay.ts, whose EVENT_LOOP_DELAY_RESOLUTION_MS the 10 here
// mirrors: importing it would load type stripping, below) — and every garbage collection with its kind,
// on the wall clock, written as JSON to $COOLCTL_BENCH_LAG_PROBE when the process exits.
// A bench instrument, never loaded by the product: it adds a 10 ms timer of its own. Plain
// JavaScript, so that the controller does not load Node's TypeScript stripping for it (~10 MB of RSS).
import { writeFileSync } from 'node:fs';
import { PerformanceObserver, performance } from 'node:perf_hooks';

const out = process.env.COOLCTL_BENCH_LAG_PROBE;
if (out) {
  /** Flat [end wall ms, interval ms] per long turn. */
  const longs = [];
  /** Flat [start wall ms, duration ms, kind] per collection (perf_hooks' NODE_PERFORMANCE_GC_*). */
  const gcs = [];
  const origin = performance.timeOrigin;
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    if (now - last > 20) longs.push(origin + now, now - last);
    last = now;
  }, 10).unref();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push(origin + e.startTime, e.duration, e.detail?.kind ?? 0);
  }).observe({ entryTypes: ['gc'] });
  process.on('exit', () => writeFileSync(out, JSON.stringify({ longs, gcs })));
}
