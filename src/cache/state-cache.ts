// The pg2-style process-state cache. Every node caches the latest row of every control group;
// a group's leader writes its row and broadcasts it to every member over the peer channel; a node
// that (re)connects pulls what it lacks (anti-entropy: SYNC with its digest, the peer answers with
// newer rows). A row replaces a cached one only when its (epoch, seq) is newer, so a healed
// netsplit's late broadcast from a stale leader is counted and ignored, never applied.
// The cache is not the authority: processes are. It only resurrects them (warm start).
// A row is applied only when this node's leadership view backs its writer: the writer led the
// group at the row's epoch (setLeaderView). A member holding the cluster secret therefore cannot
// plant state for a group it does not lead, nor a far-future epoch that would shadow every real row;
// with `siteGroups`, nor any row for a group the site does not have.
// Every list a frame carries (digests, SYNC_DONE rows, pulled and failsafe groups) goes in pages
// under the header limit (pages.ts), and every check on a row runs at its first frame, before a
// byte of it is buffered: no peer, and no size of cache, makes a frame we cannot send or hold.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { FailsafeAnswer, FailsafeGroup, FailsafeTransport } from '../cluster/failsafe.ts';
import { zeroSeries } from '../metrics/zero-series.ts';
import type { WireRange } from '../version.ts';
import { type Frame, FrameType } from './frames.ts';
import {
  digestEntryBytes,
  failsafeGroupBytes,
  PAGE_BYTES,
  paginate,
  rowRefBytes,
  syncGroupBytes,
} from './pages.ts';
import { PeerChannel, type PeerStatus, REJECT_REASONS } from './peer-channel.ts';
import type { PeerConnection } from './peer-connection.ts';
import {
  AssemblyBudget,
  type CachedRow,
  compareVersion,
  isGroupName,
  RowAssembler,
  type RowHeader,
  rowHeaderOf,
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
  /**
   * The groups this site has (the config's control groups, read again as they change): a peer's
   * row for any other group is refused (`unknown-group`) at its first frame. Without it (tests,
   * tools) every well-formed group name is taken, up to `maxGroups`.
   */
  siteGroups?: (() => readonly string[]) | undefined;
  /** Bytes of chunked rows in assembly at once, over every link (default: `maxRowBytes`). */
  maxAssemblyBytes?: number;
  /** Replies queued per link before it is closed as `backlog` (default 1 MiB; peer-connection.ts). */
  maxQueuedReplyBytes?: number;
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
  /** The groups asked for: a SYNC_DONE naming others is not believed (it could grow `expect`). */
  groups: Set<string>;
  /** Peer → ids of its pages (one SYNC each) not answered yet; a peer leaves once all are. */
  waiting: Map<string, Set<number>>;
  /**
   * Versions peers said they sent and not here yet (each leaves once it, or a newer one, is): the
   * pull is done when none is left. Kept as what is missing, so a row's arrival costs O(1), not a
   * scan of every group pulled.
   */
  expect: Map<string, [number, number]>;
  done: () => void;
}

type RowRef = [group: string, epoch: number, seq: number];

/** How long a snapshot of the site's groups serves: a group added by a reload waits at most this. */
const SITE_GROUPS_MAX_AGE_MS = 100;

interface PendingAck {
  epoch: number;
  seq: number;
  t0: number;
  waiting: Set<string>;
}

