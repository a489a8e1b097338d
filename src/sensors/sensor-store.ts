// What the controller believes about the room: the last reading of every sensor with its source
// and arrival time, per-sensor quality flags, per-node mesh health, and per control group the view
// that control may trust (max/mean of good inlets, dew point, coverage, verdict).
// Invariants: a node's reports are applied in seq order only (duplicates and late reports never
// overwrite a newer value; a node that restarts its count is followed once the evidence rules out
// a late delivery); every report is either applied or counted under one drop reason; nothing from
// the wire can throw out of `ingest*()`, nor write more than a rate-limited log line of bounded
// length. Quality rules: docs/sensor-ingest.md.
// Every age, rate and deadline runs on a monotonic clock (`now`): a wall-clock step must neither
// freeze ingest nor keep old readings good. Wall time (`wallNow`) only dates what people read.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { SensingSettings, SensorKindName, Site } from '../config/site-schema.ts';
import { clip, LogLimiter, MAX_LOGGED_TEXT } from '../util/log-limit.ts';
import { DROP_REASONS, type DropReason, parseReport, type Report } from './report.ts';
import {
  flapWindowMs,
  judgeVerdict,
  VERDICT_RECOVERY_S,
  type Verdict,
  VerdictHold,
  type VerdictHoldMemory,
  type VerdictRecovery,
} from './verdict.ts';

export type { Verdict, VerdictHoldMemory, VerdictRecovery } from './verdict.ts';

export type SourceName = 'mqtt' | 'modbus';

/** A flag that makes a reading untrusted (`bad`) or only worth a look (`warn`). */
export type SensorFlag =
  | 'stale'
  | 'stuck'
  | 'out-of-range'
  | 'spike'
  | 'noisy'
  | 'gateway-offline'
  | 'low-battery'
  | 'weak-link'
  | 'lossy';

const BAD_FLAGS: ReadonlySet<SensorFlag> = new Set([
  'stale',
  'stuck',
  'out-of-range',
  'spike',
  'noisy',
  'gateway-offline',
]);

export interface SensorSnapshot {
  node: string;
  sensor: string;
  kind: SensorKindName;
  rack: string;
  value: number | null;
  source: SourceName | null;
  /** Wall ms when the gateway got the reading (MQTT: arrival; Modbus: poll time − age), for people. */
  receivedAtMs: number | null;
  /** How long ago that was, on the monotonic clock: what staleness is judged by. */
  ageMs: number | null;
  flags: SensorFlag[];
  quality: 'good' | 'bad';
}

export interface NodeHealth {
  node: string;
  gateway: string;
  hops: number | null;
  rssiDbm: number | null;
  batteryPct: number | null;
  lastSeq: number;
  reports: number;
  duplicates: number;
  outOfOrder: number;
  /** Times the node started its seq count again (rebooted) and the store followed it. */
  restarts: number;
  /** Share of reports missing (seq gaps), recent-weighted, %. */
  lossPct: number;
  flags: SensorFlag[];
}

export interface GroupSensorView {
  group: string;
  verdict: Verdict;
  /** Hottest and mean good rack-inlet reading, °C; null when there is none. */
  inletMaxC: number | null;
  inletMeanC: number | null;
  hottestRack: string | null;
  humidityPct: number | null;
  /** Highest dew point among nodes with a good inlet and humidity reading, °C. */
  dewPointC: number | null;
  /** Good inlet sensors / configured inlet sensors, 0…1. */
  coverage: number;
  goodInletSensors: number;
  configuredInletSensors: number;
  /** Racks of the group without a single good inlet reading: any one makes the verdict at most `degraded`. */
  uncoveredRacks: string[];
  /**
   * Why the verdict is not `ok`, for people (the uncovered racks named, capped); empty when it is.
   * The store always sets it; a view made by hand (a test's) may leave it out.
   */
  reasons?: readonly string[];
  /**
   * Set while the group keeps a worse verdict than its sensors give now, because the better one has
   * not held `sensing.verdictRecoveryS` yet (src/sensors/verdict.ts, VerdictHold); null otherwise.
   * A view made by hand may leave it out.
   */
  recovery?: VerdictRecovery | null;
  /** Wall ms of the view, for people. */
  atMs: number;
}

/** Control depends on this, never on MQTT or Modbus. */
export interface SensorView {
  view(groupId: string): GroupSensorView;
  /** Per rack of the group that has inlet sensors: its hottest good inlet and its inlet sensors' trust. */
  rackInletStats?(groupId: string): RackInletStats[];
  /**
   * The group's figures taken less than `maxAgeMs` ago (the control loop takes them every period),
   * else taken now. For readers that run beside control (alarms, /metrics, the dashboard).
   */
  figures?(groupId: string, maxAgeMs: number): GroupFigures;
  /**
   * The group's verdict-hold memory for its process state, as of now (null: never judged here).
   * With `resumeVerdictHold`, what lets a new leader go on with a flap its predecessor saw.
   */
  verdictHold?(groupId: string): VerdictHoldMemory | null;
  /**
   * A new term: takes `memory` from the group's row, written `rowAgeMs` ago (0: age unknown, taken
   * as of now), unless this node's own memory of the group is fresher (SensorStore.resumeVerdictHold).
   */
  resumeVerdictHold?(groupId: string, memory: VerdictHoldMemory, rowAgeMs: number): 'resumed' | 'kept';
}

/**
 * A group's sensor figures at one instant, all from one walk of its sensors: the view control acts
 * on, and per rack what the alarm rules, /metrics and the floor map read. Shared: the control loop's
 * walk each period is what the others read (SensorStore.figures), not a walk of their own each.
 * Read-only for everyone.
 */
export interface GroupFigures {
  /** Monotonic ms the figures were taken at. */
  atMs: number;
  view: GroupSensorView;
  /** Racks of the group with inlet sensors, in the store's order. */
  inletRacks: readonly string[];
  /** Per inlet rack: hottest good inlet reading, °C (NaN: none is good). */
  rackInletMaxC: Float64Array;
  /** Per inlet rack: its good inlet sensors, and its configured inlet sensors. */
  rackGoodInlets: Uint32Array;
  rackInlets: Uint32Array;
  /** Racks with a %RH sensor, in the store's order. */
  dewRacks: readonly string[];
  /** Per dew rack: highest dew point of its nodes with a good inlet and a good %RH, °C (NaN: none). */
  rackDewPointC: Float64Array;
}

/**
 * How old figures a reader beside control (alarms, /metrics, the dashboard) takes: what the
 * group's loop took in its last period (1 s by default), with a quarter period for its jitter.
 */
export const SHARED_FIGURES_MAX_AGE_MS = 1250;

/**
 * A group whose figures were taken at most this far apart is followed by this node's verdict hold
 * (two default control periods, with their jitter): it saw every departure from ok its leader saw.
 */
const FOLLOW_GAP_MS = 2 * SHARED_FIGURES_MAX_AGE_MS;

/** One rack's inlet as /metrics says it (rackInletStats). */
export interface RackInletStats {
  rack: string;
  /** Hottest good inlet reading, °C; null when none is good. */
  inletMaxC: number | null;
  /** Good inlet sensors of the rack / its configured inlet sensors. */
  goodInlets: number;
  inlets: number;
}

export interface SensorStoreOptions {
  /** Simulation only: site time runs this many times faster than the wall clock. */
  timeScale?: number;
  logger?: Logger;
  registry?: Registry;
  /** Monotonic ms (default `performance.now`): every age, rate and deadline. */
  now?: () => number;
  /** Wall ms (default `Date.now`): only the timestamps shown to people. */
  wallNow?: () => number;
}

const INLET_KINDS: ReadonlySet<string> = new Set(['inlet-top', 'inlet-middle', 'inlet-bottom']);
/** Physical ranges of the other kinds; inlets take theirs from the site's `sensing`. */
const RANGE: Record<string, readonly [number, number]> = {
  humidity: [0, 100],
  'subfloor-pressure': [-100, 500],
};
const NOISE_WINDOW = 8;
/** A noisy inlet is good again once its noise is at or below this share of `noisySigmaC`. */
const NOISY_CLEARS_AT = 0.5;
/** A jump is the air's, not a spike, when another inlet of its node moved this share of it the same way. */
const SPIKE_WITNESS_SHARE = 0.5;
const STUCK_EPSILON = 0.001;
/**
 * Seqs remembered per node, to tell a duplicate from a late report: mesh retries and MQTT
 * redeliveries come within seconds, and 16 reports are minutes; an older repeat counts as late.
 * 4 bytes each: 16 instead of 32 is 0.75 MB less at 11 765 nodes.
 */
