// Leadership metrics on a prom-client Registry (served at /metrics): role transitions, which groups
// this node leads, how much lease time is left, keepalive round trips (send → ack) and failures per
// etcd member, which members answer, the polling
// and revoking of expired leases of leaders this node is next in line behind, and groups given up
// because this node could not drive them, and keys left out of the decisions; and whether the data
// dir takes the lease-id file (safety never rests on it, but a restart after a crash waits out a TTL).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { zeroSeries } from '../metrics/zero-series.ts';
import type { GroupRole } from './leadership.ts';
import { IGNORED_KINDS, type IgnoredKind } from './view.ts';

export class LeadershipMetrics {
  private readonly transitions: Counter<'group' | 'from' | 'to'>;
  private readonly leader: Gauge<'group'>;
  private readonly keepalive: Histogram;
  private readonly keepaliveFailures: Counter<'member'>;
  private readonly membersAnswering: Gauge<'member'>;
  private readonly expiryPolls: Counter;
  private readonly expiredRevoked: Counter;
  private readonly relinquishes: Counter<'group'>;
  private readonly ignoredKeys: Counter<'kind'>;
  private readonly operatorInvalid: Counter<'group'>;
  private readonly watchResets: Counter;
  private readonly dataDirWriteErrors: Counter;
  private readonly dataDirFailing: Gauge;

