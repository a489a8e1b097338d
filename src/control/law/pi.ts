// The fan loop's PI: positional form with an explicit integral, clamped to a range and to
// asymmetric ramp limits. Anti-windup: at the range limits by back-calculation (the integral is
// recomputed so that P + I equals the output actually sent — also how a new leader starts
// bumplessly from the last command, `trackIntegral`); while ramp-limited the integral is frozen.

export interface PiLimits {
  kp: number;
  ki: number;
  loPct: number;
  hiPct: number;
  upPctPerS: number;
  downPctPerS: number;
}

export interface PiResult {
  outputPct: number;
  integralPct: number;
  /** Which limit held the output this step, if any. */
  limitedBy: 'range' | 'ramp' | null;
}

/** The integral that makes P + I equal `outputPct` at this error: bumpless start and anti-windup. */
export function trackIntegral(outputPct: number, errorK: number, kp: number): number {
  return outputPct - kp * errorK;
}

export function piStep(
  errorK: number,
  dtS: number,
  prevOutputPct: number,
  integralPct: number,
  g: PiLimits,
): PiResult {
  const integral = integralPct + g.ki * errorK * dtS;
  const raw = g.kp * errorK + integral;
  const ranged = clamp(raw, g.loPct, g.hiPct);
  const out = clamp(ranged, prevOutputPct - g.downPctPerS * dtS, prevOutputPct + g.upPctPerS * dtS);
  if (out === raw) return { outputPct: out, integralPct: integral, limitedBy: null };
  // Range: back-calculate (the output cannot go further, the integral must not either). Ramp: the
  // output is still on its way to P + I; freeze the integral (no wind-up) but keep the P action.
  if (out === ranged)
    return { outputPct: out, integralPct: trackIntegral(out, errorK, g.kp), limitedBy: 'range' };
  return { outputPct: out, integralPct: integralPct, limitedBy: 'ramp' };
}

export function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}
