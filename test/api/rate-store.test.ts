// The limiter's store: fixed windows per key on the monotonic clock (a wall step changes nothing),
// a bounded number of keys (the least recently used go), and a route's own options. Pure.
import { describe, expect, it } from 'vitest';
import { MonotonicRateStore } from '../../src/api/rate-store.ts';

function counter(store: MonotonicRateStore, timeWindow = 60_000, max = 2) {
  return (key: string) => {
    let out: { current: number; ttl: number } | undefined;
    store.incr(key, (_e, r) => (out = r), timeWindow, max);
    return out!;
  };
}

describe('MonotonicRateStore', () => {
  it('counts in a window from the first request, and starts a new one once it has passed', () => {
    let now = 1_000;
    const hit = counter(new MonotonicRateStore({}, () => now));
    expect(hit('a')).toEqual({ current: 1, ttl: 60_000 });
    now += 20_000;
    expect(hit('a')).toEqual({ current: 2, ttl: 40_000 });
    now += 40_000;
    expect(hit('a')).toEqual({ current: 1, ttl: 60_000 });
  });

  it('keeps at most `cache` keys, forgetting the least recently used', () => {
    const now = 0;
    const store = new MonotonicRateStore({ cache: 2 }, () => now);
    const hit = counter(store);
    hit('a');
    hit('b');
    hit('a'); // a is the most recent now
    hit('c'); // b goes
    expect(hit('a').current).toBe(3);
    expect(hit('b').current).toBe(1);
  });

  it('a route that asks for it restarts the window while exceeded', () => {
    let now = 0;
    const store = new MonotonicRateStore({}, () => now).child({ continueExceeding: true } as never);
    const hit = counter(store, 60_000, 1);
    hit('a');
    now += 50_000;
    expect(hit('a')).toEqual({ current: 2, ttl: 60_000 });
  });
});
