// ClusterSnapshot: one immutable, consistent view of what leadership decides from — members, and per
// group the election queue, any handover marker and the operators' state — read from those four
// sub-prefixes only, in pages, every page at ONE etcd revision (the first page's). Whatever else
// lives under the cluster prefix, and however large, is never read; a value over the size bound or
// that is not ours under our sub-prefixes, or written at a wire version this release no longer reads,
// is ignored with a counter and a log line (one per kind and window, clipped), never fatal; only a
// member record a node could have written counts (named after a node, an http(s) apiUrl, on its own
// lease), and only a member's leased election keys count in a queue.
// Layout: <prefix>/members/<node>, <prefix>/election/<group>/<leaseHex>, <prefix>/handover/<group>,
// <prefix>/operator/<group>. Nothing here does I/O but SnapshotReader.read().
import { type Etcd3, type IKeyValue, Range } from 'etcd3';
import type { Logger } from 'pino';
import { apiOrigin } from '../../util/api-origin.ts';
import { clip, LogLimiter } from '../../util/log-limit.ts';
import { parseWireJson } from '../../version.ts';
import { ClusterError, ClusterErrorCodes, causesOf } from '../errors.ts';
import { checkOperatorState, type OperatorState } from '../operator-state.ts';
import type {
  ClusterSnapshot,
  HandoverMarker,
  IgnoredKind,
  InvalidOperatorValue,
  MemberRecord,
  QueueEntry,
} from '../view.ts';
import { queueOf } from './election.ts';
import { etcdCall, isTooLarge } from './etcd-client.ts';

/** The sub-prefixes leadership reads; nothing else under the cluster prefix is ever read. */
export const SNAPSHOT_SUBPREFIXES = ['members', 'election', 'handover', 'operator'] as const;

export function memberKey(prefix: string, node: string): string {
  return `${prefix}/members/${node}`;
}

export function markerKey(prefix: string, group: string): string {
  return `${prefix}/handover/${group}`;
}

export interface SnapshotReaderOptions {
  client: Etcd3;
  prefix: string;
  callTimeoutMs: number;
  now: () => number;
  logger: Logger;
  /** Keys per range call (default 500). */
  pageSize?: number;
  /** Values above this many bytes under our sub-prefixes are ignored (default 64 KiB). */
  maxValueBytes?: number;
  /** A key ignored as oversized is left out of reads this long before it is looked at again. */
  oversizedRecheckMs?: number;
  /** Called once per ignored key version. */
  onIgnored?: (kind: IgnoredKind) => void;
}

const DEFAULT_PAGE_SIZE = 500;
const DEFAULT_MAX_VALUE_BYTES = 64 * 1024;
const DEFAULT_OVERSIZED_RECHECK_MS = 30_000;
/** Ignored keys of one kind: at most IGNORED_LOG_BURST lines per window (every one is counted). */
const IGNORED_LOG_WINDOW_MS = 10_000;
const IGNORED_LOG_BURST = 10;
/** Longest reason an ignored-key line carries (it quotes names from the key and the value). */
const MAX_LOGGED_WHY = 300;
/** Range calls one read may make: pages of every sub-prefix, plus retries with smaller pages. */
const MAX_CALLS_PER_READ = 10_000;
/** Groups per leader-check transaction: 1 + 2 × 60 ranges, under etcd's default --max-txn-ops 128. */
const LEADER_CHECK_GROUPS_PER_TXN = 60;

/** One consistent read of our sub-prefixes, unparsed. */
export interface KvRead {
  kvs: IKeyValue[];
  /** etcd revision every page was read at. */
  revision: number;
  /** Monotonic ms when the first page was sent. */
  readAtMs: number;
  /** Keys skipped as oversized (their values were not read). */
  oversized: Buffer[];
}

/** What a leader check read for some groups, at one revision. */
export interface LeaderCheck {
  revision: number;
  /** Monotonic ms when the read was sent. */
  readAtMs: number;
  /** Nodes with a leased member key. */
  members: ReadonlySet<string>;
  /** Per group, its queue of member-leased keys, oldest first. */
  queues: ReadonlyMap<string, readonly QueueEntry[]>;
  /** Per group with a marker: its revision and lease (its content is in the watched view). */
  markers: ReadonlyMap<string, { modRevision: number; leaseHex: string }>;
}

