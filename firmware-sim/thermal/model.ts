// The lumped thermal model of the hall (equations and parameters: docs/thermal-model.md).
// Air handlers push cold air into the room, partly to the racks near them and partly into the
// shared subfloor plenum; each rack breathes that supply air plus some of its own hot exhaust
// (recirculation, more of it the less cold air reaches the rack); the exhausts return to the
// air handlers, whose coils cool it back towards their setpoints within their capacity.
// Invariants: at steady state total cooling equals total IT load (energy is conserved exactly
// when no unit is capacity-limited); every first-order lag is updated with its exact exponential,
// so any step size is stable; deterministic for a given seed.

import type { Site } from '../../src/config/site-schema.ts';
import { FAN_RANGE_PCT } from '../../src/unit-contract.ts';
import { mulberry32 } from '../random.ts';
import {
  chwSupplyForC,
  DEFAULT_PLANT,
  type PlantParams,
  type PlantPoint,
  plantPoint,
  wetBulbC,
} from './plant.ts';
import type { RackClimate, RackClimateReader } from './types.ts';

/** ρ·cp of air near 20 °C at sea level, kJ/(m³·K): 1.2 kg/m³ × 1.005 kJ/(kg·K). */
export const AIR_RHO_CP = 1.206;

/** The model's fixed parameters; each is explained in docs/thermal-model.md. */
export const THERMAL_PARAMS = {
  /** Distance scale of an AHU's local influence (m): weight 1 / (1 + (d/L)²). */
  influenceLengthM: 6,
  /** Influence weights below this fraction of the nearest rack's are dropped (keeps the matrix sparse). */
  influenceCutoff: 0.02,
  /** Share of every AHU's airflow that goes into the room-wide subfloor plenum instead of locally. */
  plenumShare: 0.3,
  /** Recirculation of a rack that gets plenty of cold air (leaks around and over the rack). */
  recircMin: 0.05,
  /** How fast recirculation falls as the cold-air supply ratio s = C/Q grows. */
  recircScale: 0.8,
  /** A rack that gets almost no cold air still cannot breathe more than this share of its own exhaust. */
  recircMax: 0.95,
  /** Rack inlet air and sensor housing time constant (s). */
  rackTauS: 20,
  /** Fan speed ramp time constant of a VFD (s). */
  fanTauS: 5,
  /** Server airflow per kW of IT load when a rack does not give its own (m³/s per kW). */
  rackAirflowPerKw: 0.08,
  /** Vertical stratification: top/bottom inlet sit this share of the recirculation rise above/below the middle. */
  stratification: 0.6,
  /** Temperatures are clamped here: long before it, real servers would have shut down. */
  maxAirC: 80,
  /** Default subfloor pressure coefficient, Pa per m³/s of cold air reaching a rack's tiles. */
  subfloorPaPerM3s: 12,
  /**
   * A rack with a blanking panel removed draws this share of the intake it would otherwise take
   * cold back from its own exhaust, through the open U: f' = f + leak·(1 − f).
   */
  blankingPanelLeak: 0.15,
} as const;

export type LoadProfileName = 'constant' | 'daily';

export interface ThermalModelOptions {
  seed: number;
  profile: LoadProfileName;
  /** Time of day (hours) at model time 0; the daily profile follows it. Default 7.5. */
  startHourOfDay?: number;
  /**
   * The chilled-water plant (docs/thermal-model.md#chilled-water-plant); absent fields take
   * `DEFAULT_PLANT`: a Carrier 19XR curve, a warm mid-latitude summer day's wet bulb.
   */
  plant?: Partial<PlantParams>;
}

export interface AhuCommandInput {
  running: boolean;
  fanPct: number;
  supplySetpointC: number;
}

export interface AhuAirState {
  fanPct: number;
  supplyC: number;
  returnC: number;
  cwValvePct: number;
  fanKw: number;
  coolingKw: number;
  airflowM3s: number;
}

