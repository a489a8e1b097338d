// Shelves through wall-clock steps, against a real etcd cluster (the leadership and the group's
// loop stood in for, as in ./engine-etcd.test.ts; each node's wall and monotonic clocks moved by
// the test): NTP stepping a node a day ahead does not end a ten-minute shelf at once, nor does a
// clock set back a year keep it for a year; a node whose clock is a year behind (a gateway without
// a clock battery, booted at its build date) that takes the group over ends it within what was
// asked, not in a year; one a day ahead that watched it put on keeps it for what was asked.
import type { Etcd3 } from 'etcd3';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { AlarmEngine } from '../../src/alarms/alarm-engine.ts';
import { AlarmStore } from '../../src/alarms/alarm-store.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { loadSite } from '../../src/config/load-site.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { useEtcdFixture } from '../cluster/harness.ts';
import { quietLogger } from '../helpers.ts';
import { driverOf, leadershipOf, type Said } from './stand-ins.ts';

const fx = useEtcdFixture('alarms-clock-step');
const site = await loadSite('config/demo-site.yaml');
const GROUP = site.controlGroups[0]!.id;
const UNIT = site.controlGroups[0]!.airHandlers[0]!;
const DAY_MS = 86_400_000;
const YEAR_MS = 365 * DAY_MS;
const clients: Etcd3[] = [];
const engines: AlarmEngine[] = [];
afterAll(async () => {
  for (const e of engines.splice(0)) await e.stop();
  for (const c of clients.splice(0)) c.close();
});

/** One node: its own wall clock (stepped by the test) and the monotonic one all nodes share here. */
interface Node extends Said {
  engine: AlarmEngine;
  store: AlarmStore;
  registry: Registry;
  wallOffsetMs: number;
}

const clock = { wallMs: Date.now(), monoMs: 1_000_000 };
const pass = (ms: number) => {
  clock.wallMs += ms;
  clock.monoMs += ms;
};

function node(name: string, prefix: string, members: string[], wallOffsetMs = 0): Node {
  const client = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 2000 });
  clients.push(client);
  const registry = new Registry();
  const store = new AlarmStore({ client, prefix, callTimeoutMs: 2000, logger: quietLogger, registry });
  const n = { healthy: true, leads: new Set<string>(), members, wallOffsetMs } as Node;
  const leadership = leadershipOf(site, name, n);
  const driver = driverOf(UNIT, { mode: 'tripped' });
  n.engine = new AlarmEngine({
    node: name,
    store,
    leadership,
    drivers: new Map([[GROUP, driver]]),
    devices: new Map([[UNIT, { linkState: 'up' } as unknown as DeviceIo]]),
    sensors: () => undefined,
    config: () => ({ site, nodes: ['n1', 'n2'] }),
    logger: quietLogger,
    registry,
    wallNow: () => clock.wallMs + n.wallOffsetMs,
    monoNow: () => clock.monoMs,
  });
  n.store = store;
  n.registry = registry;
  engines.push(n.engine);
  return n;
}

let seq = 0;
const freshPrefix = () => `/coolctl/alarms-clock-${process.pid}-${++seq}`;

const expiries = async (n: Node) =>
  Number(
    /coolctl_alarm_transitions_total\{kind="unit-tripped",transition="shelf-expired"\} (\d+)/.exec(
      await n.registry.metrics(),
    )?.[1] ?? 0,
  );

/** The trip's alarm as the node's API lists it. */
const trip = async (n: Node) => (await n.engine.list('active')).find((a) => a.kind === 'unit-tripped')!;

describe('shelves through wall-clock steps', () => {
  it('a step a day forward or a year back neither ends a shelf at once nor makes it last', async () => {
    const a = node('n1', freshPrefix(), ['n1']);
    a.leads.add(GROUP);
    await a.engine.evaluate();
    const id = (await trip(a)).id;
    await a.engine.shelve(id, 'op', 600, 'known');

    a.wallOffsetMs = DAY_MS; // NTP steps the clock a day ahead
    pass(1_000);
    await a.engine.evaluate();
    expect((await trip(a)).shelvedUntil, 'shelved still, a second into ten minutes').not.toBeNull();
    expect((await a.store.get(id))!.shelf).not.toBeNull();
    expect(await expiries(a)).toBe(0);

    a.wallOffsetMs = -YEAR_MS; // and back a year
    pass(598_000);
    await a.engine.evaluate();
    expect((await trip(a)).shelvedUntil).not.toBeNull();
    pass(1_000); // the ten minutes are up
    await a.engine.evaluate();
    expect((await trip(a)).shelvedUntil, 'the shelf ended after ten minutes').toBeNull();
    expect((await a.store.get(id))!.shelf).toBeNull();
    expect((await a.store.index()).shelved.size).toBe(0);
    expect(await expiries(a)).toBe(1);
  });

  it('a node a year behind that takes the group over ends its shelf on time', async () => {
    const prefix = freshPrefix();
    const a = node('n1', prefix, ['n1']);
    a.leads.add(GROUP);
    await a.engine.evaluate();
    const id = (await trip(a)).id;
    await a.engine.shelve(id, 'op', 600, 'known');
    pass(60_000);
    // n1 dies; n2, which booted at its build date a year ago and has no NTP answer yet, leads now.
    await a.engine.stop();
    const b = node('n2', prefix, ['n2'], -YEAR_MS);
    b.leads.add(GROUP);
    await b.engine.evaluate();
    expect((await trip(b)).shelvedUntil).not.toBeNull();
    // Its clock cannot say how much of the shelf is left: at most what was asked, from the takeover.
    pass(600_000);
    await b.engine.evaluate();
    expect((await trip(b)).shelvedUntil, 'ended within ten minutes, not in a year').toBeNull();
    expect(await expiries(b)).toBe(1);
  });

  it('a node a day ahead that watched the shelf put on keeps it for what was asked', async () => {
    const prefix = freshPrefix();
    const a = node('n1', prefix, ['n1', 'n2']);
    const b = node('n2', prefix, ['n1', 'n2'], DAY_MS);
    a.leads.add(GROUP);
    await a.engine.evaluate();
    await b.engine.evaluate();
    const id = (await trip(a)).id;
    await a.engine.shelve(id, 'op', 600, 'known');
    pass(1_000);
    await b.engine.evaluate();
    // n1 dies; n2 leads the group from now on.
    await a.engine.stop();
    a.leads.clear();
    b.members = ['n2'];
    b.leads.add(GROUP);
    pass(1_000);
    await b.engine.evaluate();
    expect((await trip(b)).shelvedUntil, 'still shelved on the node a day ahead').not.toBeNull();
    expect(await expiries(b)).toBe(0);
    pass(597_000); // 599 s since it was put on
    await b.engine.evaluate();
    expect((await trip(b)).shelvedUntil).not.toBeNull();
    pass(2_000); // ten minutes and the one index read (a second) n2 took to see it
    await b.engine.evaluate();
    expect((await trip(b)).shelvedUntil).toBeNull();
    expect(await expiries(b)).toBe(1);
  });
});
