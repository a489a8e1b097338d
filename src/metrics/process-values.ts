// The plant's process values on /metrics: per rack, per control group, per air handler, and the
// power and energy of the units this node drives — what facilities engineers alert and chart on.
// Invariant: a group's values, and those of its units and racks, come only from the node that leads
// it (one series per rack, group and unit across the cluster, never one per node); a node that
// loses the group drops them at its next scrape. A rack in several groups belongs to the first of
// them in the site file. Enumerations are state sets (one series per state, 1 for the current one).
// Everything is read at scrape time from what the loops already hold (no device or sensor I/O):
// which groups the node leads is taken once per scrape, each group's sensor view, racks and units
// when a family first asks for them; the families render their own text a few groups per chunk
// (metrics/text.ts), so no turn of the event loop carries more than a few groups' work. Base units:
// °C (`_celsius`), ratios 0…1 (`_ratio`), watts, joules (docs/observability.md).
import type {
  Counter,
  Gauge,
  MetricObject,
  MetricObjectWithValues,
  MetricValueWithName,
  Registry,
} from 'prom-client';
import type { Leadership } from '../cluster/leadership.ts';
import type { Site } from '../config/site-schema.ts';
import type { GroupDriver, LoopMode } from '../control/group-driver.ts';
import type { AhuReadings, DeviceIo, LinkState } from '../devices/device-io.ts';
import { AHU_MODES, ALARM_BITS } from '../devices/unit-contract.ts';
import type { GroupSensorView, RackInletStats, SensorView, Verdict } from '../sensors/sensor-store.ts';
import { familyHeader, labelText, RENDERS_OWN_TEXT, type SelfRenderingFamily, valueText } from './text.ts';

type Labels = Readonly<Record<string, string>>;

/** One label set and its text, made once. */
interface LabelSet {
  readonly labels: Labels;
  readonly text: string;
}

function labelSet(labels: Labels): LabelSet {
  return { labels, text: labelText(labels) };
}

function stateSets(name: string, states: readonly string[]): Map<string, LabelSet> {
  return new Map(states.map((s) => [s, labelSet({ [name]: s })]));
}

const VERDICTS: readonly Verdict[] = ['ok', 'degraded', 'blind'];
const GROUP_MODES: readonly LoopMode[] = ['normal', 'degraded', 'blind', 'paused', 'hold', 'starting'];
const UNIT_MODES = [...AHU_MODES, 'unknown'] as const;
const LINK_STATES: readonly LinkState[] = ['up', 'degraded', 'down'];
/** The native alarm word's bits, by the label value /metrics gives each. */
const ALARMS: readonly (readonly [string, number])[] = [
  ['comm_loss', ALARM_BITS.commLoss],
  ['trip', ALARM_BITS.trip],
  ['high_supply_temp', ALARM_BITS.highSupplyTemp],
];
const VERDICT_LABELS = stateSets('verdict', VERDICTS);
const GROUP_MODE_LABELS = stateSets('mode', GROUP_MODES);
const UNIT_MODE_LABELS = stateSets('mode', UNIT_MODES);
const LINK_LABELS = stateSets('state', LINK_STATES);
const ALARM_LABELS = ALARMS.map(([alarm, bit]) => ({ bit, set: labelSet({ alarm }) }));

/** Groups per chunk of text (each group: its racks or units, a few dozen lines; or its own line). */
const GROUPS_PER_CHUNK = 16;
/** One look at the node serves the families of one scrape (they render within a few ms). */
const SNAPSHOT_TTL_MS = 250;

interface UnitRow {
  set: LabelSet;
  reading: AhuReadings | null;
  commandFanPct: number | null;
  link: LinkState | null;
}

/** What the site says of one group, indexed once per site (a reload brings a new one). */
interface GroupLayout {
  set: LabelSet;
  ahus: { id: string; set: LabelSet }[];
  /** rack → label set {rack, group}, for the racks this group owns. */
  racks: Map<string, LabelSet>;
}

interface Layout {
  site: Site;
  groups: Map<string, GroupLayout>;
}

/**
 * One group this node leads, as one scrape sees it. Its sensor view, racks and units are taken
 * when a family first asks (then kept for the scrape's other families): a scrape's work is spread
 * over its chunks, a few groups each, instead of one look at 50 000 sensors in one turn.
 */
