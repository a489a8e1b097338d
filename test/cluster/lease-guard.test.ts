// LeaseGuard on a fake monotonic clock: the deadline comes from the SEND time of the last
// acknowledged keepalive, never moves backwards, and a frozen event loop finds it passed at once.
import { describe, expect, it } from 'vitest';
import { LeaseGuard } from '../../src/cluster/lease-guard.ts';

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
