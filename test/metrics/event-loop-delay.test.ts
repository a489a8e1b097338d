// coolctl_event_loop_delay_seconds: a cumulative histogram of the event loop's delay, which no
// scrape resets (prom-client's nodejs_eventloop_lag_* are reset by each collect, so the two servers
// of an HA Prometheus pair would each see half of the samples).
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parseMetrics } from '../../bench/lib/scale-probe.ts';
import {
  EVENT_LOOP_DELAY_BUCKETS,
  type EventLoopDelayTimers,
  registerEventLoopDelay,
} from '../../src/metrics/event-loop-delay.ts';

function bucketCounts(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of parseMetrics(text))
    if (s.name === 'coolctl_event_loop_delay_seconds_bucket') out.set(s.labels['le']!, s.value);
  return out;
}

describe('coolctl_event_loop_delay_seconds', () => {
  it('counts each interval between timer turns in its bucket, and two scrapes see the same counts', async () => {
    let now = 0;
    let tick: (() => void) | undefined;
    let stopped = false;
    const timers: EventLoopDelayTimers = {
      now: () => now,
      every(ms, fn) {
        expect(ms).toBe(10);
        tick = fn;
        return () => {
          stopped = true;
        };
      },
    };
    const registry = new Registry();
    const stop = registerEventLoopDelay(registry, timers);
    for (const gap of [10.2, 10.1, 10.4, 14, 19, 35, 180]) {
      now += gap;
      tick!();
    }
    const first = await registry.metrics();
    const second = await registry.metrics();
    expect(second).toBe(first);
    const b = bucketCounts(first);
    expect(b.get('0.011')).toBe(3);
    expect(b.get('0.015')).toBe(4);
    expect(b.get('0.02')).toBe(5);
    expect(b.get('0.05')).toBe(6);
    expect(b.get('0.25')).toBe(7);
    expect(b.get('+Inf')).toBe(7);
    expect(first).toContain('# TYPE coolctl_event_loop_delay_seconds histogram');
    const sum = parseMetrics(first).find((s) => s.name === 'coolctl_event_loop_delay_seconds_sum')!;
    expect(sum.value).toBeCloseTo((10.2 + 10.1 + 10.4 + 14 + 19 + 35 + 180) / 1000, 6);
    stop();
    expect(stopped).toBe(true);
  });

  it('shows a loop blocked for 60 ms above the 50 ms bound, on real timers', async () => {
    const registry = new Registry();
    const stop = registerEventLoopDelay(registry);
    try {
      const over50 = async () => {
        const b = bucketCounts(await registry.metrics());
        return b.get('+Inf')! - b.get('0.05')!;
      };
      // Let the timer turn at least once, so the block falls between two of its turns.
      const deadline = Date.now() + 5000;
      while (bucketCounts(await registry.metrics()).get('+Inf')! < 2 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 5));
      const before = await over50();
      const t0 = performance.now();
      while (performance.now() - t0 < 60) {
        // the event loop is blocked
      }
      while ((await over50()) === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(await over50()).toBeGreaterThanOrEqual(before + 1);
      expect(EVENT_LOOP_DELAY_BUCKETS).toContain(0.02);
    } finally {
      stop();
    }
  });
});
