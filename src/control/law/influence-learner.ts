// Learns, while the group runs, how much each of its air handlers cools each of its racks — as HP
// and Vigilent learn it (../shared/PLANT-MODEL-NOTES.md, "Learned influence"): a regression of
// every rack inlet's change on every unit's supply-air temperature change (and the group's fan
// change), fitted online by recursive least squares with exponential forgetting, on the loop's
// natural variation plus a small dither of one unit's supply setpoint at a time (warmer only). The coefficient
// of unit a on rack r is the share of the rack's cold air that comes from a (K of inlet per K of
// the unit's supply air), whatever the rack's load or recirculation: that is the influence.
// Pure and deterministic: no clock, no I/O; the group driver (and the control hall) steps it
// beside the law with `stepGroupLearning`.
// Invariants: the dither is +`ditherK` on one unit's setpoint (≤ MAX_DITHER_K), changes at most
// every `ditherHoldS`, and runs only while every good inlet of the group is `marginK` (> ditherK)
// under the alarm, in normal mode with every unit available and under the law (`ditherGate`); the
// safety layer then ramps and clips it as any command. Allocation gets the prior where nothing is
// learned yet, the learned matrix in proportion to each unit's confidence.

import type { Site } from '../../config/site-schema.ts';
import { AIR_TEMP_RANGE_C, inRange } from '../../unit-contract.ts';
import {
  type GroupControlConfig,
  type GroupControlInputs,
  type GroupControlOutput,
  type GroupControlState,
  MAX_DITHER_K,
  stepGroup,
} from './group-controller.ts';
import { groupRacks, type InfluenceMatrix, type InfluenceRecords, influenceShares } from './influence.ts';

export interface InfluenceLearningOptions {
  /** Dither amplitude on one unit's supply setpoint, K (at most MAX_DITHER_K). */
  ditherK: number;
  /** The dither stays on one unit this long, then moves to the next (signs at random), s. */
  ditherHoldS: number;
  /** The dither runs only while the hottest good inlet is at least this far under the alarm, K. */
  marginK: number;
  /** One regression sample per this many seconds. */
  sampleS: number;
  /** Time constant of a rack inlet's response to the supply air reaching it (air + sensor), s. */
  responseTauS: number;
  /** Memory of the regression (exponential forgetting): a sample weighs e^(−age/memoryS). */
  memoryS: number;
  /** Seeds the dither's sequence: groups of one hall must not dither in step (use the group id). */
  seed: string;
  /**
   * `warmer`: the dither only ever raises a unit's setpoint. A colder one would lower the
   * chilled-water supply the plant makes for the whole hall (it follows the lowest setpoint).
   * `both`: ± at random.
   */
  signs: 'warmer' | 'both';
  /** Share of holds with no dither at all (the rest of the time the plant runs as the law wants). */
  restShare: number;
}

export const DEFAULT_LEARNING: InfluenceLearningOptions = {
  ditherK: 1,
  ditherHoldS: 120,
  marginK: 1.5,
  sampleS: 30,
  responseTauS: 25,
  memoryS: 3600,
  seed: '',
  signs: 'warmer',
  restShare: 0.5,
};

/**
 * What a group's row carries of the learning, so that a new leader resumes with it: ~1.4 bytes per
 * unit and rack (10 units × 50 racks: under 800 bytes).
 */
export interface LearnedInfluenceSnapshot {
  v: 1;
  /** FNV-1a of the group's unit and rack ids in order: a snapshot of another layout is not used. */
  key: string;
  /** Largest |gain|: `g` is in 127ths of it. */
  scale: number;
  /** Gain of every unit (row) on every rack (column), K per K, int8 in 127ths of `scale`, base64. */
  g: string;
  /** Confidence of each unit's row, 0…1. */
  c: number[];
  /** Regression samples taken (for people: how long it has learned). */
  n: number;
}

/** Whether the dither may run now, and why not. */
export interface DitherGate {
  ok: boolean;
  why: string;
}

