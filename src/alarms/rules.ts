// The alarm rules as pure functions (no I/O, no clock): from one snapshot of a group — or of the
// cluster — and the rules' own memory, the verdict on every condition and the reason for it.
// A verdict is `active` (raise it if it is not open), `clear` (close it if it is) or `hold` (keep
// whatever is stored: the value is inside the hysteresis band, unknown, or the delay runs). `hold`
// is what makes a new leader safe: it has no history, so it never clears what it cannot judge.
// Delay: a condition is active only after it held this long without a break (a sample inside the
// band, or unknown, is a break). Hysteresis: it clears only once the value is back by the band.

import type { AlarmDelays, AlarmLimits } from '../config/alarm-schema.ts';
import { recoveryCause, uncoveredRacksText, type VerdictRecovery } from '../sensors/verdict.ts';
import { flatString } from '../util/flat-string.ts';
import { TypedSlab } from '../util/typed-slab.ts';
import { ALARM_KINDS, type AlarmKind, conditionKey, type Severity } from './alarm.ts';

export type Verdict = 'active' | 'clear' | 'hold';

export interface Condition {
  key: string;
  kind: AlarmKind;
  severity: Severity;
  group: string | null;
  subject: string | null;
  verdict: Verdict;
  /** What a person reads: the value, the limit, how long. */
  message: string;
  value: number | null;
  /** Why this verdict (for the log and the cleared record). */
  reason: string;
}

/** What the rules remember between evaluations of one scope (a group, or the cluster). */
export interface RuleMemory {
  /** Condition key → when (ms) the raw condition started to hold without a break. */
  since: Map<string, number>;
  /** Rack → recent (time ms, hottest inlet °C) samples, oldest first: the rise-rate rule's window. */
  inlets: Map<string, RiseWindow>;
  /** Where the rise-rate windows' rings come from. */
  rings: RingPool;
  /** Group → subject ('-' for none) → condition key by kind (KIND_INDEX): see keyOf. */
  keys: Map<string, Map<string, (string | undefined)[]>>;
  /** A rack list of the sensor store (one per site layout) → its indexes sorted by rack name. */
  order: WeakMap<readonly string[], Uint32Array>;
}

/**
 * One rack's rise-rate samples, oldest first, as (time ms, °C) pairs in one Float64Array ring: an
 * object and two boxed numbers per sample were ~12 MB at 5 000 racks.
 */
export class RiseWindow {
  private readonly ring: Float64Array;
  private first = 0;
  /** Samples held. */
  length = 0;

  /** `ring`: RING_DOUBLES doubles (RingPool.take()). */
  constructor(ring: Float64Array) {
    this.ring = ring;
  }

  tMs(i: number): number {
    return this.ring[((this.first + i) % RING) * 2]!;
  }

  c(i: number): number {
    return this.ring[((this.first + i) % RING) * 2 + 1]!;
  }

  push(tMs: number, c: number): void {
    if (this.length === RING) this.shift();
    const at = ((this.first + this.length) % RING) * 2;
    this.ring[at] = tMs;
    this.ring[at + 1] = c;
    this.length++;
  }

  shift(): void {
    this.first = (this.first + 1) % RING;
    this.length--;
  }
}

/** Rise-rate rings per buffer: a rack's ring alone would be a 512-byte store plus ~200 of overhead. */
const RINGS_PER_SLAB = 16;

/** Hands out rise-rate rings, RINGS_PER_SLAB carved from each buffer (TypedSlab says why). */
export class RingPool {
  private slab: TypedSlab | undefined;
  private left = 0;

  take(): Float64Array {
    if (this.left === 0 || !this.slab) {
      this.slab = new TypedSlab(TypedSlab.room(RINGS_PER_SLAB * RING_DOUBLES * 8, RINGS_PER_SLAB));
      this.left = RINGS_PER_SLAB;
    }
    this.left--;
    return this.slab.f64(RING_DOUBLES);
  }
}

export function newMemory(): RuleMemory {
  return {
    since: new Map(),
    inlets: new Map(),
    rings: new RingPool(),
    keys: new Map(),
    order: new WeakMap(),
  };
}

/** A raw reading of a condition: beyond the limit, back inside the band, in between, or unknown. */
type Level = 'on' | 'off' | 'band' | 'unknown';

/**
 * The delay applied to one raw level. on: active once it held `delayS` (else hold, the clock
 * running); off: clear; band or unknown: hold, and the clock starts over.
 */
