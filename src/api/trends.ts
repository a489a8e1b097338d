// The dashboard's trends: per control group and per air handler, a few figures sampled by this node
// and kept in two tiers of fixed rings — recent (fine steps, the last minutes) and day (coarse
// steps with mean, min and max, the last 24 h) — so a reloaded page still has a day of history.
// Memory is fixed per series and stated by `bytes()`: values are Int16 hundredths (°C and % fit in
// ±327.67 with 0.01 resolution); no time is stored per value, a tier's slots are consecutive steps.
// The owners follow the running config (`keep`): one added by a hot reload gets rings, a removed one's go.
// An owner's rings are carved out of one buffer (TypedSlab): twelve small arrays each with a store
// of its own cost as much again as their data.
// Time: samples are placed on the sampler's steady clock (SampleClock: monotonic, started at the wall
// time the process started), never on the wall clock, so an NTP step neither erases history (a step
// back) nor opens a day of empty slots (a step forward). Only what people read is wall time: a read
// labels the steps with the wall clock's offset now, rounded to whole steps.
import { TypedSlab } from '../util/typed-slab.ts';

/** One resolution of a series: `slots` steps of `stepMs`; min/max kept only where they say something. */
export interface TierSpec {
  stepMs: number;
  slots: number;
  minMax: boolean;
}

/** How an owner kind (groups, units) is kept: its figures and its two tiers. */
export interface TrendSpec<K extends string> {
  metrics: readonly K[];
  recent: TierSpec;
  day: TierSpec;
}

/** One tier of one owner's figures, as the API gives it: slot start times, oldest first; null: no data. */
export interface TierSeries<K extends string> {
  stepMs: number;
  t: number[];
  mean: Record<K, (number | null)[]>;
  min?: Record<K, (number | null)[]>;
  max?: Record<K, (number | null)[]>;
}

/**
 * The sampler's clock: monotonic ms that start at the wall time this process started, and how far the
 * wall clock stands from it now (0 until the wall clock is stepped). Monotonic time is slewed by NTP
 * as the wall clock is, but never stepped.
 */
export class SampleClock {
  private readonly wall: () => number;
  private readonly mono: () => number;
  private readonly originMs: number;

  constructor(wall: () => number = () => Date.now(), mono: () => number = () => performance.now()) {
    this.wall = wall;
    this.mono = mono;
    this.originMs = wall() - mono();
  }

  now(): number {
    return this.originMs + this.mono();
  }

  /** What to add to a time on this clock to show it as wall time now. */
  wallOffsetMs(): number {
    return this.wall() - this.now();
  }
}

/** `offsetMs` in whole `stepMs`: labels shifted by it still fall on step boundaries. */
export function wholeSteps(offsetMs: number, stepMs: number): number {
  return Math.round(offsetMs / stepMs) * stepMs || 0;
}

const NO_DATA = -32768;
const LIMIT = 32767;

function encode(x: number): number {
  return Math.max(-LIMIT, Math.min(LIMIT, Math.round(x * 100)));
}

function decode(x: number): number | null {
  return x === NO_DATA ? null : x / 100;
}

/**
 * One owner's figures at one resolution: ring slot i holds step number `last - ((head - i) mod n)`.
 * The open step's samples are summed in doubles and written (mean, min, max) at every sample, so a
 * read sees the open step too.
 */
class Tier {
  private readonly spec: TierSpec;
  private readonly k: number;
  private readonly mean: Int16Array;
  private readonly min: Int16Array | null;
  private readonly max: Int16Array | null;
  /** Step number of the newest slot (NaN: empty) and where it is in the ring. */
  private last = Number.NaN;
  private head = 0;
  private filled = 0;
  private readonly sum: Float64Array;
  private readonly count: Uint32Array;
  private readonly lo: Float64Array;
  private readonly hi: Float64Array;

  constructor(spec: TierSpec, metrics: number, slab: TypedSlab) {
    this.spec = spec;
    this.k = metrics;
    const n = spec.slots * metrics;
    this.sum = slab.f64(metrics);
    this.lo = slab.f64(metrics);
    this.hi = slab.f64(metrics);
    this.count = slab.u32(metrics);
    this.mean = slab.i16(n).fill(NO_DATA);
    this.min = spec.minMax ? slab.i16(n).fill(NO_DATA) : null;
    this.max = spec.minMax ? slab.i16(n).fill(NO_DATA) : null;
  }

