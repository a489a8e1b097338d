// The pure parts of leadership: the per-group decision (the only code that can say "leader"),
// placement, and the timing rule.
import { describe, expect, it } from 'vitest';
import { decideGroup, type GroupFacts } from '../../src/cluster/decide.ts';
import { planHandover } from '../../src/cluster/placement.ts';
import { leadershipTimingProblems } from '../../src/cluster/timing.ts';
import type { HandoverMarker, QueueEntry } from '../../src/cluster/view.ts';

const q = (...nodes: string[]): QueueEntry[] =>
  nodes.map((node, i) => ({
    key: `/p/election/g/${node}`,
    leaseHex: `${node}-lease`,
    node,
    createRevision: 10 + i,
  }));

function facts(over: Partial<GroupFacts> = {}): GroupFacts {
  return {
    me: 'a',
    leaseHex: 'a-lease',
    registered: true,
    role: 'candidate',
    queue: q('a', 'b', 'c'),
    marker: undefined,
    members: new Set(['a', 'b', 'c']),
    mayAct: true,
    fresh: true,
    ...over,
  };
}

const marker = (from: string, to: string): HandoverMarker => ({
  key: '/p/handover/g',
  group: 'g',
  from,
  to,
  epoch: 10,
  leaseHex: `${from}-lease`,
  modRevision: 20,
});

describe('decideGroup', () => {
  it('leads when first in the queue with a proven lease and a fresh snapshot; epoch = create revision', () => {
    expect(decideGroup(facts())).toMatchObject({ role: 'leader', epoch: 10, action: 'none' });
  });

  it('never leads without a proven lease or after a fence without a fresh read', () => {
    expect(decideGroup(facts({ mayAct: false }))).toMatchObject({ role: 'candidate', epoch: null });
    expect(decideGroup(facts({ mayAct: false, role: 'leader' }))).toMatchObject({ role: 'fenced' });
    expect(decideGroup(facts({ fresh: false, role: 'fenced' }))).toMatchObject({ role: 'fenced' });
    expect(decideGroup(facts({ leaseHex: null, role: 'leader' }))).toMatchObject({
      role: 'fenced',
      action: 'none',
    });
    expect(decideGroup(facts({ registered: false }))).toMatchObject({ role: 'follower', action: 'none' });
  });

  it('a key from another lease of ours does not count (new lease = back of the queue)', () => {
    expect(decideGroup(facts({ leaseHex: 'a-new-lease' }))).toMatchObject({
      role: 'candidate',
      action: 'enqueue',
    });
  });

  it('queues when absent and waits when behind', () => {
    expect(decideGroup(facts({ queue: q('b') }))).toMatchObject({ role: 'candidate', action: 'enqueue' });
    expect(decideGroup(facts({ queue: q('b', 'a') }))).toMatchObject({ role: 'candidate', action: 'none' });
  });

  it('switchover: others step out, the leader resigns only once the target is next, the target clears the marker', () => {
    const m = marker('a', 'c');
    // leader a, target c not yet right behind: keep leading
    expect(decideGroup(facts({ marker: m }))).toMatchObject({ role: 'leader', action: 'none' });
    // b (not target) steps out
    expect(decideGroup(facts({ me: 'b', leaseHex: 'b-lease', marker: m }))).toMatchObject({
      role: 'follower',
      action: 'stepOut',
    });
    // b stays out while the marker exists
    expect(decideGroup(facts({ me: 'b', leaseHex: 'b-lease', marker: m, queue: q('a', 'c') }))).toMatchObject(
      { action: 'none', role: 'follower' },
    );
    // target right behind: a resigns (role first, then the delete)
    expect(decideGroup(facts({ marker: m, queue: q('a', 'c'), role: 'leader' }))).toMatchObject({
      role: 'resigned',
      action: 'resignForHandover',
    });
    // c leads and clears the marker
    expect(decideGroup(facts({ me: 'c', leaseHex: 'c-lease', marker: m, queue: q('c', 'a') }))).toMatchObject(
      { role: 'leader', action: 'clearMarker' },
    );
    // the target left: the leader drops the handover
    expect(decideGroup(facts({ marker: m, members: new Set(['a', 'b']), role: 'leader' }))).toMatchObject({
      role: 'leader',
      action: 'clearMarker',
    });
  });

  it('a first-in-line node leads even if a stale marker from someone else is around (no leaderless group)', () => {
    expect(decideGroup(facts({ marker: marker('b', 'c') }))).toMatchObject({ role: 'leader' });
  });

  it('relinquish: the given-up key never leads again; it is deleted, then a new key queues at the back', () => {
    // A read from before the give-up still shows our key first: stay resigned and delete it.
    expect(decideGroup(facts({ role: 'resigned', givenUpRevision: 10 }))).toMatchObject({
      role: 'resigned',
      epoch: null,
      action: 'stepOut',
    });
    // Gone: queue again; a sole candidate then leads on its new key.
    expect(decideGroup(facts({ role: 'resigned', queue: q('b'), givenUpRevision: 10 }))).toMatchObject({
      role: 'resigned',
      action: 'enqueue',
    });
    const fresh: QueueEntry = { key: '/p/election/g/a', leaseHex: 'a-lease', node: 'a', createRevision: 30 };
    expect(decideGroup(facts({ role: 'resigned', queue: [fresh], givenUpRevision: 10 }))).toMatchObject({
      role: 'leader',
      epoch: 30,
    });
  });
});