/**
 * A change of the hall's layout the physics follows from that moment (docs/thermal-model.md#layout-changes).
 * `unit-moved`: the unit sits `dxM`, `dyM` from where the site file puts it (not from where it sits
 * now: a second move replaces the first); its local air reaches other racks. `blanking-panel-removed`:
 * the rack recirculates more of its own exhaust, so every unit's air makes up less of its intake.
 */
export type LayoutChange =
  | { kind: 'unit-moved'; ahu: string; dxM: number; dyM: number }
  | { kind: 'blanking-panel-removed'; rack: string };

/** What `restoreLayout` puts back: the unit where the site file has it, or the rack's panel. */
export type LayoutTarget =
  | { kind: 'unit-moved'; ahu: string }
  | { kind: 'blanking-panel-removed'; rack: string };

/**
 * The influence matrix the physics uses (docs/thermal-model.md#true-influence): `rows[a][r]` for
 * unit `ahuIds[a]` and rack `rackIds[r]`, both in site-file order.
 */
export interface TrueInfluence {
  ahuIds: string[];
  rackIds: string[];
  rows: number[][];
}

export interface TrueInfluenceOptions {
  /**
   * `current` (default): at the fans' speeds now (a tripped unit has none); `design`: every unit
   * running at one common fan speed, full speed — the layout alone.
   */
  at?: 'current' | 'design';
  /**
   * `intake-share` (default): the share of the rack's intake that is this unit's cold air,
   * (1 − f_r)·C_ar / C_r; `supply-response`: the steady inlet change per kelvin of this unit's
   * supply air, C_ar / C_r.
   */
  measure?: 'intake-share' | 'supply-response';
}

export interface ThermalTotals {
  fanKw: number;
  coolingKw: number;
  itKw: number;
  /** Chiller + pumps + tower fans now, kW (fans of the air handlers not included). */
  plantKw: number;
  chillerKw: number;
  wetBulbC: number;
  chwSupplyC: number;
  fanKwh: number;
  coolingKwh: number;
  /** Chiller + pumps + tower fans since the meters were reset. */
  plantKwh: number;
  chillerKwh: number;
  /** Hours the economiser carried some or all of the load. */
  economiserHours: number;
  /** Cooling the economiser carried instead of the chiller, kWh (thermal). */
  freeCoolingKwh: number;
}

/** IT load multiplier over the day: 0.7 at night, 1.0 mid-afternoon (a smooth cosine, peak 15:00). */
export function dailyLoadFactor(hourOfDay: number): number {
  const h = ((hourOfDay % 24) + 24) % 24;
  return 0.85 + 0.15 * Math.cos(((h - 15) / 24) * 2 * Math.PI);
}

export class ThermalModel {
  readonly readRack: RackClimateReader;
  private readonly rackIndex = new Map<string, number>();
  private readonly ahuIndex = new Map<string, number>();
  private readonly ahuIds: string[];
  private readonly dewPointC: number;
  private readonly subfloorCoef: number;
  private readonly site: Site;
  // racks
  private readonly rackRoom: Int32Array;
  private readonly rackQ: Float64Array;
  private readonly rackItNomKw: Float64Array;
  private readonly rackStep: Float64Array;
  private readonly rackStrat: Float64Array;
  private readonly inletC: Float64Array;
  private readonly tsupC: Float64Array;
  private readonly coldQ: Float64Array;
  private readonly used: Float64Array;
  private readonly exhaustC: Float64Array;
  private readonly rackIt: Float64Array;
  private readonly tsupAcc: Float64Array;
  /** Extra own-exhaust recirculation of a rack whose blanking panel is out (0: panel in place). */
  private readonly rackLeak: Float64Array;
  // air handlers
  private readonly ahuRoom: Int32Array;
  private readonly qMax: Float64Array;
  private readonly capKw: Float64Array;
  private readonly fanMaxKw: Float64Array;
  private readonly tauS: Float64Array;
  private readonly running: Uint8Array;
  private readonly fanCmd: Float64Array;
  private readonly setpointC: Float64Array;
  private readonly fanPct: Float64Array;
  private readonly supplyC: Float64Array;
  private readonly returnC: Float64Array;
  private readonly coilKw: Float64Array;
  /** Per AHU: its displacement from the site file's position (m), from `unit-moved`. */
  private readonly ahuMoveM: { dxM: number; dyM: number }[];
  /** Per AHU: the racks it reaches locally and the share of its local air each gets (sums to 1). */
  private readonly reachRacks: Int32Array[] = [];
  private readonly reachShare: Float64Array[] = [];
  // rooms
  private readonly roomRackQ: Float64Array;
  private readonly plenumQ: Float64Array;
  private readonly plenumT: Float64Array;
  private readonly plenumRet: Float64Array;
  private readonly plenumAcc: Float64Array;

