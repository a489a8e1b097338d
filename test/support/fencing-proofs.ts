// What the journal proves for units that cannot check an epoch (docs/chaos.md, "Fencing kinds").
// The simulator journals a vendor unit's writes with epoch 0 — the unit has none — so the chaos
// hall gives each such write its term from outside the unit, and the journal invariants then hold
// it to the same rules as an epoch unit's:
// - lease: who wrote it (the process that owned the TCP connection the unit saw) and the group's
//   epoch writes around it: a write belongs to its writer's term only if that writer holds the
//   newest epoch that has written the group, or the next one to write it (and was about to lead);
// - gateway: the gateway's own record (its log's `epoch raised` chain, its state file, its
//   metrics): a write reaching the unit carries the newest epoch the gateway held when it arrived,
//   and nothing reached the unit but through the gateway.
// Pure functions over what the hall collected; every write it cannot place is a violation.
import type { ClaimSample, JournalEntry } from './journal-invariants.ts';

/** Who held an epoch: a controller node leading a group (from its logs and its API). */
export interface EpochOwner {
  node: string;
  group: string;
  /** When its node logged that it began driving the term (host clock); absent when no line says. */
  drivingAtMs?: number;
}

/**
 * When each term was first seen begun, for `attributeLeaseWrites`: the earliest of the claim
 * samples that show its node leading (driving or not: a paused leader still heartbeats its lease
 * units) and its node's own 'driving the group' line. The claim monitor starts only once the hall
 * has settled, so a term won at start-up is seen in time only by its log line.
 */
export function termsSeen(
  claims: readonly ClaimSample[],
  owners: ReadonlyMap<number, EpochOwner>,
): Map<number, number> {
  const seen = new Map<number, number>();
  const note = (epoch: number, atMs: number) => seen.set(epoch, Math.min(seen.get(epoch) ?? atMs, atMs));
  for (const c of claims) if (c.leader && c.epoch > 0) note(c.epoch, c.atMs);
  for (const [epoch, o] of owners) if (o.drivingAtMs !== undefined) note(epoch, o.drivingAtMs);
  return seen;
}

export type FencingViolationKind =
  | 'lease-writer-unknown'
  | 'lease-writer-not-leader'
  | 'gateway-epoch-chain'
  | 'gateway-foreign-epoch'
  | 'gateway-state'
  | 'gateway-bypassed';

export interface FencingViolation {
  kind: FencingViolationKind;
  ahu: string;
  group?: string;
  entry?: JournalEntry;
  message: string;
}

export interface Attribution {
  /** Journal seq → the epoch of the term the write belongs to. */
  epochs: Map<number, number>;
  /** Accepted writes per writer (a node, or the gateway). */
  writers: Map<string, number>;
  violations: FencingViolation[];
}

/**
 * Gives every accepted write of a lease unit the epoch of its writer's term. `epochUnits` are the
 * units whose journaled epoch is the writer's own (epoch units). Per group, in journal order: let
 * `prev` be the highest epoch that has written the group so far and `next` the first higher one to
 * write it later. A write by the owner of `prev` is of term `prev`; by the owner of `next`, of term
 * `next` (a new leader's first write may reach its lease unit before its epoch unit); by anyone
 * else, of the newest term its writer held before — an older epoch, which the group invariant then
 * reports as two leaders driving the group. A writer that never led the group, or one the hall
 * could not identify, is a violation of its own: such a write cannot be placed in any term.
 */
