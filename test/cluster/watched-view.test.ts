// The watched view, pure: a load and the watch events after it give the same queues as a full read
// would; a pass is told which groups changed; events already in the load are skipped; member changes
// re-filter every queue (ghosts); oversized values are left out as the full read leaves them out.
import type { IKeyValue } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { WatchedView } from '../../src/cluster/etcd/watched-view.ts';

const P = '/p';
let rev = 100;
const kv = (key: string, value: string, lease = '0', createRevision = rev): IKeyValue =>
  ({
    key: Buffer.from(`${P}/${key}`),
    value: Buffer.from(value),
    lease,
    create_revision: String(createRevision),
    mod_revision: String(createRevision),
    version: '1',
  }) as IKeyValue;
const leaseOf = (node: string) =>
  String(Number.parseInt(node === 'a' ? 'a1' : node === 'b' ? 'b1' : 'c1', 16));
const member = (node: string, r = ++rev) =>
  kv(`members/${node}`, JSON.stringify({ apiUrl: `http://${node}` }), leaseOf(node), r);
const elect = (group: string, node: string, r = ++rev) =>
  kv(`election/${group}/${node}1`, node, leaseOf(node), r);

function view(ignored: string[] = []) {
  return new WatchedView({
    prefix: P,
    maxValueBytes: 100,
    onIgnored: (k, kind) => ignored.push(`${kind}:${k.key}`),
  });
}

describe('WatchedView', () => {
  it('loads, then applies watch events; each pass sees one frozen snapshot and what changed', () => {
    const v = view();
    v.load(
      [member('a', 1), member('b', 2), elect('g1', 'a', 3), elect('g1', 'b', 4), elect('g2', 'b', 5)],
      5,
      0,
      [],
    );
    const first = v.freeze(['g1', 'g2', 'g3']);
    expect(first.changed).toBeNull(); // after a load: every group
    expect(first.snapshot.queues.get('g1')!.map((e) => e.node)).toEqual(['a', 'b']);
    expect(first.snapshot.queues.get('g3')).toEqual([]);
    expect(Object.isFrozen(first.snapshot)).toBe(true);

    v.apply([{ type: 'Delete', kv: { ...elect('g1', 'a', 3), mod_revision: '6' } }]);
    const second = v.freeze(['g1', 'g2', 'g3']);
    expect([...second.changed!]).toEqual(['g1']);
    expect(second.snapshot.queues.get('g1')!.map((e) => e.node)).toEqual(['b']);
    // the first pass's snapshot did not change under it
    expect(first.snapshot.queues.get('g1')!.map((e) => e.node)).toEqual(['a', 'b']);
    expect(second.snapshot.queues.get('g2')).toBe(first.snapshot.queues.get('g2'));
  });

  it('skips events already in the load, and re-filters every queue when members change', () => {
    const ignored: string[] = [];
    const v = view(ignored);
    v.load([member('a', 1), elect('g1', 'a', 2), elect('g2', 'a', 3)], 10, 0, []);
    v.freeze(['g1', 'g2']);
    v.apply([{ type: 'Delete', kv: { ...elect('g1', 'a', 2), mod_revision: '9' } }]); // before the load
    expect(v.freeze(['g1', 'g2']).snapshot.queues.get('g1')!).toHaveLength(1);
    // a's member key goes: its election keys are ghosts in every group
    v.apply([{ type: 'Delete', kv: { ...member('a', 1), mod_revision: '11' } }]);
    const f = v.freeze(['g1', 'g2']);
    expect(f.changed).toBeNull();
    expect(f.snapshot.queues.get('g1')).toEqual([]);
    expect(f.snapshot.queues.get('g2')).toEqual([]);
    expect(ignored.filter((x) => x.startsWith('ghost:'))).toHaveLength(2);
  });

  it('leaves an oversized value out, as the full read does, and a marker change marks its group', () => {
    const ignored: string[] = [];
    const v = view(ignored);
    v.load([member('a', 1), elect('g1', 'a', 2)], 2, 0, []);
    v.freeze(['g1']);
    v.apply([{ type: 'Put', kv: kv('members/x', 'y'.repeat(200), leaseOf('c'), 3) }]);
    expect(ignored).toContain(`oversized:${P}/members/x`);
    expect([...v.freeze(['g1']).snapshot.members.keys()]).toEqual(['a']);
    v.apply([
      {
        type: 'Put',
        kv: kv('handover/g1', JSON.stringify({ from: 'a', to: 'b', epoch: 2 }), leaseOf('a'), 4),
      },
    ]);
    const f = v.freeze(['g1']);
    expect([...f.changed!]).toEqual(['g1']);
    expect(f.snapshot.markers.get('g1')).toMatchObject({ from: 'a', to: 'b', modRevision: 4 });
  });
});
