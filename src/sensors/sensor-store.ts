// What the controller believes about the room: the last reading of every sensor with its source
// and arrival time, per-sensor quality flags, per-node mesh health, and per control group the view
// that control may trust (max/mean of good inlets, dew point, coverage, verdict). This class is the
// one face: it ingests, and its parts keep the rules (sensor-columns, reading-quality, report-order,
// group-view, sensor-metrics). Invariants: every report is either applied or counted under one drop
// reason; nothing from the wire can throw out of `ingest*()`, nor write more than a rate-limited log
// line of bounded length. Quality rules: docs/sensor-ingest.md.
// Every age, rate and deadline runs on a monotonic clock (`now`): a wall-clock step must neither
// freeze ingest nor keep old readings good. Wall time (`wallNow`) only dates what people read.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { type Site, sensingSettings } from '../config/site-schema.ts';
import { clip, LogLimiter, MAX_LOGGED_TEXT } from '../util/log-limit.ts';
import {
  type GroupRt,
  newGroup,
  nodeHealthOf,
  orNull,
  resumeHold,
  type StoreClock,
  snapshotOf,
  takeFigures,
} from './group-view.ts';
import { applyReading, witnessSpikes } from './reading-quality.ts';
import { DROP_REASONS, type DropReason, parseReport, type Report } from './report.ts';
import { type OrderLog, orderReport, takeToken, trustedTime } from './report-order.ts';
import * as columns from './sensor-columns.ts';
import {
  carryNode,
  type GatewayRt,
  type Layout,
  layoutOf,
  layoutPositions,
  type NodeRt,
  newNode,
  type SensorColumns,
  SOURCES,
} from './sensor-columns.ts';
import { registerSensorMetrics, unregisterSensorMetrics } from './sensor-metrics.ts';
import type {
  GroupFigures,
  GroupSensorView,
  NodeHealth,
  RackInletStats,
  SensorSnapshot,
  SensorView,
  SourceName,
} from './sensor-view.ts';
import type { VerdictHoldMemory } from './verdict.ts';

// Column indices bound as this module's own constants (see sensor-columns.ts): folded into the
// hot loops, where an imported binding would be read on every use.
const { BATTERY_PCT, HOPS, MARK, NODE_FIGURES, NOISE_WINDOW, READING, RSSI_DBM, SEQ_WINDOW, VALUE } = columns;

export type {
  GroupFigures,
  GroupSensorView,
  NodeHealth,
  RackInletStats,
  SensorFlag,
  SensorSnapshot,
  SensorView,
  SourceName,
} from './sensor-view.ts';
export { SHARED_FIGURES_MAX_AGE_MS } from './sensor-view.ts';
export type { Verdict, VerdictHoldMemory, VerdictRecovery } from './verdict.ts';

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

