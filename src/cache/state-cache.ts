// The pg2-style process-state cache. Every node caches the latest row of every control group;
// a group's leader writes its row and broadcasts it to every member over the peer channel; a node
// that (re)connects pulls what it lacks (anti-entropy: SYNC with its digest, the peer answers with
// newer rows). A row replaces a cached one only when its (epoch, seq) is newer, so a healed
// netsplit's late broadcast from a stale leader is counted and ignored, never applied.
// The cache is not the authority: processes are. It only resurrects them (warm start).
// A row is applied only when this node's leadership view backs its writer: the writer led the
// group at the row's epoch (setLeaderView). A member holding the cluster secret therefore cannot
// plant state for a group it does not lead, nor a far-future epoch that would shadow every real row.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { FailsafeAnswer, FailsafeGroup, FailsafeTransport } from '../cluster/failsafe.ts';
import type { WireRange } from '../version.ts';
import { type Frame, FrameType } from './frames.ts';
import { PeerChannel, type PeerStatus, type RejectReason } from './peer-channel.ts';
import type { PeerConnection } from './peer-connection.ts';
import {
  type CachedRow,
  compareVersion,
  isGroupName,
  RowAssembler,
  type RowHeader,
  rowHeaderProblem,
  versionOf,
} from './rows.ts';

export interface StateCacheOptions {
  node: string;
  /** Cluster key prefix (peers of another cluster are refused). */
  cluster: string;
  /** Shared cluster secret (≥ 16 bytes); never logged. Not used when `peerKeys` is set. */
  secret?: Buffer | undefined;
  /** This node's key with each peer (peer-channel.ts pairKey): identities bound to nodes. */
  peerKeys?: ReadonlyMap<string, Buffer> | undefined;
  listen: { host: string; port: number };
  /** Wire versions this node speaks on the peer channel (default: this release's). */
  wire?: WireRange | undefined;
  logger: Logger;
  registry?: Registry;
  /** Body bytes per chunk of a big row (default 64 KiB). */
  chunkBytes?: number;
  /** Bandwidth big rows may take per peer link, bytes/s (default 16 MiB/s). */
  bulkBytesPerS?: number;
  /** Largest row accepted (default 64 MiB). */
  maxRowBytes?: number;
  /** Most groups cached (default 10 000). */
  maxGroups?: number;
  pingIntervalMs?: number;
  idleTimeoutMs?: number;
  connectTimeoutMs?: number;
}

/** Who leads a group at which epoch, as this node's leadership sees it (undefined: not known). */
export type LeaderView = (
  group: string,
  fresh: boolean,
) => { leader: string | null; epoch: number | null } | undefined;

/** Leaders remembered per group (epoch → node), to check a predecessor's row after a handover. */
const LEADER_HISTORY_PER_GROUP = 8;

/**
 * A LeaderView over `groups()` (Leadership.groups builds every group's entry), rebuilt at most
 * every `maxAgeMs`: a row burst costs one build, not one per row.
 */
export function memoizedLeaderView(
  groups: () => { group: string; leader: string | null; epoch: number | null }[],
  maxAgeMs = 50,
): LeaderView {
  let at = Number.NEGATIVE_INFINITY;
  let byGroup = new Map<string, { leader: string | null; epoch: number | null }>();
  return (group, fresh) => {
    const now = performance.now();
    if (fresh || now - at > maxAgeMs) {
      byGroup = new Map(groups().map((g) => [g.group, { leader: g.leader, epoch: g.epoch }]));
      at = now;
    }
    return byGroup.get(group);
  };
}

/** What this node answers a leader that asks to stay in failsafe (see src/cluster/failsafe.ts). */
export type FailsafeResponder = (from: string, groups: FailsafeGroup[], windowMs: number) => FailsafeAnswer;

/** What control needs from the cache: the freshest row of a group, a pull, and writing its own row. */
export interface ProcessStateStore {
  get(group: string): CachedRow | undefined;
  /** Asks every reachable peer for newer rows of `groups`; resolves by the deadline at the latest. */
  pull(groups: string[], timeoutMs: number): Promise<void>;
  /** Writes and broadcasts; null when a newer row (another leader's) is already cached. */
  write(group: string, epoch: number, state: unknown): CachedRow | null;
}

