// A closed loop in accelerated time, in one process and without sockets: the simulator's thermal
// model, sensor nodes that report through the real SensorStore (its quality rules decide each
// group's verdict), and the control law stepping every group at the loop period, its commands
// applied to the units as the group driver would. Or, as the baseline, every unit on local
// control. Hours of hall time run in seconds. Used by test/control and bench/control.ts.

import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { mulberry32 } from '../../firmware-sim/random.ts';
import { ThermalModel } from '../../firmware-sim/thermal/model.ts';
import type { Site } from '../../src/config/site-schema.ts';
import {
  type GroupControlConfig,
  type GroupControlOutput,
  type GroupControlState,
  groupControlConfig,
  stepGroup,
  type UnitInput,
  type UnitOverride,
} from '../../src/control/law/group-controller.ts';
import { neighbourGroups } from '../../src/control/law/influence.ts';
import type { ControlTuningInput } from '../../src/control/tuning-schema.ts';
import { type GroupSensorView, SensorStore } from '../../src/sensors/sensor-store.ts';

export interface ControlHallOptions {
  site?: Site;
  seed?: number;
  profile?: 'constant' | 'daily';
  /** Hour of day at hall time 0 (after settling). */
  startHourOfDay?: number;
  /** `local`: no controller, every unit on its local fan % and setpoint (the baseline). */
  control: 'law' | 'local';
  tuning?: ControlTuningInput;
  periodS?: number;
  /** Every unit's command while the hall settles before t = 0 (default: its local fallback). */
  settleWith?: { fanPct: number; supplySetpointC: number };
  settleS?: number;
}

export interface GroupStep {
  t: number;
  group: string;
  view: GroupSensorView;
  out: GroupControlOutput;
}

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
  private readonly neighbours: Record<string, string[]>;
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
    this.neighbours = neighbourGroups(this.site);
    for (const a of this.site.airHandlers) {
      const c = opts.settleWith ?? { fanPct: a.localFanPct, supplySetpointC: a.localSetpointC };
      this.commanded.set(a.id, c);
      this.model.setAhuCommand(a.id, { running: true, ...c });
      this.fanLog.set(a.id, []);
    }
    for (const g of this.site.controlGroups) {
      this.configs.set(g.id, groupControlConfig(this.site, g.id, opts.tuning ? { tuning: opts.tuning } : {}));
      this.states.set(g.id, null);
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
    this.report();
    if (this.opts.control === 'law') for (const g of this.site.controlGroups) this.control(g.id, dt);
    this.applyUnits();
    this.model.step(dt);
    this.t += dt;
    let hottest = Number.NEGATIVE_INFINITY;
    for (const r of this.site.racks) hottest = Math.max(hottest, this.model.readRack(r.id).inletTopC);
    if (hottest > this.maxInletC) this.maxInletC = hottest;
    if (hottest > 27) this.secondsAbove27 += dt;
    for (const a of this.site.airHandlers) this.fanLog.get(a.id)!.push(this.commanded.get(a.id)!.fanPct);
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
      };
    });
    const out = stepGroup(
      cfg,
      {
        view,
        units,
        dtS: dt,
        overrides: this.overrides.get(group) ?? {},
        paused: this.paused.has(group),
        // As the driver would, from the neighbours' broadcast process state.
        neighbourHelpK: this.cooperate
          ? Math.max(0, ...this.neighbours[group]!.map((n) => this.states.get(n)?.helpK ?? 0))
          : 0,
      },
      this.states.get(group) ?? null,
    );
    this.decisionsMs.push(performance.now() - t0);
    this.states.set(group, out.state);
    for (const [a, c] of Object.entries(out.commands)) if (!this.lost.has(a)) this.commanded.set(a, c);
    for (const a of out.release) this.commanded.set(a, this.localOf(a));
    const s = { t: this.t, group, view, out };
    this.last.set(group, s);
    this.stepHook?.(s);
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
