// The energy report: fan and cooling energy of the units this node drives, per control group in
// hourly and daily (UTC) buckets, beside the local-control baseline — what the same units would
// have drawn on local control over the same seconds. Only the node that drives a group reads its
// units, so each node integrates its own driving time: the cluster's figure for an hour is the sum
// over its members (no two drive a group at once). Kept in memory: a restarted node starts empty.
//
// Baseline (docs/dashboard.md, "Energy"): on local control a unit runs its fan at its local speed
// (`localFanPct`, 100 % by default) whatever the load, and fan power goes with the cube of speed
// (the fan affinity laws), so it draws fanMaxKw × (localFanPct/100)³. Fan power under coolctl is the
// unit's own fan kW point where its profile has one, else the same law applied to its measured fan
// speed (counted as estimated). Cooling delivered is shown as measured, with no baseline: in steady
// state the units remove the IT heat whoever drives them.
//
// Time: samples come on the sampler's steady clock (trends.ts, SampleClock), so an interval is what
// the monotonic clock says it was — a wall-clock step neither counts a day of energy nor a day of
// zeros, nor drops the hours counted before it. Hours are hours of that clock; the report labels them
// in wall time with the wall clock's offset now in whole hours (so members' hours still line up), and
// the days are the sums of those labelled hours by UTC day.
import { wholeSteps } from './trends.ts';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
/** Reported: two days of hours (today and yesterday in full), a week of days. */
const HOURS_SHOWN = 48;
const DAYS_SHOWN = 7;
/** Hours kept: enough for the week of days (today and the six before it, in full). */
const HOURS_KEPT = DAYS_SHOWN * 24;
/** A gap between two samples longer than this is not integrated (the node was not sampling). */
const MAX_STEP_MS = 10_000;

export interface UnitRating {
  /** Fan electrical power at 100 % speed, kW (site config). */
  fanMaxKw: number;
  /** Fan speed on local control, % (site config, default 100). */
  localFanPct: number;
}

/** What one unit read this sample; NaN or null where the unit has no such point. */
export interface UnitPower {
  ahu: string;
  fanPct: number | null;
  fanKw: number | null;
  coolingKw: number | null;
}

export interface EnergyFigures {
  /** Fan energy under coolctl, kWh; `estimatedFanKwh` of it from the cube law (no fan kW point). */
  fanKwh: number;
  estimatedFanKwh: number;
  /** The same units on local control over the same seconds, kWh. */
  baselineFanKwh: number;
  /** Cooling delivered, kWh thermal (units with a cooling kW point only). */
  coolingKwh: number;
  /** Unit-seconds integrated (one unit for one hour: 3 600). */
  unitSeconds: number;
}

export interface EnergyBucket extends EnergyFigures {
  startMs: number;
  groups: Record<string, EnergyFigures>;
}

const zero = (): EnergyFigures => ({
  fanKwh: 0,
  estimatedFanKwh: 0,
  baselineFanKwh: 0,
  coolingKwh: 0,
  unitSeconds: 0,
});

/** The cube law: fan power at `pct` % of full speed. */
export function fanKwAt(rating: UnitRating, pct: number): number {
  return rating.fanMaxKw * (Math.max(0, pct) / 100) ** 3;
}

export function baselineKw(rating: UnitRating): number {
  return fanKwAt(rating, rating.localFanPct);
}

class Buckets {
  private readonly widthMs: number;
  private readonly kept: number;
  private readonly byStart = new Map<number, EnergyBucket>();
  constructor(widthMs: number, kept: number) {
    this.widthMs = widthMs;
    this.kept = kept;
  }
  at(atMs: number): EnergyBucket {
    const startMs = Math.floor(atMs / this.widthMs) * this.widthMs;
    let b = this.byStart.get(startMs);
    if (!b) {
      b = { startMs, ...zero(), groups: {} };
      this.byStart.set(startMs, b);
      const oldest = startMs - (this.kept - 1) * this.widthMs;
      // A bucket after this one was counted under a clock that ran ahead and has been set back: it
      // would stand as the newest until the right time caught up with it.
      for (const s of this.byStart.keys()) if (s < oldest || s > startMs) this.byStart.delete(s);
    }
    return b;
  }
  list(): EnergyBucket[] {
    return [...this.byStart.values()].sort((a, b) => a.startMs - b.startMs);
  }
}

export class EnergyMeter {
  private readonly hours = new Buckets(HOUR_MS, HOURS_KEPT);
  /** Per group, when it was last sampled while driven: a group's first sample integrates nothing. */
  private readonly lastAtMs = new Map<string, number>();

  /**
   * One sample of a group this node drives, at `atMs` on the sampler's clock: its units' power since
   * the last one. `rating` says what each unit is rated (a unit without one is not counted).
   */
  add(
    group: string,
    atMs: number,
    units: readonly UnitPower[],
    rating: (ahu: string) => UnitRating | undefined,
  ): void {
    const prev = this.lastAtMs.get(group);
    this.lastAtMs.set(group, atMs);
    if (prev === undefined) return;
    const dtMs = atMs - prev;
    if (dtMs <= 0 || dtMs > MAX_STEP_MS) return;
    const h = dtMs / HOUR_MS;
    const f = zero();
    for (const u of units) {
      const r = rating(u.ahu);
      if (!r) continue;
      let kw = u.fanKw;
      let estimated = false;
      if (kw === null || !Number.isFinite(kw)) {
        if (u.fanPct === null || !Number.isFinite(u.fanPct)) continue;
        kw = fanKwAt(r, u.fanPct);
        estimated = true;
      }
      f.fanKwh += kw * h;
      if (estimated) f.estimatedFanKwh += kw * h;
      f.baselineFanKwh += baselineKw(r) * h;
      if (u.coolingKw !== null && Number.isFinite(u.coolingKw)) f.coolingKwh += u.coolingKw * h;
      f.unitSeconds += dtMs / 1000;
    }
    if (f.unitSeconds === 0) return;
    const b = this.hours.at(atMs);
    addInto(b, f);
    const g = b.groups[group] ?? zero();
    b.groups[group] = g;
    addInto(g, f);
  }

  /** The group is no longer driven here (or sampling paused): its next sample starts afresh. */
  stop(group: string): void {
    this.lastAtMs.delete(group);
  }

  /** The hours labelled in wall time (`wallOffsetMs`: SampleClock.wallOffsetMs()), and their days. */
  report(wallOffsetMs = 0): { hours: EnergyBucket[]; days: EnergyBucket[] } {
    const shiftMs = wholeSteps(wallOffsetMs, HOUR_MS);
    const hours = this.hours.list().map((h) => ({ ...h, startMs: h.startMs + shiftMs }));
    const days = new Map<number, EnergyBucket>();
    for (const h of hours) {
      const startMs = Math.floor(h.startMs / DAY_MS) * DAY_MS;
      let d = days.get(startMs);
      if (!d) {
        d = { startMs, ...zero(), groups: {} };
        days.set(startMs, d);
      }
      addInto(d, h);
      for (const [group, f] of Object.entries(h.groups)) {
        const g = d.groups[group] ?? zero();
        d.groups[group] = g;
        addInto(g, f);
      }
    }
    return { hours: hours.slice(-HOURS_SHOWN), days: [...days.values()].slice(-DAYS_SHOWN) };
  }
}

function addInto(into: EnergyFigures, f: EnergyFigures): void {
  into.fanKwh += f.fanKwh;
  into.estimatedFanKwh += f.estimatedFanKwh;
  into.baselineFanKwh += f.baselineFanKwh;
  into.coolingKwh += f.coolingKwh;
  into.unitSeconds += f.unitSeconds;
}
