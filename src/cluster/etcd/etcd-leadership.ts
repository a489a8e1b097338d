// EtcdLeadership: per control group leadership on etcd for this node. A watched view of the cluster
// (members, per-group election queues, handover markers, operator state: watched-view.ts), loaded by
// one paged read and kept by the watches of those four sub-prefixes (view-watches.ts), feeds one
// decision loop: each pass freezes the view, decides the groups whose keys changed (every group on
// the timer or a lease, fence or membership change) with decide.ts — the only code that can say
// "leader" — and a group it would newly lead is decided again from a leader check read at one
// revision. Then the roles apply and the etcd actions run; placement moves groups several at a time.
// Where this node is the poller of a leader's lease, it revokes that lease once etcd's answers prove
// it expired (expired-lease-revoker.ts), so a crashed leader's keys go at once, not at etcd's next
// expiry sweep. The node's member record, and the config hash in it, is member-record.ts.
// Invariants: fence() is synchronous and true only while this node leads AND the lease guard's
// monotonic deadline has not passed; a role becomes 'resigned'/'follower' BEFORE the key that
// backs it is deleted; ticks never overlap; every etcd call has a deadline; stop() runs once.
import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import { type Logger, pino } from 'pino';
import type { Registry } from 'prom-client';
import { CoolctlError, ErrorCodes } from '../../errors.ts';
import { apiOrigin } from '../../util/api-origin.ts';
import { waitUnlessAborted } from '../../util/async.ts';
import { FaultLog } from '../../util/log-limit.ts';
import { compareCodeUnits } from '../../util/order.ts';
import { withoutCredentials } from '../../util/url-credentials.ts';
import { decideGroup, type GroupAction, type GroupDecision, leasesToPoll } from '../decide.ts';
import { ClusterError, ClusterErrorCodes } from '../errors.ts';
import { Failsafe, type FailsafeTransport } from '../failsafe.ts';
import type {
  Fence,
  GroupLeadership,
  GroupRole,
  Leadership,
  LeadershipEvents,
  Member,
  RoleChange,
} from '../leadership.ts';
import { LeadershipMetrics, watchStreamsGivenUp } from '../metrics.ts';
import type { OperatorProblem, OperatorState } from '../operator-state.ts';
import { type GroupSeats, planHandovers } from '../placement.ts';
import { leadershipTimingProblems } from '../timing.ts';
import type { ClusterSnapshot, HandoverMarker, QueueEntry } from '../view.ts';
import { Election } from './election.ts';
import { createEtcdClient, type EtcdSecurity, etcdCall } from './etcd-client.ts';
import { memberName } from './etcd-members.ts';
import { EtcdSession, type SessionLease } from './etcd-session.ts';
import { ExpiredLeaseRevoker } from './expired-lease-revoker.ts';
import { MemberRecord } from './member-record.ts';
import { OperatorStore } from './operator-store.ts';
import { type LeaderCheck, markerKey, memberKey, SnapshotReader } from './snapshot.ts';
import { Handovers } from './switchover.ts';
import { ViewWatches } from './view-watches.ts';
import { WatchedView } from './watched-view.ts';

/** The view is loaded again from a full read this often, as a check on the watches. */
const FULL_RESYNC_MS = 60_000;
/** Watch events within this of the first are decided in one pass. */
const WATCH_COALESCE_MS = 20;
/** Whole-cluster work (lease pollers, placement) at most this often outside full passes. */
const CLUSTER_WORK_MS = 250;
/** The same action for a group is not started again within this after the last one ended. */
const ACTION_REPEAT_MS = 2_000;
/** A leader check that failed, or met a marker the view has not seen yet, is retried after this. */
const RETRY_SOON_MS = 100;
/** Rebalancing handovers one node runs at once (placement plans the whole move set). */
const MAX_HANDOVERS_IN_FLIGHT = 32;
/**
 * etcd actions (enqueue, step out, …) one node runs at once. A mass enqueue (start, a reload that
 * adds many groups) otherwise fires one call per group at once, each with the call deadline, and
 * on a loaded machine most of them miss it and are all fired again.
 */
const MAX_ACTIONS_IN_FLIGHT = 64;

export interface EtcdLeadershipOptions {
  node: string;
  apiUrl: string;
  peerUrl?: string;
  /** Published in the member record (Member.configHash); setConfigHash() replaces it. */
  configHash?: string;
  groups: string[];
  etcd: { hosts: string[] } & EtcdSecurity;
  /** Key prefix of this site's cluster, e.g. /coolctl/site-a */
  prefix: string;
  /** Lease TTL, whole seconds, ≥ 2. */
  leaseTtlS: number;
  keepaliveIntervalMs: number;
  /** Subtracted from the lease deadline: covers clock-rate drift and a write already on the wire. */
  safetyMarginMs: number;
  etcdCallTimeoutMs: number;
  /** Membership must be unchanged this long before groups are moved to even out placement. */
  rebalanceHoldMs: number;
  /** Where the lease id is kept across restarts. */
  dataDir: string;
  /** A main event loop stuck this long gives the lease up (EtcdSession; default 1.5 × TTL). */
  mainStallBoundMs?: number;
  logger?: Logger;
  registry?: Registry;
  /** Monotonic clock, ms. */
  now?: () => number;
  /**
   * Failsafe mode: with etcd unreachable, keep leading while every member, asked over this
   * transport (the peer channel), backs us. Absent: off — a leader stops at its lease deadline.
   */
  failsafe?: FailsafeTransport;
}

interface GroupState {
  group: string;
  role: GroupRole;
  /** Our epoch while leading. */
  epoch: number | null;
  /** Since when (ms since the Unix epoch) in this role: what operators see. */
  sinceMs: number;
  /** The same on the monotonic clock: what placement's hold measures (a wall clock may jump). */
  sinceMonoMs: number;
  /** The leader and epoch as the last snapshot showed them. */
  leader: string | null;
  leaderEpoch: number | null;
  /** Why the role last changed. */
  reason: string;
  /** Create revision of the key relinquish() gave up, until a snapshot shows it gone. */
  givenUpRevision: number | null;
  /** The last relinquish, with its time (kept: the API shows why the group last moved away). */
  relinquished: { reason: string; atMs: number } | null;
  /** The last etcd action for the group: in flight, or when it ended (monotonic ms). */
  action: {
    what: GroupAction;
    done: boolean;
    atMs: number;
    blocked: boolean;
    /** The queue it was decided from: the frozen view shares a group's queue until it changes. */
    queue: readonly QueueEntry[];
  } | null;
}

