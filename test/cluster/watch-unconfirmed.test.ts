// A watch etcd never confirms: after a restart of every etcd member on TLS, a node's watch stream was
// re-created on a connection that never answered. Its unary reads worked, its view stayed silent, and
// it waited for good behind a leader that was gone. Here the candidate's watches run through a proxy
// that is reset and then holds every byte (the same silence, on demand); the leader stops, and the
// candidate must still lead: it replaces the watch client, loads the view again and sees the key gone.
// Real 3-member etcd, in-process nodes.
import type { Etcd3 } from 'etcd3';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { BlackholeProxy } from '../../scripts/lib/blackhole-proxy.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { makeNode, TEST_TIMING, useEtcdFixture } from './harness.ts';

const GROUP = 'g1';
const fx = useEtcdFixture('watch-unconfirmed');
let nodes: EtcdLeadership[] = [];
let proxy: BlackholeProxy | undefined;

afterEach(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
  await proxy?.close();
});

describe('leadership watches etcd does not confirm', () => {
  it('a candidate whose watch stream went silent still leads once the leader is gone: new watch client, view loaded again', async () => {
    const b = {
      etcd: fx.etcd.clientOptions(),
      prefix: '/coolctl-test/watch-unconfirmed',
      groups: [GROUP],
      dataRoot: `${fx.root.dir}/1`,
    };
    const registry = new Registry();
    const n1 = makeNode('n1', b);
    const n2 = makeNode('n2', b, { registry });
    nodes = [n1, n2];
    await n1.start();
    await waitFor('n1 leads', () => n1.fence(GROUP) !== null, { timeoutMs: 10_000 });

    // n2's watches go through a proxy in front of one member (its reads go to every member directly).
    const [host, port] = b.etcd.hosts[0]!.replace(/^https?:\/\//, '').split(':');
    proxy = await BlackholeProxy.start({ target: { host: host!, port: Number(port) } });
    const scheme = b.etcd.hosts[0]!.startsWith('https') ? 'https' : 'http';
    const inner = (n2 as unknown as { watches: { client: Etcd3 } }).watches;
    inner.client.close();
    inner.client = createEtcdClient({
      ...b.etcd,
      hosts: [`${scheme}://${proxy.address}`],
      callTimeoutMs: TEST_TIMING.etcdCallTimeoutMs,
    });
    await n2.start();
    await waitFor('n2 queued behind n1', () => n2.groups()[0]?.role === 'candidate', { timeoutMs: 10_000 });

    // The stream is cut (RST) and the proxy then holds everything: the watches are asked for again and
    // nothing ever answers them.
    proxy.blackhole();
    expect(proxy.resetAll()).toBeGreaterThan(0);
    await n1.stop();
    const t0 = performance.now();
    await waitFor('n2 leads', () => n2.fence(GROUP) !== null, { timeoutMs: 15_000, intervalMs: 50 });
    const tookMs = performance.now() - t0;
    // Well before the 60 s full resync would have found it.
    expect(tookMs).toBeLessThan(10_000);
    const text = await registry.metrics();
    expect(Number(/coolctl_leadership_watch_resets_total (\d+)/.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
    process.stdout.write(`n2 led ${Math.round(tookMs)} ms after n1 stopped, its watches silent\n`);
  }, 60_000);
});
