// One line of the gateway: bounded queues in front of one transport, served one request at a time.
// Each unit has its own queue (first come, first served within it) and the units take turns, so a
// dead unit with many requests waiting costs another unit's request at most one of its deadlines,
// not one per request waiting. A request not started within `queueTimeoutMs` of its arrival is
// answered without ever touching the line (its `expire` answer): with the unit's deadline this
// bounds how long the gateway can hold a write — what the controllers' `client.maxApplyDelayMs`
// is set from.
import type { Transport } from './transport.ts';

export interface LineJob<T> {
  /** The unit it is for: units take turns on the line. */
  unitId: number;
  /** performance.now() when the request arrived. */
  arrivedMs: number;
  /** Runs with the line to itself. Must not throw; must end (every transport call has a deadline). */
  run: () => Promise<T>;
  /** The answer for a request that waited too long. */
  expire: () => T;
  /** A fenced write: it may take the places kept from reads (`reservedForWrites`). */
  write?: boolean;
}

/**
 * Places of a line's queue only fenced writes may take: reads pipelined by any client (a poller,
 * a scan, a stuck controller) must not crowd out the leader's writes, which then answer busy and
 * fall behind the unit's watchdog. An eighth of the queue, at least one, on queues of 4 or more.
 */
export function reservedForWrites(maxQueued: number): number {
  return maxQueued >= 4 ? Math.max(1, Math.floor(maxQueued / 8)) : 0;
}

interface Waiting {
  job: LineJob<unknown>;
  resolve: (v: unknown) => void;
}

export class Line {
  readonly name: string;
  readonly transport: Transport;
  private readonly queueTimeoutMs: number;
  private readonly maxQueued: number;
  /** How many requests other than fenced writes may wait (maxQueued less the places kept for writes). */
  private readonly maxQueuedReads: number;
  /** Per unit, in arrival order; a Map iterates in insertion order, which makes the turns. */
  private readonly queues = new Map<number, Waiting[]>();
  private waiting = 0;
  private pumping = false;
  private stopped = false;
  /** performance.now() when the job on the line started, or undefined when idle. */
  private busySinceMs: number | undefined;

  constructor(name: string, transport: Transport, queueTimeoutMs: number, maxQueued: number) {
    this.name = name;
    this.transport = transport;
    this.queueTimeoutMs = queueTimeoutMs;
    this.maxQueued = maxQueued;
    this.maxQueuedReads = maxQueued - reservedForWrites(maxQueued);
  }

  get queued(): number {
    return this.waiting;
  }

  /** How long the job on the line has run (0 when idle): a wedged line shows here. */
  busyForMs(now = performance.now()): number {
    return this.busySinceMs === undefined ? 0 : now - this.busySinceMs;
  }

  /** Queues `job`; undefined when the line's queue is full for it (the caller answers busy). */
  submit<T>(job: LineJob<T>): Promise<T> | undefined {
    if (this.stopped || this.waiting >= (job.write ? this.maxQueued : this.maxQueuedReads)) return undefined;
    return new Promise<T>((resolve) => {
      let q = this.queues.get(job.unitId);
      if (!q) {
        q = [];
        this.queues.set(job.unitId, q);
      }
      q.push({ job, resolve: resolve as (v: unknown) => void });
      this.waiting++;
      if (!this.pumping) void this.pump();
    });
  }

  /** Answers everything queued with its `expire` answer; the job on the line ends by its deadline. */
  stop(): void {
    this.stopped = true;
    for (const q of this.queues.values()) for (const w of q.splice(0)) w.resolve(w.job.expire());
    this.queues.clear();
    this.waiting = 0;
  }

  /** The next request: the oldest of the unit whose turn it is; that unit goes to the back. */
  private next(): Waiting | undefined {
    for (const [unitId, q] of this.queues) {
      this.queues.delete(unitId);
      const w = q.shift();
      if (q.length > 0) this.queues.set(unitId, q);
      if (w) {
        this.waiting--;
        return w;
      }
    }
    return undefined;
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      for (let w = this.next(); w; w = this.next()) {
        if (performance.now() - w.job.arrivedMs > this.queueTimeoutMs) {
          w.resolve(w.job.expire());
          continue;
        }
        this.busySinceMs = performance.now();
        try {
          w.resolve(await w.job.run());
        } catch {
          // A job is built not to throw; if one does, its client still gets an answer.
          w.resolve(w.job.expire());
        } finally {
          this.busySinceMs = undefined;
        }
      }
    } finally {
      this.pumping = false;
    }
  }
}