export class EtcdLeadership extends EventEmitter<LeadershipEvents> implements Leadership {
  readonly node: string;
  private readonly opts: EtcdLeadershipOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly client: Etcd3;
  private readonly session: EtcdSession;
  private readonly metrics: LeadershipMetrics | undefined;
  /** Counts a watch stream given up (its member did not answer a progress request). */
  private readonly givenUp: (() => void) | undefined;
  private readonly revoker: ExpiredLeaseRevoker;
  private readonly failsafe: Failsafe | undefined;
  /** Monotonic ms of the last etcd call that succeeded (keepalive ack or snapshot read). */
  private lastEtcdOkMs = Number.NEGATIVE_INFINITY;
  private readonly state = new Map<string, GroupState>();
  /** The groups this node takes part in (hot reload may change them). */
  private groupList: string[];
  private readonly stopping = new AbortController();
  private elections = new Map<string, Election>();
  private lease: SessionLease | null = null;
  private readonly member: MemberRecord;
  private snapshot: ClusterSnapshot | null = null;
  private etcdReachable = false;
  private everReadable = false;
  /** A member that answers some reads and not others flips `etcdReachable` often: bounded lines. */
  private readonly readFaults: FaultLog;
  /** Per group: a failed etcd action (enqueue, resign, marker clear) logged until one succeeds. */
  private readonly actionFaults: FaultLog;
  private memberList: Member[] = [];
  /**
   * Every node seen as a member since this run started. Failsafe asks all of them, not only the last
   * snapshot's: a member that stopped or restarted just before etcd became unreachable would
   * otherwise not be asked, and could be elected on an etcd the leader cannot reach.
   */
  private readonly everMembers = new Set<string>();
  private membersKey = '';
  private membersChangedAtMs = 0;
  /** Monotonic ms of the last fence: leadership needs a snapshot read after it. */
  private fencedAtMs = Number.NEGATIVE_INFINITY;
  /** fence() saw the guard lapse and the roles are not fenced yet (onLapseSeen). */
  private lapseSeen = false;
  private ticking = false;
  /** Monotonic ms when the decision loop last finished a pass (its liveness, for /healthz). */
  lastPassAtMs = performance.now();
  private dirty = false;
  /** The next pass decides every group, not only those whose keys changed. */
  private fullPass = true;
  private resyncTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private holdTimer: NodeJS.Timeout | undefined;
  private coalesceTimer: NodeJS.Timeout | undefined;
  /** The operator maps of the last pass (the view keeps them while no operator key changes). */
  private lastOperators: ClusterSnapshot['operators'] | null = null;
  private lastOperatorsInvalid: ClusterSnapshot['operatorsInvalid'] | null = null;
  /** Monotonic ms of the last whole-cluster work of a pass (lease pollers, placement). */
  private clusterWorkAtMs = Number.NEGATIVE_INFINITY;
  private readonly reader: SnapshotReader;
  private readonly view: WatchedView;
  /** Monotonic ms of the last load of the view. */
  private loadedAtMs = Number.NEGATIVE_INFINITY;
  private reloadWanted = false;
  /** The timer asks for a read that proves etcd readable and shows our member key. */
  private checkDue = false;
  /** Whose lease held our member key at a read (null: no key); taken by the next pass. */
  private memberKeySeen: { atMs: number; leaseHex: string | null } | undefined;
  private readonly actionSlots = new Slots(MAX_ACTIONS_IN_FLIGHT);
  /** Rebalancing switchovers this node started and that have not settled: group → target. */
  private readonly rebalancing = new Map<string, string>();
  /** Groups whose rebalancing handover failed, and when (monotonic ms). */
  private readonly rebalanceFailedAtMs = new Map<string, number>();
  /** Groups to decide in the next pass whatever the view says changed (an action ended). */
  private recheck = new Set<string>();
  private readonly operators: OperatorStore;
  /** The view's watches, on their own client (replaced when etcd leaves a watch unconfirmed). */
  private readonly watches: ViewWatches;
  private readonly handovers: Handovers;
  private started = false;
  private stopPromise: Promise<void> | undefined;