/**
 * Reads snapshots. Remembers the keys it found oversized (to skip them without fetching their
 * values again until the recheck time) and which ignored keys it already reported (once per key
 * version, not per tick).
 */
export class SnapshotReader {
  private readonly opts: SnapshotReaderOptions;
  private readonly pageSize: number;
  private readonly maxValueBytes: number;
  /** key (latin1) → the key and until when (monotonic ms) it is skipped. */
  private readonly oversized = new Map<string, { key: Buffer; untilMs: number }>();
  /** key (latin1) → what was reported about it, so each key version is reported once. */
  private readonly reported = new Map<string, string>();
  /** Ignored-key lines per kind and IGNORED_LOG_WINDOW_MS. */
  private readonly logLimit: LogLimiter;

  constructor(opts: SnapshotReaderOptions) {
    this.opts = opts;
    this.logLimit = new LogLimiter(opts.now, IGNORED_LOG_WINDOW_MS, IGNORED_LOG_BURST);
    this.pageSize = Math.max(1, opts.pageSize ?? DEFAULT_PAGE_SIZE);
    this.maxValueBytes = opts.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
  }

  /**
   * One snapshot. The first page is a linearizable read and fixes the revision R; every later page
   * is read at R, so the snapshot is the store exactly as it was at R. If R is compacted away
   * between pages, the read starts over once from a new R.
   */
  async read(groups: readonly string[], signal?: AbortSignal): Promise<ClusterSnapshot> {
    const r = await this.readKvs(signal);
    return parseSnapshot(
      r.kvs,
      this.opts.prefix,
      groups,
      r.revision,
      r.readAtMs,
      (kv, kind, why) => this.noteIgnored(kv, kind, why),
      r.oversized,
    );
  }

  /** The raw kvs of one consistent read (see read()), for a view that parses them itself. */
  async readKvs(signal?: AbortSignal): Promise<KvRead> {
    try {
      return await this.readOnce(signal);
    } catch (err) {
      if (!isCompacted(err)) throw err;
      this.opts.logger.info('snapshot revision compacted between pages; reading again');
      return this.readOnce(signal);
    }
  }

  /** Reports a key left out (once per key version): a log line and a counter. */
  noteIgnored(kv: IKeyValue, kind: IgnoredKind, why: string): void {
    this.report(kv.key, `${kind}@${kv.mod_revision}`, kind, why);
  }

  /** Values above this many bytes under our sub-prefixes are ignored. */
  get valueLimitBytes(): number {
    return this.maxValueBytes;
  }

  /**
   * The leader check: for `groups`, their election keys, their handover markers' revisions and every
   * member key's lease, all at ONE revision, read linearizably in transactions of at most 60 groups
   * (etcd's default --max-txn-ops is 128). Keys only: no value, however large, is carried. A decision
   * that makes this node leader is taken from this read alone, never from the watched view, whose
   * sub-prefixes each run on their own watch and need not be at one revision together.
   */
  async leaderCheck(groups: readonly string[], signal?: AbortSignal): Promise<LeaderCheck[]> {
    const out: LeaderCheck[] = [];
    for (let i = 0; i < groups.length; i += LEADER_CHECK_GROUPS_PER_TXN) {
      out.push(await this.leaderCheckOnce(groups.slice(i, i + LEADER_CHECK_GROUPS_PER_TXN), signal));
    }
    return out;
  }

