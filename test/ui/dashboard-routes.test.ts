// The data behind the dashboard's pictures, through inject(): each rack's hottest good inlet and the
// trust of its sensors (the floor map's colour, and what a click on a rack shows), trends per group
// and per unit at two resolutions, and the energy report against the local-control baseline.
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/app.ts';
import { loadSite } from '../../src/config/load-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { FakeCluster, type FakeNode, fakeNode, type UnitWrite } from '../support/fake-cluster.ts';

const site: Site = await loadSite('config/demo-site.yaml');
const open: { close(): Promise<unknown> }[] = [];
afterEach(async () => {
  for (const n of open.splice(0).reverse()) await n.close();
});

async function setup() {
  const cluster = new FakeCluster({
    'zone-1': ['node-a', 41],
    'zone-2': ['node-b', 57],
    'zone-3': [null, null],
    'zone-4': ['node-a', 44],
  });
  cluster.members.push({ node: 'node-a', apiUrl: 'http://127.0.0.1:8101', startedAtMs: 1 });
  const written: UnitWrite[] = [];
  const a = await fakeNode(cluster, 'node-a', site, written);
  open.push(a);
  return { cluster, a };
}

/** node-a's API again, with a sensor store: RA-01's node reports, its top inlet out of range. */
async function withSensors(a: FakeNode, opts: { store?: boolean } = {}): Promise<FastifyInstance> {
  const store = new SensorStore(site);
  const sn = site.sensorNodes.find((n) => n.rack === 'RA-01')!;
  const value = (kind: string) =>
    ({ 'inlet-top': 150, 'inlet-middle': 23.5, 'inlet-bottom': 22.1, humidity: 45, 'subfloor-pressure': 18 })[
      kind
    ]!;
  store.ingestReport(
    {
      node: sn.id,
      gateway: sn.gateway,
      seq: 1,
      readings: sn.sensors.map((x) => ({ sensor: x.id, kind: x.kind, value: value(x.kind) })),
    },
    'mqtt',
    store.nowMs(),
  );
  const app = await buildApp({
    auth: a.auth.auth,
    audit: a.audit,
    node: 'node-a',
    version: '0',
    leadership: a.leadership,
    registry: new Registry(),
    groups: site.controlGroups.map((g) => g.id),
    drivers: new Map(),
    logger: quietLogger,
    startedAtMs: 0,
    site,
    ...(opts.store === false ? {} : { sensors: store }),
  });
  open.push(app);
  return app;
}

