// A closed loop in accelerated time, in one process and without sockets: the simulator's thermal
// model, sensor nodes that report through the real SensorStore (its quality rules decide each
// group's verdict), and the control law stepping every group at the loop period, its commands
// applied to the units as the group driver would. Or, as baselines, every unit on local control
// (100 % fans, the most wasteful hall there is), or every unit run as a BMS runs it without rack
// sensors (`tuned`: fixed supply-air setpoint held by the unit's coil, fan speed by a PI on its own
// return air, no coordination). Hours of hall time run in seconds. Used by test/control and
// bench/control.ts.

import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { mulberry32 } from '../../firmware-sim/random.ts';
import { ThermalModel } from '../../firmware-sim/thermal/model.ts';
import type { Site } from '../../src/config/site-schema.ts';
import type { ControlTuningInput } from '../../src/config/tuning-schema.ts';
import {
  type GroupControlConfig,
  type GroupControlOutput,
  type GroupControlState,
  groupControlConfig,
  stepGroup,
  type UnitInput,
  type UnitOverride,
} from '../../src/control/law/group-controller.ts';
import { answeredHelpK, callFrom } from '../../src/control/law/help.ts';
import { neighbourGroups } from '../../src/control/law/influence.ts';
import {
  type InfluenceLearner,
  type InfluenceLearningOptions,
  learnerFor,
  stepGroupLearning,
} from '../../src/control/law/influence-learner.ts';
import { clamp, piStep, trackIntegral } from '../../src/control/law/pi.ts';
import { type GroupSensorView, SensorStore } from '../../src/sensors/sensor-store.ts';

export interface ControlHallOptions {
  site?: Site;
  seed?: number;
  profile?: 'constant' | 'daily';
  /** Hour of day at hall time 0 (after settling). */
  startHourOfDay?: number;
  /**
   * `law`: coolctl. `local`: no controller, every unit on its local fan % and setpoint. `tuned`: the
   * conventional hall, each unit on its own loops (`TunedUnitTuning`, default `TUNED_BASELINE`).
   */
  control: 'law' | 'local' | 'tuned';
  tuning?: ControlTuningInput;
  /** The conventional units' settings (`control: 'tuned'`). */
  tunedUnits?: TunedUnitTuning;
  periodS?: number;
  /** Every unit's command while the hall settles before t = 0 (default: its local fallback). */
  settleWith?: { fanPct: number; supplySetpointC: number };
  settleS?: number;
  /** Every group learns its units' influence beside the law (`stepGroupLearning`); `learners` has them. */
  learn?: Partial<InfluenceLearningOptions> | boolean;
}

export interface GroupStep {
  t: number;
  group: string;
  view: GroupSensorView;
  out: GroupControlOutput;
}

/**
 * One conventional unit as a BMS runs it with no rack sensors: the chilled-water valve holds a fixed
 * supply-air setpoint (the simulator's coil does, within its capacity) and the fan speed is a PI on
 * the unit's own return-air temperature — the split vendors recommend for units with variable-speed
 * fans (Liebert iCOM: cooling on supply, fans on return or remote sensors). Every unit alone.
 */
export interface TunedUnitTuning {
  supplySetpointC: number;
  returnSetpointC: number;
  minFanPct: number;
  maxFanPct: number;
  kpPctPerK: number;
  kiPctPerKS: number;
  /** VFD ramp limits of the unit's own fan loop, %/s. */
  rampUpPctPerS: number;
  rampDownPctPerS: number;
}

/**
 * The tuned baseline the bench compares with, as `npm run bench -- control-baseline` finds it
 * (bench/lib/control-baseline-search.ts; docs/control.md "The tuned conventional baseline"). The fan
 * floor and ramps are coolctl's own, so neither side wins on a setting the other may not use.
 */
export const TUNED_BASELINE: TunedUnitTuning = {
  supplySetpointC: 18,
  returnSetpointC: 25.9,
  minFanPct: 30,
  maxFanPct: 100,
  kpPctPerK: 32,
  kiPctPerKS: 0.01,
  rampUpPctPerS: 6,
  rampDownPctPerS: 0.5,
};