  private async leaderCheckOnce(groups: readonly string[], signal?: AbortSignal): Promise<LeaderCheck> {
    const { client, prefix } = this.opts;
    const readAtMs = this.opts.now();
    const range = (p: string) => {
      const r = Range.prefix(p);
      return { request_range: { key: r.start, range_end: r.end, keys_only: true } };
    };
    const success = [range(`${prefix}/members/`)];
    for (const g of groups) {
      success.push(range(`${prefix}/election/${g}/`));
      success.push({ request_range: { key: Buffer.from(markerKey(prefix, g)), keys_only: true } } as never);
    }
    const res = await etcdCall('leader check', this.opts.callTimeoutMs, signal, (o) =>
      client.kv.txn({ compare: [], success, failure: [] }, o),
    );
    const rs = res.responses.map((r) => r.response_range?.kvs ?? []);
    const memberStart = `${prefix}/members/`;
    const members = new Map<string, string>(); // lease hex → node
    // As parseMember counts them: named after a node, leased, the oldest record on its lease.
    const memberKvs = [...(rs[0] ?? [])].sort(
      (a, b) => Number(a.create_revision) - Number(b.create_revision),
    );
    for (const kv of memberKvs) {
      const node = kv.key.toString().slice(memberStart.length);
      if (!kv.lease || kv.lease === '0' || !NODE_NAME.test(node)) continue;
      const lease = leaseHex(kv.lease);
      if (!members.has(lease)) members.set(lease, node);
    }
    const memberLeases = new Set(members.keys());
    const queues = new Map<string, QueueEntry[]>();
    const markers = new Map<string, { modRevision: number; leaseHex: string }>();
    groups.forEach((g, i) => {
      const counted = (rs[1 + 2 * i] ?? []).filter((kv) => ghostReason(kv, memberLeases) === null);
      // keys_only: the candidate's name is the member holding the key's lease.
      const named = counted.map((kv) => ({
        ...kv,
        value: Buffer.from(members.get(BigInt(kv.lease).toString(16)) ?? ''),
      }));
      queues.set(g, queueOf(named, `${prefix}/election/${g}`));
      const m = rs[2 + 2 * i]?.[0];
      if (m)
        markers.set(g, {
          modRevision: Number(m.mod_revision),
          leaseHex: m.lease && m.lease !== '0' ? BigInt(m.lease).toString(16) : '0',
        });
    });
    return {
      revision: Number(res.header.revision),
      readAtMs,
      members: new Set(members.values()),
      queues,
      markers,
    };
  }

  private async readOnce(signal?: AbortSignal): Promise<KvRead> {
    const readAtMs = this.opts.now();
    const at: { revision?: number } = {};
    const budget = { calls: MAX_CALLS_PER_READ };
    const kvs: IKeyValue[] = [];
    for (const sub of SNAPSHOT_SUBPREFIXES) {
      const r = Range.prefix(`${this.opts.prefix}/${sub}/`);
      await this.scan(r.start, r.end, at, kvs, budget, signal);
    }
    const seen = new Set<string>();
    const oversized = [...this.oversized.values()].map((e) => e.key);
    for (const kv of kvs) seen.add(kv.key.toString('latin1'));
    for (const k of this.oversized.keys()) seen.add(k);
    for (const k of this.reported.keys()) if (!seen.has(k)) this.reported.delete(k);
    return { kvs, revision: at.revision ?? 0, readAtMs, oversized };
  }

  /** Appends the kvs in [start, end) at `at.revision` (fixing it on the first call), page by page. */
  private async scan(
    start: Buffer,
    end: Buffer,
    at: { revision?: number },
    out: IKeyValue[],
    budget: { calls: number },
    signal: AbortSignal | undefined,
  ): Promise<void> {
    let from = start;
    let limit = this.pageSize;
    while (Buffer.compare(from, end) < 0) {
      const skipped = this.firstSkipped(from, end);
      const to = skipped ?? end;
      if (Buffer.compare(from, to) < 0) {
        if (--budget.calls < 0) {
          throw new ClusterError(
            ClusterErrorCodes.ETCD_UNAVAILABLE,
            `snapshot read: more than ${MAX_CALLS_PER_READ} range calls`,
            { retryable: true },
          );
        }
        let res: Awaited<ReturnType<SnapshotReader['range']>>;
        try {
          res = await this.range(from, to, limit, at.revision, signal);
        } catch (err) {
          if (!isTooLarge(err)) throw err;
          // Several large values in one page overflow the gRPC message limit: smaller pages; a
          // single value that alone overflows it is skipped by key.
          if (limit > 1) {
            limit = Math.max(1, Math.floor(limit / 4));
            this.opts.logger.debug({ limit }, 'snapshot page over the gRPC message limit: smaller pages');
            continue;
          }
          const key = await this.firstKey(from, to, at.revision, signal);
          if (!key) throw err;
          this.skip(key, 'value larger than one gRPC message');
          continue;
        }
        at.revision ??= Number(res.header.revision);
        for (const kv of res.kvs) {
          if (kv.value.length > this.maxValueBytes) {
            this.skip(kv.key, `value of ${kv.value.length} bytes, over ${this.maxValueBytes}`);
            continue;
          }
          out.push(kv);
        }
        const last = res.kvs.at(-1);
        if (res.more && last) {
          from = after(last.key);
          limit = Math.min(this.pageSize, limit * 4);
          continue;
        }
      }
      if (!skipped) break;
      from = after(skipped);
    }
  }