const SEQ_WINDOW = 16;
/** A seq this far behind the newest is a node that restarted its count, not a late report. */
const RESTART_BEHIND = 320;
/** Reports in a row that a restart is believed after (unless the report's own time says so at once). */
const RESTART_RUN = 3;
/**
 * No copy or late delivery of a report arrives later than this after the node's newest report: the
 * mesh delivers within 10 s of sending (docs/mqtt-topics.md), and a report is sent before its
 * successors are; twice that, for the broker and our own queue. An older seq counting up after it is
 * a new count, however early in the node's life.
 */
const LATE_MAX_MS = 20_000;
/**
 * A report sampled further ahead of our wall clock than this has a clock that is wrong (or a time
 * that lies): its `sampledAt` is ignored. Taken as a time, one such report of a low seq was believed
 * at once as a reboot ('report-time') and its successors' true times then read as late for 20 s.
 * Generous: NTP keeps gateways within a second, and a controller's own clock may have stepped back.
 */
const MAX_SAMPLED_AHEAD_MS = 10 * 60_000;
/** Largest seq step within a run of older seqs that still counts as counting up (reports get lost). */
const RUN_MAX_STEP = 16;
/** A gateway's online/offline lines: a flapping (or forged) status writes at most this many a minute. */
const GATEWAY_LINES_PER_MIN = 10;
const LOSS_ALPHA = 0.1;
const LOG_EVERY_MS = 10_000;
const SOURCES: readonly SourceName[] = ['mqtt', 'modbus'];
const SENSOR_METRICS = [
  'coolctl_sensor_readings_total',
  'coolctl_sensor_reports_dropped_total',
  'coolctl_sensor_node_restarts_total',
  'coolctl_sensor_report_times_ignored_total',
  'coolctl_sensors',
];

/** What told the store a node had started its seq count again. */
export type RestartEvidence = 'report-time' | 'far-behind' | 'counting-up';

// A sensor's changing state is row r of three typed arrays, a node's sensors in consecutive rows: a
// report touches a few adjacent cache lines instead of an object graph per sensor, which at 20 000
// nodes is what ingest spends its time on; and 50 000 sensors take 3 MB, not 6.4 (one Float64Array
// row of 16 did). `readings` (Float64Array, READING columns):
const VALUE = 0;
/** Monotonic ms when the gateway got the reading (MQTT: arrival; Modbus: poll time − age). */
const AT_MS = 1;
const READING = 2;
// `nodeFigures` (Float64Array, NODE_FIGURES columns per node): a node's fractional and NaN-able
// figures. As object fields each was a boxed number of its own (V8 keeps a double field as a heap
// number): ~70 000 objects at 11 765 nodes for every collection of the old generation to mark.
const MIN_GAP_S = 0;
const LOSS_EWMA = 1;
const HOPS = 2;
const RSSI_DBM = 3;
const BATTERY_PCT = 4;
const TOKENS = 5;
const TOKENS_AT_MS = 6;
/** Monotonic ms the node's newest applied report was received: how late an older seq is. */
const NEWEST_AT_MS = 7;
/** Monotonic ms the store last followed the node into a new count (−∞: never). */
const RESTART_AT_MS = 8;
const NODE_FIGURES = 9;
// `marks` (Uint16Array, MARK columns): small counters and flags.
const HAS = 0;
const SOURCE = 1;
/** Consecutive values equal to the one before (saturates at 65 535; the stuck rule needs ≤ 1 000). */
const REPEATS = 2;
const SPIKE = 3;
/** How many of the sensor's `diffs` slots hold a difference (0…NOISE_WINDOW), and the slot the next one goes to. */
const DIFF_COUNT = 4;
const DIFF_NEXT = 5;
/** 1 while the inlet is judged noisy (set and cleared as each reading comes: see judgeNoise). */
const NOISY = 6;
const MARK = 7;
const MAX_REPEATS = 0xffff;
// `diffs` (Float32Array, NOISE_WINDOW per sensor): the last successive differences, a ring.

// Quality flags as bits: one rule set (sensorBits, nodeBits) serves both the quick good/bad
// answer of the group views and the flag lists of snapshots.
const FLAG_BITS: readonly (readonly [SensorFlag, number])[] = [
  ['stale', 1],
  ['out-of-range', 2],
  ['stuck', 4],
  ['spike', 8],
  ['noisy', 16],
  ['gateway-offline', 32],
  ['low-battery', 64],
  ['weak-link', 128],
  ['lossy', 256],
];
const BIT = Object.fromEntries(FLAG_BITS) as Record<SensorFlag, number>;
const BAD_BITS = FLAG_BITS.filter(([f]) => BAD_FLAGS.has(f)).reduce((m, [, b]) => m | b, 0);

interface GatewayRt {
  id: string;
  online: boolean;
  /** One of the site's gateways (a node's unknown gateway gets a stand-in that stays offline). */
  known: boolean;
  /** How its nodes' reports come (its transport): a report of any other source is not its nodes'. */
  source: SourceName | undefined;
  /**
   * A report came through the gateway since its status subscription began: fresher than any
   * retained status, whose age nobody knows.
   */
  heard: boolean;
  /** That a retained offline status was outweighed is logged once per subscription. */
  retainedIgnoredLogged: boolean;
}

/**
 * A node's sensors as configured, in config order (reports list them so, and a positional check
 * beats hashing). Nodes with the same sensors share one: the hot path reads it from cache.
 */
interface Layout {
  ids: string[];
  kinds: SensorKindName[];
  isInlet: boolean[];
  /** Physical range, resolved once: the hot path compares two numbers. */
  lo: number[];
  hi: number[];
  position: Map<string, number>;
}

interface NodeRt {
  id: string;
  rack: string;
  gw: GatewayRt;
  intervalMs: number;
  /**
   * Where the node's row starts in the store's `nodeFigures`: the shortest time assumed between two
   * samples (0.9 of an interval, s: late or bunched deliveries are no spikes), the loss EWMA, hops,
   * RSSI and battery (NaN until the node reports them) and its rate-limit tokens.
   */
  figures: number;
  layout: Layout;
  /**
   * Row of the node's first sensor; the others follow in layout order. A sensor is (node, its
   * position in the layout): 50 000 sensors need no object each.
   */
  firstRow: number;
  lastSeq: number;
  /** Where this node's SEQ_WINDOW recent seqs start in the store's `recentSeqs`, and how many are kept. */
  seqBase: number;
  seqCount: number;
  seqNext: number;
  /** Far-older seqs in a row: a node that rebooted starts again from 1. */
  resetRun: number;
  /** Older seqs counting up (each a little above the one before): the latest, and how many in a row (≤ RESTART_RUN). */
  runSeq: number;
  runLen: number;
  /**
   * `sampledAt` of the newest applied report, as it came (parsed only when an older seq arrives):
   * a report sampled after it is newer, whatever its seq.
   */
  sampledAt: string | undefined;
  /** The old count's newest seq, once the store has followed the node into a new count. */
  lastSeqBefore: number;
  reports: number;
  duplicates: number;
  outOfOrder: number;
  restarts: number;
}

interface GroupRt {
  id: string;
  nodes: NodeRt[];
  configuredInlets: number;
  inletRacks: string[];
  /** Per rack of inletRacks: its configured inlet sensors. */
  rackInlets: Uint32Array;
  /** Racks with a %RH sensor. */
  dewRacks: string[];
  /** Per entry of `nodes`: its rack's index in inletRacks (-1: the node has no inlet), and in dewRacks (-1: no %RH). */
  nodeInletRack: Int32Array;
  nodeDewRack: Int32Array;
  /** The figures last taken (every control period by the group's loop, through view()). */
  last: GroupFigures | undefined;
  /**
   * Monotonic ms the figures were last taken (−∞: never): `last.atMs`, but also carried over from
   * the store a reload replaced, whose figures (of the old site's racks) are not.
   */
  lastAtMs: number;
  /** The verdict the group acts on, over time: worse at once, better only once it held. */
  hold: VerdictHold;
  /** Since when (monotonic ms) the figures were taken without a gap over FOLLOW_GAP_MS. */
  followedSinceMs: number;
}