class GroupRow {
  readonly id: string;
  readonly set: LabelSet;
  readonly leader: LabelSet;
  readonly epoch: number;
  private readonly layout: GroupLayout;
  private readonly driver: GroupDriver | undefined;
  private readonly values: ProcessValuesDeps;
  private viewMemo: GroupSensorView | null | undefined;
  private racksMemo: { set: LabelSet; stats: RackInletStats }[] | undefined;
  private unitsMemo: UnitRow[] | undefined;

  constructor(id: string, layout: GroupLayout, epoch: number, leader: LabelSet, deps: ProcessValuesDeps) {
    this.id = id;
    this.set = layout.set;
    this.layout = layout;
    this.epoch = epoch;
    this.leader = leader;
    this.values = deps;
    this.driver = deps.drivers.get(id);
  }

  get mode(): LoopMode | null {
    return this.driver ? this.driver.decision.mode : null;
  }

  get driven(): boolean {
    return !!this.driver?.driving && this.driver.driveStatus.problem === null;
  }

  view(): GroupSensorView | null {
    if (this.viewMemo === undefined) {
      try {
        this.viewMemo = this.values.sensors.view(this.id);
      } catch {
        this.viewMemo = null; // sensor ingest not started, or a group the store does not know (a reload)
      }
    }
    return this.viewMemo;
  }

  racks(): { set: LabelSet; stats: RackInletStats }[] {
    if (this.racksMemo === undefined) {
      let stats: RackInletStats[] = [];
      try {
        stats = this.values.sensors.rackInletStats?.(this.id) ?? [];
      } catch {
        stats = [];
      }
      this.racksMemo = [];
      for (const st of stats) {
        const set = this.layout.racks.get(st.rack);
        if (set) this.racksMemo.push({ set, stats: st });
      }
    }
    return this.racksMemo;
  }

  units(): UnitRow[] {
    if (this.unitsMemo === undefined) {
      const d = this.driver;
      const commands = new Map<string, number>();
      if (d?.driving) for (const u of d.units()) if (u.held) commands.set(u.ahu, u.held.fanPct);
      this.unitsMemo = this.layout.ahus.map((a) => ({
        set: a.set,
        reading: d?.lastReading(a.id) ?? null,
        commandFanPct: commands.get(a.id) ?? null,
        link: this.values.devices.get(a.id)?.linkState ?? null,
      }));
    }
    return this.unitsMemo;
  }
}

interface Snapshot {
  atMs: number;
  groups: GroupRow[];
}

export interface ProcessValuesDeps {
  node: string;
  /** The running site (a reload replaces it). */
  site: () => Site;
  leadership: () => Leadership | undefined;
  drivers: ReadonlyMap<string, GroupDriver>;
  devices: ReadonlyMap<string, DeviceIo>;
  sensors: SensorView;
  /** How often the energy counters integrate the units' power (default 1 s). */
  integrateMs?: number;
  /** Monotonic ms (default performance.now). */
  now?: () => number;
}

/** One line: a row's label set, an extra label set (a state, an alarm) or none, the value. */
type Emit = (set: LabelSet, extra: LabelSet | null, value: number) => void;

/**
 * One family of process values: its lines come from the groups of the scrape's snapshot (a
 * group's own line, or one per rack or unit of it). Both what prom-client's registry reads
 * (`get()`) and its own text (`textChunks()`), the same lines.
 */
class ProcessFamily implements SelfRenderingFamily {
  readonly [RENDERS_OWN_TEXT] = true;
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
  private readonly groups: () => readonly GroupRow[];
  private readonly lines: (g: GroupRow, emit: Emit) => void;

