// The per-group decision: from one snapshot of the group (its election queue and handover marker)
// and this node's own facts (lease, lease guard), which role this node has and which single etcd
// action (if any) moves it on. Pure and synchronous, so it is the ONLY place that can say "leader",
// and tests can walk every case without etcd.
import type { GroupRole } from './leadership.ts';
import type { HandoverMarker, QueueEntry } from './view.ts';

export type GroupAction =
  /** Put our key (back of the queue). */
  | 'enqueue'
  /** Delete our key: another node's handover wants the target right behind the leader, or we gave the group up. */
  | 'stepOut'
  /** Delete our key as leader: the handover target is next in line. */
  | 'resignForHandover'
  /** Delete the handover marker: the handover is over (target leads) or cannot happen. */
  | 'clearMarker'
  | 'none';

export interface GroupFacts {
  me: string;
  /** Our lease in hex; null while we have none (lost, re-granting). */
  leaseHex: string | null;
  /** Our member key is registered under the current lease. */
  registered: boolean;
  role: GroupRole;
  queue: readonly QueueEntry[];
  marker: HandoverMarker | undefined;
  /** Live member names. */
  members: ReadonlySet<string>;
  /** The lease guard allows acting right now. */
  mayAct: boolean;
  /** The snapshot was read after our last fence (leadership re-proven, not remembered). */
  fresh: boolean;
  /** Another leader this node promised, in failsafe, to stay out of the group for (null: none). */
  promisedTo?: string | null;
  /** Failsafe: this run started less than one window ago; an earlier run's promises may still run. */
  quarantined?: boolean;
  /**
   * The create revision of our key that this node gave up (relinquish) and is deleting (null: none).
   * That key never makes us leader again, even from a snapshot read before the give-up: only a new
   * key, at the back of the queue, can.
   */
  givenUpRevision?: number | null;
}

export interface GroupDecision {
  role: GroupRole;
  /** Our epoch when leading (our key's create revision). */
  epoch: number | null;
  action: GroupAction;
  reason: string;
}

export function decideGroup(f: GroupFacts): GroupDecision {
  const wasLeading = f.role === 'leader' || f.role === 'fenced';
  if (f.leaseHex === null || !f.registered) {
    return {
      role: wasLeading ? 'fenced' : 'follower',
      epoch: null,
      action: 'none',
      reason: f.leaseHex === null ? 'no lease' : 'not registered as a member yet',
    };
  }
  const mine = f.queue.find((e) => e.leaseHex === f.leaseHex);
  const first = f.queue[0];
  const m = markerInForce(f);
  // A marker that is no handover in progress: nobody runs it, so only its deletion ends it.
  const stale = f.marker && !m ? staleWhy(f.marker) : null;

  if (mine && f.givenUpRevision != null && mine.createRevision === f.givenUpRevision) {
    return {
      role: wasLeading || f.role === 'resigned' ? 'resigned' : f.role,
      epoch: null,
      action: 'stepOut',
      reason: 'gave the group up: deleting our key before queueing again at the back',
    };
  }

  if (mine && first === mine) {
    if (m && m.from === f.me && m.to !== f.me) {
      if (!f.members.has(m.to)) {
        return lead(f, mine, 'clearMarker', `switchover target ${m.to} is not a member: handover dropped`);
      }
      if (f.queue[1]?.node === m.to) {
        return {
          role: 'resigned',
          epoch: null,
          action: 'resignForHandover',
          reason: `switchover: ${m.to} is next in line`,
        };
      }
      return lead(f, mine, 'none', `handing over to ${m.to}: waiting for it to be next in line`);
    }
    if (m && m.to === f.me) return lead(f, mine, 'clearMarker', 'switchover target took the lead');
    if (stale) return lead(f, mine, 'clearMarker', `lowest create revision in the queue; deleting ${stale}`);
    return lead(f, mine, 'none', 'lowest create revision in the queue');
  }

  // Someone else's handover: a key between the leader and the target gets out of the way, so the
  // target is right behind the leader. A key behind the target stays: leaving would only cost it its
  // place (and etcd two writes) for nothing. Until the target has queued, nobody can tell, so wait.
  if (m && m.to !== f.me && m.from !== f.me) {
    const target = f.queue.find((e) => e.node === m.to);
    if (mine && (!target || mine.createRevision > target.createRevision)) {
      return {
        role: 'candidate',
        epoch: null,
        action: 'none',
        reason: target
          ? `switchover ${m.from} → ${m.to} in progress: queued behind the target`
          : `switchover ${m.from} → ${m.to} in progress: waiting for the target to queue`,
      };
    }
    return {
      role: 'follower',
      epoch: null,
      action: mine ? 'stepOut' : 'none',
      reason: `switchover ${m.from} → ${m.to} in progress: out of the queue`,
    };
  }
  if (!mine) {
    return {
      role: f.role === 'leader' || f.role === 'fenced' ? 'fenced' : f.role,
      epoch: null,
      action: 'enqueue',
      reason: f.role === 'leader' ? 'our election key is gone' : 'joining the queue',
    };
  }
  // Queued behind someone.
  const action: GroupAction = m && m.from === f.me && first?.node === m.to ? 'clearMarker' : 'none';
  return {
    role: 'candidate',
    epoch: null,
    action,
    reason: f.role === 'leader' ? 'a key older than ours leads' : `queued behind ${first?.node ?? 'nobody'}`,
  };
}

