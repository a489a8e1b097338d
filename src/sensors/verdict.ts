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

/** Why a flapping group is kept degraded while its sensors say ok: that has not held long enough. */
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
 * "recovering: RA-03 covered again for 12 s of 60 s" — the line a group held degraded ends its
 * reasons with.
 */
export function recoveryText(r: VerdictRecovery): string {
  return `recovering: ${recoveryCause(r)} for ${Math.floor(r.heldS)} s of ${r.needS} s`;
}

/** "RA-03 covered again": what came back since the group was last worse than ok. */
export function recoveryCause(r: VerdictRecovery): string {
  return r.racks.length > 0 ? `${nameRacks(r.racks)} covered again` : 'coverage at okCoverage again';
}

/**
 * A group flaps when it left `ok` twice within this many recovery times: its third return to `ok`,
 * and each one after, waits out the hold.
 */
const FLAP_WINDOW_RECOVERIES = 10;

/**
 * One group's verdict over time. A worse verdict is taken at once (safety first), and so is a
 * better one, but for one case: a flapping group — it left `ok` twice within FLAP_WINDOW_RECOVERIES
 * recovery times — returns to `ok` only once the sensors have said ok for `recoveryMs` without a
 * break, and stays `degraded` (not blind) meanwhile. So a rack whose node drops in and out stops
 * flipping its group's mode (and fan floor) after its second dropout, while a single blip (a
 * spurious gateway status, one lost report) costs no more than it lasts, and a group out of blind
 * is driven on its sensors at once: held blind, its units would run at full fans for nothing. Lives
 * in the sensor store and moves when a group's figures are taken (its leader's loop each period;
 * elsewhere only when asked). Its memory travels in the group's process state (`memory()` into the
 * leader's row, `resume()` from it at a new term), so a flap under one leader is still one under
 * the next.
 */
export class VerdictHold {
  private held: Verdict | undefined;
  /** Since when the sensors' verdict is ok (NaN: it is not). */
  private okSince = Number.NaN;
  /** The last two times the held verdict left ok for a worse one (NaN: none). */
  private readonly leftOk = [Number.NaN, Number.NaN];
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
    if (raw.verdict !== 'ok') {
      this.okSince = Number.NaN;
      this.racks = raw.uncoveredRacks;
      if (this.held === 'ok') {
        this.leftOk[0] = this.leftOk[1]!;
        this.leftOk[1] = now;
      }
    } else if (Number.isNaN(this.okSince)) this.okSince = now;
    const flapping = this.leftOk[1]! - this.leftOk[0]! <= flapWindowMs(recoveryMs);
    if (
      raw.verdict !== 'ok' ||
      this.held === 'ok' ||
      this.held === undefined ||
      !flapping ||
      now - this.okSince >= recoveryMs
    ) {
      this.held = raw.verdict;
      return { verdict: raw.verdict, reasons: raw.reasons, recovery: null };
    }
    this.held = 'degraded';
    const recovery: VerdictRecovery = {
      to: 'ok',
      heldS: (now - this.okSince) / 1000,
      needS: recoveryMs / 1000,
      racks: this.racks,
    };
    return { verdict: 'degraded', reasons: [recoveryText(recovery)], recovery };
  }

  /**
   * The same hold, for a store rebuilt on the same clock (a reload): exact, where memory() and
   * resume() round to whole ms and keep the racks only while a hold is under way. Only the racks
   * `keep` says the group still has are named.
   */
  copy(keep: (rack: string) => boolean): VerdictHold {
    const h = new VerdictHold();
    h.held = this.held;
    h.okSince = this.okSince;
    h.leftOk[0] = this.leftOk[0]!;
    h.leftOk[1] = this.leftOk[1]!;
    h.racks = this.racks.filter(keep);
    h.atMs = this.atMs;
    return h;
  }

  /**
   * What the hold remembers, as ages before `nowMs` (as judge's instants; null: never judged).
   * Ages, not instants: two nodes' monotonic clocks share no origin.
   */
  memory(nowMs: number): VerdictHoldMemory | null {
    if (this.held === undefined) return null;
    const now = Math.max(nowMs, this.atMs);
    const ago = (t: number) => (Number.isNaN(t) ? null : Math.round(now - t));
    const okForMs = ago(this.okSince);
    const m: VerdictHoldMemory = {
      held: this.held,
      leftOkAgoMs: [ago(this.leftOk[0]!), ago(this.leftOk[1]!)],
      okForMs,
    };
    // The racks only word a hold under way; a group that is not recovering carries none.
    if (this.held !== 'ok' && okForMs !== null && this.racks.length > 0) m.racks = [...this.racks];
    return m;
  }

  /**
   * Takes over `m`, a memory taken `ageMs` before `nowMs` (0: as of now), in place of this hold's
   * own. Time the memory's writer did not see (the age) is taken as it left things: a group ok then
   * has been ok since, as far as this hold can tell.
   */
  resume(m: VerdictHoldMemory, nowMs: number, ageMs: number): void {
    const now = Math.max(nowMs, this.atMs);
    const at = now - Math.max(0, ageMs);
    const when = (ago: number | null) => (ago === null ? Number.NaN : at - ago);
    this.held = m.held;
    this.leftOk[0] = when(m.leftOkAgoMs[0]);
    this.leftOk[1] = when(m.leftOkAgoMs[1]);
    this.okSince = when(m.okForMs);
    this.racks = m.racks ?? [];
    this.atMs = now;
  }
}