  constructor(
    name: string,
    help: string,
    type: 'gauge' | 'counter',
    groups: () => readonly GroupRow[],
    lines: (g: GroupRow, emit: Emit) => void,
  ) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.groups = groups;
    this.lines = lines;
  }

  async get(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    const values: MetricValueWithName<string>[] = [];
    const emit: Emit = (set, extra, value) =>
      values.push({ labels: extra ? { ...set.labels, ...extra.labels } : { ...set.labels }, value });
    for (const g of this.groups()) this.lines(g, emit);
    return {
      name: this.name,
      help: this.help,
      type: this.type as unknown as MetricObject['type'],
      aggregator: this.aggregator,
      collect: () => undefined,
      values,
    };
  }

  *textChunks(): Generator<string> {
    const name = this.name;
    yield familyHeader(name, this.help, this.type);
    const groups = this.groups();
    let chunk = '';
    const emit: Emit = (set, extra, value) => {
      const labels = extra ? (set.text ? `${set.text},${extra.text}` : extra.text) : set.text;
      chunk += labels ? `\n${name}{${labels}} ${valueText(value)}` : `\n${name} ${valueText(value)}`;
    };
    for (let from = 0; from < groups.length; from += GROUPS_PER_CHUNK) {
      chunk = '';
      const to = Math.min(from + GROUPS_PER_CHUNK, groups.length);
      for (let i = from; i < to; i++) this.lines(groups[i]!, emit);
      if (chunk) yield chunk;
    }
  }

  /** Process values are states, or counters kept by their owner: nothing to reset. */
  reset(): void {}
}

/** The lines of one value per unit of a group (measured: only after a good read, and when the unit has it). */
function perUnit(value: (r: AhuReadings) => number): (g: GroupRow, emit: Emit) => void {
  return (g, emit) => {
    for (const u of g.units()) {
      if (!u.reading) continue;
      const v = value(u.reading);
      if (Number.isFinite(v)) emit(u.set, null, v);
    }
  };
}

/** The process-value families on one registry, and the energy counters they integrate. */
export class ProcessValues {
  private readonly deps: ProcessValuesDeps;
  private readonly now: () => number;
  private layout: Layout | undefined;
  private snap: Snapshot | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastIntegrateMs: number;
  private fanW = 0;
  private coolingW = 0;
  private fanJ = 0;
  private coolingJ = 0;
  private readonly plant = labelSet({});

