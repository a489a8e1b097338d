// WatchedView: the cluster as this node last heard it — loaded from one paged read at revision R, then
// kept current by the watch events of the four leadership sub-prefixes from R + 1 — so a decision pass
// costs no etcd read. freeze() hands each pass ONE immutable ClusterSnapshot and the groups whose keys
// changed since the last one (all of them after a load or a membership change: ghost filtering
// depends on the members' leases). Each sub-prefix has its own watch, so the view as a whole need
// not be at one revision: it may decide anything but "leader", which comes from a leader check read
// (snapshot.ts) at one revision. Pure: no I/O; the caller feeds it reads and events.
import type { IKeyValue } from 'etcd3';
import type { ClusterSnapshot, IgnoredKind, QueueEntry } from '../view.ts';
import { queueOf } from './election.ts';
import { ghostReason, parseSnapshot } from './snapshot.ts';

export interface WatchEvent {
  type: 'Put' | 'Delete';
  kv: IKeyValue;
}

export interface WatchedViewOptions {
  prefix: string;
  /** Values above this many bytes are left out, as the paged read leaves them out. */
  maxValueBytes: number;
  /** A key left out (once per key version is the caller's business). */
  onIgnored: (kv: IKeyValue, kind: IgnoredKind, why: string) => void;
}

export interface FrozenView {
  snapshot: ClusterSnapshot;
  /** Groups whose queue or marker changed since the last freeze; null: every group. */
  changed: ReadonlySet<string> | null;
}

export class WatchedView {
  private readonly opts: WatchedViewOptions;
  private readonly electionStart: string;
  private readonly markerStart: string;
  /** Revision of the last load: events at or below it are already in. */
  private loadedRevision = -1;
  private revision = 0;
  private readAtMs = Number.NEGATIVE_INFINITY;
  /** members/, handover/, operator/ keys (a few per group at most). */
  private readonly other = new Map<string, IKeyValue>();
  private oversized: Buffer[] = [];
  /** Per group, its election keys. */
  private readonly election = new Map<string, Map<string, IKeyValue>>();
  private dirty = new Set<string>();
  private allDirty = true;
  private otherDirty = true;
  private last: ClusterSnapshot | null = null;
  private memberLeasesKey = '';
  private myGroups: readonly string[] = [];
  private mine = new Set<string>();

  constructor(opts: WatchedViewOptions) {
    this.opts = opts;
    this.electionStart = `${opts.prefix}/election/`;
    this.markerStart = `${opts.prefix}/handover/`;
  }

  get loaded(): boolean {
    return this.loadedRevision >= 0;
  }

  /** The revision of the last load (the watches start right after it). */
  get loadRevision(): number {
    return this.loadedRevision;
  }

  /** Replaces everything with one consistent read at `revision`. */
  load(kvs: readonly IKeyValue[], revision: number, readAtMs: number, oversized: readonly Buffer[]): void {
    this.other.clear();
    this.election.clear();
    this.oversized = [...oversized];
    for (const kv of kvs) this.put(kv);
    this.loadedRevision = revision;
    this.revision = revision;
    this.readAtMs = readAtMs;
    this.allDirty = true;
    this.otherDirty = true;
    this.dirty.clear();
  }

  /** Watch events in the order one watch delivered them; those already in the last load are skipped. */
  apply(events: readonly WatchEvent[]): void {
    for (const e of events) {
      const rev = Number(e.kv.mod_revision);
      if (rev <= this.loadedRevision) continue;
      this.revision = Math.max(this.revision, rev);
      if (e.type === 'Delete') this.remove(e.kv.key.toString());
      else if (e.kv.value.length > this.opts.maxValueBytes) {
        this.remove(e.kv.key.toString()); // which also forgets it as oversized: listed once
        this.oversized.push(Buffer.from(e.kv.key));
        this.opts.onIgnored(
          e.kv,
          'oversized',
          `value of ${e.kv.value.length} bytes, over ${this.opts.maxValueBytes}`,
        );
      } else this.put(e.kv);
    }
  }

  /** Whether the key is there but its value was left out as oversized (the view has no value for it). */
  isOversized(key: string): boolean {
    return this.oversized.some((k) => k.toString() === key);
  }