export function delayed(
  level: Level,
  key: string,
  delayS: number,
  nowMs: number,
  memory: RuleMemory,
): { verdict: Verdict; heldS: number } {
  const verdict = delayedVerdict(level, key, delayS, nowMs, memory);
  return { verdict, heldS: held[0]! };
}

/**
 * How long the condition of the last delayedVerdict call held, s (0 unless on): a typed slot, as
 * a module `let` holding a double is a new heap number at each write.
 */
const held = new Float64Array(1);

/** delayed(), its held time left in held[0]!: no object per condition judged. */
function delayedVerdict(
  level: Level,
  key: string,
  delayS: number,
  nowMs: number,
  memory: RuleMemory,
): Verdict {
  if (level !== 'on') {
    memory.since.delete(key);
    held[0] = 0;
    return level === 'off' ? 'clear' : 'hold';
  }
  let since = memory.since.get(key);
  if (since === undefined) {
    since = nowMs;
    memory.since.set(key, since);
  }
  held[0] = (nowMs - since) / 1000;
  return held[0]! >= delayS ? 'active' : 'hold';
}

/** Above `limit` is on, at or below `limit − band` is off, in between is the band; null is unknown. */
export function aboveLevel(value: number | null, limit: number, band: number): Level {
  if (value === null || !Number.isFinite(value)) return 'unknown';
  if (value > limit) return 'on';
  return value <= limit - band ? 'off' : 'band';
}

/** Outside [min, max] is on, inside [min + band, max − band] is off, else the band. */
export function rangeLevel(value: number | null, min: number, max: number, band: number): Level {
  if (value === null || !Number.isFinite(value)) return 'unknown';
  if (value > max || value < min) return 'on';
  return value <= max - band && value >= min + band ? 'off' : 'band';
}

export interface UnitSnapshot {
  id: string;
  link: 'up' | 'degraded' | 'down';
  /** What the unit said it runs at the last read (null: not read yet). */
  mode: string | null;
  /** The link is up but the unit refuses every read with this Modbus exception: no reading, as lost. */
  refusal?: { code: number; name: string } | null;
}

/** What the group's leader knows of its group at one instant. */
export interface GroupSnapshot {
  group: string;
  /** Monotonic ms: delays and rates. */
  nowMs: number;
  /** Per rack of the group with inlet sensors: its hottest good inlet, °C (null: none good). */
  rackInletsC: Record<string, number | null> | RackFigures;
  /** Per rack: the highest dew point of its sensor nodes with good temperature and %RH (null: none). */
  rackDewPointsC: Record<string, number | null> | RackFigures;
  verdict: 'ok' | 'degraded' | 'blind';
  /** The verdict is kept while a better one has not held long enough (the view's `recovery`). */
  recovery?: VerdictRecovery | null;
  configuredInletSensors: number;
  units: UnitSnapshot[];
  /** This node drives the group now; `problem`: its leader says it cannot, and why. */
  drive: { driving: boolean; problem: string | null };
  limits: AlarmLimits;
  delays: AlarmDelays;
}

const f1 = (x: number) => x.toFixed(1);

/** Samples a rack's rise-rate window keeps: the rate's start is within 1/RISE_SAMPLES of the window. */
const RISE_SAMPLES = 30;
/** The ring's room: RISE_SAMPLES + 1 fit in a window (both ends count), with a spare. */
const RING = RISE_SAMPLES + 2;
/** A ring's doubles: a (time, °C) pair per slot. */
const RING_DOUBLES = RING * 2;

/** A text, or how to write it when someone reads it. */
type Text = string | (() => string);

/**
 * A condition whose texts are written when first read: a node leading 5 000 racks judges ~25 000
 * conditions a second, and only the few that raise or clear an alarm are ever read.
 */
class JudgedCondition implements Condition {
  readonly key: string;
  readonly kind: AlarmKind;
  readonly severity: Severity;
  readonly group: string | null;
  readonly subject: string | null;
  readonly verdict: Verdict;
  readonly value: number | null;
  private messageText: Text;
  private reasonText: Text;

  constructor(
    key: string,
    kind: AlarmKind,
    group: string | null,
    subject: string | null,
    verdict: Verdict,
    message: Text,
    value: number | null,
    reason: Text,
  ) {
    this.key = key;
    this.kind = kind;
    this.severity = ALARM_KINDS[kind].severity;
    this.group = group;
    this.subject = subject;
    this.verdict = verdict;
    this.value = value;
    this.messageText = message;
    this.reasonText = reason;
  }