  constructor(opts: EtcdLeadershipOptions) {
    super();
    const problems = leadershipTimingProblems(opts);
    if (problems.length > 0) {
      throw new CoolctlError(
        ErrorCodes.CONFIG_INVALID,
        `leadership timing: ${problems.map((p) => p.message).join('; ')}`,
      );
    }
    checkGroupNames(opts.groups);
    // Every node reads member records by one rule (snapshot.ts): a record whose apiUrl breaks it is
    // not a member, so a node that advertised one would never lead anything. Said here, at start.
    const api = apiOrigin(opts.apiUrl);
    if ('why' in api)
      throw new CoolctlError(
        ErrorCodes.CONFIG_INVALID,
        `the API address this node advertises (${withoutCredentials(String(opts.apiUrl))}) ${api.why}`,
      );
    this.groupList = [...opts.groups];
    this.opts = opts;
    this.node = opts.node;
    this.now = opts.now ?? (() => performance.now());
    this.readFaults = new FaultLog(this.now);
    this.actionFaults = new FaultLog(this.now);
    // The daemon's logger already names the node; binding it again would repeat `node` in every line.
    // Each part takes its `component` on this base, not on `this.log`, whose `component` it would repeat.
    const root = opts.logger ?? pino({ level: 'silent' });
    const base = root.bindings().node === opts.node ? root : root.child({ node: opts.node });
    this.log = base.child({ component: 'leadership' });
    // One line and one gauge per change for the client that reads and decides: a member that hangs
    // costs nothing (member-choice.ts), but whoever runs etcd should hear of it.
    const memberLog = base.child({ component: 'etcd-members' });
    this.client = createEtcdClient({
      ...opts.etcd,
      callTimeoutMs: opts.etcdCallTimeoutMs,
      onMemberState: (member, answering) => {
        this.metrics?.memberAnswering(member, answering);
        if (answering) memberLog.info({ member }, 'etcd member answers again');
        else
          memberLog.warn(
            { member },
            'etcd member does not answer: calls go to the others, it is probed now and then',
          );
      },
    });
    this.watches = new ViewWatches({
      etcd: opts.etcd,
      prefix: opts.prefix,
      callTimeoutMs: opts.etcdCallTimeoutMs,
      logger: this.log,
      now: this.now,
      stopping: () => this.stopPromise !== undefined,
      onEvents: (events) => {
        this.view.apply(events);
        this.requestTick(false);
      },
      onConnected: () => this.requestTick(),
      onDisconnected: () => {
        this.checkDue = true;
        this.requestTick();
      },
      onCancelled: () => {
        this.reloadWanted = true;
        this.requestTick();
      },
      onSilent: () => this.givenUp?.(),
      onReplaced: () => this.metrics?.watchReset(),
    });
    this.session = new EtcdSession({
      hosts: opts.etcd.hosts,
      security: { tls: opts.etcd.tls, auth: opts.etcd.auth },
      node: opts.node,
      ...(opts.mainStallBoundMs === undefined ? {} : { mainStallBoundMs: opts.mainStallBoundMs }),
      ttlS: opts.leaseTtlS,
      keepaliveIntervalMs: opts.keepaliveIntervalMs,
      safetyMarginMs: opts.safetyMarginMs,
      callTimeoutMs: opts.etcdCallTimeoutMs,
      dataDir: opts.dataDir,
      logger: base.child({ component: 'etcd-session' }),
      now: this.now,
    });
    this.metrics = opts.registry
      ? new LeadershipMetrics(
          opts.registry,
          () => this.session.guard.remainingMs(),
          opts.etcd.hosts.map(memberName),
        )
      : undefined;
    this.givenUp = opts.registry ? watchStreamsGivenUp(opts.registry, 'leadership') : undefined;
    this.revoker = new ExpiredLeaseRevoker({
      client: this.client,
      callTimeoutMs: opts.etcdCallTimeoutMs,
      logger: base.child({ component: 'expired-lease-revoker' }),
      now: this.now,
      onRevoked: () => this.requestTick(),
      onPoll: () => this.metrics?.expiryPoll(),
      onRevoke: () => this.metrics?.expiredLeaseRevoked(),
    });
    this.reader = new SnapshotReader({
      client: this.client,
      prefix: opts.prefix,
      callTimeoutMs: opts.etcdCallTimeoutMs,
      now: this.now,
      logger: this.log,
      onIgnored: (kind) => this.metrics?.ignoredKey(kind),
    });
    this.view = new WatchedView({
      prefix: opts.prefix,
      maxValueBytes: this.reader.valueLimitBytes,
      onIgnored: (kv, kind, why) => this.reader.noteIgnored(kv, kind, why),
    });
    this.handovers = new Handovers({
      client: this.client,
      prefix: opts.prefix,
      node: opts.node,
      callTimeoutMs: opts.etcdCallTimeoutMs,
      logger: this.log,
      signal: this.stopping.signal,
      markerRevision: (group) => this.snapshot?.markers.get(group)?.modRevision,
      wake: () => this.requestTick(),
    });
    this.member = new MemberRecord({
      client: this.client,
      prefix: opts.prefix,
      node: opts.node,
      apiUrl: opts.apiUrl,
      peerUrl: opts.peerUrl,
      configHash: opts.configHash,
      callTimeoutMs: opts.etcdCallTimeoutMs,
      logger: this.log,
      now: this.now,
      lease: () => this.lease,
      signal: this.stopping.signal,
      stopping: () => this.stopPromise !== undefined,
    });
    this.operators = new OperatorStore({
      client: this.client,
      prefix: opts.prefix,
      callTimeoutMs: opts.etcdCallTimeoutMs,
      logger: this.log,
      onInvalid: (group) => this.metrics?.operatorStateInvalid(group),
    });
    for (const group of opts.groups) {
      this.state.set(group, newGroupState(group, this.now()));
      this.metrics?.groupAdded(group);
    }
    if (opts.failsafe) {
      this.failsafe = new Failsafe(
        {
          transport: opts.failsafe,
          windowMs: opts.leaseTtlS * 1000,
          marginMs: opts.safetyMarginMs,
          intervalMs: opts.keepaliveIntervalMs,
          reachableWithinMs: opts.keepaliveIntervalMs * 2,
          now: this.now,
          logger: base,
        },
        {
          lastEtcdOkMs: () => this.lastEtcdOkMs,
          leads: (group) => this.fence(group) !== null,
        },
      );
      this.failsafe.on('lapsed', (reason: string) => {
        this.failsafe?.disengage('lapsed');
        if (!this.session.guard.mayAct()) this.onFenced(`failsafe lapsed: ${reason}`);
      });
    }
    this.session.on('lease', (lease: SessionLease) => this.onLease(lease));
    this.session.on('lost', (reason: string) => {
      this.failsafe?.disengage('etcd says our lease is gone');
      this.onFenced(`lease lost: ${reason}`);
    });
    this.session.on('expired', () => this.onFenced('lease guard deadline passed'));
    this.session.on('proven', () => {
      this.lastEtcdOkMs = this.now();
      this.failsafe?.disengage('lease proven again');
      this.requestTick();
    });
    this.session.on('keepalive', (s: number) => {
      this.lastEtcdOkMs = this.now();
      this.metrics?.keepaliveSeconds(s);
    });
    this.session.on('keepalive-failed', (member: string) => this.metrics?.keepaliveFailed(member));
    // The data dir's health is the world's, not a stopped loop: a metric and an alert, not /healthz
    // (a watchdog restart cannot free a disk, and the start's own probe would then keep it down).
    this.session.on('lease-file', (ok: boolean) => this.metrics?.dataDirWrite(ok));
  }

  get healthy(): boolean {
    return this.started && !this.stopPromise && this.etcdReachable && this.session.guard.mayAct();
  }

  /** Whether failsafe mode is engaged (etcd unreachable, asking the members to back us). */
  get failsafeActive(): boolean {
    return this.failsafe?.active ?? false;
  }

  /** Lease guard, for diagnostics and tests (its deadline is what fence() enforces). */
  get leaseDeadlineMs(): number {
    return this.session.guard.deadlineMs();
  }

