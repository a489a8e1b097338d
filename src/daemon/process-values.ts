// The plant's process values on /metrics: per rack, per control group, per air handler, and the
// power and energy of the units this node drives — what facilities engineers alert and chart on.
// Invariant: a group's values, and those of its units and racks, come only from the node that leads
// it (one series per rack, group and unit across the cluster, never one per node); a node that
// loses the group drops them at its next scrape. A rack in several groups belongs to the first of
// them in the site file. Enumerations are state sets (one series per state, 1 for the current one).
// Everything is read at scrape time from what the loops already hold (no device or sensor I/O):
// which groups the node leads is taken once per scrape, each group's figures (sensor view, rack
// statistics, units) when a family first asks for them, as numbers kept for the scrape's other
// families; the families render their own text a few groups per chunk (metrics/text.ts), so no
// turn of the event loop carries more than a few groups' work. Base units: °C (`_celsius`),
// ratios 0…1 (`_ratio`), watts, joules (docs/observability.md).
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
import type { DeviceIo, LinkState } from '../devices/device-io.ts';
import {
  familyHeader,
  LinePrefixes,
  labelText,
  RENDERS_OWN_TEXT,
  type SelfRenderingFamily,
  type TextWriter,
  valueText,
} from '../metrics/text.ts';
import {
  type GroupFigures,
  type GroupSensorView,
  type RackInletStats,
  type SensorView,
  SHARED_FIGURES_MAX_AGE_MS,
  type Verdict,
} from '../sensors/sensor-store.ts';
import { AHU_MODES, ALARM_BITS } from '../unit-contract.ts';

type Labels = Readonly<Record<string, string>>;

/** One label set and its text, made once. */
interface LabelSet {
  readonly labels: Labels;
  readonly text: string;
  /** Its place in `rows` (a row: rack, unit, group), or in its family's extra label sets (a state). */
  id: number;
  /** The row sets of one kind of one site layout it belongs to (a family's line starts are made per such list). */
  rows: readonly LabelSet[] | null;
}

function labelSet(labels: Labels, id = 0): LabelSet {
  const text = labelText(labels);
  return { labels, text, id, rows: null };
}

/** A row's label set, numbered in `rows`. */
function rowSet(rows: LabelSet[], labels: Labels): LabelSet {
  const set = labelSet(labels, rows.length);
  set.rows = rows;
  rows.push(set);
  return set;
}

function stateSets<S extends string>(name: string, states: readonly S[]): LabelSet[] {
  return states.map((s, i) => labelSet({ [name]: s }, i));
}

const VERDICTS: readonly Verdict[] = ['ok', 'degraded', 'blind'];
const GROUP_MODES: readonly LoopMode[] = ['normal', 'degraded', 'blind', 'paused', 'hold', 'starting'];
const UNIT_MODES: readonly string[] = [...AHU_MODES, 'unknown'];
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
const ALARM_LABELS = ALARMS.map(([alarm, bit], i) => ({ bit, set: labelSet({ alarm }, i) }));
const UNKNOWN_MODE = UNIT_MODES.indexOf('unknown');

/** Groups per chunk of text (each group: its racks or units, a few dozen lines; or its own line). */
const GROUPS_PER_CHUNK = 16;
/** One look at the node serves the families of one scrape (they render within a few ms). */
const SNAPSHOT_TTL_MS = 250;

/** What the site says of one group, indexed once per site (a reload brings a new one). */
interface GroupLayout {
  set: LabelSet;
  ahus: { id: string; set: LabelSet }[];
  /** rack → label set {rack, group}, for the racks this group owns. */
  racks: Map<string, LabelSet>;
  /** The label sets of the sensor store's rack list, in its order (rackSetsOf). */
  rackSetsFor?: { racks: readonly string[]; sets: readonly (LabelSet | undefined)[] };
}

interface Layout {
  site: Site;
  groups: Map<string, GroupLayout>;
}