export class SensorStore implements SensorView {
  readonly counters = {
    reports: 0,
    /** Nodes followed into a new seq count (rebooted). */
    restarts: 0,
    /** Reports applied without their `sampledAt`: not a time, or too far ahead of ours to be one. */
    timesIgnored: 0,
    readings: { mqtt: 0, modbus: 0 } as Record<SourceName, number>,
    drops: Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>,
  };
  private readonly nodes = new Map<string, NodeRt>();
  private readonly gateways = new Map<string, GatewayRt>();
  private readonly groups = new Map<string, GroupRt>();
  private readonly readings: Float64Array;
  private readonly marks: Uint16Array;
  private readonly diffs: Float32Array;
  private readonly recentSeqs: Uint32Array;
  private readonly nodeFigures: Float64Array;
  private readonly s: Required<SensingSettings>;
  private readonly burstTokens: number;
  private readonly timeScale: number;
  private readonly log: Logger | undefined;
  private readonly now: () => number;
  private readonly wallNow: () => number;
  /** Drop lines per reason, and restart lines: one every 10 s each, with how many were not written. */
  private readonly dropLog: LogLimiter;
  /** Online/offline lines per configured gateway. */
  private readonly gatewayLog: LogLimiter;
  /**
   * This report's inlet steps, by position in the node's layout (the spike rule's witnesses):
   * `stepOf[pos]` counts only while `stepReport[pos]` is the current report's number.
   */
  private stepOf = new Float64Array(8);
  private stepReport = new Uint32Array(8);
  private reportNo = 0;

  constructor(site: Site, opts: SensorStoreOptions = {}) {
    this.timeScale = opts.timeScale ?? 1;
    this.log = opts.logger;
    this.now = opts.now ?? (() => performance.now());
    this.wallNow = opts.wallNow ?? Date.now;
    this.dropLog = new LogLimiter(this.now, LOG_EVERY_MS);
    this.gatewayLog = new LogLimiter(this.now, 60_000, GATEWAY_LINES_PER_MIN);
    const c = site.sensing ?? {};
    this.s = {
      staleIntervals: c.staleIntervals ?? 3,
      stuckReports: c.stuckReports ?? 6,
      spikeCPerS: c.spikeCPerS ?? 0.5,
      noisySigmaC: c.noisySigmaC ?? 0.6,
      inletRangeC: c.inletRangeC ?? [-10, 60],
      lowBatteryPct: c.lowBatteryPct ?? 10,
      weakRssiDbm: c.weakRssiDbm ?? -90,
      lossyPct: c.lossyPct ?? 30,
      okCoverage: c.okCoverage ?? 0.8,
      blindCoverage: c.blindCoverage ?? 0.3,
      verdictRecoveryS: c.verdictRecoveryS ?? VERDICT_RECOVERY_S,
      maxReportsPerNodePerS: c.maxReportsPerNodePerS ?? 50,
    };
    this.burstTokens = Math.max(10, this.s.maxReportsPerNodePerS * 2);
    const sensorCount = site.sensorNodes.reduce((sum, n) => sum + n.sensors.length, 0);
    this.readings = new Float64Array(sensorCount * READING);
    this.marks = new Uint16Array(sensorCount * MARK);
    this.diffs = new Float32Array(sensorCount * NOISE_WINDOW);
    this.recentSeqs = new Uint32Array(site.sensorNodes.length * SEQ_WINDOW);
    this.nodeFigures = new Float64Array(site.sensorNodes.length * NODE_FIGURES);
    for (let r = 0; r < sensorCount; r++) this.readings[r * READING + VALUE] = Number.NaN;
    for (const g of site.gateways)
      this.gateways.set(g.id, {
        id: g.id,
        online: true,
        known: true,
        source: g.transport === 'modbus-tcp' ? 'modbus' : 'mqtt',
        heard: false,
        retainedIgnoredLogged: false,
      });
    const layouts = new Map<string, Layout>();
    let row = 0;
    for (const n of site.sensorNodes) {
      const key = n.sensors.map((sc) => `${sc.id}\u0000${sc.kind}`).join('\u0001');
      let layout = layouts.get(key);
      if (!layout) {
        layout = { ids: [], kinds: [], isInlet: [], lo: [], hi: [], position: new Map() };
        for (const sc of n.sensors) {
          const isInlet = INLET_KINDS.has(sc.kind);
          const [lo, hi] = isInlet
            ? this.s.inletRangeC
            : (RANGE[sc.kind] ?? [Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY]);
          layout.position.set(sc.id, layout.ids.length);
          layout.ids.push(sc.id);
          layout.kinds.push(sc.kind);
          layout.isInlet.push(isInlet);
          layout.lo.push(lo);
          layout.hi.push(hi);
        }
        layouts.set(key, layout);
      }
      const intervalMs = ((n.reportIntervalS ?? 10) * 1000) / this.timeScale;
      const f = this.nodes.size * NODE_FIGURES;
      const nf = this.nodeFigures;
      nf[f + MIN_GAP_S] = (0.9 * intervalMs) / 1000;
      nf[f + LOSS_EWMA] = 0;
      nf[f + HOPS] = Number.NaN;
      nf[f + RSSI_DBM] = Number.NaN;
      nf[f + BATTERY_PCT] = Number.NaN;
      nf[f + TOKENS] = this.burstTokens;
      nf[f + TOKENS_AT_MS] = 0;
      nf[f + NEWEST_AT_MS] = Number.NaN;
      nf[f + RESTART_AT_MS] = Number.NEGATIVE_INFINITY;
      const node: NodeRt = {
        id: n.id,
        rack: n.rack,
        gw: this.gateways.get(n.gateway) ?? {
          id: n.gateway,
          online: false,
          known: false,
          source: undefined,
          heard: false,
          retainedIgnoredLogged: false,
        },
        intervalMs,
        figures: f,
        layout,
        firstRow: row,
        lastSeq: 0,
        seqBase: this.nodes.size * SEQ_WINDOW,
        seqCount: 0,
        seqNext: 0,
        resetRun: 0,
        runSeq: 0,
        runLen: 0,
        sampledAt: undefined,
        lastSeqBefore: 0,
        reports: 0,
        duplicates: 0,
        outOfOrder: 0,
        restarts: 0,
      };
      row += layout.ids.length;
      if (layout.ids.length > this.stepOf.length) {
        this.stepOf = new Float64Array(layout.ids.length);
        this.stepReport = new Uint32Array(layout.ids.length);
      }
      this.nodes.set(n.id, node);
    }
    for (const g of site.controlGroups) {
      const nodes = g.sensorNodes.map((id) => this.nodes.get(id)).filter((n): n is NodeRt => n !== undefined);
      const withInlets = nodes.filter((n) => n.layout.isInlet.includes(true));
      const configuredInlets = withInlets.reduce(
        (sum, n) => sum + n.layout.isInlet.filter(Boolean).length,
        0,
      );
      const inletRacks = [...new Set(withInlets.map((n) => n.rack))];
      const dewRacks = [
        ...new Set(nodes.filter((n) => n.layout.kinds.includes('humidity')).map((n) => n.rack)),
      ];
      const rackInlets = new Uint32Array(inletRacks.length);
      const nodeInletRack = new Int32Array(nodes.length).fill(-1);
      const nodeDewRack = new Int32Array(nodes.length).fill(-1);
      nodes.forEach((n, i) => {
        const inlets = n.layout.isInlet.filter(Boolean).length;
        if (inlets > 0) {
          nodeInletRack[i] = inletRacks.indexOf(n.rack);
          rackInlets[nodeInletRack[i]!]! += inlets;
        }
        if (n.layout.kinds.includes('humidity')) nodeDewRack[i] = dewRacks.indexOf(n.rack);
      });
      this.groups.set(g.id, {
        id: g.id,
        nodes,
        configuredInlets,
        inletRacks,
        rackInlets,
        dewRacks,
        nodeInletRack,
        nodeDewRack,
        last: undefined,
        lastAtMs: Number.NEGATIVE_INFINITY,
        hold: new VerdictHold(),
        followedSinceMs: Number.POSITIVE_INFINITY,
      });
    }
    if (opts.registry) this.registerMetrics(opts.registry);
  }

