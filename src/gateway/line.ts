// One line of the gateway: a bounded queue in front of one transport, served one request at a time.
// A request not started within `queueTimeoutMs` of its arrival is answered without ever touching
// the line (its `expire` answer): together with the unit's deadline this bounds how long the gateway
// can hold a write — the figure the controllers' `client.maxApplyDelayMs` is set from. A dead unit
// costs the units queued behind it at most its own deadline per request.
import type { Transport } from './transport.ts';

export interface LineJob<T> {
  /** performance.now() when the request arrived. */
  arrivedMs: number;
  /** Runs with the line to itself. Must not throw; must end (every transport call has a deadline). */
  run: () => Promise<T>;
  /** The answer for a request that waited too long. */
  expire: () => T;
}

export class Line {
  readonly name: string;
  readonly transport: Transport;
  private readonly queueTimeoutMs: number;
  private readonly maxQueued: number;
  private readonly queue: { job: LineJob<unknown>; resolve: (v: unknown) => void }[] = [];
  private pumping = false;
  private stopped = false;
  /** performance.now() when the job on the line started, or undefined when idle. */
  private busySinceMs: number | undefined;

  constructor(name: string, transport: Transport, queueTimeoutMs: number, maxQueued: number) {
    this.name = name;
    this.transport = transport;
    this.queueTimeoutMs = queueTimeoutMs;
    this.maxQueued = maxQueued;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** How long the job on the line has run (0 when idle): a wedged line shows here. */
  busyForMs(now = performance.now()): number {
    return this.busySinceMs === undefined ? 0 : now - this.busySinceMs;
  }

  /** Queues `job`; undefined when the queue is full (the caller answers busy). */
  submit<T>(job: LineJob<T>): Promise<T> | undefined {
    if (this.stopped || this.queue.length >= this.maxQueued) return undefined;
    return new Promise<T>((resolve) => {
      this.queue.push({ job, resolve: resolve as (v: unknown) => void });
      if (!this.pumping) void this.pump();
    });
  }

  /** Answers everything queued with its `expire` answer; the job on the line ends by its deadline. */
  stop(): void {
    this.stopped = true;
    for (const q of this.queue.splice(0)) q.resolve(q.job.expire());
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      for (let q = this.queue.shift(); q; q = this.queue.shift()) {
        if (performance.now() - q.job.arrivedMs > this.queueTimeoutMs) {
          q.resolve(q.job.expire());
          continue;
        }
        this.busySinceMs = performance.now();
        try {
          q.resolve(await q.job.run());
        } catch {
          // A job is built not to throw; if one does, its client still gets an answer.
          q.resolve(q.job.expire());
        } finally {
          this.busySinceMs = undefined;
        }
      }
    } finally {
      this.pumping = false;
    }
  }
}
