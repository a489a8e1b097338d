// The last thing every command passes before it goes to a unit: hard limits the tuning cannot
// widen (the device contract's ranges), rate limits, and "never make the room less safe": with a
// good inlet at or above the alarm no fan is slowed and no setpoint raised; with the hottest inlet
// already near ASHRAE's rate-of-change limits (20 K in any hour, 5 K in any 15 min) the law makes
// no change that would push it further the same way. A non-finite value is replaced by the last
// command. The law calls `enforceSafety`; the group driver passes every
// command — the law's, a hold's, an operator's, a cached row's, a hand-over to local — through
// `enforceHardLimits` right before the write, so nothing reaches a unit around this file.
import { AIR_TEMP_RANGE_C, FAN_RANGE_PCT, inRange, SUPPLY_SETPOINT_RANGE_C } from '../../unit-contract.ts';
import { clamp } from './pi.ts';

/** Absolute bounds whatever the tuning says: the device contract's ranges (units refuse beyond them). */
export const SAFETY = {
  setpointMinC: SUPPLY_SETPOINT_RANGE_C.min,
  /** Supply air warmer than the inlet alarm cannot hold inlets under it. */
  setpointMaxC: SUPPLY_SETPOINT_RANGE_C.max,
  fanMinPct: FAN_RANGE_PCT.min,
  fanMaxPct: FAN_RANGE_PCT.max,
} as const;

export type SafetyClip =
  | 'fan-range'
  | 'fan-rate'
  | 'setpoint-range'
  | 'setpoint-rate'
  | 'hot-hold'
  | 'rate-hold'
  | 'not-finite';

export interface SafetyLimits {
  /** The unit's fan floor (`fanFloorPct`). */
  fanMinPct: number;
  /** Dew point + margin, never below SAFETY.setpointMinC. */
  setpointFloorC: number;
  fanUpPctPerS: number;
  fanDownPctPerS: number;
  setpointRateCPerS: number;
}

export interface Command {
  fanPct: number;
  supplySetpointC: number;
}

export interface SafetyContext {
  dtS: number;
  /** An inlet is at or above the alarm: nothing may get warmer. */
  hot: boolean;
  /** Operator overrides skip the rate limits (hard limits still hold). */
  rateLimit: boolean;
  /** From `inletRateHold`: changes in this direction are held (the hottest inlet moved near a limit). */
  inletRate?: InletRateHold;
}

export interface SafetyResult {
  command: Command;
  /**
   * The command before it was rounded onto the units' 0.1 grid: what the next step's rate limits
   * count from. Counted from the rounded command instead, a step under half a grid step
   * (0.1 K/s at a 0.5 s period) would round back to where it was every time, and never move.
   */
  exact: Command;
  /** What was changed, for the step's reasons. */
  clipped: SafetyClip[];
}

export function enforceSafety(
  wanted: Command,
  last: Command,
  lim: SafetyLimits,
  ctx: SafetyContext,
): SafetyResult {
  const clipped: SafetyResult['clipped'] = [];
  let fan = wanted.fanPct;
  let sp = wanted.supplySetpointC;
  if (!Number.isFinite(fan) || !Number.isFinite(sp)) {
    clipped.push('not-finite');
    if (!Number.isFinite(fan)) fan = last.fanPct;
    if (!Number.isFinite(sp)) sp = last.supplySetpointC;
  }
  // A floor that is not a number is the contract's own: NaN would let every clamp below through.
  const spLo = clamp(
    finiteOr(lim.setpointFloorC, SAFETY.setpointMinC),
    SAFETY.setpointMinC,
    SAFETY.setpointMaxC,
  );
  const fanLo = clamp(finiteOr(lim.fanMinPct, SAFETY.fanMinPct), SAFETY.fanMinPct, SAFETY.fanMaxPct);
  ({ fan, sp } = clampToRanges(fan, sp, fanLo, spLo, clipped));
  // Hot, or the inlet rising near its rate limit: nothing slower, nothing warmer than last time.
  const holdWarming = (clip: SafetyClip) => {
    if (fan < last.fanPct) {
      fan = Math.min(SAFETY.fanMaxPct, last.fanPct);
      clipped.push(clip);
    }
    if (sp > last.supplySetpointC) {
      sp = Math.max(spLo, last.supplySetpointC);
      clipped.push(clip);
    }
  };
  if (ctx.hot) holdWarming('hot-hold');
  if (ctx.inletRate?.warming) holdWarming('rate-hold');
  // Never while an inlet is at alarm: a hot rack cooling fast is the lesser harm.
  if (ctx.inletRate?.cooling && !ctx.hot) {
    if (fan > last.fanPct) {
      fan = Math.max(fanLo, last.fanPct);
      clipped.push('rate-hold');
    }
    if (sp < last.supplySetpointC) {
      sp = Math.min(SAFETY.setpointMaxC, last.supplySetpointC);
      clipped.push('rate-hold');
    }
  }
  if (ctx.rateLimit) {
    const f = clamp(
      fan,
      last.fanPct - lim.fanDownPctPerS * ctx.dtS,
      last.fanPct + lim.fanUpPctPerS * ctx.dtS,
    );
    if (f !== fan) clipped.push('fan-rate');
    // A rate limit never drags a command outside the hard range (a last command may lie outside it).
    fan = clamp(f, fanLo, SAFETY.fanMaxPct);
    const step = lim.setpointRateCPerS * ctx.dtS;
    const s = clamp(sp, last.supplySetpointC - step, last.supplySetpointC + step);
    if (s !== sp) clipped.push('setpoint-rate');
    sp = clamp(s, spLo, SAFETY.setpointMaxC);
  }
  // Rounded onto the units' grid, never under a floor that lies between two of its steps.
  return {
    command: { fanPct: round1Above(fan, fanLo), supplySetpointC: round1Above(sp, spLo) },
    exact: { fanPct: fan, supplySetpointC: sp },
    clipped,
  };
}