// A unit's figures in a group's Float64Array, UNIT_FIELDS per unit in the layout's order. NaN: the
// unit has no such value (no good read, a point it does not report, no command).
const U_SUPPLY = 0;
const U_RETURN = 1;
const U_SETPOINT = 2;
const U_FAN_CMD = 3;
const U_FAN = 4;
const U_FAN_W = 5;
const U_COOLING_W = 6;
/** Index in UNIT_MODES; -1: no good read, so no reading at all. */
const U_MODE = 7;
const U_ALARMS = 8;
/** Index in LINK_STATES; -1: no device. */
const U_LINK = 9;
const UNIT_FIELDS = 10;

/**
 * One group this node leads, as one scrape sees it: its figures are taken when a family first asks
 * for them (then kept for the scrape's other families), as numbers in typed arrays rather than an
 * object per rack and unit — a scrape lasts several event-loop turns, and per-row objects that
 * live that long are what V8 promotes to its old generation. A scrape's work is so spread over its
 * chunks, a few groups each, instead of one look at 50 000 sensors in one turn.
 */
class GroupRow {
  readonly id: string;
  readonly set: LabelSet;
  readonly leader: LabelSet;
  readonly epoch: number;
  readonly layout: GroupLayout;
  private readonly deps: ProcessValuesDeps;
  private taken = false;
  /** The sensor view's figures; hasView false: no view (ingest not started, a group it does not know). */
  hasView = false;
  inletMaxC: number | null = null;
  dewPointC: number | null = null;
  coverage = 0;
  verdict = -1;
  /** Index in GROUP_MODES; -1: no control loop for the group on this node. */
  mode = -1;
  driven = false;
  /** Per rack with inlet statistics, in the store's order: its label set, hottest good inlet (NaN: none), trust. */
  rackSets: LabelSet[] = [];
  rackFigures: Float64Array = EMPTY;
  /** UNIT_FIELDS per unit of layout.ahus. */
  unitFigures: Float64Array = EMPTY;

  constructor(id: string, layout: GroupLayout, epoch: number, leader: LabelSet, deps: ProcessValuesDeps) {
    this.id = id;
    this.set = layout.set;
    this.layout = layout;
    this.epoch = epoch;
    this.leader = leader;
    this.deps = deps;
  }

  /** Takes the group's figures from the sensor store, its driver and its devices, once per scrape. */
  take(): this {
    if (this.taken) return this;
    this.taken = true;
    const { sensors, drivers, devices } = this.deps;
    const d = drivers.get(this.id);
    let view: GroupSensorView | null = null;
    let figures: GroupFigures | null = null;
    try {
      // The figures the group's loop took this period, when the view can share them.
      if (sensors.figures) {
        figures = sensors.figures(this.id, SHARED_FIGURES_MAX_AGE_MS);
        view = figures.view;
      } else view = sensors.view(this.id);
    } catch {
      view = null; // sensor ingest not started, or a group the store does not know (a reload)
    }
    if (view) {
      this.hasView = true;
      this.inletMaxC = view.inletMaxC;
      this.dewPointC = view.dewPointC;
      this.coverage = view.coverage;
      this.verdict = VERDICTS.indexOf(view.verdict);
    }
    if (d) {
      this.mode = GROUP_MODES.indexOf(d.decision.mode);
      this.driven = d.driving && d.driveStatus.problem === null;
    }
    if (figures) this.takeRacks(figures);
    else {
      let stats: RackInletStats[] = [];
      try {
        stats = sensors.rackInletStats?.(this.id) ?? [];
      } catch {
        stats = [];
      }
      const racks = new Float64Array(stats.length * 2);
      let n = 0;
      for (const st of stats) {
        const set = this.layout.racks.get(st.rack);
        if (!set) continue;
        this.rackSets.push(set);
        racks[n * 2] = st.inletMaxC ?? Number.NaN;
        racks[n * 2 + 1] = st.inlets > 0 ? st.goodInlets / st.inlets : 0;
        n++;
      }
      this.rackFigures = racks;
    }
    const ahus = this.layout.ahus;
    const units = new Float64Array(ahus.length * UNIT_FIELDS).fill(Number.NaN);
    const driving = !!d?.driving;
    const commands = new Map<string, number>();
    if (driving) for (const u of d!.units()) if (u.held) commands.set(u.ahu, u.held.fanPct);
    for (let i = 0; i < ahus.length; i++) {
      const id = ahus[i]!.id;
      const o = i * UNIT_FIELDS;
      const r = driving ? d!.lastReading(id) : null;
      if (r) {
        units[o + U_SUPPLY] = r.supplyC;
        units[o + U_RETURN] = r.returnC;
        units[o + U_SETPOINT] = r.supplySetpointC;
        units[o + U_FAN] = r.fanPct / 100;
        units[o + U_FAN_W] = r.fanKw * 1000;
        units[o + U_COOLING_W] = r.coolingKw * 1000;
        const mode = UNIT_MODES.indexOf(r.mode);
        units[o + U_MODE] = mode < 0 ? UNKNOWN_MODE : mode;
        units[o + U_ALARMS] = r.alarms;
      } else units[o + U_MODE] = -1;
      const cmd = commands.get(id);
      if (cmd !== undefined) units[o + U_FAN_CMD] = cmd / 100;
      const link = devices.get(id)?.linkState;
      units[o + U_LINK] = link === undefined ? -1 : LINK_STATES.indexOf(link);
    }
    this.unitFigures = units;
    return this;
  }