/** What the plant did and showed this step, beside the law's inputs. */
export interface PlantObservation {
  /** Each unit's supply-air temperature as it reports it, °C (NaN or absent: unknown). */
  supplyC: Readonly<Record<string, number>>;
  /** Rack inlets: `inletC[i]` of `racks[i]`, °C (NaN: no good reading). */
  racks: readonly string[];
  inletC: ArrayLike<number>;
}

/** Information (Σ of a unit's filtered supply changes², K²) at which its confidence is one half, per K² of dither. */
const HALF_CONFIDENCE_PER_K2 = 1;
/** Starting covariance of every coefficient: next to no information. */
const P0 = 10;
/** Residuals beyond this many of the rack's running σ are clipped (a sensor swap, a burst). */
const RESIDUAL_CLIP_SIGMAS = 4;

export class InfluenceLearner {
  readonly ahus: readonly string[];
  readonly racks: readonly string[];
  readonly opts: InfluenceLearningOptions;
  /** Of the units and racks: a snapshot is only restored onto the same layout. */
  readonly key: string;
  /** The matrix before anything is learned. */
  readonly priorMatrix: InfluenceMatrix;
  /** Regressors: each unit's supply air, the group's mean fan, a constant (slow drift). */
  private readonly n: number;
  /** Coefficients, rack-major: theta[r * n + i]. */
  private readonly theta: Float64Array;
  /** Covariance shared by every rack (all racks see the same regressors). */
  private readonly p: Float64Array;
  private readonly residualVar: Float64Array;
  /** Regressors filtered by the racks' response: what the racks "see" now. */
  private readonly z: Float64Array;
  private readonly zNow: Float64Array;
  /** This window's sums (× dt) of the filtered regressors and of each rack's inlet, and its seconds. */
  private readonly zSum: Float64Array;
  private readonly ySum: Float64Array;
  private readonly yDt: Float64Array;
  private lastZ: Float64Array | null = null;
  private lastY: Float64Array | null = null;
  private sinceSampleS = 0;
  private ditherClockS = 0;
  private samples = 0;
  private readonly lambda: number;
  private readonly halfInfo: number;
  private readonly seed: number;
  private blended: InfluenceMatrix | null = null;
  private rackSlot: { of: readonly string[]; slot: Int32Array } | null = null;

  /** `prior`: the matrix before anything is learned, on this scale (`influenceShares`). */
  constructor(ahus: readonly string[], prior: InfluenceMatrix, opts: Partial<InfluenceLearningOptions> = {}) {
    this.ahus = [...ahus];
    this.racks = [...prior.rackIndex.keys()];
    this.priorMatrix = prior;
    this.opts = { ...DEFAULT_LEARNING, ...opts };
    this.opts.ditherK = Math.min(Math.max(0, this.opts.ditherK), MAX_DITHER_K);
    this.key = fnv1a(`${this.ahus.join(',')}|${this.racks.join(',')}`);
    this.seed = Number.parseInt(fnv1a(this.opts.seed), 16);
    this.n = this.ahus.length + 2;
    this.theta = new Float64Array(this.n * this.racks.length);
    this.p = new Float64Array(this.n * this.n);
    for (let i = 0; i < this.n; i++) this.p[i * this.n + i] = P0;
    this.residualVar = new Float64Array(this.racks.length).fill(Number.NaN);
    this.z = new Float64Array(this.n - 1).fill(Number.NaN);
    this.zNow = new Float64Array(this.n - 1);
    this.zSum = new Float64Array(this.n - 1);
    this.ySum = new Float64Array(this.racks.length);
    this.yDt = new Float64Array(this.racks.length);
    this.lambda = Math.exp(-this.opts.sampleS / this.opts.memoryS);
    this.halfInfo = HALF_CONFIDENCE_PER_K2 * Math.max(0.01, this.opts.ditherK ** 2);
  }

