// The quality rules of a sensor's readings, as functions over the store's columns: what a reading
// changes (repeats, spike, noise window) as it is applied, and the flags judged from the columns.
// Pure of I/O; no allocation per reading. Flags are bits, so one rule set serves views and snapshots.
import type { NodeRt, SensorColumns } from './sensor-columns.ts';
import * as columns from './sensor-columns.ts';
import type { SensorFlag } from './sensor-view.ts';

// Column indices bound as this module's own constants (see sensor-columns.ts): folded into the
// hot loops, where an imported binding would be read on every use.
const {
  AT_MS,
  BATTERY_PCT,
  DIFF_COUNT,
  DIFF_NEXT,
  HAS,
  LOSS_EWMA,
  MARK,
  MAX_REPEATS,
  MIN_GAP_S,
  NOISE_WINDOW,
  NOISY,
  READING,
  REPEATS,
  RSSI_DBM,
  SOURCE,
  SPIKE,
  VALUE,
} = columns;

const BAD_FLAGS: ReadonlySet<SensorFlag> = new Set([
  'stale',
  'stuck',
  'out-of-range',
  'spike',
  'noisy',
  'gateway-offline',
]);

/** A noisy inlet is good again once its noise is at or below this share of `noisySigmaC`. */
const NOISY_CLEARS_AT = 0.5;
/** A jump is the air's, not a spike, when another inlet of its node moved this share of it the same way. */
const SPIKE_WITNESS_SHARE = 0.5;
const STUCK_EPSILON = 0.001;

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
export const BAD_BITS = FLAG_BITS.filter(([f]) => BAD_FLAGS.has(f)).reduce((m, [, b]) => m | b, 0);

/**
 * A jump that another inlet of the same node made with it — the same way, at least half as
 * far, in the same report — is the air moving (a heat-load step lifts a rack's top, middle and
 * bottom together, the top most), not a spike: the sensors agree. A lone jump stays a spike.
 */
export function witnessSpikes(c: SensorColumns, node: NodeRt): void {
  const layout = node.layout;
  for (let pos = 0; pos < layout.ids.length; pos++) {
    const m = (node.firstRow + pos) * MARK;
    if (c.marks[m + SPIKE] !== 1 || c.stepReport[pos] !== c.reportNo) continue;
    const d = c.stepOf[pos]!;
    for (let other = 0; other < layout.ids.length; other++) {
      if (other === pos || c.stepReport[other] !== c.reportNo) continue;
      const w = c.stepOf[other]!;
      if (w * d > 0 && Math.abs(w) >= Math.abs(d) * SPIKE_WITNESS_SHARE) {
        c.marks[m + SPIKE] = 0;
        break;
      }
    }
  }
}

/**
 * Sensor `pos` of `node` takes `value`; the rules its flags are computed from run here. Whether
 * the step is a spike (before its node's other inlets are heard: witnessSpikes).
 */
export function applyReading(
  c: SensorColumns,
  node: NodeRt,
  pos: number,
  value: number,
  source: number,
  atMs: number,
): boolean {
  const readings = c.readings;
  const marks = c.marks;
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
      c.diffs[row * NOISE_WINDOW + next] = d;
      marks[m + DIFF_NEXT] = next === NOISE_WINDOW - 1 ? 0 : next + 1;
      if (marks[m + DIFF_COUNT]! < NOISE_WINDOW) marks[m + DIFF_COUNT]!++;
      if (node.layout.isInlet[pos]) judgeNoise(c, row);
    }
    if (layout.isInlet[pos] && bothInRange) {
      // A change faster than air can make it; at least 0.9 of the report interval is assumed
      // between two samples, so a late or bunched delivery does not look like a spike.
      const dtS =
        Math.max((atMs - readings[o + AT_MS]!) / 1000, c.nodeFigures[node.figures + MIN_GAP_S]!) *
        c.timeScale;
      marks[m + SPIKE] = Math.abs(d) / dtS > c.s.spikeCPerS ? 1 : 0;
      c.stepOf[pos] = d;
      c.stepReport[pos] = c.reportNo;
    } else marks[m + SPIKE] = 0;
  }
  readings[o + VALUE] = value;
  readings[o + AT_MS] = atMs;
  marks[m + HAS] = 1;
  marks[m + SOURCE] = source;
  return marks[m + SPIKE] === 1;
}

/** Every flag of sensor `pos` of `n`, the node's included: what snapshots list and views judge by. */
export function flagBits(c: SensorColumns, n: NodeRt, pos: number, now: number): number {
  return sensorBits(c, n, pos, now) | nodeBits(c, n);
}

/** The sensor's own flags (the node's come from nodeBits). */
export function sensorBits(c: SensorColumns, n: NodeRt, pos: number, now: number): number {
  const readings = c.readings;
  const marks = c.marks;
  const layout = n.layout;
  const row = n.firstRow + pos;
  const o = row * READING;
  const m = row * MARK;
  const has = marks[m + HAS] === 1;
  let bits = 0;
  if (!has || now - readings[o + AT_MS]! > c.s.staleIntervals * n.intervalMs) bits |= BIT.stale;
  if (has && !inRange(readings[o + VALUE]!, layout.lo[pos]!, layout.hi[pos]!)) bits |= BIT['out-of-range'];
  if (marks[m + REPEATS]! >= c.s.stuckReports - 1) bits |= BIT.stuck;
  if (marks[m + SPIKE] === 1) bits |= BIT.spike;
  if (marks[m + NOISY] === 1) bits |= BIT.noisy;
  return bits;
}

export function nodeBits(c: SensorColumns, n: NodeRt): number {
  let bits = 0;
  if (!n.gw.online) bits |= BIT['gateway-offline'];
  const nf = c.nodeFigures;
  if (nf[n.figures + BATTERY_PCT]! < c.s.lowBatteryPct) bits |= BIT['low-battery'];
  if (nf[n.figures + RSSI_DBM]! < c.s.weakRssiDbm) bits |= BIT['weak-link'];
  if (nf[n.figures + LOSS_EWMA]! * 100 > c.s.lossyPct) bits |= BIT.lossy;
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
function judgeNoise(c: SensorColumns, row: number): void {
  const m = row * MARK;
  const n = c.marks[m + DIFF_COUNT]!;
  if (n < 4) return;
  const diffs = c.diffs;
  const d0 = row * NOISE_WINDOW;
  // The ring's oldest difference: slot 0 until it is full, then the one written next.
  const first = n < NOISE_WINDOW ? 0 : c.marks[m + DIFF_NEXT]!;
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
  const limit = c.s.noisySigmaC;
  if ((travelled - Math.abs(net)) / n > limit) c.marks[m + NOISY] = 1;
  else if (
    (travelled - Math.abs(net)) / n <= limit * NOISY_CLEARS_AT &&
    Math.sqrt(curvature / (n - 1) / 6) <= limit * NOISY_CLEARS_AT
  )
    c.marks[m + NOISY] = 0;
}

function inRange(v: number, lo: number, hi: number): boolean {
  return v >= lo && v <= hi && Number.isFinite(v);
}

export function flagList(bits: number): SensorFlag[] {
  const flags: SensorFlag[] = [];
  for (const [flag, bit] of FLAG_BITS) if (bits & bit) flags.push(flag);
  return flags;
}