describe('planHandover', () => {
  const leaders = (...l: string[]): Map<string, string | null> => new Map(l.map((n, i) => [`g${i + 1}`, n]));

  it('does nothing when the difference is ≤ 1', () => {
    expect(
      planHandover({ me: 'a', members: ['a', 'b', 'c'], leaders: leaders('a', 'a', 'b', 'b', 'c') }),
    ).toBeNull();
  });

  it('hands one group from an overloaded node to the least loaded', () => {
    const p = planHandover({
      me: 'a',
      members: ['a', 'b', 'c'],
      leaders: leaders('a', 'a', 'a', 'a', 'b', 'b'),
    });
    expect(p).toMatchObject({ to: 'c' });
    expect(['g1', 'g2', 'g3', 'g4']).toContain(p!.group);
  });

  it('waits while any group has no leader (an election is under way)', () => {
    const l = leaders('a', 'a', 'a', 'a');
    l.set('g5', null);
    expect(planHandover({ me: 'a', members: ['a', 'b'], leaders: l })).toBeNull();
  });

  it('converges without flapping from any start (simulated, one handover per overloaded node per round)', () => {
    const members = ['a', 'b', 'c', 'd'];
    let l = new Map<string, string | null>(Array.from({ length: 10 }, (_, i) => [`g${i}`, 'a']));
    let moves = 0;
    for (let round = 0; round < 20; round++) {
      const plans = members.map((me) => planHandover({ me, members, leaders: l })).filter((p) => p !== null);
      if (plans.length === 0) break;
      l = new Map(l);
      for (const p of plans) l.set(p.group, p.to);
      moves += plans.length;
    }
    const counts = members.map((m) => [...l.values()].filter((x) => x === m).length);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
    expect(moves).toBeLessThanOrEqual(8); // 10 groups from one node to 4: at least 7 moves are needed
  });
});

describe('leadershipTimingProblems', () => {
  const ok = {
    leaseTtlS: 2,
    keepaliveIntervalMs: 300,
    safetyMarginMs: 400,
    etcdCallTimeoutMs: 500,
    rebalanceHoldMs: 1000,
  };
  it('accepts the test timing and rejects what breaks the rule', () => {
    expect(leadershipTimingProblems(ok)).toEqual([]);
    expect(
      leadershipTimingProblems({ ...ok, leaseTtlS: 1 })
        .map((p) => p.message)
        .join(),
    ).toMatch(/≥ 2/);
    expect(leadershipTimingProblems({ ...ok, keepaliveIntervalMs: 600 })[0]?.message).toMatch(/× 3/);
    expect(leadershipTimingProblems({ ...ok, leaseTtlS: 2.5 })[0]?.message).toMatch(/whole number/);
  });
});