  private range(
    from: Buffer,
    to: Buffer,
    limit: number,
    revision: number | undefined,
    signal: AbortSignal | undefined,
  ) {
    return etcdCall('snapshot read', this.opts.callTimeoutMs, signal, (o) => {
      const b = this.opts.client.getAll().inRange(new Range(from, to)).limit(limit);
      if (revision !== undefined) b.revision(revision);
      return b.options(o).exec();
    });
  }

  private async firstKey(
    from: Buffer,
    to: Buffer,
    revision: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Buffer | undefined> {
    const keys = await etcdCall('snapshot key read', this.opts.callTimeoutMs, signal, (o) => {
      const b = this.opts.client.getAll().inRange(new Range(from, to)).limit(1);
      if (revision !== undefined) b.revision(revision);
      return b.options(o).keyBuffers();
    });
    return keys[0];
  }

  private firstSkipped(from: Buffer, end: Buffer): Buffer | undefined {
    const now = this.opts.now();
    let first: Buffer | undefined;
    for (const [k, e] of this.oversized) {
      if (now >= e.untilMs) {
        this.oversized.delete(k); // look at it again: it may have been rewritten
        continue;
      }
      if (Buffer.compare(e.key, from) < 0 || Buffer.compare(e.key, end) >= 0) continue;
      if (!first || Buffer.compare(e.key, first) < 0) first = e.key;
    }
    return first;
  }

  private skip(key: Buffer, why: string): void {
    const k = key.toString('latin1');
    this.oversized.set(k, {
      key: Buffer.from(key),
      untilMs: this.opts.now() + (this.opts.oversizedRecheckMs ?? DEFAULT_OVERSIZED_RECHECK_MS),
    });
    this.report(key, `oversized:${why}`, 'oversized', why);
  }

  private report(key: Buffer, version: string, kind: IgnoredKind, why: string): void {
    const k = key.toString('latin1');
    if (this.reported.get(k) === version) return;
    this.reported.set(k, version);
    this.opts.onIgnored?.(kind);
    // Counted per key version, logged per kind: a writer that floods the prefix with thousands of
    // keys gets a few lines per kind and window (the next saying how many were not), each of
    // ordinary length.
    const notLogged = this.logLimit.admit(kind);
    if (notLogged < 0) return;
    this.opts.logger.warn(
      { key: clip(key.toString()), kind, why: clip(why, MAX_LOGGED_WHY), notLoggedSinceLast: notLogged },
      'ignoring a key under the cluster prefix',
    );
  }
}

/**
 * Builds the snapshot from the kvs of our sub-prefixes. A value that is not ours is left out and
 * passed to `ignore` (never fatal); the result is frozen.
 */
export function parseSnapshot(
  kvs: readonly IKeyValue[],
  prefix: string,
  groups: readonly string[],
  revision: number,
  readAtMs: number,
  ignore: (kv: IKeyValue, kind: IgnoredKind, why: string) => void = () => {},
  oversizedKeys: readonly Buffer[] = [],
): ClusterSnapshot {
  const members = new Map<string, MemberRecord>();
  const markers = new Map<string, HandoverMarker>();
  const markerKvs = new Map<string, IKeyValue>();
  const operators = new Map<string, OperatorState>();
  const operatorsInvalid = new Map<string, InvalidOperatorValue>();
  const electionKvs = new Map<string, IKeyValue[]>();
  const memberKvs: IKeyValue[] = [];
  const memberStart = `${prefix}/members/`;
  const markerStart = `${prefix}/handover/`;
  const operatorStart = `${prefix}/operator/`;
  const electionStart = `${prefix}/election/`;
  for (const kv of kvs) {
    const key = kv.key.toString();
    if (key.startsWith(memberStart)) memberKvs.push(kv);
    else if (key.startsWith(operatorStart)) {
      // An invalid value is not "none": the operator store keeps the last valid state for it.
      const group = key.slice(operatorStart.length);
      const r = checkOperatorState(kv.value.toString());
      if (r.ok) {
        operators.set(group, r.state);
        if (r.dropped.length > 0)
          ignore(kv, 'override', `operator overrides not in force: ${r.dropped.join('; ')}`);
      } else
        operatorsInvalid.set(
          group,
          Object.freeze({ problem: r.problem, modRevision: Number(kv.mod_revision) }),
        );
    } else if (key.startsWith(markerStart)) {
      const r = parseWireJson(kv.value.toString());
      const m = r.ok ? r.value : null;
      const group = key.slice(markerStart.length);
      if (!r.ok && r.tooOld) ignore(kv, 'wire', r.problem);
      else if (m && typeof m.from === 'string' && typeof m.to === 'string') {
        markers.set(
          group,
          Object.freeze({
            key,
            group,
            from: m.from,
            to: m.to,
            epoch: Number(m.epoch) || 0,
            leaseHex: BigInt(kv.lease).toString(16),
            modRevision: Number(kv.mod_revision),
          }),
        );
        markerKvs.set(group, kv);
      } else ignore(kv, 'foreign', 'not a handover marker');
    } else if (key.startsWith(electionStart)) {
      const group = key.slice(electionStart.length).split('/', 1)[0]!;
      const list = electionKvs.get(group);
      if (list) list.push(kv);
      else electionKvs.set(group, [kv]);
    }
  }
  // Oldest record first: a record put later on a lease a member already holds is the copy.
  memberKvs.sort((a, b) => Number(a.create_revision) - Number(b.create_revision));
  const memberOfLease = new Map<string, string>();
  for (const kv of memberKvs) {
    const r = parseMember(kv, memberStart, memberOfLease);
    if ('why' in r) ignore(kv, r.kind, r.why);
    else {
      members.set(r.member.node, r.member);
      memberOfLease.set(r.member.leaseHex, r.member.node);
    }
  }
  // Only a member's keys count: attached to a lease, the lease its key is named after, and the lease
  // of a member record. A key without one (an `etcdctl put`, a restore) or on a lease no member holds
  // would sit in the queue and could block the group for ever; it is a ghost.
  const memberLeases = new Set<string>();
  for (const m of members.values()) memberLeases.add(m.leaseHex);
  for (const [group, m] of markers) {
    const why = markerGhostReason(m, members);
    if (!why) continue;
    ignore(markerKvs.get(group)!, 'ghost', why);
    markers.set(group, Object.freeze({ ...m, ghost: why }));
  }
  const queues = new Map<string, readonly QueueEntry[]>();
  for (const group of groups) {
    const counted: IKeyValue[] = [];
    for (const kv of electionKvs.get(group) ?? []) {
      const why = ghostReason(kv, memberLeases);
      if (why) ignore(kv, 'ghost', why);
      else counted.push(kv);
    }
    const queue = queueOf(counted, `${electionStart}${group}`);
    queues.set(group, Object.freeze(queue.map((e) => Object.freeze(e))));
  }
  for (const k of oversizedKeys) {
    const key = k.toString();
    if (key.startsWith(operatorStart) && !operatorsInvalid.has(key.slice(operatorStart.length)))
      operatorsInvalid.set(
        key.slice(operatorStart.length),
        Object.freeze({ problem: 'value too large to be an operator state', modRevision: 0 }),
      );
  }
  return Object.freeze({ revision, readAtMs, members, queues, markers, operators, operatorsInvalid });
}

/**
 * A member record, or why it is none. A node registers itself: its record is named after it (a config
 * node name), says where its API is (an http(s) origin, src/util/api-origin.ts: the API allows that
 * origin, the dashboard's CSP lists it, and the CLI and the refusals send operators there) and is
 * attached to its own lease, no other record's. Anything else — an `etcdctl put`, a restore, a copy on a live node's lease — would be counted as a member that
 * never leads: a seat placement keeps waiting to fill (the groups never spread), an origin the API
 * trusts, a name the leader check could give another node's keys.
 */
export function parseMember(
  kv: IKeyValue,
  memberStart: string,
  memberOfLease: ReadonlyMap<string, string>,
): { member: MemberRecord } | { kind: IgnoredKind; why: string } {
  const node = kv.key.toString().slice(memberStart.length);
  if (!NODE_NAME.test(node)) return { kind: 'foreign', why: 'a member key names no node' };
  const r = parseWireJson(kv.value.toString());
  if (!r.ok) return { kind: r.tooOld ? 'wire' : 'foreign', why: `not a member record: ${r.problem}` };
  const m = r.value;
  const api = apiOrigin(m.apiUrl);
  if ('why' in api) return { kind: 'foreign', why: `not a member record: its apiUrl ${api.why}` };
  if (!kv.lease || kv.lease === '0') return { kind: 'ghost', why: 'member record without a lease' };
  const lease = leaseHex(kv.lease);
  const holder = memberOfLease.get(lease);
  if (holder !== undefined) return { kind: 'ghost', why: `member record on the lease of ${holder}` };
  const startedAtMs = Number(m.startedAtMs);
  return {
    member: Object.freeze({
      node,
      apiUrl: api.origin,
      ...(typeof m.peerUrl === 'string' && isPeerUrl(m.peerUrl) ? { peerUrl: m.peerUrl } : {}),
      startedAtMs: Number.isFinite(startedAtMs) && startedAtMs > 0 ? startedAtMs : 0,
      ...(typeof m.configHash === 'string' ? { configHash: clip(m.configHash, 128) } : {}),
      leaseHex: lease,
    }),
  };
}

/** A node name as the controller config allows it (src/config/controller-config.ts). */
const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** Longest peerUrl a member record may carry (a host and a port). */
const MAX_URL_CHARS = 512;

/** The state cache's peer address as a node advertises it: `tcp://host:port` (controller-config.ts). */
function isPeerUrl(text: string): boolean {
  return isUrlOf(text, ['tcp:']);
}

function isUrlOf(text: string, protocols: readonly string[]): boolean {
  if (text.length > MAX_URL_CHARS) return false;
  try {
    const u = new URL(text);
    return protocols.includes(u.protocol) && u.hostname !== '' && u.username === '' && u.password === '';
  } catch {
    return false;
  }
}

/** Why an election key does not count (null: it does). */
export function ghostReason(kv: IKeyValue, memberLeases: ReadonlySet<string>): string | null {
  if (kv.lease === '0' || !kv.lease) return 'election key without a lease';
  const lease = leaseHex(kv.lease);
  const named = kv.key.toString().split('/').at(-1);
  if (named !== lease) return `election key named ${named} is on lease ${lease}`;
  if (!memberLeases.has(lease)) return `election key on lease ${lease}, which no member holds`;
  return null;
}

/**
 * Why a handover marker is no member's (null: it is). Only a leader writes one, on its own lease,
 * naming itself `from`; any other (an `etcdctl put`, a restore, a lease borrowed by hand) would make
 * the group's other nodes wait on a handover nobody runs.
 */
export function markerGhostReason(
  m: Pick<HandoverMarker, 'from' | 'leaseHex'>,
  members: ReadonlyMap<string, Pick<MemberRecord, 'leaseHex'>>,
): string | null {
  if (m.leaseHex === '0') return 'handover marker without a lease';
  const holder = [...members].find(([, r]) => r.leaseHex === m.leaseHex)?.[0];
  if (holder === undefined) return `handover marker on lease ${m.leaseHex}, which no member holds`;
  if (holder !== m.from) return `handover marker from ${m.from} is on the lease of ${holder}`;
  return null;
}

const hexOf = new Map<string, string>();

/** A lease id (decimal, as etcd3 gives it) in hex; a few leases, many keys: remembered. */
function leaseHex(id: string): string {
  let hex = hexOf.get(id);
  if (hex === undefined) {
    if (hexOf.size > 10_000) hexOf.clear();
    hex = BigInt(id).toString(16);
    hexOf.set(id, hex);
  }
  return hex;
}

/** The smallest key after `key` in etcd's byte order. */
function after(key: Buffer): Buffer {
  return Buffer.concat([key, Buffer.from([0])]);
}

function isCompacted(err: unknown): boolean {
  return causesOf(err).some(
    (e) => e instanceof Error && /required revision has been compacted/.test(e.message),
  );
}
