// The election recipe against a real etcd cluster, checked with etcd's own tool: `etcdctl elect
// --listen` on our group prefix shows the leader we compute, and candidates queue in create-revision
// order, each taking over when the key before it is deleted.
import { type ChildProcess, spawn } from 'node:child_process';
import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Election, electionPrefix } from '../../src/cluster/etcd/election.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { leaseHex } from '../../src/cluster/etcd/lease-wire.ts';
import { waitFor } from '../helpers.ts';
import { ETCDCTL_BIN, type EtcdCluster, startEtcdCluster } from '../support/etcd-cluster.ts';

let etcd: EtcdCluster;
let client: Etcd3;

beforeAll(async () => {
  etcd = await startEtcdCluster();
  client = createEtcdClient({ ...etcd.clientOptions(), callTimeoutMs: 1_000 });
});

afterAll(async () => {
  client?.close();
  await etcd?.stop();
});

async function lease(): Promise<{ id: string; hex: string }> {
  const res = await client.leaseClient.leaseGrant({ TTL: 10 }, { deadline: Date.now() + 1_000 });
  return { id: res.ID, hex: leaseHex(res.ID) };
}

/** `etcdctl elect --listen PREFIX`: prints key and value of each leader it observes. */
function listen(prefix: string): { proc: ChildProcess; lines: string[] } {
  const args = [
    `--endpoints=${etcd.endpoints.join(',')}`,
    ...etcd.ctlFlags('user'),
    'elect',
    '--listen',
    prefix,
  ];
  const proc = spawn(ETCDCTL_BIN, args, {
    env: { ...process.env, ETCDCTL_API: '3' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  return { proc, lines };
}

describe('Election (etcd recipe)', () => {
  it('etcdctl elect --listen shows the leader we compute, through a resign', async () => {
    const prefix = '/coolctl-test/election';
    const [la, lb] = await Promise.all([lease(), lease()]);
    const a = new Election({ client, prefix, group: 'g1', node: 'alpha', lease: la, callTimeoutMs: 1_000 });
    const b = new Election({ client, prefix, group: 'g1', node: 'beta', lease: lb, callTimeoutMs: 1_000 });
    const listener = listen(electionPrefix(prefix, 'g1'));
    try {
      const epochA = await a.campaign(AbortSignal.timeout(5_000));
      expect(a.key).toBe(`${prefix}/election/g1/${la.hex}`);
      expect(epochA).toBe(a.epoch);
      // beta queues behind alpha and waits.
      const bLeads = b.campaign(AbortSignal.timeout(10_000));
      await waitFor('beta queued', async () => (await a.queue()).queue.length === 2);
      expect((await b.leader())?.node).toBe('alpha');
      await waitFor('etcdctl shows alpha', () => listener.lines.includes('alpha'));
      expect(listener.lines[listener.lines.indexOf('alpha') - 1]).toBe(a.key);

      await a.resign();
      const epochB = await bLeads;
      expect(epochB).toBeGreaterThan(epochA);
      expect((await a.leader())?.node).toBe('beta');
      await waitFor('etcdctl shows beta', () => listener.lines.includes('beta'));
      expect(listener.lines[listener.lines.indexOf('beta') - 1]).toBe(b.key);
      await b.resign();
    } finally {
      listener.proc.kill('SIGKILL');
      await client.leaseClient.leaseRevoke({ ID: la.id }, { deadline: Date.now() + 1_000 }).catch(() => {});
      await client.leaseClient.leaseRevoke({ ID: lb.id }, { deadline: Date.now() + 1_000 }).catch(() => {});
    }
  });

  it('a candidate follows the queue order and a lost lease (revoke) passes the lead on', async () => {
    const prefix = '/coolctl-test/election-order';
    const leases = await Promise.all([lease(), lease(), lease()]);
    const els = leases.map(
      (l, i) => new Election({ client, prefix, group: 'g', node: `n${i}`, lease: l, callTimeoutMs: 1_000 }),
    );
    await els[0]!.campaign(AbortSignal.timeout(5_000));
    const second = els[1]!.campaign(AbortSignal.timeout(10_000));
    await waitFor('n1 queued', async () => (await els[0]!.queue()).queue.length === 2);
    const third = els[2]!.campaign(AbortSignal.timeout(10_000));
    await waitFor('n2 queued', async () => (await els[0]!.queue()).queue.length === 3);
    // Re-enqueueing an existing key keeps its place (a retry after a lost answer is harmless).
    const rev = els[0]!.epoch;
    expect(await els[0]!.enqueue()).toBe(rev);
    // Revoking n0's lease deletes its key: n1 (not n2) takes over.
    await client.leaseClient.leaseRevoke({ ID: leases[0]!.id }, { deadline: Date.now() + 1_000 });
    await second;
    expect((await els[0]!.leader())?.node).toBe('n1');
    let thirdDone = false;
    void third.then(() => {
      thirdDone = true;
    });
    await new Promise((r) => setTimeout(r, 100)); // n2 must still be waiting: nothing changed for it
    expect(thirdDone).toBe(false);
    await els[1]!.resign();
    await third;
    expect((await els[0]!.leader())?.node).toBe('n2');
    await els[2]!.resign();
    await Promise.all(
      leases
        .slice(1)
        .map((l) => client.leaseClient.leaseRevoke({ ID: l.id }, { deadline: Date.now() + 1_000 })),
    );
  });

  it('an aborted campaign rejects with a typed error and leaves the queue on resign', async () => {
    const prefix = '/coolctl-test/election-abort';
    const [l0, l1] = await Promise.all([lease(), lease()]);
    const e0 = new Election({ client, prefix, group: 'g', node: 'a', lease: l0, callTimeoutMs: 1_000 });
    const e1 = new Election({ client, prefix, group: 'g', node: 'b', lease: l1, callTimeoutMs: 1_000 });
    await e0.campaign(AbortSignal.timeout(5_000));
    const ac = new AbortController();
    const waiting = e1.campaign(ac.signal);
    await waitFor('b queued', async () => (await e0.queue()).queue.length === 2);
    ac.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'COOLCTL_E_CLUSTER_ABORTED' });
    await e1.resign();
    expect((await e0.queue()).queue.map((q) => q.node)).toEqual(['a']);
    await e0.resign();
  });
});