/**
 * The group's marker if it is a handover in progress: one its leader wrote on its own lease (not a
 * ghost, see snapshot.ts) while the queue is still led by its `from` or already by its `to`. Our own
 * marker on our current lease always counts: the view's member records may lag it.
 */
function markerInForce(f: GroupFacts): HandoverMarker | undefined {
  const m = f.marker;
  if (!m) return undefined;
  if (m.from === f.me && m.leaseHex === f.leaseHex) return m;
  if (m.ghost) return undefined;
  const head = f.queue[0]?.node;
  return head === m.from || head === m.to ? m : undefined;
}

function staleWhy(m: HandoverMarker): string {
  return m.ghost
    ? `a handover marker that is no member's (${m.ghost})`
    : `a stale handover marker (${m.from} → ${m.to}): neither leads`;
}

function lead(f: GroupFacts, mine: QueueEntry, action: GroupAction, reason: string): GroupDecision {
  const promised = f.promisedTo && f.promisedTo !== f.me ? f.promisedTo : null;
  if (f.mayAct && f.fresh && !promised && !f.quarantined)
    return { role: 'leader', epoch: mine.createRevision, action, reason };
  const wasLeading = f.role === 'leader' || f.role === 'fenced';
  if (f.quarantined && !promised) {
    return {
      role: wasLeading ? 'fenced' : 'candidate',
      epoch: null,
      action,
      reason:
        'first in line, but started less than one failsafe window ago: an earlier run may have promised to stay out',
    };
  }
  if (promised) {
    return {
      role: wasLeading ? 'fenced' : 'candidate',
      epoch: null,
      action,
      reason: `first in line, but promised ${promised} (failsafe) to stay out until its window ends`,
    };
  }
  return {
    role: wasLeading ? 'fenced' : 'candidate',
    epoch: null,
    action,
    reason: f.mayAct
      ? 'first in line: waiting for a snapshot read after the last fence'
      : 'first in line but the lease is not proven',
  };
}

/**
 * The leases of other nodes' leaders this node polls for expiry (lease hex → its holder): of the
 * nodes right behind a lease somewhere, the first by name polls it, so each lease has one poller
 * whatever G (every node computes the same from the same queues). Every node right behind polling
 * it made N × (N − 1) pollers once G ≳ N². A lease nobody polls in time still goes at etcd's own
 * expiry, at most 500 ms later.
 */
export function leasesToPoll(
  queues: ReadonlyMap<string, readonly QueueEntry[]>,
  me: string,
  myLeaseHex: string | null,
): Map<string, string> {
  const behind = new Map<string, { holder: string; poller: string }>();
  for (const queue of queues.values()) {
    const [first, second] = queue;
    if (!first || !second || first.leaseHex === myLeaseHex) continue;
    const cur = behind.get(first.leaseHex);
    if (!cur || second.node < cur.poller)
      behind.set(first.leaseHex, { holder: first.node, poller: second.node });
  }
  const out = new Map<string, string>();
  for (const [hex, b] of behind) if (b.poller === me) out.set(hex, b.holder);
  return out;
}
