// Log lines about what others send us (the wire, peers, clients). A sender chooses how many messages
// we get, so each kind of line is written at most `burst` times per window, and the next line written
// says how many were not; and a string from the wire is clipped before it is logged, so a 60 KB field
// is still a line of ordinary length. Keys are a bounded set (reasons, routes, configured gateways),
// never wire text; past `maxKeys` of them the memory of what was logged starts afresh.
import type { Logger } from 'pino';

/** Longest wire-supplied string a log line carries, in UTF-16 units (a clipped one says its length). */
export const MAX_LOGGED_TEXT = 120;

/** `text` as a log line may carry it: at most `max` units of it, and how long it was if it was longer. */
export function clip(text: string, max = MAX_LOGGED_TEXT): string {
  if (text.length <= max) return text;
  let end = max;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--; // never half a surrogate pair
  return `${text.slice(0, end)}… (${text.length} chars)`;
}

interface LogWindow {
  fromMs: number;
  written: number;
  notLogged: number;
}

/** Per key: at most `burst` lines every `windowMs` (on the caller's monotonic clock). */
export class LogLimiter {
  private readonly windows = new Map<string, LogWindow>();
  private readonly now: () => number;
  private readonly windowMs: number;
  private readonly burst: number;
  private readonly maxKeys: number;

  constructor(now: () => number, windowMs: number, burst = 1, maxKeys = 1_000) {
    this.now = now;
    this.windowMs = windowMs;
    this.burst = burst;
    this.maxKeys = maxKeys;
  }

  /**
   * Whether a line of `key` may be written now: the number of its lines not written since the last
   * one that was (write it with the line), or -1 when it may not (it is counted for the next one).
   */
  admit(key: string): number {
    const now = this.now();
    const w = this.windows.get(key);
    if (!w) {
      if (this.windows.size >= this.maxKeys) this.windows.clear();
      this.windows.set(key, { fromMs: now, written: 1, notLogged: 0 });
      return 0;
    }
    // A clock that went back (never the monotonic one; a test's) starts a new window too.
    if (now - w.fromMs >= this.windowMs || now < w.fromMs) {
      w.fromMs = now;
      w.written = 0;
    }
    if (w.written >= this.burst) {
      w.notLogged++;
      return -1;
    }
    w.written++;
    const notLogged = w.notLogged;
    w.notLogged = 0;
    return notLogged;
  }
}

/**
 * Lines of a few kinds, each at most once per `intervalMs`; a line written says how many of its
 * kind were not (`suppressedSinceLast`).
 */
export class RateLimitedLog {
  private readonly log: Logger;
  private readonly limiter: LogLimiter;

  constructor(log: Logger, intervalMs: number, now: () => number = () => performance.now()) {
    this.log = log;
    this.limiter = new LogLimiter(now, intervalMs);
  }

  warn(kind: string, fields: Record<string, unknown>, msg: string): void {
    const n = this.limiter.admit(kind);
    if (n >= 0) this.log.warn({ ...fields, suppressedSinceLast: n }, msg);
  }

  info(kind: string, fields: Record<string, unknown>, msg: string): void {
    const n = this.limiter.admit(kind);
    if (n >= 0) this.log.info({ ...fields, suppressedSinceLast: n }, msg);
  }
}

/** How often a fault that goes on (or flaps) may be logged again, per subject. */
export const FAULT_LOG_INTERVAL_MS = 60_000;

/**
 * A fault of a few subjects (units, a link) as log lines, for faults that recur every period: a
 * failure line at most once per `intervalMs` per subject — the first at once, then one saying how
 * many were not logged — and the recovery line only when a failure line is its news. A steady fault
 * costs a line a minute, one that flaps every period two; the caller's counters count every one.
 */
export class FaultLog {
  private readonly limiter: LogLimiter;
  /** Subjects whose last line written is a failure. */
  private readonly failing = new Set<string>();

  constructor(now: () => number = () => performance.now(), intervalMs = FAULT_LOG_INTERVAL_MS) {
    this.limiter = new LogLimiter(now, intervalMs);
  }

  /** A failure of `subject`: the failures not logged since its last line (write them with it), or -1. */
  failure(subject: string): number {
    const notLogged = this.limiter.admit(subject);
    if (notLogged >= 0) this.failing.add(subject);
    return notLogged;
  }

  /**
   * Whether `subject`'s last line written says it fails. A caller that logs a failure only when it
   * changes asks again while this is false, so a failure held back by the interval is still written
   * once the interval is over, however steady it then stays.
   */
  reported(subject: string): boolean {
    return this.failing.has(subject);
  }

  /** `subject` works again: whether to log it (its last line written says it failed). */
  recovery(subject: string): boolean {
    return this.failing.delete(subject);
  }
}
