// Placement, pure: the whole move set at once, every move from a member above its target straight to
// one below it (no group moves twice), a group only to a node queued in it, counts over every group
// of the cluster, and a giver that keeps what it just got (no relinquished group straight back).
import { describe, expect, it } from 'vitest';
import { type GroupSeats, leaderCounts, planHandovers, planMoves } from '../../src/cluster/placement.ts';

const name = (i: number) => `g${String(i).padStart(4, '0')}`;

/** Groups led as `counts` says (node → how many), every member queued in every group. */
function cluster(counts: Record<string, number>, queued = Object.keys(counts)): Map<string, GroupSeats> {
  const groups = new Map<string, GroupSeats>();
  let i = 0;
  for (const [node, n] of Object.entries(counts))
    for (let k = 0; k < n; k++)
      groups.set(name(i++), { leader: node, queued: [node, ...queued.filter((q) => q !== node)] });
  return groups;
}

function spread(members: string[], groups: ReadonlyMap<string, GroupSeats>): number {
  const c = [...leaderCounts(members, groups).values()];
  return Math.max(...c) - Math.min(...c);
}

/**
 * Runs placement as the cluster does: each round every node starts its own planned moves; only some
 * of the handovers in flight finish before the next round. Returns how often each group moved, and
 * the final leaders.
 */
function simulate(members: string[], start: Map<string, GroupSeats>, rounds = 50) {
  let groups = new Map(start);
  let inFlight = new Map<string, string>();
  const moved = new Map<string, number>();
  for (let round = 0; round < rounds; round++) {
    const started = members.flatMap((me) => planHandovers({ me, members, groups, inFlight }));
    inFlight = new Map([...inFlight, ...started.map((p) => [p.group, p.to] as const)]);
    if (inFlight.size === 0) break;
    // Every other handover in flight completes this round: moves overlap the passes.
    const done = [...inFlight].filter((_, i) => (i + round) % 2 === 0);
    groups = new Map(groups);
    for (const [g, to] of done) {
      groups.set(g, { leader: to, queued: groups.get(g)!.queued });
      moved.set(g, (moved.get(g) ?? 0) + 1);
      inFlight.delete(g);
    }
  }
  expect(inFlight.size).toBe(0);
  return { moved, groups };
}

