// What the controller believes about the room: the last reading of every sensor with its source
// and arrival time, per-sensor quality flags, per-node mesh health, and per control group the view
// that control may trust (max/mean of good inlets, dew point, coverage, verdict).
// Invariants: a node's reports are applied in seq order only (duplicates and late reports never
// overwrite a newer value); every report is either applied or counted under one drop reason;
// nothing from the wire can throw out of `ingest*()`. Quality rules: docs/sensor-ingest.md.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { SensingSettings, SensorKindName, Site } from '../config/site-schema.ts';
import { DROP_REASONS, type DropReason, parseReport, type Report } from './report.ts';

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

export type Verdict = 'ok' | 'degraded' | 'blind';

export interface SensorSnapshot {
  node: string;
  sensor: string;
  kind: SensorKindName;
  rack: string;
  value: number | null;
  source: SourceName | null;
  /** Wall ms when the gateway got the reading (MQTT: arrival; Modbus: poll time − age). */
  receivedAtMs: number | null;
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
  /** Racks of the group without a single good inlet reading. */
  uncoveredRacks: string[];
  atMs: number;
}

/** Control depends on this, never on MQTT or Modbus. */
export interface SensorView {
  view(groupId: string): GroupSensorView;
}

export interface SensorStoreOptions {
  /** Simulation only: site time runs this many times faster than the wall clock. */
  timeScale?: number;
  logger?: Logger;
  registry?: Registry;
  now?: () => number;
}

const INLET_KINDS: ReadonlySet<string> = new Set(['inlet-top', 'inlet-middle', 'inlet-bottom']);
/** Physical ranges of the other kinds; inlets take theirs from the site's `sensing`. */
const RANGE: Record<string, readonly [number, number]> = {
  humidity: [0, 100],
  'subfloor-pressure': [-100, 500],
};
const NOISE_WINDOW = 8;
const STUCK_EPSILON = 0.001;
const SEQ_WINDOW = 32;
const LOSS_ALPHA = 0.1;
const LOG_EVERY_MS = 10_000;

interface GatewayRt {
  id: string;
  online: boolean;
}

interface SensorRt {
  id: string;
  kind: SensorKindName;
  isInlet: boolean;
  /** Physical range, resolved once: the hot path compares two numbers. */
  lo: number;
  hi: number;
  node: NodeRt;
  value: number;
  has: boolean;
  source: SourceName;
  receivedAtMs: number;
  sampledAtMs: number;
  /** Consecutive values equal to the one before. */
  repeats: number;
  spike: boolean;
  diffs: Float64Array;
  diffCount: number;
}

interface NodeRt {
  id: string;
  rack: string;
  gw: GatewayRt;
  intervalMs: number;
  sensors: Map<string, SensorRt>;
  /** The same sensors in config order: reports list them so, and a positional check beats hashing. */
  list: SensorRt[];
  lastSeq: number;
  recentSeqs: number[];
  /** Far-older seqs in a row: a node that rebooted starts again from 1. */
  resetRun: number;
  reports: number;
  duplicates: number;
  outOfOrder: number;
  lossEwma: number;
  hops: number | null;
  rssiDbm: number | null;
  batteryPct: number | null;
  tokens: number;
  tokensAtMs: number;
}

export class SensorStore implements SensorView {
  readonly counters = {
    reports: 0,
    readings: { mqtt: 0, modbus: 0 } as Record<SourceName, number>,
    drops: Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>,
  };
  private readonly nodes = new Map<string, NodeRt>();
  private readonly gateways = new Map<string, GatewayRt>();
  private readonly groups = new Map<
    string,
    { id: string; nodes: NodeRt[]; inletSensors: SensorRt[]; inletRacks: string[] }
  >();
  private readonly s: Required<SensingSettings>;
  private readonly timeScale: number;
  private readonly log: Logger | undefined;
  private readonly now: () => number;
  private readonly lastLog = new Map<string, { atMs: number; suppressed: number }>();
  private readonly metrics: { readings: Counter<'source'>; drops: Counter<'reason'> } | undefined;