  /** The racks' lines from the shared figures: the same as rackInletStats() would give, without its objects. */
  private takeRacks(f: GroupFigures): void {
    const sets = rackSetsOf(this.layout, f.inletRacks);
    const racks = new Float64Array(f.inletRacks.length * 2);
    const rackSets: LabelSet[] = [];
    let n = 0;
    for (let i = 0; i < sets.length; i++) {
      const set = sets[i];
      if (!set) continue;
      rackSets.push(set);
      racks[n * 2] = f.rackInletMaxC[i]!;
      const inlets = f.rackInlets[i]!;
      racks[n * 2 + 1] = inlets > 0 ? f.rackGoodInlets[i]! / inlets : 0;
      n++;
    }
    this.rackSets = rackSets;
    this.rackFigures = racks;
  }
}

/** Per rack of the store's list, its label set (undefined: a rack another group owns), kept with the layout. */
function rackSetsOf(layout: GroupLayout, racks: readonly string[]): readonly (LabelSet | undefined)[] {
  if (layout.rackSetsFor?.racks !== racks)
    layout.rackSetsFor = { racks, sets: racks.map((r) => layout.racks.get(r)) };
  return layout.rackSetsFor.sets;
}

const EMPTY = new Float64Array(0);

interface Snapshot {
  atMs: number;
  groups: GroupRow[];
  /** The energy counters were brought up to date for this scrape (its four plant lines agree). */
  integrated: boolean;
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
  /** The extra label sets a line may have (states, alarms, the leader), by their id; null: none. */
  private readonly extras: readonly LabelSet[] | null;
  /** Every line start this family can write for one list of rows (one site layout). */
  private table: { rows: readonly LabelSet[]; prefixes: LinePrefixes } | undefined;