/** The flap window of a recovery time (FLAP_WINDOW_RECOVERIES of them), ms. */
export function flapWindowMs(recoveryMs: number): number {
  return FLAP_WINDOW_RECOVERIES * recoveryMs;
}

/**
 * A VerdictHold's memory as it travels in a group's process state (`verdictHold` of the row):
 * ages in ms (site ms in the simulator) before the row was written. 70–90 bytes of JSON in the row.
 */
export interface VerdictHoldMemory {
  /** The verdict the group acted on. */
  held: Verdict;
  /** How long ago the group last left ok, the older of the last two first (null: no such departure). */
  leftOkAgoMs: [number | null, number | null];
  /** How long the sensors have said ok without a break (null: they do not). */
  okForMs: number | null;
  /** While a hold is under way: the racks it waits on (covered again), for its reasons. */
  racks?: string[];
}

/** Racks a memory read from a row may name: what a row can make us hold (the store keeps the group's own). */
const MEMORY_RACKS_MAX = 1_000;

/**
 * `x` as a VerdictHoldMemory, or why it is not one (a row is input from the wire: checked, never
 * trusted). Racks are only checked to be names here; the store keeps those of the group.
 */
export function verdictHoldMemoryOf(x: unknown): VerdictHoldMemory | string {
  if (!x || typeof x !== 'object' || Array.isArray(x)) return 'not an object';
  const m = x as Record<string, unknown>;
  if (m.held !== 'ok' && m.held !== 'degraded' && m.held !== 'blind') return 'held is not a verdict';
  const age = (v: unknown) => v === null || (typeof v === 'number' && Number.isFinite(v) && v >= 0);
  const left = m.leftOkAgoMs;
  if (!Array.isArray(left) || left.length !== 2 || !left.every(age))
    return 'leftOkAgoMs is not two ages (ms or null)';
  if (!age(m.okForMs)) return 'okForMs is not an age (ms or null)';
  if (
    m.racks !== undefined &&
    (!Array.isArray(m.racks) ||
      m.racks.length > MEMORY_RACKS_MAX ||
      !m.racks.every((r) => typeof r === 'string'))
  )
    return 'racks is not a list of rack names';
  return {
    held: m.held,
    leftOkAgoMs: [left[0] as number | null, left[1] as number | null],
    okForMs: m.okForMs as number | null,
    ...(m.racks !== undefined ? { racks: m.racks as string[] } : {}),
  };
}