type SensorFault = { kind: 'stuck' } | { kind: 'bias'; k: number } | { kind: 'dead' };

const SENSOR_SIGMA_C = 0.1;

export class ControlHall {
  readonly site: Site;
  readonly model: ThermalModel;
  readonly store: SensorStore;
  readonly configs = new Map<string, GroupControlConfig>();
  readonly states = new Map<string, GroupControlState | null>();
  readonly overrides = new Map<string, Record<string, UnitOverride>>();
  readonly paused = new Set<string>();
  readonly tripped = new Set<string>();
  /** Units whose link is lost: commands do not reach them and they run their local fallback. */
  readonly lost = new Set<string>();
  /** Fan command of every unit at every step (for oscillation checks), index = step. */
  readonly fanLog = new Map<string, number[]>();
  readonly last = new Map<string, GroupStep>();
  /** Truth, not sensors: hottest rack inlet (top of rack) since t = 0 and seconds it was above 27 °C. */
  maxInletC = Number.NEGATIVE_INFINITY;
  secondsAbove27 = 0;
  /**
   * ASHRAE rate of change (truth): the largest max − min of any rack's top or bottom inlet within
   * any 15-min / 1-h window since t = 0, from 1-minute [min, max] buckets (a window is read as up
   * to one minute longer than its length, so the figure is never smaller than the truth).
   */
  maxInletRate15MinC = 0;
  maxInletRateHourC = 0;
  /** Sensor view → commands, per group step, ms (reading the units is I/O the driver does). */
  decisionsMs: number[] = [];
  t = 0;
  private readonly opts: ControlHallOptions;
  private readonly period: number;
  private readonly rnd: () => number;
  private readonly nodePhase = new Map<string, number>();
  private readonly nodeSeq = new Map<string, number>();
  private readonly nextReport = new Map<string, number>();
  private readonly sensorFaults = new Map<string, SensorFault>();
  private readonly stuckValue = new Map<string, number>();
  private readonly commanded = new Map<string, { fanPct: number; supplySetpointC: number }>();
  private stepHook: ((s: GroupStep) => void) | undefined;
  /** Per inlet (racks × top/bottom): this minute's min and max, and the last hour of minutes. */
  private readonly minuteLo: Float64Array;
  private readonly minuteHi: Float64Array;
  private readonly minutes: { lo: Float64Array; hi: Float64Array }[] = [];
  private minuteAgeS = 0;
  private readonly neighbours: Record<string, string[]>;
  private readonly tunedUnits: TunedUnitTuning;
  /** Each conventional unit's fan PI: output and integral. */
  private readonly unitLoop = new Map<string, { outPct: number; integralPct: number }>();
  /** Each group's influence learner (`learn`). */
  readonly learners = new Map<string, InfluenceLearner>();
  /** Set false to run every group on its own sensors only (no help between groups). */
  cooperate = true;

