// The last thing every command passes before it leaves the law: hard limits the tuning cannot
// widen, rate limits, and "never make the room less safe": with a good inlet at or above the alarm
// no fan is slowed and no setpoint raised. A non-finite value is replaced by the last command.
import { clamp } from './pi.ts';

/** Absolute bounds whatever the tuning says (the simulator's units accept 12…30 °C). */
export const SAFETY = {
  setpointMinC: 12,
  /** Supply air warmer than the inlet alarm cannot hold inlets under it. */
  setpointMaxC: 27,
  fanMaxPct: 100,
} as const;

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
  clipped: ('fan-range' | 'fan-rate' | 'setpoint-range' | 'setpoint-rate' | 'hot-hold' | 'not-finite')[];
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
  const fanR = clamp(fan, lim.fanMinPct, SAFETY.fanMaxPct);
  if (fanR !== fan) clipped.push('fan-range');
  fan = fanR;
  const spR = clamp(sp, spLo, SAFETY.setpointMaxC);
  if (spR !== sp) clipped.push('setpoint-range');
  sp = spR;
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

/** Commands go out at the units' resolution (0.1 % and 0.1 °C on the register maps). */
function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