  /** `members`: the configured etcd members (host:port), each one's keepalive failures from 0. */
  constructor(registry: Registry, leaseRemainingMs: () => number, members: readonly string[] = []) {
    const registers = [registry];
    this.transitions = new Counter({
      name: 'coolctl_leadership_transitions_total',
      help: 'Role changes of this node per control group',
      labelNames: ['group', 'from', 'to'],
      registers,
    });
    this.leader = new Gauge({
      name: 'coolctl_leader',
      help: '1 when this node leads the group (and may act), else 0',
      labelNames: ['group'],
      registers,
    });
    new Gauge({
      name: 'coolctl_lease_remaining_seconds',
      help: 'Seconds until the lease guard deadline (monotonic clock); 0 when fenced',
      registers,
      collect() {
        this.set(Math.max(0, leaseRemainingMs()) / 1000);
      },
    });
    this.keepalive = new Histogram({
      name: 'coolctl_etcd_keepalive_seconds',
      help: 'Lease keepalive round trip, from send to acknowledgement',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.keepaliveFailures = new Counter({
      name: 'coolctl_etcd_keepalive_failures_total',
      help: 'Lease keepalive attempts that failed on an etcd member (each went on to the next member at once)',
      labelNames: ['member'],
      registers,
    });
    zeroSeries(this.keepaliveFailures, { member: members });
    this.membersAnswering = new Gauge({
      name: 'coolctl_etcd_member_answering',
      help: '1 while the etcd member answers this node’s reads and writes, 0 while it is skipped (it failed three calls in a row; probed by a copy of a read after 1 s, doubling to 10 s)',
      labelNames: ['member'],
      registers,
    });
    for (const member of members) this.membersAnswering.set({ member }, 1);
    this.expiryPolls = new Counter({
      name: 'coolctl_lease_expiry_polls_total',
      help: 'LeaseTimeToLive calls on the leases of leaders this node is next in line behind',
      registers,
    });
    this.expiredRevoked = new Counter({
      name: 'coolctl_expired_leases_revoked_total',
      help: 'Leases of other nodes revoked by this node after etcd reported them expired',
      registers,
    });
    this.relinquishes = new Counter({
      name: 'coolctl_leadership_relinquished_total',
      help: 'Groups this node led but gave to the next candidate because it could not drive them',
      labelNames: ['group'],
      registers,
    });
    this.ignoredKeys = new Counter({
      name: 'coolctl_leadership_ignored_keys_total',
      help: 'Keys under the leadership sub-prefixes left out of decisions (oversized, foreign, ghost election keys and handover markers, wire: written at a wire version this release no longer reads, override: operator overrides outside the device contract), once per key version',
      labelNames: ['kind'],
      registers,
    });
    zeroSeries(this.ignoredKeys, { kind: IGNORED_KINDS });
    this.watchResets = new Counter({
      name: 'coolctl_leadership_watch_resets_total',
      help: 'Times the leadership watches were reconnected on a new etcd client because etcd answered reads but did not confirm them',
      registers,
    });
    this.dataDirWriteErrors = new Counter({
      name: 'coolctl_data_dir_write_errors_total',
      help: 'Writes to the data dir that failed (the lease-id file: full or read-only disk, no file descriptor); each is tried again every second',
      registers,
    });
    this.dataDirFailing = new Gauge({
      name: 'coolctl_data_dir_failing',
      help: '1 while the last write to the data dir failed (a restart after a crash then waits out the lease TTL instead of revoking it), else 0',
      registers,
    });
    // There from the start, at 0: a rule reads `== 1`, and increase() sees the first error.
    this.dataDirFailing.set(0);
    this.operatorInvalid = new Counter({
      name: 'coolctl_operator_state_invalid_total',
      help: 'Invalid stored operator states seen (once per value): the last valid one, or a pause, stays in force',
      labelNames: ['group'],
      registers,
    });
  }

  operatorStateInvalid(group: string): void {
    this.operatorInvalid.inc({ group });
  }

  ignoredKey(kind: IgnoredKind): void {
    this.ignoredKeys.inc({ kind });
  }

  watchReset(): void {
    this.watchResets.inc();
  }

  relinquished(group: string): void {
    this.relinquishes.inc({ group });
  }

  expiryPoll(): void {
    this.expiryPolls.inc();
  }

  expiredLeaseRevoked(): void {
    this.expiredRevoked.inc();
  }

  transition(group: string, from: GroupRole, to: GroupRole): void {
    this.transitions.inc({ group, from, to });
    this.leader.set({ group }, to === 'leader' ? 1 : 0);
  }

  /** A configured group (at start or added by a reload): its counters from 0. */
  groupAdded(group: string): void {
    zeroSeries(this.relinquishes, { group: [group] });
    zeroSeries(this.operatorInvalid, { group: [group] });
  }

  /**
   * A group left the config: its series go. `coolctl_leader{group} 0` left on every node would read
   * as a group nobody leads (CoolctlGroupWithoutLeader, critical) for as long as the nodes run.
   */
  groupRemoved(group: string): void {
    this.leader.remove({ group });
    this.relinquishes.remove({ group });
    this.operatorInvalid.remove({ group });
  }

  keepaliveSeconds(seconds: number): void {
    this.keepalive.observe(seconds);
  }

  dataDirWrite(ok: boolean): void {
    if (!ok) this.dataDirWriteErrors.inc();
    this.dataDirFailing.set(ok ? 0 : 1);
  }

  memberAnswering(member: string, answering: boolean): void {
    this.membersAnswering.set({ member }, answering ? 1 : 0);
  }

  keepaliveFailed(member: string): void {
    this.keepaliveFailures.inc({ member });
  }
}

/**
 * `coolctl_etcd_watch_streams_given_up_total{client}`: watch streams failed because their member
 * did not answer a progress request (watch-progress.ts), per etcd client that watches
 * (`leadership`: the view; `control-plane`: users, tokens and operator state). One registry holds
 * one counter, whoever asks first; each asker's series starts at 0.
 */
export function watchStreamsGivenUp(registry: Registry, client: 'leadership' | 'control-plane'): () => void {
  const name = 'coolctl_etcd_watch_streams_given_up_total';
  const counter =
    (registry.getSingleMetric(name) as Counter<'client'> | undefined) ??
    new Counter({
      name,
      help: 'Watch streams given up because their etcd member did not answer a progress request within the bound (4 s); the watches resumed on another member',
      labelNames: ['client'],
      registers: [registry],
    });
  counter.inc({ client }, 0);
  return () => counter.inc({ client });
}
