// A leader's etcd action that etcd keeps refusing for lack of space (a group's enqueue: etcd full,
// a group added) is logged once per streak, not on every tick; one line when it works again.
// In process, on a real 3-member etcd with a 4 MB quota.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EtcdCluster, startEtcdCluster } from '../../scripts/lib/etcd-cluster.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { fillEtcd, freeEtcd, SMALL_QUOTA_FLAGS } from '../support/etcd-space.ts';
import { makeNode, TEST_TIMING, tmpDir } from './harness.ts';

let etcd: EtcdCluster;
let root: { dir: string; cleanup: () => Promise<void> };
let node: EtcdLeadership | undefined;

beforeAll(async () => {
  root = await tmpDir('etcd-no-space-actions');
  etcd = await startEtcdCluster({ extraFlags: SMALL_QUOTA_FLAGS });
}, 60_000);

afterAll(async () => {
  await node?.stop();
  await etcd?.stop();
  await root?.cleanup();
}, 30_000);

describe('etcd out of space: a refused action', () => {
  it('is one warning per streak, not one per tick, and one line when it works again', async () => {
    const lines: { msg: string; group?: string; atMs: number }[] = [];
    const logger = pino(
      { level: 'info' },
      { write: (line: string) => lines.push({ ...JSON.parse(line), atMs: performance.now() }) },
    );
    node = makeNode(
      'n1',
      {
        etcd: etcd.clientOptions(),
        prefix: '/coolctl-test/no-space-actions',
        groups: ['g1'],
        dataRoot: root.dir,
      },
      { logger },
    );
    await node.start();
    await waitFor('n1 leads g1', () => node!.groups().find((g) => g.group === 'g1')?.role === 'leader');
    const client = createEtcdClient({ ...etcd.clientOptions(), callTimeoutMs: 5000 });
    try {
      await fillEtcd(client);
      node.setGroups(['g1', 'g2']); // g2's enqueue is a write: refused on every tick
      const failed = () => lines.filter((l) => l.msg.startsWith('etcd action failed') && l.group === 'g2');
      const first = await waitFor('the first refused enqueue', () => failed()[0], { timeoutMs: 10_000 });
      // What is under test is repetition over time: let several resync passes (each retries) go by.
      const passMs = Math.max(500, TEST_TIMING.keepaliveIntervalMs * 3);
      await waitFor('eight resync passes', () => performance.now() - first.atMs > 8 * passMs, {
        timeoutMs: 10_000,
        intervalMs: 100,
      });
      expect(failed()).toHaveLength(1);

      await freeEtcd({ etcdctl: (args, timeoutMs) => etcd.ctl(args, { asRoot: true, timeoutMs }) }, client);
      await waitFor('n1 leads g2', () => node!.groups().find((g) => g.group === 'g2')?.role === 'leader', {
        timeoutMs: 15_000,
      });
      expect(failed()).toHaveLength(1);
      expect(lines.filter((l) => l.msg === 'etcd action done again' && l.group === 'g2')).toHaveLength(1);
    } finally {
      client.close();
    }
  }, 90_000);
});
