// Shared test helpers: wait for a condition with a deadline (never a bare sleep), a quiet logger,
// and a check that no unhandled rejection slipped through a test file.
import { connect } from 'node:net';
import { pino } from 'pino';

export const quietLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/** Polls `fn` until it returns a truthy value (returned) or the deadline passes (throws with `what`). */
export async function waitFor<T>(
  what: string,
  fn: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 20 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<NonNullable<T>> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * The error `p` rejects with, checked to be a `type` (a call that succeeds, or fails with anything
 * else, fails the test with what it did instead).
 */
export async function rejectionOf<E extends Error>(
  p: Promise<unknown>,
  type: abstract new (...args: never[]) => E,
): Promise<E> {
  const err = await p.then(
    () => {
      throw new Error(`expected the call to fail with a ${type.name}`);
    },
    (e: unknown) => e,
  );
  if (!(err instanceof type)) throw new Error(`expected a ${type.name}, got: ${String(err)}`, { cause: err });
  return err;
}

/** Whether something accepts a TCP connection on 127.0.0.1:`port` (false on refusal or after 2 s). */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.setTimeout(2_000, () => {
      s.destroy();
      resolve(false);
    });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