interface PendingPull {
  waiting: Set<string>;
  /** Versions peers said they sent: the pull is done when each arrived (or was superseded). */
  expect: Map<string, [number, number]>;
  done: () => void;
}

interface PendingAck {
  epoch: number;
  seq: number;
  t0: number;
  waiting: Set<string>;
}

export class StateCache extends EventEmitter implements ProcessStateStore, FailsafeTransport {
  readonly node: string;
  private readonly opts: Required<Omit<StateCacheOptions, 'registry' | 'secret' | 'peerKeys' | 'wire'>> &
    Pick<StateCacheOptions, 'secret' | 'peerKeys' | 'wire'> & { registry?: Registry };
  private readonly log: Logger;
  private readonly channel: PeerChannel;
  private readonly rows = new Map<string, CachedRow>();
  private readonly assemblers = new WeakMap<PeerConnection, RowAssembler>();
  private readonly pulls = new Map<number, PendingPull>();
  private readonly acks = new Map<string, PendingAck>();
  private readonly fsPending = new Map<number, (a: FailsafeAnswer) => void>();
  private readonly metrics: CacheMetrics | undefined;
  private responder: FailsafeResponder = () => ({ ok: false, reason: 'failsafe not enabled on this node' });
  private leaderView: LeaderView | undefined;
  private readonly leaderHistory = new Map<string, Map<number, string>>();
  private nextId = 1;
  private totalBytes = 0;
  private started = false;

  constructor(opts: StateCacheOptions) {
    super();
    if (!opts.peerKeys && (opts.secret?.length ?? 0) < 16)
      throw new Error('state cache: the cluster secret must be at least 16 bytes');
    this.opts = {
      chunkBytes: 64 * 1024,
      bulkBytesPerS: 16 * 1024 * 1024,
      maxRowBytes: 64 * 1024 * 1024,
      maxGroups: 10_000,
      pingIntervalMs: 500,
      idleTimeoutMs: 2000,
      connectTimeoutMs: 1000,
      ...opts,
    };
    this.node = opts.node;
    this.log = opts.logger.child({ component: 'state-cache' });
    this.metrics = opts.registry ? new CacheMetrics(opts.registry, this) : undefined;
    this.channel = new PeerChannel({
      node: opts.node,
      cluster: opts.cluster,
      secret: opts.secret,
      peerKeys: opts.peerKeys,
      listen: opts.listen,
      chunkBytes: this.opts.chunkBytes,
      bulkBytesPerS: this.opts.bulkBytesPerS,
      idleTimeoutMs: this.opts.idleTimeoutMs,
      pingIntervalMs: this.opts.pingIntervalMs,
      connectTimeoutMs: this.opts.connectTimeoutMs,
      wire: opts.wire,
      logger: this.log,
      onReject: (reason) => this.metrics?.rejects.inc({ reason }),
    });
    // Anti-entropy both ways on every new link: each side sends its digest, the other answers.
    this.channel.on('up', (conn: PeerConnection) => this.sendDigest(conn));
    this.channel.on('incoming', (conn: PeerConnection) => this.sendDigest(conn));
    this.channel.on('down', (node: string) => this.onDown(node));
    this.channel.on('frame', (conn: PeerConnection, f: Frame) => this.onFrame(conn, f));
  }

  get port(): number {
    return this.channel.port;
  }

  get rowCount(): number {
    return this.rows.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.channel.start();
    this.started = true;
  }

  async stop(): Promise<void> {
    for (const p of this.pulls.values()) p.done();
    for (const resolve of this.fsPending.values()) resolve({ ok: false, reason: 'node stopping' });
    await this.channel.stop();
  }

  /** The members to replicate to (from etcd membership); ourselves and members without a peer URL are skipped. */
  setMembers(members: { node: string; peerUrl?: string | undefined }[]): void {
    this.channel.setPeers(members);
  }

