// A prefix others can write holding values too large to be records, on a real 3-member etcd: every
// listing of it returns the records beside them, and the first one learns which values are too
// large, so that a listing after it (an auth resync after each watch restart) does not move those
// megabytes again while their keys are unchanged. A key rewritten small is read again; one deleted
// is forgotten; a prefix whose values fit one message is read in one call, as always.
import { afterAll, describe, expect, it } from 'vitest';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { EtcdPrefixKv, type KvEntry } from '../../src/cluster/etcd/prefix-kv.ts';
import { useEtcdFixture } from './harness.ts';

const fx = useEtcdFixture('prefix-kv-oversized');
const closers: (() => void)[] = [];
afterAll(() => {
  for (const c of closers) c();
});

/** A real client whose range calls are counted, with the value bytes each answer carried. */
function countedClient() {
  const client = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 5_000 });
  closers.push(() => client.close());
  const seen = { calls: 0, valueBytes: 0 };
  const range = client.kv.range.bind(client.kv);
  client.kv.range = (async (...args: Parameters<typeof range>) => {
    seen.calls++;
    const res = await range(...args);
    for (const kv of res.kvs) seen.valueBytes += kv.value.length;
    return res;
  }) as typeof range;
  const kv = new EtcdPrefixKv(client, 5_000, { newClient: () => client });
  return { client, kv, seen };
}

const shape = (entries: KvEntry[]) =>
  entries.map((e) => `${e.key.replace(/^.*\//, '')}:${e.oversizedBytes ?? e.value.length}`);

describe('listing a prefix with values too large to be records', () => {
  it('moves their megabytes once, not at every listing, and still returns every record beside them', async () => {
    const prefix = '/coolctl-test/prefix-kv-oversized/a/';
    const { client, kv, seen } = countedClient();
    const huge = 'x'.repeat(1_400_000);
    // Four values too large together for one gRPC message, among 60 ordinary records.
    for (let i = 0; i < 60; i++)
      await client.put(`${prefix}rec-${String(i).padStart(2, '0')}`).value(`{"i":${i}}`);
    for (let i = 0; i < 4; i++) await client.put(`${prefix}rec-${i * 15}-huge`).value(huge);

    const first = await kv.list(prefix);
    expect(first).toHaveLength(64);
    expect(first.filter((e) => e.oversizedBytes === 1_400_000)).toHaveLength(4);
    expect(seen.valueBytes).toBeGreaterThan(4 * 1_400_000);

    seen.calls = 0;
    seen.valueBytes = 0;
    const second = await kv.list(prefix);
    expect(shape(second)).toEqual(shape(first));
    expect(second.map((e) => e.value)).toEqual(first.map((e) => e.value));
    // The keys, then the runs between the four: no huge value read again.
    expect(seen.valueBytes).toBeLessThan(10_000);
    expect(seen.calls).toBeLessThanOrEqual(6);

    // Rewritten small, a key is a record again; deleted, it is gone.
    await client.put(`${prefix}rec-0-huge`).value('{"small":true}');
    await client.delete().key(`${prefix}rec-15-huge`).exec();
    const third = await kv.list(prefix);
    expect(third).toHaveLength(63);
    expect(third.find((e) => e.key.endsWith('rec-0-huge'))).toMatchObject({ value: '{"small":true}' });
    expect(third.filter((e) => e.oversizedBytes !== undefined)).toHaveLength(2);
    // In create-revision order, as always: the rewritten key keeps its place.
    expect(third.map((e) => e.createRevision)).toEqual(
      [...third.map((e) => e.createRevision)].sort((a, b) => a - b),
    );
  }, 60_000);

  it('reads a prefix whose values fit one message in one call, an oversized value among them included', async () => {
    const prefix = '/coolctl-test/prefix-kv-oversized/b/';
    const { client, kv, seen } = countedClient();
    for (let i = 0; i < 10; i++) await client.put(`${prefix}r${i}`).value(`{"i":${i}}`);
    await client.put(`${prefix}big`).value('y'.repeat(100_000));
    for (let round = 0; round < 2; round++) {
      seen.calls = 0;
      const all = await kv.list(prefix);
      expect(all).toHaveLength(11);
      expect(all.find((e) => e.key.endsWith('big'))).toMatchObject({ value: '', oversizedBytes: 100_000 });
      expect(seen.calls).toBe(1);
    }
  }, 30_000);
});
