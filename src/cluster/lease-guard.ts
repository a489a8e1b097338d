// LeaseGuard: until when this node may act, decided on a monotonic clock from the SEND time of the
// last keepalive etcd acknowledged. etcd expires the lease no earlier than (when it processed that
// keepalive) + TTL, which is after (when we sent it) + TTL; so acting only before
// sentAt + TTL − margin cannot overlap with a successor, whatever the network or our event loop did.
// Invariants: the deadline never moves backwards within a generation; `mayAct()` is synchronous and
// reads the clock itself, so a frozen event loop (GC, SIGSTOP, VM pause) finds it false on resume
// before any timer or I/O callback could run; an ack of a keepalive sent before `invalidate()` is ignored.
//
// The state may live in a SharedArrayBuffer (`shared`) that the keepalive worker thread
// (keepalive-worker.ts) and the main thread each wrap in a LeaseGuard: the worker sends keepalives
// and moves the deadline, the main thread asks mayAct(); either may invalidate. Both then read ONE
// clock, process.hrtime (CLOCK_MONOTONIC, the same in every thread — performance.now() has a time
// origin per thread). The deadline is written with its generation: a deadline whose generation is
// not the current one counts as none, so an invalidate() racing an ack on the other thread wins.

export interface KeepaliveToken {
  /** Monotonic ms (the guard's clock) when the keepalive (or the grant) was sent. */
  readonly sentAtMs: number;
  /** The guard generation it belongs to; `invalidate()` starts a new one. */
  readonly generation: number;
}

export interface LeaseGuardOptions {
  ttlMs: number;
  marginMs: number;
  /**
   * The caller's monotonic clock in ms (default performance.now()): what deadlineMs() and
   * remainingMs() are expressed in. Injectable for tests.
   */
  now?: () => number;
  /** State shared with another thread's guard (LEASE_GUARD_BYTES long); absent: private state. */
  shared?: SharedArrayBuffer;
}

/** Slots of the shared state, each a BigInt64 read and written with Atomics. */
const DEADLINE_US = 0;
const DEADLINE_GEN = 1;
const GEN = 2;
const HEARTBEAT_US = 3;
const SLOTS = 4;
export const LEASE_GUARD_BYTES = SLOTS * BigInt64Array.BYTES_PER_ELEMENT;
const NONE = -(2n ** 63n);

/** The one clock every thread reads the same way: CLOCK_MONOTONIC in ms. */
export function sharedClockMs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}