  async start(signal?: AbortSignal): Promise<void> {
    if (this.started) return;
    // Bounded: a crashed predecessor with our node name may hold the member key for one TTL.
    const budgetMs = this.opts.leaseTtlS * 1000 + 4 * this.opts.etcdCallTimeoutMs;
    const bound = AbortSignal.any([
      AbortSignal.timeout(budgetMs),
      this.stopping.signal,
      ...(signal ? [signal] : []),
    ]);
    let lastRetried: unknown;
    try {
      await this.session.start(bound);
      while (!this.member.registered) {
        // One slow answer (a loaded etcd, TLS and auth sign-ins of several nodes starting at once) is
        // not a failed start: try again until the budget is spent.
        try {
          await this.member.register(bound);
        } catch (err) {
          if (bound.aborted || (err as { retryable?: unknown }).retryable !== true) throw err;
          lastRetried = err;
          this.log.warn({ err: (err as Error).message }, 'member register failed; retrying');
        }
        if (
          !this.member.registered &&
          !(await waitUnlessAborted(Math.min(200, this.opts.keepaliveIntervalMs), bound))
        )
          throw bound.reason;
      }
    } catch (err) {
      await this.session.stop().catch(() => {});
      this.client.close();
      this.watches.close();
      // Only etcd's failures are etcd's: the data dir (in use, full, read-only) says so itself.
      if (err instanceof CoolctlError && !ETCD_START_CODES.has(err.code)) throw err;
      const fsCode = dataDirFailure(err);
      if (fsCode) {
        throw new CoolctlError(
          ErrorCodes.STARTUP,
          `leadership start: cannot use the data dir ${this.opts.dataDir}: ${fsCode} (it must be writable, with free space)`,
          { cause: err },
        );
      }
      if (this.member.nameTaken) {
        throw new ClusterError(
          ClusterErrorCodes.NODE_NAME_TAKEN,
          `leadership start: node name ${this.node} is registered by another live process (${memberKey(this.opts.prefix, this.node)}); give each node its own name`,
          { cause: err, retryable: true },
        );
      }
      throw new ClusterError(
        ClusterErrorCodes.ETCD_UNAVAILABLE,
        `leadership start: etcd not usable within ${budgetMs} ms (${this.opts.etcd.hosts.join(', ')}): ${startFailure(err, bound.aborted, lastRetried, this.lease !== null)}`,
        {
          cause: err,
          retryable: true,
        },
      );
    }
    this.started = true;
    const resyncMs = Math.max(500, this.opts.keepaliveIntervalMs * 3);
    this.resyncTimer = setInterval(() => {
      this.checkDue = true;
      this.requestTick();
    }, resyncMs);
    this.log.info({ groups: this.groupList.length, lease: this.lease?.hex }, 'leadership started');
    this.requestTick();
  }