  constructor(
    name: string,
    help: string,
    type: 'gauge' | 'counter',
    groups: () => readonly GroupRow[],
    lines: (g: GroupRow, emit: Emit) => void,
    extras: readonly LabelSet[] | null = null,
  ) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.groups = groups;
    this.lines = lines;
    this.extras = extras;
  }

  /** `\nname{labels} `: the start of a line, up to its value. */
  private lineStart(set: LabelSet, extra: LabelSet | null): string {
    const labels = extra ? (set.text ? `${set.text},${extra.text}` : extra.text) : set.text;
    return labels ? `\n${this.name}{${labels}} ` : `\n${this.name} `;
  }

  /** The line starts of every row of `rows` with each extra label set, made when first needed. */
  private prefixes(rows: readonly LabelSet[]): LinePrefixes {
    if (this.table?.rows === rows) return this.table.prefixes;
    const starts: string[] = [];
    for (const set of rows)
      for (const extra of this.extras ?? [null]) starts.push(this.lineStart(set, extra));
    const prefixes = new LinePrefixes(starts);
    this.table = { rows, prefixes };
    return prefixes;
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
    yield familyHeader(this.name, this.help, this.type);
    const groups = this.groups();
    let chunk = '';
    const emit: Emit = (set, extra, value) => {
      chunk += `${this.lineStart(set, extra)}${valueText(value)}`;
    };
    for (let from = 0; from < groups.length; from += GROUPS_PER_CHUNK) {
      chunk = '';
      const to = Math.min(from + GROUPS_PER_CHUNK, groups.length);
      for (let i = from; i < to; i++) this.lines(groups[i]!, emit);
      if (chunk) yield chunk;
    }
  }

  *writeChunks(w: TextWriter): Generator<void> {
    w.text(familyHeader(this.name, this.help, this.type));
    yield;
    const width = this.extras?.length ?? 1;
    let rows: readonly LabelSet[] | null = null;
    let prefixes: LinePrefixes | undefined;
    const emit: Emit = (set, extra, value) => {
      if (set.rows === null) w.text(this.lineStart(set, extra));
      else {
        if (set.rows !== rows) {
          rows = set.rows;
          prefixes = this.prefixes(rows);
        }
        w.prefix(prefixes!, set.id * width + (extra ? extra.id : 0));
      }
      w.value(value);
    };
    const groups = this.groups();
    for (let from = 0; from < groups.length; from += GROUPS_PER_CHUNK) {
      const to = Math.min(from + GROUPS_PER_CHUNK, groups.length);
      for (let i = from; i < to; i++) this.lines(groups[i]!, emit);
      yield;
    }
  }

  /** Process values are states, or counters kept by their owner: nothing to reset. */
  reset(): void {}
}

/** The lines of one figure per unit of a group (absent where the unit has none: no good read, no such point). */
function perUnit(field: number): (g: GroupRow, emit: Emit) => void {
  return (g, emit) => {
    const f = g.take().unitFigures;
    const ahus = g.layout.ahus;
    for (let i = 0; i < ahus.length; i++) {
      const v = f[i * UNIT_FIELDS + field]!;
      if (Number.isFinite(v)) emit(ahus[i]!.set, null, v);
    }
  };
}

