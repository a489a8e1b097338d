// Resilience shared by every device adapter, so each protocol file only speaks its protocol:
// outer deadlines, one request at a time per connection, bounded retries with backoff and jitter,
// and the link-state rule (up/degraded/down). Invariant: every promise handed out here settles —
// by result, by deadline, or by close().
import { DeviceError, ErrorCodes } from '../errors.ts';
import { Backoff } from '../util/async.ts';
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

/**
 * One call in a `CallLane`: its deadline, and how it ended early if it did. The body sees the end
 * through `abandoned` and `onAbandon` (the hot path, no allocation); `signal` is made only when a
 * slow path (connect, backoff) asks for one.
 */
export class LaneCall {
  readonly what: string;
  /** The caller's signal, if it gave one. */
  readonly outer: AbortSignal | undefined;
  /** When the call entered its lane, and when its outer deadline passes (`performance.now()` times). */
  startMs = 0;
  deadlineMs = 0;
  /** When its body started: its turn came (0 until then). */
  bodyStartMs = 0;
  /** Why the call ended before its body did (deadline, caller's abort, close); undefined until then. */
  abandoned: DeviceError | undefined = undefined;
  /** Set by the body while a request is on the wire: called once if the call is abandoned meanwhile. */
  onAbandon: ((err: DeviceError) => void) | undefined = undefined;
  settled = false;
  resolve: (value: unknown) => void = noop;
  reject: (err: unknown) => void = noop;
  body: ((call: never) => Promise<unknown>) | undefined = undefined;
  onOuterAbort: (() => void) | undefined = undefined;
  private ctl: AbortController | undefined = undefined;

  constructor(what: string, outer: AbortSignal | undefined) {
    this.what = what;
    this.outer = outer;
  }

  /** Aborts (with the `abandoned` error) when the call is abandoned. */
  get signal(): AbortSignal {
    if (!this.ctl) {
      this.ctl = new AbortController();
      if (this.abandoned) this.ctl.abort(this.abandoned);
    }
    return this.ctl.signal;
  }

  abandon(err: DeviceError): void {
    this.abandoned = err;
    this.ctl?.abort(err);
    const onAbandon = this.onAbandon;
    this.onAbandon = undefined;
    onAbandon?.(err);
  }
}

/** What a lane tells its owner of a call as it settles; on a failure, returns the error to reject with. */
export type CallEnded = (call: LaneCall, err: unknown, failed: boolean) => unknown;

/**
 * Calls on one connection: one at a time, in order, each under an outer deadline of `timeoutMs`.
 * Every call has the same timeout, so deadlines fall in arrival order and one timer serves the
 * whole lane (armed for the oldest unsettled call, re-armed when it fires) instead of a timer and
 * an AbortSignal per call, whose cost at thousands of calls a second rivalled the transaction's.
 * A call settles at its deadline, on its caller's abort, or on `close()`, whatever its body does;
 * the next call starts only when the body of the one before has ended (its request is then off the
 * wire or its connection destroyed). An idle lane starts a call at once, in the caller's tick.
 */
export class CallLane {
  private readonly device: string;
  private readonly timeoutMs: number;
  /** Unsettled calls (and settled ones not yet pruned), oldest first: deadline order. */
  private readonly byDeadline: LaneCall[] = [];
  private readonly waiting: LaneCall[] = [];
  private active: LaneCall | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAtMs = Number.POSITIVE_INFINITY;
  private closedError: DeviceError | undefined;
  private readonly onTimer = (): void => this.expire();
  // The body that settles is always the active one's (the next starts only after): no closures per call.
  private readonly onBodyResolved = (value: unknown): void =>
    this.bodyEnded(this.active!, value, undefined, false);
  private readonly onBodyRejected = (err: unknown): void =>
    this.bodyEnded(this.active!, undefined, err, true);
  private readonly ended: CallEnded;

  /**
   * `ended` sees every call once as it settles (for metrics and link state, with no promise of its
   * own per call); on a failure it returns the error the caller gets.
   */
  constructor(device: string, timeoutMs: number, ended: CallEnded = (_call, err) => err) {
    this.device = device;
    this.timeoutMs = timeoutMs;
    this.ended = ended;
  }