export function attributeLeaseWrites(
  entries: readonly JournalEntry[],
  groups: Readonly<Record<string, readonly string[]>>,
  leaseUnits: ReadonlySet<string>,
  epochUnits: ReadonlySet<string>,
  writerOf: (e: JournalEntry) => string | null,
  owners: ReadonlyMap<number, EpochOwner>,
  /**
   * When each term was first seen driving (the hall's claim samples, on the host's clock): a write
   * more than `seenSlackMs` before that is not the `next` term's first — it would be a deposed
   * leader's late write, made before it led again.
   */
  termSeenMs: ReadonlyMap<number, number> = new Map(),
  seenSlackMs = 1500,
): Attribution {
  const out: Attribution = { epochs: new Map(), writers: new Map(), violations: [] };
  const sorted = [...entries].filter((e) => e.accepted).sort((a, b) => a.seq - b.seq);
  for (const [group, ahus] of Object.entries(groups)) {
    const lease = ahus.filter((a) => leaseUnits.has(a));
    if (lease.length === 0) continue;
    const mine = sorted.filter((e) => ahus.includes(e.ahu));
    // The points at which the group's highest epoch rises, in journal order.
    const rises: { seq: number; epoch: number }[] = [];
    let top = 0;
    for (const e of mine) {
      if (epochUnits.has(e.ahu) && e.epoch > top) {
        top = e.epoch;
        rises.push({ seq: e.seq, epoch: e.epoch });
      }
    }
    const heldBy = new Map<string, number[]>();
    for (const [epoch, o] of owners) {
      if (o.group !== group) continue;
      const list = heldBy.get(o.node) ?? [];
      heldBy.set(o.node, list);
      list.push(epoch);
    }
    let r = 0;
    for (const e of mine) {
      while (r < rises.length && rises[r]!.seq < e.seq) r++;
      if (!leaseUnits.has(e.ahu)) continue;
      const writer = writerOf(e);
      if (writer === null) {
        out.violations.push({
          kind: 'lease-writer-unknown',
          ahu: e.ahu,
          group,
          entry: e,
          message: `${e.ahu}: accepted write at seq ${e.seq} from ${e.client}, whose process the hall could not identify: it cannot be placed in a term`,
        });
        continue;
      }
      out.writers.set(writer, (out.writers.get(writer) ?? 0) + 1);
      const prev = r > 0 ? rises[r - 1]!.epoch : 0;
      const next = rises[r]?.epoch;
      // A term the writer began after `prev`: the next rise, if it is the writer's (its first lease
      // write may come before its epoch unit's), or one seen leading before the write that no
      // epoch-unit write shows yet (a paused group writes none; its lease units get heartbeats).
      const begun = (x: number) => e.wallMs >= (termSeenMs.get(x) ?? Number.NEGATIVE_INFINITY) - seenSlackMs;
      const newer = (heldBy.get(writer) ?? [])
        .filter(
          (x) =>
            x > prev && (next === undefined || x <= next) && begun(x) && (x === next || termSeenMs.has(x)),
        )
        .sort((a, b) => a - b)[0];
      let epoch: number | undefined;
      if (prev > 0 && owners.get(prev)?.node === writer) epoch = prev;
      else if (newer !== undefined) epoch = newer;
      else epoch = (heldBy.get(writer) ?? []).filter((x) => x <= Math.max(prev, 0)).sort((a, b) => b - a)[0];
      if (epoch === undefined) {
        out.violations.push({
          kind: 'lease-writer-not-leader',
          ahu: e.ahu,
          group,
          entry: e,
          message:
            `${group}: ${writer} wrote ${e.ahu} at seq ${e.seq} (wall ${e.wallMs}) while epoch ${prev} ` +
            `(${owners.get(prev)?.node ?? 'unknown'}) led the group, and it held no term of the group before`,
        });
        continue;
      }
      out.epochs.set(e.seq, epoch);
    }
  }
  return out;
}

/** What a fencing gateway recorded about one unit behind it, across its runs. */
export interface GatewayRecord {
  ahu: string;
  group: string;
  /** Its log, in order: each start's loaded epoch for the unit (0: none), and each raise; read last. */
  events: (
    | { kind: 'start'; atMs: number; epoch: number }
    | { kind: 'raise'; atMs: number; from: number; to: number }
  )[];
  /** The unit's epoch in the state file and in `coolctl_gateway_unit_epoch`, read before the log (null: not read). */
  stateEpoch: number | null;
  metricEpoch: number | null;
}