  /**
   * A reload rebuilt the store: this one takes over what `prev`, the store it replaces, knew of
   * everything that is still the same thing here, so no group goes blind (its units to full fans)
   * waiting for every node to report again — reports are not retained on the broker. Per node of the
   * same id: its seq memory, counters, mesh figures and rate-limit tokens, and per sensor of the
   * same id and kind its reading with its receive time, repeat count, spike and noise window: what
   * was stale stays stale, what was stuck stays stuck, and a copy redelivered after the reconnect
   * is still a duplicate. Per gateway of the same id and transport: its status. Per group of the
   * same id: its verdict hold and how long it has been followed. Anything only here starts empty.
   * Both stores run on one monotonic clock and time scale (the daemon's; `timeScale` is restart-only).
   * Call it before any source feeds this store; `prev` is not to be fed or read after. O(nodes +
   * sensors), and it allocates only per distinct pair of node layouts and per group.
   */
  carryOver(prev: SensorStore): void {
    if (prev === this) return;
    this.gateways.forEach((gw) => {
      const p = prev.gateways.get(gw.id);
      // A gateway now reached another way is another link: its old status says nothing of it.
      if (!p || p.source !== gw.source) return;
      gw.online = p.online;
      gw.heard = p.heard;
      gw.retainedIgnoredLogged = p.retainedIgnoredLogged;
    });
    // A node moved to another rack takes its readings along: they are its sensors', and the site
    // now says where those are. Moved in the hall before the file changed, the node has been reading
    // the new rack's air already; the file changed first, it reads the old rack's until it is moved,
    // carried over or not (its spike rule judges the step when it is). Dropping them would only
    // leave the rack without a reading for a report interval.
    const positions = new Map<Layout, Map<Layout, Int32Array>>();
    this.nodes.forEach((n) => {
      const p = prev.nodes.get(n.id);
      if (p) this.carryNode(prev, p, n, layoutPositions(positions, p.layout, n.layout));
    });
    const c = this.counters;
    const pc = prev.counters;
    c.reports = pc.reports;
    c.restarts = pc.restarts;
    c.timesIgnored = pc.timesIgnored;
    for (const source of SOURCES) c.readings[source] = pc.readings[source];
    for (const reason of DROP_REASONS) c.drops[reason] = pc.drops[reason];
    this.groups.forEach((g) => {
      const p = prev.groups.get(g.id);
      if (!p) return;
      g.hold = p.hold.copy((rack) => g.inletRacks.includes(rack));
      g.lastAtMs = p.lastAtMs;
      g.followedSinceMs = p.followedSinceMs;
    });
  }

  /** `p` of `prev` into `n`; `from[pos]` is the row offset in `p` of `n`'s sensor `pos` (−1: new). */
  private carryNode(prev: SensorStore, p: NodeRt, n: NodeRt, from: Int32Array): void {
    const nf = this.nodeFigures;
    const pf = prev.nodeFigures;
    // MIN_GAP_S stays the new config's (it follows reportIntervalS); the rest is what the node did.
    for (let k = 0; k < NODE_FIGURES; k++) if (k !== MIN_GAP_S) nf[n.figures + k] = pf[p.figures + k]!;
    nf[n.figures + TOKENS] = Math.min(this.burstTokens, nf[n.figures + TOKENS]!);
    for (let i = 0; i < SEQ_WINDOW; i++) this.recentSeqs[n.seqBase + i] = prev.recentSeqs[p.seqBase + i]!;
    n.lastSeq = p.lastSeq;
    n.seqCount = p.seqCount;
    n.seqNext = p.seqNext;
    n.resetRun = p.resetRun;
    n.runSeq = p.runSeq;
    n.runLen = p.runLen;
    n.sampledAt = p.sampledAt;
    n.lastSeqBefore = p.lastSeqBefore;
    n.reports = p.reports;
    n.duplicates = p.duplicates;
    n.outOfOrder = p.outOfOrder;
    n.restarts = p.restarts;
    for (let pos = 0; pos < from.length; pos++) {
      const op = from[pos]!;
      if (op < 0) continue;
      const row = n.firstRow + pos;
      const prow = p.firstRow + op;
      for (let k = 0; k < READING; k++) this.readings[row * READING + k] = prev.readings[prow * READING + k]!;
      for (let k = 0; k < MARK; k++) this.marks[row * MARK + k] = prev.marks[prow * MARK + k]!;
      for (let k = 0; k < NOISE_WINDOW; k++)
        this.diffs[row * NOISE_WINDOW + k] = prev.diffs[prow * NOISE_WINDOW + k]!;
    }
  }

  /** The newest seq applied of `nodeId` (0: none, or no such node): where a poller resumes. */
  nodeLastSeq(nodeId: string): number {
    return this.nodes.get(nodeId)?.lastSeq ?? 0;
  }

  /** Removes this store's metrics from `registry` (a reload builds a new store on the same registry). */
  static unregisterMetrics(registry: Registry): void {
    for (const name of SENSOR_METRICS) registry.removeSingleMetric(name);
  }