  stop(): Promise<void> {
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  private async doStop(): Promise<void> {
    this.stopping.abort(new ClusterError(ClusterErrorCodes.ABORTED, 'leadership stopping'));
    clearInterval(this.resyncTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.holdTimer);
    clearTimeout(this.coalesceTimer);
    this.watches.cancel();
    this.revoker.stop();
    this.failsafe?.stop();
    // Roles first: fence() is null from here on, before etcd hears anything.
    for (const s of this.state.values()) {
      if (s.role !== 'resigned') this.setRole(s, 'resigned', null, 'node stopping');
    }
    this.handovers.rejectAll('node stopping');
    // Revoking the lease deletes every key it holds (all election keys, the member key, markers) in
    // one etcd revision: every group's successor sees its predecessor gone at once.
    await this.session.stop();
    this.client.close();
    this.watches.close();
    this.log.info('leadership stopped');
  }

  /**
   * Hot reload: takes part in `groups` from now on. A removed group is resigned first (fence() is
   * null for it at once, then its election key goes); an added one joins the queue on the next tick.
   */
  setGroups(groups: string[]): void {
    checkGroupNames(groups);
    const want = new Set(groups);
    for (const [group, s] of this.state) {
      if (want.has(group)) continue;
      if (s.role !== 'resigned') this.setRole(s, 'resigned', null, 'group removed from the config');
      this.state.delete(group);
      this.metrics?.groupRemoved(group);
      const election = this.elections.get(group);
      this.elections.delete(group);
      const mine = this.snapshot?.queues.get(group)?.find((e) => e.leaseHex === this.lease?.hex);
      if (election && mine)
        void election
          .resign(this.stopping.signal, mine.createRevision)
          .catch((err: unknown) =>
            this.log.warn({ err, group }, 'leaving a removed group failed; the lease expiry cleans up'),
          );
    }
    for (const group of groups) {
      if (this.state.has(group)) continue;
      this.state.set(group, newGroupState(group, this.now()));
      this.metrics?.groupAdded(group);
      if (this.lease) this.elections.set(group, this.newElection(group, this.lease));
    }
    this.groupList = [...groups];
    this.log.info({ groups: this.groupList }, 'groups changed');
    this.requestTick();
  }

  operator(group: string): OperatorState {
    return this.operators.state(group);
  }

  operatorProblem(group: string): OperatorProblem | null {
    return this.operators.problem(group);
  }

  async updateOperator(group: string, change: (cur: OperatorState) => OperatorState): Promise<OperatorState> {
    if (!this.state.has(group))
      throw new ClusterError(ClusterErrorCodes.NOT_LEADER, `operator state: unknown group ${group}`);
    const stored = await this.operators.update(group, change);
    this.requestTick();
    return stored;
  }

  groups(): GroupLeadership[] {
    return [...this.state.values()].map((s) => ({
      group: s.group,
      role: s.role,
      leader: s.role === 'leader' ? this.node : s.leader,
      epoch: s.role === 'leader' ? s.epoch : s.leaderEpoch,
      sinceMs: s.sinceMs,
      reason: s.reason,
      relinquished: s.relinquished,
    }));
  }

  members(): Member[] {
    return this.memberList.map((m) => ({ ...m }));
  }

  fence(group: string): Fence | null {
    const s = this.state.get(group);
    if (s?.role !== 'leader' || s.epoch === null || this.lapseSeen) return null;
    const guardUntil = this.session.guard.deadlineMs();
    const failsafeUntil = this.failsafe?.holds()
      ? this.now() + this.failsafe.remainingMs()
      : Number.NEGATIVE_INFINITY;
    const untilMs = Math.max(guardUntil, failsafeUntil);
    if (!(this.now() < untilMs)) {
      this.onLapseSeen();
      return null;
    }
    return { epoch: s.epoch, untilMs };
  }

  /**
   * fence() found the guard lapsed: that is a fence, whatever an ack does next. The keepalive worker
   * moves the deadline on its own thread, so on resume from a freeze a keepalive it sends then can
   * be acked before the expiry timer or a tick runs here; an etcd that renews a lease it is revoking
   * (etcd issues 14758, 20547: fixed in 3.4.39) acks it although our keys are gone and another node
   * leads. Until the roles are fenced (next microtask, before any I/O callback) fence() answers
   * null, and leading again needs a snapshot read after the fence.
   */
  private onLapseSeen(): void {
    if (this.lapseSeen) return;
    this.lapseSeen = true;
    queueMicrotask(() => {
      this.lapseSeen = false;
      if ([...this.state.values()].some((x) => x.role === 'leader'))
        this.onFenced('lease guard deadline passed');
    });
  }

  /**
   * Gives a group this node leads but cannot drive to the next candidate. The role goes first
   * (fence() is null before etcd hears anything), then our key is deleted on its create revision
   * (a newer key of ours is never touched); the decision loop re-queues us at the back once a
   * snapshot shows the key gone, and never leads on the given-up key again — not even from a read
   * that was in flight. A sole candidate thus leads again a tick or two later, with a new epoch.
   */
  relinquish(group: string, reason: string): void {
    const s = this.state.get(group);
    if (s?.role !== 'leader' || s.epoch === null || this.stopPromise) return;
    const epoch = s.epoch;
    s.givenUpRevision = epoch;
    s.relinquished = { reason, atMs: Date.now() };
    this.setRole(s, 'resigned', null, `relinquished: ${reason}`, 'warn');
    this.metrics?.relinquished(group);
    const election = this.elections.get(group);
    if (!election) {
      this.requestTick();
      return;
    }
    void election
      .resign(this.stopping.signal, epoch)
      .catch((err: unknown) => {
        if (!this.stopping.signal.aborted)
          this.log.warn({ err, group }, 'deleting a relinquished key failed; the next tick retries');
      })
      .finally(() => this.requestTick());
  }

  async switchover(group: string, targetNode: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? 5_000;
    const s = this.state.get(group);
    if (!s) throw new ClusterError(ClusterErrorCodes.SWITCHOVER_FAILED, `switchover: unknown group ${group}`);
    if (this.stopPromise)
      throw new ClusterError(ClusterErrorCodes.SWITCHOVER_FAILED, 'switchover: node stopping');
    const fenced = this.fence(group);
    if (targetNode === this.node) {
      if (fenced) return;
      throw new ClusterError(
        ClusterErrorCodes.NOT_LEADER,
        `switchover ${group}: ask the leader (${s.leader ?? 'none'}) to hand over to ${targetNode}`,
      );
    }
    if (!fenced || !this.lease) {
      throw new ClusterError(
        ClusterErrorCodes.NOT_LEADER,
        `switchover ${group}: ${this.node} does not lead it; the leader is ${s.leader ?? 'nobody'}`,
      );
    }
    if (!this.memberList.some((m) => m.node === targetNode)) {
      throw new ClusterError(
        ClusterErrorCodes.SWITCHOVER_FAILED,
        `switchover ${group}: ${targetNode} is not a member`,
      );
    }
    // A marker naming us as the target is of the handover that made us leader: done, only not
    // cleared yet (that is one etcd call behind the lead). Clear it rather than refuse a new one.
    const done = this.snapshot?.markers.get(group);
    if (done && done.to === this.node) await this.handovers.clearMarker(group, done.modRevision);
    // So is one too large to read (no handover writes it): it would refuse every switchover.
    else if (!done && this.view.isOversized(markerKey(this.opts.prefix, group))) {
      const [check] = await this.reader.leaderCheck([group], this.stopping.signal);
      const seen = check?.markers.get(group);
      if (seen) await this.handovers.clearMarker(group, seen.modRevision);
    }
    return this.handovers.begin({
      group,
      to: targetNode,
      epoch: fenced.epoch,
      electionKey: this.elections.get(group)!.key,
      leaseId: this.lease.id,
      timeoutMs,
    });
  }

  // --- the decision loop -------------------------------------------------------------------------

  /**
   * Wakes the decision loop. `full` (the default: timer, lease, fence, hot reload, operator calls)
   * decides every group; a watch event alone decides only the groups whose keys it changed.
   */
  private requestTick(full = true): void {
    if (full) this.fullPass = true;
    if (this.stopPromise || !this.started) return;
    if (this.ticking) {
      this.dirty = true;
      return;
    }
    if (!full) {
      // Watch events come one revision at a time (a mass enqueue is thousands): gather those of
      // the next few ms into one pass instead of one pass each.
      this.coalesceTimer ??= setTimeout(() => {
        this.coalesceTimer = undefined;
        this.runTicks();
      }, WATCH_COALESCE_MS);
      return;
    }
    this.runTicks();
  }

  private runTicks(): void {
    if (this.stopPromise || !this.started) return;
    if (this.ticking) {
      this.dirty = true;
      return;
    }
    this.ticking = true;
    void (async () => {
      try {
        do {
          this.dirty = false;
          await this.tick();
          this.lastPassAtMs = performance.now();
        } while (this.dirty && !this.stopPromise);
      } catch (err) {
        this.log.error({ err }, 'decision loop failed; retrying on the next wake-up');
      } finally {
        this.ticking = false;
      }
    })();
  }

  /**
   * One decision pass, from ONE frozen copy of the watched view: no etcd read, except (a) loading
   * the view (at start, after a lost watch, every FULL_RESYNC_MS as a check), (b) on the timer, one
   * linearizable read of our member key (etcd readable? our key still ours?), and (c) the leader
   * check of the groups this pass would newly lead.
   */
  private async tick(): Promise<void> {
    const leaseAtRead = this.lease;
    const full = this.fullPass;
    this.fullPass = false;
    try {
      if (!this.view.loaded || this.reloadWanted || this.now() - this.loadedAtMs >= FULL_RESYNC_MS)
        await this.reload();
      else if (this.checkDue || !this.etcdReachable) await this.checkMemberKey();
    } catch (err) {
      if (full) this.fullPass = true;
      if (this.stopPromise) return;
      const notLogged =
        this.etcdReachable || !this.readFaults.reported('etcd') ? this.readFaults.failure('etcd') : -1;
      if (notLogged >= 0)
        this.log.warn(
          { err, notLogged },
          'etcd not readable (no quorum or unreachable): no decisions until it is',
        );
      this.etcdReachable = false;
      this.engageFailsafe();
      this.fenceIfLapsed();
      return;
    }
    if (this.session.guard.mayAct()) this.failsafe?.disengage('etcd readable and the lease proven');
    if (this.stopPromise) return;
    if (this.watches.replaceIfUnconfirmed()) {
      // The view is not trusted until it is loaded again (on the new client's watches).
      this.reloadWanted = true;
      this.requestTick();
      return;
    }
    if (!this.etcdReachable && (!this.everReadable || this.readFaults.recovery('etcd')))
      this.log.info({ revision: this.view.loadRevision }, 'etcd readable');
    this.etcdReachable = true;
    this.everReadable = true;
    this.member.publishConfigHash();
    if (this.lease !== leaseAtRead) {
      this.fullPass = true;
      this.dirty = true; // the lease changed under the read: decide with the new one
      return;
    }
    const { snapshot: snap, changed } = this.view.freeze(this.groupList);
    this.snapshot = snap;
    this.updateMembers(snap);
    if (
      full ||
      changed === null ||
      snap.operators !== this.lastOperators ||
      snap.operatorsInvalid !== this.lastOperatorsInvalid
    ) {
      this.lastOperators = snap.operators;
      this.lastOperatorsInvalid = snap.operatorsInvalid;
      for (const group of this.operators.apply(snap, this.groupList)) {
        const now = this.operators.state(group);
        this.log.info({ group, operator: now }, 'operator state changed');
        this.emit('operator', group, now);
      }
    }
    const seen = this.memberKeySeen;
    this.memberKeySeen = undefined;
    if (
      this.lease &&
      this.member.registered &&
      seen &&
      seen.atMs > this.member.registeredAtMs &&
      seen.leaseHex !== this.lease.hex
    ) {
      // Our member key is gone (deleted or overwritten by hand): our election keys no longer count
      // for anyone. Leave every queue before registering again, so we come back at the back instead
      // of taking the groups back on our old keys.
      this.member.markUnregistered();
      this.log.warn('our member key is gone: leaving every queue and registering again');
      await Promise.all(
        [...this.elections.values()].map((e) =>
          e
            .resign(this.stopping.signal, null)
            .catch((err: unknown) =>
              this.log.warn({ err, key: e.key }, 'leaving a queue failed; the next tick retries'),
            ),
        ),
      );
    }
    if (this.lease && !this.member.registered)
      await this.member
        .register(this.stopping.signal)
        .catch((err: unknown) => this.log.warn({ err }, 'member registration failed'));
    this.fenceIfLapsed();

    const actions = { started: 0 };
    const members = new Set(snap.members.keys());
    const recheck = this.recheck;
    this.recheck = new Set();
    const toDecide =
      full || changed === null
        ? [...this.state.values()]
        : [...new Set([...changed, ...recheck])].flatMap((g) => this.state.get(g) ?? []);
    /** Groups this pass would newly lead: decided again from a leader check read. */
    const toCheck: GroupState[] = [];
    for (const s of toDecide) {
      const queue = snap.queues.get(s.group) ?? [];
      const marker = snap.markers.get(s.group);
      const d = this.decide(s, queue, marker, members, true);
      s.leader = queue[0]?.node ?? null;
      s.leaderEpoch = queue[0]?.createRevision ?? null;
      if (d.role === 'leader' && !(s.role === 'leader' && s.epoch === d.epoch)) {
        toCheck.push(s);
        continue;
      }
      this.apply(s, d, marker, queue, members, actions);
    }
    if (toCheck.length > 0) await this.checkAndLead(toCheck, leaseAtRead, actions);
    // What looks at every group of the cluster runs on full passes, and at most every
    // CLUSTER_WORK_MS otherwise: a pass of a few changed groups stays a few groups' work.
    const clusterWork = full || changed === null || this.now() - this.clusterWorkAtMs >= CLUSTER_WORK_MS;
    if (!clusterWork) return;
    this.clusterWorkAtMs = this.now();
    this.revoker.follow(leasesToPoll(snap.queues, this.node, this.lease?.hex ?? null));
    // The actions run on (the watch brings what they did); placement waits for a quiet pass.
    if (actions.started > 0) return;
    this.maybeRebalance(snap);
  }

  private decide(
    s: GroupState,
    queue: readonly QueueEntry[],
    marker: HandoverMarker | undefined,
    members: ReadonlySet<string>,
    fresh: boolean,
  ): GroupDecision {
    const d = decideGroup({
      me: this.node,
      leaseHex: this.lease?.hex ?? null,
      registered: this.member.registered,
      role: s.role,
      queue,
      marker,
      members,
      mayAct: this.session.guard.mayAct(),
      fresh,
      promisedTo: this.failsafe?.promisedTo(s.group) ?? null,
      quarantined: this.failsafe?.quarantined() ?? false,
      givenUpRevision: s.givenUpRevision,
    });
    if (
      s.givenUpRevision !== null &&
      !queue.some((e) => e.leaseHex === this.lease?.hex && e.createRevision === s.givenUpRevision)
    )
      s.givenUpRevision = null;
    return d;
  }

  private apply(
    s: GroupState,
    d: GroupDecision,
    marker: HandoverMarker | undefined,
    queue: readonly QueueEntry[],
    members: ReadonlySet<string>,
    actions: { started: number },
  ): void {
    if (d.role !== s.role || (d.role === 'leader' && d.epoch !== s.epoch))
      this.setRole(s, d.role, d.epoch, d.reason);
    if (d.action !== 'none' && this.startAction(s, d, marker, queue)) actions.started++;
    this.handovers.observe(s.group, queue[0]?.node, members);
  }

  /**
   * Runs the group's action unless one is in flight for it, or the same one, decided from the same
   * queue (the view has shown nothing new for the group since), ended less than ACTION_REPEAT_MS ago:
   * the watch may lag the write, and a second put-if-absent or delete would only load etcd. A failed
   * action is tried again after that.
   */
  private startAction(
    s: GroupState,
    d: GroupDecision,
    marker: HandoverMarker | undefined,
    queue: readonly QueueEntry[],
  ): boolean {
    const last = s.action;
    if (last && !last.done) {
      last.blocked = true; // decided again as soon as it ends
      return false;
    }
    if (last && last.what === d.action && last.queue === queue && this.now() - last.atMs < ACTION_REPEAT_MS)
      return false;
    const mark = { what: d.action, done: false, atMs: this.now(), blocked: false, queue };
    s.action = mark;
    const ended = (): void => {
      mark.done = true;
      mark.atMs = this.now();
      if (mark.blocked && this.state.get(s.group) === s) {
        this.recheck.add(s.group);
        this.requestTick(false);
      }
    };
    void this.actionSlots.run(() => this.act(s.group, d.action, d.reason, marker, queue)).finally(ended);
    return true;
  }

  /**
   * The watched view says we would lead these groups; each sub-prefix has its own watch, so the view
   * is not at one revision. Lead only on a leader check read at one revision, made after the last
   * fence (`fresh`), exactly as a whole snapshot read did before: members' leases, the group's queue
   * and its marker's revision. A marker newer than the view's waits for the watch to bring it.
   */
  private async checkAndLead(
    list: readonly GroupState[],
    leaseAtRead: SessionLease | null,
    actions: { started: number },
  ): Promise<void> {
    let checks: LeaderCheck[];
    try {
      checks = await this.reader.leaderCheck(
        list.map((s) => s.group),
        this.stopping.signal,
      );
    } catch (err) {
      if (this.stopPromise) return;
      this.log.warn({ err, groups: list.length }, 'leader check failed; retrying shortly');
      this.retrySoon();
      return;
    }
    if (this.lease !== leaseAtRead || this.stopPromise) {
      this.fullPass = true;
      this.dirty = true;
      return;
    }
    const byGroup = new Map(list.map((s) => [s.group, s]));
    for (const check of checks) {
      this.lastEtcdOkMs = Math.max(this.lastEtcdOkMs, check.readAtMs);
      for (const [group, queue] of check.queues) {
        const s = byGroup.get(group);
        if (!s || this.state.get(group) !== s) continue; // removed by a hot reload meanwhile
        const seenMarker = check.markers.get(group);
        const viewMarker = this.snapshot?.markers.get(group);
        let marker = seenMarker ? viewMarker : undefined;
        if (seenMarker && viewMarker?.modRevision !== seenMarker.modRevision) {
          // A value too large to read is no marker, and never will be: waiting for the watch to bring
          // it would leave the group unled for as long as it stands. It is decided as a ghost (the
          // leader deletes it, compared on the revision this read saw).
          if (!this.view.isOversized(markerKey(this.opts.prefix, group))) {
            this.retrySoon();
            continue;
          }
          marker = Object.freeze({
            key: markerKey(this.opts.prefix, group),
            group,
            from: '',
            to: '',
            epoch: 0,
            leaseHex: seenMarker.leaseHex,
            modRevision: seenMarker.modRevision,
            ghost: `handover marker value over ${this.reader.valueLimitBytes} bytes`,
          });
        }
        const d = this.decide(s, queue, marker, check.members, check.readAtMs > this.fencedAtMs);
        s.leader = queue[0]?.node ?? null;
        s.leaderEpoch = queue[0]?.createRevision ?? null;
        this.apply(s, d, marker, queue, check.members, actions);
      }
    }
  }

  /** A full pass shortly (a leader check that failed or met a marker the view has not seen yet). */
  private retrySoon(): void {
    this.fullPass = true;
    if (this.retryTimer || this.stopPromise) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.requestTick();
    }, RETRY_SOON_MS);
    this.retryTimer.unref();
  }

  private async act(
    group: string,
    action: GroupAction,
    reason: string,
    marker: HandoverMarker | undefined,
    queue: readonly QueueEntry[],
  ): Promise<void> {
    const election = this.elections.get(group);
    const signal = this.stopping.signal;
    try {
      switch (action) {
        case 'enqueue':
          if (!election) return;
          await election.enqueue(signal);
          break;
        case 'stepOut':
        case 'resignForHandover': {
          const mine = queue.find((e) => e.leaseHex === this.lease?.hex);
          if (!election || !mine) return;
          this.log.info(
            { group, action, reason },
            action === 'stepOut' ? 'stepping out of the queue' : 'resigning for switchover',
          );
          await election.resign(signal, mine.createRevision);
          break;
        }
        case 'clearMarker':
          if (!marker) return;
          await this.handovers.clearMarker(group, marker.modRevision);
          break;
        case 'none':
          return;
      }
      if (this.actionFaults.recovery(group)) this.log.info({ group, action }, 'etcd action done again');
    } catch (err) {
      if (signal.aborted) return;
      // One line per streak, not per tick: an action etcd keeps refusing (out of space) fails on
      // every tick until an operator acts.
      const notLogged = this.actionFaults.reported(group) ? -1 : this.actionFaults.failure(group);
      if (notLogged >= 0)
        this.log.warn({ err, group, action, notLogged }, 'etcd action failed; the next tick retries');
    }
  }

  /**
   * Placement (placement.ts): every node plans the same move set from the view and starts its own
   * share, up to MAX_HANDOVERS_IN_FLIGHT at once. Groups with a marker count as moved.
   */
  private maybeRebalance(snap: ClusterSnapshot): void {
    if (!this.lease || !this.member.registered) return;
    if (this.now() - this.membersChangedAtMs < this.opts.rebalanceHoldMs) return;
    const room = MAX_HANDOVERS_IN_FLIGHT - this.rebalancing.size;
    if (room <= 0) return;
    // Only groups we lead AND may act on count as ours to give: no handover from a fenced node.
    for (const s of this.state.values()) if (s.leader === this.node && s.role !== 'leader') return;
    const groups = new Map<string, GroupSeats>();
    for (const [g, q] of snap.queues)
      groups.set(g, { leader: q[0]?.node ?? null, queued: q.map((e) => e.node) });
    const inFlight = new Map<string, string>();
    for (const [g, m] of snap.markers) if (!m.ghost) inFlight.set(g, m.to);
    for (const [g, to] of this.handovers.targets()) inFlight.set(g, to);
    // Started but not yet settled (the marker may not be written, nor seen, yet): never twice.
    for (const [g, to] of this.rebalancing) inFlight.set(g, to);
    const pinned = new Set<string>();
    // A group whose handover failed waits out the hold before it is tried again.
    for (const [g, atMs] of this.rebalanceFailedAtMs) {
      if (this.now() - atMs < this.opts.rebalanceHoldMs) pinned.add(g);
      else this.rebalanceFailedAtMs.delete(g);
    }
    const ledSinceMs = new Map<string, number>();
    for (const s of this.state.values()) {
      if (s.role !== 'leader') continue;
      ledSinceMs.set(s.group, s.sinceMonoMs);
      if (this.now() - s.sinceMonoMs < this.opts.rebalanceHoldMs) pinned.add(s.group);
    }
    const plans = planHandovers({
      me: this.node,
      members: [...snap.members.keys()],
      groups,
      inFlight,
      pinned,
      ledSinceMs,
    });
    for (const plan of plans.slice(0, room)) {
      this.log.info(plan, 'rebalancing: handing a group over');
      this.rebalancing.set(plan.group, plan.to);
      this.switchover(plan.group, plan.to)
        .catch((err: unknown) => {
          this.rebalanceFailedAtMs.set(plan.group, this.now());
          this.log.warn({ err, ...plan }, 'rebalancing handover failed');
        })
        .finally(() => this.rebalancing.delete(plan.group));
    }
  }

  // --- lease, membership, watch ------------------------------------------------------------------

  private onLease(lease: SessionLease): void {
    this.lease = lease;
    this.member.markUnregistered();
    this.elections = new Map(this.groupList.map((group) => [group, this.newElection(group, lease)]));
    this.requestTick();
  }

  private newElection(group: string, lease: SessionLease): Election {
    return new Election({
      client: this.client,
      prefix: this.opts.prefix,
      group,
      node: this.node,
      lease,
      callTimeoutMs: this.opts.etcdCallTimeoutMs,
      logger: this.log,
    });
  }

  private onFenced(reason: string): void {
    if (reason === 'lease guard deadline passed' && this.failsafe?.holds()) {
      this.log.warn('lease guard deadline passed; leading on in failsafe: every member backs us');
      return;
    }
    this.fencedAtMs = this.now();
    if (reason.startsWith('lease lost')) {
      this.lease = null;
      this.member.markUnregistered();
      this.elections.clear();
    }
    for (const s of this.state.values()) {
      if (s.role === 'leader') this.setRole(s, 'fenced', null, reason);
      else if (s.role === 'candidate' && this.lease === null) this.setRole(s, 'follower', null, reason);
    }
    this.requestTick();
  }

  /** A frozen loop may run a tick before the expiry timer: fence from the clock, not the timer. */
  private fenceIfLapsed(): void {
    if (this.session.guard.mayAct() || this.failsafe?.holds()) return;
    if ([...this.state.values()].some((s) => s.role === 'leader'))
      this.onFenced('lease guard deadline passed');
  }

  /** etcd unreachable while we lead: ask every member to back us (when failsafe is on). */
  private engageFailsafe(): void {
    if (!this.failsafe || this.stopPromise) return;
    const groups: { group: string; epoch: number }[] = [];
    for (const s of this.state.values())
      if (s.role === 'leader' && s.epoch !== null) groups.push({ group: s.group, epoch: s.epoch });
    if (groups.length === 0) return;
    this.failsafe.engage(groups, [...this.everMembers].filter((n) => n !== this.node).sort());
  }

  /** Hot reload: the member record shows the new config fingerprint (member-record.ts). */
  setConfigHash(hash: string): void {
    this.member.setConfigHash(hash);
  }

  private updateMembers(snap: ClusterSnapshot): void {
    const list = [...snap.members.values()]
      .map(({ leaseHex: _, ...m }) => m)
      .sort((a, b) => compareCodeUnits(a.node, b.node));
    const key = JSON.stringify(list.map((m) => m.node));
    this.memberList = list;
    for (const m of list) this.everMembers.add(m.node);
    if (key === this.membersKey) return;
    this.membersKey = key;
    this.membersChangedAtMs = this.now();
    // Placement may move groups once the hold is over: look then, not at the next timer pass.
    clearTimeout(this.holdTimer);
    this.holdTimer = setTimeout(() => this.requestTick(), this.opts.rebalanceHoldMs + 10);
    this.holdTimer.unref();
    this.log.info({ members: list.map((m) => m.node) }, 'membership changed');
    this.emit('members', this.members());
  }

  /** Loads the view from one paged read at one revision and watches on from the revision after it. */
  private async reload(): Promise<void> {
    const r = await this.reader.readKvs(this.stopping.signal);
    this.view.load(r.kvs, r.revision, r.readAtMs, r.oversized);
    this.loadedAtMs = this.now();
    this.lastEtcdOkMs = Math.max(this.lastEtcdOkMs, r.readAtMs);
    this.reloadWanted = false;
    this.checkDue = false;
    const mine = r.kvs.find((kv) => kv.key.toString() === memberKey(this.opts.prefix, this.node));
    this.memberKeySeen = {
      atMs: r.readAtMs,
      leaseHex: mine?.lease && mine.lease !== '0' ? BigInt(mine.lease).toString(16) : null,
    };
    this.fullPass = true;
    this.watches.start(r.revision + 1);
  }

  /** etcd readable (a linearizable read), and whose lease holds our member key. Keys only. */
  private async checkMemberKey(): Promise<void> {
    const atMs = this.now();
    const key = Buffer.from(memberKey(this.opts.prefix, this.node));
    const res = await etcdCall('member key check', this.opts.etcdCallTimeoutMs, this.stopping.signal, (o) =>
      this.client.kv.range({ key, keys_only: true }, o),
    );
    const kv = res.kvs[0];
    this.lastEtcdOkMs = Math.max(this.lastEtcdOkMs, atMs);
    this.checkDue = false;
    this.memberKeySeen = {
      atMs,
      leaseHex: kv?.lease && kv.lease !== '0' ? BigInt(kv.lease).toString(16) : null,
    };
  }

  private setRole(
    s: GroupState,
    to: GroupRole,
    epoch: number | null,
    reason: string,
    level: 'info' | 'warn' = to === 'fenced' ? 'warn' : 'info',
  ): void {
    const from = s.role;
    s.role = to;
    s.epoch = to === 'leader' ? epoch : null;
    s.sinceMs = Date.now();
    s.sinceMonoMs = this.now();
    if (from === to) return;
    s.reason = reason;
    const change: RoleChange = { group: s.group, from, to, epoch: s.epoch, reason };
    this.log[level](change, 'leadership transition');
    this.metrics?.transition(s.group, from, to);
    this.emit('role', change);
  }
}

