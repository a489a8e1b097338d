// How the tuned conventional baseline (test/support/control-hall.ts `TUNED_BASELINE`) is found: for
// each fixed supply-air setpoint and fan-loop gains, the warmest return-air setpoint (0.1 K grid,
// by bisection) whose hall keeps its hottest inlet ≤ 27 °C and its coolest ≥ 18 °C, without fans
// hunting, through the same runs coolctl is judged on — 24 h of the daily profile, a +30 % IT load
// step at full load and at 03:00, the unit by the hottest row tripped — then the setting with the
// least cooling energy over the day. Warmer return air only ever slows the fans, so "meets the
// limits" is monotone in it and bisection finds the edge. Gains first (at the lowest supply
// setpoint), then the supply setpoint with those gains: a coordinate search of ~150 settings, about
// two seconds each (~6 min).
import { ControlHall, reversals, type TunedUnitTuning } from '../../test/support/control-hall.ts';

const HOUR = 3600;
export const INLET_MAX_C = 27;
export const INLET_MIN_C = 18;
/** Fan reversals of ≥ 2 % per unit over a day: the load profile itself makes one; more is hunting. */
export const MAX_DAILY_REVERSALS = 12;

export interface BaselineRun {
  /** Hottest inlet (top of rack, truth) over every run. */
  maxInletC: number;
  /** Coolest inlet (bottom of rack) at the end of each run. */
  minInletC: number;
  fanKwh: number;
  /** The chilled-water plant's energy over the day (chiller, tower, pumps). */
  plantKwh: number;
  /** Most reversals (≥ 2 % swings) of one unit's fan command over the day. */
  reversals: number;
  ok: boolean;
}

/** The fault runs every controller is judged on, from a hall settled at full load. */
export const FAULT_SCENARIOS: Record<string, (h: ControlHall) => void> = {
  'load-step': (h) => {
    h.model.setLoadStep('*', 1.3);
    h.run(2 * HOUR);
  },
  trip: (h) => {
    h.trip('AHU-01', true);
    h.run(HOUR);
  },
};

/** The night load step comes this long after the daily profile's 08:00 start: 03:00, its lowest load. */
export const NIGHT_STEP_AFTER_H = 19;

/**
 * +30 % IT load at 03:00 after a day's run, on a hall started on the daily profile. A controller
 * that holds return air fixed runs its racks warmest at low load, so this is where a return-air
 * hall has least margin; a hall that passes the step only at full load is not within the limits.
 */
export function nightLoadStep(h: ControlHall): void {
  h.run(NIGHT_STEP_AFTER_H * HOUR);
  h.resetInletStats();
  h.model.setLoadStep('*', 1.3);
  h.run(HOUR);
}

/**
 * One setting through the day, the fault runs and the night step; the later runs are skipped once
 * one fails.
 */
export function evaluateBaseline(tuned: TunedUnitTuning, hours = 24): BaselineRun {
  const day = new ControlHall({ control: 'tuned', profile: 'daily', tunedUnits: tuned });
  let minInletC = Number.POSITIVE_INFINITY;
  for (let t = 0; t < hours * HOUR; t += 600) {
    day.run(600);
    minInletC = Math.min(minInletC, day.inletRange().minC);
  }
  let maxInletC = day.maxInletC;
  const hunting = Math.max(...[...day.fanLog.values()].map((log) => reversals(log, 2)));
  const fanKwh = day.model.totals().fanKwh;
  const plantKwh = day.model.totals().plantKwh;
  for (const fault of Object.values(FAULT_SCENARIOS)) {
    if (maxInletC > INLET_MAX_C) break;
    const h = new ControlHall({ control: 'tuned', tunedUnits: tuned });
    h.run(HOUR);
    h.resetInletStats();
    fault(h);
    maxInletC = Math.max(maxInletC, h.maxInletC);
    minInletC = Math.min(minInletC, h.inletRange().minC);
  }
  if (maxInletC <= INLET_MAX_C && hours >= NIGHT_STEP_AFTER_H + 1) {
    const night = new ControlHall({ control: 'tuned', profile: 'daily', tunedUnits: tuned });
    nightLoadStep(night);
    maxInletC = Math.max(maxInletC, night.maxInletC);
    minInletC = Math.min(minInletC, night.inletRange().minC);
  }
  return {
    maxInletC,
    minInletC,
    fanKwh,
    plantKwh,
    reversals: hunting,
    ok: maxInletC <= INLET_MAX_C && minInletC >= INLET_MIN_C && hunting <= MAX_DAILY_REVERSALS,
  };
}

