// LeaseGuard on a fake monotonic clock: the deadline comes from the SEND time of the last
// acknowledged keepalive, never moves backwards, and a frozen event loop finds it passed at once.
import { describe, expect, it } from 'vitest';
import { LeaseGuard, sharedClockMs } from '../../src/cluster/lease-guard.ts';

function fakeClock(start = 1_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('LeaseGuard', () => {
  it('may not act before the first acknowledged keepalive (or grant)', () => {
    const c = fakeClock();
    const g = new LeaseGuard({ ttlMs: 2_000, marginMs: 400, now: c.now });
    expect(g.mayAct()).toBe(false);
    expect(g.remainingMs()).toBe(0);
    expect(g.reason()).toBe('no lease yet');
  });

  it('deadline = send time + TTL − margin, however late the ack arrives', () => {
    const c = fakeClock();
    const g = new LeaseGuard({ ttlMs: 2_000, marginMs: 400, now: c.now });
    const token = g.keepaliveSent(); // t = 1000
    c.advance(900); // a slow answer
    expect(g.keepaliveAcked(token)).toBe(true);
    expect(g.deadlineMs()).toBe(1_000 + 2_000 - 400);
    expect(g.remainingMs()).toBe(700);
    c.advance(699);
    expect(g.mayAct()).toBe(true);
    c.advance(1);
    expect(g.mayAct()).toBe(false);
    expect(g.reason()).toBe('lease deadline passed');
  });

  it('never moves the deadline backwards (an older keepalive acked late)', () => {
    const c = fakeClock();
    const g = new LeaseGuard({ ttlMs: 2_000, marginMs: 400, now: c.now });
    const old = g.keepaliveSent();
    c.advance(300);
    const fresh = g.keepaliveSent();
    expect(g.keepaliveAcked(fresh)).toBe(true);
    const d = g.deadlineMs();
    expect(g.keepaliveAcked(old)).toBe(false);
    expect(g.deadlineMs()).toBe(d);
  });

  it('a frozen event loop: the clock jumps past the deadline before any timer runs → mayAct() is false at once', () => {
    const c = fakeClock();
    const g = new LeaseGuard({ ttlMs: 2_000, marginMs: 400, now: c.now });
    const token = g.keepaliveSent();
    expect(g.keepaliveAcked(token)).toBe(true);
    expect(g.mayAct()).toBe(true);
    // SIGSTOP / GC pause / VM freeze: no callback ran, only the clock moved.
    c.advance(5_000);
    expect(g.mayAct()).toBe(false);
    // A keepalive sent before the freeze and acknowledged after it proves nothing new.
    const stale = token;
    expect(g.keepaliveAcked(stale)).toBe(false);
    expect(g.mayAct()).toBe(false);
    // Only a keepalive SENT after the freeze re-proves the lease.
    const after = g.keepaliveSent();
    expect(g.keepaliveAcked(after)).toBe(true);
    expect(g.mayAct()).toBe(true);
  });

  it('invalidate() stops acting at once and ignores acks of keepalives sent before it', () => {
    const c = fakeClock();
    const g = new LeaseGuard({ ttlMs: 2_000, marginMs: 400, now: c.now });
    const t1 = g.keepaliveSent();
    g.keepaliveAcked(t1);
    const inFlight = g.keepaliveSent();
    g.invalidate('lease lost');
    expect(g.mayAct()).toBe(false);
    expect(g.reason()).toBe('lease lost');
    expect(g.keepaliveAcked(inFlight)).toBe(false);
    expect(g.mayAct()).toBe(false);
    const grant = g.keepaliveSent(); // a new lease's grant
    expect(g.keepaliveAcked(grant)).toBe(true);
    expect(g.mayAct()).toBe(true);
  });

  it('refuses a margin that leaves no time to act', () => {
    expect(() => new LeaseGuard({ ttlMs: 1_000, marginMs: 1_000 })).toThrow(RangeError);
    expect(() => new LeaseGuard({ ttlMs: 1_000, marginMs: -1 })).toThrow(RangeError);
  });
});

describe('LeaseGuard shared between the keepalive worker and the main thread', () => {
  const opts = { ttlMs: 2_000, marginMs: 400 };

  it('an ack on one side moves the deadline the other side reads, on its own clock and never later', () => {
    const shared = LeaseGuard.sharedState();
    const worker = new LeaseGuard({ ...opts, shared });
    const main = new LeaseGuard({ ...opts, shared });
    expect(main.mayAct()).toBe(false);
    expect(main.reason()).toBe('no lease yet');
    const token = worker.keepaliveSent();
    expect(worker.keepaliveAcked(token)).toBe(true);
    expect(main.mayAct()).toBe(true);
    expect(main.reason()).toBeNull();
    // deadlineMs() is on main's performance.now() clock; the shared one is CLOCK_MONOTONIC.
    const exact = token.sentAtMs - sharedClockMs() + performance.now() + opts.ttlMs - opts.marginMs;
    expect(main.deadlineMs()).toBeLessThanOrEqual(exact + 0.01);
    expect(main.deadlineMs()).toBeGreaterThan(exact - 1);
    expect(Math.abs(main.remainingMs() - (main.deadlineMs() - performance.now()))).toBeLessThan(1);
  });

  it('an invalidate() on one side beats an ack of a keepalive the other side sent before it', () => {
    const shared = LeaseGuard.sharedState();
    const worker = new LeaseGuard({ ...opts, shared });
    const main = new LeaseGuard({ ...opts, shared });
    expect(worker.keepaliveAcked(worker.keepaliveSent())).toBe(true);
    const inFlight = worker.keepaliveSent();
    main.invalidate('session stopped');
    expect(main.mayAct()).toBe(false);
    expect(worker.keepaliveAcked(inFlight)).toBe(false);
    expect(main.mayAct()).toBe(false);
    expect(main.reason()).toBe('session stopped');
    // The worker's own invalidation (lease lost): main finds it at once, and learns why by message.
    expect(worker.keepaliveAcked(worker.keepaliveSent())).toBe(true);
    worker.invalidate('etcd says the lease is not found');
    expect(main.mayAct()).toBe(false);
    expect(main.deadlineMs()).toBe(Number.NEGATIVE_INFINITY);
    main.noteInvalid('etcd says the lease is not found');
    expect(main.reason()).toBe('etcd says the lease is not found');
  });

  it('carries the main thread heartbeat to the worker', () => {
    const shared = LeaseGuard.sharedState();
    const worker = new LeaseGuard({ ...opts, shared });
    const main = new LeaseGuard({ ...opts, shared });
    expect(worker.sinceBeatMs()).toBeGreaterThan(1_000); // never beaten: stale
    main.beat();
    expect(worker.sinceBeatMs()).toBeGreaterThanOrEqual(0);
    expect(worker.sinceBeatMs()).toBeLessThan(1_000);
  });
});
