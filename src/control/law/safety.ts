// The last thing every command passes before it goes to a unit: hard limits the tuning cannot
// widen (the device contract's ranges), rate limits, and "never make the room less safe": with a
// good inlet at or above the alarm no fan is slowed and no setpoint raised. A non-finite value is
// replaced by the last command. The law calls `enforceSafety`; the group driver passes every
// command — the law's, a hold's, an operator's, a cached row's, a hand-over to local — through
// `enforceHardLimits` right before the write, so nothing reaches a unit around this file.
import { FAN_RANGE_PCT, SUPPLY_SETPOINT_RANGE_C } from '../../devices/unit-contract.ts';
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
  | 'not-finite';

export interface SafetyLimits {
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
}

export interface SafetyResult {
  command: Command;
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
  const spLo = Math.min(SAFETY.setpointMaxC, Math.max(SAFETY.setpointMinC, lim.setpointFloorC));
  ({ fan, sp } = clampToRanges(fan, sp, lim.fanMinPct, spLo, clipped));
  if (ctx.hot) {
    if (fan < last.fanPct) {
      fan = Math.min(SAFETY.fanMaxPct, last.fanPct);
      clipped.push('hot-hold');
    }
    if (sp > last.supplySetpointC) {
      sp = Math.max(spLo, last.supplySetpointC);
      clipped.push('hot-hold');
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
    fan = clamp(f, lim.fanMinPct, SAFETY.fanMaxPct);
    const step = lim.setpointRateCPerS * ctx.dtS;
    const s = clamp(sp, last.supplySetpointC - step, last.supplySetpointC + step);
    if (s !== sp) clipped.push('setpoint-rate');
    sp = clamp(s, spLo, SAFETY.setpointMaxC);
  }
  return { command: { fanPct: round1(fan), supplySetpointC: round1(sp) }, clipped };
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
  const floor = clamp(fanMinPct, SAFETY.fanMinPct, SAFETY.fanMaxPct);
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