/** The lines of a state set per unit of a group: one per state, 1 for the current one. */
function perUnitState(field: number, states: readonly LabelSet[]): (g: GroupRow, emit: Emit) => void {
  return (g, emit) => {
    const f = g.take().unitFigures;
    const ahus = g.layout.ahus;
    for (let i = 0; i < ahus.length; i++) {
      const cur = f[i * UNIT_FIELDS + field]!;
      if (cur < 0) continue;
      const set = ahus[i]!.set;
      for (let s = 0; s < states.length; s++) emit(set, states[s]!, s === cur ? 1 : 0);
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
  private readonly plant = rowSet([], {});
  /** The `node` label of the leader epoch's lines: this node, the only leader it speaks for. */
  private readonly leader: LabelSet;

  constructor(registry: Registry, deps: ProcessValuesDeps) {
    this.deps = deps;
    this.now = deps.now ?? (() => performance.now());
    this.lastIntegrateMs = this.now();
    this.leader = labelSet({ node: deps.node });
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
          const f = g.take().rackFigures;
          for (let i = 0; i < g.rackSets.length; i++) {
            const v = f[i * 2]!;
            if (!Number.isNaN(v)) emit(g.rackSets[i]!, null, v);
          }
        },
      ),
      new ProcessFamily(
        'coolctl_rack_inlet_trust_ratio',
        'Good inlet sensors of the rack / its inlet sensors (0…1): how far its inlet reading can be trusted',
        'gauge',
        groups,
        (g, emit) => {
          const f = g.take().rackFigures;
          for (let i = 0; i < g.rackSets.length; i++) emit(g.rackSets[i]!, null, f[i * 2 + 1]!);
        },
      ),
      new ProcessFamily(
        'coolctl_group_inlet_max_celsius',
        'Hottest good rack inlet of the group (absent: none is good)',
        'gauge',
        groups,
        (g, emit) => {
          const v = g.take().inletMaxC;
          if (v !== null) emit(g.set, null, v);
        },
      ),
      new ProcessFamily(
        'coolctl_group_dew_point_celsius',
        'Highest dew point among the group’s sensor nodes with a good inlet and humidity reading (absent: none)',
        'gauge',
        groups,
        (g, emit) => {
          const v = g.take().dewPointC;
          if (v !== null) emit(g.set, null, v);
        },
      ),
      new ProcessFamily(
        'coolctl_group_inlet_trust_ratio',
        'Good inlet sensors of the group / its configured inlet sensors (0…1); the verdict follows from it and from racks with no good inlet sensor (docs/sensor-ingest.md)',
        'gauge',
        groups,
        (g, emit) => {
          if (g.take().hasView) emit(g.set, null, g.coverage);
        },
      ),
      new ProcessFamily(
        'coolctl_group_sensor_verdict',
        'The group’s sensor verdict: 1 for the current one of ok, degraded, blind',
        'gauge',
        groups,
        (g, emit) => {
          if (!g.take().hasView) return;
          for (let i = 0; i < VERDICT_LABELS.length; i++)
            emit(g.set, VERDICT_LABELS[i]!, i === g.verdict ? 1 : 0);
        },
        VERDICT_LABELS,
      ),
      new ProcessFamily(
        'coolctl_group_mode',
        'The group’s control loop mode: 1 for the current one of normal, degraded, blind, paused, hold, starting',
        'gauge',
        groups,
        (g, emit) => {
          if (g.take().mode < 0) return;
          for (let i = 0; i < GROUP_MODE_LABELS.length; i++)
            emit(g.set, GROUP_MODE_LABELS[i]!, i === g.mode ? 1 : 0);
        },
        GROUP_MODE_LABELS,
      ),
      new ProcessFamily(
        'coolctl_group_driven',
        '1 while the node that leads the group drives it (its writes land), 0 while it leads but cannot',
        'gauge',
        groups,
        (g, emit) => emit(g.set, null, g.take().driven ? 1 : 0),
      ),
      new ProcessFamily(
        'coolctl_group_leader_epoch',
        'The epoch of the group’s leader, exported by the leader, named in the node label',
        'gauge',
        groups,
        (g, emit) => emit(g.set, g.leader, g.epoch),
        [this.leader],
      ),
      new ProcessFamily(
        'coolctl_unit_supply_celsius',
        'Supply-air temperature the unit measures',
        'gauge',
        groups,
        perUnit(U_SUPPLY),
      ),
      new ProcessFamily(
        'coolctl_unit_return_celsius',
        'Return-air temperature the unit measures',
        'gauge',
        groups,
        perUnit(U_RETURN),
      ),
      new ProcessFamily(
        'coolctl_unit_supply_setpoint_celsius',
        'Supply-air setpoint in force on the unit (the remote command, or its local setpoint), as it reports it',
        'gauge',
        groups,
        perUnit(U_SETPOINT),
      ),
      new ProcessFamily(
        'coolctl_unit_fan_command_ratio',
        'Fan speed this node commands the unit, 0…1 (1 = 100 %)',
        'gauge',
        groups,
        perUnit(U_FAN_CMD),
      ),
      new ProcessFamily(
        'coolctl_unit_fan_ratio',
        'Fan speed the unit reports, 0…1 (1 = 100 %)',
        'gauge',
        groups,
        perUnit(U_FAN),
      ),
      new ProcessFamily(
        'coolctl_unit_fan_power_watts',
        'Fan electrical power the unit reports',
        'gauge',
        groups,
        perUnit(U_FAN_W),
      ),
      new ProcessFamily(
        'coolctl_unit_cooling_power_watts',
        'Cooling the unit delivers, as it reports it',
        'gauge',
        groups,
        perUnit(U_COOLING_W),
      ),
      new ProcessFamily(
        'coolctl_unit_mode',
        'The unit’s mode as it reports it: 1 for the current one of local, remote, fallback, tripped, unknown',
        'gauge',
        groups,
        perUnitState(U_MODE, UNIT_MODE_LABELS),
        UNIT_MODE_LABELS,
      ),
      new ProcessFamily(
        'coolctl_unit_alarm',
        'The unit’s alarms: 1 while on (comm_loss: its watchdog fell back to local; trip; high_supply_temp)',
        'gauge',
        groups,
        (g, emit) => {
          const f = g.take().unitFigures;
          const ahus = g.layout.ahus;
          for (let i = 0; i < ahus.length; i++) {
            const word = f[i * UNIT_FIELDS + U_ALARMS]!;
            if (Number.isNaN(word)) continue;
            for (let a = 0; a < ALARM_LABELS.length; a++) {
              const alarm = ALARM_LABELS[a]!;
              emit(ahus[i]!.set, alarm.set, word & alarm.bit ? 1 : 0);
            }
          }
        },
        ALARM_LABELS.map((a) => a.set),
      ),
      new ProcessFamily(
        'coolctl_unit_link_state',
        'Link from the leading node to the unit: 1 for the current one of up, degraded, down',
        'gauge',
        groups,
        perUnitState(U_LINK, LINK_LABELS),
        LINK_LABELS,
      ),
      new ProcessFamily(
        'coolctl_plant_fan_power_watts',
        'Fan power of the units this node drives (sum over the nodes: the plant’s)',
        'gauge',
        once,
        (_g, emit) => {
          this.integrateOncePerScrape();
          emit(this.plant, null, this.fanW);
        },
      ),
      new ProcessFamily(
        'coolctl_plant_cooling_power_watts',
        'Cooling delivered by the units this node drives (sum over the nodes: the plant’s)',
        'gauge',
        once,
        (_g, emit) => {
          this.integrateOncePerScrape();
          emit(this.plant, null, this.coolingW);
        },
      ),
      new ProcessFamily(
        'coolctl_plant_fan_energy_joules_total',
        'Fan energy of the units while this node drove them (sum the nodes’ increases for the plant’s)',
        'counter',
        once,
        (_g, emit) => {
          this.integrateOncePerScrape();
          emit(this.plant, null, this.fanJ);
        },
      ),
      new ProcessFamily(
        'coolctl_plant_cooling_energy_joules_total',
        'Cooling energy delivered by the units while this node drove them',
        'counter',
        once,
        (_g, emit) => {
          this.integrateOncePerScrape();
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

  private integrateOncePerScrape(): void {
    const snap = this.snapshot();
    if (snap.integrated) return;
    snap.integrated = true;
    this.integrate();
  }

  /** The scrape's one look at the node: the groups it leads (taken again after SNAPSHOT_TTL_MS). */
  snapshot(): Snapshot {
    const now = this.now();
    if (this.snap && now - this.snap.atMs < SNAPSHOT_TTL_MS) return this.snap;
    const layout = this.layoutOf();
    const snap: Snapshot = { atMs: now, groups: [], integrated: false };
    const leadership = this.deps.leadership();
    if (leadership) {
      for (const gl of leadership.groups()) {
        if (gl.role !== 'leader') continue;
        const g = layout.groups.get(gl.group);
        if (g) snap.groups.push(new GroupRow(gl.group, g, gl.epoch ?? 0, this.leader, this.deps));
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
    // One list per kind of row: each family's line starts are made for the lists of this layout.
    const rackRows: LabelSet[] = [];
    const unitRows: LabelSet[] = [];
    const groupRows: LabelSet[] = [];
    for (const g of site.controlGroups) {
      const racks = new Map<string, LabelSet>();
      for (const n of g.sensorNodes) {
        const rack = nodeRack.get(n);
        if (rack === undefined || owned.has(rack)) continue;
        owned.add(rack);
        racks.set(rack, rowSet(rackRows, { rack, group: g.id }));
      }
      groups.set(g.id, {
        set: rowSet(groupRows, { group: g.id }),
        ahus: g.airHandlers.map((id) => ({ id, set: rowSet(unitRows, { unit: id, group: g.id }) })),
        racks,
      });
    }
    this.layout = { site, groups };
    return this.layout;
  }
}

/** The one "group" of the plant families (their lines do not depend on it). */
const ONE: readonly GroupRow[] = [null as unknown as GroupRow];
