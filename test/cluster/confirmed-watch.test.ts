// A prefix watch (users, API tokens: a revoked token must stop working on every node) whose stream
// went silent: its client's connection is reset and then holds every byte, so the watch is asked for
// again and nothing answers. The watch must start again on a new client and ask for a re-read, so a
// change made meanwhile is seen. Real 3-member etcd.
import type { Etcd3 } from 'etcd3';
import { afterEach, describe, expect, it } from 'vitest';
import { BlackholeProxy } from '../../scripts/lib/blackhole-proxy.ts';
import { ConfirmedWatch } from '../../src/cluster/etcd/confirmed-watch.ts';
import { createEtcdClient, etcdCall } from '../../src/cluster/etcd/etcd-client.ts';
import { waitFor } from '../helpers.ts';
import { useEtcdFixture } from './harness.ts';

const fx = useEtcdFixture('confirmed-watch');
const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});

describe('a prefix watch etcd stops answering', () => {
  it('starts again on a new client and asks for a re-read: a change made while it was silent is seen', async () => {
    const settings = fx.etcd.clientOptions();
    const prefix = '/coolctl-test/confirmed-watch/tokens/';
    const [host, port] = settings.hosts[0]!.replace(/^https?:\/\//, '').split(':');
    const proxy = await BlackholeProxy.start({ target: { host: host!, port: Number(port) } });
    open.push(proxy);
    const scheme = settings.hosts[0]!.startsWith('https') ? 'https' : 'http';
    const writer = createEtcdClient({ ...settings, callTimeoutMs: 2_000 });
    open.push(writer);
    const put = (k: string) =>
      etcdCall('put', 2_000, undefined, (o) => writer.put(`${prefix}${k}`).value('1').options(o).exec());
    const list = async () =>
      Object.keys(
        await etcdCall('list', 2_000, undefined, (o) => writer.getAll().prefix(prefix).options(o).strings()),
      ).map((k) => k.slice(prefix.length));

    // The first client goes through the proxy; a replacement goes to etcd directly.
    const clients: Etcd3[] = [];
    const seen = new Set<string>();
    let resyncs = 0;
    let replaced = 0;
    const watch = new ConfirmedWatch({
      newClient: () => {
        const c = createEtcdClient({
          ...settings,
          ...(clients.length === 0 ? { hosts: [`${scheme}://${proxy.address}`] } : {}),
          callTimeoutMs: 2_000,
        });
        clients.push(c);
        return c;
      },
      prefix,
      onPut: (kv) => seen.add(kv.key.toString().slice(prefix.length)),
      onDelete: () => {},
      resync: () => {
        resyncs++;
        void list().then((keys) => {
          for (const k of keys) seen.add(k);
        });
      },
      confirmMs: 1_500,
      onReplace: () => replaced++,
    });
    open.push(watch);
    await waitFor('the watch confirmed', () => resyncs === 1);
    await put('a');
    await waitFor('a seen through the watch', () => seen.has('a'));

    proxy.blackhole();
    expect(proxy.resetAll()).toBeGreaterThan(0);
    await put('b');
    await waitFor('b seen after the watch started again', () => seen.has('b'), { timeoutMs: 10_000 });
    expect(replaced).toBeGreaterThanOrEqual(1);
    expect(clients.length).toBeGreaterThanOrEqual(2);
    // And it follows changes again, not only through the re-read.
    await put('c');
    await waitFor('c seen', () => seen.has('c'));
  }, 30_000);
});
