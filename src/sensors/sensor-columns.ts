// The store's state as columns: a sensor is a row of `readings`, `marks` and `diffs`, a node a row of
// `nodeFigures` and of `recentSeqs`, laid out here once; the ingest, quality, order and view modules
// all read these indices from here. A node's sensors take consecutive rows in its layout's order.
import type { SensingSettings, SensorKindName } from '../config/site-schema.ts';
import type { SourceName } from './sensor-view.ts';

export const INLET_KINDS: ReadonlySet<string> = new Set(['inlet-top', 'inlet-middle', 'inlet-bottom']);
/** Physical ranges of the other kinds; inlets take theirs from the site's `sensing`. */
export const RANGE: Record<string, readonly [number, number]> = {
  humidity: [0, 100],
  'subfloor-pressure': [-100, 500],
};
export const NOISE_WINDOW = 8;
/**
 * Seqs remembered per node, to tell a duplicate from a late report: mesh retries and MQTT
 * redeliveries come within seconds, and 16 reports are minutes; an older repeat counts as late.
 * 4 bytes each: 16 instead of 32 is 0.75 MB less at 11 765 nodes.
 */
export const SEQ_WINDOW = 16;
/** The sources a reading comes from, in the order of their code in the `marks` SOURCE column. */
export const SOURCES: readonly SourceName[] = ['mqtt', 'modbus'];

// Modules that index the columns bind these indices as their own constants (`const { MARK } =
// columns`), not as imports: V8's optimizing compiler folds a module's own constants into its hot
// loops, but reads an imported binding (live, so never constant) on every use.
// A sensor's changing state is row r of three typed arrays, a node's sensors in consecutive rows: a
// report touches a few adjacent cache lines instead of an object graph per sensor, which at 20 000
// nodes is what ingest spends its time on; and 50 000 sensors take 3 MB, not 6.4 (one Float64Array
// row of 16 did). `readings` (Float64Array, READING columns):
export const VALUE = 0;
/** Monotonic ms when the gateway got the reading (MQTT: arrival; Modbus: poll time − age). */
export const AT_MS = 1;
export const READING = 2;
// `nodeFigures` (Float64Array, NODE_FIGURES columns per node): a node's fractional and NaN-able
// figures. As object fields each was a boxed number of its own (V8 keeps a double field as a heap
// number): ~70 000 objects at 11 765 nodes for every collection of the old generation to mark.
export const MIN_GAP_S = 0;
export const LOSS_EWMA = 1;
export const HOPS = 2;
export const RSSI_DBM = 3;
export const BATTERY_PCT = 4;
export const TOKENS = 5;
export const TOKENS_AT_MS = 6;
/** Monotonic ms the node's newest applied report was received: how late an older seq is. */
export const NEWEST_AT_MS = 7;
/** Monotonic ms the store last followed the node into a new count (−∞: never). */
export const RESTART_AT_MS = 8;
export const NODE_FIGURES = 9;
// `marks` (Uint16Array, MARK columns): small counters and flags.
export const HAS = 0;
/** Where the reading came from: its index in SOURCES. */
export const SOURCE = 1;
/** Consecutive values equal to the one before (saturates at 65 535; the stuck rule needs ≤ 1 000). */
export const REPEATS = 2;
export const SPIKE = 3;
/** How many of the sensor's `diffs` slots hold a difference (0…NOISE_WINDOW), and the slot the next one goes to. */
export const DIFF_COUNT = 4;
export const DIFF_NEXT = 5;
/** 1 while the inlet is judged noisy (set and cleared as each reading comes: see judgeNoise). */
export const NOISY = 6;
export const MARK = 7;
export const MAX_REPEATS = 0xffff;
// `diffs` (Float32Array, NOISE_WINDOW per sensor): the last successive differences, a ring.