  static bytes(spec: TierSpec, metrics: number): number {
    return spec.slots * metrics * 2 * (spec.minMax ? 3 : 1) + metrics * 28;
  }

  /** Typed arrays a tier holds. */
  static arrays(spec: TierSpec): number {
    return spec.minMax ? 7 : 5;
  }

  add(atMs: number, values: readonly (number | null)[]): void {
    const step = Math.floor(atMs / this.spec.stepMs);
    if (step < this.last) this.rewind(step);
    if (step !== this.last) this.open(step);
    const base = this.head * this.k;
    for (let m = 0; m < this.k; m++) {
      const v = values[m];
      if (typeof v !== 'number' || !Number.isFinite(v)) continue;
      if (this.count[m] === 0) {
        this.lo[m] = v;
        this.hi[m] = v;
      } else {
        if (v < this.lo[m]!) this.lo[m] = v;
        if (v > this.hi[m]!) this.hi[m] = v;
      }
      this.sum[m]! += v;
      this.count[m]!++;
      this.mean[base + m] = encode(this.sum[m]! / this.count[m]!);
      if (this.min) this.min[base + m] = encode(this.lo[m]!);
      if (this.max) this.max[base + m] = encode(this.hi[m]!);
    }
  }

  /** Moves to step `step`: the steps skipped in between read as no data (at most a ring's worth). */
  private open(step: number): void {
    const n = this.spec.slots;
    const skip = Number.isNaN(this.last) ? 1 : Math.min(n, step - this.last);
    for (let s = 0; s < skip; s++) {
      this.head = this.filled === 0 && s === 0 ? 0 : (this.head + 1) % n;
      const base = this.head * this.k;
      this.mean.fill(NO_DATA, base, base + this.k);
      this.min?.fill(NO_DATA, base, base + this.k);
      this.max?.fill(NO_DATA, base, base + this.k);
      if (this.filled < n) this.filled++;
    }
    this.last = step;
    this.sum.fill(0);
    this.count.fill(0);
  }

  /**
   * Time went back (only a caller that feeds wall time can see this; the sampler's SampleClock never
   * goes back): the steps after `step` would stand in the window, and block it, until time caught up
   * with them. They go; the steps up to `step` stay, and `step` itself starts afresh.
   */
  private rewind(step: number): void {
    const n = this.spec.slots;
    const back = Math.min(this.filled, this.last - step);
    for (let s = 0; s < back; s++) {
      const base = this.head * this.k;
      this.mean.fill(NO_DATA, base, base + this.k);
      this.min?.fill(NO_DATA, base, base + this.k);
      this.max?.fill(NO_DATA, base, base + this.k);
      this.head = (this.head - 1 + n) % n;
    }
    this.filled -= back;
    if (this.filled === 0) {
      this.last = Number.NaN;
      this.head = 0;
      return;
    }
    // `step` is still in the ring: `open` below moves onto it, its old figures overwritten by the new.
    this.last = step - 1;
    this.head = (this.head - 1 + n) % n;
    this.filled--;
  }

  /**
   * Steps starting after `sinceMs` (and within the ring), oldest first. `sinceMs` and the answer's
   * times are wall time: the ring's times plus `wallOffsetMs` in whole steps.
   */
  read<K extends string>(
    metrics: readonly K[],
    sinceMs: number,
    nowMs: number,
    wallOffsetMs: number,
  ): TierSeries<K> {
    const { stepMs, slots: n } = this.spec;
    const offsetMs = wholeSteps(wallOffsetMs, stepMs);
    const mk = () =>
      Object.fromEntries(metrics.map((m) => [m, [] as (number | null)[]])) as Record<K, (number | null)[]>;
    const out: TierSeries<K> = { stepMs, t: [], mean: mk() };
    if (this.min) out.min = mk();
    if (this.max) out.max = mk();
    if (Number.isNaN(this.last)) return out;
    // Steps the ring has not seen since (a quiet sampler) are gone from the window, not shown as now.
    const nowStep = Math.floor(nowMs / stepMs);
    for (let age = this.filled - 1; age >= 0; age--) {
      const step = this.last - age;
      if (nowStep - step >= n) continue;
      const t = step * stepMs + offsetMs;
      if (t <= sinceMs) continue;
      const base = ((this.head - age + n) % n) * this.k;
      out.t.push(t);
      metrics.forEach((m, i) => {
        out.mean[m].push(decode(this.mean[base + i]!));
        out.min?.[m].push(decode(this.min![base + i]!));
        out.max?.[m].push(decode(this.max![base + i]!));
      });
    }
    return out;
  }
}

