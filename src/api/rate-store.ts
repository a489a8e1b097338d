// The rate limiter's counters (sign-in attempts, operator actions per user), windowed on the
// monotonic clock. @fastify/rate-limit's own store times its windows with Date.now(), so an NTP
// step back of a day answered the next refused sign-in with Retry-After: 86 457 — an operator locked
// out for the length of the step — and a step forward ended every window at once. Same semantics
// otherwise: a fixed window per key from its first request, at most `cache` keys (the least
// recently used go first), and what the route asks for past its max (continueExceeding,
// exponentialBackoff).
import type { FastifyRateLimitOptions, FastifyRateLimitStore } from '@fastify/rate-limit';

/** Keys one store keeps (the plugin's default): a flood of addresses evicts the oldest, never grows. */
const DEFAULT_KEYS = 5000;

interface Window {
  count: number;
  ttlMs: number;
  startMs: number;
}

interface StoreOptions {
  continueExceeding?: boolean | undefined;
  exponentialBackoff?: boolean | undefined;
  cache?: number | undefined;
}

export class MonotonicRateStore implements FastifyRateLimitStore {
  private readonly windows = new Map<string, Window>();
  private readonly opts: StoreOptions;
  private readonly now: () => number;

  constructor(
    opts: FastifyRateLimitOptions | StoreOptions = {},
    now: () => number = () => performance.now(),
  ) {
    this.opts = opts as StoreOptions;
    this.now = now;
  }

  incr(
    key: string,
    cb: (error: Error | null, result?: { current: number; ttl: number }) => void,
    timeWindow: number,
    max: number,
  ): void {
    const now = this.now();
    let w = this.windows.get(key);
    if (w) this.windows.delete(key); // re-inserted below: the Map's order is the recency
    if (!w || w.startMs + timeWindow <= now) {
      w = { count: 1, ttlMs: timeWindow, startMs: now };
    } else {
      w.count++;
      if (this.opts.continueExceeding && w.count > max) {
        w.ttlMs = timeWindow;
        w.startMs = now;
      } else if (this.opts.exponentialBackoff && w.count > max) {
        const ttl = timeWindow * 2 ** (w.count - max - 1);
        w.ttlMs = Number.isSafeInteger(ttl) ? ttl : Number.MAX_SAFE_INTEGER;
        w.startMs = now;
      } else {
        w.ttlMs = timeWindow - (now - w.startMs);
      }
    }
    this.windows.set(key, w);
    const limit = this.opts.cache ?? DEFAULT_KEYS;
    while (this.windows.size > limit) this.windows.delete(this.windows.keys().next().value as string);
    cb(null, { current: w.count, ttl: w.ttlMs });
  }

  /** What `incr` would see, without counting (the plugin's `{ increment: false }`). */
  read(
    key: string,
    cb: (error: Error | null, result?: { current: number; ttl: number }) => void,
    timeWindow: number,
  ): void {
    const now = this.now();
    const w = this.windows.get(key);
    if (!w || w.startMs + timeWindow <= now) cb(null, { current: 0, ttl: 0 });
    else cb(null, { current: w.count, ttl: timeWindow - (now - w.startMs) });
  }

  /** A route's own store, with its own options (each route counts apart, as the plugin's does). */
  child(routeOptions: Parameters<FastifyRateLimitStore['child']>[0]): MonotonicRateStore {
    const o = routeOptions as StoreOptions;
    return new MonotonicRateStore(
      { continueExceeding: o.continueExceeding, exponentialBackoff: o.exponentialBackoff, cache: o.cache },
      this.now,
    );
  }
}