export interface GatewayRt {
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
export interface Layout {
  ids: string[];
  kinds: SensorKindName[];
  isInlet: boolean[];
  /** Physical range, resolved once: the hot path compares two numbers. */
  lo: number[];
  hi: number[];
  position: Map<string, number>;
}

export interface NodeRt {
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

/**
 * The store's columns and the settings its rules judge them by: what the rule modules take, one
 * object (the hot path reads its fields as it read the store's own).
 */
export interface SensorColumns {
  readonly readings: Float64Array;
  readonly marks: Uint16Array;
  readonly diffs: Float32Array;
  /** SEQ_WINDOW per node: the ring of its recent seqs. */
  readonly recentSeqs: Uint32Array;
  readonly nodeFigures: Float64Array;
  readonly s: Required<SensingSettings>;
  /** Simulation only: site time runs this many times faster than the wall clock. */
  readonly timeScale: number;
  /** The most rate-limit tokens a node holds. */
  readonly burstTokens: number;
  /**
   * This report's inlet steps, by position in the node's layout (the spike rule's witnesses):
   * `stepOf[pos]` counts only while `stepReport[pos]` is the current report's number, `reportNo`.
   */
  stepOf: Float64Array;
  stepReport: Uint32Array;
  reportNo: number;
}

/**
 * The layout of a node with sensors `sensors`, from `layouts` if a node with the same sensors (ids
 * and kinds, in order) has one, else made and kept there.
 */
export function layoutOf(
  layouts: Map<string, Layout>,
  sensors: readonly { id: string; kind: SensorKindName }[],
  inletRangeC: readonly [number, number],
): Layout {
  const key = sensors.map((sc) => `${sc.id}\u0000${sc.kind}`).join('\u0001');
  let layout = layouts.get(key);
  if (!layout) {
    layout = { ids: [], kinds: [], isInlet: [], lo: [], hi: [], position: new Map() };
    for (const sc of sensors) {
      const isInlet = INLET_KINDS.has(sc.kind);
      const [lo, hi] = isInlet
        ? inletRangeC
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
  return layout;
}

/**
 * Node number `index` of the site, its sensors from row `firstRow` on: its `nodeFigures` row set as
 * for a node not heard from yet, and its runtime record.
 */
export function newNode(
  c: SensorColumns,
  index: number,
  id: string,
  rack: string,
  gw: GatewayRt,
  intervalMs: number,
  layout: Layout,
  firstRow: number,
): NodeRt {
  const f = index * NODE_FIGURES;
  const nf = c.nodeFigures;
  nf[f + MIN_GAP_S] = (0.9 * intervalMs) / 1000;
  nf[f + LOSS_EWMA] = 0;
  nf[f + HOPS] = Number.NaN;
  nf[f + RSSI_DBM] = Number.NaN;
  nf[f + BATTERY_PCT] = Number.NaN;
  nf[f + TOKENS] = c.burstTokens;
  nf[f + TOKENS_AT_MS] = 0;
  nf[f + NEWEST_AT_MS] = Number.NaN;
  nf[f + RESTART_AT_MS] = Number.NEGATIVE_INFINITY;
  return {
    id,
    rack,
    gw,
    intervalMs,
    figures: f,
    layout,
    firstRow,
    lastSeq: 0,
    seqBase: index * SEQ_WINDOW,
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
}

/** Node `p` of the columns `prev` (a replaced store's) into `n`; `from[pos]` is the row offset in `p` of `n`'s sensor `pos` (−1: new). */
export function carryNode(
  c: SensorColumns,
  prev: SensorColumns,
  p: NodeRt,
  n: NodeRt,
  from: Int32Array,
): void {
  const nf = c.nodeFigures;
  const pf = prev.nodeFigures;
  // MIN_GAP_S stays the new config's (it follows reportIntervalS); the rest is what the node did.
  for (let k = 0; k < NODE_FIGURES; k++) if (k !== MIN_GAP_S) nf[n.figures + k] = pf[p.figures + k]!;
  nf[n.figures + TOKENS] = Math.min(c.burstTokens, nf[n.figures + TOKENS]!);
  for (let i = 0; i < SEQ_WINDOW; i++) c.recentSeqs[n.seqBase + i] = prev.recentSeqs[p.seqBase + i]!;
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
    for (let k = 0; k < READING; k++) c.readings[row * READING + k] = prev.readings[prow * READING + k]!;
    for (let k = 0; k < MARK; k++) c.marks[row * MARK + k] = prev.marks[prow * MARK + k]!;
    for (let k = 0; k < NOISE_WINDOW; k++)
      c.diffs[row * NOISE_WINDOW + k] = prev.diffs[prow * NOISE_WINDOW + k]!;
  }
}

/**
 * Per sensor of layout `to`, its position in layout `from` — the sensor of the same id and kind —
 * or −1. Nodes share layouts, so a site has a handful of pairs: each is worked out once in `cache`.
 */
export function layoutPositions(
  cache: Map<Layout, Map<Layout, Int32Array>>,
  from: Layout,
  to: Layout,
): Int32Array {
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
