// LeaseGuard: until when this node may act, decided on a monotonic clock from the SEND time of the
// last keepalive etcd acknowledged. etcd expires the lease no earlier than (when it processed that
// keepalive) + TTL, which is after (when we sent it) + TTL; so acting only before
// sentAt + TTL − margin cannot overlap with a successor, whatever the network or our event loop did.
// Invariants: the deadline never moves backwards within a generation; `mayAct()` is synchronous and
// reads the clock itself, so a frozen event loop (GC, SIGSTOP, VM pause) finds it false on resume
// before any timer or I/O callback could run; an ack of a keepalive sent before `invalidate()` is ignored.

export interface KeepaliveToken {
  /** Monotonic ms when the keepalive (or the grant) was sent. */
  readonly sentAtMs: number;
  /** The guard generation it belongs to; `invalidate()` starts a new one. */
  readonly generation: number;
}

export interface LeaseGuardOptions {
  ttlMs: number;
  marginMs: number;
  /** Monotonic clock in ms; injectable for tests. */
  now?: () => number;
}

export class LeaseGuard {
  private readonly ttlMs: number;
  private readonly marginMs: number;
  private readonly now: () => number;
  private generation = 0;
  private deadline = Number.NEGATIVE_INFINITY;
  private invalidReason: string | null = 'no lease yet';

  constructor(opts: LeaseGuardOptions) {
    if (!(opts.ttlMs > 0) || !(opts.marginMs >= 0) || opts.marginMs >= opts.ttlMs) {
      throw new RangeError(
        `LeaseGuard: need ttlMs > marginMs >= 0 (ttlMs ${opts.ttlMs}, marginMs ${opts.marginMs})`,
      );
    }
    this.ttlMs = opts.ttlMs;
    this.marginMs = opts.marginMs;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Call right before sending a keepalive (or the lease grant); hand the token to `keepaliveAcked`. */
  keepaliveSent(): KeepaliveToken {
    return { sentAtMs: this.now(), generation: this.generation };
  }

  /**
   * etcd acknowledged the keepalive sent with `token` (TTL > 0). Returns whether the deadline moved.
   * An ack from before the last `invalidate()` proves nothing about the current lease and is ignored.
   */
  keepaliveAcked(token: KeepaliveToken): boolean {
    if (token.generation !== this.generation) return false;
    const candidate = token.sentAtMs + this.ttlMs - this.marginMs;
    if (candidate <= this.deadline) return false;
    this.deadline = candidate;
    this.invalidReason = null;
    return true;
  }

  /** Synchronous: may this node act (write to devices) right now? */
  mayAct(): boolean {
    return this.now() < this.deadline;
  }

  /** Ms left before the deadline (≤ 0 once passed or invalidated). */
  remainingMs(): number {
    return this.deadline === Number.NEGATIVE_INFINITY ? 0 : this.deadline - this.now();
  }

  /** The monotonic deadline (−Infinity when invalidated or never proven). */
  deadlineMs(): number {
    return this.deadline;
  }

  /** Why the guard does not allow acting, as far as it knows ('expired' if the deadline simply passed). */
  reason(): string | null {
    if (this.invalidReason) return this.invalidReason;
    return this.mayAct() ? null : 'lease deadline passed';
  }

  /** Stops acting at once (lease lost, shutdown); keepalives already in flight no longer count. */
  invalidate(reason: string): void {
    this.generation++;
    this.deadline = Number.NEGATIVE_INFINITY;
    this.invalidReason = reason;
  }
}
