// Alarm records and index keys written by someone else (any holder of etcd credentials), against a
// real etcd: nothing they write may fail the list, hide a real alarm, or make one read as
// acknowledged, shelved or less severe than it is. Also the operator's side through the API with
// auth: the same acknowledgement sent to two nodes at once, a viewer's attempt, an unshelve of an
// alarm that is over.
import type { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { alarmId, conditionKey, raisedAlarm, type StoredAlarm } from '../../src/alarms/alarm.ts';
import { AlarmEngine, REVERIFY_MS } from '../../src/alarms/alarm-engine.ts';
import { AlarmStore } from '../../src/alarms/alarm-store.ts';
import { buildApp } from '../../src/api/app.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { loadSite } from '../../src/config/load-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { wireJson } from '../../src/version.ts';
import { useEtcdFixture } from '../cluster/harness.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { apiAuth } from '../support/api-auth.ts';
import { MemoryKv } from '../support/memory-kv.ts';
import { driverOf, leadershipOf } from './stand-ins.ts';

const fx = useEtcdFixture('alarms-hostile');
const site: Site = await loadSite('config/demo-site.yaml');
const GROUP = site.controlGroups[0]!.id;
const UNIT = site.controlGroups[0]!.airHandlers[0]!;
const clients: Etcd3[] = [];
const stops: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const s of stops.splice(0)) await s();
  for (const c of clients.splice(0)) c.close();
});