  get message(): string {
    if (typeof this.messageText !== 'string') this.messageText = this.messageText();
    return this.messageText;
  }

  get reason(): string {
    if (typeof this.reasonText !== 'string') this.reasonText = this.reasonText();
    return this.reasonText;
  }
}

/**
 * A rack's condition (inlet limits, rise rate, dew point): 20 000 of the ~25 000 a second at
 * 5 000 racks. It keeps the figures its texts are written from, and writes them when first read
 * (no closure or string per condition: the rules made ~25 MB of garbage a second with them).
 */
class RackCondition implements Condition {
  readonly key: string;
  readonly kind: 'inlet-allowable' | 'inlet-recommended' | 'inlet-rise-rate' | 'dew-point';
  readonly severity: Severity;
  readonly group: string;
  readonly subject: string;
  readonly verdict: Verdict;
  readonly value: number | null;
  /** The figure judged, unrounded: inlet °C, rise °C/h, dew point °C (null: unknown). */
  private readonly x: number | null;
  /** The limits: an inlet's limit and band; the rise's limit and window (s); the dew point's min and max. */
  private readonly a: number;
  private readonly b: number;
  private readonly level: Level;
  private readonly heldS: number;
  private readonly delayS: number;
  private texts: readonly [string, string] | undefined;

  constructor(
    key: string,
    kind: RackCondition['kind'],
    group: string,
    rack: string,
    verdict: Verdict,
    value: number | null,
    x: number | null,
    a: number,
    b: number,
    level: Level,
    heldS: number,
    delayS: number,
  ) {
    this.key = key;
    this.kind = kind;
    this.severity = ALARM_KINDS[kind].severity;
    this.group = group;
    this.subject = rack;
    this.verdict = verdict;
    this.value = value;
    this.x = x;
    this.a = a;
    this.b = b;
    this.level = level;
    this.heldS = heldS;
    this.delayS = delayS;
  }

  get message(): string {
    this.texts ??= this.write();
    return this.texts[0];
  }

  get reason(): string {
    this.texts ??= this.write();
    return this.texts[1];
  }

  private write(): readonly [string, string] {
    const { subject: rack, x, a, b, level } = this;
    if (this.kind === 'inlet-rise-rate')
      return [
        `rack ${rack} inlet rising ${x === null ? '(unknown)' : f1(x)} °C/h, faster than ${a} °C/h`,
        level === 'unknown'
          ? `not enough inlet history yet (half of the ${b} s window): kept as it is`
          : `${f1(x ?? 0)} °C/h over the last ${b} s`,
      ];
    if (this.kind === 'dew-point')
      return [
        `rack ${rack} dew point ${x === null ? 'unknown' : `${f1(x)} °C`} outside ${a}…${b} °C`,
        level === 'unknown' ? 'no good temperature and %RH pair: kept as it is' : `dew point ${level}`,
      ];
    const name = this.kind === 'inlet-allowable' ? 'allowable' : 'recommended';
    return [
      `rack ${rack} inlet ${x === null ? 'unknown' : `${f1(x)} °C`} above the ${name} ${a} °C`,
      level === 'unknown'
        ? 'no good inlet reading: kept as it is'
        : level === 'band'
          ? `inside the hysteresis band (${a - b}…${a} °C)`
          : level === 'on'
            ? `above ${a} °C for ${f1(this.heldS)} s (delay ${this.delayS} s)`
            : `at or below ${a - b} °C`,
    ];
  }
}

function condition(
  memory: RuleMemory,
  kind: AlarmKind,
  group: string | null,
  subject: string | null,
  verdict: Verdict,
  message: Text,
  value: number | null,
  reason: Text,
): Condition {
  return new JudgedCondition(
    keyOf(memory, kind, group, subject),
    kind,
    group,
    subject,
    verdict,
    message,
    value,
    reason,
  );
}

/** Each kind's place in a subject's row of keys (keyOf). */
const KIND_INDEX: ReadonlyMap<string, number> = new Map(Object.keys(ALARM_KINDS).map((k, i) => [k, i]));

/**
 * The condition key of (kind, group, subject), made once per memory: a key made afresh is a new
 * string that every Map and Set it meets must flatten and hash, ~25 000 a second at 5 000 racks.
 */