  /** Runs `body` in turn; settles with its result, or a typed error at the deadline, abort or close. */
  run<C extends LaneCall, T>(call: C, body: (call: C) => Promise<T>): Promise<T> {
    const now = performance.now();
    call.startMs = now;
    if (this.closedError) return Promise.reject(this.ended(call, this.closedError, true));
    const { what, outer } = call;
    if (outer?.aborted) return Promise.reject(this.ended(call, this.callerAborted(what, outer), true));
    call.deadlineMs = now + this.timeoutMs;
    const settled = new Promise<T>((resolve, reject) => {
      call.resolve = resolve as (value: unknown) => void;
      call.reject = reject;
    });
    call.body = body as (call: never) => Promise<unknown>;
    this.byDeadline.push(call);
    if (this.timerAtMs > call.deadlineMs) this.arm(call.deadlineMs, now);
    if (outer) {
      call.onOuterAbort = () => this.end(call, this.callerAborted(what, outer));
      outer.addEventListener('abort', call.onOuterAbort, { once: true });
    }
    if (this.active === undefined) this.start(call, now);
    else this.waiting.push(call);
    return settled;
  }

  /** Settles every call still pending with `err`; the lane takes no more. */
  close(err: DeviceError): void {
    this.closedError ??= err;
    this.waiting.length = 0;
    for (const call of this.byDeadline.splice(0)) this.end(call, err);
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAtMs = Number.POSITIVE_INFINITY;
  }

  private start(call: LaneCall, nowMs: number): void {
    this.active = call;
    call.bodyStartMs = nowMs;
    const body = call.body as (call: LaneCall) => Promise<unknown>;
    call.body = undefined;
    let running: Promise<unknown>;
    try {
      running = body(call);
    } catch (err) {
      running = Promise.reject(err);
    }
    running.then(this.onBodyResolved, this.onBodyRejected);
  }

  private bodyEnded(call: LaneCall, value: unknown, err: unknown, failed: boolean): void {
    // Still the active call while `ended` runs: a call made from there (a link event's listener)
    // waits for its turn instead of starting beside the next one.
    if (!call.settled) {
      this.settle(call);
      if (failed) call.reject(this.ended(call, err, true));
      else {
        this.ended(call, undefined, false);
        call.resolve(value);
      }
    }
    this.active = undefined;
    let next = this.waiting.shift();
    // A call abandoned while it waited never reaches the wire.
    while (next?.settled) next = this.waiting.shift();
    if (next) this.start(next, performance.now());
  }

  /** Ends a call early: its body learns it through `abandoned`/`onAbandon`, its caller gets `err`. */
  private end(call: LaneCall, err: DeviceError): void {
    if (call.settled) return;
    this.settle(call);
    call.abandon(err);
    call.reject(this.ended(call, err, true));
  }

  private settle(call: LaneCall): void {
    call.settled = true;
    if (call.onOuterAbort) call.outer!.removeEventListener('abort', call.onOuterAbort);
    // Calls settle in order nearly always: pruning the head keeps the list as short as the backlog.
    const list = this.byDeadline;
    while (list.length > 0 && list[0]!.settled) list.shift();
  }

  private arm(atMs: number, nowMs: number): void {
    clearTimeout(this.timer);
    this.timerAtMs = atMs;
    this.timer = setTimeout(this.onTimer, Math.max(1, Math.ceil(atMs - nowMs)));
  }

  private expire(): void {
    this.timer = undefined;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    const now = performance.now();
    const list = this.byDeadline;
    // Timers fire on the loop's millisecond clock: within a millisecond of its deadline is due.
    while (list.length > 0 && list[0]!.deadlineMs - now < 1) {
      const call = list.shift()!;
      if (!call.settled) this.end(call, this.timedOut(call.what));
    }
    while (list.length > 0 && list[0]!.settled) list.shift();
    if (list.length > 0) this.arm(list[0]!.deadlineMs, now);
  }

  private timedOut(what: string): DeviceError {
    return new DeviceError(
      ErrorCodes.DEVICE_TIMEOUT,
      this.device,
      `${what}: no answer within ${this.timeoutMs} ms`,
      {
        retryable: true,
      },
    );
  }