/**
 * Holds a gateway unit to the gateway's own record: its raises form one rising chain (each from the
 * epoch it held, to a higher one; a restart resumes from its state file); every raise is an epoch a
 * leader of the unit's group held; the state file and the metric end where the chain ends; every
 * write that reached the unit came through the gateway (`viaGateway`: the journal's client belongs
 * to the gateway process; null when the hall could not tell). Each accepted write is given the
 * newest epoch the gateway held when it arrived — the gateway sends a write only with an epoch at
 * least that high and raises before it sends, so that is the write's epoch or a later one of the
 * same leader's (docs/chaos.md says what this rests on).
 */
export function checkGatewayUnit(
  entries: readonly JournalEntry[],
  rec: GatewayRecord,
  owners: ReadonlyMap<number, EpochOwner>,
  viaGateway: (e: JournalEntry) => boolean | null,
): Attribution {
  const out: Attribution = { epochs: new Map(), writers: new Map(), violations: [] };
  const fail = (kind: FencingViolationKind, message: string, entry?: JournalEntry) =>
    out.violations.push({ kind, ahu: rec.ahu, group: rec.group, ...(entry ? { entry } : {}), message });
  const held: { atMs: number; epoch: number }[] = [];
  let current = 0;
  for (const ev of rec.events) {
    if (ev.kind === 'start') {
      if (ev.epoch < current)
        fail(
          'gateway-epoch-chain',
          `${rec.ahu}: the gateway restarted holding epoch ${ev.epoch}, below the ${current} it had raised to`,
        );
      current = ev.epoch;
      held.push({ atMs: ev.atMs, epoch: current });
      continue;
    }
    if (ev.from !== current || ev.to <= ev.from)
      fail(
        'gateway-epoch-chain',
        `${rec.ahu}: the gateway raised ${ev.from} → ${ev.to} while it held ${current}`,
      );
    const o = owners.get(ev.to);
    if (!o || o.group !== rec.group)
      fail(
        'gateway-foreign-epoch',
        `${rec.ahu}: the gateway raised to epoch ${ev.to}, which no leader of ${rec.group} held${o ? ` (${o.node} held it for ${o.group})` : ''}`,
      );
    current = Math.max(current, ev.to);
    held.push({ atMs: ev.atMs, epoch: current });
  }
  // The state file and the metric are read before the log: a raise between the reads leaves them
  // on an earlier link of the chain, never off it or past its end.
  const chain = new Set(held.map((h) => h.epoch));
  for (const [what, epoch] of [
    ['state file holds', rec.stateEpoch],
    ['coolctl_gateway_unit_epoch is', rec.metricEpoch],
  ] as const) {
    if (epoch !== null && epoch !== 0 && (epoch > current || !chain.has(epoch)))
      fail(
        'gateway-state',
        `${rec.ahu}: the gateway's ${what} epoch ${epoch}, which its log never held (it ends at ${current})`,
      );
  }
  let k = 0;
  let newest = 0;
  for (const e of [...entries].filter((x) => x.ahu === rec.ahu).sort((a, b) => a.seq - b.seq)) {
    const via = viaGateway(e);
    if (via === false)
      fail(
        'gateway-bypassed',
        `${rec.ahu}: a write reached the unit from ${e.client}, not through its gateway (seq ${e.seq})`,
        e,
      );
    else if (via === null)
      fail(
        'gateway-bypassed',
        `${rec.ahu}: a write reached the unit from ${e.client}, a process the hall could not identify (seq ${e.seq})`,
        e,
      );
    if (!e.accepted) continue;
    // Journal order is arrival order; the gateway's clock and the simulator's are the host's.
    while (k < held.length && held[k]!.atMs <= e.wallMs) newest = held[k++]!.epoch;
    out.writers.set('gateway', (out.writers.get('gateway') ?? 0) + 1);
    if (newest === 0) {
      fail(
        'gateway-epoch-chain',
        `${rec.ahu}: an accepted write at seq ${e.seq} reached the unit before the gateway held any epoch`,
        e,
      );
      continue;
    }
    out.epochs.set(e.seq, newest);
  }
  return out;
}