  /**
   * The counters are the truth; Prometheus reads them when scraped, so ingest pays no label lookup
   * per report.
   */
  private registerMetrics(registry: Registry): void {
    const registers = [registry];
    const store = this;
    new Counter({
      name: 'coolctl_sensor_readings_total',
      help: 'Sensor readings applied, by source',
      labelNames: ['source'],
      registers,
      collect() {
        this.reset();
        for (const source of SOURCES) this.inc({ source }, store.counters.readings[source]);
      },
    });
    new Counter({
      name: 'coolctl_sensor_reports_dropped_total',
      help: 'Sensor reports or readings not applied, by reason',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const reason of DROP_REASONS) this.inc({ reason }, store.counters.drops[reason]);
      },
    });
    new Counter({
      name: 'coolctl_sensor_node_restarts_total',
      help: 'Sensor nodes followed into a new seq count (a node that rebooted counts from 1 again)',
      registers,
      collect() {
        this.reset();
        this.inc(store.counters.restarts);
      },
    });
    new Counter({
      name: 'coolctl_sensor_report_times_ignored_total',
      help:
        'Sensor reports whose sampledAt was ignored (unparseable, or more than 10 min ahead of our clock); ' +
        'the report itself is judged by its seq',
      registers,
      collect() {
        this.reset();
        this.inc(store.counters.timesIgnored);
      },
    });
    new Gauge({
      name: 'coolctl_sensors',
      help: 'Configured sensors by quality (good or bad) right now',
      labelNames: ['quality'],
      registers,
      collect() {
        let good = 0;
        let bad = 0;
        const now = store.now();
        // forEach, not an iterator: no result object per node (~460 KB a scrape at 11 765 nodes).
        store.nodes.forEach((n) => {
          const count = n.layout.ids.length;
          if ((store.nodeBits(n) & BAD_BITS) !== 0) {
            bad += count;
            return;
          }
          for (let pos = 0; pos < count; pos++) {
            if ((store.sensorBits(n, pos, now) & BAD_BITS) === 0) good++;
            else bad++;
          }
        });
        this.set({ quality: 'good' }, good);
        this.set({ quality: 'bad' }, bad);
      },
    });
  }

  /** The store's monotonic clock, ms: what `ingestReport`'s `receivedAtMs` is measured on. */
  nowMs(): number {
    return this.now();
  }

  /**
   * The MQTT path: one raw payload from `topicGateway`/`topicNode` (taken from the topic).
   * `retained`: the broker sent it because we subscribed, not as it was published: of unknown age,
   * so never applied (its receive time would make a reading of any age look fresh).
   */
  ingestPayload(
    payload: Buffer | string,
    source: SourceName,
    topicGateway?: string,
    topicNode?: string,
    opts: { retained?: boolean } = {},
  ): DropReason | null {
    if (opts.retained)
      return this.drop(
        'retained',
        `a retained report of ${topicGateway}/${topicNode} (${payload.length} bytes), of unknown age`,
        topicNode,
      );
    const parsed = parseReport(payload);
    if (!parsed.ok) return this.drop(parsed.reason, parsed.detail, topicNode);
    return this.ingestReport(parsed.report, source, this.now(), topicGateway, topicNode);
  }

  /**
   * Applies one validated report received at `receivedAtMs` (monotonic, `nowMs()`); returns why it
   * was dropped, if it was.
   */
  ingestReport(
    r: Report,
    source: SourceName,
    receivedAtMs: number,
    topicGateway?: string,
    topicNode?: string,
  ): DropReason | null {
    const node = this.nodes.get(r.node);
    if (!node) return this.drop('unknown-node', `unknown sensor node "${r.node}"`, r.node);
    if (
      (topicNode !== undefined && topicNode !== r.node) ||
      (topicGateway !== undefined && topicGateway !== node.gw.id)
    ) {
      return this.drop(
        'topic-mismatch',
        `report of ${r.node} on the topic of ${topicGateway}/${topicNode}`,
        r.node,
      );
    }
    // A node polled over Modbus has no MQTT topic: such a report is someone else's (a broker shares
    // its prefix with the site's MQTT gateways), and taken it would keep a dead gateway online and
    // outrun the gateway's own seqs with its own.
    if (source !== node.gw.source) {
      return this.drop(
        'topic-mismatch',
        `report of ${r.node} over ${source}, but its gateway ${node.gw.id} reports over ${node.gw.source ?? 'nothing'}`,
        r.node,
      );
    }
    // The report's own words about where it comes from must be the site's: a node whose gateway or
    // rack the report names otherwise is misconfigured or forged, and its readings may be another
    // rack's air. Refused before it counts as proof of the gateway's life.
    if (r.gateway !== node.gw.id || (r.rack !== undefined && r.rack !== node.rack)) {
      return this.drop(
        'site-mismatch',
        r.gateway !== node.gw.id
          ? `report of ${r.node} says gateway ${r.gateway}; the site has it behind ${node.gw.id}`
          : `report of ${r.node} says rack ${r.rack}; the site has it in ${node.rack}`,
        r.node,
      );
    }
    // A report that came through its gateway is proof of the gateway's life, whatever its fate below.
    const gw = node.gw;
    if (!gw.heard || !gw.online) this.heardFrom(gw);
    if (!this.takeToken(node, receivedAtMs)) {
      return this.drop(
        'rate-limited',
        `node ${r.node} sends more than ${this.s.maxReportsPerNodePerS} reports/s`,
        r.node,
      );
    }
    const sampledAt = r.sampledAt === undefined ? undefined : this.trustedTime(r.node, r.sampledAt);
    const order = this.order(node, r.seq, sampledAt, receivedAtMs);
    if (order !== null) return this.drop(order, `node ${r.node} seq ${r.seq} (last ${node.lastSeq})`, r.node);

    node.reports++;
    this.counters.reports++;
    const nf = this.nodeFigures;
    if (r.hops !== undefined) nf[node.figures + HOPS] = r.hops;
    if (r.rssiDbm !== undefined) nf[node.figures + RSSI_DBM] = r.rssiDbm;
    if (r.batteryPct !== undefined) nf[node.figures + BATTERY_PCT] = r.batteryPct;
    const layout = node.layout;
    const sourceCode = source === 'mqtt' ? 0 : 1;
    let applied = 0;
    let spiked = false;
    this.reportNo = this.reportNo === 0xffff_ffff ? 1 : this.reportNo + 1;
    const readings = r.readings;
    for (let i = 0; i < readings.length; i++) {
      const reading = readings[i]!;
      const pos = layout.ids[i] === reading.sensor ? i : (layout.position.get(reading.sensor) ?? -1);
      if (pos < 0) {
        this.drop('unknown-sensor', `node ${r.node} has no sensor "${reading.sensor}"`, r.node);
        continue;
      }
      if (reading.kind !== layout.kinds[pos]) {
        this.drop(
          'kind-mismatch',
          `${r.node}/${reading.sensor} is ${layout.kinds[pos]}, report says ${reading.kind}`,
          r.node,
        );
        continue;
      }
      if (this.apply(node, pos, reading.value, sourceCode, receivedAtMs)) spiked = true;
      applied++;
    }
    if (spiked) this.witnessSpikes(node);
    this.counters.readings[source] += applied;
    return null;
  }

  /**
   * Gateway liveness from its status topic (MQTT last will) or from polling it (Modbus). A retained
   * status is of unknown age: an offline one does not count once a report came through the gateway
   * since the subscription began. A live offline status counts until the next report.
   */
  setGatewayOnline(
    gatewayId: string,
    online: boolean,
    reason: string,
    opts: { retained?: boolean } = {},
  ): void {
    const gw = this.gateways.get(gatewayId);
    if (!gw) {
      this.drop('unknown-node', `status of unknown gateway "${gatewayId}"`);
      return;
    }
    if (!online && opts.retained && gw.heard) {
      if (!gw.retainedIgnoredLogged) {
        gw.retainedIgnoredLogged = true;
        this.log?.info(
          { gateway: gatewayId, reason: clip(reason) },
          'retained gateway offline status ignored: reports came through it since subscribing',
        );
      }
      return;
    }
    this.setGateway(gw, online, reason);
  }

  /**
   * A status subscription (re)begins: the retained statuses it brings are older than any report
   * that follows, and reports heard before it no longer outweigh them.
   */
  statusSubscriptionStarted(gatewayIds: Iterable<string>): void {
    for (const id of gatewayIds) {
      const gw = this.gateways.get(id);
      if (gw) {
        gw.heard = false;
        gw.retainedIgnoredLogged = false;
      }
    }
  }

  private heardFrom(gw: GatewayRt): void {
    if (!gw.known) return;
    gw.heard = true;
    if (!gw.online) this.setGateway(gw, true, 'a report came through it after its offline status');
  }

  /** `reason` may come from the wire (a status message's): it is clipped in the line. */
  private setGateway(gw: GatewayRt, online: boolean, reason: string): void {
    if (gw.online === online) return;
    gw.online = online;
    if (!this.log) return;
    // One line per change, but a status that flaps (or is forged to) cannot flood the log.
    const notLogged = this.gatewayLog.admit(gw.id);
    if (notLogged < 0) return;
    this.log[online ? 'info' : 'warn'](
      { gateway: gw.id, reason: clip(reason), notLogged },
      online ? 'sensor gateway online' : 'sensor gateway offline',
    );
  }

  view(groupId: string, now = this.now()): GroupSensorView {
    return this.take(this.group(groupId), now).view;
  }

  figures(groupId: string, maxAgeMs = 0, now = this.now()): GroupFigures {
    const g = this.group(groupId);
    const last = g.last;
    if (last && now >= last.atMs && now - last.atMs < maxAgeMs) return last;
    return this.take(g, now);
  }

  verdictHold(groupId: string, now = this.now()): VerdictHoldMemory | null {
    return this.group(groupId).hold.memory(now * this.timeScale);
  }

  /**
   * Takes the group's verdict-hold memory from its row, written `rowAgeMs` (monotonic) ago, unless
   * this node's own is fresher: it has followed the group (figures taken at most FOLLOW_GAP_MS
   * apart, the last within it) since a flap window before the row was written, so it saw every
   * departure the row's writer saw that can still count, and what came after. Racks the group does
   * not have are dropped from the memory.
   */
  resumeVerdictHold(
    groupId: string,
    memory: VerdictHoldMemory,
    rowAgeMs: number,
    now = this.now(),
  ): 'resumed' | 'kept' {
    const g = this.group(groupId);
    const age = Math.max(0, rowAgeMs);
    const windowMs = flapWindowMs(this.s.verdictRecoveryS * 1000) / this.timeScale;
    const followed = now - g.lastAtMs <= FOLLOW_GAP_MS && g.followedSinceMs <= now - age - windowMs;
    if (followed) return 'kept';
    const racks = memory.racks?.filter((r) => g.inletRacks.includes(r));
    g.hold.resume({ ...memory, ...(racks ? { racks } : {}) }, now * this.timeScale, age * this.timeScale);
    return 'resumed';
  }

  private group(groupId: string): GroupRt {
    const g = this.groups.get(groupId);
    if (!g) throw new RangeError(`unknown control group "${groupId}"`);
    return g;
  }

  /** One walk of the group's sensors: every figure of GroupFigures, kept as the group's latest. */
  private take(g: GroupRt, now: number): GroupFigures {
    if (!(now - g.lastAtMs <= FOLLOW_GAP_MS)) g.followedSinceMs = now;
    const readings = this.readings;
    const rackMax = new Float64Array(g.inletRacks.length).fill(Number.NaN);
    const rackGood = new Uint32Array(g.inletRacks.length);
    const rackDew = new Float64Array(g.dewRacks.length).fill(Number.NaN);
    let max = Number.NEGATIVE_INFINITY;
    let sum = 0;
    let good = 0;
    let hottest: string | null = null;
    let rhSum = 0;
    let rhN = 0;
    let dewMax = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < g.nodes.length; i++) {
      const n = g.nodes[i]!;
      // A node's own flags (gateway, battery, link, loss) make every sensor of it bad.
      if ((this.nodeBits(n) & BAD_BITS) !== 0) continue;
      const layout = n.layout;
      const ri = g.nodeInletRack[i]!;
      let t: number | undefined;
      let rh: number | undefined;
      for (let pos = 0; pos < layout.ids.length; pos++) {
        if ((this.sensorBits(n, pos, now) & BAD_BITS) !== 0) continue;
        const value = readings[(n.firstRow + pos) * READING + VALUE]!;
        const kind = layout.kinds[pos];
        if (kind === 'humidity') rh = value;
        if (!layout.isInlet[pos]) continue;
        if (kind === 'inlet-middle' || t === undefined) t = value;
        good++;
        sum += value;
        rackGood[ri]!++;
        if (!(rackMax[ri]! >= value)) rackMax[ri] = value;
        if (value > max) {
          max = value;
          hottest = n.rack;
        }
      }
      if (rh === undefined) continue;
      rhSum += rh;
      rhN++;
      if (t !== undefined && rh > 0) {
        const dp = dewPointC(t, rh);
        dewMax = Math.max(dewMax, dp);
        const di = g.nodeDewRack[i]!;
        if (!(rackDew[di]! >= dp)) rackDew[di] = dp;
      }
    }
    const configured = g.configuredInlets;
    const uncoveredRacks = g.inletRacks.filter((_, i) => rackGood[i] === 0);
    const raw = judgeVerdict(
      { goodInletSensors: good, configuredInletSensors: configured, uncoveredRacks },
      this.s,
    );
    // Site time, as the stale rule's intervals are: a simulated hall recovers in its own seconds.
    const { verdict, reasons, recovery } = g.hold.judge(
      { verdict: raw.verdict, reasons: raw.reasons, uncoveredRacks },
      now * this.timeScale,
      this.s.verdictRecoveryS * 1000,
    );
    const coverage = raw.coverage;
    const figures: GroupFigures = {
      atMs: now,
      view: {
        group: g.id,
        verdict,
        inletMaxC: good > 0 ? max : null,
        inletMeanC: good > 0 ? sum / good : null,
        hottestRack: hottest,
        humidityPct: rhN > 0 ? rhSum / rhN : null,
        dewPointC: Number.isFinite(dewMax) ? dewMax : null,
        coverage,
        goodInletSensors: good,
        configuredInletSensors: configured,
        uncoveredRacks,
        reasons,
        recovery,
        atMs: this.wallAt(now),
      },
      inletRacks: g.inletRacks,
      rackInletMaxC: rackMax,
      rackGoodInlets: rackGood,
      rackInlets: g.rackInlets,
      dewRacks: g.dewRacks,
      rackDewPointC: rackDew,
    };
    g.last = figures;
    g.lastAtMs = now;
    return figures;
  }

  /**
   * Per rack of the group that has inlet sensors: its hottest good inlet reading, °C, or null when
   * it has none (the alarm rules' plain form of a group's figures). Not for control: it allocates.
   */
  rackInletsC(groupId: string, now = this.now()): Record<string, number | null> {
    const f = this.take(this.group(groupId), now);
    const out: Record<string, number | null> = {};
    f.inletRacks.forEach((rack, i) => {
      out[rack] = orNull(f.rackInletMaxC[i]!);
    });
    return out;
  }

  /** Per rack of the group with a %RH sensor: the highest dew point of its nodes with a good inlet and %RH (null: none). */
  rackDewPointsC(groupId: string, now = this.now()): Record<string, number | null> {
    const f = this.take(this.group(groupId), now);
    const out: Record<string, number | null> = {};
    f.dewRacks.forEach((rack, i) => {
      out[rack] = orNull(f.rackDewPointC[i]!);
    });
    return out;
  }

  rackInletStats(groupId: string, now = this.now()): RackInletStats[] {
    const f = this.take(this.group(groupId), now);
    return f.inletRacks.map((rack, i) => ({
      rack,
      inletMaxC: orNull(f.rackInletMaxC[i]!),
      goodInlets: f.rackGoodInlets[i]!,
      inlets: f.rackInlets[i]!,
    }));
  }

  sensors(now = this.now()): SensorSnapshot[] {
    const out: SensorSnapshot[] = [];
    for (const n of this.nodes.values()) {
      for (let pos = 0; pos < n.layout.ids.length; pos++) out.push(this.snapshot(n, pos, now));
    }
    return out;
  }

  sensor(nodeId: string, sensorId: string, now = this.now()): SensorSnapshot | undefined {
    const n = this.nodes.get(nodeId);
    const pos = n?.layout.position.get(sensorId);
    return n && pos !== undefined ? this.snapshot(n, pos, now) : undefined;
  }

  private snapshot(n: NodeRt, pos: number, now: number): SensorSnapshot {
    const row = n.firstRow + pos;
    const o = row * READING;
    const has = this.marks[row * MARK + HAS] === 1;
    const bits = this.flagBits(n, pos, now);
    return {
      node: n.id,
      sensor: n.layout.ids[pos]!,
      kind: n.layout.kinds[pos]!,
      rack: n.rack,
      value: has ? this.readings[o + VALUE]! : null,
      source: has ? SOURCES[this.marks[row * MARK + SOURCE]!]! : null,
      receivedAtMs: has ? this.wallAt(this.readings[o + AT_MS]!) : null,
      ageMs: has ? now - this.readings[o + AT_MS]! : null,
      flags: flagList(bits),
      quality: bits & BAD_BITS ? 'bad' : 'good',
    };
  }

  /** Wall ms of monotonic instant `monoMs`. */
  private wallAt(monoMs: number): number {
    return this.wallNow() - (this.now() - monoMs);
  }

  nodeHealth(_now = this.now()): NodeHealth[] {
    const nf = this.nodeFigures;
    return [...this.nodes.values()].map((n) => ({
      node: n.id,
      gateway: n.gw.id,
      hops: orNull(nf[n.figures + HOPS]!),
      rssiDbm: orNull(nf[n.figures + RSSI_DBM]!),
      batteryPct: orNull(nf[n.figures + BATTERY_PCT]!),
      lastSeq: n.lastSeq,
      reports: n.reports,
      duplicates: n.duplicates,
      outOfOrder: n.outOfOrder,
      restarts: n.restarts,
      lossPct: Math.round(nf[n.figures + LOSS_EWMA]! * 1000) / 10,
      flags: flagList(this.nodeBits(n)),
    }));
  }

  gatewayStates(): { id: string; online: boolean }[] {
    return [...this.gateways.values()].map((g) => ({ id: g.id, online: g.online }));
  }

  /**
   * A jump that another inlet of the same node made with it — the same way, at least half as
   * far, in the same report — is the air moving (a heat-load step lifts a rack's top, middle and
   * bottom together, the top most), not a spike: the sensors agree. A lone jump stays a spike.
   */
  private witnessSpikes(node: NodeRt): void {
    const layout = node.layout;
    for (let pos = 0; pos < layout.ids.length; pos++) {
      const m = (node.firstRow + pos) * MARK;
      if (this.marks[m + SPIKE] !== 1 || this.stepReport[pos] !== this.reportNo) continue;
      const d = this.stepOf[pos]!;
      for (let other = 0; other < layout.ids.length; other++) {
        if (other === pos || this.stepReport[other] !== this.reportNo) continue;
        const w = this.stepOf[other]!;
        if (w * d > 0 && Math.abs(w) >= Math.abs(d) * SPIKE_WITNESS_SHARE) {
          this.marks[m + SPIKE] = 0;
          break;
        }
      }
    }
  }

  /**
   * Sensor `pos` of `node` takes `value`; the rules its flags are computed from run here. Whether
   * the step is a spike (before its node's other inlets are heard: witnessSpikes).
   */
  private apply(node: NodeRt, pos: number, value: number, source: number, atMs: number): boolean {
    const readings = this.readings;
    const marks = this.marks;
    const row = node.firstRow + pos;
    const o = row * READING;
    const m = row * MARK;
    if (marks[m + HAS] === 1) {
      const prev = readings[o + VALUE]!;
      const d = value - prev;
      const repeats = marks[m + REPEATS]!;
      marks[m + REPEATS] = Math.abs(d) > STUCK_EPSILON ? 0 : repeats < MAX_REPEATS ? repeats + 1 : repeats;
      const layout = node.layout;
      const lo = layout.lo[pos]!;
      const hi = layout.hi[pos]!;
      const bothInRange = inRange(value, lo, hi) && inRange(prev, lo, hi);
      // Only steps between readings in range are noise: a jump out of range and back is flagged
      // out-of-range while it lasts, and must not keep the sensor "noisy" for a window afterwards.
      if (bothInRange) {
        const next = marks[m + DIFF_NEXT]!;
        this.diffs[row * NOISE_WINDOW + next] = d;
        marks[m + DIFF_NEXT] = next === NOISE_WINDOW - 1 ? 0 : next + 1;
        if (marks[m + DIFF_COUNT]! < NOISE_WINDOW) marks[m + DIFF_COUNT]!++;
        if (node.layout.isInlet[pos]) this.judgeNoise(row);
      }
      if (layout.isInlet[pos] && bothInRange) {
        // A change faster than air can make it; at least 0.9 of the report interval is assumed
        // between two samples, so a late or bunched delivery does not look like a spike.
        const dtS =
          Math.max((atMs - readings[o + AT_MS]!) / 1000, this.nodeFigures[node.figures + MIN_GAP_S]!) *
          this.timeScale;
        marks[m + SPIKE] = Math.abs(d) / dtS > this.s.spikeCPerS ? 1 : 0;
        this.stepOf[pos] = d;
        this.stepReport[pos] = this.reportNo;
      } else marks[m + SPIKE] = 0;
    }
    readings[o + VALUE] = value;
    readings[o + AT_MS] = atMs;
    marks[m + HAS] = 1;
    marks[m + SOURCE] = source;
    return marks[m + SPIKE] === 1;
  }

  /** Every flag of sensor `pos` of `n`, the node's included: what snapshots list and views judge by. */
  private flagBits(n: NodeRt, pos: number, now: number): number {
    return this.sensorBits(n, pos, now) | this.nodeBits(n);
  }

  /** The sensor's own flags (the node's come from nodeBits). */
  private sensorBits(n: NodeRt, pos: number, now: number): number {
    const readings = this.readings;
    const marks = this.marks;
    const layout = n.layout;
    const row = n.firstRow + pos;
    const o = row * READING;
    const m = row * MARK;
    const has = marks[m + HAS] === 1;
    let bits = 0;
    if (!has || now - readings[o + AT_MS]! > this.s.staleIntervals * n.intervalMs) bits |= BIT.stale;
    if (has && !inRange(readings[o + VALUE]!, layout.lo[pos]!, layout.hi[pos]!)) bits |= BIT['out-of-range'];
    if (marks[m + REPEATS]! >= this.s.stuckReports - 1) bits |= BIT.stuck;
    if (marks[m + SPIKE] === 1) bits |= BIT.spike;
    if (marks[m + NOISY] === 1) bits |= BIT.noisy;
    return bits;
  }

  private nodeBits(n: NodeRt): number {
    let bits = 0;
    if (!n.gw.online) bits |= BIT['gateway-offline'];
    const nf = this.nodeFigures;
    if (nf[n.figures + BATTERY_PCT]! < this.s.lowBatteryPct) bits |= BIT['low-battery'];
    if (nf[n.figures + RSSI_DBM]! < this.s.weakRssiDbm) bits |= BIT['weak-link'];
    if (nf[n.figures + LOSS_EWMA]! * 100 > this.s.lossyPct) bits |= BIT.lossy;
    return bits;
  }

  /**
   * Noise is what goes back and forth. Set: over the last steps, the distance travelled beyond the
   * net change, per step, (Σ|d| − |Σd|) / n — about σ for white noise — is above `noisySigmaC`. Air
   * moves one way: a rack warming after a heat step, however fast, travels no further than it gets
   * and scores ~0 (the RMS of the steps, used before, judged a rise of 1 K per report as noisy as a
   * sensor of σ 0.7 K, and blinded a whole group exactly when it got hot). Cleared: only once that
   * and the RMS of the second differences / √6 (also σ for white noise, blind to any steady rise)
   * are both at most half the limit — a noisy sensor riding a steep rise shows fewer
   * reversals, but its steps stay irregular, so it does not pass for good while the rack climbs.
   */
  private judgeNoise(row: number): void {
    const m = row * MARK;
    const n = this.marks[m + DIFF_COUNT]!;
    if (n < 4) return;
    const diffs = this.diffs;
    const d0 = row * NOISE_WINDOW;
    // The ring's oldest difference: slot 0 until it is full, then the one written next.
    const first = n < NOISE_WINDOW ? 0 : this.marks[m + DIFF_NEXT]!;
    let travelled = 0;
    let net = 0;
    let curvature = 0;
    let prev = Number.NaN;
    for (let k = 0; k < n; k++) {
      const d = diffs[d0 + ((first + k) % NOISE_WINDOW)]!;
      travelled += Math.abs(d);
      net += d;
      if (k > 0) curvature += (d - prev) ** 2;
      prev = d;
    }
    const limit = this.s.noisySigmaC;
    if ((travelled - Math.abs(net)) / n > limit) this.marks[m + NOISY] = 1;
    else if (
      (travelled - Math.abs(net)) / n <= limit * NOISY_CLEARS_AT &&
      Math.sqrt(curvature / (n - 1) / 6) <= limit * NOISY_CLEARS_AT
    )
      this.marks[m + NOISY] = 0;
  }

  /**
   * null when `seq` is new and in order, or the first of a node's new count (and records it); else
   * why it must not be applied. `sampledAt` and `atMs` (receipt, monotonic) are the report's.
   */
  private order(n: NodeRt, seq: number, sampledAt: string | undefined, atMs: number): DropReason | null {
    if (n.lastSeq === 0) {
      this.accept(n, seq, 0, sampledAt, atMs);
      return null;
    }
    // How far ahead modulo 2^32 (seqs wrap), without a floating-point remainder.
    let ahead = seq - n.lastSeq;
    if (ahead < 0) ahead += 0x1_0000_0000;
    if (ahead > 0 && ahead < 0x8000_0000) {
      // Just after a new count began, the old count's late reports may still come, and look ahead.
      if (
        atMs - this.nodeFigures[n.figures + RESTART_AT_MS]! <= LATE_MAX_MS &&
        this.lateFromOldCount(n, seq, ahead, sampledAt)
      )
        return this.late(n, seq);
      n.resetRun = 0;
      n.runLen = 0;
      this.accept(n, seq, ahead - 1, sampledAt, atMs);
      return null;
    }
    // Not newer than the newest: a copy, a late report, or a node that rebooted and counts again.
    const copy = ahead === 0 || this.seenRecently(n, seq);
    const evidence = this.restartEvidence(n, seq, ahead, copy, sampledAt, atMs);
    if (evidence !== null) {
      this.restarted(n, seq, evidence, sampledAt, atMs);
      return null;
    }
    if (copy) {
      n.duplicates++;
      return 'duplicate';
    }
    return this.late(n, seq);
  }

  /**
   * `sampledAt` if it is a time not too far ahead of ours (MAX_SAMPLED_AHEAD_MS), else undefined,
   * counted and logged (one line every 10 s): the seq alone then orders the report. A time far in
   * the past stays: it is only ever compared with the same node's other times.
   */
  private trustedTime(nodeId: string, sampledAt: string): string | undefined {
    const t = Date.parse(sampledAt);
    if (t <= this.wallNow() + MAX_SAMPLED_AHEAD_MS) return sampledAt;
    this.counters.timesIgnored++;
    const notLogged = this.log ? this.dropLog.admit('time-ignored') : -1;
    if (notLogged >= 0)
      this.log?.warn(
        {
          sensorNode: clip(nodeId),
          sampledAt: clip(sampledAt),
          reason: Number.isNaN(t) ? 'not a time' : 'ahead of our clock',
          notLogged,
        },
        'sensor report time ignored; ordered by its seq alone',
      );
    return undefined;
  }

  private late(n: NodeRt, seq: number): DropReason {
    n.outOfOrder++;
    // A late report fills a gap counted as loss when its successor came.
    const loss = n.figures + LOSS_EWMA;
    this.nodeFigures[loss] = Math.max(0, this.nodeFigures[loss]! - LOSS_ALPHA / 2);
    this.remember(n, seq);
    return 'out-of-order';
  }

  /**
   * Within LATE_MAX_MS of following a new count: whether `seq`, ahead of the new count's newest, is
   * rather a late report of the old count. Sampled before the newest, it is; without times, a seq
   * not past the old count's newest that jumps further than a new count plausibly lost is.
   */
  private lateFromOldCount(n: NodeRt, seq: number, ahead: number, sampledAt: string | undefined): boolean {
    if (sampledAt !== undefined && n.sampledAt !== undefined)
      return Date.parse(sampledAt) < Date.parse(n.sampledAt);
    let behindOld = n.lastSeqBefore - seq;
    if (behindOld < 0) behindOld += 0x1_0000_0000;
    return behindOld < 0x8000_0000 && ahead > RUN_MAX_STEP;
  }

  /**
   * Whether seq `seq`, not ahead of the node's newest, is a new count rather than a copy or a late
   * report, and what says so. A late report or a copy never passes: it was sampled no later than the
   * newest (report-time), and it arrives within LATE_MAX_MS of the newest (counting-up). Far behind
   * (more than RESTART_BEHIND) is the older rule, for nodes whose count had gone far.
   */
  private restartEvidence(
    n: NodeRt,
    seq: number,
    ahead: number,
    copy: boolean,
    sampledAt: string | undefined,
    atMs: number,
  ): RestartEvidence | null {
    // Parsed only here, off the common path: an ISO time from the wire (NaN never compares greater).
    if (
      sampledAt !== undefined &&
      n.sampledAt !== undefined &&
      Date.parse(sampledAt) > Date.parse(n.sampledAt)
    )
      return 'report-time';
    if (!copy && 0x1_0000_0000 - ahead > RESTART_BEHIND) {
      n.resetRun++;
      if (n.resetRun >= RESTART_RUN) return 'far-behind';
    }
    // A run of older seqs, each a little above the one before: a new count, or late reports that
    // came in order. The newest report's receipt time tells them apart.
    let step = seq - n.runSeq;
    if (step < 0) step += 0x1_0000_0000;
    if (n.runLen > 0 && step === 0) return null; // a copy of the run's latest: the run stands
    n.runLen = n.runLen > 0 && step <= RUN_MAX_STEP ? Math.min(n.runLen + 1, RESTART_RUN) : 1;
    n.runSeq = seq;
    if (n.runLen >= RESTART_RUN && atMs - this.nodeFigures[n.figures + NEWEST_AT_MS]! > LATE_MAX_MS)
      return 'counting-up';
    return null;
  }

  /** Follows the node into its new count from `seq`: the seqs remembered were the old count's. */
  private restarted(
    n: NodeRt,
    seq: number,
    evidence: RestartEvidence,
    sampledAt: string | undefined,
    atMs: number,
  ): void {
    const lastSeq = n.lastSeq;
    n.restarts++;
    this.counters.restarts++;
    n.resetRun = 0;
    n.runLen = 0;
    n.seqCount = 0;
    n.seqNext = 0;
    n.lastSeqBefore = lastSeq;
    this.nodeFigures[n.figures + RESTART_AT_MS] = atMs;
    this.accept(n, seq, 0, sampledAt, atMs);
    if (!this.log) return;
    // A node (or whoever publishes on its topic) can make this happen with every report.
    const notLogged = this.dropLog.admit('restart');
    if (notLogged >= 0)
      this.log.warn(
        { sensorNode: n.id, seq, lastSeq, evidence, notLogged },
        'sensor node restarted its sequence numbers',
      );
  }

  private accept(n: NodeRt, seq: number, missing: number, sampledAt: string | undefined, atMs: number): void {
    const lossNow = missing / (missing + 1);
    const loss = n.figures + LOSS_EWMA;
    this.nodeFigures[loss]! += LOSS_ALPHA * (lossNow - this.nodeFigures[loss]!);
    this.nodeFigures[n.figures + NEWEST_AT_MS] = atMs;
    n.lastSeq = seq;
    n.sampledAt = sampledAt;
    this.remember(n, seq);
  }

  /** Keeps the node's last SEQ_WINDOW seqs (applied or late), a ring. */
  private remember(n: NodeRt, seq: number): void {
    this.recentSeqs[n.seqBase + n.seqNext] = seq;
    n.seqNext = (n.seqNext + 1) % SEQ_WINDOW;
    if (n.seqCount < SEQ_WINDOW) n.seqCount++;
  }

  private seenRecently(n: NodeRt, seq: number): boolean {
    for (let i = 0; i < n.seqCount; i++) if (this.recentSeqs[n.seqBase + i] === seq) return true;
    return false;
  }

  private takeToken(n: NodeRt, nowMs: number): boolean {
    const rate = this.s.maxReportsPerNodePerS;
    // A receive time older than the last one (a Modbus gateway's age) earns nothing and takes nothing back.
    const nf = this.nodeFigures;
    const f = n.figures;
    const elapsedMs = Math.max(0, nowMs - nf[f + TOKENS_AT_MS]!);
    nf[f + TOKENS] = Math.min(this.burstTokens, nf[f + TOKENS]! + (elapsedMs / 1000) * rate);
    nf[f + TOKENS_AT_MS] = Math.max(nf[f + TOKENS_AT_MS]!, nowMs);
    if (nf[f + TOKENS]! < 1) return false;
    nf[f + TOKENS]! -= 1;
    return true;
  }

  /**
   * Counts the drop and logs it, at most one line per reason every 10 s (with how many were not
   * logged). `detail` and `sensorNode` may hold wire text (a topic's node is any length): clipped.
   * A duplicate is the mesh working as made (a report heard by two gateways, a retry: ~6 % of a
   * full hall's reports), so its line is debug, not a warning six times a minute in the journal.
   */
  private drop(reason: DropReason, detail: string, sensorNode?: string): DropReason {
    this.counters.drops[reason]++;
    if (this.log) {
      const notLogged = this.dropLog.admit(reason);
      if (notLogged >= 0) {
        // `sensorNode`, not `node`: the daemon's logger binds `node` to the controller's name.
        this.log[reason === 'duplicate' ? 'debug' : 'warn'](
          {
            reason,
            sensorNode: sensorNode === undefined ? undefined : clip(sensorNode),
            detail: clip(detail, 2 * MAX_LOGGED_TEXT),
            notLogged,
          },
          'sensor report dropped',
        );
      }
    }
    return reason;
  }
}