  private callerAborted(what: string, s: AbortSignal): DeviceError {
    return new DeviceError(ErrorCodes.DEVICE_ABORTED, this.device, `${what}: aborted by caller`, {
      cause: s.reason,
    });
  }
}

function noop(): void {}

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

/**
 * The longest wait between two tries of an endpoint that is away, whatever the protocol and however
 * long it has been away. A leader keeps claiming a group whose units are away (it hands the group on
 * only where another node could do better), so a unit that returns must be written again well
 * inside the liveness bound — half the shortest watchdog a site may set (2.5 s in the chaos hall) —
 * not after a backoff grown to several seconds. One try a second of a dead endpoint costs little.
 */
export const RECONNECT_MAX_MS = 1_000;

/**
 * Reconnecting to a Modbus endpoint that failed (a unit, a sensor gateway): first try after ~100 ms,
 * then doubling up to RECONNECT_MAX_MS (with jitter).
 */
export function reconnectBackoff(): Backoff {
  return new Backoff(100, RECONNECT_MAX_MS);
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

export interface RetryOptions {
  /** Tries in all, the first included. */
  attempts: number;
  backoff: Backoff;
  signal?: AbortSignal | undefined;
  deadlineMs?: number | undefined;
}

/**
 * Retries `fn` while the error says retrying can help, at most `attempts` times in all, with
 * backoff between tries. Only for idempotent operations: reads, and absolute writes.
 * With `deadlineMs` (a `performance.now()` time), a backoff that would end past it is not slept:
 * the last real error is thrown instead, so the caller learns why, not just that time ran out.
 */
export async function retry<T>(fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    return retryAfter(err, fn, opts);
  }
}

/**
 * `retry` for a first try the caller made itself and saw fail with `firstError`: callers keep the
 * first try on their hot path, with no closure or options object, and come here only on a failure.
 */
export async function retryAfter<T>(
  firstError: unknown,
  fn: () => Promise<T>,
  opts: RetryOptions,
): Promise<T> {
  opts.backoff.reset();
  let err = firstError;
  for (let i = 1; ; i++) {
    const retryable = err instanceof DeviceError && err.retryable;
    if (!retryable || i >= opts.attempts || opts.signal?.aborted) throw err;
    const waitMs = opts.backoff.next();
    if (opts.deadlineMs !== undefined && performance.now() + waitMs >= opts.deadlineMs) throw err;
    await pause(waitMs, opts.signal);
    try {
      return await fn();
    } catch (e) {
      err = e;
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

/**
 * The time a write attempt has before it must have landed (ms; Infinity without a caller deadline).
 * Throws COOLCTL_E_NOT_LEADER, and nothing may be sent, when the caller's lease guard says no or
 * when the unit's worst case (`maxApplyDelayMs`: on the wire until applied or dropped) would end
 * after the caller's deadline. Call it in the same tick as the send: a frozen process (GC, SIGSTOP)
 * resumes with the clock read here, never with a budget computed before the pause.
 */
export function writeBudgetMs(
  opts: WriteOptions,
  device: string,
  what: string,
  maxApplyDelayMs: number,
): number {
  if (opts.mayWrite && !opts.mayWrite()) {
    throw new DeviceError(
      ErrorCodes.NOT_LEADER,
      device,
      `${what}: not sent, this node may not act (lease deadline passed or leadership lost)`,
    );
  }
  if (!opts.deadlineMs) return Number.POSITIVE_INFINITY;
  const deadline = opts.deadlineMs();
  const budgetMs = deadline === null ? Number.NaN : deadline - performance.now();
  if (!(budgetMs > 0)) {
    throw new DeviceError(
      ErrorCodes.NOT_LEADER,
      device,
      `${what}: not sent, this node may not act (lease deadline passed or leadership lost)`,
    );
  }
  if (budgetMs < maxApplyDelayMs) {
    throw new DeviceError(
      ErrorCodes.NOT_LEADER,
      device,
      `${what}: not sent, ${Math.floor(budgetMs)} ms are left of the lease but the unit may take ` +
        `${maxApplyDelayMs} ms to apply a write (client.maxApplyDelayMs): it could land after a successor's`,
    );
  }
  return budgetMs;
}