  private timeS = 0;
  private readonly startHour: number;
  private profile: LoadProfileName;
  private profileLevel = 1;
  private globalStep = 1;
  private fanKwh = 0;
  private coolingKwh = 0;
  private readonly plantParams: PlantParams;
  private readonly chillerRefKw: number;
  private plantNow: PlantPoint;
  private plantKwh = 0;
  private chillerKwh = 0;
  private economiserHours = 0;
  private freeCoolingKwh = 0;

  constructor(site: Site, opts: ThermalModelOptions) {
    const p = THERMAL_PARAMS;
    const rnd = mulberry32(opts.seed);
    this.site = site;
    this.profile = opts.profile;
    this.startHour = opts.startHourOfDay ?? 7.5;
    this.dewPointC = site.site.supplyAirDewPointC ?? 8;
    this.subfloorCoef = site.site.subfloorPressurePaPerM3s ?? p.subfloorPaPerM3s;
    const roomIdx = new Map(site.rooms.map((r, i) => [r.id, i]));
    const nR = site.racks.length;
    const nA = site.airHandlers.length;

    this.rackRoom = Int32Array.from(site.racks, (r) => roomIdx.get(r.room) ?? 0);
    this.rackItNomKw = Float64Array.from(site.racks, (r) => r.itLoadKw);
    // A rack with no load still moves a little air; a zero would divide by zero below.
    this.rackQ = Float64Array.from(site.racks, (r) =>
      Math.max(0.01, r.airflowM3s ?? r.itLoadKw * p.rackAirflowPerKw),
    );
    this.rackStep = new Float64Array(nR).fill(1);
    // Seeded per-rack variation of stratification (±20 %): racks differ, as in a real hall.
    this.rackStrat = Float64Array.from(site.racks, () => p.stratification * (0.8 + 0.4 * rnd()));
    this.inletC = new Float64Array(nR).fill(20);
    this.tsupC = new Float64Array(nR).fill(18);
    this.coldQ = new Float64Array(nR);
    this.used = new Float64Array(nR);
    this.exhaustC = new Float64Array(nR).fill(30);
    this.rackIt = new Float64Array(nR);
    this.tsupAcc = new Float64Array(nR);
    this.rackLeak = new Float64Array(nR);
    for (const [i, r] of site.racks.entries()) this.rackIndex.set(r.id, i);

    this.ahuIds = site.airHandlers.map((a) => a.id);
    this.ahuRoom = Int32Array.from(site.airHandlers, (a) => roomIdx.get(a.room) ?? 0);
    this.qMax = Float64Array.from(site.airHandlers, (a) => a.maxAirflowM3s);
    this.capKw = Float64Array.from(site.airHandlers, (a) => a.capacityKw);
    this.fanMaxKw = Float64Array.from(site.airHandlers, (a) => a.fanMaxKw);
    this.tauS = Float64Array.from(site.airHandlers, (a) => a.supplyTauS ?? 60);
    this.running = new Uint8Array(nA).fill(1);
    this.fanCmd = Float64Array.from(site.airHandlers, (a) => a.localFanPct ?? 100);
    this.setpointC = Float64Array.from(site.airHandlers, (a) => a.localSetpointC ?? 18);
    this.fanPct = Float64Array.from(this.fanCmd);
    this.supplyC = Float64Array.from(this.setpointC);
    this.returnC = new Float64Array(nA).fill(28);
    this.coilKw = new Float64Array(nA);
    this.ahuMoveM = site.airHandlers.map(() => ({ dxM: 0, dyM: 0 }));
    for (const [i, a] of site.airHandlers.entries()) this.ahuIndex.set(a.id, i);
    for (let a = 0; a < nA; a++) this.updateReach(a);

    const nRooms = site.rooms.length;
    this.roomRackQ = new Float64Array(nRooms);
    for (let r = 0; r < nR; r++) this.roomRackQ[this.rackRoom[r]!]! += this.rackQ[r]!;
    this.plenumQ = new Float64Array(nRooms);
    this.plenumT = new Float64Array(nRooms).fill(18);
    this.plenumRet = new Float64Array(nRooms).fill(28);
    this.plenumAcc = new Float64Array(nRooms);

    this.plantParams = { ...DEFAULT_PLANT, ...opts.plant };
    this.chillerRefKw =
      this.plantParams.chillerRefKw ?? site.airHandlers.reduce((sum, a) => sum + a.capacityKw, 0);
    this.plantNow = this.plantAt();

    this.readRack = (rackId: string): RackClimate => {
      const r = this.rackIndex.get(rackId);
      if (r === undefined) throw new RangeError(`unknown rack "${rackId}"`);
      return this.climate(r);
    };
    this.updateAirflowAndMix(); // consistent derived state before the first step
  }

