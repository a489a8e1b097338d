// Summaries of the failover bench's trials (nearest-rank percentiles, see stats.ts).
import { percentile } from './stats.ts';

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