export class LeaseGuard {
  private readonly ttlMs: number;
  private readonly marginMs: number;
  private readonly now: () => number;
  /** The clock the shared state is kept in (the caller's own when nothing is shared). */
  private readonly clock: () => number;
  /** clock − now, sampled once; rounded so that deadlines read in `now` terms are never later. */
  private readonly offsetMs: number;
  private readonly state: BigInt64Array;
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
    if (opts.shared) {
      if (opts.shared.byteLength < LEASE_GUARD_BYTES)
        throw new RangeError('LeaseGuard: shared buffer too small');
      this.state = new BigInt64Array(opts.shared, 0, SLOTS);
      this.clock = sharedClockMs;
      this.offsetMs = sampleOffset(this.clock, this.now);
    } else {
      this.state = new BigInt64Array(SLOTS);
      Atomics.store(this.state, DEADLINE_US, NONE);
      Atomics.store(this.state, DEADLINE_GEN, -1n);
      this.clock = this.now;
      this.offsetMs = 0;
    }
  }

  /** A fresh shared state for a guard pair: no deadline, generation 0. */
  static sharedState(): SharedArrayBuffer {
    const buf = new SharedArrayBuffer(LEASE_GUARD_BYTES);
    const s = new BigInt64Array(buf);
    Atomics.store(s, DEADLINE_US, NONE);
    Atomics.store(s, DEADLINE_GEN, -1n);
    return buf;
  }

  /** Call right before sending a keepalive (or the lease grant); hand the token to `keepaliveAcked`. */
  keepaliveSent(): KeepaliveToken {
    return { sentAtMs: this.clock(), generation: Number(Atomics.load(this.state, GEN)) };
  }

  /**
   * etcd acknowledged the keepalive sent with `token` (TTL > 0). Returns whether the deadline moved.
   * An ack from before the last `invalidate()` proves nothing about the current lease and is ignored.
   */
  keepaliveAcked(token: KeepaliveToken): boolean {
    const gen = BigInt(token.generation);
    if (gen !== Atomics.load(this.state, GEN)) return false;
    // Rounded down to whole µs: never later than the exact deadline.
    const candidate = BigInt(Math.floor((token.sentAtMs + this.ttlMs - this.marginMs) * 1000));
    const current =
      Atomics.load(this.state, DEADLINE_GEN) === gen ? Atomics.load(this.state, DEADLINE_US) : NONE;
    if (candidate <= current) return false;
    // Deadline first, then its generation: a reader between the two sees the old generation (none).
    Atomics.store(this.state, DEADLINE_US, candidate);
    Atomics.store(this.state, DEADLINE_GEN, gen);
    this.invalidReason = null;
    return true;
  }

  /** Synchronous: may this node act (write to devices) right now? */
  mayAct(): boolean {
    const deadline = this.currentDeadlineUs();
    return deadline !== NONE && this.clock() * 1000 < Number(deadline);
  }

  /** Ms left before the deadline (≤ 0 once passed or invalidated). */
  remainingMs(): number {
    const deadline = this.currentDeadlineUs();
    return deadline === NONE ? 0 : Number(deadline) / 1000 - this.clock();
  }

  /** The deadline on the caller's `now` clock (−Infinity when invalidated or never proven). */
  deadlineMs(): number {
    const deadline = this.currentDeadlineUs();
    return deadline === NONE ? Number.NEGATIVE_INFINITY : Number(deadline) / 1000 - this.offsetMs;
  }

  /** Whether a deadline was proven in the current generation (it may have passed since). */
  proven(): boolean {
    return this.currentDeadlineUs() !== NONE;
  }

  /** Why the guard does not allow acting, as far as it knows ('expired' if the deadline simply passed). */
  reason(): string | null {
    if (!this.proven()) return this.invalidReason ?? 'lease invalidated';
    return this.mayAct() ? null : 'lease deadline passed';
  }

  /** Records why the other thread invalidated the guard (for reason()); changes nothing else. */
  noteInvalid(reason: string): void {
    if (!this.proven()) this.invalidReason = reason;
  }

  /** Stops acting at once (lease lost, shutdown); keepalives already in flight no longer count. */
  invalidate(reason: string): void {
    Atomics.add(this.state, GEN, 1n);
    Atomics.store(this.state, DEADLINE_US, NONE);
    this.invalidReason = reason;
  }

  /** The main thread says it is alive (its loop ran), on the shared clock. */
  beat(): void {
    Atomics.store(this.state, HEARTBEAT_US, BigInt(Math.floor(this.clock() * 1000)));
  }

  /** Ms since the main thread last said it was alive. */
  sinceBeatMs(): number {
    return this.clock() - Number(Atomics.load(this.state, HEARTBEAT_US)) / 1000;
  }

  private currentDeadlineUs(): bigint {
    if (Atomics.load(this.state, DEADLINE_GEN) !== Atomics.load(this.state, GEN)) return NONE;
    return Atomics.load(this.state, DEADLINE_US);
  }
}

/**
 * clock − now, from the tightest of a few bracketed samples. The larger end of the bracket is
 * used: a deadline converted to `now` terms can only come out earlier than it is (by < 1 µs).
 */
function sampleOffset(clock: () => number, now: () => number): number {
  let best = { width: Number.POSITIVE_INFINITY, offset: 0 };
  for (let i = 0; i < 5; i++) {
    const a = clock();
    const n = now();
    const b = clock();
    if (b - a < best.width) best = { width: b - a, offset: b - n };
  }
  return best.offset;
}
