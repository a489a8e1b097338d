// The plant's process values on /metrics: per rack, per control group, per air handler, and the
// power and energy of the units this node drives — what facilities engineers alert and chart on.
// Invariant: a group's values, and those of its units and racks, come only from the node that leads
// it (one series per rack, group and unit across the cluster, never one per node); a node that
// loses the group drops them at its next scrape. A rack in several groups belongs to the first of
// them in the site file. Enumerations are state sets (one series per state, 1 for the current one).
// Everything is read at scrape time from what the loops already hold (no device or sensor I/O),
// from one look at the node per scrape, and the large families render their own text in chunks
// (metrics/text.ts), so a scrape at 1 000 units stays a few ms of work. Base units throughout:
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

/** Rows of a per-unit or per-rack family per chunk of text (each row a few lines). */
const ROWS_PER_CHUNK = 64;
/** One look at the node serves the families of one scrape (they render within a few ms). */
const SNAPSHOT_TTL_MS = 250;

interface GroupRow {
  id: string;
  set: LabelSet;
  view: GroupSensorView | null;
  mode: LoopMode | null;
  driven: boolean;
  leader: LabelSet;
  epoch: number;
}

interface RackRow {
  set: LabelSet;
  stats: RackInletStats;
}

interface UnitRow {
  set: LabelSet;
  reading: AhuReadings | null;
  commandFanPct: number | null;
  link: LinkState | null;
}

interface Snapshot {
  atMs: number;
  groups: GroupRow[];
  racks: RackRow[];
  units: UnitRow[];
}

/** What the site says, indexed once per site (a reload brings a new one). */
interface Layout {
  site: Site;
  groups: Map<string, { set: LabelSet; ahus: { id: string; set: LabelSet }[] }>;
  /** rack → label set {rack, group} of its owner group. */
  rackOwner: Map<string, { group: string; set: LabelSet }>;
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

type Emit<R> = (row: R, extra: LabelSet | null, value: number) => void;

/**
 * One family of process values: its lines come from the rows of the scrape's snapshot. Both what
 * prom-client's registry reads (`get()`) and its own text (`textChunks()`), the same lines.
 */
class ProcessFamily<R extends { set: LabelSet }> implements SelfRenderingFamily {
  readonly [RENDERS_OWN_TEXT] = true;
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
  private readonly rows: () => readonly R[];
  private readonly lines: (row: R, emit: Emit<R>) => void;

  constructor(
    name: string,
    help: string,
    type: 'gauge' | 'counter',
    rows: () => readonly R[],
    lines: (row: R, emit: Emit<R>) => void,
  ) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.rows = rows;
    this.lines = lines;
  }

  async get(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    const values: MetricValueWithName<string>[] = [];
    const emit: Emit<R> = (row, extra, value) =>
      values.push({ labels: extra ? { ...row.set.labels, ...extra.labels } : { ...row.set.labels }, value });
    for (const row of this.rows()) this.lines(row, emit);
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
    const rows = this.rows();
    let chunk = '';
    const emit: Emit<R> = (row, extra, value) => {
      const labels = extra ? (row.set.text ? `${row.set.text},${extra.text}` : extra.text) : row.set.text;
      chunk += labels ? `\n${name}{${labels}} ${valueText(value)}` : `\n${name} ${valueText(value)}`;
    };
    for (let from = 0; from < rows.length; from += ROWS_PER_CHUNK) {
      chunk = '';
      const to = Math.min(from + ROWS_PER_CHUNK, rows.length);
      for (let i = from; i < to; i++) this.lines(rows[i]!, emit);
      if (chunk) yield chunk;
    }
  }

  /** Process values are states, or counters kept by their owner: nothing to reset. */
  reset(): void {}
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
  private readonly plantRow: { set: LabelSet }[] = [{ set: labelSet({}) }];