/**
 * Per sensor of layout `to`, its position in layout `from` — the sensor of the same id and kind —
 * or −1. Nodes share layouts, so a site has a handful of pairs: each is worked out once in `cache`.
 */
function layoutPositions(cache: Map<Layout, Map<Layout, Int32Array>>, from: Layout, to: Layout): Int32Array {
  let byTo = cache.get(from);
  if (!byTo) {
    byTo = new Map();
    cache.set(from, byTo);
  }
  let out = byTo.get(to);
  if (!out) {
    out = new Int32Array(to.ids.length);
    for (let pos = 0; pos < to.ids.length; pos++) {
      const at = from.position.get(to.ids[pos]!);
      out[pos] = at !== undefined && from.kinds[at] === to.kinds[pos] ? at : -1;
    }
    byTo.set(to, out);
  }
  return out;
}

function orNull(v: number): number | null {
  return Number.isNaN(v) ? null : v;
}

function inRange(v: number, lo: number, hi: number): boolean {
  return v >= lo && v <= hi && Number.isFinite(v);
}

function flagList(bits: number): SensorFlag[] {
  const flags: SensorFlag[] = [];
  for (const [flag, bit] of FLAG_BITS) if (bits & bit) flags.push(flag);
  return flags;
}

/** Magnus formula (Sonntag 1990), dew point °C from temperature °C and relative humidity %. */
export function dewPointC(tC: number, rhPct: number): number {
  const a = 17.62;
  const b = 243.12;
  const g = Math.log(rhPct / 100) + (a * tC) / (b + tC);
  return (b * g) / (a - g);
}