function keyOf(memory: RuleMemory, kind: AlarmKind, group: string | null, subject: string | null): string {
  let bySubject = memory.keys.get(group ?? '-');
  if (!bySubject) {
    bySubject = new Map();
    memory.keys.set(group ?? '-', bySubject);
  }
  let row = bySubject.get(subject ?? '-');
  if (!row) {
    row = new Array<string | undefined>(KIND_INDEX.size).fill(undefined);
    bySubject.set(subject ?? '-', row);
  }
  const i = KIND_INDEX.get(kind)!;
  let key = row[i];
  if (key === undefined) {
    // Kept as long as the memory: one flat string, not the tree of joins the template makes.
    key = flatString(conditionKey(kind, group, subject));
    row[i] = key;
  }
  return key;
}

/**
 * The °C/h over the rack's window, from its oldest sample to (lastT, lastC), or null while there is
 * none or the samples span less than half the window.
 */
function rateTo(samples: RiseWindow, windowS: number, lastT: number, lastC: number): number | null {
  if (samples.length === 0) return null;
  const firstT = samples.tMs(0);
  if (lastT - firstT < (windowS * 1000) / 2) return null;
  return ((lastC - samples.c(0)) * 3_600_000) / (lastT - firstT);
}

/**
 * Every group-scoped condition of one group, with its verdict. Updates `memory`.
 *
 * `open` (the engine's index of open conditions): only the conditions that can change etcd are
 * returned — those active, and those whose key is open (to close, or to keep as seen). The others
 * (clear or held, and not open: ~23 000 a second at 1 000 units, all but a few in a quiet hall)
 * are judged — their delays and rise windows move as before — but get no object or text: they
 * were ~3.5 MB of garbage a second, collected in one burst. Without `open`: every condition.
 */