  /** Regression samples taken so far. */
  get sampleCount(): number {
    return this.samples;
  }

  /**
   * This step's dither, while the gate is open (its clock runs only then), else null: each hold of
   * ditherHoldS rests (restShare of them) or dithers one unit drawn at random, from a sequence
   * seeded by the group, so that groups of one hall do not dither in step and read each other's
   * dither as theirs.
   */
  nextDither(open: boolean, dtS: number): { ahu: string; k: number } | null {
    if (!open || this.ahus.length === 0 || this.opts.ditherK === 0) return null;
    const hold = Math.floor(this.ditherClockS / this.opts.ditherHoldS);
    this.ditherClockS += Math.max(0, dtS);
    // One coin per hold: whether it rests, which unit, which sign — seeded, so groups differ.
    const coin = mix32(this.seed ^ Math.imul(hold + 1, 0x9e3779b9));
    if ((coin >>> 16) / 65536 < this.opts.restShare) return null;
    const ahu = this.ahus[(coin >>> 1) % this.ahus.length]!;
    const k = this.opts.signs === 'warmer' || (coin & 1) === 1 ? this.opts.ditherK : -this.opts.ditherK;
    return { ahu, k };
  }

  /**
   * One step of what the group did and saw. `ok` false (a unit down, released or overridden, the
   * group blind or paused) breaks the chain of samples: the next one starts afresh.
   */
  observe(dtS: number, ok: boolean, meanFanPct: number, plant: PlantObservation): void {
    const nA = this.ahus.length;
    const now = this.zNow;
    // Supply air outside the contract's range is a broken probe or a "no data" code, not air: one
    // such reading in a window would outweigh hours of real ones, so it breaks the chain as a gap does.
    for (let a = 0; a < nA; a++) {
      const c = plant.supplyC[this.ahus[a]!] ?? Number.NaN;
      now[a] = inRange(c, AIR_TEMP_RANGE_C) ? c : Number.NaN;
    }
    now[nA] = meanFanPct;
    if (!ok || !now.every(Number.isFinite)) {
      this.breakChain();
      return;
    }
    const dt = Math.min(Math.max(0, dtS), this.opts.sampleS);
    const k = 1 - Math.exp(-dt / this.opts.responseTauS);
    for (let i = 0; i < now.length; i++) {
      const z = this.z[i]!;
      this.z[i] = Number.isFinite(z) ? z + (now[i]! - z) * k : now[i]!;
      this.zSum[i]! += this.z[i]! * dt;
    }
    // Window means, not one reading each: a rack's readings carry the sensors' noise (σ ~0.1 K),
    // and the mean of a window's readings has less of it.
    const y = this.rackValues(plant.racks, plant.inletC);
    for (let r = 0; r < y.length; r++) {
      if (!Number.isFinite(y[r]!)) continue;
      this.ySum[r]! += y[r]! * dt;
      this.yDt[r]! += dt;
    }
    this.sinceSampleS += dt;
    if (this.sinceSampleS < this.opts.sampleS) return;
    const z = Float64Array.from(this.zSum, (v) => v / this.sinceSampleS);
    const ym = Float64Array.from(this.ySum, (v, r) =>
      this.yDt[r]! >= this.sinceSampleS / 2 ? v / this.yDt[r]! : Number.NaN,
    );
    this.zSum.fill(0);
    this.ySum.fill(0);
    this.yDt.fill(0);
    this.sinceSampleS = 0;
    if (this.lastZ && this.lastY) this.update(z, ym);
    this.lastZ = z;
    this.lastY = ym;
  }

  /** The matrix allocation uses: per unit, learned × confidence + prior × (1 − confidence). */
  matrix(): InfluenceMatrix {
    if (this.blended) return this.blended;
    const learned = this.learnedMatrix();
    const rows = new Map<string, Float64Array>();
    this.ahus.forEach((a, i) => {
      const c = this.confidence(i);
      const pr = this.priorMatrix.rows.get(a);
      const le = learned.rows.get(a)!;
      const row = new Float64Array(this.racks.length);
      for (let r = 0; r < row.length; r++) row[r] = c * le[r]! + (1 - c) * (pr?.[r] ?? 0);
      rows.set(a, row);
    });
    this.blended = { rackIndex: this.priorMatrix.rackIndex, rows };
    return this.blended;
  }