  constructor(opts: ControlHallOptions) {
    this.opts = opts;
    this.site = opts.site ?? generateSite(demoShape);
    this.period = opts.periodS ?? 1;
    this.rnd = mulberry32(opts.seed ?? 7);
    this.model = new ThermalModel(this.site, {
      seed: opts.seed ?? 1,
      profile: opts.profile ?? 'constant',
      startHourOfDay: (opts.startHourOfDay ?? 8) - (opts.settleS ?? 1800) / 3600,
    });
    this.store = new SensorStore(this.site, { now: () => this.t * 1000 });
    this.minuteLo = new Float64Array(2 * this.site.racks.length).fill(Number.POSITIVE_INFINITY);
    this.minuteHi = new Float64Array(2 * this.site.racks.length).fill(Number.NEGATIVE_INFINITY);
    this.neighbours = neighbourGroups(this.site);
    this.tunedUnits = opts.tunedUnits ?? TUNED_BASELINE;
    for (const a of this.site.airHandlers) {
      const c = opts.settleWith ?? { fanPct: a.localFanPct, supplySetpointC: a.localSetpointC };
      this.commanded.set(a.id, c);
      this.model.setAhuCommand(a.id, { running: true, ...c });
      this.fanLog.set(a.id, []);
    }
    for (const g of this.site.controlGroups) {
      this.configs.set(g.id, groupControlConfig(this.site, g.id, opts.tuning ? { tuning: opts.tuning } : {}));
      this.states.set(g.id, null);
      if (opts.learn)
        this.learners.set(
          g.id,
          learnerFor(this.site, this.configs.get(g.id)!, opts.learn === true ? {} : { learning: opts.learn }),
        );
    }
    for (const n of this.site.sensorNodes) {
      const interval = n.reportIntervalS ?? 10;
      this.nodePhase.set(n.id, this.rnd() * interval);
      this.nodeSeq.set(n.id, 0);
    }
    const settleS = opts.settleS ?? 1800;
    for (let s = 0; s < settleS; s += 10) this.model.step(10);
    this.model.resetEnergy();
    for (const n of this.site.sensorNodes) this.nextReport.set(n.id, this.nodePhase.get(n.id)!);
    if (opts.control === 'tuned')
      for (const a of this.site.airHandlers) {
        // The BMS took over from what the unit ran while the hall settled: bumpless.
        const fan = this.commanded.get(a.id)!.fanPct;
        const err = this.model.ahu(a.id).returnC - this.tunedUnits.returnSetpointC;
        this.unitLoop.set(a.id, {
          outPct: fan,
          integralPct: trackIntegral(fan, err, this.tunedUnits.kpPctPerK),
        });
      }
  }

  /** Calls `fn` after every group step (for assertions on decisions). */
  onStep(fn: ((s: GroupStep) => void) | undefined): void {
    this.stepHook = fn;
  }

  /** A sensor fault on one node's sensor (`*`: all its sensors). */
  sensorFault(node: string, sensor: string, fault: SensorFault | null): void {
    const key = `${node}/${sensor}`;
    if (fault) this.sensorFaults.set(key, fault);
    else this.sensorFaults.delete(key);
  }

  trip(ahu: string, on: boolean): void {
    if (on) this.tripped.add(ahu);
    else this.tripped.delete(ahu);
  }

  /** Runs `seconds` of hall time. */
  run(seconds: number): void {
    const end = this.t + seconds;
    while (this.t < end - 1e-9) this.tick();
  }

  private tick(): void {
    const dt = this.period;
    if (this.opts.control !== 'tuned') this.report(); // a conventional hall has no rack sensors
    if (this.opts.control === 'law') for (const g of this.site.controlGroups) this.control(g.id, dt);
    if (this.opts.control === 'tuned') this.conventional(dt);
    this.applyUnits();
    this.model.step(dt);
    this.t += dt;
    let hottest = Number.NEGATIVE_INFINITY;
    for (const [i, r] of this.site.racks.entries()) {
      const c = this.model.readRack(r.id);
      hottest = Math.max(hottest, c.inletTopC);
      this.trackInlet(2 * i, c.inletTopC);
      this.trackInlet(2 * i + 1, c.inletBottomC);
    }
    this.minuteAgeS += dt;
    if (this.minuteAgeS >= 60 - 1e-9) this.closeMinute();
    if (hottest > this.maxInletC) this.maxInletC = hottest;
    if (hottest > 27) this.secondsAbove27 += dt;
    for (const a of this.site.airHandlers) this.fanLog.get(a.id)!.push(this.commanded.get(a.id)!.fanPct);
  }

  private trackInlet(k: number, c: number): void {
    if (c < this.minuteLo[k]!) this.minuteLo[k] = c;
    if (c > this.minuteHi[k]!) this.minuteHi[k] = c;
  }