class Owner {
  readonly recent: Tier;
  readonly day: Tier;
  constructor(spec: TrendSpec<string>) {
    const slab = new TypedSlab(
      TypedSlab.room(TrendStore.bytesPerOwner(spec), Tier.arrays(spec.recent) + Tier.arrays(spec.day)),
    );
    this.recent = new Tier(spec.recent, spec.metrics.length, slab);
    this.day = new Tier(spec.day, spec.metrics.length, slab);
  }
}

export type TrendRange = 'recent' | 'day';

/** Figures of one kind of owner (every group, or every unit), each owner with its own rings. */
export class TrendStore<K extends string> {
  readonly spec: TrendSpec<K>;
  private readonly owners = new Map<string, Owner>();

  constructor(spec: TrendSpec<K>, owners: readonly string[] = []) {
    this.spec = spec;
    this.keep(owners);
  }

  /** Rings for exactly these owners: new ones start empty, the others keep their samples. */
  keep(owners: readonly string[]): void {
    for (const o of owners) if (!this.owners.has(o)) this.owners.set(o, new Owner(this.spec));
    if (this.owners.size === owners.length) return;
    const wanted = new Set(owners);
    for (const o of this.owners.keys()) if (!wanted.has(o)) this.owners.delete(o);
  }

  has(owner: string): boolean {
    return this.owners.has(owner);
  }

  get size(): number {
    return this.owners.size;
  }

  /** One sample at `atMs` on the sampler's clock (SampleClock.now()). */
  add(owner: string, atMs: number, sample: Partial<Record<K, number | null>>): void {
    const o = this.owners.get(owner);
    if (!o) return;
    const values = this.spec.metrics.map((m) => sample[m] ?? null);
    o.recent.add(atMs, values);
    o.day.add(atMs, values);
  }

  /**
   * `nowMs` on the sampler's clock; `sinceMs` and the answer's step times are wall time, the ring's
   * times shifted by `wallOffsetMs` (SampleClock.wallOffsetMs(); 0 where the two clocks are one).
   */
  read(
    owner: string,
    range: TrendRange,
    sinceMs = 0,
    nowMs = Date.now(),
    wallOffsetMs = 0,
  ): TierSeries<K> | null {
    const o = this.owners.get(owner);
    return o ? o[range].read(this.spec.metrics, sinceMs, nowMs, wallOffsetMs) : null;
  }

  owned(): string[] {
    return [...this.owners.keys()];
  }

  /** Bytes one owner takes (typed arrays only; a few hundred bytes of objects come on top). */
  static bytesPerOwner(spec: TrendSpec<string>): number {
    return Tier.bytes(spec.recent, spec.metrics.length) + Tier.bytes(spec.day, spec.metrics.length);
  }

  bytes(): number {
    return this.owners.size * TrendStore.bytesPerOwner(this.spec);
  }
}

/** Per group: the hottest good rack inlet and the mean fan % its units are told. */
export const GROUP_TRENDS: TrendSpec<'inletMaxC' | 'fanPct'> = {
  metrics: ['inletMaxC', 'fanPct'],
  recent: { stepMs: 2_000, slots: 300, minMax: false },
  day: { stepMs: 60_000, slots: 1_440, minMax: true },
};

/**
 * Per unit: fan % and supply setpoint it is told, supply air it measures. Coarser than the groups'
 * because a site has ten times as many units: 1 000 units must fit a gateway's memory.
 */
export const UNIT_TRENDS: TrendSpec<'fanPct' | 'supplyC' | 'supplySetpointC'> = {
  metrics: ['fanPct', 'supplyC', 'supplySetpointC'],
  recent: { stepMs: 10_000, slots: 60, minMax: false },
  day: { stepMs: 15 * 60_000, slots: 96, minMax: true },
};