/** One node: its alarm store and engine on the real etcd, and its API with auth (users shared through `kv`). */
async function node(
  name: string,
  prefix: string,
  kv: MemoryKv,
  o: { leads?: string[]; unit?: { mode: string }; monoNow?: () => number; lines?: string[] } = {},
) {
  const client = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 2000 });
  clients.push(client);
  const registry = new Registry();
  const logger = o.lines ? pino({ level: 'info' }, { write: (s: string) => o.lines!.push(s) }) : quietLogger;
  const store = new AlarmStore({ client, prefix, callTimeoutMs: 2000, logger, registry });
  const leadership = leadershipOf(site, name, {
    healthy: true,
    leads: new Set(o.leads ?? []),
    members: [name],
  });
  const engine = new AlarmEngine({
    node: name,
    store,
    leadership,
    drivers: new Map([[GROUP, driverOf(UNIT, o.unit ?? { mode: 'remote' })]]),
    devices: new Map([[UNIT, { linkState: 'up' } as unknown as DeviceIo]]),
    sensors: () => undefined,
    config: () => ({ site, nodes: [name] }),
    ...(o.monoNow ? { monoNow: o.monoNow } : {}),
    logger,
    registry,
  });
  const auth = await apiAuth(registry, quietLogger, kv);
  const app = await buildApp({
    auth: auth.auth,
    node: name,
    version: '0.1.0',
    leadership,
    registry,
    groups: site.controlGroups.map((g) => g.id),
    drivers: new Map(),
    logger: quietLogger,
    startedAtMs: Date.now(),
    site,
    audit: auth.audit,
    alarms: engine,
  });
  stops.push(async () => {
    await engine.stop();
    await app.close();
    await auth.auth.stop();
  });
  const list = async (state = 'all') => {
    const r = await app.inject({ url: `/api/v1/alarms?state=${state}`, headers: auth.as('viewer') });
    return {
      status: r.statusCode,
      alarms: (r.json() as { alarms?: Record<string, unknown>[] }).alarms ?? [],
    };
  };
  const post = (url: string, body: object, role: 'viewer' | 'operator' = 'operator') =>
    app.inject({
      method: 'POST',
      url,
      headers: { ...auth.as(role), 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    });
  const metric = async (name: string) => {
    const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${name} `));
    return Number(line?.split(' ')[1]);
  };
  return { client, store, engine, app, auth, registry, list, post, metric };
}

let seq = 0;
// Under /coolctl/: the prefix a secured test etcd lets its user reach (COOLCTL_TEST_LINKS=secure).
const freshPrefix = () => `/coolctl/alarms-hostile-${process.pid}-${++seq}`;

/** A dew-point alarm's record as a node would write it, for the subject `subject`. */
function dewPoint(subject: string, atMs: number): StoredAlarm {
  return raisedAlarm(
    { kind: 'dew-point', group: GROUP, subject, message: `dew point at ${subject}`, value: 16 },
    'n1',
    atMs,
  );
}

describe('alarm records written by someone else', () => {
  it('times with no ISO form, impossible shelves, a lowered severity, a record naming another condition: the list still answers, nothing reads acknowledged or shelved', async () => {
    const prefix = freshPrefix();
    const n = await node('n1', prefix, new MemoryKv());
    const now = Date.now();
    const real = raisedAlarm(
      { kind: 'unit-tripped', group: GROUP, subject: UNIT, message: 'tripped', value: null },
      'n1',
      now,
    );
    await n.store.raise(real, conditionKey('unit-tripped', GROUP, UNIT));
    const put = (a: StoredAlarm, over: Record<string, unknown>) =>
      n.client.put(`${prefix}/alarms/${a.id}`).value(wireJson({ ...a, ...over }));
    const ackFar = dewPoint('R01', now - 1000);
    await put(ackFar, { ack: { user: 'eve', atMs: 9e15, comment: 'not me' } });
    const shelfForever = dewPoint('R02', now - 2000);
    await put(shelfForever, { shelf: { untilMs: 8e15, user: 'eve', atMs: now, comment: '' } });
    const shelfHuge = dewPoint('R03', now - 3000);
    await put(shelfHuge, { shelf: { untilMs: 1e300, user: 'eve', atMs: 0, comment: '' } });
    const shelfBackwards = dewPoint('R04', now - 4000);
    await put(shelfBackwards, { shelf: { untilMs: now - 10_000, user: 'eve', atMs: now, comment: '' } });
    const lowered = raisedAlarm(
      { kind: 'inlet-allowable', group: GROUP, subject: 'R05', message: 'rack R05 at 35 °C', value: 35 },
      'n1',
      now - 5000,
    );
    await put(lowered, { severity: 'warning' });
    // Not an alarm at all: a raise time with no ISO form; a record whose kind and group are not its key's.
    const raisedFar = dewPoint('R06', now - 6000);
    await put(raisedFar, { raisedAtMs: 9e15 });
    const elsewhere = dewPoint('R07', now - 7000);
    await put(elsewhere, { kind: 'node-down', group: null, severity: 'minor' });

    const { status, alarms } = await n.list();
    expect(status).toBe(200);
    const byId = new Map(alarms.map((a) => [a.id, a]));
    expect(byId.get(real.id)).toMatchObject({ state: 'raised', severity: 'major' });
    expect(byId.get(ackFar.id)).toMatchObject({ state: 'raised', ack: null });
    for (const a of [shelfForever, shelfHuge, shelfBackwards])
      expect(byId.get(a.id)?.shelvedUntil).toBeNull();
    expect(byId.get(lowered.id)).toMatchObject({ kind: 'inlet-allowable', severity: 'critical' });
    expect(byId.has(raisedFar.id)).toBe(false);
    expect(byId.has(elsewhere.id)).toBe(false);
    expect(alarms).toHaveLength(6);
    // Each counted once, however often it is read.
    await n.list();
    expect(await n.metric('coolctl_alarm_values_invalid_total')).toBe(7);
    // An operator's action on one of them writes the truth back: the real acknowledgement, once.
    const acked = await n.post(`/api/v1/alarms/${ackFar.id}/ack`, { comment: 'mine' });
    expect(acked.statusCode).toBe(200);
    expect(acked.json().alarm.ack).toMatchObject({ user: 'operator', comment: 'mine' });
  });

  it('a checked open alarm whose record is deleted or written over is raised again, not hidden while its condition lasts', async () => {
    const prefix = freshPrefix();
    let mono = 0;
    const n = await node('n1', prefix, new MemoryKv(), {
      leads: [GROUP],
      unit: { mode: 'tripped' },
      monoNow: () => mono,
    });
    const tripKey = conditionKey('unit-tripped', GROUP, UNIT);
    const open = async () => (await n.list('active')).alarms.filter((a) => a.kind === 'unit-tripped');
    for (let i = 0; i < 2; i++) {
      await n.engine.evaluate();
      mono += 1000;
    }
    const first = await open();
    expect(first).toHaveLength(1);
    await n.client.put(`${prefix}/alarms/${first[0]!.id}`).value('{"v":1,"id":"junk"}');
    // The list is read from etcd at most once a second for every reader: within a second, then.
    await waitFor('the written-over record no longer listed', async () => (await open()).length === 0);
    mono += REVERIFY_MS;
    for (let i = 0; i < 3; i++) {
      await n.engine.evaluate();
      mono += 1000;
    }
    const second = await waitFor('raised again, as a new alarm', async () => {
      const a = await open();
      return a.length === 1 && a[0]!.id !== first[0]!.id ? a : null;
    });
    // Deleted outright: the same.
    await n.client.delete().key(`${prefix}/alarms/${second[0]!.id}`);
    mono += REVERIFY_MS;
    for (let i = 0; i < 3; i++) {
      await n.engine.evaluate();
      mono += 1000;
    }
    const third = await waitFor('raised again after the delete', async () => {
      const a = await open();
      return a.length === 1 && a[0]!.id !== second[0]!.id ? a : null;
    });
    expect((await n.store.index()).open.get(tripKey)).toBe(third[0]!.id);
  });

  it('thousands of junk records and index keys: evaluations go on, the real alarm is listed, each value counted once', async () => {
    const prefix = freshPrefix();
    const n = await node('n1', prefix, new MemoryKv());
    const real = raisedAlarm(
      { kind: 'node-down', group: null, subject: 'n9', message: 'n9 down', value: null },
      'n1',
      Date.now(),
    );
    await n.store.raise(real, conditionKey('node-down', null, 'n9'));
    const JUNK = 1500;
    for (let from = 0; from < JUNK; from += 100) {
      const ops = [];
      for (let i = from; i < from + 100; i++)
        ops.push(
          n.client.put(`${prefix}/alarms/junk-${i}`).value(i % 2 ? 'not json' : '{"v":1}'),
          n.client.put(`${prefix}/alarms-open/junk~${i}`).value(`junk-${i}`),
          n.client.put(`${prefix}/alarms-shelved/junk-${i}`).value('never'),
        );
      await Promise.all(ops.map((o) => o.exec()));
    }
    for (let i = 0; i < 3; i++) await n.engine.evaluate();
    expect(await n.metric('coolctl_alarm_evaluations_total{result="failed"}')).toBe(0);
    const { status, alarms } = await n.list();
    expect(status).toBe(200);
    expect(alarms.map((a) => a.id)).toEqual([real.id]);
    await n.list();
    expect(await n.metric('coolctl_alarm_values_invalid_total')).toBe(JUNK);
  });
});

describe('operators through the API, on two nodes', () => {
  it('one acknowledgement sent to two nodes at once: one stays, one transition, an audit line for each request', async () => {
    const prefix = freshPrefix();
    const kv = new MemoryKv();
    const a = await node('n1', prefix, kv);
    const b = await node('n2', prefix, kv);
    const alarm = dewPoint('R01', Date.now());
    await a.store.raise(alarm, conditionKey('dew-point', GROUP, 'R01'));
    const url = `/api/v1/alarms/${alarm.id}/ack`;
    const [ra, rb] = await Promise.all([
      a.post(url, { comment: 'from a' }),
      b.post(url, { comment: 'from b' }),
    ]);
    expect([ra.statusCode, rb.statusCode]).toEqual([200, 200]);
    // Both answer the acknowledgement that stayed, and every node lists that one.
    expect(rb.json().alarm.ack).toEqual(ra.json().alarm.ack);
    expect((await b.list()).alarms[0]!.ack).toEqual(ra.json().alarm.ack);
    const acks = async (n: typeof a) =>
      n.metric('coolctl_alarm_transitions_total{kind="dew-point",transition="acknowledged"}');
    expect((await acks(a)) + (await acks(b))).toBe(1);
    const trail = (await a.auth.audit.list()).entries.filter((e) => 'action' in e && e.action === 'ack');
    expect(trail.map((e) => ('status' in e ? [e.node, e.status, e.user] : null)).sort()).toEqual([
      ['n1', 200, 'operator'],
      ['n2', 200, 'operator'],
    ]);
    // A viewer may not: refused with its code, counted, and not in the trail.
    const v = await a.post(`/api/v1/alarms/${alarm.id}/shelve`, { durationS: 600 }, 'viewer');
    expect(v.statusCode).toBe(403);
    expect(v.json().error).toBe('COOLCTL_E_FORBIDDEN');
    expect(await a.metric('coolctl_api_auth_failures_total{reason="forbidden"}')).toBe(1);
    expect(
      (await a.auth.audit.list()).entries.filter((e) => 'action' in e && e.action === 'shelve'),
    ).toHaveLength(0);
  });

  it('an alarm shelved, then cleared and raised again: the new one is not shelved; unshelving the cleared one changes nothing and notifies nothing', async () => {
    const prefix = freshPrefix();
    const n = await node('n1', prefix, new MemoryKv());
    const key = conditionKey('dew-point', GROUP, 'R01');
    const t0 = Date.now() - 10_000;
    const first = dewPoint('R01', t0);
    await n.store.raise(first, key);
    expect((await n.post(`/api/v1/alarms/${first.id}/shelve`, { durationS: 3600 })).statusCode).toBe(200);
    await n.store.clear(key, first.id, { atMs: t0 + 1000, by: 'n1', reason: 'dew point back' });
    const again = dewPoint('R01', t0 + 2000);
    expect(again.id).toBe(alarmId(key, t0 + 2000));
    expect(await n.store.raise(again, key)).toBe(true);
    const listed = new Map((await n.list()).alarms.map((a) => [a.id, a]));
    expect(listed.get(first.id)).toMatchObject({ state: 'cleared', shelvedUntil: null });
    expect(listed.get(again.id)).toMatchObject({ state: 'raised', shelvedUntil: null });
    expect((await n.store.index()).shelved.size).toBe(0);
    const un = await n.post(`/api/v1/alarms/${first.id}/unshelve`, {});
    expect(un.statusCode).toBe(200);
    expect(un.json().alarm).toMatchObject({ state: 'cleared', shelvedUntil: null });
    expect(await n.metric('coolctl_alarm_transitions_total{kind="dew-point",transition="unshelved"}')).toBe(
      0,
    );
    // Acknowledging it is still taken (docs/alarms.md: who saw it, after it cleared).
    const ack = await n.post(`/api/v1/alarms/${first.id}/ack`, {});
    expect(ack.json().alarm).toMatchObject({ state: 'cleared', ack: { user: 'operator' } });
  });
});
