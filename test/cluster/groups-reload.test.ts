// A reload that removes a group: the node leaves its queue, and the group's series leave /metrics.
// `coolctl_leader{group} 0` left behind on every node read as a group nobody leads, and the shipped
// CoolctlGroupWithoutLeader (max by group of coolctl_leader == 0) fired, critical, for good.
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { etcdctl } from '../support/etcd-cluster.ts';
import { makeNode, useEtcdFixture } from './harness.ts';

const fx = useEtcdFixture('groups-reload');
let node: EtcdLeadership | undefined;
afterEach(async () => {
  await node?.stop();
});

describe('groups removed by a reload', () => {
  it('leave the queue in etcd and the coolctl_leader series, which an added group joins', async () => {
    const registry = new Registry();
    node = makeNode(
      'n1',
      { etcd: fx.etcd.clientOptions(), prefix: '/reload', groups: ['g1', 'g2'], dataRoot: fx.root.dir },
      { registry },
    );
    await node.start();
    await waitFor('leading both', () => node!.fence('g1') !== null && node!.fence('g2') !== null);
    const leaderSeries = async () =>
      (await registry.getSingleMetric('coolctl_leader')!.get()).values
        .map((v) => `${v.labels.group}=${v.value}`)
        .sort();
    expect(await leaderSeries()).toEqual(['g1=1', 'g2=1']);
    const g2Keys = async () =>
      (await etcdctl(fx.etcd.endpoints, ['get', '--prefix', '--keys-only', '/reload/election/g2/']))
        .split('\n')
        .filter(Boolean).length;
    expect(await g2Keys()).toBe(1);

    node.setGroups(['g1', 'g3']);
    await waitFor('leading g3', () => node!.fence('g3') !== null);
    expect(node.fence('g2')).toBeNull();
    expect(await leaderSeries()).toEqual(['g1=1', 'g3=1']);
    await waitFor('g2 left etcd', async () => (await g2Keys()) === 0);
  });
});
