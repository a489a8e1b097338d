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

/**
 * How long a better verdict must hold before a flapping group takes it, s
 * (`sensing.verdictRecoveryS`): twice the stale window of a node at the default 10 s interval (`staleIntervals` 3: 30 s). A node
 * on a marginal link that lets one or a few reports through is good for a stale window each time,
 * so a shorter hold would let its rack flip the group's mode — and fan floor — with every report.
 */
export const VERDICT_RECOVERY_S = 60;

/** Worse is larger: entering a larger rank is immediate, returning to a smaller one may wait. */
const RANK: Readonly<Record<Verdict, number>> = { ok: 0, degraded: 1, blind: 2 };
const BY_RANK: readonly Verdict[] = ['ok', 'degraded', 'blind'];

/** Why a group keeps a worse verdict than its sensors now give: the better one has not held long enough. */
export interface VerdictRecovery {
  /** The verdict the sensors give now. */
  to: Verdict;
  /** How long the sensors have given a better verdict than the kept one, without a break, s. */
  heldS: number;
  /** The hold it needs (`sensing.verdictRecoveryS`), s. */
  needS: number;
  /** Racks that were uncovered when the sensors last gave a verdict worse than ok (covered again now). */
  racks: readonly string[];
}

export interface HeldVerdict {
  verdict: Verdict;
  reasons: readonly string[];
  recovery: VerdictRecovery | null;
}

/**
 * "recovering: RA-03 covered again for 12 s of 60 s" — the line a recovering group's reasons end
 * with. `from`: the verdict kept (the line says what came back since it was entered).
 */
export function recoveryText(r: VerdictRecovery, from: Verdict): string {
  return `recovering: ${recoveryCause(r, from)} for ${Math.floor(r.heldS)} s of ${r.needS} s`;
}

/** "RA-03 covered again": what came back since the kept verdict `from` was entered. */
export function recoveryCause(r: VerdictRecovery, from: Verdict): string {
  if (from === 'blind') return 'good inlets seen again';
  return r.racks.length > 0 ? `${nameRacks(r.racks)} covered again` : 'coverage at okCoverage again';
}

/**
 * A group flaps when it left a verdict twice within this many recovery times: its third return to
 * that verdict, and each one after, waits out the hold.
 */
const FLAP_WINDOW_RECOVERIES = 10;

/**
 * One group's verdict over time: a worse verdict is taken at once (safety first); a better one at
 * once too, unless the group is flapping — it left that verdict twice within
 * FLAP_WINDOW_RECOVERIES recovery times — and then only once the better verdict held `recoveryMs`
 * without a break. So a rack whose node drops in and out stops flipping its group's mode (and fan
 * floor) after its second dropout, while a single blip (a spurious gateway status, one lost report)
 * costs no more than it lasts: held blind for a minute, a group's units would run at full fans for
 * nothing. Lives in the sensor store and moves when a group's figures are taken (its leader's loop
 * each period; elsewhere only when asked): a node that takes a group over goes on from what it
 * last saw of it, and a node that never judged the group starts with no departures on record.
 */
export class VerdictHold {
  private held = -1;
  /** Per rank 0 (ok) and 1 (degraded): since when the sensors' verdict is that good or better (NaN: it is not). */
  private readonly since = [Number.NaN, Number.NaN];
  /** Per rank 0 and 1: the last two times the held verdict left it for a worse one (NaN: none). */
  private readonly left = [
    [Number.NaN, Number.NaN],
    [Number.NaN, Number.NaN],
  ];
  private racks: readonly string[] = [];
  private atMs = Number.NEGATIVE_INFINITY;

  /**
   * The verdict to act on, from the sensors' verdict now (`raw`, with its reasons and uncovered
   * racks). `nowMs`: monotonic, in site time; an instant before the last one is taken as the last.
   */
  judge(
    raw: { verdict: Verdict; reasons: readonly string[]; uncoveredRacks: readonly string[] },
    nowMs: number,
    recoveryMs: number,
  ): HeldVerdict {
    const now = Math.max(nowMs, this.atMs);
    this.atMs = now;
    const r = RANK[raw.verdict];
    for (let k = 0; k < 2; k++)
      this.since[k] = r > k ? Number.NaN : Number.isNaN(this.since[k]!) ? now : this.since[k]!;
    if (r > 0) this.racks = raw.uncoveredRacks;
    if (this.held < 0 || r >= this.held) {
      for (let k = Math.max(this.held, 0); k < r && this.held >= 0; k++) {
        const left = this.left[k]!;
        left[0] = left[1]!;
        left[1] = now;
      }
      this.held = r;
      return { verdict: raw.verdict, reasons: raw.reasons, recovery: null };
    }
    const flapping = (k: number) => {
      const [before, last] = this.left[k]!;
      return last! - before! <= FLAP_WINDOW_RECOVERIES * recoveryMs;
    };
    for (let k = r; k < this.held; k++)
      if (!flapping(k) || now - this.since[k]! >= recoveryMs) {
        this.held = k;
        break;
      }
    if (this.held === r) return { verdict: raw.verdict, reasons: raw.reasons, recovery: null };
    const recovery: VerdictRecovery = {
      to: raw.verdict,
      heldS: (now - this.since[this.held - 1]!) / 1000,
      needS: recoveryMs / 1000,
      racks: this.racks,
    };
    return {
      verdict: BY_RANK[this.held]!,
      reasons: [...raw.reasons, recoveryText(recovery, BY_RANK[this.held]!)],
      recovery,
    };
  }
}
