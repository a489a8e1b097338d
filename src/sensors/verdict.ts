// A control group's sensor verdict, and the words that explain it to people. Pure, no I/O.
// Coverage counts sensors, so it alone can stay `ok` with a rack nobody watches (its one sensor node
// dead): a group with any rack lacking a good inlet reading is therefore at most `degraded`, and
// every reason names those racks (a capped list: one owner for how racks are named, here).

export type Verdict = 'ok' | 'degraded' | 'blind';

/** Racks named in a reason before the rest are counted as "+N more": a line a person can read. */
export const RACKS_NAMED = 5;

/** "RA-01, RA-02" — at most `max` names, then "+N more". */
export function nameRacks(racks: readonly string[], max = RACKS_NAMED): string {
  if (racks.length <= max) return racks.join(', ');
  return `${racks.slice(0, max).join(', ')} +${racks.length - max} more`;
}

/** "1 rack without a good inlet sensor: RA-03" (empty string for none). */
export function uncoveredRacksText(racks: readonly string[]): string {
  if (racks.length === 0) return '';
  const n = racks.length;
  return `${n} rack${n === 1 ? '' : 's'} without a good inlet sensor: ${nameRacks(racks)}`;
}

export interface VerdictInput {
  goodInletSensors: number;
  configuredInletSensors: number;
  /** Racks of the group with inlet sensors but no good inlet reading, in the store's order. */
  uncoveredRacks: readonly string[];
}

export interface VerdictThresholds {
  okCoverage: number;
  blindCoverage: number;
}

/** Shared by every `ok` verdict: nothing to explain, and nothing allocated each control period. */
const NO_REASONS: readonly string[] = Object.freeze([]);

const pct = (x: number) => `${Math.floor(x * 1000) / 10} %`;

/**
 * `blind` with no good inlet or coverage under `blindCoverage`; else `degraded` with coverage under
 * `okCoverage` or any uncovered rack; else `ok`. `reasons` say why it is not `ok` (empty when it is).
 */
export function judgeVerdict(
  v: VerdictInput,
  t: VerdictThresholds,
): { verdict: Verdict; coverage: number; reasons: readonly string[] } {
  const coverage = v.configuredInletSensors > 0 ? v.goodInletSensors / v.configuredInletSensors : 0;
  const uncovered = v.uncoveredRacks.length;
  if (v.goodInletSensors > 0 && coverage >= t.okCoverage && uncovered === 0)
    return { verdict: 'ok', coverage, reasons: NO_REASONS };
  const reasons: string[] = [];
  const blind = v.goodInletSensors === 0 || coverage < t.blindCoverage;
  if (v.configuredInletSensors === 0) reasons.push('no inlet sensor configured');
  else if (v.goodInletSensors === 0) reasons.push('no good inlet sensor');
  else if (coverage < t.okCoverage)
    reasons.push(
      `coverage ${pct(coverage)} under ${blind ? 'blindCoverage' : 'okCoverage'} ${pct(blind ? t.blindCoverage : t.okCoverage)}`,
    );
  if (uncovered > 0 && v.goodInletSensors > 0) reasons.push(uncoveredRacksText(v.uncoveredRacks));
  return { verdict: blind ? 'blind' : 'degraded', coverage, reasons };
}
