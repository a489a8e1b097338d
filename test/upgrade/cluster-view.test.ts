// The upgrade's fitness check, pure: one reason per problem, and the node being stopped allowed to
// be gone (but never to still lead).
import { describe, expect, it } from 'vitest';
import { type ClusterSnapshot, clusterProblems, type MemberView } from '../../src/upgrade/cluster-view.ts';

function member(
  node: string,
  o: Partial<MemberView> = {},
  leads: string[] = [],
  undriven: string[] = [],
): MemberView {
  const groups = ['g1', 'g2', 'g3'].map((id) => ({
    id,
    leader: null,
    epoch: 1,
    state: leads.includes(id) ? 'leader' : 'follower',
    driving: leads.includes(id) && !undriven.includes(id),
    problem: undriven.includes(id) ? 'no unit accepting writes' : null,
  }));
  return { node, apiUrl: `http://${node}`, ready: true, groups, peers: [], error: null, ...o };
}

function snap(...views: MemberView[]): ClusterSnapshot {
  return {
    atMs: 0,
    members: views.map((v) => ({ node: v.node, apiUrl: v.apiUrl })),
    views: new Map(views.map((v) => [v.node, v])),
  };
}

const all = { nodes: ['a', 'b', 'c'], groups: ['g1', 'g2', 'g3'] };

describe('clusterProblems', () => {
  it('a fit cluster has none', () => {
    expect(
      clusterProblems(snap(member('a', {}, ['g1']), member('b', {}, ['g2']), member('c', {}, ['g3'])), all),
    ).toEqual([]);
  });

  it('names every problem: a missing member, one not ready, no leader, two leaders, not driven', () => {
    const s = snap(member('a', {}, ['g1', 'g3'], ['g3']), member('b', { ready: false }, ['g1']));
    expect(clusterProblems(s, all)).toEqual([
      'b is not ready (no live etcd lease)',
      'c is not a member of the cluster',
      'g1 is claimed by a and b',
      'g2 has no leader',
      'g3 is led by a but not driven (no unit accepting writes)',
    ]);
  });

  it('the node being stopped may be gone or silent, but must not lead', () => {
    const gone = snap(member('a', {}, ['g1', 'g2']), member('b', {}, ['g3']));
    expect(clusterProblems(gone, { ...all, down: 'c' })).toEqual([]);
    const silent = snap(
      member('a', {}, ['g1', 'g2']),
      member('b', {}, ['g3']),
      member('c', { error: 'ECONNREFUSED' }),
    );
    expect(clusterProblems(silent, { ...all, down: 'c' })).toEqual([]);
    const still = snap(member('a', {}, ['g1']), member('b', {}, ['g3']), member('c', {}, ['g2']));
    expect(clusterProblems(still, { ...all, down: 'c' })).toEqual(['g2 is still led by c']);
    expect(clusterProblems(silent, all)).toEqual(['c does not answer: ECONNREFUSED']);
  });
});
