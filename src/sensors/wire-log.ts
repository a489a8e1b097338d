// Log lines about what the wire sends. A sender chooses how many messages we get, so each kind of
// line is written at most `burst` times per window, and the next line written says how many were
// not; and a string from the wire is clipped before it is logged, so a 60 KB field is still a line of
// ordinary length. Limiter keys are a bounded set (drop reasons, configured gateways), never wire text.

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

  constructor(now: () => number, windowMs: number, burst = 1) {
    this.now = now;
    this.windowMs = windowMs;
    this.burst = burst;
  }

  /**
   * Whether a line of `key` may be written now: the number of its lines not written since the last
   * one that was (write it with the line), or -1 when it may not (it is counted for the next one).
   */
  admit(key: string): number {
    const now = this.now();
    const w = this.windows.get(key);
    if (!w) {
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
