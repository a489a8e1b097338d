// The etcd client's choice of member with one member hung (SIGSTOPped: its port accepts, nothing
// answers) and the two others keeping quorum: every read is answered within its deadline (a second
// member takes it), every write is applied exactly once (never sent to two members), the member is
// reported once as not answering and once as answering after SIGCONT. Real 3-member etcd; this also
// pins the etcd3 internals member-choice.ts builds on (a read that hangs would time out otherwise).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createEtcdClient, etcdCall } from '../../src/cluster/etcd/etcd-client.ts';
import { memberName } from '../../src/cluster/etcd/etcd-members.ts';
import { isRead } from '../../src/cluster/etcd/member-choice.ts';
import { waitFor } from '../helpers.ts';
import { type EtcdCluster, startEtcdCluster } from '../support/etcd-cluster.ts';

const CALL_TIMEOUT_MS = 500;
let etcd: EtcdCluster;
let stopped: number | null = null;

beforeAll(async () => {
  etcd = await startEtcdCluster();
}, 60_000);

afterEach(async () => {
  if (stopped !== null) await etcd.kill(stopped, 'SIGCONT');
  stopped = null;
});

afterAll(async () => {
  await etcd?.stop();
});

describe('member choice', () => {
  it('knows a read from a write', () => {
    expect(isRead('KV', 'range', {})).toBe(true);
    expect(isRead('KV', 'txn', { compare: [], success: [{ request_range: {} }], failure: [] })).toBe(true);
    expect(isRead('KV', 'txn', { success: [{ request_range: {} }, { request_put: {} }] })).toBe(false);
    expect(isRead('KV', 'txn', { success: [], failure: [{ request_delete_range: {} }] })).toBe(false);
    expect(isRead('KV', 'put', {})).toBe(false);
    expect(isRead('Lease', 'leaseGrant', {})).toBe(false);
  });

  it('a hung member: reads answered in time, writes applied once, reported once and used again', async () => {
    const leader = await waitFor('an etcd raft leader', async () => {
      const i = await etcd.leader();
      return i === null ? null : { i };
    });
    const member = (leader.i + 1) % etcd.clientUrls.length;
    const name = memberName(etcd.clientUrls[member]!);
    const states: string[] = [];
    const client = createEtcdClient({
      ...etcd.clientOptions(),
      callTimeoutMs: CALL_TIMEOUT_MS,
      onMemberState: (m, answering) => states.push(`${m} ${answering}`),
    });
    try {
      const key = `member-choice/${Date.now()}`;
      const get = () =>
        etcdCall('read', CALL_TIMEOUT_MS, undefined, (o) => client.get(key).options(o).exec());
      const put = (v: string) =>
        etcdCall('write', CALL_TIMEOUT_MS, undefined, (o) => client.put(key).value(v).options(o).exec());
      await put('0');
      await etcd.kill(member, 'SIGSTOP');
      stopped = member;
      // Reads first, until the member is reported (its probes fail at 1 s and 3 s after the first
      // fault): every one answered in time, and the writes after them go elsewhere.
      const readFailures: string[] = [];
      const t0 = performance.now();
      let reads = 0;
      for (; states.length === 0 && performance.now() - t0 < 15_000; reads++) {
        await get().catch((err: Error) => readFailures.push(err.message));
        await new Promise((r) => setTimeout(r, 20));
      }
      expect({ readFailures, states }).toEqual({ readFailures: [], states: [`${name} false`] });
      expect(reads).toBeGreaterThan(20);
      const writeFailures: string[] = [];
      for (let i = 1; i <= 30; i++)
        await put(String(i)).catch((err: Error) => writeFailures.push(err.message));
      expect(writeFailures).toEqual([]);
      // Each put applied once: the key's version counts applied puts (the first one included).
      const kv = (await client.getAll().prefix(key).exec()).kvs[0];
      expect(Number(kv?.version)).toBe(31);
      expect(states).toEqual([`${name} false`]);

      await etcd.kill(member, 'SIGCONT');
      stopped = null;
      await waitFor(
        `${name} answering again`,
        async () => {
          await get();
          return states.at(-1) === `${name} true`;
        },
        { timeoutMs: 20_000, intervalMs: 100 },
      );
      expect(states).toEqual([`${name} false`, `${name} true`]);
    } finally {
      client.close();
    }
  }, 60_000);
});