describe('dashboard data for the floor map, trends and energy', () => {
  it('colours a rack by its hottest good inlet and says how many of its inlet sensors are good', async () => {
    const { a } = await setup();
    const app = await withSensors(a);
    const viewer = a.auth.as('viewer');
    const live = (await app.inject({ url: '/api/v1/site/live', headers: viewer })).json();
    expect(live.rackInletsKnown).toBe(true);
    expect(live.node).toBe('node-a');
    // 150 °C is out of range: not trusted, so the rack shows 23.5 (its middle sensor), not 150.
    expect(live.racks['RA-01']).toBe(23.5);
    expect(live.rackTrust['RA-01']).toEqual({ goodInlets: 2, inlets: 3 });
    expect(live.racks['RA-02']).toBeNull();
    expect(live.rackTrust['RA-02']).toEqual({ goodInlets: 0, inlets: 3 });
  });

  it('shows a rack’s sensors with value, unit, age and trust', async () => {
    const { a } = await setup();
    const app = await withSensors(a);
    const r = await app.inject({ url: '/api/v1/site/racks/RA-01', headers: a.auth.as('viewer') });
    expect(r.statusCode).toBe(200);
    const b = r.json();
    expect(b).toMatchObject({
      rack: 'RA-01',
      group: 'zone-1',
      node: 'node-a',
      sensorsKnown: true,
      inletMaxC: 23.5,
      goodInlets: 2,
      inlets: 3,
    });
    const by = Object.fromEntries(b.sensors.map((s: { sensor: string }) => [s.sensor, s]));
    expect(by['inlet-top']).toMatchObject({
      kind: 'inlet-top',
      unit: '°C',
      value: 150,
      quality: 'bad',
      flags: ['out-of-range'],
      source: 'mqtt',
    });
    expect(by['inlet-middle']).toMatchObject({ unit: '°C', value: 23.5, quality: 'good' });
    expect(by.rh).toMatchObject({ kind: 'humidity', unit: '%RH', value: 45, quality: 'good' });
    expect(by.subfloor).toMatchObject({ unit: 'Pa', value: 18 });
    expect(by.rh.ageS).toBeGreaterThanOrEqual(0);
    expect(by.rh.ageS).toBeLessThan(5);

    const unknown = await app.inject({ url: '/api/v1/site/racks/RA-99', headers: a.auth.as('viewer') });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ error: 'COOLCTL_E_BAD_REQUEST', message: 'unknown rack "RA-99"' });
    const bad = await app.inject({ url: '/api/v1/site/racks/a%20b', headers: a.auth.as('viewer') });
    expect(bad.statusCode).toBe(400);
    expect((await app.inject('/api/v1/site/racks/RA-01')).statusCode).toBe(401);
  });

  it('says so when the node has no sensor view: every sensor unknown, no rack colour', async () => {
    const { a } = await setup();
    const app = await withSensors(a, { store: false });
    const b = (await app.inject({ url: '/api/v1/site/racks/RA-01', headers: a.auth.as('viewer') })).json();
    expect(b).toMatchObject({ sensorsKnown: false, inletMaxC: null, goodInlets: 0, inlets: 3 });
    expect(b.sensors.every((s: { quality: string }) => s.quality === 'unknown')).toBe(true);
  });

  it('keeps trends per group and, for one group, per unit, at 10 minutes and 24 hours', async () => {
    const { a } = await setup();
    await a.app.ready();
    const recent = await waitFor('zone-1’s units with a fan figure', async () => {
      const r = (await a.app.inject('/api/v1/trends?group=zone-1')).json();
      return r.units.length === 2 && r.units.every((u: { fanPct: unknown[] }) => u.fanPct.includes(50))
        ? r
        : null;
    });
    expect(recent).toMatchObject({ periodMs: 2000, windowMs: 600_000, range: 'recent' });
    expect(recent.groups.map((g: { group: string }) => g.group)).toEqual(['zone-1']);
    expect(recent.units.map((u: { ahu: string }) => u.ahu).sort()).toEqual(['AHU-01', 'AHU-05']);
    const u = recent.units[0];
    expect(u).toMatchObject({ group: 'zone-1', stepMs: 10_000 });
    expect(u.supplySetpointC).toContain(18);
    // The fake units read no supply air: no data, never a made-up figure.
    expect(u.supplyC.every((x: unknown) => x === null)).toBe(true);
    expect(recent.memoryBytes).toBeGreaterThan(0);

    const day = (await a.app.inject('/api/v1/trends?group=zone-1&range=day')).json();
    expect(day).toMatchObject({ periodMs: 60_000, windowMs: 86_400_000, range: 'day' });
    expect(day.groups[0].min.fanPct).toContain(50);
    expect(day.groups[0].max.fanPct).toContain(50);
    expect(day.units[0].stepMs).toBe(900_000);

    // Without group=: every group, no units (a site has many).
    const all = (await a.app.inject('/api/v1/trends')).json();
    expect(all.groups).toHaveLength(4);
    expect(all.units).toEqual([]);
    const unknown = await a.app.inject('/api/v1/trends?group=zone-9');
    expect(unknown.statusCode).toBe(404);
    expect((await a.app.inject('/api/v1/trends?range=week')).statusCode).toBe(400);
  });

  it('reports fan energy of the groups this node drives against every unit at its local speed', async () => {
    const { a } = await setup();
    await a.app.ready();
    // The fake units read 50 % and have no fan kW point: 4.8 kW × 0.5³ each, estimated by the cube law.
    const e = await waitFor(
      'energy integrated for zone-1',
      async () => {
        const r = (await a.app.inject('/api/v1/energy')).json();
        return r.hours.at(-1)?.groups['zone-1']?.unitSeconds > 0 ? r : null;
      },
      { timeoutMs: 15_000 },
    );
    expect(e.node).toBe('node-a');
    expect(e.basis).toMatch(/cube of speed/);
    expect(e.units.find((x: { ahu: string }) => x.ahu === 'AHU-01')).toEqual({
      ahu: 'AHU-01',
      fanMaxKw: 4.8,
      localFanPct: 100,
      baselineKw: 4.8,
    });
    const h = e.hours.at(-1);
    const z1 = h.groups['zone-1'];
    expect(z1.fanKwh / z1.baselineFanKwh).toBeCloseTo(0.125, 6);
    expect(z1.estimatedFanKwh).toBeCloseTo(z1.fanKwh, 9);
    expect(z1.coolingKwh).toBe(0);
    // node-b leads zone-2: this node did not drive it and counts none of it.
    expect(h.groups['zone-2']).toBeUndefined();
    expect(e.days.at(-1).fanKwh).toBeCloseTo(h.fanKwh, 9);
  });
});