export function evaluateGroup(
  s: GroupSnapshot,
  memory: RuleMemory,
  open?: ReadonlyMap<string, string>,
): Condition[] {
  const out: Condition[] = [];
  const wanted = (key: string, verdict: Verdict) => !open || verdict === 'active' || open.has(key);
  const g = s.group;
  const { inlet, dewPoint, riseRate } = s.limits;
  const now = s.nowMs;
  const inlets = rackFigures(s.rackInletsC, memory);
  const stepMs = (riseRate.windowS * 1000) / RISE_SAMPLES;
  const windowFrom = now - riseRate.windowS * 1000;
  for (let o = 0; o < inlets.order.length; o++) {
    const i = inlets.order[o]!;
    const rack = inlets.racks[i]!;
    const raw = inlets.c[i]!;
    const c = Number.isNaN(raw) ? null : raw;
    for (let k = 0; k < 2; k++) {
      const kind = k === 0 ? 'inlet-allowable' : 'inlet-recommended';
      const limit = k === 0 ? inlet.allowableC : inlet.recommendedC;
      const key = keyOf(memory, kind, g, rack);
      const level = aboveLevel(c, limit, inlet.hysteresisC);
      const verdict = delayedVerdict(level, key, inlet.delayS, now, memory);
      if (wanted(key, verdict))
        out.push(
          new RackCondition(
            key,
            kind,
            g,
            rack,
            verdict,
            c,
            c,
            limit,
            inlet.hysteresisC,
            level,
            held[0]!,
            inlet.delayS,
          ),
        );
    }
    // The rise-rate window: the hottest good inlet, at most RISE_SAMPLES samples a window (one per
    // evaluation was ~900 objects per rack kept: ~250 MB at 5 000 racks), the rate taken from the
    // oldest to the reading now.
    let samples = memory.inlets.get(rack);
    if (!samples) {
      samples = new RiseWindow(memory.rings.take());
      memory.inlets.set(rack, samples);
    }
    while (samples.length > 0 && samples.tMs(0) < windowFrom) samples.shift();
    if (c !== null && (samples.length === 0 || now - samples.tMs(samples.length - 1) >= stepMs))
      samples.push(now, c);
    const rate = c === null ? null : rateTo(samples, riseRate.windowS, now, c);
    const rateKey = keyOf(memory, 'inlet-rise-rate', g, rack);
    const rl = aboveLevel(rate, riseRate.limitCPerH, riseRate.hysteresisCPerH);
    const rv = delayedVerdict(rl, rateKey, riseRate.delayS, now, memory);
    if (wanted(rateKey, rv))
      out.push(
        new RackCondition(
          rateKey,
          'inlet-rise-rate',
          g,
          rack,
          rv,
          rate === null ? null : Math.round(rate * 10) / 10,
          rate,
          riseRate.limitCPerH,
          riseRate.windowS,
          rl,
          held[0]!,
          riseRate.delayS,
        ),
      );
  }
  const dews = rackFigures(s.rackDewPointsC, memory);
  for (let o = 0; o < dews.order.length; o++) {
    const i = dews.order[o]!;
    const rack = dews.racks[i]!;
    const raw = dews.c[i]!;
    const dp = Number.isNaN(raw) ? null : raw;
    const key = keyOf(memory, 'dew-point', g, rack);
    const level = rangeLevel(dp, dewPoint.minC, dewPoint.maxC, dewPoint.hysteresisC);
    const verdict = delayedVerdict(level, key, dewPoint.delayS, now, memory);
    if (wanted(key, verdict))
      out.push(
        new RackCondition(
          key,
          'dew-point',
          g,
          rack,
          verdict,
          dp === null ? null : Math.round(dp * 10) / 10,
          dp,
          dewPoint.minC,
          dewPoint.maxC,
          level,
          held[0]!,
          dewPoint.delayS,
        ),
      );
  }
  // A group with no inlet sensors configured runs blind by its config, not by a fault: no alarm.
  if (s.configuredInletSensors > 0) {
    for (let k = 0; k < 2; k++) {
      const kind = k === 0 ? 'sensors-blind' : 'sensors-degraded';
      const bad = s.verdict === (k === 0 ? 'blind' : 'degraded');
      const key = keyOf(memory, kind, g, null);
      const verdict = delayedVerdict(bad ? 'on' : 'off', key, s.delays.sensorsS, now, memory);
      if (!wanted(key, verdict)) continue;
      const heldS = held[0]!;
      out.push(
        condition(
          memory,
          kind,
          g,
          null,
          verdict,
          bad ? () => sensorTrustText(g, s, memory) : `group ${g}: sensor trust ${s.verdict}`,
          null,
          `verdict ${s.verdict}${bad ? ` for ${f1(heldS)} s (delay ${s.delays.sensorsS} s)` : ''}`,
        ),
      );
    }
  }
  // What the units report only counts while this node drives them (its reads are current).
  for (const u of s.units) {
    const known = s.drive.driving && u.link !== 'down' && u.mode !== null && u.mode !== 'unknown';
    for (let k = 0; k < 3; k++) {
      const kind: AlarmKind = k === 0 ? 'unit-comm-loss' : k === 1 ? 'unit-tripped' : 'unit-fallback';
      const level: Level =
        k === 0
          ? !s.drive.driving
            ? 'unknown'
            : u.link === 'down' || u.refusal
              ? 'on'
              : 'off'
          : !known
            ? 'unknown'
            : u.mode === (k === 1 ? 'tripped' : 'fallback')
              ? 'on'
              : 'off';
      const delayS = k === 0 ? s.delays.unitCommLossS : k === 1 ? 0 : s.delays.unitFallbackS;
      const key = keyOf(memory, kind, g, u.id);
      const verdict = delayedVerdict(level, key, delayS, now, memory);
      if (!wanted(key, verdict)) continue;
      const message =
        k === 0
          ? u.refusal && u.link !== 'down'
            ? `unit ${u.id}: answers its group's leader but refuses every read (Modbus exception ${u.refusal.code}, ${u.refusal.name}): check its point map or profile`
            : `unit ${u.id}: no link from its group's leader`
          : k === 1
            ? `unit ${u.id} tripped`
            : `unit ${u.id} in watchdog fallback (its own local control)`;
      out.push(
        condition(memory, kind, g, u.id, verdict, message, null, () =>
          level === 'unknown'
            ? 'not driven by this node or not read: kept as it is'
            : `link ${u.link}, mode ${u.mode}${u.refusal ? `, every read refused with exception ${u.refusal.code}` : ''}`,
        ),
      );
    }
  }
  const ndKey = keyOf(memory, 'group-not-driven', g, null);
  const nd = delayedVerdict(
    s.drive.problem !== null ? 'on' : s.drive.driving ? 'off' : 'unknown',
    ndKey,
    s.delays.groupNotDrivenS,
    now,
    memory,
  );
  if (wanted(ndKey, nd))
    out.push(
      condition(
        memory,
        'group-not-driven',
        g,
        null,
        nd,
        `group ${g} not driven by its leader${s.drive.problem ? `: ${s.drive.problem}` : ''}`,
        null,
        s.drive.problem ?? (s.drive.driving ? 'driven' : 'its term is starting: kept as it is'),
      ),
    );
  return out;
}

/**
 * Per rack figures as the store keeps them: the racks, and per rack its figure (NaN: none). The
 * engine hands the shared sensor figures over as they are (no object keyed by rack each second).
 */
