// Leadership does not depend on the size of other keys under the cluster prefix: three 1.4 MB values
// under <prefix>/junk/ (4.2 MB: more than one gRPC message may carry) and large or foreign values
// under the leadership sub-prefixes themselves leave every node healthy and ready, the big values
// are ignored (counted, logged once) and a killed leader is still replaced within TTL + 1 s.
import type { Etcd3 } from 'etcd3';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { ChildNode } from './child-node.ts';
import { FenceMonitor, makeNode, TEST_TIMING, useEtcdFixture, writers } from './harness.ts';

const GROUPS = ['g1', 'g2', 'g3'];
const BIG = Buffer.alloc(1_400_000, 'x');

const fx = useEtcdFixture('large-keys');
let inProc: EtcdLeadership[] = [];
let child: ChildNode | undefined;
let monitor: FenceMonitor | undefined;
let writer: Etcd3 | undefined;

afterEach(async () => {
  monitor?.stop();
  await child?.kill();
  child = undefined;
  await Promise.all(inProc.map((n) => n.stop()));
  inProc = [];
  writer?.close();
});

async function ignoredOversized(r: Registry): Promise<number> {
  const m = await r.getSingleMetric('coolctl_leadership_ignored_keys_total')!.get();
  return m.values.find((v) => v.labels.kind === 'oversized')?.value ?? 0;
}

describe('large keys under the cluster prefix', () => {
  it('never stop leadership: every node stays healthy, big values are ignored, a killed leader is replaced', async () => {
    const prefix = '/coolctl-test/large-keys';
    const base = { etcd: fx.etcd.clientOptions(), prefix, groups: GROUPS, dataRoot: `${fx.root.dir}/1` };
    writer = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 5_000 });
    // Any client can put these: 4.2 MB of unrelated keys, and three large values in one page of our
    // own members/ (more than one gRPC message there too), before any node starts.
    for (const k of ['a', 'b', 'c']) await writer.put(`${prefix}/junk/${k}`).value(BIG);
    for (const k of ['x1', 'x2', 'x3']) await writer.put(`${prefix}/members/${k}`).value(BIG);
    child = new ChildNode({
      node: 'n1',
      apiUrl: 'http://n1.test',
      groups: GROUPS,
      etcd: fx.etcd.clientOptions(),
      prefix,
      dataDir: `${base.dataRoot}/n1`,
      ...TEST_TIMING,
    });
    await child.ready();
    const registry = new Registry();
    inProc = [makeNode('n2', base, { registry }), makeNode('n3', base)];
    monitor = new FenceMonitor(GROUPS, () => inProc);
    monitor.start(2);
    await Promise.all(inProc.map((n) => n.start()));
    await waitFor(
      'n1 leads one group, n2 and n3 the others',
      () => {
        const w = writers(inProc, GROUPS);
        const mine = child!.writable();
        return mine.size === 1 && GROUPS.every((g) => (w.get(g) !== null) !== mine.has(g));
      },
      { timeoutMs: 15_000 },
    );

    // And while they run: more of it, a large and a foreign value under our sub-prefixes.
    for (const k of ['d', 'e', 'f']) await writer.put(`${prefix}/junk/${k}`).value(BIG);
    await writer.put(`${prefix}/operator/zz-big`).value(BIG);
    await writer.put(`${prefix}/handover/g9`).value('not json');

    // Healthy across several resync periods (a resync every 900 ms with the test timing).
    const until = performance.now() + 3_000;
    while (performance.now() < until) {
      for (const n of inProc) expect(n.healthy, `${n.node} healthy`).toBe(true);
      expect([...writers(inProc, GROUPS).values()].filter((w) => w !== null)).toHaveLength(2);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await ignoredOversized(registry)).toBe(4);
    const text = await registry.metrics();
    expect(text).toMatch(/coolctl_leadership_ignored_keys_total\{kind="foreign"\} 1/);
    expect(inProc[0]!.members().map((m) => m.node)).toEqual(['n1', 'n2', 'n3']);

    // Kill the child leader: its group is led again within TTL + 1 s.
    const lost = [...child.writable().keys()];
    const t0 = performance.now();
    await child.kill();
    await waitFor('n1’s group led again', () => lost.every((g) => inProc.some((n) => n.fence(g))), {
      timeoutMs: 5_000,
      intervalMs: 5,
    });
    expect(performance.now() - t0).toBeLessThan(TEST_TIMING.leaseTtlS * 1000 + 1_000);
    expect(inProc.every((n) => n.healthy)).toBe(true);
    expect(monitor.violations).toEqual([]);
  });
});
