// ExpiryProof, driven with numbers: a lease is called expired only when etcd's truncated TTL answers
// prove it (an unbroken chain of TTL 0 spanning ≥ 1 s, or TTL −1); a renewal or a gap in the chain
// starts the proof over; a live lease is never called expired.
import { describe, expect, it } from 'vitest';
import { ExpiryProof, type ExpiryVerdict, type TimeToLiveAnswer } from '../../src/cluster/expiry-proof.ts';

const proof = (): ExpiryProof => new ExpiryProof({ fastPollMs: 100, slowPollMs: 500 });
const answer = (sentAtMs: number, ttlS: number, rttMs = 2, grantedTtlS = 2): TimeToLiveAnswer => ({
  sentAtMs,
  receivedAtMs: sentAtMs + rttMs,
  ttlS,
  grantedTtlS,
});

/** Feeds answers every `everyMs` from `fromMs` with the TTL `ttlAt(t)`; returns the first expired verdict's time. */
function run(p: ExpiryProof, fromMs: number, toMs: number, ttlAt: (t: number) => number, everyMs = 100) {
  for (let t = fromMs; t <= toMs; t += everyMs) {
    const v = p.observe(answer(t, ttlAt(t)));
    if (v.expired) return t;
  }
  return null;
}

describe('ExpiryProof', () => {
  it('never calls a lease kept alive (TTL 1 forever) expired, and polls it every 100 ms', () => {
    const p = proof();
    for (let t = 0; t < 60_000; t += 100) {
      expect(p.observe(answer(t, 1))).toEqual({ expired: false, nextPollInMs: 100 });
    }
  });

  it('polls slowly while 2 s or more are left', () => {
    expect(proof().observe(answer(0, 2))).toEqual({ expired: false, nextPollInMs: 500 });
    expect(proof().observe(answer(0, 9))).toEqual({ expired: false, nextPollInMs: 500 });
  });

  it('expires 1 s after the first TTL 0 answer arrived, and not before', () => {
    // Last renewal at 0 with TTL 2 s: TTL 0 from 1000 ms on, expiry at 2000 ms.
    const p = proof();
    const at = run(p, 0, 5_000, (t) => (t < 1_000 ? 1 : 0), 50);
    // The first TTL-0 answer arrives at 1002; the proof needs an answer sent at ≥ 2002.
    expect(at).toBe(2_050);
  });

  it('aims the next poll at the moment the proof can be complete', () => {
    const p = proof();
    p.observe(answer(0, 0)); // arrives at 2: proof possible from 1002
    expect(p.observe(answer(950, 0))).toEqual({ expired: false, nextPollInMs: 50 });
    const v: ExpiryVerdict = p.observe(answer(1_002, 0));
    expect(v.expired).toBe(true);
  });

  it('starts over after a renewal (TTL back to 1): a leader that missed keepalives for over 1 s', () => {
    const p = proof();
    // Renewed at 0, then no keepalive for 1.4 s (TTL 0 from 1000), renewed at 1400.
    const ttl = (t: number): number => (t < 1_000 ? 1 : t < 1_400 ? 0 : t < 2_400 ? 1 : 0);
    const at = run(p, 0, 6_000, ttl);
    // Chain restarts with the first TTL 0 after the renewal (answer at 2400 arrives 2402).
    expect(at).toBe(3_500);
  });

  it('starts over when two answers are 1 s or more apart: a renewal could hide in the gap', () => {
    const p = proof();
    expect(p.observe(answer(0, 0)).expired).toBe(false);
    // Sent at 0, next answer received at 1000: etcd may have renewed in between and it still reads 0.
    expect(p.observe({ sentAtMs: 600, receivedAtMs: 1_000, ttlS: 0, grantedTtlS: 2 }).expired).toBe(false);
    // The chain now starts at 1000: answers sent before 2000 prove nothing yet.
    expect(p.observe(answer(1_100, 0)).expired).toBe(false);
    expect(p.observe(answer(1_900, 0)).expired).toBe(false);
    expect(p.observe(answer(2_000, 0)).expired).toBe(true);
  });

  it('starts over after a failed poll (reset)', () => {
    const p = proof();
    p.observe(answer(0, 0));
    p.reset();
    expect(p.observe(answer(1_100, 0)).expired).toBe(false);
    expect(p.observe(answer(1_600, 0)).expired).toBe(false);
    expect(p.observe(answer(2_102, 0)).expired).toBe(true);
  });

  it('takes TTL −1 (not found, or expired over 1 s ago) as proof at once', () => {
    expect(proof().observe(answer(0, -1)).expired).toBe(true);
  });

  it('never proves a lease granted under 2 s: a renewal would read TTL 0 at once', () => {
    const p = proof();
    expect(run(p, 0, 10_000, () => 0)).not.toBeNull(); // control: with a 2 s grant it would
    const q = proof();
    for (let t = 0; t < 10_000; t += 100) {
      expect(q.observe({ sentAtMs: t, receivedAtMs: t + 2, ttlS: 0, grantedTtlS: 1 }).expired).toBe(false);
    }
  });
});
