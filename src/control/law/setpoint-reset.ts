// Supply-air setpoint reset, a raise/lower form of ASHRAE Guideline 36 trim-and-respond: once per
// period, fans saturated high with the hottest inlet at or above target → respond (lower the
// setpoint: colder air instead of more air, down to `minC`); once the fans have headroom again a
// setpoint under `preferredMinC` is trimmed back up (supply air that cold puts rack bottoms under
// 18 °C); fans idling at their floor with the inlet well under target → trim above it (less
// chiller work). Always inside [lowC, highC], whose floor is the dew-point-safe minimum.
// The plant's chilled water follows the coldest supply setpoint in the hall, so lowering one group
// under `preferredMinC` (where the others sit) raises the whole plant's cost, not the group's: a
// group goes under it only once its own fans are at their top and the inlet is over target —
// fan headroom first (docs/control.md, "Supply air and the plant").
import type { ControlTuning } from '../../config/tuning-schema.ts';
import { clamp } from './pi.ts';

export interface ResetInputs {
  demandPct: number;
  errorK: number;
  /** The group's top fan speed (`fan.maxPct`): under `preferredMinC` only once demand is there. */
  fanMaxPct: number;
  /** Raising is allowed (normal mode, no inlet at alarm). */
  mayRaise: boolean;
  lowC: number;
  highC: number;
}

export interface ResetResult {
  setpointC: number;
  clockS: number;
  action: 'trim' | 'respond' | null;
}

export function resetSetpoint(
  prevC: number,
  clockS: number,
  dtS: number,
  x: ResetInputs,
  t: ControlTuning['setpoint'],
): ResetResult {
  let setpointC = prevC;
  let action: ResetResult['action'] = null;
  let clock = clockS + dtS;
  if (clock >= t.resetPeriodS) {
    clock = 0;
    const lowered = setpointC - t.respondStepC;
    const fansFirst = lowered < t.preferredMinC && !(x.demandPct >= x.fanMaxPct - 0.5 && x.errorK > 0);
    if (x.demandPct >= t.fanHighPct && x.errorK > -0.5 && !fansFirst) {
      setpointC = lowered;
      action = 'respond';
    } else if (x.mayRaise && setpointC < t.preferredMinC && x.demandPct < t.fanHighPct - 10 && x.errorK < 0) {
      setpointC = Math.min(t.preferredMinC, setpointC + t.trimStepC);
      action = 'trim';
    } else if (x.mayRaise && x.demandPct <= t.fanLowPct && x.errorK < -1) {
      setpointC += t.trimStepC;
      action = 'trim';
    }
  }
  return { setpointC: clamp(setpointC, x.lowC, Math.max(x.lowC, x.highC)), clockS: clock, action };
}