  /** What an AHU's controller board drives now (from `SimAirHandler.effectiveCommand()`). */
  setAhuCommand(ahuId: string, cmd: AhuCommandInput): void {
    const a = this.requireAhu(ahuId);
    this.running[a] = cmd.running ? 1 : 0;
    this.fanCmd[a] = clamp(cmd.fanPct, FAN_RANGE_PCT.min, FAN_RANGE_PCT.max);
    this.setpointC[a] = cmd.supplySetpointC;
  }

  /** Multiplies one rack's IT load (`*`: every rack) by `factor`; 1 clears the step. */
  setLoadStep(rackId: string, factor: number): void {
    if (!Number.isFinite(factor) || factor < 0) throw new RangeError(`load factor ${factor} must be ≥ 0`);
    if (rackId === '*') {
      this.globalStep = factor;
      return;
    }
    const r = this.rackIndex.get(rackId);
    if (r === undefined) throw new RangeError(`unknown rack "${rackId}"`);
    this.rackStep[r] = factor;
  }

  /** `constant` at `level` (default 1), or `daily` (0.7…1.0 of nominal, peak 15:00) scaled by `level`. */
  setProfile(profile: LoadProfileName, level = 1): void {
    this.profile = profile;
    this.profileLevel = level;
  }

  /** The IT-load profile in force and its level (`factor` of the load-profile fault). */
  loadProfile(): { profile: LoadProfileName; level: number } {
    return { profile: this.profile, level: this.profileLevel };
  }

  /** Current multiplier of nominal IT load from the profile. */
  loadFactor(): number {
    const base = this.profile === 'daily' ? dailyLoadFactor(this.hourOfDay()) : 1;
    return base * this.profileLevel * this.globalStep;
  }

  hourOfDay(): number {
    return (this.startHour + this.timeS / 3600) % 24;
  }

  /**
   * The racks unit `a` reaches locally from where it sits now, and the share of its local air each
   * gets: weights k = 1 / (1 + (d/L)²) within its room, normalised over the racks it reaches.
   */
  private updateReach(a: number): void {
    const p = THERMAL_PARAMS;
    const ahu = this.site.airHandlers[a]!;
    const xM = ahu.xM + this.ahuMoveM[a]!.dxM;
    const yM = ahu.yM + this.ahuMoveM[a]!.dyM;
    const idx: number[] = [];
    const w: number[] = [];
    let wMax = 0;
    for (let r = 0; r < this.rackRoom.length; r++) {
      if (this.rackRoom[r] !== this.ahuRoom[a]) continue;
      const rack = this.site.racks[r]!;
      const d2 = ((rack.xM - xM) ** 2 + (rack.yM - yM) ** 2) / p.influenceLengthM ** 2;
      const k = 1 / (1 + d2);
      if (k > wMax) wMax = k;
      idx.push(r);
      w.push(k);
    }
    const keep = idx.map((_, j) => j).filter((j) => w[j]! >= p.influenceCutoff * wMax);
    const sum = keep.reduce((s, j) => s + w[j]!, 0);
    this.reachRacks[a] = Int32Array.from(keep, (j) => idx[j]!);
    this.reachShare[a] = Float64Array.from(keep, (j) => (sum > 0 ? w[j]! / sum : 0));
  }

