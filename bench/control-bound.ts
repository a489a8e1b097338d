// How far coolctl is from what any controller could do in the control hall, and whether issue 20's
// two energy goals (fans ≥ 20 % and fans + plant ≥ 10 % under the tuned baseline) can both hold
// there. bench/lib/control-bound.ts finds, on the simulator's own thermal model with perfect
// knowledge, the least steady fan power that keeps every top inlet ≤ T for each load level and
// supply setpoint, then the best day: one setpoint all day (18 °C, where both controllers run), the
// setpoint chosen per hour for the least total, and the trade between fans and total as the price
// of fan energy rises. T is coolctl's tuned inlet target (`LAW_TUNING`: the margin the +30 % load
// step needs) and 27 °C (no margin at all: the steady state alone, no room for any fault). The tuned
// baseline and coolctl run the same day beside it (test/support/control-hall.ts), so every ratio is
// from one run. Args: [--step 0.5] (supply grid, K).
import { parseArgs } from 'node:util';
import { ControlHall } from '../test/support/control-hall.ts';
import { LAW_TUNING } from './control.ts';
import { type BoundTable, boundTable, dayBound } from './lib/control-bound.ts';

const HOUR = 3600;
const FAN_GOAL_PCT = 20;
const TOTAL_GOAL_PCT = 10;

export async function run(argv: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({ args: argv, options: { step: { type: 'string' } } });
  const step = Number(values.step ?? 0.5);
  if (!(step >= 0.1 && step <= 4)) throw new RangeError(`--step must be 0.1–4 K, not "${values.step}"`);
  const supplies: number[] = [];
  for (let s = 18; s <= 22 + 1e-9; s += step) supplies.push(Math.round(s * 100) / 100);
  const loads = [0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0];

  const energy = (h: ControlHall) => {
    h.run(24 * HOUR);
    const t = h.model.totals();
    return { fan: t.fanKwh, total: t.fanKwh + t.plantKwh };
  };
  const tuned = energy(new ControlHall({ control: 'tuned', profile: 'daily' }));
  const ours = energy(new ControlHall({ control: 'law', tuning: LAW_TUNING, learn: true, profile: 'daily' }));
  const fanPct = (kwh: number) => 100 * (1 - kwh / tuned.fan);
  const totalPct = (kwh: number) => 100 * (1 - kwh / tuned.total);

  const target = LAW_TUNING.inletTargetC!;
  const figures: Record<string, number> = {
    tuned_baseline_fan_kwh: tuned.fan,
    tuned_baseline_total_kwh: tuned.total,
    coolctl_fan_kwh: ours.fan,
    coolctl_total_kwh: ours.total,
    coolctl_fan_saving_vs_tuned_pct: fanPct(ours.fan),
    coolctl_total_saving_vs_tuned_pct: totalPct(ours.total),
    limit_at_target_c: target,
  };
  const started = performance.now();
  for (const [name, limit] of [
    ['at_target', target],
    ['at_27c', 27],
  ] as const) {
    const t: BoundTable = boundTable(limit, loads, supplies);
    const held = dayBound(t, 0, 18);
    const cheapest = dayBound(t, 0);
    // The trade: the price of fan energy from 0 (least total) up (least fans); the best total
    // saving among days whose fans still make the fan goal.
    let bothTotal = Number.NEGATIVE_INFINITY;
    let bothFan = Number.NaN;
    for (let w = 0; w <= 10 + 1e-9; w += 0.05) {
      const d = dayBound(t, w);
      if (fanPct(d.fanKwh) >= FAN_GOAL_PCT && totalPct(d.totalKwh) > bothTotal) {
        bothTotal = totalPct(d.totalKwh);
        bothFan = fanPct(d.fanKwh);
      }
    }
    Object.assign(figures, {
      [`bound_fan_kwh_18c_${name}`]: held.fanKwh,
      [`bound_fan_saving_vs_tuned_pct_18c_${name}`]: fanPct(held.fanKwh),
      [`bound_total_saving_vs_tuned_pct_18c_${name}`]: totalPct(held.totalKwh),
      [`bound_total_kwh_${name}`]: cheapest.totalKwh,
      [`bound_total_saving_vs_tuned_pct_${name}`]: totalPct(cheapest.totalKwh),
      [`bound_fan_saving_vs_tuned_pct_at_least_total_${name}`]: fanPct(cheapest.fanKwh),
      [`bound_total_saving_pct_with_fan_goal_${name}`]: bothTotal,
      [`bound_fan_saving_pct_with_fan_goal_${name}`]: bothFan,
      [`bound_both_goals_${name}`]: bothTotal >= TOTAL_GOAL_PCT ? 1 : 0,
    });
    if (name === 'at_target') figures.coolctl_fan_over_bound_pct = 100 * (ours.fan / held.fanKwh - 1);
  }
  figures.search_s = (performance.now() - started) / 1000;
  return figures;
}
