// When each shelf this node knows of ends, on this node's monotonic clock. A shelf's end is stored
// as wall ms (what an operator reads, and what a node that takes over starts from), but judged on
// the wall clock, an NTP step would end every shelf at once (a step forward) or make one last as
// long as the step (back: a year, for a gateway without a clock battery that booted at its build
// date) — a shelf is a time-limited promise (ISA-18.2). So a node turns a shelf into a monotonic
// deadline once, when it first sees it, and a later step changes nothing:
// - a shelf put on while this node was watching the index (it read it a moment before and the shelf
//   was not there) lasts its full duration from now: both clocks may be wrong, the duration is not;
// - one this node finds already on (at start, after an etcd outage) lasts what the wall clock says
//   is left, but never more than its duration (untilMs − atMs, both the shelving node's clock) and
//   never less than nothing.
import { MAX_SHELF_MS, type StoredAlarm } from './alarm.ts';

/** Index reads further apart than this: a shelf that appeared in between may be old. */
const WATCHING_GAP_MS = 10_000;

interface End {
  /** The shelf's wall end as stored: another value is another shelf (shelved again). */
  untilMs: number;
  /** Its end on this node's monotonic clock. */
  endMs: number;
}

export class ShelfClock {
  private readonly ends = new Map<string, End>();
  private lastSyncMs = Number.NEGATIVE_INFINITY;
  private readonly wallNow: () => number;
  private readonly monoNow: () => number;

  constructor(wallNow: () => number, monoNow: () => number = () => performance.now()) {
    this.wallNow = wallNow;
    this.monoNow = monoNow;
  }

  /** Ids of the index's shelves this node has no deadline for yet (their records are needed). */
  unknown(shelves: ReadonlyMap<string, number>): string[] {
    return [...shelves].flatMap(([id, untilMs]) => (this.ends.get(id)?.untilMs === untilMs ? [] : [id]));
  }

  /**
   * The shelved index as read now (id → wall end) and the records of the new ones: new shelves get
   * their deadline, and the ones the index no longer lists are forgotten.
   */
  sync(shelves: ReadonlyMap<string, number>, records: readonly StoredAlarm[]): void {
    const now = this.monoNow();
    const watching = now - this.lastSyncMs <= WATCHING_GAP_MS;
    this.lastSyncMs = now;
    for (const id of [...this.ends.keys()]) if (!shelves.has(id)) this.ends.delete(id);
    const byId = new Map(records.map((a) => [a.id, a]));
    for (const [id, untilMs] of shelves) {
      if (this.ends.get(id)?.untilMs === untilMs) continue;
      const shelf = byId.get(id)?.shelf;
      // No record saying when it was put on (gone, unreadable): the longest a shelf may be.
      const durationMs = shelf?.untilMs === untilMs ? untilMs - shelf.atMs : MAX_SHELF_MS;
      this.track(id, untilMs, durationMs, watching && shelf?.untilMs === untilMs);
    }
  }

  /** A shelf this node just put on (or read whole): tracked at once, not at the next index read. */
  observe(a: StoredAlarm, justShelved: boolean): void {
    if (!a.shelf || a.clearedAtMs !== null) {
      this.ends.delete(a.id);
      return;
    }
    if (this.ends.get(a.id)?.untilMs === a.shelf.untilMs) return;
    this.track(a.id, a.shelf.untilMs, a.shelf.untilMs - a.shelf.atMs, justShelved);
  }

  /** Whether `a` is shelved now by this node's clock (one not seen before is tracked from here). */
  shelved(a: StoredAlarm): boolean {
    if (!a.shelf || a.clearedAtMs !== null) return false;
    this.observe(a, false);
    return this.monoNow() < this.ends.get(a.id)!.endMs;
  }

  /** The shelves whose end has come on this node's clock: id → the wall end they were stored with. */
  due(): Map<string, number> {
    const now = this.monoNow();
    const out = new Map<string, number>();
    for (const [id, e] of this.ends) if (now >= e.endMs) out.set(id, e.untilMs);
    return out;
  }

  private track(id: string, untilMs: number, durationMs: number, fresh: boolean): void {
    const fullMs = Math.max(0, Math.min(MAX_SHELF_MS, Number.isFinite(durationMs) ? durationMs : 0));
    const leftMs = fresh ? fullMs : Math.max(0, Math.min(fullMs, untilMs - this.wallNow()));
    this.ends.set(id, { untilMs, endMs: this.monoNow() + leftMs });
  }
}
