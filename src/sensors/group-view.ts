// The group view control reads: one walk of a group's sensors gives every figure of GroupFigures
// (the verdict held worse at once, better only once it held), and the snapshots and node health
// people read. It only reads the columns; a walk's figures are kept as the group's latest.
import { BAD_BITS, flagBits, flagList, nodeBits, sensorBits } from './reading-quality.ts';
import * as columns from './sensor-columns.ts';
import { type NodeRt, type SensorColumns, SOURCES } from './sensor-columns.ts';
import {
  type GroupFigures,
  type NodeHealth,
  type SensorSnapshot,
  SHARED_FIGURES_MAX_AGE_MS,
} from './sensor-view.ts';
import { flapWindowMs, judgeVerdict, VerdictHold, type VerdictHoldMemory } from './verdict.ts';

// Column indices bound as this module's own constants (see sensor-columns.ts): folded into the
// hot loops, where an imported binding would be read on every use.
const { AT_MS, BATTERY_PCT, HAS, HOPS, LOSS_EWMA, MARK, READING, RSSI_DBM, SOURCE, VALUE } = columns;

/**
 * A group whose figures were taken at most this far apart is followed by this node's verdict hold
 * (two default control periods, with their jitter): it saw every departure from ok its leader saw.
 */
const FOLLOW_GAP_MS = 2 * SHARED_FIGURES_MAX_AGE_MS;

/** The store's clocks: monotonic ms for every age, wall ms only to date what people read. */
export interface StoreClock {
  readonly now: () => number;
  readonly wallNow: () => number;
}

export interface GroupRt {
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

/** Group `id` of `nodes` (those of its nodes the site has), with its racks worked out once. */
export function newGroup(id: string, nodes: NodeRt[]): GroupRt {
  const withInlets = nodes.filter((n) => n.layout.isInlet.includes(true));
  const configuredInlets = withInlets.reduce((sum, n) => sum + n.layout.isInlet.filter(Boolean).length, 0);
  const inletRacks = [...new Set(withInlets.map((n) => n.rack))];
  const dewRacks = [...new Set(nodes.filter((n) => n.layout.kinds.includes('humidity')).map((n) => n.rack))];
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
  return {
    id,
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
  };
}

/** One walk of the group's sensors: every figure of GroupFigures, kept as the group's latest. */
export function takeFigures(c: SensorColumns, clock: StoreClock, g: GroupRt, now: number): GroupFigures {
  if (!(now - g.lastAtMs <= FOLLOW_GAP_MS)) g.followedSinceMs = now;
  const readings = c.readings;
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
    if ((nodeBits(c, n) & BAD_BITS) !== 0) continue;
    const layout = n.layout;
    const ri = g.nodeInletRack[i]!;
    let t: number | undefined;
    let rh: number | undefined;
    for (let pos = 0; pos < layout.ids.length; pos++) {
      if ((sensorBits(c, n, pos, now) & BAD_BITS) !== 0) continue;
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
    c.s,
  );
  // Site time, as the stale rule's intervals are: a simulated hall recovers in its own seconds.
  const { verdict, reasons, recovery } = g.hold.judge(
    { verdict: raw.verdict, reasons: raw.reasons, uncoveredRacks },
    now * c.timeScale,
    c.s.verdictRecoveryS * 1000,
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
      atMs: wallAt(clock, now),
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

/** SensorStore.resumeVerdictHold's rule, for group `g`. */
export function resumeHold(
  c: SensorColumns,
  g: GroupRt,
  memory: VerdictHoldMemory,
  rowAgeMs: number,
  now: number,
): 'resumed' | 'kept' {
  const age = Math.max(0, rowAgeMs);
  const windowMs = flapWindowMs(c.s.verdictRecoveryS * 1000) / c.timeScale;
  const followed = now - g.lastAtMs <= FOLLOW_GAP_MS && g.followedSinceMs <= now - age - windowMs;
  if (followed) return 'kept';
  const racks = memory.racks?.filter((r) => g.inletRacks.includes(r));
  g.hold.resume({ ...memory, ...(racks ? { racks } : {}) }, now * c.timeScale, age * c.timeScale);
  return 'resumed';
}

export function snapshotOf(
  c: SensorColumns,
  clock: StoreClock,
  n: NodeRt,
  pos: number,
  now: number,
): SensorSnapshot {
  const row = n.firstRow + pos;
  const o = row * READING;
  const has = c.marks[row * MARK + HAS] === 1;
  const bits = flagBits(c, n, pos, now);
  return {
    node: n.id,
    sensor: n.layout.ids[pos]!,
    kind: n.layout.kinds[pos]!,
    rack: n.rack,
    value: has ? c.readings[o + VALUE]! : null,
    source: has ? SOURCES[c.marks[row * MARK + SOURCE]!]! : null,
    receivedAtMs: has ? wallAt(clock, c.readings[o + AT_MS]!) : null,
    ageMs: has ? now - c.readings[o + AT_MS]! : null,
    flags: flagList(bits),
    quality: bits & BAD_BITS ? 'bad' : 'good',
  };
}

/** Wall ms of monotonic instant `monoMs`. */
export function wallAt(clock: StoreClock, monoMs: number): number {
  return clock.wallNow() - (clock.now() - monoMs);
}

/** Every node's mesh health, in the store's order. */
export function nodeHealthOf(c: SensorColumns, nodes: Map<string, NodeRt>): NodeHealth[] {
  const nf = c.nodeFigures;
  return [...nodes.values()].map((n) => ({
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
    flags: flagList(nodeBits(c, n)),
  }));
}

export function orNull(v: number): number | null {
  return Number.isNaN(v) ? null : v;
}

/** Magnus formula (Sonntag 1990), dew point °C from temperature °C and relative humidity %. */
export function dewPointC(tC: number, rhPct: number): number {
  const a = 17.62;
  const b = 243.12;
  const g = Math.log(rhPct / 100) + (a * tC) / (b + tC);
  return (b * g) / (a - g);
}
