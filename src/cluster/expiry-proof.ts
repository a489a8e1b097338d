// ExpiryProof: proves from LeaseTimeToLive answers alone that another node's lease has EXPIRED in
// etcd (not just that it is about to), so that revoking it deletes only what etcd would delete anyway.
// etcd reports TTL as whole seconds, truncated: TTL 0 means "less than 1 s left" OR "expired less than
// 1 s ago"; it never says "expired" while the lease waits for etcd's 500 ms expiry loop. The proof:
//   - an answer TTL 0 read at etcd time s means expiry < s + 1 s, unless the lease is renewed later;
//   - a renewal shows TTL ≥ 1 for the next (grantedTTL − 1) ≥ 1 s, so an unbroken chain of TTL-0
//     answers, each sent less than 1 s after the previous one was sent, rules out any renewal in between;
//   - so a chain of TTL-0 answers whose last one was SENT ≥ 1 s after the first was RECEIVED shows the
//     lease expired before that last answer was read; etcd never renews an expired lease.
// TTL −1 (not found, or expired over 1 s ago) is proof at once. Pure: tests drive it with numbers.

/** etcd's TTL resolution: LeaseTimeToLive truncates the remaining time to whole seconds. */
export const TTL_RESOLUTION_MS = 1_000;

export interface TimeToLiveAnswer {
  /** Monotonic ms when the request was sent. */
  sentAtMs: number;
  /** Monotonic ms when the answer arrived. */
  receivedAtMs: number;
  /** etcd's TTL, whole seconds, truncated; −1 when etcd does not know the lease. */
  ttlS: number;
  /** The lease's granted TTL, seconds (0 or NaN when etcd did not say). */
  grantedTtlS: number;
}

export type ExpiryVerdict = { expired: true; why: string } | { expired: false; nextPollInMs: number };

export interface ExpiryProofOptions {
  /** Poll period while the lease may be within 1 s of its expiry (TTL ≤ 1). */
  fastPollMs: number;
  /** Poll period while the lease has 2 s or more left. */
  slowPollMs: number;
}

export class ExpiryProof {
  private readonly opts: ExpiryProofOptions;
  /** Receive time of the first TTL-0 answer of the current unbroken chain. */
  private chainStartMs: number | null = null;
  /** Send time of the last answer in the chain. */
  private lastSentMs = Number.NEGATIVE_INFINITY;

  constructor(opts: ExpiryProofOptions) {
    if (!(opts.fastPollMs > 0) || opts.fastPollMs >= TTL_RESOLUTION_MS / 2 || !(opts.slowPollMs > 0)) {
      throw new RangeError(`ExpiryProof: need 0 < fastPollMs < ${TTL_RESOLUTION_MS / 2} and slowPollMs > 0`);
    }
    this.opts = opts;
  }

  /** A poll failed or was skipped: nothing is known about the time since the last answer. */
  reset(): void {
    this.chainStartMs = null;
    this.lastSentMs = Number.NEGATIVE_INFINITY;
  }

  observe(a: TimeToLiveAnswer): ExpiryVerdict {
    const { fastPollMs, slowPollMs } = this.opts;
    if (a.ttlS < 0) return { expired: true, why: 'etcd reports the lease gone or expired (TTL −1)' };
    if (a.ttlS > 0 || !(a.grantedTtlS >= 2)) {
      // Alive (or a lease so short that a renewal could hide inside one TTL-0 second: never proven).
      this.reset();
      // Remaining ≥ ttlS s: it cannot fall under 1 s within (ttlS − 1) s. Catch the 1 → 0 step quickly.
      const nextPollInMs =
        a.ttlS >= 2 ? Math.min(slowPollMs, (a.ttlS - 1) * TTL_RESOLUTION_MS - fastPollMs) : fastPollMs;
      return { expired: false, nextPollInMs };
    }
    // TTL 0. The chain holds only if no renewal could have hidden between the two answers.
    if (this.chainStartMs === null || a.receivedAtMs - this.lastSentMs >= TTL_RESOLUTION_MS) {
      this.chainStartMs = a.receivedAtMs;
    }
    this.lastSentMs = a.sentAtMs;
    const provenAtMs = this.chainStartMs + TTL_RESOLUTION_MS;
    if (a.sentAtMs >= provenAtMs) {
      return {
        expired: true,
        why: `TTL 0 without a renewal from ${Math.round(a.sentAtMs - this.chainStartMs)} ms before this answer was sent`,
      };
    }
    return { expired: false, nextPollInMs: Math.max(0, Math.min(fastPollMs, provenAtMs - a.receivedAtMs)) };
  }
}
