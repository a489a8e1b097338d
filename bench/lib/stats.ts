// Statistics and waiting shared by the benchmarks. Percentiles are nearest rank: with 20 trials
// p99 is the slowest trial, so a target "p99 ≤ X" holds for every trial measured, not for an
// interpolated one.

export function percentile(values: ArrayLike<number>, p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function median(values: ArrayLike<number>): number {
  return percentile(values, 50);
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

/** Polls `fn` every `intervalMs` until it returns something other than undefined; throws naming `what` after `timeoutMs`. */
export async function until<T>(
  what: string,
  timeoutMs: number,
  fn: () => T | undefined,
  intervalMs = 50,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(intervalMs);
  }
}
