// Failsafe mode (after Patroni's): when etcd is unreachable, a leader may keep leading its groups
// if every other member, asked on the peer channel, answers that it cannot reach etcd either and
// promises to stay out of those groups for a window. Nobody can be elected meanwhile — nobody reaches
// etcd — and a member that does reach etcd again still keeps its promise until the window ends.
// Timing is the lease guard's: the leader's hold ends at the round's SEND time + window − margin; a
// member's promise ends at RECEIVE time + window, so every promise outlives the hold it backs.
// Promises live in memory, so a restarted node cannot know what its earlier run promised: it leads
// nothing for one window after it starts (quarantined()), and it promises no window longer than its
// own, so every promise of an earlier run has ended by then.
// The safety argument, step by step, is in docs/state-cache.md and docs/leadership.md.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';

export interface FailsafeGroup {
  group: string;
  epoch: number;
}

export interface FailsafeAnswer {
  ok: boolean;
  reason: string;
}

/** The peer channel as failsafe sees it (implemented by the state cache). */
export interface FailsafeTransport {
  failsafePing(
    nodes: string[],
    groups: FailsafeGroup[],
    windowMs: number,
    timeoutMs: number,
  ): Promise<Map<string, FailsafeAnswer>>;
  setFailsafeResponder(fn: (from: string, groups: FailsafeGroup[], windowMs: number) => FailsafeAnswer): void;
}

export interface FailsafeOptions {
  transport: FailsafeTransport;
  /** How long one round of answers lets the leader act (the lease TTL). */
  windowMs: number;
  /** Subtracted from the hold, as from the lease deadline. */
  marginMs: number;
  /** Between rounds, and the answer deadline of each. */
  intervalMs: number;
  /** A member says it reaches etcd when its last etcd success is younger than this. */
  reachableWithinMs: number;
  now: () => number;
  logger: Logger;
}

/** What the member side needs to know about this node when it is asked. */
export interface MemberFacts {
  /** Monotonic ms of this node's last successful etcd call (keepalive or read). */
  lastEtcdOkMs: () => number;
  /** Whether this node itself may act as leader of `group` now. */
  leads: (group: string) => boolean;
}

/** Events: 'lapsed' (reason): the hold ended while engaged. */
export class Failsafe extends EventEmitter {
  private readonly opts: FailsafeOptions;
  private readonly log: Logger;
  private engaged = false;
  private groups: FailsafeGroup[] = [];
  private members: string[] = [];
  private holdUntilMs = Number.NEGATIVE_INFINITY;
  private roundTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private inRound = false;
  private lastProblem = '';
  /** group → promise this node gave another leader. */
  private readonly promises = new Map<string, { to: string; untilMs: number }>();
  /** Monotonic ms until which promises an earlier run of this node gave may still run. */
  private readonly quarantineUntilMs: number;

  constructor(opts: FailsafeOptions, facts: MemberFacts) {
    super();
    this.opts = opts;
    this.quarantineUntilMs = opts.now() + opts.windowMs;
    this.log = opts.logger.child({ component: 'failsafe' });
    opts.transport.setFailsafeResponder((from, groups, windowMs) =>
      this.answer(from, groups, windowMs, facts),
    );
  }

  /** Whether failsafe lets the engaged leader act right now. */
  holds(): boolean {
    return this.engaged && this.opts.now() < this.holdUntilMs;
  }

  get active(): boolean {
    return this.engaged;
  }

  /** Ms left of the hold (negative: none). */
  remainingMs(): number {
    return this.engaged ? this.holdUntilMs - this.opts.now() : Number.NEGATIVE_INFINITY;
  }

  /** Starts (or updates) asking `members` to back our leadership of `groups`. */
  engage(groups: FailsafeGroup[], members: string[]): void {
    this.groups = groups;
    this.members = members;
    if (this.engaged) return;
    this.engaged = true;
    this.log.warn(
      { groups: groups.map((g) => g.group), members },
      'etcd unreachable: asking every member to back us (failsafe)',
    );
    this.round();
  }