/** A gateway's online/offline lines: a flapping (or forged) status writes at most this many a minute. */
const GATEWAY_LINES_PER_MIN = 10;
const LOG_EVERY_MS = 10_000;

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
  /** Every sensor's and node's changing state, and the settings the rules judge it by. */
  private readonly cols: SensorColumns;
  private readonly log: Logger | undefined;
  private readonly now: () => number;
  private readonly wallNow: () => number;
  /** The clocks, and where the order rules count and log: handed to the rule modules. */
  private readonly ctx: StoreClock & OrderLog;
  /** Drop lines per reason, and restart lines: one every 10 s each, with how many were not written. */
  private readonly dropLog: LogLimiter;
  /** Online/offline lines per configured gateway. */
  private readonly gatewayLog: LogLimiter;

  constructor(site: Site, opts: SensorStoreOptions = {}) {
    const timeScale = opts.timeScale ?? 1;
    this.log = opts.logger;
    this.now = opts.now ?? (() => performance.now());
    this.wallNow = opts.wallNow ?? Date.now;
    this.dropLog = new LogLimiter(this.now, LOG_EVERY_MS);
    this.gatewayLog = new LogLimiter(this.now, 60_000, GATEWAY_LINES_PER_MIN);
    const s = sensingSettings(site.sensing);
    const sensorCount = site.sensorNodes.reduce((sum, n) => sum + n.sensors.length, 0);
    const cols: SensorColumns = {
      readings: new Float64Array(sensorCount * READING),
      marks: new Uint16Array(sensorCount * MARK),
      diffs: new Float32Array(sensorCount * NOISE_WINDOW),
      recentSeqs: new Uint32Array(site.sensorNodes.length * SEQ_WINDOW),
      nodeFigures: new Float64Array(site.sensorNodes.length * NODE_FIGURES),
      s,
      timeScale,
      burstTokens: Math.max(10, s.maxReportsPerNodePerS * 2),
      stepOf: new Float64Array(8),
      stepReport: new Uint32Array(8),
      reportNo: 0,
    };
    this.cols = cols;
    this.ctx = {
      now: this.now,
      wallNow: this.wallNow,
      counters: this.counters,
      log: this.log,
      dropLog: this.dropLog,
    };
    for (let r = 0; r < sensorCount; r++) cols.readings[r * READING + VALUE] = Number.NaN;
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
      const layout = layoutOf(layouts, n.sensors, s.inletRangeC);
      const intervalMs = ((n.reportIntervalS ?? 10) * 1000) / timeScale;
      const gw = this.gateways.get(n.gateway) ?? {
        id: n.gateway,
        online: false,
        known: false,
        source: undefined,
        heard: false,
        retainedIgnoredLogged: false,
      };
      const node = newNode(cols, this.nodes.size, n.id, n.rack, gw, intervalMs, layout, row);
      row += layout.ids.length;
      if (layout.ids.length > cols.stepOf.length) {
        cols.stepOf = new Float64Array(layout.ids.length);
        cols.stepReport = new Uint32Array(layout.ids.length);
      }
      this.nodes.set(n.id, node);
    }
    for (const g of site.controlGroups) {
      const nodes = g.sensorNodes.map((id) => this.nodes.get(id)).filter((n): n is NodeRt => n !== undefined);
      this.groups.set(g.id, newGroup(g.id, nodes));
    }
    if (opts.registry) registerSensorMetrics(opts.registry, this.counters, this.nodes, cols, this.now);
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
      if (p) carryNode(this.cols, prev.cols, p, n, layoutPositions(positions, p.layout, n.layout));
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

  /** The newest seq applied of `nodeId` (0: none, or no such node): where a poller resumes. */
  nodeLastSeq(nodeId: string): number {
    return this.nodes.get(nodeId)?.lastSeq ?? 0;
  }

  /** Removes this store's metrics from `registry` (a reload builds a new store on the same registry). */
  static unregisterMetrics(registry: Registry): void {
    unregisterSensorMetrics(registry);
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
    if (!takeToken(this.cols, node, receivedAtMs)) {
      return this.drop(
        'rate-limited',
        `node ${r.node} sends more than ${this.cols.s.maxReportsPerNodePerS} reports/s`,
        r.node,
      );
    }
    const sampledAt = r.sampledAt === undefined ? undefined : trustedTime(this.ctx, r.node, r.sampledAt);
    const order = orderReport(this.cols, this.ctx, node, r.seq, sampledAt, receivedAtMs);
    if (order !== null) return this.drop(order, `node ${r.node} seq ${r.seq} (last ${node.lastSeq})`, r.node);

    node.reports++;
    this.counters.reports++;
    const nf = this.cols.nodeFigures;
    if (r.hops !== undefined) nf[node.figures + HOPS] = r.hops;
    if (r.rssiDbm !== undefined) nf[node.figures + RSSI_DBM] = r.rssiDbm;
    if (r.batteryPct !== undefined) nf[node.figures + BATTERY_PCT] = r.batteryPct;
    const layout = node.layout;
    const sourceCode = source === 'mqtt' ? 0 : 1;
    let applied = 0;
    let spiked = false;
    const cols = this.cols;
    cols.reportNo = cols.reportNo === 0xffff_ffff ? 1 : cols.reportNo + 1;
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
      if (applyReading(cols, node, pos, reading.value, sourceCode, receivedAtMs)) spiked = true;
      applied++;
    }
    if (spiked) witnessSpikes(cols, node);
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
    return takeFigures(this.cols, this.ctx, this.group(groupId), now).view;
  }

  figures(groupId: string, maxAgeMs = 0, now = this.now()): GroupFigures {
    const g = this.group(groupId);
    const last = g.last;
    if (last && now >= last.atMs && now - last.atMs < maxAgeMs) return last;
    return takeFigures(this.cols, this.ctx, g, now);
  }

  verdictHold(groupId: string, now = this.now()): VerdictHoldMemory | null {
    return this.group(groupId).hold.memory(now * this.cols.timeScale);
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
    return resumeHold(this.cols, this.group(groupId), memory, rowAgeMs, now);
  }

  private group(groupId: string): GroupRt {
    const g = this.groups.get(groupId);
    if (!g) throw new RangeError(`unknown control group "${groupId}"`);
    return g;
  }

  /**
   * Per rack of the group that has inlet sensors: its hottest good inlet reading, °C, or null when
   * it has none (the alarm rules' plain form of a group's figures). Not for control: it allocates.
   */
  rackInletsC(groupId: string, now = this.now()): Record<string, number | null> {
    const f = takeFigures(this.cols, this.ctx, this.group(groupId), now);
    const out: Record<string, number | null> = {};
    f.inletRacks.forEach((rack, i) => {
      out[rack] = orNull(f.rackInletMaxC[i]!);
    });
    return out;
  }

  /** Per rack of the group with a %RH sensor: the highest dew point of its nodes with a good inlet and %RH (null: none). */
  rackDewPointsC(groupId: string, now = this.now()): Record<string, number | null> {
    const f = takeFigures(this.cols, this.ctx, this.group(groupId), now);
    const out: Record<string, number | null> = {};
    f.dewRacks.forEach((rack, i) => {
      out[rack] = orNull(f.rackDewPointC[i]!);
    });
    return out;
  }

  rackInletStats(groupId: string, now = this.now()): RackInletStats[] {
    const f = takeFigures(this.cols, this.ctx, this.group(groupId), now);
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
      for (let pos = 0; pos < n.layout.ids.length; pos++)
        out.push(snapshotOf(this.cols, this.ctx, n, pos, now));
    }
    return out;
  }

  sensor(nodeId: string, sensorId: string, now = this.now()): SensorSnapshot | undefined {
    const n = this.nodes.get(nodeId);
    const pos = n?.layout.position.get(sensorId);
    return n && pos !== undefined ? snapshotOf(this.cols, this.ctx, n, pos, now) : undefined;
  }

  nodeHealth(_now = this.now()): NodeHealth[] {
    return nodeHealthOf(this.cols, this.nodes);
  }

  gatewayStates(): { id: string; online: boolean }[] {
    return [...this.gateways.values()].map((g) => ({ id: g.id, online: g.online }));
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