  /** Ends a minute: keeps its [min, max] per inlet (an hour of them) and updates the rate maxima. */
  private closeMinute(): void {
    this.minuteAgeS = 0;
    this.minutes.push({ lo: Float64Array.from(this.minuteLo), hi: Float64Array.from(this.minuteHi) });
    if (this.minutes.length > 60) this.minutes.shift();
    this.minuteLo.fill(Number.POSITIVE_INFINITY);
    this.minuteHi.fill(Number.NEGATIVE_INFINITY);
    const n = this.minutes.length;
    for (let k = 0; k < this.minuteLo.length; k++) {
      let lo = Number.POSITIVE_INFINITY;
      let hi = Number.NEGATIVE_INFINITY;
      for (let m = n - 1; m >= 0; m--) {
        const b = this.minutes[m]!;
        lo = Math.min(lo, b.lo[k]!);
        hi = Math.max(hi, b.hi[k]!);
        if (m === n - 15) this.maxInletRate15MinC = Math.max(this.maxInletRate15MinC, hi - lo);
      }
      if (n < 15) this.maxInletRate15MinC = Math.max(this.maxInletRate15MinC, hi - lo);
      this.maxInletRateHourC = Math.max(this.maxInletRateHourC, hi - lo);
    }
  }

  /** Nodes whose report is due send one, with the mesh's noise and resolution, through the store. */
  private report(): void {
    for (const n of this.site.sensorNodes) {
      const due = this.nextReport.get(n.id)!;
      if (this.t < due) continue;
      this.nextReport.set(n.id, due + (n.reportIntervalS ?? 10));
      const climate = this.model.readRack(n.rack);
      const readings = [];
      for (const s of n.sensors) {
        const fault = this.sensorFaults.get(`${n.id}/${s.id}`) ?? this.sensorFaults.get(`${n.id}/*`);
        if (fault?.kind === 'dead') continue;
        const truth =
          s.kind === 'inlet-top'
            ? climate.inletTopC
            : s.kind === 'inlet-middle'
              ? climate.inletMiddleC
              : s.kind === 'inlet-bottom'
                ? climate.inletBottomC
                : s.kind === 'humidity'
                  ? climate.relativeHumidityPct
                  : climate.subfloorPa;
        const key = `${n.id}/${s.id}`;
        let value = round2(truth + gaussian(this.rnd) * (s.kind === 'humidity' ? 1 : SENSOR_SIGMA_C));
        if (s.kind === 'humidity') value = Math.min(100, Math.max(0, value));
        if (fault?.kind === 'bias') value = round2(value + fault.k);
        if (fault?.kind === 'stuck') value = this.stuckValue.get(key) ?? value;
        this.stuckValue.set(key, value);
        readings.push({ sensor: s.id, kind: s.kind, value });
      }
      if (readings.length === 0) continue;
      const seq = this.nodeSeq.get(n.id)! + 1;
      this.nodeSeq.set(n.id, seq);
      this.store.ingestReport({ node: n.id, gateway: n.gateway, seq, readings }, 'mqtt', this.t * 1000);
    }
  }

  private control(group: string, dt: number): void {
    const cfg = this.configs.get(group)!;
    const t0 = performance.now();
    const view = this.store.view(group);
    const units: UnitInput[] = cfg.ahus.map((a) => {
      const air = this.model.ahu(a);
      const status = this.tripped.has(a) ? 'tripped' : this.lost.has(a) ? 'lost' : 'available';
      const cmd = this.commanded.get(a)!;
      return {
        id: a,
        status,
        read: status === 'lost' ? null : { fanPct: air.fanPct, supplySetpointC: cmd.supplySetpointC },
        air: status === 'lost' ? null : { returnC: air.returnC, supplyC: air.supplyC },
      };
    });
    const inputs = {
      view,
      units,
      dtS: dt,
      overrides: this.overrides.get(group) ?? {},
      paused: this.paused.has(group),
      // As the driver would, from the neighbours' broadcast process state.
      neighbourHelpK: this.cooperate
        ? answeredHelpK(
            this.states.get(group)?.demandPct,
            this.neighbours[group]!.flatMap((n) => callFrom(this.states.get(n)) ?? []),
            this.configs.get(group)!.tuning.help,
          )
        : 0,
    };
    const prev = this.states.get(group) ?? null;
    const learner = this.learners.get(group);
    // The figures of the walk view() just made: per rack, the inlets the learner reads.
    const fig = learner ? this.store.figures(group, 1) : undefined;
    const out =
      learner && fig
        ? stepGroupLearning(cfg, learner, inputs, prev, {
            supplyC: Object.fromEntries(cfg.ahus.map((a) => [a, this.model.ahu(a).supplyC])),
            racks: fig.inletRacks,
            inletC: fig.rackInletMaxC,
          })
        : stepGroup(cfg, inputs, prev);
    this.decisionsMs.push(performance.now() - t0);
    this.states.set(group, out.state);
    for (const [a, c] of Object.entries(out.commands)) if (!this.lost.has(a)) this.commanded.set(a, c);
    for (const a of out.release) this.commanded.set(a, this.localOf(a));
    const s = { t: this.t, group, view, out };
    this.last.set(group, s);
    this.stepHook?.(s);
  }