describe('planMoves', () => {
  it('moves nothing when max − min ≤ 1', () => {
    expect(planMoves({ members: ['a', 'b', 'c'], groups: cluster({ a: 2, b: 2, c: 1 }) })).toEqual([]);
  });

  it('waits while a group has no live leader (an election is under way)', () => {
    const groups = cluster({ a: 4, b: 0 });
    groups.set('x', { leader: null, queued: ['a', 'b'] });
    expect(planMoves({ members: ['a', 'b'], groups })).toEqual([]);
    groups.set('x', { leader: 'dead', queued: ['dead', 'a'] });
    expect(planMoves({ members: ['a', 'b'], groups })).toEqual([]);
  });

  it('a node joining nine with 111 each: every move goes to it, none twice, even after one plan', () => {
    const members = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8', 'n9'];
    const groups = cluster(
      { n0: 112, n1: 111, n2: 111, n3: 111, n4: 111, n5: 111, n6: 111, n7: 111, n8: 111, n9: 0 },
      members,
    );
    const moves = planMoves({ members, groups });
    expect(moves.every((m) => m.to === 'n9')).toBe(true);
    expect(new Set(moves.map((m) => m.group)).size).toBe(moves.length);
    expect(moves).toHaveLength(100);
    const after = new Map(groups);
    for (const m of moves) after.set(m.group, { ...after.get(m.group)!, leader: m.to });
    expect(spread(members, after)).toBeLessThanOrEqual(1);
  });

  it('no group moves twice from uneven starts, with handovers overlapping passes', () => {
    const starts: Record<string, number>[] = [
      { a: 5, b: 4, c: 3, d: 0 },
      { a: 10, b: 0, c: 0, d: 0 },
      { a: 7, b: 7, c: 1, d: 1, e: 0 },
      { a: 40, b: 30, c: 20, d: 10, e: 0, f: 0 },
    ];
    for (const start of starts) {
      const members = Object.keys(start);
      const groups = cluster(start, members);
      const { moved, groups: final } = simulate(members, groups);
      expect(
        [...moved.values()].filter((n) => n > 1),
        JSON.stringify(start),
      ).toEqual([]);
      expect(spread(members, final), JSON.stringify(start)).toBeLessThanOrEqual(1);
    }
  });

  it("a dead node's groups piled on one survivor: its whole excess moves at once, to every survivor short", () => {
    // 1 000 groups on 8 survivors; the queue order gave one of them 47 of the dead node's 112.
    const members = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8'];
    const groups = cluster(
      { n1: 158, n2: 121, n3: 121, n4: 120, n5: 120, n6: 120, n7: 120, n8: 120 },
      members,
    );
    const mine = planHandovers({ me: 'n1', members, groups });
    expect(mine).toHaveLength(33);
    expect(new Set(mine.map((m) => m.to))).toEqual(new Set(['n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8']));
    const after = new Map(groups);
    for (const m of mine) after.set(m.group, { ...after.get(m.group)!, leader: m.to });
    expect(spread(members, after)).toBeLessThanOrEqual(1);
  });

  it('hands a group only to a node queued in it (nodes with different group lists)', () => {
    // b takes part in g0002 only; a leads six groups.
    const groups = new Map<string, GroupSeats>();
    for (let i = 0; i < 6; i++) groups.set(name(i), { leader: 'a', queued: i === 2 ? ['a', 'b'] : ['a'] });
    const moves = planMoves({ members: ['a', 'b'], groups });
    expect(moves).toEqual([expect.objectContaining({ group: 'g0002', from: 'a', to: 'b' })]);
  });

  it('counts every group of the cluster, not only those the planner takes part in', () => {
    // c is queued only in a few groups; it still counts what a and b lead everywhere.
    const groups = cluster({ a: 6, b: 6, c: 0 }, ['a', 'b']);
    groups.set('z1', { leader: 'a', queued: ['a', 'c'] });
    groups.set('z2', { leader: 'a', queued: ['a', 'c'] });
    const moves = planMoves({ members: ['a', 'b', 'c'], groups });
    // a leads 8, b 6, c 0: targets 5/5/4 by rank (a, b get the extra ones).
    expect(moves.map((m) => [m.group, m.to])).toEqual([
      ['z1', 'c'],
      ['z2', 'c'],
    ]);
  });

  it('keeps a relinquished group away from the node that gave it up (the taker pins it)', () => {
    // a gave up g9 (it could not drive it); b leads it now and is one over: b gives another one.
    const lead = (leader: string) => ({ leader, queued: ['a', 'b', 'c'] });
    const groups = new Map<string, GroupSeats>([
      ['g1', lead('a')],
      ['g2', lead('a')],
      ['g3', lead('b')],
      ['g4', lead('b')],
      ['g5', lead('b')],
      ['g6', lead('c')],
      ['g7', lead('c')],
      ['g8', lead('c')],
      ['g9', lead('b')],
    ]);
    const moves = planHandovers({ me: 'b', members: ['a', 'b', 'c'], groups, pinned: new Set(['g9']) });
    expect(moves).toHaveLength(1);
    expect(moves[0]).toMatchObject({ from: 'b', to: 'a' });
    expect(moves[0]!.group).not.toBe('g9');
  });

  it('gives the groups it has led longest first: one it got last goes last', () => {
    const lead = (leader: string) => ({ leader, queued: ['a', 'b'] });
    const groups = new Map<string, GroupSeats>([
      ['g1', lead('a')],
      ['g2', lead('a')],
      ['g3', lead('a')],
      ['g4', lead('a')],
    ]);
    const ledSinceMs = new Map([
      ['g1', 500],
      ['g2', 100],
      ['g3', 900],
      ['g4', 200],
    ]);
    expect(planMoves({ members: ['a', 'b'], groups, ledSinceMs }).map((m) => m.group)).toEqual(['g2', 'g4']);
  });

  it('handovers in flight count at their target and are not planned again', () => {
    const groups = cluster({ a: 4, b: 0 });
    const first = planMoves({ members: ['a', 'b'], groups });
    expect(first).toHaveLength(2);
    const inFlight = new Map(first.map((m) => [m.group, m.to]));
    expect(planMoves({ members: ['a', 'b'], groups, inFlight })).toEqual([]);
  });
});