  /** What has been learned alone: each unit's share of each rack's cold air, 0…1. */
  learnedMatrix(): InfluenceMatrix {
    const rows = new Map<string, Float64Array>();
    this.ahus.forEach((a, i) => {
      const row = new Float64Array(this.racks.length);
      for (let r = 0; r < row.length; r++) row[r] = Math.min(1, Math.max(0, this.theta[r * this.n + i]!));
      rows.set(a, row);
    });
    return { rackIndex: this.priorMatrix.rackIndex, rows };
  }

  /** Each unit's confidence, 0…1. */
  confidences(): Record<string, number> {
    return Object.fromEntries(this.ahus.map((a, i) => [a, this.confidence(i)]));
  }

  snapshot(): LearnedInfluenceSnapshot {
    const nA = this.ahus.length;
    const nR = this.racks.length;
    let scale = 0;
    for (let r = 0; r < nR; r++)
      for (let a = 0; a < nA; a++) scale = Math.max(scale, Math.abs(this.theta[r * this.n + a]!));
    const q = new Int8Array(nA * nR);
    if (scale > 0)
      for (let a = 0; a < nA; a++)
        for (let r = 0; r < nR; r++) q[a * nR + r] = Math.round((this.theta[r * this.n + a]! / scale) * 127);
    return {
      v: 1,
      key: this.key,
      scale: Number(scale.toPrecision(6)),
      g: Buffer.from(q.buffer, q.byteOffset, q.byteLength).toString('base64'),
      c: this.ahus.map((_, i) => Math.round(this.confidence(i) * 100) / 100),
      n: this.samples,
    };
  }

  /**
   * Resumes from a snapshot (a predecessor's row): every unit's gains and confidence; the fan and
   * drift terms are learned again within minutes. Returns the problem when the snapshot does not
   * fit this group's units and racks (another layout, a damaged row); nothing changes then.
   */
  restore(s: unknown): string | null {
    const nA = this.ahus.length;
    const nR = this.racks.length;
    const problem = snapshotProblem(s, this.key, nA * nR, nA);
    if (problem) return problem;
    const snap = s as LearnedInfluenceSnapshot;
    const q = new Int8Array(Buffer.from(snap.g, 'base64'));
    this.theta.fill(0);
    this.p.fill(0);
    for (let a = 0; a < nA; a++)
      for (let r = 0; r < nR; r++) this.theta[r * this.n + a] = (q[a * nR + r]! / 127) * snap.scale;
    for (let i = 0; i < this.n; i++) {
      // Confidence c = 1 / (1 + halfInfo · P_aa), so P_aa = (1/c − 1) / halfInfo.
      const c = i < nA ? Math.min(0.99, Math.max(0.01, snap.c[i]!)) : 0;
      this.p[i * this.n + i] = i < nA ? Math.min(P0, (1 / c - 1) / this.halfInfo) : P0;
    }
    this.samples = snap.n;
    this.residualVar.fill(Number.NaN);
    this.breakChain();
    this.blended = null;
    return null;
  }

  private confidence(a: number): number {
    return 1 / (1 + this.halfInfo * this.p[a * this.n + a]!);
  }

  private breakChain(): void {
    this.lastZ = null;
    this.lastY = null;
    this.z.fill(Number.NaN);
    this.zSum.fill(0);
    this.ySum.fill(0);
    this.yDt.fill(0);
    this.sinceSampleS = 0;
  }