  constructor(registry: Registry, deps: ProcessValuesDeps) {
    this.deps = deps;
    this.now = deps.now ?? (() => performance.now());
    this.lastIntegrateMs = this.now();
    const groups = () => this.snapshot().groups;
    // The plant families have one line each, not one per group: their "group list" is one entry.
    const once = () => ONE;
    const families: SelfRenderingFamily[] = [
      new ProcessFamily(
        'coolctl_rack_inlet_celsius',
        'Hottest good inlet reading of the rack (absent: none is good); from the node that leads its group',
        'gauge',
        groups,
        (g, emit) => {
          for (const r of g.racks()) if (r.stats.inletMaxC !== null) emit(r.set, null, r.stats.inletMaxC);
        },
      ),
      new ProcessFamily(
        'coolctl_rack_inlet_trust_ratio',
        'Good inlet sensors of the rack / its inlet sensors (0…1): how far its inlet reading can be trusted',
        'gauge',
        groups,
        (g, emit) => {
          for (const r of g.racks())
            emit(r.set, null, r.stats.inlets > 0 ? r.stats.goodInlets / r.stats.inlets : 0);
        },
      ),
      new ProcessFamily(
        'coolctl_group_inlet_max_celsius',
        'Hottest good rack inlet of the group (absent: none is good)',
        'gauge',
        groups,
        (g, emit) => {
          const v = g.view()?.inletMaxC;
          if (v != null) emit(g.set, null, v);
        },
      ),
      new ProcessFamily(
        'coolctl_group_dew_point_celsius',
        'Highest dew point among the group’s sensor nodes with a good inlet and humidity reading (absent: none)',
        'gauge',
        groups,
        (g, emit) => {
          const v = g.view()?.dewPointC;
          if (v != null) emit(g.set, null, v);
        },
      ),
      new ProcessFamily(
        'coolctl_group_inlet_trust_ratio',
        'Good inlet sensors of the group / its configured inlet sensors (0…1); the verdict follows from it',
        'gauge',
        groups,
        (g, emit) => {
          const v = g.view();
          if (v) emit(g.set, null, v.coverage);
        },
      ),
      new ProcessFamily(
        'coolctl_group_sensor_verdict',
        'The group’s sensor verdict: 1 for the current one of ok, degraded, blind',
        'gauge',
        groups,
        (g, emit) => {
          const v = g.view();
          if (!v) return;
          for (const [verdict, set] of VERDICT_LABELS) emit(g.set, set, verdict === v.verdict ? 1 : 0);
        },
      ),
      new ProcessFamily(
        'coolctl_group_mode',
        'The group’s control loop mode: 1 for the current one of normal, degraded, blind, paused, hold, starting',
        'gauge',
        groups,
        (g, emit) => {
          const mode = g.mode;
          if (mode === null) return;
          for (const [m, set] of GROUP_MODE_LABELS) emit(g.set, set, m === mode ? 1 : 0);
        },
      ),
      new ProcessFamily(
        'coolctl_group_driven',
        '1 while the node that leads the group drives it (its writes land), 0 while it leads but cannot',
        'gauge',
        groups,
        (g, emit) => emit(g.set, null, g.driven ? 1 : 0),
      ),
      new ProcessFamily(
        'coolctl_group_leader_epoch',
        'The epoch of the group’s leader, exported by the leader, named in the node label',
        'gauge',
        groups,
        (g, emit) => emit(g.set, g.leader, g.epoch),
      ),
      new ProcessFamily(
        'coolctl_unit_supply_celsius',
        'Supply-air temperature the unit measures',
        'gauge',
        groups,
        perUnit((r) => r.supplyC),
      ),
      new ProcessFamily(
        'coolctl_unit_return_celsius',
        'Return-air temperature the unit measures',
        'gauge',
        groups,
        perUnit((r) => r.returnC),
      ),
      new ProcessFamily(
        'coolctl_unit_supply_setpoint_celsius',
        'Supply-air setpoint in force on the unit (the remote command, or its local setpoint), as it reports it',
        'gauge',
        groups,
        perUnit((r) => r.supplySetpointC),
      ),
      new ProcessFamily(
        'coolctl_unit_fan_command_ratio',
        'Fan speed this node commands the unit, 0…1 (1 = 100 %)',
        'gauge',
        groups,
        (g, emit) => {
          for (const u of g.units()) if (u.commandFanPct !== null) emit(u.set, null, u.commandFanPct / 100);
        },
      ),
      new ProcessFamily(
        'coolctl_unit_fan_ratio',
        'Fan speed the unit reports, 0…1 (1 = 100 %)',
        'gauge',
        groups,
        perUnit((r) => r.fanPct / 100),
      ),
      new ProcessFamily(
        'coolctl_unit_fan_power_watts',
        'Fan electrical power the unit reports',
        'gauge',
        groups,
        perUnit((r) => r.fanKw * 1000),
      ),
      new ProcessFamily(
        'coolctl_unit_cooling_power_watts',
        'Cooling the unit delivers, as it reports it',
        'gauge',
        groups,
        perUnit((r) => r.coolingKw * 1000),
      ),
      new ProcessFamily(
        'coolctl_unit_mode',
        'The unit’s mode as it reports it: 1 for the current one of local, remote, fallback, tripped, unknown',
        'gauge',
        groups,
        (g, emit) => {
          for (const u of g.units()) {
            if (!u.reading) continue;
            for (const [m, set] of UNIT_MODE_LABELS) emit(u.set, set, m === u.reading.mode ? 1 : 0);
          }
        },
      ),
      new ProcessFamily(
        'coolctl_unit_alarm',
        'The unit’s alarms: 1 while on (comm_loss: its watchdog fell back to local; trip; high_supply_temp)',
        'gauge',
        groups,
        (g, emit) => {
          for (const u of g.units()) {
            if (!u.reading) continue;
            for (const a of ALARM_LABELS) emit(u.set, a.set, u.reading.alarms & a.bit ? 1 : 0);
          }
        },
      ),
      new ProcessFamily(
        'coolctl_unit_link_state',
        'Link from the leading node to the unit: 1 for the current one of up, degraded, down',
        'gauge',
        groups,
        (g, emit) => {
          for (const u of g.units()) {
            if (u.link === null) continue;
            for (const [st, set] of LINK_LABELS) emit(u.set, set, st === u.link ? 1 : 0);
          }
        },
      ),
      new ProcessFamily(
        'coolctl_plant_fan_power_watts',
        'Fan power of the units this node drives (sum over the nodes: the plant’s)',
        'gauge',
        once,
        (_g, emit) => {
          this.integrate();
          emit(this.plant, null, this.fanW);
        },
      ),
      new ProcessFamily(
        'coolctl_plant_cooling_power_watts',
        'Cooling delivered by the units this node drives (sum over the nodes: the plant’s)',
        'gauge',
        once,
        (_g, emit) => {
          this.integrate();
          emit(this.plant, null, this.coolingW);
        },
      ),
      new ProcessFamily(
        'coolctl_plant_fan_energy_joules_total',
        'Fan energy of the units while this node drove them (sum the nodes’ increases for the plant’s)',
        'counter',
        once,
        (_g, emit) => {
          this.integrate();
          emit(this.plant, null, this.fanJ);
        },
      ),
      new ProcessFamily(
        'coolctl_plant_cooling_energy_joules_total',
        'Cooling energy delivered by the units while this node drove them',
        'counter',
        once,
        (_g, emit) => {
          this.integrate();
          emit(this.plant, null, this.coolingJ);
        },
      ),
    ];
    for (const f of families) registry.registerMetric(f as unknown as Gauge | Counter);
  }

