// Series of a labelled counter for every label value known at start, at 0: Prometheus' rate() and
// increase() see a step only from a sample before it, so a series that first appears at 1 hides
// its first event (the first bad payload, the first refusal). Which values exist stays with the
// enumeration that owns them; only open-ended values (a peer's name, per-device series) stay lazy.
import type { Counter, Gauge } from 'prom-client';

/** Creates `metric`'s series for every combination of `values` (their cross product) at 0. */
export function zeroSeries<L extends string>(
  metric: Counter<L> | Gauge<L>,
  values: { readonly [K in L]: readonly (string | number)[] },
): void {
  const names = Object.keys(values) as L[];
  const labels: Partial<Record<L, string | number>> = {};
  const walk = (i: number): void => {
    if (i === names.length) {
      // prom-client keeps the object it is given as the series' labels: one of its own each. An
      // existing series keeps its value.
      metric.labels({ ...labels }).inc(0);
      return;
    }
    const name = names[i]!;
    for (const v of values[name]) {
      labels[name] = v;
      walk(i + 1);
    }
  };
  walk(0);
}
