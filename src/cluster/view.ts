// The view leadership decides from, independent of the store: who is a member, and per group the
// election queue, any handover marker and the operators' state, all as of ONE store revision and
// frozen. The etcd side (./etcd/snapshot.ts) builds it; decide.ts and the operator store read it.
import type { Member } from './leadership.ts';
import type { OperatorState } from './operator-state.ts';

export interface QueueEntry {
  key: string;
  /** The lease id in hex: the last path segment of the key. */
  leaseHex: string;
  /** The key's value: the candidate's node name. */
  node: string;
  createRevision: number;
}

export interface HandoverMarker {
  key: string;
  group: string;
  from: string;
  to: string;
  /** The epoch of the leader that wrote it. */
  epoch: number;
  /** Lease (hex) of the writer: the marker dies with the old leader. */
  leaseHex: string;
  modRevision: number;
  /**
   * Why this marker is no member's handover (set: it does not count): written without a lease, on a
   * lease no member holds, or on one that is not `from`'s. Decisions ignore it and the group's leader
   * deletes it, or it would hold the group's queue (and any switchover of it) for ever.
   */
  ghost?: string;
}

export interface MemberRecord extends Member {
  leaseHex: string;
}

export interface ClusterSnapshot {
  /** etcd revision every page was read at. */
  readonly revision: number;
  /** Monotonic ms when the first page was SENT: a decision may rely on it only for what was true then. */
  readonly readAtMs: number;
  readonly members: ReadonlyMap<string, Readonly<MemberRecord>>;
  readonly queues: ReadonlyMap<string, readonly QueueEntry[]>;
  readonly markers: ReadonlyMap<string, Readonly<HandoverMarker>>;
  /** Operators' pause and overrides per group (absent: none stored, or invalid). */
  readonly operators: ReadonlyMap<string, OperatorState>;
  /** Groups whose stored operator state is invalid: what is wrong, and the value's mod revision. */
  readonly operatorsInvalid: ReadonlyMap<string, Readonly<InvalidOperatorValue>>;
}

export interface InvalidOperatorValue {
  problem: string;
  /** Mod revision of the bad value (0 when it was too large to read). */
  modRevision: number;
}

/**
 * Why a key under our sub-prefixes was left out of the snapshot; `wire`: written at a wire version
 * this release no longer reads (docs/upgrade.md); `override`: an operator state whose overrides
 * outside the device contract are left out (the rest of it is in force).
 */
export const IGNORED_KINDS = ['oversized', 'foreign', 'ghost', 'wire', 'override'] as const;
export type IgnoredKind = (typeof IGNORED_KINDS)[number];
