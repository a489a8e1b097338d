// The alarm list is read every second by each open dashboard, and at full size it holds thousands
// of alarms: records whose revision did not move are not read again, nor made into the API's alarm
// again. What a reader sees must still be what etcd holds at that moment: a record written over by
// another node, junk written over a record, a record deleted, a shelf that ran out with no write.
import type { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import {
  acknowledged,
  conditionKey,
  listAlarms,
  raisedAlarm,
  type StoredAlarm,
  shelvedFor,
} from '../../src/alarms/alarm.ts';
import { AlarmStore } from '../../src/alarms/alarm-store.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { wireJson } from '../../src/version.ts';
import { useEtcdFixture } from '../cluster/harness.ts';

const fx = useEtcdFixture('alarms-list-reuse');
const clients: Etcd3[] = [];
afterAll(() => {
  for (const c of clients.splice(0)) c.close();
});

let seq = 0;
// Under /coolctl/: the prefix a secured test etcd lets its user reach (COOLCTL_TEST_LINKS=secure).
const freshPrefix = () => `/coolctl/alarms-reuse-${process.pid}-${++seq}`;

const rackAlarm = (rack: string, atMs: number): StoredAlarm =>
  raisedAlarm(
    { kind: 'inlet-recommended', group: 'G1', subject: rack, message: `rack ${rack} at 28 °C`, value: 28 },
    'n1',
    atMs,
  );

function storeOn(prefix: string, lines: string[]) {
  const client = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 2000 });
  clients.push(client);
  const registry = new Registry();
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
  return {
    client,
    registry,
    store: new AlarmStore({ client, prefix, callTimeoutMs: 2000, logger, registry }),
  };
}

const invalidCount = async (registry: Registry) =>
  Number(
    (await registry.metrics())
      .split('\n')
      .find((l) => l.startsWith('coolctl_alarm_values_invalid_total '))
      ?.split(' ')[1],
  );

describe('the alarm list read again and again', () => {
  it('shows each write by another node, junk written over a record, a deletion; unchanged records are the same objects', async () => {
    const prefix = freshPrefix();
    const lines: string[] = [];
    const { client, registry, store } = storeOn(prefix, lines);
    const now = Date.now();
    const raised = Array.from({ length: 50 }, (_, i) => rackAlarm(`R${i}`, now - i));
    expect(
      await store.raiseMany(
        raised.map((a) => ({ alarm: a, condition: conditionKey(a.kind, a.group, a.subject) })),
      ),
    ).toHaveLength(50);

    const first = await store.list();
    const second = await store.list();
    expect(second.map((a) => a.id)).toEqual(first.map((a) => a.id));
    for (let i = 0; i < first.length; i++) expect(second[i]).toBe(first[i]);

    // Another node acknowledges one, junk lands on another, a third is deleted.
    const [acked, junked, deleted] = [raised[3]!, raised[7]!, raised[11]!];
    await client.put(`${prefix}/alarms/${acked.id}`).value(wireJson(acknowledged(acked, 'ana', 'seen', now)));
    await client.put(`${prefix}/alarms/${junked.id}`).value('not json');
    await client.delete().key(`${prefix}/alarms/${deleted.id}`);
    const third = await store.list();
    const byId = new Map(third.map((a) => [a.id, a]));
    expect(third).toHaveLength(48);
    expect(byId.get(acked.id)?.ack).toMatchObject({ user: 'ana', comment: 'seen' });
    expect(byId.has(junked.id)).toBe(false);
    expect(byId.has(deleted.id)).toBe(false);
    const before = new Map(second.map((a) => [a.id, a]));
    for (const a of third) if (a.id !== acked.id) expect(a).toBe(before.get(a.id));
    expect(await invalidCount(registry)).toBe(1);
    expect(lines.filter((l) => l.includes('stored alarm is not valid'))).toHaveLength(1);

    // Read again: the junk is counted once; written back valid, the record is listed again.
    await store.list();
    expect(await invalidCount(registry)).toBe(1);
    await client.put(`${prefix}/alarms/${junked.id}`).value(wireJson(junked));
    const fourth = await store.list();
    expect(fourth.find((a) => a.id === junked.id)).toEqual(junked);
    expect(fourth).toHaveLength(49);
  });

  it('the API alarm of an unchanged record is the same object until its shelf runs out, then shows no shelf', () => {
    const now = 1_800_000_000_000;
    const plain = rackAlarm('R1', now - 2000);
    const shelved = shelvedFor(rackAlarm('R2', now - 1000), 'ana', 600, 'maintenance', now);
    const stored = [plain, shelved];
    const a = listAlarms(stored, 'active', now + 1000);
    const b = listAlarms(stored, 'active', now + 2000);
    expect(b[0]).toBe(a[0]);
    expect(b[1]).toBe(a[1]);
    expect(a.find((x) => x.id === shelved.id)?.shelvedUntil).toBe(new Date(now + 600_000).toISOString());
    // No write, only time: the shelf is over, and the list says so.
    const c = listAlarms(stored, 'active', now + 601_000);
    expect(c.find((x) => x.id === shelved.id)?.shelvedUntil).toBeNull();
    expect(c.find((x) => x.id === plain.id)).toBe(a.find((x) => x.id === plain.id));
    // A changed record (acknowledged: a new object) gets a new alarm with the change.
    const ack = acknowledged(plain, 'ana', 'seen', now);
    const d = listAlarms([ack, shelved], 'all', now + 601_000);
    expect(d.find((x) => x.id === plain.id)).toMatchObject({ state: 'acknowledged', ack: { user: 'ana' } });
  });
});