/** The fan floor of one unit: the group's `hardMinFanPct`, raised by the unit's own minimum if it has one. */
export function fanFloorPct(
  t: { hardMinFanPct: number; unitMinFanPct?: Readonly<Record<string, number>> },
  ahu: string,
): number {
  // Own entries only: an id the config refuses (`constructor`) must still never find Object.prototype's.
  const unit = t.unitMinFanPct && Object.hasOwn(t.unitMinFanPct, ahu) ? t.unitMinFanPct[ahu]! : 0;
  return clamp(Math.max(t.hardMinFanPct, unit), SAFETY.fanMinPct, SAFETY.fanMaxPct);
}

export interface InletRateLimits {
  perHourC: number;
  per15MinC: number;
  /**
   * Changes are held once the inlet has moved this share of a limit within its window: the rest is
   * for what is already on its way (supply air lags its setpoint by a minute, inlets by 20 s more).
   */
  holdFraction: number;
}

/** Width of one history bucket, s: 3 make the 15-min window, 12 the hour. */
export const INLET_BUCKET_S = 300;
const BUCKETS_15_MIN = 900 / INLET_BUCKET_S;
const BUCKETS_HOUR = 3600 / INLET_BUCKET_S;

/**
 * The group's hottest inlet over the last hour, as [min, max] per 5-minute bucket (oldest first; the
 * last is the current one, `ageS` into it; null while no inlet was seen). Part of the process state
 * (a new leader keeps it): 13 pairs, ~200 bytes of JSON. A window is read as the current bucket plus
 * the whole ones before it, so it spans up to 5 min more than its length: it sees more change, never less.
 */
export interface InletHistory {
  ageS: number;
  b: ([number, number] | null)[];
}

export function emptyInletHistory(): InletHistory {
  return { ageS: 0, b: [null] };
}

export function isInletHistory(x: unknown): x is InletHistory {
  const h = x as InletHistory;
  return (
    !!h &&
    Number.isFinite(h.ageS) &&
    h.ageS >= 0 &&
    h.ageS <= INLET_BUCKET_S &&
    Array.isArray(h.b) &&
    h.b.length > 0 &&
    h.b.length <= BUCKETS_HOUR + 1 &&
    // [min, max] of air: a pair a peer sent as [−1e308, 1e308] would hold every change for an hour.
    h.b.every(
      (p) =>
        p === null ||
        (Array.isArray(p) && p.length === 2 && p.every((x) => inRange(x, AIR_TEMP_RANGE_C)) && p[0] <= p[1]),
    )
  );
}

/** `h` with `dtS` more seconds and this step's hottest inlet (null: none seen); `h` is not changed. */
export function recordInlet(h: InletHistory, inletC: number | null, dtS: number): InletHistory {
  const b = h.b.slice(-(BUCKETS_HOUR + 1));
  let ageS = h.ageS + Math.max(0, finiteOr(dtS, 0));
  // Bounded: at most one bucket per INLET_BUCKET_S of dt, and dt is clamped to 5 s by the law.
  for (let i = 0; ageS >= INLET_BUCKET_S && i <= BUCKETS_HOUR; i++) {
    ageS -= INLET_BUCKET_S;
    b.push(null);
    if (b.length > BUCKETS_HOUR + 1) b.shift();
  }
  ageS = Math.min(ageS, INLET_BUCKET_S);
  // Only air: a reading outside the contract's air range would hold every change for an hour.
  if (inletC !== null && inRange(inletC, AIR_TEMP_RANGE_C)) {
    const cur = b[b.length - 1];
    const v = Math.round(inletC * 100) / 100;
    b[b.length - 1] = cur ? [Math.min(cur[0], v), Math.max(cur[1], v)] : [v, v];
  }
  return { ageS, b };
}

