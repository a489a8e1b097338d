// Shares the group's fan demand among its units: each unit runs at demand + offset, where units
// with more influence on the hottest rack get a positive offset and the others a negative one
// (mean zero, so the group's airflow stays what the PI asked for). Offsets follow the hot spot
// slowly, so a hottest-rack flip between two near-equal racks does not shake the fans.
import type { ControlTuning } from '../../config/tuning-schema.ts';
import { type InfluenceMatrix, influenceOf } from './influence.ts';
import { clamp } from './pi.ts';

export function targetOffsets(
  units: readonly string[],
  influence: InfluenceMatrix,
  hottestRack: string | null,
  demandPct: number,
  a: ControlTuning['allocation'],
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const u of units) out[u] = 0;
  if (units.length < 2 || hottestRack === null || a.gain === 0) return out;
  // A weight that is not a finite share (a learner's or a config's bad cell) is no influence: one
  // NaN would make every offset NaN, and every unit's command would freeze at its last.
  const w = units.map((u) => {
    const x = influenceOf(influence, u, hottestRack);
    return Number.isFinite(x) && x > 0 ? x : 0;
  });
  const mean = w.reduce((s, x) => s + x, 0) / w.length;
  if (!(mean > 0) || !Number.isFinite(mean) || !Number.isFinite(demandPct)) return out;
  const raw = w.map((x) => clamp(a.gain * demandPct * (x / mean - 1), -a.maxOffsetPct, a.maxOffsetPct));
  const centre = raw.reduce((s, x) => s + x, 0) / raw.length;
  units.forEach((u, i) => {
    out[u] = raw[i]! - centre;
  });
  return out;
}

/** Moves each offset towards its target by at most `maxStep`. */
export function slewOffsets(
  current: Record<string, number>,
  target: Record<string, number>,
  maxStep: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  // No step that is not a finite length (a −∞ would send every offset to +∞).
  const step = Number.isFinite(maxStep) && maxStep > 0 ? maxStep : 0;
  for (const [u, t] of Object.entries(target)) {
    const c = current[u] ?? 0;
    out[u] = c + clamp(t - c, -step, step);
  }
  return out;
}