  disengage(reason: string): void {
    if (!this.engaged) return;
    this.engaged = false;
    this.holdUntilMs = Number.NEGATIVE_INFINITY;
    clearTimeout(this.roundTimer);
    clearTimeout(this.expiryTimer);
    this.lastProblem = '';
    this.log.info({ reason }, 'failsafe disengaged');
  }

  /** The node this one promised to stay out of `group` for, while the promise runs. */
  promisedTo(group: string): string | null {
    const p = this.promises.get(group);
    if (!p) return null;
    if (this.opts.now() >= p.untilMs) {
      this.promises.delete(group);
      return null;
    }
    return p.to;
  }

  /**
   * Whether promises an earlier run of this node may have given can still be running (one window
   * from this run's start): until then this node must not lead any group.
   */
  quarantined(): boolean {
    return this.opts.now() < this.quarantineUntilMs;
  }

  stop(): void {
    this.disengage('stopping');
  }

  private round(): void {
    if (!this.engaged || this.inRound) return;
    this.inRound = true;
    const sentAtMs = this.opts.now();
    const { windowMs, intervalMs, marginMs } = this.opts;
    const members = this.members;
    this.opts.transport
      .failsafePing(members, this.groups, windowMs, intervalMs)
      .then((answers) => {
        if (!this.engaged) return;
        const refused = [...answers].filter(([, a]) => !a.ok).map(([n, a]) => `${n}: ${a.reason}`);
        if (refused.length === 0) {
          const until = sentAtMs + windowMs - marginMs;
          if (until > this.holdUntilMs) this.holdUntilMs = until;
          if (this.lastProblem) this.log.info({ members }, 'failsafe: every member backs us again');
          else if (this.holdUntilMs === until)
            this.log.debug({ holdMs: Math.round(until - this.opts.now()) }, 'failsafe round ok');
          this.lastProblem = '';
          this.armExpiry();
        } else {
          const problem = refused.join('; ');
          if (problem !== this.lastProblem)
            this.log.warn({ refused }, 'failsafe: not every member backs us; the hold is not extended');
          this.lastProblem = problem;
        }
      })
      .catch((err: unknown) => this.log.warn({ err }, 'failsafe round failed'))
      .finally(() => {
        this.inRound = false;
        if (this.engaged) this.roundTimer = setTimeout(() => this.round(), intervalMs);
      });
  }

  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(
      () => {
        if (!this.engaged || this.opts.now() < this.holdUntilMs) return this.armExpiry();
        this.emit('lapsed', this.lastProblem || 'no round backed us in time');
      },
      Math.max(1, this.holdUntilMs - this.opts.now()),
    );
  }

  private answer(
    from: string,
    groups: FailsafeGroup[],
    windowMs: number,
    facts: MemberFacts,
  ): FailsafeAnswer {
    const now = this.opts.now();
    // A longer window than ours would outlive the one-window quarantine of our next run.
    if (windowMs > this.opts.windowMs)
      return { ok: false, reason: `window ${windowMs} ms is longer than mine (${this.opts.windowMs} ms)` };
    const sinceOkMs = now - facts.lastEtcdOkMs();
    if (sinceOkMs < this.opts.reachableWithinMs)
      return { ok: false, reason: `I reached etcd ${Math.round(sinceOkMs)} ms ago` };
    const mine = groups.filter((g) => facts.leads(g.group));
    if (mine.length > 0) return { ok: false, reason: `I lead ${mine.map((g) => g.group).join(', ')}` };
    const taken = groups.filter((g) => {
      const to = this.promisedTo(g.group);
      return to !== null && to !== from;
    });
    if (taken.length > 0)
      return { ok: false, reason: `promised ${taken.map((g) => g.group).join(', ')} to another node` };
    const untilMs = now + windowMs;
    for (const g of groups) {
      if (!this.promises.has(g.group))
        this.log.info({ group: g.group, to: from }, 'failsafe: promised to stay out');
      this.promises.set(g.group, { to: from, untilMs });
    }
    return { ok: true, reason: 'cannot reach etcd either; staying out' };
  }
}