  /** From here on, a peer's row is applied only if `view` backs its writer (see the header). */
  setLeaderView(view: LeaderView): void {
    this.leaderView = view;
  }

  setFailsafeResponder(fn: FailsafeResponder): void {
    this.responder = fn;
  }

  peers(): PeerStatus[] {
    return this.channel.peers();
  }

  get(group: string): CachedRow | undefined {
    return this.rows.get(group);
  }

  /** The row's state parsed as JSON; undefined when absent or not JSON. */
  value<T>(group: string): { row: CachedRow; state: T } | undefined {
    const row = this.rows.get(group);
    if (!row) return undefined;
    try {
      return { row, state: JSON.parse(row.body.toString('utf8')) as T };
    } catch {
      return undefined;
    }
  }

  /** Rows' versions, for the API. */
  list(): { group: string; epoch: number; seq: number; writer: string; atMs: number; bytes: number }[] {
    return [...this.rows.values()].map((r) => ({
      group: r.group,
      epoch: r.epoch,
      seq: r.seq,
      writer: r.writer,
      atMs: r.atMs,
      bytes: r.body.length,
    }));
  }

  write(group: string, epoch: number, state: unknown): CachedRow | null {
    if (!isGroupName(group)) throw new Error(`state cache: "${group}" is not a group name`);
    if (!Number.isSafeInteger(epoch) || epoch < 1) throw new Error(`state cache: bad epoch ${epoch}`);
    const body = Buffer.isBuffer(state) ? state : Buffer.from(JSON.stringify(state));
    if (body.length > this.opts.maxRowBytes)
      throw new Error(`state cache: a ${body.length} B row exceeds the ${this.opts.maxRowBytes} B limit`);
    const cur = this.rows.get(group);
    if (cur && cur.epoch > epoch) return null;
    const row: CachedRow = {
      group,
      epoch,
      seq: cur && cur.epoch === epoch ? cur.seq + 1 : 1,
      writer: this.node,
      atMs: Date.now(),
      body,
    };
    this.store(row);
    this.metrics?.written.inc();
    const links = this.channel.upLinks();
    if (links.length > 0) {
      // A row written while the group's previous one still waits for acks replaces that wait but
      // keeps its start: the lag then counts from the oldest row not yet everywhere. Restarting the
      // clock would drop exactly the slow replications from the histogram (a group rewritten every
      // period behind a lagging peer would never observe anything).
      this.acks.set(group, {
        epoch,
        seq: row.seq,
        t0: this.acks.get(group)?.t0 ?? performance.now(),
        waiting: new Set(links.map((c) => c.node)),
      });
    }
    for (const c of links) c.sendRow(row);
    return row;
  }