/** Codes of an etcd that did not answer, or a start that ran out of time waiting for it. */
const ETCD_START_CODES: ReadonlySet<string> = new Set([
  ClusterErrorCodes.ETCD_TIMEOUT,
  ClusterErrorCodes.ETCD_UNAVAILABLE,
  ClusterErrorCodes.LEASE_LOST,
  ClusterErrorCodes.ABORTED,
]);

/** A file-system errno with its call and path (the session's data dir work), as one line; else null. */
function dataDirFailure(err: unknown): string | null {
  const e = err as NodeJS.ErrnoException | undefined;
  if (!(err instanceof Error) || typeof e?.code !== 'string' || typeof e.path !== 'string') return null;
  return `${e.code} (${e.syscall ?? 'file operation'} ${e.path})`;
}

/** Why start gave up, in the words of what failed last (the budget running out says little alone). */
function startFailure(err: unknown, budgetSpent: boolean, lastRetried: unknown, leased: boolean): string {
  if (!budgetSpent) return (err as Error)?.message ?? String(err);
  if (lastRetried) return `last try: ${(lastRetried as Error).message}`;
  return leased ? 'member registration did not complete' : 'no lease granted';
}

function newGroupState(group: string, nowMonoMs: number): GroupState {
  return {
    group,
    role: 'follower',
    epoch: null,
    sinceMs: Date.now(),
    sinceMonoMs: nowMonoMs,
    leader: null,
    leaderEpoch: null,
    reason: 'starting',
    givenUpRevision: null,
    relinquished: null,
    action: null,
  };
}

function checkGroupNames(groups: readonly string[]): void {
  if (new Set(groups).size !== groups.length || groups.some((g) => !g || g.includes('/'))) {
    throw new CoolctlError(
      ErrorCodes.CONFIG_INVALID,
      'leadership: group names must be unique, non-empty, without "/"',
    );
  }
}

/** At most `size` tasks at once; the rest wait their turn in order. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(size: number) {
    this.free = size;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}