  /** Why `change` cannot be applied (unknown id, a unit moved out of its room); empty when it can. */
  layoutProblems(change: LayoutChange): string[] {
    if (change.kind === 'blanking-panel-removed') {
      return this.rackIndex.has(change.rack) ? [] : [`unknown rack "${change.rack}"`];
    }
    const a = this.ahuIndex.get(change.ahu);
    if (a === undefined) return [`unknown air handler "${change.ahu}"`];
    if (!Number.isFinite(change.dxM) || !Number.isFinite(change.dyM))
      return [`unit-moved: dxM and dyM must be finite numbers of metres`];
    const ahu = this.site.airHandlers[a]!;
    const room = this.site.rooms.find((r) => r.id === ahu.room);
    const x = ahu.xM + change.dxM;
    const y = ahu.yM + change.dyM;
    if (room && (x < 0 || x > room.widthM || y < 0 || y > room.depthM)) {
      return [
        `unit-moved: ${change.ahu} would sit at (${round3(x)}, ${round3(y)}) m, outside room ${room.id} (0…${room.widthM} × 0…${room.depthM} m)`,
      ];
    }
    return [];
  }

  /** Applies a layout change from now on; throws RangeError (with `layoutProblems`) when it cannot. */
  layoutChange(change: LayoutChange): void {
    const problems = this.layoutProblems(change);
    if (problems.length > 0) throw new RangeError(problems.join('; '));
    if (change.kind === 'blanking-panel-removed') {
      this.rackLeak[this.rackIndex.get(change.rack)!] = THERMAL_PARAMS.blankingPanelLeak;
      return;
    }
    const a = this.ahuIndex.get(change.ahu)!;
    this.ahuMoveM[a] = { dxM: change.dxM, dyM: change.dyM };
    this.updateReach(a);
    this.updateAirflowAndMix();
  }

  /** Undoes a layout change: the unit back where the site file has it, or the rack's panel back in. */
  restoreLayout(target: LayoutTarget): void {
    if (target.kind === 'blanking-panel-removed') {
      const r = this.rackIndex.get(target.rack);
      if (r === undefined) throw new RangeError(`unknown rack "${target.rack}"`);
      this.rackLeak[r] = 0;
      return;
    }
    this.layoutChange({ kind: 'unit-moved', ahu: target.ahu, dxM: 0, dyM: 0 });
  }

  /**
   * The true influence of every unit on every rack, as the physics has it now (docs/thermal-model.md#true-influence).
   * Like src/control/law/influence.ts, an absolute weight in [0, 1] — 0 no influence, 1 the whole
   * of it — not renormalised per unit or per rack, so a learned matrix on the same scale compares
   * entry by entry (mean absolute error).
   */
  trueInfluence(opts: TrueInfluenceOptions = {}): TrueInfluence {
    const design = opts.at === 'design';
    const intake = (opts.measure ?? 'intake-share') === 'intake-share';
    const nR = this.rackQ.length;
    const nA = this.qMax.length;
    const share = THERMAL_PARAMS.plenumShare;
    // Cold air from each unit to each rack, C_ar, the same split updateAirflowAndMix makes.
    const c = Array.from({ length: nA }, () => new Float64Array(nR));
    const cRack = new Float64Array(nR);
    for (let a = 0; a < nA; a++) {
      const q = design ? this.qMax[a]! : this.qMax[a]! * (this.fanPct[a]! / 100);
      const racks = this.reachRacks[a]!;
      const sh = this.reachShare[a]!;
      const localQ = racks.length > 0 ? q * (1 - share) : 0;
      for (let j = 0; j < racks.length; j++) c[a]![racks[j]!]! += localQ * sh[j]!;
      const room = this.ahuRoom[a]!;
      for (let r = 0; r < nR; r++) {
        if (this.rackRoom[r] === room) c[a]![r]! += (q - localQ) * (this.rackQ[r]! / this.roomRackQ[room]!);
      }
    }
    for (let a = 0; a < nA; a++) for (let r = 0; r < nR; r++) cRack[r]! += c[a]![r]!;
    const rows = c.map((row) =>
      Array.from(row, (car, r) => {
        if (!(cRack[r]! > 1e-12)) return 0;
        const f = this.recirculationOf(r, cRack[r]!);
        return (intake ? 1 - f : 1) * (car / cRack[r]!);
      }),
    );
    return { ahuIds: [...this.ahuIds], rackIds: this.site.racks.map((r) => r.id), rows };
  }