  /** Each unit's own loops, as a BMS runs them: fan PI on its return air, supply setpoint fixed. */
  private conventional(dt: number): void {
    const u = this.tunedUnits;
    for (const a of this.site.airHandlers) {
      const loop = this.unitLoop.get(a.id)!;
      // A tripped unit's loop is stopped: it restarts from where it stood.
      if (this.tripped.has(a.id)) continue;
      const err = this.model.ahu(a.id).returnC - u.returnSetpointC;
      const r = piStep(err, dt, loop.outPct, loop.integralPct, {
        kp: u.kpPctPerK,
        ki: u.kiPctPerKS,
        loPct: u.minFanPct,
        hiPct: u.maxFanPct,
        upPctPerS: u.rampUpPctPerS,
        downPctPerS: u.rampDownPctPerS,
      });
      loop.outPct = r.outputPct;
      loop.integralPct = r.integralPct;
      this.commanded.set(a.id, {
        fanPct: clamp(Math.round(r.outputPct * 10) / 10, 0, 100),
        supplySetpointC: u.supplySetpointC,
      });
    }
  }

  private applyUnits(): void {
    for (const a of this.site.airHandlers) {
      if (this.lost.has(a.id)) this.commanded.set(a.id, this.localOf(a.id));
      const c = this.commanded.get(a.id)!;
      const tripped = this.tripped.has(a.id);
      this.model.setAhuCommand(a.id, {
        running: !tripped,
        fanPct: tripped ? 0 : c.fanPct,
        supplySetpointC: c.supplySetpointC,
      });
    }
  }

  private localOf(ahu: string): { fanPct: number; supplySetpointC: number } {
    const a = this.site.airHandlers.find((x) => x.id === ahu)!;
    return { fanPct: a.localFanPct, supplySetpointC: a.localSetpointC };
  }

  /** What a unit is commanded now. */
  command(ahu: string): { fanPct: number; supplySetpointC: number } {
    return this.commanded.get(ahu)!;
  }

  /** Every rack's true inlets now (top, middle, bottom), for range checks. */
  inletRange(): { minC: number; maxC: number } {
    let minC = Number.POSITIVE_INFINITY;
    let maxC = Number.NEGATIVE_INFINITY;
    for (const r of this.site.racks) {
      const c = this.model.readRack(r.id);
      minC = Math.min(minC, c.inletBottomC, c.inletMiddleC);
      maxC = Math.max(maxC, c.inletTopC);
    }
    return { minC, maxC };
  }

  /** Resets the inlet maximum and time above 27 °C (start of a phase under test). */
  resetInletStats(): void {
    this.maxInletC = Number.NEGATIVE_INFINITY;
    this.secondsAbove27 = 0;
    this.maxInletRate15MinC = 0;
    this.maxInletRateHourC = 0;
  }
}

/** Direction reversals of a series, counting only swings of at least `minSwing` (hysteresis). */
export function reversals(xs: readonly number[], minSwing: number): number {
  let count = 0;
  let dir = 0;
  let extreme = xs[0] ?? 0;
  for (const x of xs) {
    if (dir >= 0 && x > extreme) extreme = x;
    else if (dir <= 0 && x < extreme) extreme = x;
    if (dir >= 0 && extreme - x >= minSwing) {
      if (dir > 0) count++;
      dir = -1;
      extreme = x;
    } else if (dir <= 0 && x - extreme >= minSwing) {
      if (dir < 0) count++;
      dir = 1;
      extreme = x;
    }
  }
  return count;
}

function gaussian(rnd: () => number): number {
  const u = Math.max(1e-12, rnd());
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