  /** `inletC` in this learner's rack order (the sensor store's may differ; mapped once per array). */
  private rackValues(racks: readonly string[], inletC: ArrayLike<number>): Float64Array {
    if (this.rackSlot?.of !== racks) {
      const slot = new Int32Array(this.racks.length).fill(-1);
      racks.forEach((id, i) => {
        const r = this.priorMatrix.rackIndex.get(id);
        if (r !== undefined) slot[r] = i;
      });
      this.rackSlot = { of: racks, slot };
    }
    const out = new Float64Array(this.racks.length);
    const slot = this.rackSlot.slot;
    for (let r = 0; r < out.length; r++) out[r] = slot[r]! >= 0 ? Number(inletC[slot[r]!]) : Number.NaN;
    return out;
  }

  /** One recursive-least-squares step with forgetting, every rack at once (one shared covariance). */
  private update(z: Float64Array, y: Float64Array): void {
    const n = this.n;
    const phi = new Float64Array(n);
    for (let i = 0; i < n - 1; i++) phi[i] = z[i]! - this.lastZ![i]!;
    phi[n - 1] = 1;
    const pPhi = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += this.p[i * n + j]! * phi[j]!;
      pPhi[i] = s;
    }
    let denom = this.lambda;
    for (let i = 0; i < n; i++) denom += phi[i]! * pPhi[i]!;
    for (let r = 0; r < this.racks.length; r++) {
      const dy = y[r]! - this.lastY![r]!;
      if (!Number.isFinite(dy)) continue;
      let pred = 0;
      for (let i = 0; i < n; i++) pred += this.theta[r * n + i]! * phi[i]!;
      let e = dy - pred;
      const v = this.residualVar[r]!;
      if (Number.isFinite(v)) {
        const lim = RESIDUAL_CLIP_SIGMAS * Math.sqrt(v) + 0.05;
        e = Math.min(lim, Math.max(-lim, e));
        this.residualVar[r] = 0.98 * v + 0.02 * e * e;
      } else this.residualVar[r] = e * e;
      for (let i = 0; i < n; i++) this.theta[r * n + i]! += (pPhi[i]! / denom) * e;
    }
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++)
        this.p[i * n + j] = (this.p[i * n + j]! - (pPhi[i]! * pPhi[j]!) / denom) / this.lambda;
    // A direction nothing excites (a fan that does not move, a unit not dithered for a while) would
    // wind up without bound under forgetting: cap its variance at P0. Scaling its row and column
    // (P ← D·P·D) leaves the directions that are excited as they are.
    for (let i = 0; i < n; i++) {
      const v = this.p[i * n + i]!;
      if (!(v > P0)) continue;
      const d = Math.sqrt(P0 / v);
      for (let j = 0; j < n; j++) {
        this.p[i * n + j]! *= d;
        this.p[j * n + i]! *= d;
      }
    }
    this.samples++;
    this.blended = null;
  }
}

/**
 * Whether the dither may run this step: every unit available, none overridden or released, the
 * group not paused and in normal mode on trusted sensors, and the hottest good inlet at least `marginK` under the alarm. A unit's supply air moves a
 * rack inlet by at most its share of the rack's cold air (≤ 1 K per K), so ditherK < marginK
 * cannot take an inlet to the alarm.
 */
export function ditherGate(
  cfg: GroupControlConfig,
  inp: GroupControlInputs,
  prev: GroupControlState | null,
  opts: Pick<InfluenceLearningOptions, 'marginK'>,
): DitherGate {
  const t = cfg.tuning;
  if (prev?.mode !== 'normal' || prev.track) return { ok: false, why: 'not in normal mode' };
  if (inp.paused) return { ok: false, why: 'paused' };
  if (inp.view.verdict !== 'ok' || !inRange(inp.view.inletMaxC ?? Number.NaN, AIR_TEMP_RANGE_C))
    return { ok: false, why: 'sensors not trusted' };
  if (inp.view.inletMaxC! > t.alarmInletC - opts.marginK)
    return { ok: false, why: `hottest inlet within ${opts.marginK} K of the alarm` };
  const units = new Map(inp.units.map((u) => [u.id, u]));
  for (const a of cfg.ahus) {
    if (units.get(a)?.status !== 'available') return { ok: false, why: `${a} not available` };
    const ov = inp.overrides?.[a];
    if (ov && (ov.toLocal || ov.fanPct !== undefined || ov.supplySetpointC !== undefined))
      return { ok: false, why: `${a} overridden` };
  }
  return { ok: true, why: 'margin' };
}