  constructor(site: Site, opts: SensorStoreOptions = {}) {
    this.timeScale = opts.timeScale ?? 1;
    this.log = opts.logger;
    this.now = opts.now ?? Date.now;
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
      maxReportsPerNodePerS: c.maxReportsPerNodePerS ?? 50,
    };
    for (const g of site.gateways) this.gateways.set(g.id, { id: g.id, online: true });
    for (const n of site.sensorNodes) {
      const node: NodeRt = {
        id: n.id,
        rack: n.rack,
        gw: this.gateways.get(n.gateway) ?? { id: n.gateway, online: false },
        intervalMs: ((n.reportIntervalS ?? 10) * 1000) / this.timeScale,
        sensors: new Map(),
        list: [],
        lastSeq: 0,
        recentSeqs: [],
        resetRun: 0,
        reports: 0,
        duplicates: 0,
        outOfOrder: 0,
        lossEwma: 0,
        hops: null,
        rssiDbm: null,
        batteryPct: null,
        tokens: this.burst(),
        tokensAtMs: 0,
      };
      for (const sc of n.sensors) {
        const isInlet = INLET_KINDS.has(sc.kind);
        const [lo, hi] = isInlet
          ? this.s.inletRangeC
          : (RANGE[sc.kind] ?? [Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY]);
        node.sensors.set(sc.id, {
          id: sc.id,
          kind: sc.kind,
          isInlet,
          lo,
          hi,
          node,
          value: Number.NaN,
          has: false,
          source: 'mqtt',
          receivedAtMs: 0,
          sampledAtMs: 0,
          repeats: 0,
          spike: false,
          diffs: new Float64Array(NOISE_WINDOW),
          diffCount: 0,
        });
      }
      node.list = [...node.sensors.values()];
      this.nodes.set(n.id, node);
    }
    for (const g of site.controlGroups) {
      const nodes = g.sensorNodes.map((id) => this.nodes.get(id)).filter((n): n is NodeRt => n !== undefined);
      const inletSensors = nodes.flatMap((n) => [...n.sensors.values()].filter((s) => s.isInlet));
      const inletRacks = [...new Set(inletSensors.map((s) => s.node.rack))];
      this.groups.set(g.id, { id: g.id, nodes, inletSensors, inletRacks });
    }
    if (opts.registry) {
      const registers = [opts.registry];
      this.metrics = {
        readings: new Counter({
          name: 'coolctl_sensor_readings_total',
          help: 'Sensor readings applied, by source',
          labelNames: ['source'],
          registers,
        }),
        drops: new Counter({
          name: 'coolctl_sensor_reports_dropped_total',
          help: 'Sensor reports or readings not applied, by reason',
          labelNames: ['reason'],
          registers,
        }),
      };
      const store = this;
      new Gauge({
        name: 'coolctl_sensors',
        help: 'Configured sensors by quality (good or bad) right now',
        labelNames: ['quality'],
        registers,
        collect() {
          let good = 0;
          let bad = 0;
          const now = store.now();
          for (const n of store.nodes.values()) {
            for (const s of n.sensors.values()) {
              if (store.isGood(s, now)) good++;
              else bad++;
            }
          }
          this.set({ quality: 'good' }, good);
          this.set({ quality: 'bad' }, bad);
        },
      });
    }
  }

  /** The MQTT path: one raw payload from `topicGateway`/`topicNode` (taken from the topic). */
  ingestPayload(
    payload: Buffer | string,
    source: SourceName,
    topicGateway?: string,
    topicNode?: string,
  ): DropReason | null {
    const parsed = parseReport(payload);
    if (!parsed.ok) return this.drop(parsed.reason, parsed.detail, topicNode);
    return this.ingestReport(parsed.report, source, this.now(), topicGateway, topicNode);
  }

  /** Applies one validated report received at `receivedAtMs`; returns why it was dropped, if it was. */
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
    if (!this.takeToken(node, receivedAtMs)) {
      return this.drop(
        'rate-limited',
        `node ${r.node} sends more than ${this.s.maxReportsPerNodePerS} reports/s`,
        r.node,
      );
    }
    const order = this.order(node, r.seq);
    if (order !== null) return this.drop(order, `node ${r.node} seq ${r.seq} (last ${node.lastSeq})`, r.node);

    node.reports++;
    this.counters.reports++;
    if (r.hops !== undefined) node.hops = r.hops;
    if (r.rssiDbm !== undefined) node.rssiDbm = r.rssiDbm;
    if (r.batteryPct !== undefined) node.batteryPct = r.batteryPct;
    const sampledAtMs = receivedAtMs;
    let applied = 0;
    const readings = r.readings;
    for (let i = 0; i < readings.length; i++) {
      const reading = readings[i]!;
      const byPos = node.list[i];
      const s = byPos !== undefined && byPos.id === reading.sensor ? byPos : node.sensors.get(reading.sensor);
      if (!s) {
        this.drop('unknown-sensor', `node ${r.node} has no sensor "${reading.sensor}"`, r.node);
        continue;
      }
      if (reading.kind !== s.kind) {
        this.drop(
          'kind-mismatch',
          `${r.node}/${reading.sensor} is ${s.kind}, report says ${reading.kind}`,
          r.node,
        );
        continue;
      }
      this.apply(s, reading.value, source, receivedAtMs, sampledAtMs);
      applied++;
    }
    this.counters.readings[source] += applied;
    this.metrics?.readings.inc({ source }, applied);
    return null;
  }

  /** Gateway liveness from its status topic (MQTT last will) or from polling it (Modbus). */
  setGatewayOnline(gatewayId: string, online: boolean, reason: string): void {
    const gw = this.gateways.get(gatewayId);
    if (!gw) {
      this.drop('unknown-node', `status of unknown gateway "${gatewayId}"`, gatewayId);
      return;
    }
    if (gw.online === online) return;
    gw.online = online;
    this.log?.[online ? 'info' : 'warn'](
      { gateway: gatewayId, reason },
      online ? 'sensor gateway online' : 'sensor gateway offline',
    );
  }

  view(groupId: string, now = this.now()): GroupSensorView {
    const g = this.groups.get(groupId);
    if (!g) throw new RangeError(`unknown control group "${groupId}"`);
    let max = Number.NEGATIVE_INFINITY;
    let sum = 0;
    let good = 0;
    let hottest: string | null = null;
    const coveredRacks = new Set<string>();
    for (const s of g.inletSensors) {
      if (!this.isGood(s, now)) continue;
      good++;
      sum += s.value;
      coveredRacks.add(s.node.rack);
      if (s.value > max) {
        max = s.value;
        hottest = s.node.rack;
      }
    }
    let rhSum = 0;
    let rhN = 0;
    let dewMax = Number.NEGATIVE_INFINITY;
    for (const n of g.nodes) {
      let t: number | undefined;
      let rh: number | undefined;
      for (const s of n.sensors.values()) {
        if (!this.isGood(s, now)) continue;
        if (s.kind === 'humidity') rh = s.value;
        else if (s.kind === 'inlet-middle' || (s.isInlet && t === undefined)) t = s.value;
      }
      if (rh === undefined) continue;
      rhSum += rh;
      rhN++;
      if (t !== undefined && rh > 0) dewMax = Math.max(dewMax, dewPointC(t, rh));
    }
    const configured = g.inletSensors.length;
    const coverage = configured > 0 ? good / configured : 0;
    const verdict: Verdict =
      good === 0 || coverage < this.s.blindCoverage
        ? 'blind'
        : coverage >= this.s.okCoverage
          ? 'ok'
          : 'degraded';
    return {
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
      uncoveredRacks: g.inletRacks.filter((r) => !coveredRacks.has(r)),
      atMs: now,
    };
  }

  sensors(now = this.now()): SensorSnapshot[] {
    const out: SensorSnapshot[] = [];
    for (const n of this.nodes.values()) for (const s of n.sensors.values()) out.push(this.snapshot(s, now));
    return out;
  }

  sensor(nodeId: string, sensorId: string, now = this.now()): SensorSnapshot | undefined {
    const s = this.nodes.get(nodeId)?.sensors.get(sensorId);
    return s ? this.snapshot(s, now) : undefined;
  }

  private snapshot(s: SensorRt, now: number): SensorSnapshot {
    const flags = this.flags(s, now);
    return {
      node: s.node.id,
      sensor: s.id,
      kind: s.kind,
      rack: s.node.rack,
      value: s.has ? s.value : null,
      source: s.has ? s.source : null,
      receivedAtMs: s.has ? s.receivedAtMs : null,
      flags,
      quality: flags.some((f) => BAD_FLAGS.has(f)) ? 'bad' : 'good',
    };
  }

  nodeHealth(now = this.now()): NodeHealth[] {
    return [...this.nodes.values()].map((n) => ({
      node: n.id,
      gateway: n.gw.id,
      hops: n.hops,
      rssiDbm: n.rssiDbm,
      batteryPct: n.batteryPct,
      lastSeq: n.lastSeq,
      reports: n.reports,
      duplicates: n.duplicates,
      outOfOrder: n.outOfOrder,
      lossPct: Math.round(n.lossEwma * 1000) / 10,
      flags: this.nodeFlags(n, now),
    }));
  }

  gatewayStates(): { id: string; online: boolean }[] {
    return [...this.gateways.values()].map((g) => ({ id: g.id, online: g.online }));
  }

  private apply(
    s: SensorRt,
    value: number,
    source: SourceName,
    receivedAtMs: number,
    sampledAtMs: number,
  ): void {
    if (s.has) {
      const d = value - s.value;
      s.repeats = Math.abs(d) <= STUCK_EPSILON ? s.repeats + 1 : 0;
      s.diffs[s.diffCount % NOISE_WINDOW] = d;
      s.diffCount++;
      if (s.isInlet && this.inRange(s, value) && this.inRange(s, s.value)) {
        // A change faster than air can make it; at least 0.9 of the report interval is assumed
        // between two samples, so a late or bunched delivery does not look like a spike.
        const dtS =
          Math.max((sampledAtMs - s.sampledAtMs) / 1000, (0.9 * s.node.intervalMs) / 1000) * this.timeScale;
        s.spike = Math.abs(d) / dtS > this.s.spikeCPerS;
      } else s.spike = false;
    }
    s.value = value;
    s.has = true;
    s.source = source;
    s.receivedAtMs = receivedAtMs;
    s.sampledAtMs = sampledAtMs;
  }

  private isGood(s: SensorRt, now: number): boolean {
    if (!s.has || !s.node.gw.online) return false;
    if (now - s.receivedAtMs > this.s.staleIntervals * s.node.intervalMs) return false;
    if (!this.inRange(s, s.value) || s.spike || s.repeats >= this.s.stuckReports - 1) return false;
    return !(s.isInlet && this.noisy(s));
  }

  private flags(s: SensorRt, now: number): SensorFlag[] {
    const f: SensorFlag[] = [];
    if (!s.has || now - s.receivedAtMs > this.s.staleIntervals * s.node.intervalMs) f.push('stale');
    if (s.has && !this.inRange(s, s.value)) f.push('out-of-range');
    if (s.repeats >= this.s.stuckReports - 1) f.push('stuck');
    if (s.spike) f.push('spike');
    if (s.isInlet && this.noisy(s)) f.push('noisy');
    f.push(...this.nodeFlags(s.node, now));
    return f;
  }

  private nodeFlags(n: NodeRt, _now: number): SensorFlag[] {
    const f: SensorFlag[] = [];
    if (!n.gw.online) f.push('gateway-offline');
    if (n.batteryPct !== null && n.batteryPct < this.s.lowBatteryPct) f.push('low-battery');
    if (n.rssiDbm !== null && n.rssiDbm < this.s.weakRssiDbm) f.push('weak-link');
    if (n.lossEwma * 100 > this.s.lossyPct) f.push('lossy');
    return f;
  }

  private inRange(s: SensorRt, v: number): boolean {
    return v >= s.lo && v <= s.hi && Number.isFinite(v);
  }

  /** σ of successive differences / √2 over the last readings: white noise shows, slow drift does not. */
  private noisy(s: SensorRt): boolean {
    const n = Math.min(s.diffCount, NOISE_WINDOW);
    if (n < 4) return false;
    let sq = 0;
    for (let i = 0; i < n; i++) sq += s.diffs[i]! ** 2;
    return Math.sqrt(sq / n / 2) > this.s.noisySigmaC;
  }

  /** null when `seq` is new and in order (and records it); else why it must not be applied. */
  private order(n: NodeRt, seq: number): DropReason | null {
    if (n.lastSeq === 0) {
      this.accept(n, seq, 0);
      return null;
    }
    const ahead = (seq - n.lastSeq + 0x1_0000_0000) % 0x1_0000_0000;
    if (ahead > 0 && ahead < 0x8000_0000) {
      n.resetRun = 0;
      this.accept(n, seq, ahead - 1);
      return null;
    }
    if (ahead === 0 || n.recentSeqs.includes(seq)) {
      n.duplicates++;
      return 'duplicate';
    }
    const behind = 0x1_0000_0000 - ahead;
    if (behind > 10 * SEQ_WINDOW) {
      // Far behind: a rebooted node counting from 1 again. Believe it after three such reports in a row.
      n.resetRun++;
      if (n.resetRun >= 3) {
        this.log?.warn({ node: n.id, seq, lastSeq: n.lastSeq }, 'sensor node restarted its sequence numbers');
        n.resetRun = 0;
        n.recentSeqs.length = 0;
        this.accept(n, seq, 0);
        return null;
      }
    }
    n.outOfOrder++;
    // A late report fills a gap counted as loss when its successor came.
    n.lossEwma = Math.max(0, n.lossEwma - LOSS_ALPHA / 2);
    n.recentSeqs.push(seq);
    if (n.recentSeqs.length > SEQ_WINDOW) n.recentSeqs.shift();
    return 'out-of-order';
  }

  private accept(n: NodeRt, seq: number, missing: number): void {
    const lossNow = missing / (missing + 1);
    n.lossEwma += LOSS_ALPHA * (lossNow - n.lossEwma);
    n.lastSeq = seq;
    n.recentSeqs.push(seq);
    if (n.recentSeqs.length > SEQ_WINDOW) n.recentSeqs.shift();
  }

  private burst(): number {
    return Math.max(10, this.s.maxReportsPerNodePerS * 2);
  }

  private takeToken(n: NodeRt, nowMs: number): boolean {
    const rate = this.s.maxReportsPerNodePerS;
    n.tokens = Math.min(this.burst(), n.tokens + ((nowMs - n.tokensAtMs) / 1000) * rate);
    n.tokensAtMs = nowMs;
    if (n.tokens < 1) return false;
    n.tokens -= 1;
    return true;
  }

  /** Counts the drop and logs it, at most one line per reason every 10 s (with how many were not logged). */
  private drop(reason: DropReason, detail: string, node?: string): DropReason {
    this.counters.drops[reason]++;
    this.metrics?.drops.inc({ reason });
    if (this.log) {
      const now = this.now();
      const last = this.lastLog.get(reason);
      if (!last || now - last.atMs >= LOG_EVERY_MS) {
        this.log.warn({ reason, node, detail, notLogged: last?.suppressed ?? 0 }, 'sensor report dropped');
        this.lastLog.set(reason, { atMs: now, suppressed: 0 });
      } else last.suppressed++;
    }
    return reason;
  }
}

/** Magnus formula (Sonntag 1990), dew point °C from temperature °C and relative humidity %. */
export function dewPointC(tC: number, rhPct: number): number {
  const a = 17.62;
  const b = 243.12;
  const g = Math.log(rhPct / 100) + (a * tC) / (b + tC);
  return (b * g) / (a - g);
}
