// What any controller could do in the control hall: for a load level L and one supply-air setpoint S
// for every unit, the least fan power whose steady state keeps every rack's top inlet (truth) at or
// under T — found by a descent over the eight fan speeds on the simulator's own thermal model, with
// perfect knowledge, no sensors, no faults and no margin beyond T. Integrated over the daily
// profile's hours with the chilled-water plant at each hour's wet bulb, it gives the fan and total
// energy a controller holding T could at best reach, and (with S chosen per hour) the trade between
// the two. Only one setpoint for every unit is searched: the chilled water follows the coldest
// unit's setpoint, so at a given plant cost colder air from the other units is free. A descent finds
// a local minimum, so the figures are the best found, not a proof: it runs from two starts (every
// fan at its top; every unit at the slowest common speed that holds T) and keeps the better, which
// over the day is ~1 % under the first alone.
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { dailyLoadFactor, ThermalModel } from '../../firmware-sim/thermal/model.ts';
import { chwSupplyForC, DEFAULT_PLANT, plantPoint, wetBulbC } from '../../firmware-sim/thermal/plant.ts';
import type { Site } from '../../src/config/site-schema.ts';

export interface SteadyPoint {
  /** Least fan power found, kW (Infinity when even every fan at its top cannot hold T). */
  fanKw: number;
  fanPct: number[];
  /** Hottest top inlet and coolest bottom inlet at that steady state, °C. */
  topC: number;
  bottomC: number;
  /** Coil duty the plant carries, kW (the IT load: the air model has no fan heat). */
  coilKw: number;
}

export interface BoundOptions {
  site?: Site;
  minPct?: number;
  maxPct?: number;
}

/** Every unit of `site` running at `fanPct[i]` with one supply setpoint. */
export function commandAll(m: ThermalModel, site: Site, fanPct: readonly number[], supplyC: number): void {
  for (const [i, a] of site.airHandlers.entries())
    m.setAhuCommand(a.id, { running: true, fanPct: fanPct[i]!, supplySetpointC: supplyC });
}

/** Steps the model until its hottest top inlet moves < 0.1 mK per 5 simulated minutes (≤ 100 min). */
function settle(m: ThermalModel, site: Site): { topC: number; bottomC: number } {
  let prev = Number.NaN;
  const read = () => {
    let topC = Number.NEGATIVE_INFINITY;
    let bottomC = Number.POSITIVE_INFINITY;
    for (const r of site.racks) {
      const c = m.readRack(r.id);
      topC = Math.max(topC, c.inletTopC);
      bottomC = Math.min(bottomC, c.inletBottomC);
    }
    return { topC, bottomC };
  };
  for (let k = 1; k <= 400; k++) {
    m.step(15);
    if (k % 20 === 0) {
      const { topC } = read();
      if (Math.abs(topC - prev) < 1e-4) break;
      prev = topC;
    }
  }
  return read();
}

/** The least fan power holding every top inlet ≤ `limitC` at load `load` and supply `supplyC`. */
export function steadyFans(
  load: number,
  supplyC: number,
  limitC: number,
  opts: BoundOptions = {},
): SteadyPoint {
  const site = opts.site ?? generateSite(demoShape);
  const lo = opts.minPct ?? 30;
  const hi = opts.maxPct ?? 100;
  const units = site.airHandlers;
  const m = new ThermalModel(site, { seed: 1, profile: 'constant' });
  m.setProfile('constant', load);
  const power = (f: readonly number[]) => f.reduce((s, x, i) => s + units[i]!.fanMaxKw * (x / 100) ** 3, 0);
  const at = (f: readonly number[]) => {
    commandAll(m, site, f, supplyC);
    const t = settle(m, site);
    const p = m.plant();
    return { ...t, coilKw: p.freeCoolingKw + p.chillerLoadKw };
  };
  const descend = (start: number[]): SteadyPoint => {
    let f = start;
    let r = at(f);
    if (r.topC > limitC) return { fanKw: Number.POSITIVE_INFINITY, fanPct: f, ...r };
    // Moves: one unit slower; one slower by d while another is faster by d/2 (air moved to where it
    // is cheaper, the cube law). Cheapest first; the first that still holds the limit is taken.
    for (let d = 16; d >= 0.25; d /= 2) {
      for (let moved = true; moved; ) {
        moved = false;
        const cands: number[][] = [];
        for (let i = 0; i < f.length; i++) {
          if (f[i]! - d < lo) continue;
          const g = f.slice();
          g[i] = f[i]! - d;
          cands.push(g);
          for (let j = 0; j < f.length; j++) {
            if (j === i || f[j]! + d / 2 > hi) continue;
            const h = g.slice();
            h[j] = f[j]! + d / 2;
            cands.push(h);
          }
        }
        const base = power(f);
        const cheaper = cands.filter((g) => power(g) < base - 1e-9).sort((a, b) => power(a) - power(b));
        for (const g of cheaper) {
          const rr = at(g);
          if (rr.topC <= limitC) {
            f = g;
            r = rr;
            moved = true;
            break;
          }
        }
      }
    }
    r = at(f);
    return { fanKw: power(f), fanPct: f, ...r };
  };
  const fromTop = descend(units.map(() => hi));
  if (!Number.isFinite(fromTop.fanKw)) return fromTop;
  // Second start: the cheapest uniform speed that holds the limit (bisection), then the same descent.
  let a = lo;
  let b = hi;
  if (at(units.map(() => lo)).topC <= limitC) b = lo;
  while (b - a > 0.25) {
    const mid = (a + b) / 2;
    if (at(units.map(() => mid)).topC <= limitC) b = mid;
    else a = mid;
  }
  const fromUniform = descend(units.map(() => b));
  return fromUniform.fanKw < fromTop.fanKw ? fromUniform : fromTop;
}

