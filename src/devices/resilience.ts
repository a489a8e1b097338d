// Resilience shared by every device adapter, so each protocol file only speaks its protocol:
// outer deadlines, one request at a time per connection, bounded retries with backoff and jitter,
// and the link-state rule (up/degraded/down). Invariant: every promise handed out here settles —
// by result, by deadline, or by close().
import { DeviceError, ErrorCodes } from '../errors.ts';
import type { LinkState, WriteOptions } from './device-io.ts';

/**
 * Runs `fn` with a signal that aborts at `timeoutMs` or when any `outer` signal aborts, and rejects
 * with a typed error then (the signal's reason is that error). One timer, cleared when the call
 * ends: AbortSignal.timeout() cannot be cancelled, and at a thousand calls a second its late
 * firings and weak references cost more CPU than the Modbus transaction itself.
 */
export async function withDeadline<T>(
  device: string,
  what: string,
  timeoutMs: number,
  outer: AbortSignal | readonly (AbortSignal | undefined)[] | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const outers = (Array.isArray(outer) ? outer : [outer]).filter((s): s is AbortSignal => s !== undefined);
  const callerAborted = (s: AbortSignal) =>
    new DeviceError(ErrorCodes.DEVICE_ABORTED, device, `${what}: aborted by caller`, { cause: s.reason });
  const already = outers.find((s) => s.aborted);
  if (already) throw callerAborted(already);
  const ctl = new AbortController();
  let fail!: (e: DeviceError) => void;
  const aborted = new Promise<never>((_, reject) => {
    fail = (e) => {
      ctl.abort(e);
      reject(e);
    };
  });
  aborted.catch(() => {}); // the losing race branch must not become an unhandled rejection
  const timer = setTimeout(
    () =>
      fail(
        new DeviceError(ErrorCodes.DEVICE_TIMEOUT, device, `${what}: no answer within ${timeoutMs} ms`, {
          retryable: true,
        }),
      ),
    timeoutMs,
  );
  const listeners = outers.map((s) => {
    const onAbort = (): void => fail(callerAborted(s));
    s.addEventListener('abort', onAbort, { once: true });
    return () => s.removeEventListener('abort', onAbort);
  });
  try {
    return await Promise.race([fn(ctl.signal), aborted]);
  } finally {
    clearTimeout(timer);
    for (const off of listeners) off();
  }
}

/** Runs tasks one at a time, in order. `close()` rejects everything still waiting. */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly waiting = new Set<(err: Error) => void>();
  private readonly device: string;

  constructor(device: string) {
    this.device = device;
  }

  run<T>(task: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(this.closedError());
    return new Promise<T>((resolve, reject) => {
      const cancel = (err: Error): void => reject(err);
      this.waiting.add(cancel);
      this.tail = this.tail.then(async () => {
        if (!this.waiting.delete(cancel)) return; // cancelled by close() while waiting
        try {
          resolve(await task());
        } catch (err) {
          reject(err);
        }
      });
    });
  }

  close(): void {
    this.closed = true;
    for (const cancel of this.waiting) cancel(this.closedError());
    this.waiting.clear();
  }

  get pending(): number {
    return this.waiting.size;
  }

  private closedError(): DeviceError {
    return new DeviceError(ErrorCodes.DEVICE_CLOSED, this.device, 'device closed');
  }
}

/** Exponential backoff with full jitter in [0.5, 1] × step, capped. */
export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(baseMs: number, maxMs: number, random: () => number = Math.random) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.random = random;
  }

  next(): number {
    const step = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return step * (0.5 + 0.5 * this.random());
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Sleeps `ms`, or rejects early if `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Retries `fn` while the error says retrying can help, at most `attempts` times in all, with
 * backoff between tries. Only for idempotent operations: reads, and absolute writes.
 * With `deadlineMs` (a `performance.now()` time), a backoff that would end past it is not slept:
 * the last real error is thrown instead, so the caller learns why, not just that time ran out.
 */
export async function retry<T>(
  fn: () => Promise<T>,
  opts: {
    attempts: number;
    backoff: Backoff;
    signal?: AbortSignal | undefined;
    deadlineMs?: number | undefined;
  },
): Promise<T> {
  opts.backoff.reset();
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      const retryable = err instanceof DeviceError && err.retryable;
      if (!retryable || i >= opts.attempts || opts.signal?.aborted) throw err;
      const waitMs = opts.backoff.next();
      if (opts.deadlineMs !== undefined && performance.now() + waitMs >= opts.deadlineMs) throw err;
      await pause(waitMs, opts.signal);
    }
  }
}

export interface LinkRule {
  /** Consecutive failures that make the link degraded. */
  degradedAfterFailures: number;
  /** Consecutive failures that make the link down. */
  downAfterFailures: number;
  /** Time without a success after which the link is down whatever the count. */
  downAfterMs: number;
}

export const defaultLinkRule: LinkRule = {
  degradedAfterFailures: 1,
  downAfterFailures: 3,
  downAfterMs: 10_000,
};

/** Link state from consecutive failures and time since the last success. */
export class LinkMonitor {
  private failures = 0;
  private lastSuccessMs: number;
  private current: LinkState = 'down';
  private readonly rule: LinkRule;
  private readonly onChange: (from: LinkState, to: LinkState, reason: string) => void;
  private readonly now: () => number;

  constructor(
    rule: LinkRule,
    onChange: (from: LinkState, to: LinkState, reason: string) => void,
    now: () => number = () => performance.now(),
  ) {
    this.rule = rule;
    this.onChange = onChange;
    this.now = now;
    this.lastSuccessMs = now();
  }

  get state(): LinkState {
    return this.current;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }

  success(): void {
    this.failures = 0;
    this.lastSuccessMs = this.now();
    this.set('up', 'request succeeded');
  }

  failure(reason: string): void {
    this.failures++;
    this.evaluate(reason);
  }

  /** Marks the link down at once (connection lost, closed). */
  lost(reason: string): void {
    this.failures = Math.max(this.failures, this.rule.downAfterFailures);
    this.set('down', reason);
  }

  /** Re-evaluates staleness; call periodically. */
  evaluate(reason = 'no successful request recently'): void {
    // Only a success brings a link back from down; another failure must not make it look better.
    if (this.current === 'down') return;
    const stale = this.now() - this.lastSuccessMs > this.rule.downAfterMs;
    if (this.failures >= this.rule.downAfterFailures || (stale && this.current !== 'up'))
      this.set('down', reason);
    else if (this.failures >= this.rule.degradedAfterFailures || stale) this.set('degraded', reason);
  }

  private set(to: LinkState, reason: string): void {
    if (to === this.current) return;
    const from = this.current;
    this.current = to;
    this.onChange(from, to, reason);
  }
}

/** Throws COOLCTL_E_NOT_LEADER when the caller's lease guard says no; call it in the same tick as the send. */
export function assertMayWrite(opts: WriteOptions, device: string, what: string): void {
  if (opts.mayWrite && !opts.mayWrite()) {
    throw new DeviceError(
      ErrorCodes.NOT_LEADER,
      device,
      `${what}: not sent, this node may not act (lease deadline passed or leadership lost)`,
    );
  }
}