export class StateCache extends EventEmitter implements ProcessStateStore, FailsafeTransport {
  readonly node: string;
  private readonly opts: Required<
    Omit<StateCacheOptions, 'registry' | 'secret' | 'peerKeys' | 'wire' | 'siteGroups'>
  > &
    Pick<StateCacheOptions, 'secret' | 'peerKeys' | 'wire' | 'siteGroups'> & { registry?: Registry };
  private readonly log: Logger;
  private readonly channel: PeerChannel;
  private readonly rows = new Map<string, CachedRow>();
  private readonly assemblers = new WeakMap<PeerConnection, RowAssembler>();
  private readonly assembly: AssemblyBudget;
  /** Links we sent our digest in pages (with `groups`): they tell us only about the groups we hold. */
  private readonly pagedDigestTo = new WeakSet<PeerConnection>();
  /** Per link, the groups we lacked and asked for after its digest (each once, at most maxGroups). */
  private readonly askedFor = new WeakMap<PeerConnection, Set<string>>();
  private siteGroupSet: { groups: Set<string>; atMs: number } | undefined;
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
      maxQueuedReplyBytes: 1024 * 1024,
      ...opts,
      maxAssemblyBytes: opts.maxAssemblyBytes ?? opts.maxRowBytes ?? 64 * 1024 * 1024,
    };
    // A row in assembly whose chunks stopped for as long as a dead link takes to notice gives its
    // bytes up to one that needs them.
    this.assembly = new AssemblyBudget(this.opts.maxAssemblyBytes, this.opts.idleTimeoutMs);
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
      maxQueuedReplyBytes: this.opts.maxQueuedReplyBytes,
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

  /** Bytes reserved for chunked rows still arriving (their declared sizes), over every link. */
  get assemblyBytes(): number {
    return this.assembly.reservedBytes;
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
      localAtMs: performance.now(),
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
    const wanted = [...new Set(groups)];
    if (links.length === 0 || wanted.length === 0) return;
    // One SYNC per page, each with an id of its own: a peer of any release answers each with one
    // SYNC_DONE that fits (pages.ts), and the pull is done when every peer answered every page.
    const pages = paginate(wanted, (g) => syncGroupBytes(g, this.versionHeld(g)));
    const ids = pages.map(() => this.nextId++);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(finish, timeoutMs);
      function finish(): void {
        clearTimeout(timer);
        resolve();
      }
      const pending: PendingPull = {
        groups: new Set(wanted),
        waiting: new Map(links.map((c) => [c.node, new Set(ids)])),
        expect: new Map(),
        done: finish,
      };
      for (const id of ids) this.pulls.set(id, pending);
      pages.forEach((page, i) => {
        const header = { id: ids[i], digest: this.digestOf(page), groups: page };
        for (const c of links) c.send(FrameType.SYNC, header);
      });
    });
    for (const id of ids) this.pulls.delete(id);
  }

  /** Asks `nodes` whether this node may stay in failsafe for `groups`; a node not answering in time is 'silent'. */
  async failsafePing(
    nodes: string[],
    groups: FailsafeGroup[],
    windowMs: number,
    timeoutMs: number,
  ): Promise<Map<string, FailsafeAnswer>> {
    // A leader of many groups asks in pages; a member backs it only if it backs every page (each
    // page's promise covers that page's groups, from when the member received it).
    const pages = groups.length > 0 ? paginate(groups, failsafeGroupBytes) : [[]];
    const answers = await Promise.all(
      nodes.map(async (node): Promise<[string, FailsafeAnswer]> => {
        const conn = this.channel.link(node);
        if (!conn) return [node, { ok: false, reason: 'no peer link' }];
        const perPage = await Promise.all(
          pages.map((page) => this.askFailsafe(conn, page, windowMs, timeoutMs)),
        );
        return [node, perPage.find((a) => !a.ok) ?? perPage[0]!];
      }),
    );
    return new Map(answers);
  }

  private askFailsafe(
    conn: PeerConnection,
    groups: FailsafeGroup[],
    windowMs: number,
    timeoutMs: number,
  ): Promise<FailsafeAnswer> {
    const id = this.nextId++;
    return new Promise<FailsafeAnswer>((resolve) => {
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
  }

  // --- protocol ---------------------------------------------------------------------------------

  /**
   * Anti-entropy on a new link. A digest that fits one frame goes as it always did ("this is all I
   * hold": the peer answers with everything newer or missing). A bigger one goes in pages that name
   * their groups, which any release answers for those groups alone; the groups we lack entirely we
   * learn from the peer's own digest on this link and ask for then (requestMissing).
   */
  private sendDigest(conn: PeerConnection): void {
    let bytes = 0;
    for (const r of this.rows.values()) bytes += digestEntryBytes(r.group, r.epoch, r.seq);
    if (bytes <= PAGE_BYTES) {
      conn.send(FrameType.SYNC, { id: 0, digest: this.digestOf(this.rows.keys()) });
      return;
    }
    this.pagedDigestTo.add(conn);
    const pages = paginate(this.rows.values(), (r) => syncGroupBytes(r.group, [r.epoch, r.seq]));
    for (const page of pages) {
      const groups = page.map((r) => r.group);
      conn.send(FrameType.SYNC, { id: 0, digest: this.digestOf(groups), groups });
    }
  }

  /** After a peer's digest, on a link we paged ours on: ask for the groups it holds and we lack. */
  private requestMissing(conn: PeerConnection, digest: Record<string, unknown>): void {
    if (!this.pagedDigestTo.has(conn)) return;
    let asked = this.askedFor.get(conn);
    if (!asked) {
      asked = new Set();
      this.askedFor.set(conn, asked);
    }
    const want: string[] = [];
    for (const [g, v] of Object.entries(digest)) {
      if (this.rows.size + want.length >= this.opts.maxGroups || asked.size >= this.opts.maxGroups) break;
      if (!isGroupName(g) || !isVersion(v) || this.rows.has(g) || asked.has(g) || !this.isSiteGroup(g))
        continue;
      asked.add(g);
      want.push(g);
    }
    for (const page of paginate(want, (g) => syncGroupBytes(g, undefined)))
      conn.send(FrameType.SYNC, { id: 0, digest: {}, groups: page });
  }

  private digestOf(groups: Iterable<string>): Record<string, [number, number]> {
    const digest: Record<string, [number, number]> = {};
    for (const g of groups) {
      const r = this.rows.get(g);
      if (r) digest[g] = [r.epoch, r.seq];
    }
    return digest;
  }

  private versionHeld(group: string): [number, number] | undefined {
    const r = this.rows.get(group);
    return r ? [r.epoch, r.seq] : undefined;
  }

  /**
   * Whether the site has `group` (always, without `siteGroups`). The list is read again at most
   * every SITE_GROUPS_MAX_AGE_MS: a burst of rows costs one Set, not one scan per row.
   */
  private isSiteGroup(group: string): boolean {
    const list = this.opts.siteGroups;
    if (!list) return true;
    const now = performance.now();
    if (!this.siteGroupSet || now - this.siteGroupSet.atMs > SITE_GROUPS_MAX_AGE_MS)
      this.siteGroupSet = { groups: new Set(list()), atMs: now };
    return this.siteGroupSet.groups.has(group);
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
    const rh = rowHeaderOf(h);
    const whole = rh.off === 0 && body.length === rh.size;
    // Everything that can refuse a row is decided at its first frame, before a byte of it is
    // buffered; its later chunks then continue nothing and are dropped.
    if (rh.off === 0 && !this.admit(conn, rh)) return;
    const res = this.assemblerFor(conn).add(rh, body);
    if (res === 'partial' || res === 'dropped') return;
    if (res === 'over-budget') {
      this.channel.reject(
        'assembly-full',
        {
          peer: conn.node,
          group: rh.group,
          row: [rh.epoch, rh.seq],
          size: rh.size,
          assemblyBytes: this.assembly.reservedBytes,
          limit: this.assembly.limitBytes,
        },
        'row refused: too many bytes of chunked rows in assembly (it comes again with the next write)',
      );
      return;
    }
    // A chunked row took a while: a newer row, a handover or a full cache may have come meanwhile.
    if (!whole && !this.admit(conn, rh)) return;
    this.store(res);
    this.metrics?.received.inc({ result: 'applied' });
    this.emit('row', res);
    this.received(conn, rh);
  }

  /**
   * Whether a peer's row may be taken: the site has its group, the leadership view backs its
   * writer, it is newer than the cached one, and there is room for it. A refusal is counted and
   * logged here, once per row.
   */
  private admit(conn: PeerConnection, h: RowHeader): boolean {
    if (!this.isSiteGroup(h.group)) {
      this.metrics?.received.inc({ result: 'unknown-group' });
      this.channel.reject(
        'unknown-group',
        { peer: conn.node, group: h.group, row: [h.epoch, h.seq], writer: h.writer },
        'row refused: this site has no such control group',
      );
      return false;
    }
    const notLeader = this.writerProblem(h);
    if (notLeader) {
      this.metrics?.received.inc({ result: 'not-leader' });
      this.channel.reject(
        'not-leader',
        { peer: conn.node, group: h.group, row: [h.epoch, h.seq], writer: h.writer, problem: notLeader },
        'row refused: its writer does not lead the group at its epoch',
      );
      return false;
    }
    const cur = this.rows.get(h.group);
    const cmp = compareVersion([h.epoch, h.seq], versionOf(cur));
    if (cmp === 0) {
      this.metrics?.received.inc({ result: 'duplicate' });
      this.received(conn, h);
      return false;
    }
    if (cmp < 0) {
      this.metrics?.received.inc({ result: 'stale' });
      this.channel.reject(
        'stale',
        {
          peer: conn.node,
          group: h.group,
          row: [h.epoch, h.seq],
          cached: [cur!.epoch, cur!.seq],
          writer: h.writer,
        },
        'stale row ignored: a newer version of the group is cached (a late broadcast from an old leader?)',
      );
      this.received(conn, h);
      return false;
    }
    if (!cur && this.rows.size >= this.opts.maxGroups) {
      this.channel.reject('too-many-groups', { peer: conn.node, group: h.group }, 'row refused: cache full');
      return false;
    }
    return true;
  }

  /** A row was taken, or is already here in that version or newer: acknowledge it, wake pulls. */
  private received(conn: PeerConnection, h: RowHeader): void {
    if (conn.direction === 'in') conn.send(FrameType.ACK, { group: h.group, epoch: h.epoch, seq: h.seq });
    const held = versionOf(this.rows.get(h.group));
    for (const p of this.pullsExpecting(h.group)) {
      if (compareVersion(held, p.expect.get(h.group)!) >= 0) p.expect.delete(h.group);
      this.maybeFinishPull(p);
    }
  }

  private assemblerFor(conn: PeerConnection): RowAssembler {
    let asm = this.assemblers.get(conn);
    if (!asm) {
      const created = new RowAssembler(this.assembly);
      conn.once('close', () => created.clear());
      this.assemblers.set(conn, created);
      asm = created;
    }
    return asm;
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
  private writerProblem(row: Pick<CachedRow, 'group' | 'epoch' | 'writer'>): string | null {
    // A refusal is checked again on a fresh view: a memoized one may predate the handover.
    return this.writerProblemIn(row, false) && this.writerProblemIn(row, true);
  }

  private writerProblemIn(row: Pick<CachedRow, 'group' | 'epoch' | 'writer'>, fresh: boolean): string | null {
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
    const sent: RowRef[] = [];
    const candidates = groups ? groups.map((g) => this.rows.get(g)).filter((r) => !!r) : this.rows.values();
    for (const r of candidates) {
      const d = digest[r.group];
      const theirs: [number, number] = isVersion(d) ? [d[0], d[1]] : [0, 0];
      if (compareVersion(versionOf(r), theirs) > 0) {
        conn.sendRow(r);
        sent.push([r.group, r.epoch, r.seq]);
      }
    }
    // Only a pull (id > 0) waits on the list; nobody reads an anti-entropy answer's (id 0), so it
    // goes empty rather than as up to 10 000 entries.
    this.sendSyncDone(conn, h.id, h.id === 0 ? [] : sent);
    if (h.id === 0) this.requestMissing(conn, digest);
  }

  /**
   * SYNC_DONE in pages, every page but the last with `more: true`. A release from before paging
   * takes the first page for the whole answer; that needs a pull of more groups than a page holds,
   * and leaders pull one group at a time (pull() pages bigger pulls so each answer fits one frame).
   */
  private sendSyncDone(conn: PeerConnection, id: number, rows: RowRef[]): void {
    const pages = paginate(rows, rowRefBytes);
    if (pages.length <= 1) {
      conn.send(FrameType.SYNC_DONE, { id, rows: pages[0] ?? [] });
      return;
    }
    for (const [i, page] of pages.entries())
      conn.send(
        FrameType.SYNC_DONE,
        i < pages.length - 1 ? { id, rows: page, more: true } : { id, rows: page },
      );
  }

  private onSyncDone(conn: PeerConnection, h: Record<string, unknown>): void {
    if (!isCount(h.id) || !Array.isArray(h.rows) || (h.more !== undefined && typeof h.more !== 'boolean')) {
      this.malformed(conn, 'SYNC_DONE needs id and rows');
      return;
    }
    const p = this.pulls.get(h.id);
    if (!p) return; // anti-entropy on connect (id 0), or a pull that timed out
    for (const r of h.rows as unknown[]) {
      if (!Array.isArray(r) || !isGroupName(r[0]) || !isCount(r[1]) || !isCount(r[2])) continue;
      if (!p.groups.has(r[0])) continue;
      if (compareVersion(versionOf(this.rows.get(r[0])), [r[1], r[2]]) >= 0) continue; // here already
      const prev = p.expect.get(r[0]);
      if (!prev || compareVersion([r[1], r[2]], prev) > 0) p.expect.set(r[0], [r[1], r[2]]);
    }
    if (h.more !== true) {
      const ids = p.waiting.get(conn.node);
      ids?.delete(h.id);
      if (ids?.size === 0) p.waiting.delete(conn.node);
    }
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

  private pullsExpecting(group: string): Set<PendingPull> {
    // A pull of several pages is in `pulls` once per page id.
    const out = new Set<PendingPull>();
    for (const p of this.pulls.values()) if (p.expect.has(group)) out.add(p);
    return out;
  }

  private maybeFinishPull(p: PendingPull): void {
    if (p.waiting.size === 0 && p.expect.size === 0) p.done();
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

function isVersion(x: unknown): x is [number, number] {
  return Array.isArray(x) && x.length === 2 && isCount(x[0]) && isCount(x[1]);
}

/** What becomes of a row a peer sends (coolctl_cache_rows_received_total{result}). */
const RECEIVED_RESULTS = ['applied', 'duplicate', 'stale', 'not-leader', 'unknown-group'] as const;

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
      help: 'Rows received from peers, by result: applied, duplicate, stale (older than the cached row: ignored), not-leader (its writer did not lead the group at its epoch: refused), unknown-group (the site has no such group: refused)',
      labelNames: ['result'],
      registers,
    });
    this.rejects = new Counter({
      name: 'coolctl_cache_rejects_total',
      help: 'Connections and frames refused on the peer channel, by reason',
      labelNames: ['reason'],
      registers,
    });
    zeroSeries(this.received, { result: RECEIVED_RESULTS });
    zeroSeries(this.rejects, { reason: REJECT_REASONS });
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
      name: 'coolctl_cache_assembly_bytes',
      help: 'Bytes reserved for chunked rows still arriving from peers (their declared sizes), over every link',
      registers,
      collect() {
        this.set(cache.assemblyBytes);
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