  /** Recirculation of rack `r` offered `coldQ` m³/s of cold air, with its blanking-panel leak. */
  private recirculationOf(r: number, coldQ: number): number {
    const f = recirculation(coldQ / this.rackQ[r]!);
    const leak = this.rackLeak[r]!;
    return leak > 0 ? Math.min(THERMAL_PARAMS.recircMax, f + leak * (1 - f)) : f;
  }

  /** Advances the physics by `dtS` seconds of sim time. */
  step(dtS: number): void {
    if (!(dtS > 0)) return;
    const p = THERMAL_PARAMS;
    const load = this.loadFactor();
    const fanK = 1 - Math.exp(-dtS / p.fanTauS);
    const rackK = 1 - Math.exp(-dtS / p.rackTauS);
    for (let a = 0; a < this.fanPct.length; a++) {
      const target = this.running[a] ? this.fanCmd[a]! : 0;
      this.fanPct[a]! += (target - this.fanPct[a]!) * fanK;
    }
    this.updateAirflowAndMix();

    // Racks: inlet towards its steady state; exhaust = inlet + IT heat / server airflow.
    for (let r = 0; r < this.inletC.length; r++) {
      const q = this.rackQ[r]!;
      const it = this.rackItNomKw[r]! * this.rackStep[r]! * load;
      this.rackIt[r] = it;
      const dT = it / (AIR_RHO_CP * q);
      const f = this.recirculationOf(r, this.coldQ[r]!);
      const steady = this.tsupC[r]! + (f / (1 - f)) * dT;
      this.inletC[r] = clamp(this.inletC[r]! + (steady - this.inletC[r]!) * rackK, -20, p.maxAirC);
      this.exhaustC[r] = Math.min(p.maxAirC, this.inletC[r]! + dT);
      // The share of the cold air offered to the rack that it actually draws; the rest bypasses.
      this.used[r] = this.coldQ[r]! > 0 ? Math.min(1, ((1 - f) * q) / this.coldQ[r]!) : 0;
    }

    // Plenum return per room: what the racks drew from the plenum comes back as exhaust, the rest as plenum air.
    this.plenumAcc.fill(0);
    for (let r = 0; r < this.inletC.length; r++) {
      const room = this.rackRoom[r]!;
      const pr = this.plenumQ[room]! * (this.rackQ[r]! / this.roomRackQ[room]!);
      const u = this.used[r]!;
      this.plenumAcc[room]! += pr * (u * this.exhaustC[r]! + (1 - u) * this.plenumT[room]!);
    }
    for (let room = 0; room < this.plenumQ.length; room++) {
      if (this.plenumQ[room]! > 1e-9) this.plenumRet[room] = this.plenumAcc[room]! / this.plenumQ[room]!;
    }

    // Air handlers: return air, then the coil within its capacity, then the supply-air lag.
    let fanKw = 0;
    let coolingKw = 0;
    for (let a = 0; a < this.supplyC.length; a++) {
      const racks = this.reachRacks[a]!;
      const share = this.reachShare[a]!;
      let local = 0;
      let localW = 0;
      for (let j = 0; j < racks.length; j++) {
        const r = racks[j]!;
        const u = this.used[r]!;
        local += share[j]! * (u * this.exhaustC[r]! + (1 - u) * this.supplyC[a]!);
        localW += share[j]!;
      }
      const plenumRet = this.plenumRet[this.ahuRoom[a]!]!;
      const localRet = localW > 0 ? local / localW : plenumRet;
      const ret = localW > 0 ? (1 - p.plenumShare) * localRet + p.plenumShare * plenumRet : plenumRet;
      this.returnC[a] = ret;
      const q = this.qMax[a]! * (this.fanPct[a]! / 100);
      const demandKw = AIR_RHO_CP * q * (ret - this.setpointC[a]!);
      const coil = this.running[a] ? clamp(demandKw, 0, this.capKw[a]!) : 0;
      this.coilKw[a] = coil;
      const target = q > 1e-6 ? ret - coil / (AIR_RHO_CP * q) : ret;
      this.supplyC[a] = clamp(
        this.supplyC[a]! + (target - this.supplyC[a]!) * (1 - Math.exp(-dtS / this.tauS[a]!)),
        -20,
        p.maxAirC,
      );
      fanKw += this.fanMaxKw[a]! * (this.fanPct[a]! / 100) ** 3;
      coolingKw += Math.max(0, AIR_RHO_CP * q * (ret - this.supplyC[a]!));
    }
    this.fanKwh += (fanKw * dtS) / 3600;
    this.coolingKwh += (coolingKw * dtS) / 3600;
    this.plantNow = this.plantAt();
    this.plantKwh += (this.plantNow.plantKw * dtS) / 3600;
    this.chillerKwh += (this.plantNow.chillerKw * dtS) / 3600;
    this.freeCoolingKwh += (this.plantNow.freeCoolingKw * dtS) / 3600;
    if (this.plantNow.freeCoolingKw > 0) this.economiserHours += dtS / 3600;
    this.timeS += dtS;
  }