  /** One immutable snapshot for a decision pass; `myGroups` always get a queue (maybe empty). */
  freeze(myGroups: readonly string[]): FrozenView {
    const prev = this.last;
    let parsed = prev;
    if (this.otherDirty || !prev) {
      parsed = parseSnapshot(
        [...this.other.values()],
        this.opts.prefix,
        [],
        this.revision,
        this.readAtMs,
        this.opts.onIgnored,
        this.oversized,
      );
      const leases = [...parsed.members.values()]
        .map((m) => m.leaseHex)
        .sort()
        .join(',');
      if (leases !== this.memberLeasesKey) {
        this.memberLeasesKey = leases;
        this.allDirty = true;
      }
      // A marker's group is decided again when its marker comes or goes.
      if (prev) {
        for (const g of parsed.markers.keys())
          if (prev.markers.get(g)?.modRevision !== parsed.markers.get(g)?.modRevision) this.dirty.add(g);
        for (const g of prev.markers.keys()) if (!parsed.markers.has(g)) this.dirty.add(g);
      }
    }
    const members = parsed!.members;
    const all = this.allDirty || !prev;
    const queues = new Map<string, readonly QueueEntry[]>(all ? [] : prev.queues);
    if (myGroups !== this.myGroups) {
      this.myGroups = myGroups;
      this.mine = new Set(myGroups);
    }
    const mine = this.mine;
    const groups = all ? new Set([...this.election.keys(), ...myGroups]) : this.dirty;
    if (queues.size < mine.size || all) for (const g of myGroups) if (!queues.has(g)) groups.add(g);
    const leases = new Set([...members.values()].map((m) => m.leaseHex));
    for (const g of groups) {
      const kvs = this.election.get(g);
      if (!kvs && !mine.has(g)) {
        queues.delete(g);
        continue;
      }
      queues.set(g, this.queue(g, kvs, leases));
    }
    const snapshot: ClusterSnapshot = Object.freeze({
      revision: this.revision,
      readAtMs: this.readAtMs,
      members,
      queues,
      markers: parsed!.markers,
      operators: parsed!.operators,
      operatorsInvalid: parsed!.operatorsInvalid,
    });
    const changed = all ? null : new Set(this.dirty);
    this.last = snapshot;
    this.dirty = new Set();
    this.allDirty = false;
    this.otherDirty = false;
    return { snapshot, changed };
  }

  private queue(
    group: string,
    kvs: Map<string, IKeyValue> | undefined,
    leases: ReadonlySet<string>,
  ): readonly QueueEntry[] {
    if (!kvs) return Object.freeze([]);
    const counted: IKeyValue[] = [];
    for (const kv of kvs.values()) {
      const why = ghostReason(kv, leases);
      if (why) this.opts.onIgnored(kv, 'ghost', why);
      else counted.push(kv);
    }
    return Object.freeze(queueOf(counted, `${this.electionStart}${group}`).map((e) => Object.freeze(e)));
  }

  private put(kv: IKeyValue): void {
    const key = kv.key.toString();
    if (this.oversized.length > 0) this.oversized = this.oversized.filter((k) => k.toString() !== key);
    const group = this.groupOf(key);
    if (group === null) {
      this.other.set(key, kv);
      this.otherDirty = true;
      if (key.startsWith(this.markerStart)) this.dirty.add(key.slice(this.markerStart.length));
      return;
    }
    let m = this.election.get(group);
    if (!m) {
      m = new Map();
      this.election.set(group, m);
    }
    m.set(key, kv);
    this.dirty.add(group);
  }

  private remove(key: string): void {
    if (this.oversized.length > 0) this.oversized = this.oversized.filter((k) => k.toString() !== key);
    const group = this.groupOf(key);
    if (group === null) {
      if (this.other.delete(key)) this.otherDirty = true;
      if (key.startsWith(this.markerStart)) this.dirty.add(key.slice(this.markerStart.length));
      return;
    }
    const m = this.election.get(group);
    if (!m?.delete(key)) return;
    if (m.size === 0) this.election.delete(group);
    this.dirty.add(group);
  }

  /** The group of an election key (null: not an election key). */
  private groupOf(key: string): string | null {
    if (!key.startsWith(this.electionStart)) return null;
    return key.slice(this.electionStart.length).split('/', 1)[0]!;
  }
}