  async pull(groups: string[], timeoutMs: number): Promise<void> {
    const links = this.channel.upLinks();
    if (links.length === 0) return;
    const id = this.nextId++;
    const digest: Record<string, [number, number]> = {};
    for (const g of groups) {
      const r = this.rows.get(g);
      if (r) digest[g] = [r.epoch, r.seq];
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(finish, timeoutMs);
      function finish(): void {
        clearTimeout(timer);
        resolve();
      }
      this.pulls.set(id, {
        waiting: new Set(links.map((c) => c.node)),
        expect: new Map(),
        done: finish,
      });
      for (const c of links) c.send(FrameType.SYNC, { id, digest, groups });
    });
    this.pulls.delete(id);
  }

  /** Asks `nodes` whether this node may stay in failsafe for `groups`; a node not answering in time is 'silent'. */
  async failsafePing(
    nodes: string[],
    groups: FailsafeGroup[],
    windowMs: number,
    timeoutMs: number,
  ): Promise<Map<string, FailsafeAnswer>> {
    const answers = await Promise.all(
      nodes.map(async (node): Promise<[string, FailsafeAnswer]> => {
        const conn = this.channel.link(node);
        if (!conn) return [node, { ok: false, reason: 'no peer link' }];
        const id = this.nextId++;
        const answer = await new Promise<FailsafeAnswer>((resolve) => {
          const timer = setTimeout(() => {
            this.fsPending.delete(id);
            resolve({ ok: false, reason: `silent for ${timeoutMs} ms` });
          }, timeoutMs);
          this.fsPending.set(id, (a) => {
            clearTimeout(timer);
            this.fsPending.delete(id);
            resolve(a);
          });
          conn.send(FrameType.FS_PING, { id, groups, windowMs });
        });
        return [node, answer];
      }),
    );
    return new Map(answers);
  }

  // --- protocol ---------------------------------------------------------------------------------

  private sendDigest(conn: PeerConnection): void {
    const digest: Record<string, [number, number]> = {};
    for (const r of this.rows.values()) digest[r.group] = [r.epoch, r.seq];
    conn.send(FrameType.SYNC, { id: 0, digest });
  }

  private onDown(node: string): void {
    for (const p of this.pulls.values()) {
      p.waiting.delete(node);
      this.maybeFinishPull(p);
    }
    for (const [group, a] of this.acks) {
      a.waiting.delete(node);
      if (a.waiting.size === 0) this.acks.delete(group);
    }
  }

  private onFrame(conn: PeerConnection, f: Frame): void {
    const h = f.header;
    switch (f.type) {
      case FrameType.ROW:
        this.onRow(conn, h, f.body);
        return;
      case FrameType.SYNC:
        this.onSync(conn, h);
        return;
      case FrameType.SYNC_DONE:
        this.onSyncDone(conn, h);
        return;
      case FrameType.ACK:
        this.onAck(conn, h);
        return;
      case FrameType.FS_PING:
        this.onFailsafePing(conn, h);
        return;
      case FrameType.FS_ACK: {
        if (!isCount(h.id) || typeof h.ok !== 'boolean' || typeof h.reason !== 'string') {
          this.malformed(conn, 'FS_ACK needs id, ok, reason');
          return;
        }
        this.fsPending.get(h.id)?.({ ok: h.ok, reason: h.reason });
        return;
      }
      default: {
        this.malformed(conn, `unexpected frame type ${f.type}`);
        return;
      }
    }
  }

  private onRow(conn: PeerConnection, h: Record<string, unknown>, body: Buffer): void {
    const problem = rowHeaderProblem(h, body.length, this.opts.maxRowBytes);
    if (problem) {
      this.malformed(conn, `ROW: ${problem}`);
      return;
    }
    let asm = this.assemblers.get(conn);
    if (!asm) {
      asm = new RowAssembler();
      this.assemblers.set(conn, asm);
    }
    const res = asm.add(h as unknown as RowHeader, body);
    if (res === 'partial' || res === 'dropped') return;
    const notLeader = this.writerProblem(res);
    if (notLeader) {
      this.metrics?.received.inc({ result: 'not-leader' });
      this.channel.reject(
        'not-leader',
        {
          peer: conn.node,
          group: res.group,
          row: [res.epoch, res.seq],
          writer: res.writer,
          problem: notLeader,
        },
        'row refused: its writer does not lead the group at its epoch',
      );
      return;
    }
    const cur = this.rows.get(res.group);
    const cmp = compareVersion(versionOf(res), versionOf(cur));
    if (cmp > 0) {
      if (!cur && this.rows.size >= this.opts.maxGroups) {
        this.channel.reject(
          'too-many-groups',
          { peer: conn.node, group: res.group },
          'row refused: cache full',
        );
        return;
      }
      this.store(res);
      this.metrics?.received.inc({ result: 'applied' });
      this.emit('row', res);
    } else if (cmp === 0) {
      this.metrics?.received.inc({ result: 'duplicate' });
    } else {
      this.metrics?.received.inc({ result: 'stale' });
      this.channel.reject(
        'stale',
        {
          peer: conn.node,
          group: res.group,
          row: [res.epoch, res.seq],
          cached: [cur!.epoch, cur!.seq],
          writer: res.writer,
        },
        'stale row ignored: a newer version of the group is cached (a late broadcast from an old leader?)',
      );
    }
    if (conn.direction === 'in')
      conn.send(FrameType.ACK, { group: res.group, epoch: res.epoch, seq: res.seq });
    const done = this.pullsExpecting(res.group);
    for (const p of done) this.maybeFinishPull(p);
  }

  /**
   * Why the leadership view does not back a row's writer; null when it does, or when no view is
   * set. The current (leader, epoch) is remembered on every check, so a predecessor's row that
   * arrives after a handover is checked against who led then. An epoch newer than the view's is
   * refused: a view that lags a real handover refuses one row, and the next one (a period later)
   * passes. An epoch older than anything this node watched (it started later), or a group with no
   * leader known yet (leadership not started: anti-entropy at connect), cannot be checked and is
   * accepted.
   */
  private writerProblem(row: CachedRow): string | null {
    // A refusal is checked again on a fresh view: a memoized one may predate the handover.
    return this.writerProblemIn(row, false) && this.writerProblemIn(row, true);
  }

  private writerProblemIn(row: CachedRow, fresh: boolean): string | null {
    if (!this.leaderView) return null;
    const view = this.leaderView(row.group, fresh);
    let history = this.leaderHistory.get(row.group);
    if (view?.leader && view.epoch !== null && history?.get(view.epoch) !== view.leader) {
      if (!history) {
        history = new Map();
        this.leaderHistory.set(row.group, history);
      }
      history.set(view.epoch, view.leader);
      if (history.size > LEADER_HISTORY_PER_GROUP) history.delete(Math.min(...history.keys()));
    }
    const known = history?.get(row.epoch);
    if (known !== undefined)
      return known === row.writer ? null : `epoch ${row.epoch} is ${known}'s, not ${row.writer}'s`;
    const current = view?.epoch ?? null;
    // No leader known (leadership not started yet, or between leaders): nothing to check against.
    if (current === null) return null;
    if (row.epoch > current) return `epoch ${row.epoch} is newer than the leader's (${current})`;
    return null;
  }

  private onSync(conn: PeerConnection, h: Record<string, unknown>): void {
    if (!isCount(h.id) || !h.digest || typeof h.digest !== 'object' || Array.isArray(h.digest)) {
      this.malformed(conn, 'SYNC needs id and digest');
      return;
    }
    if (h.groups !== undefined && (!Array.isArray(h.groups) || !h.groups.every(isGroupName))) {
      this.malformed(conn, 'SYNC groups must be group names');
      return;
    }
    const digest = h.digest as Record<string, unknown>;
    const groups = h.groups as string[] | undefined;
    const sent: [string, number, number][] = [];
    const candidates = groups ? groups.map((g) => this.rows.get(g)).filter((r) => !!r) : this.rows.values();
    for (const r of candidates) {
      const d = digest[r.group];
      const theirs: [number, number] =
        Array.isArray(d) && d.length === 2 && isCount(d[0]) && isCount(d[1]) ? [d[0], d[1]] : [0, 0];
      if (compareVersion(versionOf(r), theirs) > 0) {
        conn.sendRow(r);
        sent.push([r.group, r.epoch, r.seq]);
      }
    }
    conn.send(FrameType.SYNC_DONE, { id: h.id, rows: sent });
  }

  private onSyncDone(conn: PeerConnection, h: Record<string, unknown>): void {
    if (!isCount(h.id) || !Array.isArray(h.rows)) {
      this.malformed(conn, 'SYNC_DONE needs id and rows');
      return;
    }
    const p = this.pulls.get(h.id);
    if (!p) return; // anti-entropy on connect (id 0), or a pull that timed out
    for (const r of h.rows as unknown[]) {
      if (!Array.isArray(r) || !isGroupName(r[0]) || !isCount(r[1]) || !isCount(r[2])) continue;
      const prev = p.expect.get(r[0]);
      if (!prev || compareVersion([r[1], r[2]], prev) > 0) p.expect.set(r[0], [r[1], r[2]]);
    }
    p.waiting.delete(conn.node);
    this.maybeFinishPull(p);
  }

  private onAck(conn: PeerConnection, h: Record<string, unknown>): void {
    if (!isGroupName(h.group) || !isCount(h.epoch) || !isCount(h.seq)) {
      this.malformed(conn, 'ACK needs group, epoch, seq');
      return;
    }
    const a = this.acks.get(h.group);
    if (!a || compareVersion([h.epoch, h.seq], [a.epoch, a.seq]) < 0) return;
    a.waiting.delete(conn.node);
    if (a.waiting.size > 0) return;
    this.acks.delete(h.group);
    const ms = performance.now() - a.t0;
    this.metrics?.replication.observe(ms / 1000);
    this.emit('replicated', h.group, ms);
  }

  private onFailsafePing(conn: PeerConnection, h: Record<string, unknown>): void {
    const groups = h.groups;
    if (
      !isCount(h.id) ||
      !isCount(h.windowMs) ||
      !Array.isArray(groups) ||
      !groups.every((g) => g && isGroupName(g.group) && isCount(g.epoch))
    ) {
      this.malformed(conn, 'FS_PING needs id, windowMs, groups [{group, epoch}]');
      return;
    }
    const a = this.responder(conn.node, groups as FailsafeGroup[], h.windowMs);
    conn.send(FrameType.FS_ACK, { id: h.id, ok: a.ok, reason: a.reason });
  }

  private malformed(conn: PeerConnection, problem: string): void {
    this.channel.reject('malformed', { peer: conn.node, problem }, 'peer frame refused; link closed');
    conn.close(new Error(problem));
  }

  private pullsExpecting(group: string): PendingPull[] {
    const out: PendingPull[] = [];
    for (const p of this.pulls.values()) if (p.expect.has(group)) out.push(p);
    return out;
  }

  private maybeFinishPull(p: PendingPull): void {
    if (p.waiting.size > 0) return;
    for (const [g, v] of p.expect) if (compareVersion(versionOf(this.rows.get(g)), v) < 0) return;
    p.done();
  }

  private store(row: CachedRow): void {
    const cur = this.rows.get(row.group);
    this.totalBytes += row.body.length - (cur?.body.length ?? 0);
    this.rows.set(row.group, row);
  }
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