  /** The plant carrying the coils' duty now, its chilled water set by the running units' setpoints. */
  private plantAt(): PlantPoint {
    let loadKw = 0;
    const setpoints: number[] = [];
    for (let a = 0; a < this.coilKw.length; a++) {
      loadKw += this.coilKw[a]!;
      if (this.running[a]) setpoints.push(this.setpointC[a]!);
    }
    const p = this.plantParams;
    return plantPoint(
      loadKw,
      chwSupplyForC(setpoints, p),
      wetBulbC(this.hourOfDay(), p.wetBulb),
      p,
      this.chillerRefKw,
    );
  }

  /** The plant's operating point as of the last step (water temperatures, mode, power). */
  plant(): PlantPoint {
    return { ...this.plantNow };
  }

  /** Cold air (local + plenum) offered to each rack and its mixed supply temperature. */
  private updateAirflowAndMix(): void {
    const share = THERMAL_PARAMS.plenumShare;
    this.coldQ.fill(0);
    this.tsupAcc.fill(0);
    this.plenumQ.fill(0);
    this.plenumAcc.fill(0);
    for (let a = 0; a < this.supplyC.length; a++) {
      const q = this.qMax[a]! * (this.fanPct[a]! / 100);
      const racks = this.reachRacks[a]!;
      const sh = this.reachShare[a]!;
      // An AHU that reaches no rack feeds the plenum only.
      const localQ = racks.length > 0 ? q * (1 - share) : 0;
      for (let j = 0; j < racks.length; j++) {
        const w = localQ * sh[j]!;
        this.coldQ[racks[j]!]! += w;
        this.tsupAcc[racks[j]!]! += w * this.supplyC[a]!;
      }
      const room = this.ahuRoom[a]!;
      this.plenumQ[room]! += q - localQ;
      this.plenumAcc[room]! += (q - localQ) * this.supplyC[a]!;
    }
    for (let room = 0; room < this.plenumQ.length; room++) {
      if (this.plenumQ[room]! > 1e-9) this.plenumT[room] = this.plenumAcc[room]! / this.plenumQ[room]!;
    }
    for (let r = 0; r < this.coldQ.length; r++) {
      const room = this.rackRoom[r]!;
      const pr = this.plenumQ[room]! * (this.rackQ[r]! / this.roomRackQ[room]!);
      this.coldQ[r]! += pr;
      this.tsupAcc[r]! += pr * this.plenumT[room]!;
      // With no cold air at all the rack breathes its own exhaust; keep the last supply mix.
      if (this.coldQ[r]! > 1e-9) this.tsupC[r] = this.tsupAcc[r]! / this.coldQ[r]!;
    }
  }

