// The alarm engine and its store against a real etcd cluster, with the leadership and the group's
// loop stood in for (the real ones run in test/alarms/alarms-hall.test.ts): two nodes that both
// believe they lead a group at the same moment raise its condition once, and only the winner
// notifies; a clear closes it and a return is a new alarm; a malformed stored value is skipped,
// counted and logged once, never a crash; etcd-quorum-lost is kept on the node and recorded, with
// its acknowledgement, once etcd answers again; retention prunes cleared alarms only; a shelf that
// runs out while the condition holds ends once, on time, on whichever node leads the group then;
// an open record no open key names (a hand-deleted key, a partial restore) is closed by the cluster
// owner rather than shown active for good; the owner re-sends, and closes, thousands of open alarms in a few round trips to etcd, not one each;
// an open alarm's text follows its condition (more racks unwatched, some back), acknowledged or
// not, without a new notification and with at most one write per TEXT_REVISE_MS.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Etcd3 } from 'etcd3';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { startBroker } from '../../firmware-sim/mesh/broker.ts';
import { conditionKey, raisedAlarm, shelvedFor } from '../../src/alarms/alarm.ts';
import { AlarmEngine, TEXT_REVISE_MS } from '../../src/alarms/alarm-engine.ts';
import { AlarmStore, RAISE_BATCH, READ_BATCH } from '../../src/alarms/alarm-store.ts';
import { Notifier } from '../../src/alarms/notify.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { loadSite } from '../../src/config/load-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { useEtcdFixture } from '../cluster/harness.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { reportNodes } from '../support/sensor-reports.ts';
import { driverOf, leadershipOf, type Said } from './stand-ins.ts';

const fx = useEtcdFixture('alarms-engine');
const site: Site = await loadSite('config/demo-site.yaml');
const GROUP = site.controlGroups[0]!.id;
const UNIT = site.controlGroups[0]!.airHandlers[0]!;
const clients: Etcd3[] = [];
const stops: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const s of stops.splice(0)) await s();
  for (const c of clients.splice(0)) c.close();
});

function node(
  name: string,
  prefix: string,
  said: Said,
  unit: { mode: string },
  opts: {
    notifier?: Notifier;
    logger?: pino.Logger;
    site?: Site;
    wallNow?: () => number;
    monoNow?: () => number;
    resendMs?: () => number;
    sensors?: SensorStore;
  } = {},
) {
  const client = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 2000 });
  clients.push(client);
  const registry = new Registry();
  const logger = opts.logger ?? quietLogger;
  const store = new AlarmStore({ client, prefix, callTimeoutMs: 2000, logger, registry });
  const devices = new Map([[UNIT, { linkState: 'up' } as unknown as DeviceIo]]);
  const engine = new AlarmEngine({
    node: name,
    store,
    leadership: leadershipOf(site, name, said),
    drivers: new Map([[GROUP, driverOf(UNIT, unit)]]),
    devices,
    sensors: () => opts.sensors,
    config: () => ({ site: opts.site ?? site, nodes: ['n1', 'n2'] }),
    ...(opts.notifier ? { notifier: () => opts.notifier } : {}),
    ...(opts.wallNow ? { wallNow: opts.wallNow } : {}),
    ...(opts.monoNow ? { monoNow: opts.monoNow } : {}),
    ...(opts.resendMs ? { resendMs: opts.resendMs } : {}),
    logger,
    registry,
  });
  stops.push(() => engine.stop());
  return { engine, store, registry, client };
}

let seq = 0;
// Under /coolctl/: the prefix a secured test etcd lets its user reach (COOLCTL_TEST_LINKS=secure).
const freshPrefix = () => `/coolctl/alarms-test-${process.pid}-${++seq}`;