  constructor(registry: Registry, deps: ProcessValuesDeps) {
    this.deps = deps;
    this.now = deps.now ?? (() => performance.now());
    this.lastIntegrateMs = this.now();
    const s = () => this.snapshot();
    const racks = () => s().racks;
    const groups = () => s().groups;
    const units = () => s().units;
    const families: SelfRenderingFamily[] = [
      new ProcessFamily<RackRow>(
        'coolctl_rack_inlet_celsius',
        'Hottest good inlet reading of the rack (absent: none is good); from the node that leads its group',
        'gauge',
        racks,
        (r, emit) => {
          if (r.stats.inletMaxC !== null) emit(r, null, r.stats.inletMaxC);
        },
      ),
      new ProcessFamily<RackRow>(
        'coolctl_rack_inlet_trust_ratio',
        'Good inlet sensors of the rack / its inlet sensors (0…1): how far its inlet reading can be trusted',
        'gauge',
        racks,
        (r, emit) => emit(r, null, r.stats.inlets > 0 ? r.stats.goodInlets / r.stats.inlets : 0),
      ),
      new ProcessFamily<GroupRow>(
        'coolctl_group_inlet_max_celsius',
        'Hottest good rack inlet of the group (absent: none is good)',
        'gauge',
        groups,
        (g, emit) => {
          if (g.view?.inletMaxC != null) emit(g, null, g.view.inletMaxC);
        },
      ),
      new ProcessFamily<GroupRow>(
        'coolctl_group_dew_point_celsius',
        'Highest dew point among the group’s sensor nodes with a good inlet and humidity reading (absent: none)',
        'gauge',
        groups,
        (g, emit) => {
          if (g.view?.dewPointC != null) emit(g, null, g.view.dewPointC);
        },
      ),
      new ProcessFamily<GroupRow>(
        'coolctl_group_inlet_trust_ratio',
        'Good inlet sensors of the group / its configured inlet sensors (0…1); the verdict follows from it',
        'gauge',
        groups,
        (g, emit) => {
          if (g.view) emit(g, null, g.view.coverage);
        },
      ),
      new ProcessFamily<GroupRow>(
        'coolctl_group_sensor_verdict',
        'The group’s sensor verdict: 1 for the current one of ok, degraded, blind',
        'gauge',
        groups,
        (g, emit) => {
          if (!g.view) return;
          for (const [v, set] of VERDICT_LABELS) emit(g, set, v === g.view.verdict ? 1 : 0);
        },
      ),
      new ProcessFamily<GroupRow>(
        'coolctl_group_mode',
        'The group’s control loop mode: 1 for the current one of normal, degraded, blind, paused, hold, starting',
        'gauge',
        groups,
        (g, emit) => {
          if (g.mode === null) return;
          for (const [m, set] of GROUP_MODE_LABELS) emit(g, set, m === g.mode ? 1 : 0);
        },
      ),
      new ProcessFamily<GroupRow>(
        'coolctl_group_driven',
        '1 while the node that leads the group drives it (its writes land), 0 while it leads but cannot',
        'gauge',
        groups,
        (g, emit) => emit(g, null, g.driven ? 1 : 0),
      ),
      new ProcessFamily<GroupRow>(
        'coolctl_group_leader_epoch',
        'The epoch of the group’s leader, exported by the leader, named in the node label',
        'gauge',
        groups,
        (g, emit) => emit(g, g.leader, g.epoch),
      ),
      new ProcessFamily<UnitRow>(
        'coolctl_unit_supply_celsius',
        'Supply-air temperature the unit measures',
        'gauge',
        units,
        (u, emit) => reading(u, emit, (r) => r.supplyC),
      ),
      new ProcessFamily<UnitRow>(
        'coolctl_unit_return_celsius',
        'Return-air temperature the unit measures',
        'gauge',
        units,
        (u, emit) => reading(u, emit, (r) => r.returnC),
      ),
      new ProcessFamily<UnitRow>(
        'coolctl_unit_supply_setpoint_celsius',
        'Supply-air setpoint in force on the unit (the remote command, or its local setpoint), as it reports it',
        'gauge',
        units,
        (u, emit) => reading(u, emit, (r) => r.supplySetpointC),
      ),
      new ProcessFamily<UnitRow>(
        'coolctl_unit_fan_command_ratio',
        'Fan speed this node commands the unit, 0…1 (1 = 100 %)',
        'gauge',
        units,
        (u, emit) => {
          if (u.commandFanPct !== null) emit(u, null, u.commandFanPct / 100);
        },
      ),
      new ProcessFamily<UnitRow>(
        'coolctl_unit_fan_ratio',
        'Fan speed the unit reports, 0…1 (1 = 100 %)',
        'gauge',
        units,
        (u, emit) => reading(u, emit, (r) => r.fanPct / 100),
      ),
      new ProcessFamily<UnitRow>(
        'coolctl_unit_fan_power_watts',
        'Fan electrical power the unit reports',
        'gauge',
        units,
        (u, emit) => reading(u, emit, (r) => r.fanKw * 1000),
      ),
      new ProcessFamily<UnitRow>(
        'coolctl_unit_cooling_power_watts',
        'Cooling the unit delivers, as it reports it',
        'gauge',
        units,
        (u, emit) => reading(u, emit, (r) => r.coolingKw * 1000),
      ),
      new ProcessFamily<UnitRow>(
        'coolctl_unit_mode',
        'The unit’s mode as it reports it: 1 for the current one of local, remote, fallback, tripped, unknown',
        'gauge',
        units,
        (u, emit) => {
          if (!u.reading) return;
          for (const [m, set] of UNIT_MODE_LABELS) emit(u, set, m === u.reading.mode ? 1 : 0);
        },
      ),
      new ProcessFamily<UnitRow>(
        'coolctl_unit_alarm',
        'The unit’s alarms: 1 while on (comm_loss: its watchdog fell back to local; trip; high_supply_temp)',
        'gauge',
        units,
        (u, emit) => {
          if (!u.reading) return;
          for (const a of ALARM_LABELS) emit(u, a.set, u.reading.alarms & a.bit ? 1 : 0);
        },
      ),
      new ProcessFamily<UnitRow>(
        'coolctl_unit_link_state',
        'Link from the leading node to the unit: 1 for the current one of up, degraded, down',
        'gauge',
        units,
        (u, emit) => {
          if (u.link === null) return;
          for (const [st, set] of LINK_LABELS) emit(u, set, st === u.link ? 1 : 0);
        },
      ),
      new ProcessFamily(
        'coolctl_plant_fan_power_watts',
        'Fan power of the units this node drives (sum over the nodes: the plant’s)',
        'gauge',
        () => this.plantRow,
        (p, emit) => {
          this.integrate();
          emit(p, null, this.fanW);
        },
      ),
      new ProcessFamily(
        'coolctl_plant_cooling_power_watts',
        'Cooling delivered by the units this node drives (sum over the nodes: the plant’s)',
        'gauge',
        () => this.plantRow,
        (p, emit) => {
          this.integrate();
          emit(p, null, this.coolingW);
        },
      ),
      new ProcessFamily(
        'coolctl_plant_fan_energy_joules_total',
        'Fan energy of the units while this node drove them (sum the nodes’ increases for the plant’s)',
        'counter',
        () => this.plantRow,
        (p, emit) => {
          this.integrate();
          emit(p, null, this.fanJ);
        },
      ),
      new ProcessFamily(
        'coolctl_plant_cooling_energy_joules_total',
        'Cooling energy delivered by the units while this node drove them',
        'counter',
        () => this.plantRow,
        (p, emit) => {
          this.integrate();
          emit(p, null, this.coolingJ);
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
    for (const d of this.deps.drivers.values()) {
      if (!d.driving) continue;
      for (const u of this.layoutOf().groups.get(d.group)?.ahus ?? []) {
        const r = d.lastReading(u.id);
        if (!r) continue;
        if (Number.isFinite(r.fanKw)) fanW += r.fanKw * 1000;
        if (Number.isFinite(r.coolingKw)) coolingW += r.coolingKw * 1000;
      }
    }
    this.fanW = fanW;
    this.coolingW = coolingW;
  }

  /** The scrape's one look at the node (taken again after SNAPSHOT_TTL_MS). */
  snapshot(): Snapshot {
    const now = this.now();
    if (this.snap && now - this.snap.atMs < SNAPSHOT_TTL_MS) return this.snap;
    const layout = this.layoutOf();
    const snap: Snapshot = { atMs: now, groups: [], racks: [], units: [] };
    const leadership = this.deps.leadership();
    if (leadership) {
      const leader = labelSet({ node: this.deps.node });
      for (const gl of leadership.groups()) {
        if (gl.role !== 'leader') continue;
        const g = layout.groups.get(gl.group);
        if (!g) continue;
        const driver = this.deps.drivers.get(gl.group);
        const view = this.view(gl.group);
        snap.groups.push({
          id: gl.group,
          set: g.set,
          view,
          mode: driver ? driver.decision.mode : null,
          driven: !!driver?.driving && driver.driveStatus.problem === null,
          leader,
          epoch: gl.epoch ?? 0,
        });
        for (const stats of this.rackStats(gl.group)) {
          const owner = layout.rackOwner.get(stats.rack);
          if (owner?.group === gl.group) snap.racks.push({ set: owner.set, stats });
        }
        const commands = new Map<string, number>();
        if (driver?.driving) for (const u of driver.units()) if (u.held) commands.set(u.ahu, u.held.fanPct);
        for (const a of g.ahus) {
          snap.units.push({
            set: a.set,
            reading: driver?.lastReading(a.id) ?? null,
            commandFanPct: commands.get(a.id) ?? null,
            link: this.deps.devices.get(a.id)?.linkState ?? null,
          });
        }
      }
    }
    this.snap = snap;
    return snap;
  }

  private view(group: string): GroupSensorView | null {
    try {
      return this.deps.sensors.view(group);
    } catch {
      return null; // sensor ingest not started, or a group the store does not know (a reload)
    }
  }

  private rackStats(group: string): RackInletStats[] {
    try {
      return this.deps.sensors.rackInletStats?.(group) ?? [];
    } catch {
      return [];
    }
  }

  private layoutOf(): Layout {
    const site = this.deps.site();
    if (this.layout?.site === site) return this.layout;
    const nodeRack = new Map(site.sensorNodes.map((n) => [n.id, n.rack]));
    const groups: Layout['groups'] = new Map();
    const rackOwner: Layout['rackOwner'] = new Map();
    for (const g of site.controlGroups) {
      groups.set(g.id, {
        set: labelSet({ group: g.id }),
        ahus: g.airHandlers.map((id) => ({ id, set: labelSet({ unit: id, group: g.id }) })),
      });
      for (const n of g.sensorNodes) {
        const rack = nodeRack.get(n);
        if (rack !== undefined && !rackOwner.has(rack))
          rackOwner.set(rack, { group: g.id, set: labelSet({ rack, group: g.id }) });
      }
    }
    this.layout = { site, groups, rackOwner };
    return this.layout;
  }
}

/** A measured value of the unit, when the last read succeeded and the unit had it (NaN: no data). */
function reading(u: UnitRow, emit: Emit<UnitRow>, value: (r: AhuReadings) => number): void {
  if (!u.reading) return;
  const v = value(u.reading);
  if (Number.isFinite(v)) emit(u, null, v);
}