class CacheMetrics {
  readonly written: Counter;
  readonly received: Counter<'result'>;
  readonly rejects: Counter<'reason'>;
  readonly replication: Histogram;

  constructor(registry: Registry, cache: StateCache) {
    const registers = [registry];
    this.written = new Counter({
      name: 'coolctl_cache_rows_written_total',
      help: 'Process-state rows this node wrote (as a group leader)',
      registers,
    });
    this.received = new Counter({
      name: 'coolctl_cache_rows_received_total',
      help: 'Rows received from peers, by result: applied, duplicate, stale (older than the cached row: ignored), not-leader (its writer did not lead the group at its epoch: refused)',
      labelNames: ['result'],
      registers,
    });
    this.rejects = new Counter({
      name: 'coolctl_cache_rejects_total',
      help: 'Connections and frames refused on the peer channel, by reason',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of [
      'auth',
      'hello',
      'malformed',
      'too-large',
      'stale',
      'not-leader',
    ] satisfies RejectReason[])
      this.rejects.inc({ reason }, 0);
    this.replication = new Histogram({
      name: 'coolctl_cache_replication_seconds',
      help: 'Replication lag: from a row written here (the oldest not yet acknowledged, when newer rows of the group followed) until every peer that was up acknowledged the group',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    new Gauge({
      name: 'coolctl_cache_rows',
      help: 'Groups with a cached process-state row',
      registers,
      collect() {
        this.set(cache.rowCount);
      },
    });
    new Gauge({
      name: 'coolctl_cache_bytes',
      help: 'Bytes of cached process state',
      registers,
      collect() {
        this.set(cache.bytes);
      },
    });
    new Gauge({
      name: 'coolctl_cache_peers_up',
      help: 'Peers our outgoing peer-channel link reaches (handshake done)',
      registers,
      collect() {
        this.set(cache.peers().filter((p) => p.up).length);
      },
    });
  }
}
