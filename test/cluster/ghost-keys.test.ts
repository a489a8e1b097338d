// Ghost election keys: a key under election/<group>/ without a lease (an `etcdctl put`, a restore),
// or on a lease no member holds, does not count in the queue — the group is led all the same — and
// is logged and counted once per key, not per tick. A leaseless key put over a node's own key name,
// and a member key deleted by hand, end with every group led again. Real etcd and real etcdctl.
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { balanced, FenceMonitor, makeNode, useEtcdFixture, writers } from './harness.ts';

const GROUPS = ['g1', 'g2', 'g3'];

const fx = useEtcdFixture('ghost-keys');
let nodes: EtcdLeadership[] = [];
let monitor: FenceMonitor | undefined;

afterEach(async () => {
  monitor?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
});

async function ghosts(r: Registry): Promise<number> {
  const m = await r.getSingleMetric('coolctl_leadership_ignored_keys_total')!.get();
  return m.values.find((v) => v.labels.kind === 'ghost')?.value ?? 0;
}

const allLed = () => [...writers(nodes, GROUPS).values()].every((w) => w !== null);

describe('ghost election keys', () => {
  it('do not count: the group is led, each ghost reported once; own-name ghosts and a lost member key heal', async () => {
    const prefix = '/coolctl-test/ghost-keys';
    // etcdctl as the cluster's etcd user (on a secured cluster: its certificate and password).
    const etcdctl = (args: string[]) => fx.etcd.ctl(args, { asUser: true });
    // A leaseless key, and a key on a live lease that no member holds, each first in its queue.
    await etcdctl(['put', `${prefix}/election/g1/1234abcd`, 'restored']);
    const granted = await etcdctl(['lease', 'grant', '60']);
    const stranger = /lease ([0-9a-f]+) granted/.exec(granted)![1]!;
    await etcdctl(['put', `--lease=${stranger}`, `${prefix}/election/g2/${stranger}`, 'stranger']);

    const base = { etcd: fx.etcd.clientOptions(), prefix, groups: GROUPS, dataRoot: `${fx.root.dir}/1` };
    const registry = new Registry();
    nodes = [makeNode('n1', base, { registry }), makeNode('n2', base)];
    monitor = new FenceMonitor(GROUPS, () => nodes);
    monitor.start();
    await Promise.all(nodes.map((n) => n.start()));
    // Every group led, g1 and g2 despite their ghosts, and placement settled (no handover in flight).
    await waitFor(
      'an even placement, g1 and g2 led despite their ghosts',
      () => balanced(writers(nodes, GROUPS), ['n1', 'n2']),
      { timeoutMs: 10_000 },
    );

    // Reported once per key, not per tick: the count holds across several resyncs (900 ms each).
    await waitFor('both ghosts reported', async () => (await ghosts(registry)) === 2);
    const until = performance.now() + 2_500;
    while (performance.now() < until) {
      expect(await ghosts(registry)).toBe(2);
      expect(allLed()).toBe(true);
      await new Promise((r) => setTimeout(r, 100));
    }

    expect(monitor.violations).toEqual([]);
    monitor.stop();

    // A leaseless put over n1's own key for g3: n1's key stops counting; it removes the ghost and
    // queues again, and g3 stays led (by n2, or by n1 again on a new key). Like deleting a leader's
    // key by hand, this operator action can leave two nodes believing they lead for the few ms until
    // the old leader's next read (docs/leadership.md, Known limits), so the monitor is off for it.
    const keys = (await etcdctl(['get', '--prefix', `${prefix}/election/g3/`])).trim().split('\n');
    const ownKey = keys[keys.indexOf('n1') - 1]!;
    const epochBefore = nodes.find((n) => n.fence('g3'))!.fence('g3')!.epoch;
    await etcdctl(['put', ownKey, 'n1']);
    await waitFor('g3 led on a key that counts', () => {
      const w = nodes.find((n) => n.fence('g3'));
      return w && (w.node === 'n2' || w.fence('g3')!.epoch !== epochBefore);
    });
    await waitFor('n1 queued again on a leased key', async () => {
      const out = await etcdctl(['get', '--prefix', `${prefix}/election/g3/`, '-w', 'json']);
      const kvs = (JSON.parse(out) as { kvs?: { value: string; lease?: number }[] }).kvs ?? [];
      return kvs.some((kv) => Buffer.from(kv.value, 'base64').toString() === 'n1' && kv.lease);
    });

    // n2's member key deleted by hand: its keys stop counting, it registers again and re-queues
    // at the back; every group is led and both are members again.
    await etcdctl(['del', `${prefix}/members/n2`]);
    await waitFor('n2 a member again', () => nodes[0]!.members().some((m) => m.node === 'n2'), {
      timeoutMs: 5_000,
    });
    await waitFor('every group led', allLed, { timeoutMs: 5_000 });
    expect(nodes.every((n) => n.healthy)).toBe(true);
  });
});