  /** Starts integrating the units' power into the energy counters. */
  start(): void {
    if (this.timer) return;
    this.lastIntegrateMs = this.now();
    this.timer = setInterval(() => this.integrate(), this.deps.integrateMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Adds the power of the units this node drives, times the time since the last call, to the energy
   * counters (the power holds between two reads: a unit is read every control period).
   */
  integrate(): void {
    const now = this.now();
    const dtS = Math.max(0, (now - this.lastIntegrateMs) / 1000);
    this.fanJ += this.fanW * dtS;
    this.coolingJ += this.coolingW * dtS;
    this.lastIntegrateMs = now;
    let fanW = 0;
    let coolingW = 0;
    const layout = this.layoutOf();
    for (const d of this.deps.drivers.values()) {
      if (!d.driving) continue;
      for (const u of layout.groups.get(d.group)?.ahus ?? []) {
        const r = d.lastReading(u.id);
        if (!r) continue;
        if (Number.isFinite(r.fanKw)) fanW += r.fanKw * 1000;
        if (Number.isFinite(r.coolingKw)) coolingW += r.coolingKw * 1000;
      }
    }
    this.fanW = fanW;
    this.coolingW = coolingW;
  }

  /** The scrape's one look at the node: the groups it leads (taken again after SNAPSHOT_TTL_MS). */
  snapshot(): Snapshot {
    const now = this.now();
    if (this.snap && now - this.snap.atMs < SNAPSHOT_TTL_MS) return this.snap;
    const layout = this.layoutOf();
    const snap: Snapshot = { atMs: now, groups: [] };
    const leadership = this.deps.leadership();
    if (leadership) {
      const leader = labelSet({ node: this.deps.node });
      for (const gl of leadership.groups()) {
        if (gl.role !== 'leader') continue;
        const g = layout.groups.get(gl.group);
        if (g) snap.groups.push(new GroupRow(gl.group, g, gl.epoch ?? 0, leader, this.deps));
      }
    }
    this.snap = snap;
    return snap;
  }

  private layoutOf(): Layout {
    const site = this.deps.site();
    if (this.layout?.site === site) return this.layout;
    const nodeRack = new Map(site.sensorNodes.map((n) => [n.id, n.rack]));
    const groups: Layout['groups'] = new Map();
    const owned = new Set<string>();
    for (const g of site.controlGroups) {
      const racks = new Map<string, LabelSet>();
      for (const n of g.sensorNodes) {
        const rack = nodeRack.get(n);
        if (rack === undefined || owned.has(rack)) continue;
        owned.add(rack);
        racks.set(rack, labelSet({ rack, group: g.id }));
      }
      groups.set(g.id, {
        set: labelSet({ group: g.id }),
        ahus: g.airHandlers.map((id) => ({ id, set: labelSet({ unit: id, group: g.id }) })),
        racks,
      });
    }
    this.layout = { site, groups };
    return this.layout;
  }
}

/** The one "group" of the plant families (their lines do not depend on it). */
const ONE: readonly GroupRow[] = [null as unknown as GroupRow];
