// Finds the tuned conventional baseline the control bench compares with (bench/lib/
// control-baseline-search.ts): per fan-loop gains and fixed supply-air setpoint, the warmest
// return-air setpoint that keeps every inlet in 18–27 °C through the day and the fault runs; the
// cheapest in cooling energy is the baseline (test/support/control-hall.ts `TUNED_BASELINE` holds
// it; `current_matches_best` says whether it still does). Args: [--hours 24]
import { parseArgs } from 'node:util';
import { TUNED_BASELINE } from '../test/support/control-hall.ts';
import { searchTunedBaseline } from './lib/control-baseline-search.ts';

export async function run(argv: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({ args: argv, options: { hours: { type: 'string' } } });
  const { gainRows, supplyRows, best } = searchTunedBaseline(TUNED_BASELINE, undefined, {
    hours: Number(values.hours ?? 24),
    log: (s) => process.stdout.write(`${s}\n`),
  });
  const t = TUNED_BASELINE;
  const out: Record<string, number> = {
    best_supply_setpoint_c: best?.supplySetpointC ?? Number.NaN,
    best_return_setpoint_c: best?.returnSetpointC ?? Number.NaN,
    best_kp_pct_per_k: best?.kpPctPerK ?? Number.NaN,
    best_ki_pct_per_ks: best?.kiPctPerKS ?? Number.NaN,
    best_fan_kwh: best?.fanKwh ?? Number.NaN,
    best_plant_kwh: best?.plantKwh ?? Number.NaN,
    best_max_inlet_c: best?.maxInletC ?? Number.NaN,
    current_matches_best:
      best !== null &&
      best.supplySetpointC === t.supplySetpointC &&
      best.returnSetpointC === t.returnSetpointC &&
      best.kpPctPerK === t.kpPctPerK &&
      best.kiPctPerKS === t.kiPctPerKS
        ? 1
        : 0,
  };
  for (const r of gainRows) {
    const k = `kp_${r.kpPctPerK}_ki_${String(r.kiPctPerKS).replace('.', '_')}`;
    out[`${k}_return_c`] = r.returnSetpointC;
    out[`${k}_fan_kwh`] = r.fanKwh;
  }
  for (const r of supplyRows) {
    const k = `supply_${String(r.supplySetpointC).replace('.', '_')}c`;
    out[`${k}_return_c`] = r.returnSetpointC;
    out[`${k}_fan_kwh`] = r.fanKwh;
    out[`${k}_plant_kwh`] = r.plantKwh;
  }
  return out;
}
