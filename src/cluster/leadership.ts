// What the rest of the controller knows about leadership: per control group, who leads and with
// which epoch, and — synchronously, right before every device write — whether THIS node may act.
// Implemented on etcd in ./etcd-leadership.ts; control and the API depend on this interface only.
import type { OperatorProblem, OperatorState } from './operator-state.ts';

/**
 * follower: another node leads (or nobody yet) and we are not queued; candidate: queued in the
 * group's election; leader: we lead and our lease is proven; fenced: we were leading but our lease
 * deadline passed (or etcd said our key is gone) — we must not act until leadership is re-proven;
 * resigned: we gave the group up (shutdown, switchover, rebalancing).
 */
export type GroupRole = 'follower' | 'candidate' | 'leader' | 'fenced' | 'resigned';

export interface GroupLeadership {
  group: string;
  role: GroupRole;
  /** The current leader's node name, as far as this node knows (null: none). */
  leader: string | null;
  /** The current leader's epoch: the create revision of its election key. */
  epoch: number | null;
  /** When this node's role last changed, ms since the Unix epoch. */
  sinceMs: number;
  /** Why this node's role last changed (absent: the implementation does not say). */
  reason?: string;
  /**
   * The last time this node gave the group up because it could not drive it (relinquish), and why,
   * so the API and the dashboard can say why the group moved (null: never).
   */
  relinquished?: { reason: string; atMs: number } | null;
}

export interface Member {
  node: string;
  /** The node's HTTP API, e.g. http://127.0.0.1:8101 */
  apiUrl: string;
  /** The node's peer channel (state cache), when it has one. */
  peerUrl?: string;
  startedAtMs: number;
  /** Fingerprint of the node's controller config and site file (config/config-hash.ts); absent from older nodes. */
  configHash?: string;
}

/** What fence() proves: the epoch to write with, and until when (monotonic ms) this node may act. */
export interface Fence {
  epoch: number;
  untilMs: number;
}

export interface RoleChange {
  group: string;
  from: GroupRole;
  to: GroupRole;
  epoch: number | null;
  reason: string;
}

/** What a Leadership emits, typed: listeners get these arguments. */
export interface LeadershipEvents {
  /** This node's role in a group changed (one per transition, with its reason). */
  role: [change: RoleChange];
  /** The membership changed (sorted by node name). */
  members: [members: Member[]];
  /** The operator state in force for a group changed. */
  operator: [group: string, state: OperatorState];
}

/** A listener of one leadership event. */
export type LeadershipListener<K extends keyof LeadershipEvents> = (...args: LeadershipEvents[K]) => void;

export interface Leadership {
  on<K extends keyof LeadershipEvents>(event: K, listener: LeadershipListener<K>): unknown;
  off<K extends keyof LeadershipEvents>(event: K, listener: LeadershipListener<K>): unknown;
  once<K extends keyof LeadershipEvents>(event: K, listener: LeadershipListener<K>): unknown;
  readonly node: string;
  /** Registers this node, recovers/revokes a previous lease, starts campaigning. Bounded. */
  start(signal?: AbortSignal): Promise<void>;
  /** Resigns every group at once (graceful handover) and revokes the lease. Bounded, idempotent. */
  stop(): Promise<void>;
  groups(): GroupLeadership[];
  /** Hot reload: the groups to take part in from now on (removed ones are resigned first). */
  setGroups?(groups: string[]): void;
  /** Hot reload: the config fingerprint this node publishes in its member record from now on. */
  setConfigHash?(hash: string): void;
  /** Operators' pause and overrides in force for `group`, from the store (see operatorProblem). */
  operator?(group: string): OperatorState;
  /**
   * Why the stored operator state of `group` is not in force (invalid: operator() then gives the last
   * valid state, or a pause when this node never saw one); null when it is.
   */
  operatorProblem?(group: string): OperatorProblem | null;
  /** Changes them in the store (compare-and-swap); resolves with what was stored. */
  updateOperator?(group: string, change: (cur: OperatorState) => OperatorState): Promise<OperatorState>;
  members(): Member[];
  /**
   * Synchronous fence check, called right before every device write: the epoch to write with if
   * this node leads `group` and its lease deadline (monotonic clock) has not passed; else null.
   * `untilMs` is that deadline (`performance.now()` clock, ms): no write this node starts may land
   * after it, so a device call's time budget is `untilMs - performance.now()`.
   */
  fence(group: string): Fence | null;
  /**
   * This node leads `group` but cannot drive it (e.g. its units refuse it, or its loop cannot run):
   * give the group to the next candidate now — fence() is null for it at once, its election key goes
   * and the node re-queues at the back — and say why (log, role event, `groups()`). No-op when not
   * leading. A node that is the only candidate leads again; the caller decides whether to retry.
   */
  relinquish?(group: string, reason: string): void;
  /** Hands `group` to `targetNode` (which must be a member); resolves when the target leads. */
  switchover(group: string, targetNode: string, opts?: { timeoutMs?: number }): Promise<void>;
  /** Monotonic ms when the decision loop last finished a pass (absent: the implementation has none). */
  readonly lastPassAtMs?: number;
  /** Whether the node can reach etcd and holds a live lease (readiness). */
  readonly healthy: boolean;
}