export interface SearchRow extends BaselineRun {
  supplySetpointC: number;
  returnSetpointC: number;
  kpPctPerK: number;
  kiPctPerKS: number;
}

export interface SearchSpace {
  supplies: readonly number[];
  gains: readonly (readonly [kp: number, ki: number])[];
}

/** What the bench searches by default. Supply under 18 °C puts rack bottoms under 18 °C. */
export const DEFAULT_SEARCH: SearchSpace = {
  supplies: [18, 18.5, 19, 19.5, 20],
  gains: [4, 8, 16, 32].flatMap((kp) => [0.005, 0.01, 0.02, 0.05].map((ki) => [kp, ki] as const)),
};

const cost = (r: SearchRow) => r.fanKwh + r.plantKwh;
const cheapest = (rows: readonly SearchRow[]) =>
  rows.reduce<SearchRow | null>((b, r) => (b === null || cost(r) < cost(b) ? r : b), null);

/** Gains first at the lowest supply setpoint, then every supply setpoint with the best gains. */
export function searchTunedBaseline(
  base: TunedUnitTuning,
  space: SearchSpace = DEFAULT_SEARCH,
  opts: { hours?: number; log?: (s: string) => void } = {},
): { gainRows: SearchRow[]; supplyRows: SearchRow[]; best: SearchRow | null } {
  const sp0 = Math.min(...space.supplies);
  const gainRows: SearchRow[] = [];
  for (const [kp, ki] of space.gains) {
    const r = warmestReturn({ ...base, supplySetpointC: sp0, kpPctPerK: kp, kiPctPerKS: ki }, opts);
    if (r) gainRows.push(r);
  }
  const g = cheapest(gainRows);
  if (!g) return { gainRows, supplyRows: [], best: null };
  const supplyRows: SearchRow[] = [];
  for (const sp of space.supplies) {
    const r =
      sp === sp0
        ? g
        : warmestReturn(
            { ...base, supplySetpointC: sp, kpPctPerK: g.kpPctPerK, kiPctPerKS: g.kiPctPerKS },
            opts,
          );
    if (r) supplyRows.push(r);
  }
  return { gainRows, supplyRows, best: cheapest(supplyRows) };
}

/**
 * The warmest return-air setpoint, on a 0.1 K grid from supply + 3 K to supply + 15 K, that meets
 * the limits with `u`'s supply setpoint and gains (null if even the coolest does not).
 */
export function warmestReturn(
  u: TunedUnitTuning,
  opts: { hours?: number; log?: (s: string) => void } = {},
): SearchRow | null {
  const at = (k: number): SearchRow => {
    const returnSetpointC = Math.round((u.supplySetpointC + 3 + k / 10) * 10) / 10;
    return {
      supplySetpointC: u.supplySetpointC,
      returnSetpointC,
      kpPctPerK: u.kpPctPerK,
      kiPctPerKS: u.kiPctPerKS,
      ...evaluateBaseline({ ...u, returnSetpointC }, opts.hours),
    };
  };
  const label = `supply ${u.supplySetpointC} °C, kp ${u.kpPctPerK} %/K, ki ${u.kiPctPerKS} %/(K·s)`;
  let lo = 0;
  let hi = 120;
  let good = at(lo);
  if (!good.ok) {
    opts.log?.(`${label}: even return ${good.returnSetpointC} °C breaks the limits`);
    return null;
  }
  // Invariant: lo meets the limits, hi is not known to; bounded by log2(120) ≈ 7 runs.
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    const r = at(mid);
    if (r.ok) {
      lo = mid;
      good = r;
    } else hi = mid;
  }
  opts.log?.(
    `${label}: return ≤ ${good.returnSetpointC} °C (hottest ${good.maxInletC.toFixed(2)} °C, ${good.reversals} reversals), fans ${good.fanKwh.toFixed(1)} kWh, plant ${good.plantKwh.toFixed(1)} kWh`,
  );
  return good;
}
