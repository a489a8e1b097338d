// Percentiles for the failover bench: nearest rank, so with 20 trials p99 is the slowest trial —
// a target "p99 ≤ X" then holds for every trial measured, not for an interpolated one.

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function describe(values: readonly number[]): {
  n: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
} {
  return {
    n: values.length,
    min: values.length ? Math.min(...values) : Number.NaN,
    p50: percentile(values, 50),
    p99: percentile(values, 99),
    max: values.length ? Math.max(...values) : Number.NaN,
  };
}
