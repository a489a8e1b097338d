// A node's lease revoked by hand (`etcdctl lease revoke`, an operator cleaning up, or a hostile
// holder of etcd credentials): etcd deletes every key on it at once, so the node cannot stop first
// (docs/leadership.md, Known limits); what must hold is that it stops writing within one keepalive
// interval, every group is led again by the others within a few seconds, and the node comes back on
// a new lease and gets its share again — no crash, no loop, healthy at the end.
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { balanced, FenceMonitor, makeNode, TEST_TIMING, useEtcdFixture, writers } from './harness.ts';

const GROUPS = ['g1', 'g2', 'g3', 'g4', 'g5', 'g6'];
const fx = useEtcdFixture('lease-revoked');
let nodes: EtcdLeadership[] = [];
let monitor: FenceMonitor | undefined;

afterEach(async () => {
  monitor?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
});

describe('a lease revoked by hand', () => {
  it('its holder stops writing, the others lead its groups, and it comes back with its share', async () => {
    const prefix = '/coolctl-test/lease-revoked';
    const etcdctl = (args: string[]) => fx.etcd.ctl(args, { asUser: true });
    const base = { etcd: fx.etcd.clientOptions(), prefix, groups: GROUPS, dataRoot: fx.root.dir };
    nodes = ['n1', 'n2', 'n3'].map((n) => makeNode(n, base));
    monitor = new FenceMonitor(GROUPS, () => nodes);
    await Promise.all(nodes.map((n) => n.start()));
    await waitFor('an even placement', () => balanced(writers(nodes, GROUPS), ['n1', 'n2', 'n3']));
    monitor.start();

    const keys = (await etcdctl(['get', '--prefix', `${prefix}/election/`])).trim().split('\n');
    const n1Lease = keys[keys.indexOf('n1') - 1]!.split('/').at(-1)!;
    const n1 = nodes[0]!;
    const ledByN1 = GROUPS.filter((g) => n1.fence(g));
    const t0 = performance.now();
    await etcdctl(['lease', 'revoke', n1Lease]);
    await waitFor('n1 stops writing', () => ledByN1.every((g) => n1.fence(g) === null), { timeoutMs: 3_000 });
    const stoppedMs = performance.now() - t0;
    await waitFor('every group led', () => [...writers(nodes, GROUPS).values()].every((w) => w !== null), {
      timeoutMs: 5_000,
    });
    await waitFor('n1 back with its share', () => balanced(writers(nodes, GROUPS), ['n1', 'n2', 'n3']), {
      timeoutMs: 15_000,
    });
    monitor.stop();
    expect(stoppedMs).toBeLessThan(TEST_TIMING.keepaliveIntervalMs * 3);
    expect(nodes.every((n) => n.healthy)).toBe(true);
  });
});
