// Handover markers that no leader is running (a restore, a hand-made put, a lease borrowed by hand,
// a leader that is gone): the decision ignores them — nobody stays out of the queue waiting on them
// — and the group's leader deletes them; a leader's own marker on its lease counts even before the
// view shows its member record. parseSnapshot says which markers are no member's; the watched view
// knows which keys it holds no value for (oversized), so a leader check can tell such a marker from
// one its watch has not brought yet.
import type { IKeyValue } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { decideGroup, type GroupFacts } from '../../src/cluster/decide.ts';
import { parseSnapshot } from '../../src/cluster/etcd/snapshot.ts';
import { WatchedView } from '../../src/cluster/etcd/watched-view.ts';
import type { HandoverMarker, QueueEntry } from '../../src/cluster/view.ts';

const q = (...nodes: string[]): QueueEntry[] =>
  nodes.map((node, i) => ({
    key: `/p/election/g/${node}`,
    leaseHex: `${node}-lease`,
    node,
    createRevision: 10 + i,
  }));

const facts = (over: Partial<GroupFacts> = {}): GroupFacts => ({
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
});

const marker = (from: string, to: string, over: Partial<HandoverMarker> = {}): HandoverMarker => ({
  key: '/p/handover/g',
  group: 'g',
  from,
  to,
  epoch: 10,
  leaseHex: `${from}-lease`,
  modRevision: 20,
  ...over,
});

describe('a handover marker no leader runs', () => {
  it('a ghost keeps nobody out of the queue, and the leader deletes it', () => {
    const ghost = marker('n9', 'n8', { leaseHex: '0', ghost: 'handover marker without a lease' });
    // No key yet: queue (before, every node waited on the ghost's target for ever).
    expect(decideGroup(facts({ queue: [], marker: ghost }))).toMatchObject({ action: 'enqueue' });
    expect(
      decideGroup(facts({ me: 'b', leaseHex: 'b-lease', queue: q('a', 'c'), marker: ghost })),
    ).toMatchObject({
      action: 'enqueue',
    });
    // A key between the leader and the ghost's target stays.
    const toC = marker('a', 'c', { leaseHex: '0', ghost: 'handover marker without a lease' });
    expect(decideGroup(facts({ me: 'b', leaseHex: 'b-lease', marker: toC }))).toMatchObject({
      role: 'candidate',
      action: 'none',
    });
    // The leader does not resign for it, and deletes it.
    expect(decideGroup(facts({ role: 'leader', queue: q('a', 'c'), marker: toC }))).toMatchObject({
      role: 'leader',
      action: 'clearMarker',
    });
    expect(decideGroup(facts({ marker: ghost }))).toMatchObject({ role: 'leader', action: 'clearMarker' });
  });

  it('a marker whose writer and target both do not lead is stale: ignored, deleted by the leader', () => {
    const stale = marker('b', 'n8');
    expect(decideGroup(facts({ marker: stale }))).toMatchObject({ role: 'leader', action: 'clearMarker' });
    expect(decideGroup(facts({ me: 'c', leaseHex: 'c-lease', queue: q('a'), marker: stale }))).toMatchObject({
      action: 'enqueue',
    });
  });

  it('our own marker on our lease counts even when the view has not matched it to us yet', () => {
    const mine = marker('a', 'c', { ghost: 'handover marker on lease a-lease, which no member holds' });
    expect(decideGroup(facts({ marker: mine }))).toMatchObject({ role: 'leader', action: 'none' });
    expect(decideGroup(facts({ role: 'leader', queue: q('a', 'c'), marker: mine }))).toMatchObject({
      role: 'resigned',
      action: 'resignForHandover',
    });
  });

  it('parseSnapshot marks markers without a lease, on no member lease, or on another member lease', () => {
    const kv = (key: string, value: object, lease: string, rev = 5): IKeyValue =>
      ({
        key: Buffer.from(`/p/${key}`),
        value: Buffer.from(JSON.stringify(value)),
        lease,
        mod_revision: String(rev),
        create_revision: String(rev),
        version: '1',
      }) as IKeyValue;
    const ignored: string[] = [];
    const snap = parseSnapshot(
      [
        kv('members/a', { apiUrl: 'http://127.0.0.1:1' }, '10'),
        kv('members/b', { apiUrl: 'http://127.0.0.1:2' }, '11'),
        kv('handover/g1', { from: 'a', to: 'b' }, '10'),
        kv('handover/g2', { from: 'x', to: 'b' }, '0'),
        kv('handover/g3', { from: 'x', to: 'b' }, '99'),
        kv('handover/g4', { from: 'b', to: 'a' }, '10'),
      ],
      '/p',
      [],
      5,
      0,
      (k, kind, why) => ignored.push(`${k.key.toString()} ${kind} ${why}`),
    );
    expect(snap.markers.get('g1')?.ghost).toBeUndefined();
    expect(snap.markers.get('g2')?.ghost).toBe('handover marker without a lease');
    expect(snap.markers.get('g3')?.ghost).toBe('handover marker on lease 63, which no member holds');
    expect(snap.markers.get('g4')?.ghost).toBe('handover marker from b is on the lease of a');
    expect(ignored).toEqual([
      '/p/handover/g2 ghost handover marker without a lease',
      '/p/handover/g3 ghost handover marker on lease 63, which no member holds',
      '/p/handover/g4 ghost handover marker from b is on the lease of a',
    ]);
  });

  it('the watched view knows an oversized marker from a watch event, until it is replaced or deleted', () => {
    const v = new WatchedView({ prefix: '/p', maxValueBytes: 100, onIgnored: () => {} });
    v.load([], 10, 0, []);
    const ev = (type: 'Put' | 'Delete', key: string, value: string, rev: number) => ({
      type,
      kv: {
        key: Buffer.from(key),
        value: Buffer.from(value),
        lease: '0',
        mod_revision: String(rev),
      } as IKeyValue,
    });
    const big = 'x'.repeat(200);
    // Put again and again (a hostile writer): listed once, whatever sub-prefix.
    for (let r = 11; r < 50; r++)
      v.apply([ev('Put', '/p/handover/g1', big, r), ev('Put', '/p/election/g1/ab', big, r)]);
    expect(v.isOversized('/p/handover/g1')).toBe(true);
    expect(v.isOversized('/p/election/g1/ab')).toBe(true);
    v.apply([
      ev('Put', '/p/handover/g1', JSON.stringify({ from: 'a', to: 'b' }), 60),
      ev('Delete', '/p/election/g1/ab', '', 61),
    ]);
    expect(v.isOversized('/p/handover/g1')).toBe(false);
    expect(v.isOversized('/p/election/g1/ab')).toBe(false);
    expect(v.freeze(['g1']).snapshot.markers.get('g1')).toMatchObject({ from: 'a', to: 'b' });
  });
});