export interface DayBound {
  fanKwh: number;
  plantKwh: number;
  totalKwh: number;
  /** The supply setpoint chosen for each hour of the day (hall time 0 = 08:00, as the bench). */
  supplyByHour: number[];
}

export interface BoundTable {
  loads: number[];
  supplies: number[];
  /** points[i][j]: load i, supply j. */
  points: SteadyPoint[][];
  /**
   * Each hour of the daily profile (hall time 0 = `startHourOfDay`), for each supply j: the fans'
   * and the plant's kWh at that hour's load and wet bulb. What `dayBound` chooses from.
   */
  hours: { fanKwh: Float64Array; plantKwh: Float64Array }[];
}

export interface BoundTableOptions extends BoundOptions {
  /** Hour of day at hall time 0 (the bench's halls start at 08:00). */
  startHourOfDay?: number;
}

/** The steady points for every load and supply, and from them each hour's energy (one site for all). */
export function boundTable(
  limitC: number,
  loads: number[],
  supplies: number[],
  opts: BoundTableOptions = {},
): BoundTable {
  const site = opts.site ?? generateSite(demoShape);
  const t = {
    loads,
    supplies,
    points: loads.map((l) => supplies.map((s) => steadyFans(l, s, limitC, { ...opts, site }))),
  };
  return { ...t, hours: hourlyEnergy(t, site, opts.startHourOfDay ?? 8) };
}

/** Linear in load between the table's rows; Infinity where either row cannot hold the limit. */
function interp(t: Omit<BoundTable, 'hours'>, load: number, j: number, k: 'fanKw' | 'coilKw'): number {
  let i = t.loads.findIndex((x) => x >= load);
  if (i <= 0) i = 1;
  const a = t.loads[i - 1]!;
  const b = t.loads[i]!;
  const w = Math.min(1, Math.max(0, (load - a) / (b - a)));
  const va = t.points[i - 1]![j]![k];
  const vb = t.points[i]![j]![k];
  if (w === 0) return va;
  if (w === 1) return vb;
  return va * (1 - w) + vb * w;
}

/** Each hour's fan and plant kWh per supply: six steps an hour of its load and wet bulb. */
function hourlyEnergy(t: Omit<BoundTable, 'hours'>, site: Site, startHourOfDay: number): BoundTable['hours'] {
  const refKw = site.airHandlers.reduce((s, a) => s + a.capacityKw, 0);
  const sub = 6;
  const hours: BoundTable['hours'] = [];
  for (let h = 0; h < 24; h++) {
    const fan = new Float64Array(t.supplies.length);
    const plant = new Float64Array(t.supplies.length);
    for (let k = 0; k < sub; k++) {
      const hod = startHourOfDay + h + (k + 0.5) / sub;
      const load = dailyLoadFactor(hod);
      const wb = wetBulbC(hod, DEFAULT_PLANT.wetBulb);
      t.supplies.forEach((s, j) => {
        fan[j]! += interp(t, load, j, 'fanKw') / sub;
        const coil = interp(t, load, j, 'coilKw');
        plant[j]! +=
          plantPoint(coil, chwSupplyForC([s], DEFAULT_PLANT), wb, DEFAULT_PLANT, refKw).plantKw / sub;
      });
    }
    hours.push({ fanKwh: fan, plantKwh: plant });
  }
  return hours;
}

/**
 * The day at its best for one price of fan energy: each hour takes the supply setpoint that
 * minimises (1 + fanWeight)·fan kWh + plant kWh. fanWeight 0 minimises the total; a large weight
 * holds 18 °C-like supply and minimises fans; the weights between trace the trade-off.
 * `fixedSupplyC` holds one setpoint all day instead.
 */
export function dayBound(t: BoundTable, fanWeight: number, fixedSupplyC?: number): DayBound {
  let fanKwh = 0;
  let plantKwh = 0;
  const supplyByHour: number[] = [];
  for (const [h, { fanKwh: fan, plantKwh: plant }] of t.hours.entries()) {
    let best = -1;
    t.supplies.forEach((s, j) => {
      if (fixedSupplyC !== undefined && s !== fixedSupplyC) return;
      const cost = (1 + fanWeight) * fan[j]! + plant[j]!;
      if (!Number.isFinite(cost)) return;
      if (best < 0 || cost < (1 + fanWeight) * fan[best]! + plant[best]!) best = j;
    });
    if (best < 0) throw new Error(`no supply setpoint holds the limit at hour ${h}`);
    fanKwh += fan[best]!;
    plantKwh += plant[best]!;
    supplyByHour.push(t.supplies[best]!);
  }
  return { fanKwh, plantKwh, totalKwh: fanKwh + plantKwh, supplyByHour };
}