/** Which way the law may not push the hottest inlet now, and by how much it moved in each window. */
export interface InletRateHold {
  /** Risen near a limit: no fan slower, no setpoint warmer. */
  warming: boolean;
  /** Fallen near a limit: no fan faster, no setpoint colder (unless an inlet is at alarm). */
  cooling: boolean;
  rise15MinC: number;
  riseHourC: number;
  fall15MinC: number;
  fallHourC: number;
}

export function inletRateHold(h: InletHistory, inletC: number | null, lim: InletRateLimits): InletRateHold {
  const window = (n: number) => {
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (const p of h.b.slice(-(n + 1))) {
      if (!p) continue;
      lo = Math.min(lo, p[0]);
      hi = Math.max(hi, p[1]);
    }
    if (inletC === null || !Number.isFinite(inletC) || lo > hi) return { rise: 0, fall: 0 };
    return { rise: Math.max(0, inletC - lo), fall: Math.max(0, hi - inletC) };
  };
  const q = window(BUCKETS_15_MIN);
  const hr = window(BUCKETS_HOUR);
  const near = (moved: number, limit: number) => moved >= lim.holdFraction * limit;
  return {
    warming: near(q.rise, lim.per15MinC) || near(hr.rise, lim.perHourC),
    cooling: near(q.fall, lim.per15MinC) || near(hr.fall, lim.perHourC),
    rise15MinC: q.rise,
    riseHourC: hr.rise,
    fall15MinC: q.fall,
    fallHourC: hr.fall,
  };
}

/** What `enforceHardLimits` lets through: a command inside the ranges, or null — nothing safe to send. */
export interface HardLimitResult {
  command: Command | null;
  clipped: SafetyClip[];
}

/**
 * The gate right before a write: the contract's ranges (fan from `fanMinPct`, the law's hard floor,
 * up to 100 %; setpoint 12–27 °C), nothing else — no rates, no rounding, so a command the law made
 * passes unchanged and a held one is not moved. A value that is not a number takes `last`'s; with
 * no last (a unit that reported no data, and nothing told to it yet) the command is refused.
 */
export function enforceHardLimits(
  wanted: Command,
  last: Command | null,
  fanMinPct: number = SAFETY.fanMinPct,
): HardLimitResult {
  const clipped: SafetyClip[] = [];
  let fan = wanted.fanPct;
  let sp = wanted.supplySetpointC;
  if (!Number.isFinite(fan) || !Number.isFinite(sp)) {
    clipped.push('not-finite');
    if (!Number.isFinite(fan)) fan = last?.fanPct ?? Number.NaN;
    if (!Number.isFinite(sp)) sp = last?.supplySetpointC ?? Number.NaN;
    if (!Number.isFinite(fan) || !Number.isFinite(sp)) return { command: null, clipped };
  }
  const floor = clamp(finiteOr(fanMinPct, SAFETY.fanMinPct), SAFETY.fanMinPct, SAFETY.fanMaxPct);
  ({ fan, sp } = clampToRanges(fan, sp, floor, SAFETY.setpointMinC, clipped));
  return { command: { fanPct: fan, supplySetpointC: sp }, clipped };
}

/** The hard ranges, shared by the law's step and the gate: fan [fanLo, max], setpoint [spLo, max]. */
function clampToRanges(
  fan: number,
  sp: number,
  fanLo: number,
  spLo: number,
  clipped: SafetyClip[],
): { fan: number; sp: number } {
  const fanR = clamp(fan, fanLo, SAFETY.fanMaxPct);
  if (fanR !== fan) clipped.push('fan-range');
  const spR = clamp(sp, spLo, SAFETY.setpointMaxC);
  if (spR !== sp) clipped.push('setpoint-range');
  return { fan: fanR, sp: spR };
}

/** Commands go out at the units' resolution (0.1 % and 0.1 °C on the register maps). */
function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/** `x` (≥ `lo`) at the units' resolution, rounded up where rounding would take it under `lo`. */
function round1Above(x: number, lo: number): number {
  const r = round1(x);
  return r >= lo ? r : Math.ceil(lo * 10) / 10;
}

function finiteOr(x: number, otherwise: number): number {
  return Number.isFinite(x) ? x : otherwise;
}
