// A start that meets one slow etcd answer: the secured chaos hall once lost a controller at start
// because the member registration's first call timed out (three nodes signing in over TLS at once
// on a loaded machine) and start gave up at once, with a message that blamed a budget it had not
// spent. Here the node's calls go through a proxy that holds every byte until the registration has
// timed out once; the node must register, lead, and say what it retried. Real 3-member etcd.
import type { Etcd3 } from 'etcd3';
import { afterEach, describe, expect, it } from 'vitest';
import { BlackholeProxy } from '../../scripts/lib/blackhole-proxy.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { captureLogs } from '../support/log-lines.ts';
import { makeNode, TEST_TIMING, useEtcdFixture } from './harness.ts';

const GROUP = 'g1';
const fx = useEtcdFixture('start-slow-etcd');
let node: EtcdLeadership | undefined;
let proxy: BlackholeProxy | undefined;
let replaced: Etcd3 | undefined;

afterEach(async () => {
  await node?.stop();
  node = undefined;
  replaced?.close();
  await proxy?.close();
});

/**
 * Routes the node's member registration (its member record's client) and key checks (its `client`)
 * through `p`; its keepalive worker and view reader keep their own links (the replaced client stays
 * open for the reader).
 */
function callsThrough(n: EtcdLeadership, p: BlackholeProxy, hosts: string[], settings: object): void {
  const scheme = hosts[0]!.startsWith('https') ? 'https' : 'http';
  const inner = n as unknown as { client: Etcd3; member: { client: Etcd3 } };
  replaced = inner.client;
  inner.client = createEtcdClient({
    ...settings,
    hosts: [`${scheme}://${p.address}`],
    callTimeoutMs: TEST_TIMING.etcdCallTimeoutMs,
  });
  inner.member.client = inner.client;
}

describe('leadership start against a slow etcd', () => {
  it('a member registration that times out once is tried again within the start budget', async () => {
    const etcd = fx.etcd.clientOptions();
    const [host, port] = etcd.hosts[0]!.replace(/^https?:\/\//, '').split(':');
    proxy = await BlackholeProxy.start({ target: { host: host!, port: Number(port) }, mode: 'blackhole' });
    const logs = captureLogs();
    node = makeNode(
      'n1',
      { etcd, prefix: '/coolctl-test/start-slow-etcd', groups: [GROUP], dataRoot: `${fx.root.dir}/1` },
      { logger: logs.logger },
    );
    callsThrough(node, proxy, etcd.hosts, etcd);

    const start: { outcome: 'pending' | 'started' | Error } = { outcome: 'pending' };
    node.start().then(
      () => {
        start.outcome = 'started';
      },
      (err: Error) => {
        start.outcome = err;
      },
    );
    // The lease comes through the worker's own link; the registration's call is held and times out.
    await waitFor(
      'the registration to time out once, or start to end',
      () =>
        start.outcome !== 'pending' ||
        logs.parsed().some((l) => l.msg === 'member register failed; retrying'),
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    proxy.heal();
    await waitFor('start to end', () => start.outcome !== 'pending', { timeoutMs: 10_000 });
    if (start.outcome instanceof Error) throw start.outcome;
    expect(start.outcome).toBe('started');
    await waitFor('n1 leads', () => node?.fence(GROUP) != null, { timeoutMs: 10_000 });
    const retried = logs.parsed().find((l) => l.msg === 'member register failed; retrying');
    expect(String(retried?.err)).toMatch(/member register: no answer within 500 ms/);
  }, 60_000);

  it('a start that runs out of budget says what failed last, not only that time ran out', async () => {
    const etcd = fx.etcd.clientOptions();
    const [host, port] = etcd.hosts[0]!.replace(/^https?:\/\//, '').split(':');
    proxy = await BlackholeProxy.start({ target: { host: host!, port: Number(port) }, mode: 'blackhole' });
    node = makeNode('n2', {
      etcd,
      prefix: '/coolctl-test/start-slow-etcd',
      groups: [GROUP],
      dataRoot: `${fx.root.dir}/2`,
    });
    callsThrough(node, proxy, etcd.hosts, etcd);
    const err = await node.start().then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(
      /^leadership start: etcd not usable within \d+ ms \(.*\): last try: etcd member register: (no answer within 500 ms|Execution prevented because the circuit breaker is open)$/,
    );
    expect((err as { code?: string }).code).toBe('COOLCTL_E_ETCD_UNAVAILABLE');
    node = undefined; // stopped by its failed start
  }, 60_000);
});