/** An Alertmanager stand-in on loopback: every alert posted to it, in order. */
async function alertReceiver(): Promise<{ url: string; got: Record<string, unknown>[] }> {
  const got: Record<string, unknown>[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push(...(JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>[]));
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stops.push(() => new Promise((r) => server.close(r)));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v2/alerts`, got };
}

/**
 * One report from each of `nodes` per call, through the store's ingest as MQTT brings them: inlets
 * at `inletC(node)` (null: the node is silent) moving a little, as real sensors do (a value that
 * never moves is judged stuck), humidity at 45 %.
 */
function reporter(
  sensors: SensorStore,
  nodes: readonly string[],
  now: () => number,
  inletC: (node: string) => number | null,
): () => void {
  let seq = 0;
  return () => {
    seq++;
    reportNodes(
      sensors,
      site,
      nodes.filter((id) => inletC(id) !== null),
      (n, s) => (s.kind === 'humidity' ? 45 : inletC(n.id)! + (seq % 5) * 0.05),
      { seq, atMs: now() },
    );
  };
}

describe('alarm engine on etcd', () => {
  it('two nodes that both think they lead raise a trip once, and only the winner notifies', async () => {
    const got: unknown[] = [];
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        got.push(...(JSON.parse(Buffer.concat(chunks).toString()) as unknown[]));
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    stops.push(() => new Promise((r) => server.close(r)));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v2/alerts`;
    const prefix = freshPrefix();
    const unit = { mode: 'tripped' };
    const notifiers = ['n1', 'n2'].map((n) => {
      const x = new Notifier({
        logger: quietLogger,
        registry: new Registry(),
        site: 'demo',
        generatorUrl: `http://${n}/`,
        webhook: { url },
      });
      stops.push(() => x.stop());
      return x;
    });
    const a = node('n1', prefix, { healthy: true, leads: new Set([GROUP]), members: ['n1', 'n2'] }, unit, {
      notifier: notifiers[0]!,
    });
    const b = node('n2', prefix, { healthy: true, leads: new Set([GROUP]), members: ['n1', 'n2'] }, unit, {
      notifier: notifiers[1]!,
    });
    for (let i = 0; i < 5; i++) await Promise.all([a.engine.evaluate(), b.engine.evaluate()]);
    const open = (await a.engine.list('active')).filter((x) => x.kind === 'unit-tripped');
    expect(open).toHaveLength(1);
    expect(open[0]).toMatchObject({ group: GROUP, subject: UNIT, state: 'raised', severity: 'major' });
    expect(await b.engine.list('active')).toEqual(await a.engine.list('active'));
    await waitFor('the raise notified', () => got.length >= 1);
    // Both nodes' queues are empty: nothing else is on its way.
    await waitFor('queues empty', () => notifiers.every((n) => n.status().sinks[0]!.pending === 0));
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ labels: { alertname: 'unit-tripped', alarm_id: open[0]!.id } });

    // Acknowledged on n2, read on n1; then the unit runs again: cleared by a leader, once.
    await b.engine.acknowledge(open[0]!.id, 'op', 'reset it');
    expect((await a.engine.list('active'))[0]?.ack).toMatchObject({ user: 'op', comment: 'reset it' });
    unit.mode = 'remote';
    await Promise.all([a.engine.evaluate(), b.engine.evaluate()]);
    const all = await a.engine.list('all');
    expect(all.filter((x) => x.kind === 'unit-tripped')).toEqual([
      expect.objectContaining({
        id: open[0]!.id,
        state: 'cleared',
        ack: expect.objectContaining({ user: 'op' }),
      }),
    ]);
    // It comes back: a new alarm; the cleared one stays in the history.
    unit.mode = 'tripped';
    await Promise.all([a.engine.evaluate(), b.engine.evaluate()]);
    const again = (await b.engine.list('all')).filter((x) => x.kind === 'unit-tripped');
    expect(again.map((x) => x.state)).toEqual(['raised', 'cleared']);
    expect(again[0]!.id).not.toBe(open[0]!.id);
  });

  it('a malformed stored alarm or open key: skipped or dropped, counted once, logged once; evaluation goes on', async () => {
    const prefix = freshPrefix();
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
    const unit = { mode: 'tripped' };
    const n = node('n1', prefix, { healthy: true, leads: new Set([GROUP]), members: ['n1'] }, unit, {
      logger,
    });
    await n.client.put(`${prefix}/alarms/unit-tripped~${GROUP}~${UNIT}~bad`).value('{"v":1,"id":');
    await n.client
      .put(`${prefix}/alarms/node-down~-~n9~x1`)
      .value(JSON.stringify({ v: 1, id: 'node-down~-~n9~x1', kind: 'meltdown' }));
    // The trip's open key names an alarm that does not exist: dropped, then the trip is raised.
    await n.client.put(`${prefix}/alarms-open/unit-tripped~${GROUP}~${UNIT}`).value('unit-tripped~x~y~gone');
    await n.engine.evaluate();
    await n.engine.evaluate();
    const listed = await n.engine.list('all');
    expect(listed.map((x) => x.kind)).toEqual(['unit-tripped']);
    expect(await n.engine.list('all')).toHaveLength(1);
    expect(await n.registry.metrics()).toContain('coolctl_alarm_values_invalid_total 3');
    const bad = lines.filter((l) => l.includes('stored alarm is not valid'));
    expect(bad).toHaveLength(2);
    expect(lines.filter((l) => l.includes('open alarm key names no valid alarm'))).toHaveLength(1);
    expect(bad.join('\n')).toContain('bad or missing kind');
    expect(await n.registry.metrics()).toContain('coolctl_alarm_evaluations_total{result="ok"} 2');
    // A writer that keeps putting junk: each revision counted and logged once, and what the store
    // remembers stays one entry per key that is invalid now.
    const junk = `${prefix}/alarms/unit-tripped~${GROUP}~${UNIT}~bad`;
    for (let i = 0; i < 20; i++) {
      await n.client.put(junk).value(`{"v":1,"id":${i}`);
      await n.engine.list('all');
      await n.engine.list('all');
    }
    expect(await n.registry.metrics()).toContain('coolctl_alarm_values_invalid_total 23');
    expect(lines.filter((l) => l.includes('stored alarm is not valid'))).toHaveLength(22);
    expect(n.store.invalidKeysRemembered).toBe(2);
    // Deleted, or mended: forgotten.
    await n.client.delete().key(junk);
    await n.client.delete().key(`${prefix}/alarms/node-down~-~n9~x1`);
    await n.engine.list('all');
    expect(n.store.invalidKeysRemembered).toBe(0);
  });

  it('etcd out of reach: the node keeps its own alarm and records it, acknowledged, when etcd answers', async () => {
    const prefix = freshPrefix();
    const said: Said = { healthy: false, leads: new Set(), members: ['n1'] };
    const n = node(
      'n1',
      prefix,
      said,
      { mode: 'remote' },
      {
        site: { ...site, alarms: { delays: { etcdLostS: 0 } } },
      },
    );
    const other = node(
      'n2',
      prefix,
      { healthy: true, leads: new Set(), members: ['n1'] },
      { mode: 'remote' },
    );
    await n.engine.evaluate();
    const local = (await n.engine.list('active')).filter((x) => x.kind === 'etcd-quorum-lost');
    expect(local).toEqual([
      expect.objectContaining({ subject: 'n1', state: 'raised', severity: 'critical' }),
    ]);
    expect(await other.engine.list('all')).toEqual([]); // not in etcd: it could not be written
    await n.engine.acknowledge(local[0]!.id, 'op', 'etcd members restarting');
    said.healthy = true;
    await n.engine.evaluate();
    const recorded = await other.engine.list('all');
    expect(recorded).toEqual([
      expect.objectContaining({
        id: local[0]!.id,
        kind: 'etcd-quorum-lost',
        state: 'cleared',
        ack: expect.objectContaining({ user: 'op', comment: 'etcd members restarting' }),
      }),
    ]);
    expect(await n.engine.list('all')).toEqual(recorded);
  });

  it('retention prunes cleared alarms, never open ones', async () => {
    const prefix = freshPrefix();
    const unit = { mode: 'tripped' };
    const n = node('n1', prefix, { healthy: true, leads: new Set([GROUP]), members: ['n1'] }, unit);
    for (let i = 0; i < 3; i++) {
      unit.mode = 'tripped';
      await n.engine.evaluate();
      unit.mode = 'remote';
      await n.engine.evaluate();
      await new Promise((r) => setImmediate(r));
    }
    unit.mode = 'tripped';
    await n.engine.evaluate();
    const before = await n.engine.list('all');
    expect(before.map((x) => x.state)).toEqual(['raised', 'cleared', 'cleared', 'cleared']);
    expect(await n.store.prune({ clearedMaxAgeMs: 86_400_000, clearedMaxCount: 10 }, Date.now())).toBe(0);
    expect(await n.store.prune({ clearedMaxAgeMs: 86_400_000, clearedMaxCount: 1 }, Date.now())).toBe(2);
    expect((await n.engine.list('all')).map((x) => x.state)).toEqual(['raised', 'cleared']);
    expect(await n.store.prune({ clearedMaxAgeMs: 0, clearedMaxCount: 10 }, Date.now() + 1)).toBe(1);
    expect((await n.engine.list('all')).map((x) => x.id)).toEqual([before[0]!.id]);
  });

  it('a shelf that runs out while the trip holds ends once, on time, on the group’s leader after a failover', async () => {
    const receiver = await alertReceiver();
    const broker = await startBroker({ host: '127.0.0.1', port: 0 });
    stops.push(() => broker.close());
    const sub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    stops.push(() => sub.endAsync());
    const published: { transition: string; alarm: { id: string; shelvedUntil: string | null } }[] = [];
    sub.on('message', (_t, p) => published.push(JSON.parse(p.toString())));
    await sub.subscribeAsync('site/alarms', { qos: 1 });
    const notifiers: Notifier[] = [];
    const notifierOf = (name: string) => {
      const x = new Notifier({
        logger: quietLogger,
        registry: new Registry(),
        site: 'demo',
        generatorUrl: `http://${name}/`,
        webhook: { url: receiver.url },
        mqtt: { url: broker.url, topic: 'site/alarms', clientId: `coolctl-${name}-alarms-${seq}` },
        backoffMs: 50,
      });
      notifiers.push(x);
      stops.push(() => x.stop());
      return x;
    };
    const settled = () =>
      waitFor('notification queues empty', () =>
        notifiers.every((n) => n.status().sinks.every((s) => s.pending === 0)),
      );
    const transitions = () => published.map((p) => p.transition);
    // One clock for both nodes, wall and monotonic alike, moved by the test: a minute's shelf ends
    // without a minute's wait.
    let wall = Date.now();
    const wallNow = () => wall;
    const monoNow = () => wall;
    // Re-sends (every minute of that clock) are another test's: here each alert is a transition.
    const resendMs = () => Number.POSITIVE_INFINITY;
    const prefix = freshPrefix();
    const unit = { mode: 'tripped' };
    const saidA: Said = { healthy: true, leads: new Set([GROUP]), members: ['n1', 'n2'] };
    const saidB: Said = { healthy: true, leads: new Set(), members: ['n1', 'n2'] };
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const a = node('n1', prefix, saidA, unit, { notifier: notifierOf('n1'), wallNow, monoNow, resendMs });
    const b = node('n2', prefix, saidB, unit, {
      notifier: notifierOf('n2'),
      wallNow,
      monoNow,
      resendMs,
      logger,
    });
    await a.engine.evaluate();
    await b.engine.evaluate();
    const [trip] = await b.engine.list('active');
    expect(trip).toMatchObject({ kind: 'unit-tripped', state: 'raised', shelvedUntil: null });
    await waitFor('the raise sent', () => receiver.got.length === 1 && published.length === 1);

    // Shelved for a minute through n2, which does not lead the group: silence on the webhook.
    await b.engine.shelve(trip!.id, 'op', 60, 'known; reset at the next round');
    await waitFor('the shelve published', () => transitions().includes('shelved'));
    expect((await b.store.index()).shelved.get(trip!.id)).toBe(wall + 60_000);

    // n1, the leader that raised it, dies; n2 leads the group from now on.
    await a.engine.stop();
    saidA.leads.clear();
    saidA.members = saidB.members = ['n2'];
    saidB.leads.add(GROUP);
    wall += 59_999;
    await b.engine.evaluate();
    expect((await b.engine.list('active'))[0]!.shelvedUntil).not.toBeNull();
    await settled();
    expect(transitions()).toEqual(['raised', 'shelved']);

    wall += 1; // the shelf's end
    await b.engine.evaluate();
    // Active again in the API (the dashboard's list is this), and in etcd: no shelf, no index key.
    expect(await b.engine.list('active')).toEqual([
      expect.objectContaining({ id: trip!.id, state: 'raised', shelvedUntil: null }),
    ]);
    expect((await b.store.get(trip!.id))!.shelf).toBeNull();
    expect((await b.store.index()).shelved.size).toBe(0);
    await waitFor('the expiry sent', () => receiver.got.length === 2 && published.length === 3);
    // The webhook gets it firing again, as when it was raised; MQTT says why.
    const [raised, again] = receiver.got as {
      labels: unknown;
      annotations: { state: string };
      endsAt: string;
    }[];
    expect(again!.labels).toEqual(raised!.labels);
    expect(again!.annotations.state).toBe('raised');
    expect(Date.parse(again!.endsAt)).toBeGreaterThan(Date.now());
    expect(published[2]).toMatchObject({
      transition: 'shelf-expired',
      alarm: { id: trip!.id, shelvedUntil: null },
    });
    expect(lines.filter((l) => l.includes('alarm shelf expired'))).toHaveLength(1);
    expect(await b.registry.metrics()).toContain(
      'coolctl_alarm_transitions_total{kind="unit-tripped",transition="shelf-expired"} 1',
    );

    // Shelved again, and n1 back: both believe they lead the group as that shelf ends. One ends it.
    await b.engine.shelve(trip!.id, 'op', 60, 'again');
    const a2 = node('n1', prefix, { healthy: true, leads: new Set([GROUP]), members: ['n1', 'n2'] }, unit, {
      notifier: notifierOf('n1b'),
      wallNow,
      monoNow,
      resendMs,
    });
    saidB.members = ['n1', 'n2'];
    wall += 60_000;
    for (let i = 0; i < 3; i++) await Promise.all([a2.engine.evaluate(), b.engine.evaluate()]);
    await settled();
    expect(transitions()).toEqual(['raised', 'shelved', 'shelf-expired', 'shelved', 'shelf-expired']);
    expect(receiver.got).toHaveLength(3);

    // A shelved alarm that clears leaves no index key behind.
    await b.engine.shelve(trip!.id, 'op', 60, 'third time');
    unit.mode = 'remote';
    await b.engine.evaluate();
    expect((await b.engine.list('all'))[0]).toMatchObject({ id: trip!.id, state: 'cleared' });
    expect((await b.store.index()).shelved.size).toBe(0);
  });

  it('a hall that heats up raises its racks a batch to a transaction, each condition once', async () => {
    const prefix = freshPrefix();
    const n = node(
      'n1',
      prefix,
      { healthy: true, leads: new Set([GROUP]), members: ['n1'] },
      { mode: 'remote' },
    );
    const hot = (rack: string, by: string) => {
      const r = {
        kind: 'inlet-recommended' as const,
        group: GROUP,
        subject: rack,
        message: `rack ${rack} inlet 30.0 °C above the recommended 27 °C`,
        value: 30,
      };
      const condition = conditionKey(r.kind, r.group, r.subject);
      return { alarm: raisedAlarm(r, by, Date.now()), condition };
    };
    const revision = async () => Number((await n.client.get(`${prefix}/none`).exec()).header.revision);
    // Two batches' worth: two transactions, where one each made it ~1 800 in the scale bench's hall.
    const first = Array.from({ length: 2 * RAISE_BATCH }, (_, i) => hot(`R${i}`, 'n1'));
    const before = await revision();
    expect(await n.store.raiseMany(first)).toHaveLength(first.length);
    expect((await revision()) - before).toBe(2);
    expect((await n.store.index()).open.size).toBe(first.length);
    // Raised again: none of them opens twice.
    expect(await n.store.raiseMany(first.map((x) => hot(x.alarm.subject!, 'n1')))).toEqual([]);
    // Another node got one of the next racks first: the others are raised, that one stays its.
    const theirs = hot('S5', 'n2');
    expect(await n.store.raise(theirs.alarm, theirs.condition)).toBe(true);
    const next = Array.from({ length: 10 }, (_, i) => hot(`S${i}`, 'n1'));
    const raised = await n.store.raiseMany(next);
    expect(raised.map((a) => a.subject)).toEqual(next.map((x) => x.alarm.subject).filter((r) => r !== 'S5'));
    const { open } = await n.store.index();
    expect(open.get(theirs.condition)).toBe(theirs.alarm.id);
    expect(open.size).toBe(first.length + next.length);
  });

  it('the open index read every second sees every change another node makes, read whole only then', async () => {
    const prefix = freshPrefix();
    const said = { healthy: true, leads: new Set([GROUP]), members: ['n1', 'n2'] };
    const a = node('n1', prefix, said, { mode: 'remote' });
    const b = node('n2', prefix, said, { mode: 'remote' });
    const raise = async (rack: string) => {
      const r = {
        kind: 'inlet-recommended' as const,
        group: GROUP,
        subject: rack,
        message: 'hot',
        value: 30,
      };
      const alarm = raisedAlarm(r, 'n2', Date.now());
      expect(await b.store.raise(alarm, conditionKey(r.kind, r.group, r.subject))).toBe(true);
      return { alarm, condition: conditionKey(r.kind, r.group, r.subject) };
    };
    expect((await a.store.index()).open.size).toBe(0);
    const one = await raise('R1');
    const two = await raise('R2');
    expect([...(await a.store.index()).open.keys()].sort()).toEqual([one.condition, two.condition].sort());
    // Unchanged: the same answer, and a copy (the engine edits what it gets).
    const same = await a.store.index();
    same.open.clear();
    expect((await a.store.index()).open.size).toBe(2);
    // A clear alone deletes: the count falls.
    await b.store.clear(one.condition, one.alarm.id, { atMs: Date.now(), by: 'n2', reason: 'cool' });
    expect([...(await a.store.index()).open.keys()]).toEqual([two.condition]);
    // A shelf puts its index key.
    await b.store.update(two.alarm.id, (cur) => shelvedFor(cur, 'op', 600, 'known', Date.now()));
    expect((await a.store.index()).shelved.has(two.alarm.id)).toBe(true);
    // One key deleted and another put in one transaction: the count stays, the newest moves.
    const three = await raise('R3');
    expect((await a.store.index()).open.has(three.condition)).toBe(true);
    await b.client
      .if(b.store.openKey(three.condition), 'Create', '>', 0)
      .then(
        b.client.delete().key(b.store.openKey(three.condition)),
        b.client.put(b.store.openKey('inlet-recommended~x~R4')).value('id-4'),
      )
      .commit();
    const after = await a.store.index();
    expect(after.open.has(three.condition)).toBe(false);
    expect(after.open.get('inlet-recommended~x~R4')).toBe('id-4');
  });
  it('the owner re-sends 2 500 open alarms to the webhook in a few etcd round trips, skipping a bad one', async () => {
    const prefix = freshPrefix();
    const r = await alertReceiver();
    const notifier = new Notifier({
      logger: quietLogger,
      registry: new Registry(),
      site: 'demo',
      generatorUrl: 'http://x/',
      webhook: { url: r.url },
    });
    stops.push(() => notifier.stop());
    const n = node(
      'n1',
      prefix,
      { healthy: true, leads: new Set([GROUP]), members: ['n1'] },
      { mode: 'remote' },
      {
        notifier,
      },
    );
    const items = Array.from({ length: 2500 }, (_, i) => {
      const x = {
        kind: 'inlet-recommended' as const,
        group: GROUP,
        subject: `R${i}`,
        message: 'hot',
        value: 30,
      };
      return { alarm: raisedAlarm(x, 'n1', Date.now()), condition: conditionKey(x.kind, x.group, x.subject) };
    });
    expect(await n.store.raiseMany(items)).toHaveLength(items.length);
    await n.client.put(n.store.key(items[7]!.alarm.id)).value('{"v":1,"id":"trunc');
    const { open } = await n.store.index();
    const range = vi.spyOn(n.client.kv, 'range');
    const txn = vi.spyOn(n.client.kv, 'txn');
    const engine = n.engine as unknown as {
      resend(open: Map<string, string>, leads: Set<string>, owner: boolean, nowMs: number): Promise<void>;
    };
    await engine.resend(open, new Set([GROUP]), true, Number.MAX_SAFE_INTEGER);
    expect(range.mock.calls.length + txn.mock.calls.length).toBeLessThanOrEqual(Math.ceil(2500 / READ_BATCH));
    range.mockRestore();
    txn.mockRestore();
    await waitFor(
      'every good one re-sent',
      () => r.got.length === 2499 && notifier.status().sinks[0]!.pending === 0,
      {
        timeoutMs: 30_000,
      },
    );
    expect(await n.registry.metrics()).toContain('coolctl_alarm_values_invalid_total 1');
  }, 60_000);
  it('a group removed from the site: its 200 open alarms close a batch to a transaction, each once', async () => {
    const prefix = freshPrefix();
    const r = await alertReceiver();
    const notifier = new Notifier({
      logger: quietLogger,
      registry: new Registry(),
      site: 'demo',
      generatorUrl: 'http://x/',
      webhook: { url: r.url },
    });
    stops.push(() => notifier.stop());
    const n = node(
      'n1',
      prefix,
      { healthy: true, leads: new Set(), members: ['n1', 'n2'] },
      { mode: 'remote' },
      {
        notifier,
      },
    );
    const items = Array.from({ length: 200 }, (_, i) => {
      const x = {
        kind: 'inlet-recommended' as const,
        group: 'zone-gone',
        subject: `R${i}`,
        message: 'hot',
        value: 30,
      };
      return { alarm: raisedAlarm(x, 'n1', Date.now()), condition: conditionKey(x.kind, x.group, x.subject) };
    });
    expect(await n.store.raiseMany(items)).toHaveLength(items.length);
    // One shelved, one closed by another node meanwhile, one whose record went bad: each still ends right.
    await n.store.update(items[3]!.alarm.id, (cur) => shelvedFor(cur, 'op', 600, 'known', Date.now()));
    await n.store.clear(items[5]!.condition, items[5]!.alarm.id, {
      atMs: Date.now(),
      by: 'n2',
      reason: 'cool',
    });
    await n.client.put(n.store.key(items[9]!.alarm.id)).value('{"v":1');
    const range = vi.spyOn(n.client.kv, 'range');
    const txn = vi.spyOn(n.client.kv, 'txn');
    await n.engine.evaluate();
    const trips = range.mock.calls.length + txn.mock.calls.length;
    range.mockRestore();
    txn.mockRestore();
    expect(trips).toBeLessThan(60);
    const { open, shelved } = await n.store.index();
    expect(open.size).toBe(0);
    expect(shelved.size).toBe(0);
    const all = await n.engine.list('all');
    expect(all).toHaveLength(199);
    expect(all.every((a) => a.state === 'cleared')).toBe(true);
    expect(all.filter((a) => a.id !== items[5]!.alarm.id).every((a) => a.clearedAt !== null)).toBe(true);
    expect(await n.registry.metrics()).toContain(
      'coolctl_alarm_transitions_total{kind="inlet-recommended",transition="cleared"} 198',
    );
    await waitFor(
      'every clear sent',
      () => r.got.length === 198 && notifier.status().sinks[0]!.pending === 0,
    );
  }, 60_000);
  it('an open record no open key names is closed by the cluster owner, its ack kept; a live one stays', async () => {
    const prefix = freshPrefix();
    const n = node(
      'n1',
      prefix,
      { healthy: true, leads: new Set([GROUP]), members: ['n1'] },
      { mode: 'tripped' },
    );
    const hot = (rack: string) => {
      const x = {
        kind: 'inlet-recommended' as const,
        group: GROUP,
        subject: rack,
        message: 'hot',
        value: 30,
      };
      return { alarm: raisedAlarm(x, 'n1', Date.now()), condition: conditionKey(x.kind, x.group, x.subject) };
    };
    const ghost = hot('R-ghost');
    expect(await n.store.raiseMany([ghost])).toHaveLength(1);
    await n.engine.acknowledge(ghost.alarm.id, 'op', 'seen');
    // The open key deleted by hand (or never restored): nothing would close the record any more.
    await n.client.delete().key(n.store.openKey(ghost.condition));
    await n.engine.evaluate();
    const all = await n.engine.list('all');
    expect(all.find((a) => a.id === ghost.alarm.id)).toMatchObject({
      state: 'cleared',
      ack: expect.objectContaining({ user: 'op', comment: 'seen' }),
    });
    // The trip raised in the same evaluation has its open key: not an orphan.
    const trip = all.find((a) => a.kind === 'unit-tripped');
    expect(trip?.state).toBe('raised');
    expect(await n.registry.metrics()).toContain('coolctl_alarm_values_invalid_total 1');
  });

  it('an open key no node raises (a group alarm without a group, an etcd-quorum-lost) is closed by the cluster owner', async () => {
    const prefix = freshPrefix();
    const n = node('n1', prefix, { healthy: true, leads: new Set(), members: ['n1'] }, { mode: 'remote' });
    const forged = [
      { kind: 'unit-tripped' as const, group: null, subject: UNIT, message: 'forged', value: null },
      { kind: 'etcd-quorum-lost' as const, group: null, subject: 'n9', message: 'forged', value: null },
    ].map((x) => ({
      alarm: raisedAlarm(x, 'n9', Date.now()),
      condition: conditionKey(x.kind, x.group, x.subject),
    }));
    expect(await n.store.raiseMany(forged)).toHaveLength(2);
    await n.engine.evaluate();
    const all = await n.engine.list('all');
    for (const f of forged) expect(all.find((a) => a.id === f.alarm.id)?.state, f.condition).toBe('cleared');
    expect((await n.store.index()).open.size).toBe(0);
  });

  it('an open sensors-degraded alarm follows the racks it names: ack kept, no new notification, writes rate-bound', async () => {
    const prefix = freshPrefix();
    let now = 10_000_000;
    const sensors = new SensorStore(site, { now: () => now });
    const group = site.controlGroups[0]!;
    const nodeOf = (id: string) => site.sensorNodes.find((x) => x.id === id)!;
    const [first, second] = [group.sensorNodes[1]!, group.sensorNodes[2]!];
    const silent = new Set<string>();
    const round = reporter(
      sensors,
      group.sensorNodes,
      () => now,
      (id) => (silent.has(id) ? null : 22),
    );
    const sent: string[] = [];
    const notifier = {
      enabled: true,
      notify: (a: { kind: string }, t: string) => {
        if (a.kind === 'sensors-degraded') sent.push(t);
      },
      status: () => ({ sinks: [], failures: [] }),
      stop: async () => {},
    } as unknown as Notifier;
    const n = node(
      'n1',
      prefix,
      { healthy: true, leads: new Set([GROUP]), members: ['n1'] },
      { mode: 'remote' },
      {
        sensors,
        monoNow: () => now,
        notifier,
        resendMs: () => 3_600_000,
      },
    );
    /** `s` seconds of the hall: the nodes not silent report every 10 s, the engine runs every second. */
    const pass = async (s: number) => {
      for (let i = 0; i < s; i++) {
        if (i % 10 === 0) round();
        await n.engine.evaluate();
        now += 1000;
      }
    };
    const degraded = async () => (await n.engine.list('active')).find((a) => a.kind === 'sensors-degraded');
    const version = async (id: string) =>
      Number((await n.client.get(n.store.key(id)).exec()).kvs[0]!.version);
    const rack = (id: string) => nodeOf(id).rack;

    await pass(10);
    silent.add(first);
    await pass(75); // stale after 30 s, raised after 30 s more
    const raised = await degraded();
    expect(raised?.message).toBe(
      `group ${GROUP}: sensor trust degraded — 1 rack without a good inlet sensor: ${rack(first)}`,
    );
    await n.engine.acknowledge(raised!.id, 'op', 'on my way');
    const afterAck = await version(raised!.id);
    // Nothing changes for a minute: no write.
    await pass(60);
    expect(await version(raised!.id)).toBe(afterAck);
    // A second rack goes unwatched: within a check period the open alarm names both, still acknowledged.
    silent.add(second);
    await pass(31 + TEXT_REVISE_MS / 1000 + 1);
    const both = await degraded();
    expect(both).toMatchObject({
      id: raised!.id,
      state: 'acknowledged',
      ack: expect.objectContaining({ user: 'op', comment: 'on my way' }),
      message: `group ${GROUP}: sensor trust degraded — 2 racks without a good inlet sensor: ${[rack(first), rack(second)].sort().join(', ')}`,
    });
    expect(await version(raised!.id)).toBe(afterAck + 1);
    // The first comes back: the text names the one still unwatched.
    silent.delete(first);
    await pass(TEXT_REVISE_MS / 1000 + 2);
    expect((await degraded())?.message).toBe(
      `group ${GROUP}: sensor trust degraded — 1 rack without a good inlet sensor: ${rack(second)}`,
    );
    // Two text changes in two minutes: two writes, not one a second; no notification but the raise and the ack.
    expect(await version(raised!.id)).toBe(afterAck + 2);
    expect(sent).toEqual(['raised', 'acknowledged']);
    // Both back: one departure is no flap, so the group is ok at once and the alarm clears (notified, as ever).
    silent.delete(second);
    await pass(TEXT_REVISE_MS / 1000 + 2);
    expect(await degraded()).toBeUndefined();
    expect(sent).toEqual(['raised', 'acknowledged', 'cleared']);
  });

  it('an open inlet alarm keeps the figure it was raised at: no rewrite as the inlet moves', async () => {
    const prefix = freshPrefix();
    let now = 20_000_000;
    const sensors = new SensorStore(site, { now: () => now });
    const group = site.controlGroups[0]!;
    const hot = group.sensorNodes[0]!;
    let hotC = 28;
    const round = reporter(
      sensors,
      group.sensorNodes,
      () => now,
      (id) => (id === hot ? hotC : 22),
    );
    const n = node(
      'n1',
      prefix,
      { healthy: true, leads: new Set([GROUP]), members: ['n1'] },
      { mode: 'remote' },
      { sensors, monoNow: () => now, resendMs: () => 3_600_000 },
    );
    const pass = async (s: number) => {
      for (let i = 0; i < s; i++) {
        if (i % 10 === 0) round();
        await n.engine.evaluate();
        now += 1000;
      }
    };
    const inlet = async () => (await n.engine.list('active')).find((a) => a.kind === 'inlet-recommended');
    await pass(75); // above 27 °C for the 60 s delay
    const raised = await inlet();
    expect(raised?.value).toBeGreaterThanOrEqual(28);
    expect(raised?.value).toBeLessThan(28.3);
    const version = async () => Number((await n.client.get(n.store.key(raised!.id)).exec()).kvs[0]!.version);
    const before = await version();
    hotC = 28.6;
    await pass(2 * (TEXT_REVISE_MS / 1000) + 5);
    expect(await inlet()).toMatchObject({ id: raised!.id, value: raised!.value, message: raised!.message });
    expect(await version()).toBe(before);
  });
});
