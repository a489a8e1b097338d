// Small async helpers every long-running component needs, so none of them hangs on stop():
// delays that can all be cancelled at once, a bounded wait for a promise, rate-limited warnings,
// a free port for servers that must know their port before they bind, and backoff.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';

/** Delays a component hands out (e.g. a "slow" fault); `cancelAll()` settles them all at once on stop. */
export class Delays {
  private readonly pending = new Set<{ timer: NodeJS.Timeout; done: () => void }>();

  wait(ms: number): Promise<void> {
    return new Promise((done) => {
      const entry = {
        timer: setTimeout(() => {
          this.pending.delete(entry);
          done();
        }, ms),
        done,
      };
      this.pending.add(entry);
    });
  }

  cancelAll(): void {
    for (const d of this.pending) {
      clearTimeout(d.timer);
      d.done();
    }
    this.pending.clear();
  }
}

/**
 * For a long pass on the event loop: `await turn()` between its items lets the loop turn once
 * `sliceMs` of work has run since the last turn (true), else goes on at once (false).
 */
export function sliceTurns(
  sliceMs: number,
  now: () => number = () => performance.now(),
): () => Promise<boolean> {
  let sliceFrom = now();
  return async () => {
    if (now() - sliceFrom < sliceMs) return false;
    await nextTurn();
    sliceFrom = now();
    return true;
  };
}

/** Waits `ms`: true when the time ran out, false at once if `signal` aborts first (or already had). */
export async function waitUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false; // timers/promises rejects only on abort
  }
}

/** True when `p` settled (either way) within `ms`; a stuck close must not hang whoever stops a server. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A port free on `host` now, for a server that must know its port before it binds (another process
 * may still take it first). Chosen below the kernel's ephemeral range where there is room: a port
 * from that range (what listen(0) hands out) can be taken meanwhile by any outgoing connection's
 * source port, and a busy test run makes thousands of those.
 */
export async function freePort(host: string): Promise<number> {
  const low = ephemeralLow();
  if (low !== null && low > 12_000) {
    for (let i = 0; i < 50; i++) {
      const port = 10_000 + Math.floor(Math.random() * (low - 10_000));
      if (handedOut.has(port)) continue;
      if (await bindable(host, port)) return handOut(port);
    }
  }
  return handOut(await osChosenPort(host));
}

/**
 * Ports this process has handed out: a port is free again the moment its probe closes, so a second
 * call before the first caller binds (servers started one after another, or in one Promise.all)
 * could hand out the same port twice and one of the two would fail to listen.
 */
const handedOut = new Set<number>();

function handOut(port: number): number {
  handedOut.add(port);
  return port;
}

/** The lowest port Linux gives outgoing connections (ip_local_port_range), or null elsewhere. */
function ephemeralLow(): number | null {
  try {
    const lo = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(lo) && lo > 0 ? lo : null;
  } catch {
    return null;
  }
}

function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', () => resolve(false));
    probe.listen(port, host, () => probe.close(() => resolve(true)));
  });
}

function osChosenPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const a = probe.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      probe.close(() => (port ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
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

/**
 * Runs `fn` until it succeeds, retrying (with backoff) only errors that say retrying can help
 * (`retryable: true`, as the error catalog's do), until `signal` aborts: then the last error is
 * thrown. A start-up step that needs etcd waits out a slow or briefly unavailable cluster this
 * way instead of failing the whole start on one slow answer.
 */
export async function retryWhileRetryable<T>(
  fn: () => Promise<T>,
  opts: { signal: AbortSignal; backoff?: Backoff; onRetry?: (err: unknown, retryInMs: number) => void },
): Promise<T> {
  const backoff = opts.backoff ?? new Backoff(100, 2_000);
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      const retryable = (err as { retryable?: unknown } | null)?.retryable === true;
      if (!retryable || opts.signal.aborted) throw err;
      const waitMs = backoff.next();
      opts.onRetry?.(err, waitMs);
      if (!(await waitUnlessAborted(waitMs, opts.signal))) throw err;
    }
  }
}
