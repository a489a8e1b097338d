// The pure parts of leadership: the per-group decision (the only code that can say "leader") and
// the timing rule (placement: placement.test.ts).
import { describe, expect, it } from 'vitest';
import { decideGroup, type GroupFacts, leasesToPoll } from '../../src/cluster/decide.ts';
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

  it('switchover: only keys between the leader and the target step out; one behind it stays queued', () => {
    const m = marker('a', 'c');
    // b is behind the target c: it keeps its place
    expect(
      decideGroup(facts({ me: 'b', leaseHex: 'b-lease', marker: m, queue: q('a', 'c', 'b') })),
    ).toMatchObject({ role: 'candidate', action: 'none' });
    // the target has not queued yet: nobody knows who is ahead of it, so b waits in place
    expect(decideGroup(facts({ me: 'b', leaseHex: 'b-lease', marker: m, queue: q('a', 'b') }))).toMatchObject(
      {
        role: 'candidate',
        action: 'none',
      },
    );
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

describe('leasesToPoll', () => {
  it('gives each leader lease one poller: the first by name of the nodes right behind it', () => {
    // a leads g1..g3 with b, c, d right behind in turn; b leads g4 with a behind.
    const queues = new Map([
      ['g1', q('a', 'c', 'b')],
      ['g2', q('a', 'b', 'd')],
      ['g3', q('a', 'd', 'c')],
      ['g4', q('b', 'a')],
    ]);
    const pollers = ['a', 'b', 'c', 'd'].map((me) => [me, [...leasesToPoll(queues, me, `${me}-lease`)]]);
    expect(pollers).toEqual([
      ['a', [['b-lease', 'b']]],
      ['b', [['a-lease', 'a']]],
      ['c', []],
      ['d', []],
    ]);
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