export interface RackFigures {
  racks: readonly string[];
  c: Float64Array;
}

/** The racks, their figures, and the order they are judged in (by rack name, as ever). */
function rackFigures(
  x: Record<string, number | null> | RackFigures,
  memory: RuleMemory,
): { racks: readonly string[]; c: Float64Array; order: Uint32Array } {
  if (isRackFigures(x)) {
    // The rack list is the store's, made once per site layout: so is its sorted order.
    let order = memory.order.get(x.racks);
    if (!order) {
      order = Uint32Array.from(x.racks.keys()).sort((a, b) => {
        const ra = x.racks[a]!;
        const rb = x.racks[b]!;
        return ra < rb ? -1 : ra > rb ? 1 : 0;
      });
      memory.order.set(x.racks, order);
    }
    return { racks: x.racks, c: x.c, order };
  }
  const racks = Object.keys(x).sort();
  const c = Float64Array.from(racks, (r) => x[r] ?? Number.NaN);
  return { racks, c, order: Uint32Array.from(racks.keys()) };
}

/**
 * "group zone-1: sensor trust degraded — 1 rack without a good inlet sensor: RA-03": the racks
 * nobody watches are what an operator must go and look at (coverage alone can hide them). Read
 * again while the alarm is open: its text follows the racks (the engine rewrites it, rate-bound).
 */
function sensorTrustText(g: string, s: GroupSnapshot, memory: RuleMemory): string {
  const { racks, c, order } = rackFigures(s.rackInletsC, memory);
  const uncovered: string[] = [];
  for (const i of order) if (Number.isNaN(c[i]!)) uncovered.push(racks[i]!);
  const head = `group ${g}: sensor trust ${s.verdict}`;
  // With nothing good at all, every rack is unwatched: naming them says nothing more.
  if (uncovered.length > 0 && uncovered.length < racks.length)
    return `${head} — ${uncoveredRacksText(uncovered)}`;
  // Held while the better verdict proves itself: no running seconds here (a text that changed
  // every check would be rewritten every TEXT_REVISE_MS for nothing).
  return s.recovery
    ? `${head} — recovering: ${recoveryCause(s.recovery)}, until that holds ${s.recovery.needS} s`
    : head;
}

function isRackFigures(x: Record<string, number | null> | RackFigures): x is RackFigures {
  return x.c instanceof Float64Array && Array.isArray(x.racks);
}

/** What every node knows of the cluster from etcd. */
export interface ClusterSnapshot {
  nowMs: number;
  /** The nodes of the controller config. */
  configuredNodes: readonly string[];
  /** The live members (a node's key lives with its etcd lease). */
  members: readonly string[];
  groups: readonly { id: string; leader: string | null }[];
  delays: AlarmDelays;
}

/**
 * Who raises and clears the cluster-scoped alarms: the live member whose name sorts first. Every
 * node reads the same membership from etcd, so they agree but for a watch's delay; a node that
 * dies leaves the membership with its lease, and the next name takes over. Two nodes that briefly
 * both believe it is them still cannot raise one condition twice (the store's transaction).
 */
export function clusterOwner(members: readonly string[]): string | null {
  return [...members].sort()[0] ?? null;
}

export function evaluateCluster(s: ClusterSnapshot, memory: RuleMemory): Condition[] {
  const out: Condition[] = [];
  const live = new Set(s.members);
  for (const node of [...s.configuredNodes].sort()) {
    const key = keyOf(memory, 'node-down', null, node);
    const d = delayed(live.has(node) ? 'off' : 'on', key, s.delays.nodeDownS, s.nowMs, memory);
    out.push(
      condition(
        memory,
        'node-down',
        null,
        node,
        d.verdict,
        `node ${node} is not a member of the cluster`,
        null,
        live.has(node) ? 'a member' : `not a member for ${f1(d.heldS)} s (delay ${s.delays.nodeDownS} s)`,
      ),
    );
  }
  for (const g of s.groups) {
    const key = keyOf(memory, 'group-leaderless', g.id, null);
    const d = delayed(g.leader === null ? 'on' : 'off', key, s.delays.leaderlessS, s.nowMs, memory);
    out.push(
      condition(
        memory,
        'group-leaderless',
        g.id,
        null,
        d.verdict,
        `group ${g.id} has no leader`,
        null,
        g.leader === null
          ? `no leader for ${f1(d.heldS)} s (delay ${s.delays.leaderlessS} s)`
          : `led by ${g.leader}`,
      ),
    );
  }
  return out;
}