  private climate(r: number): RackClimate {
    const inlet = this.inletC[r]!;
    const rise = Math.max(0, inlet - this.tsupC[r]!) * this.rackStrat[r]!;
    return {
      inletTopC: inlet + rise,
      inletMiddleC: inlet,
      inletBottomC: inlet - rise,
      relativeHumidityPct: relativeHumidity(inlet, this.dewPointC),
      subfloorPa: this.subfloorCoef * this.coldQ[r]!,
    };
  }

  /** Mean (middle) inlet temperature of a rack, °C. */
  rackInletC(rackId: string): number {
    const r = this.rackIndex.get(rackId);
    if (r === undefined) throw new RangeError(`unknown rack "${rackId}"`);
    return this.inletC[r]!;
  }

  ahu(ahuId: string): AhuAirState {
    const a = this.requireAhu(ahuId);
    const q = this.qMax[a]! * (this.fanPct[a]! / 100);
    return {
      fanPct: this.fanPct[a]!,
      supplyC: this.supplyC[a]!,
      returnC: this.returnC[a]!,
      cwValvePct: (100 * this.coilKw[a]!) / this.capKw[a]!,
      fanKw: this.fanMaxKw[a]! * (this.fanPct[a]! / 100) ** 3,
      coolingKw: Math.max(0, AIR_RHO_CP * q * (this.returnC[a]! - this.supplyC[a]!)),
      airflowM3s: q,
    };
  }

  totals(): ThermalTotals {
    let fanKw = 0;
    let coolingKw = 0;
    for (const id of this.ahuIds) {
      const a = this.ahu(id);
      fanKw += a.fanKw;
      coolingKw += a.coolingKw;
    }
    let itKw = 0;
    for (let r = 0; r < this.rackIt.length; r++) itKw += this.rackIt[r]!;
    return {
      fanKw,
      coolingKw,
      itKw,
      plantKw: this.plantNow.plantKw,
      chillerKw: this.plantNow.chillerKw,
      wetBulbC: this.plantNow.wetBulbC,
      chwSupplyC: this.plantNow.chwSupplyC,
      fanKwh: this.fanKwh,
      coolingKwh: this.coolingKwh,
      plantKwh: this.plantKwh,
      chillerKwh: this.chillerKwh,
      economiserHours: this.economiserHours,
      freeCoolingKwh: this.freeCoolingKwh,
    };
  }

  /** Starts the energy meters from zero (after the simulation settles the hall). */
  resetEnergy(): void {
    this.fanKwh = 0;
    this.coolingKwh = 0;
    this.plantKwh = 0;
    this.chillerKwh = 0;
    this.economiserHours = 0;
    this.freeCoolingKwh = 0;
  }

  private requireAhu(ahuId: string): number {
    const a = this.ahuIndex.get(ahuId);
    if (a === undefined) throw new RangeError(`unknown air handler "${ahuId}"`);
    return a;
  }
}

/**
 * Share of a rack's intake that is its own exhaust, from the cold-air supply ratio s = C/Q: falls
 * from 1 (no cold air) to recircMin (plenty), and never below 1 − s, because a rack cannot draw more
 * cold air than reaches it.
 */
export function recirculation(s: number): number {
  const p = THERMAL_PARAMS;
  const smooth = 1 - (1 - p.recircMin) * (1 - Math.exp(-Math.max(0, s) / p.recircScale));
  return Math.min(p.recircMax, Math.max(1 - s, smooth));
}

/** Magnus formula (Sonntag 1990 constants), %RH of air at `tC` with dew point `dewPointC`. */
export function relativeHumidity(tC: number, dewPointC: number): number {
  const a = 17.62;
  const b = 243.12;
  return clamp(100 * Math.exp((a * dewPointC) / (b + dewPointC) - (a * tC) / (b + tC)), 0, 100);
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}