/**
 * One decision of the law with learning beside it: the dither (when `ditherGate` allows), the
 * learner's matrix for allocation, then what was sent and seen goes to the learner. `plant` null:
 * nothing to learn from (no per-rack inlets), the law runs alone on the learner's matrix.
 */
export function stepGroupLearning(
  cfg: GroupControlConfig,
  learner: InfluenceLearner,
  inp: GroupControlInputs,
  prev: GroupControlState | null,
  plant: PlantObservation | null,
): GroupControlOutput & { dither: { ahu: string; k: number } | null } {
  const dt = Number.isFinite(inp.dtS) ? Math.min(Math.max(inp.dtS, 0), 5) : 0;
  // The operator's switch is read each step, so a reload that turns the dither off stops it at once.
  const open = cfg.tuning.learning.dither && plant !== null && ditherGate(cfg, inp, prev, learner.opts).ok;
  const dither = learner.nextDither(open, dt);
  const out = stepGroup(
    cfg,
    { ...inp, influence: learner.matrix(), ...(dither ? { ditherK: { [dither.ahu]: dither.k } } : {}) },
    prev,
  );
  if (plant) {
    const units = new Map(inp.units.map((u) => [u.id, u]));
    const cmds = cfg.ahus.map((a) => out.commands[a]);
    const ok =
      out.mode !== 'blind' &&
      out.release.length === 0 &&
      cfg.ahus.every((a) => units.get(a)?.status === 'available') &&
      cmds.every((c) => c !== undefined);
    const fan = ok ? cmds.reduce((s, c) => s + c!.fanPct, 0) / cmds.length : Number.NaN;
    learner.observe(dt, ok, fan, plant);
  }
  return { ...out, dither };
}

function snapshotProblem(s: unknown, key: string, cells: number, units: number): string | null {
  const x = s as Partial<LearnedInfluenceSnapshot> | null;
  if (!x || typeof x !== 'object' || x.v !== 1) return 'not a learned-influence snapshot (v 1)';
  if (x.key !== key) return 'learned for another set of units or racks';
  if (typeof x.scale !== 'number' || !Number.isFinite(x.scale) || x.scale < 0) return 'scale is not a number';
  if (typeof x.g !== 'string' || !BASE64_RE.test(x.g) || Buffer.from(x.g, 'base64').length !== cells)
    return 'gains do not fit the units and racks';
  if (
    !Array.isArray(x.c) ||
    x.c.length !== units ||
    !x.c.every((c) => typeof c === 'number' && c >= 0 && c <= 1)
  )
    return 'confidences do not fit the units';
  if (typeof x.n !== 'number' || !Number.isSafeInteger(x.n) || x.n < 0) return 'sample count is not a count';
  return null;
}

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** A 32-bit integer hash (murmur3's finaliser): the dither's coin. */
function mix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A group's learner: its prior is the config's matrix when the site gives one (taken as shares of
 * each rack's cold air), else `influenceShares` from geometry; over the racks the group's sensors see.
 */
export function learnerFor(
  site: Site,
  cfg: GroupControlConfig,
  opts: { influence?: InfluenceRecords; learning?: Partial<InfluenceLearningOptions> } = {},
): InfluenceLearner {
  const prior = opts.influence ? cfg.influence : influenceShares(site, cfg.ahus, groupRacks(site, cfg.group));
  return new InfluenceLearner(cfg.ahus, prior, { seed: cfg.group, ...opts.learning });
}
