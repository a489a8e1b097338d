// The dashboard's routes through inject(): the page and its assets, the site layout, the live
// overlay, trends, the audit trail of operator actions (with their answers) and leaderships gained,
// CORS for the cluster's own pages only, and bad queries refused, counted and described in OpenAPI.
import { afterEach, describe, expect, it } from 'vitest';
import { loadSite } from '../../src/config/load-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { waitFor } from '../helpers.ts';
import { FakeCluster, type FakeNode, fakeNode, type UnitWrite } from '../support/fake-cluster.ts';

const site: Site = await loadSite('config/demo-site.yaml');
const open: FakeNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
});

async function setup() {
  const cluster = new FakeCluster({
    'zone-1': ['node-a', 41],
    'zone-2': ['node-b', 57],
    'zone-3': [null, null],
    'zone-4': ['node-a', 44],
  });
  cluster.members.push(
    { node: 'node-a', apiUrl: 'http://127.0.0.1:8101', startedAtMs: 1 },
    { node: 'node-b', apiUrl: 'http://127.0.0.1:8102', startedAtMs: 2 },
  );
  const written: UnitWrite[] = [];
  const a = await fakeNode(cluster, 'node-a', site, written);
  open.push(a);
  return { cluster, a, written };
}

/** Until node `n` holds a command for every unit of zone-1 (its driver has written them). */
const zone1Driven = (n: FakeNode) =>
  waitFor('zone-1 driven', () =>
    n.drivers
      .get('zone-1')!
      .units()
      .every((u) => u.held),
  );

const refusedCount = async (n: FakeNode) =>
  (await n.registry.getSingleMetricAsString('coolctl_api_requests_refused_total'))
    .split('\n')
    .filter((l) => l.startsWith('coolctl_api_requests_refused_total{'))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);

/**
 * node-a's API over its own sensor store (and `extra`), with a reporter of RA-01's sensor node:
 * `report(inletC)` sends one report whose inlet sensors all read inletC.
 */
async function withSensorStore(
  a: FakeNode,
  extra: { devices?: FakeNode['devices']; groups?: string[] } = {},
) {
  const { buildApp } = await import('../../src/api/app.ts');
  const { Registry } = await import('prom-client');
  const { quietLogger } = await import('../helpers.ts');
  const { SensorStore } = await import('../../src/sensors/sensor-store.ts');
  const store = new SensorStore(site);
  const sn = site.sensorNodes.find((n) => n.rack === 'RA-01')!;
  let seq = 0;
  const report = (inletC: number) =>
    store.ingestReport(
      {
        node: sn.id,
        gateway: sn.gateway,
        seq: ++seq,
        readings: sn.sensors.map((x) => ({
          sensor: x.id,
          kind: x.kind,
          value: x.kind === 'humidity' ? 45 : inletC,
        })),
      },
      'mqtt',
      store.nowMs(),
    );
  report(23.5);
  const app = await buildApp({
    auth: a.auth.auth,
    audit: a.audit,
    node: 'node-a',
    version: '0',
    leadership: a.leadership,
    registry: new Registry(),
    groups: extra.groups ?? site.controlGroups.map((g) => g.id),
    drivers: new Map(),
    logger: quietLogger,
    startedAtMs: 0,
    site,
    sensors: store,
    ...(extra.devices ? { devices: extra.devices } : {}),
  });
  return { app, store, sn, report };
}

describe('dashboard routes', () => {
  it('serves the page and its assets from the daemon, with a content security policy', async () => {
    const { a } = await setup();
    const page = await a.app.inject('/');
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.headers['content-security-policy']).toMatch(/script-src 'self'/);
    for (const asset of ['/', '/ui/dashboard.js', '/ui/dashboard.css']) {
      const h = (await a.app.inject(asset)).headers;
      expect(h['content-security-policy'], asset).toMatch(/default-src 'none'.*frame-ancestors 'none'/);
      expect(h['x-content-type-options'], asset).toBe('nosniff');
      expect(h['referrer-policy'], asset).toBe('no-referrer');
    }
    expect(page.body).toContain('/ui/dashboard.js');
    expect((await a.app.inject('/ui/dashboard.js')).headers['content-type']).toMatch(/javascript/);
    expect((await a.app.inject('/ui/dashboard.css')).statusCode).toBe(200);
    const other = await a.app.inject('/ui/..%2fapp.ts');
    expect(other.statusCode).toBe(400);
    expect(other.json().error).toBe('COOLCTL_E_BAD_REQUEST');
  });

  it('gives the site layout with each rack and unit in its group, and a live overlay', async () => {
    const { a } = await setup();
    const s = (await a.app.inject('/api/v1/site')).json();
    expect(s).toMatchObject({ id: 'demo-hall', name: 'Demo data hall A' });
    expect(s.racks).toHaveLength(site.racks.length);
    expect(s.airHandlers).toHaveLength(site.airHandlers.length);
    expect(s.racks[0]).toEqual({
      id: 'RA-01',
      room: 'hall-a',
      row: 'row-1',
      xM: 3.3,
      yM: 4.8,
      itLoadKw: 8.5,
      group: 'zone-1',
    });
    expect(s.airHandlers.find((x: { id: string }) => x.id === 'AHU-05')).toMatchObject({ group: 'zone-1' });
    expect(JSON.stringify(s)).not.toMatch(/endpoint|password|port/i);
    const live = (await a.app.inject('/api/v1/site/live')).json();
    expect(live.rackInletsKnown).toBe(false);
    expect(live.racks['RA-01']).toBeNull();
    expect(live.units['AHU-01']).toEqual({ protocol: 'modbus-tcp', link: 'up', remoteControlLost: false });
  });

  it('says in the live overlay why a unit whose link is up gives no reading (it refuses every read)', async () => {
    const { a } = await setup();
    const refusal = { code: 2, name: 'illegal data address', sinceMs: 1_700_000_000_000 };
    Object.assign(a.devices.get('AHU-02')!, { refusal });
    const live = (await a.app.inject('/api/v1/site/live')).json();
    expect(live.units['AHU-02']).toEqual({
      protocol: 'modbus-tcp',
      link: 'up',
      remoteControlLost: false,
      refusal,
    });
    expect(live.units['AHU-01'].refusal).toBeUndefined();
    const doc = (await a.app.inject('/openapi.json')).json();
    expect(JSON.stringify(doc)).toContain('refuses every read with a Modbus exception');
  });

  it('answers 404 for the layout when the node has no site model', async () => {
    const { a } = await setup();
    const { buildApp } = await import('../../src/api/app.ts');
    const { Registry } = await import('prom-client');
    const { quietLogger } = await import('../helpers.ts');
    const bare = await buildApp({
      auth: a.auth.auth,
      audit: a.audit,
      node: 'node-a',
      version: '0',
      leadership: a.leadership,
      registry: new Registry(),
      groups: [],
      drivers: new Map(),
      logger: quietLogger,
      startedAtMs: 0,
    });
    const r = await bare.inject({ url: '/api/v1/site', headers: a.auth.as('viewer') });
    expect(r.statusCode).toBe(404);
    expect(r.json().error).toBe('COOLCTL_E_BAD_REQUEST');
    await bare.close();
  });

  it('colours racks by their hottest good inlet where the node has a sensor view', async () => {
    const { a } = await setup();
    const { app: withSensors, sn } = await withSensorStore(a);
    const live = (
      await withSensors.inject({ url: '/api/v1/site/live', headers: a.auth.as('viewer') })
    ).json();
    expect(live.rackInletsKnown).toBe(true);
    expect(live.racks['RA-01']).toBe(23.5);
    const silent = site.racks.find((r) => !site.sensorNodes.some((n) => n.rack === r.id && n.id === sn.id))!;
    expect(live.racks[silent.id]).toBeNull();
    await withSensors.close();
  });

  it('answers a reader that sends back its revision with only the racks that changed since', async () => {
    const { a } = await setup();
    const { app, report } = await withSensorStore(a, { devices: a.devices });
    const read = async (since?: string) => {
      const r = await app.inject({
        url: `/api/v1/site/live${since ? `?since=${since}` : ''}`,
        headers: a.auth.as('viewer'),
      });
      expect(r.statusCode).toBe(200);
      return r.json();
    };
    const full = await read();
    expect(full.since).toBeNull();
    expect(full.racks['RA-01']).toBe(23.5);
    expect(Object.keys(full.racks)).toHaveLength(site.racks.length);
    expect(Object.keys(full.units)).toHaveLength(site.airHandlers.length);
    // Nothing changed: a later take holds no entry at all.
    const still = await waitFor('a later take', async () => {
      const r = await read(full.rev);
      return r.rev !== full.rev ? r : null;
    });
    expect(still).toMatchObject({ since: full.rev, racks: {}, rackTrust: {}, groups: {}, units: {} });
    // RA-01 hotter: only it (and its group's hottest inlet) come back, from either revision.
    report(28.25);
    const changed = await waitFor('RA-01 changed', async () => {
      const r = await read(still.rev);
      return r.racks['RA-01'] !== undefined ? r : null;
    });
    expect(changed.racks).toEqual({ 'RA-01': 28.25 });
    expect(changed.rackTrust).toEqual({});
    expect(changed.units).toEqual({});
    expect(Object.keys(changed.groups)).toEqual(['zone-1']);
    expect(changed.groups['zone-1'].inletMaxC).toBe(28.25);
    expect((await read(full.rev)).racks).toEqual({ 'RA-01': 28.25 });
    // A revision this node never gave (another process's): the whole answer.
    const other = await read('0badc0de.1');
    expect(other.since).toBeNull();
    expect(Object.keys(other.racks)).toHaveLength(site.racks.length);
    expect(
      (await app.inject({ url: '/api/v1/site/live?since=x', headers: a.auth.as('viewer') })).statusCode,
    ).toBe(400);
    await app.close();
  });

  it('answers a reader of the group views that sends back its revision with the views that changed, and each unit’s last write apart', async () => {
    const { a } = await setup();
    await zone1Driven(a);
    const read = async (since?: string) => {
      const r = await a.app.inject(`/api/v1/groups${since ? `?since=${since}` : ''}`);
      expect(r.statusCode).toBe(200);
      return r.json();
    };
    const full = await read();
    expect(full.since).toBeNull();
    const z1 = full.groups.find((g: { id: string }) => g.id === 'zone-1');
    expect(z1.units.length).toBeGreaterThan(0);
    // The units keep writing each period: a later take brings their writes, not the views again.
    const later = await waitFor('a later take with newer writes', async () => {
      const r = await read(full.rev);
      const ago = r.lastWriteOkAgoMs?.['zone-1'] as (number | null)[] | undefined;
      return r.rev !== full.rev && ago?.every((x, i) => x !== null && r.atMs - x > z1.units[i].lastWriteOkMs)
        ? r
        : null;
    });
    expect(later.since).toBe(full.rev);
    expect(later.groups.map((g: { id: string }) => g.id)).not.toContain('zone-1');
    expect(later.lastWriteOkAgoMs['zone-1']).toHaveLength(z1.units.length);
    expect(JSON.stringify(later).length).toBeLessThan(JSON.stringify(full).length / 2);
    // An operator's command changes zone-1's view: it comes back whole, from either revision.
    const cmd = await a.app.inject({
      method: 'POST',
      url: '/api/v1/groups/zone-1/commands',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ ahu: z1.units[0].ahu, fanPct: 61 }),
    });
    expect(cmd.statusCode).toBe(200);
    const changed = await waitFor('zone-1 changed', async () => {
      const r = await read(later.rev);
      return r.groups.some((g: { id: string }) => g.id === 'zone-1') ? r : null;
    });
    const view = changed.groups.find((g: { id: string }) => g.id === 'zone-1');
    expect(view.units[0].held.fanPct).toBe(61);
    expect(changed.lastWriteOkAgoMs['zone-1']).toBeUndefined();
    expect((await read(full.rev)).groups.map((g: { id: string }) => g.id)).toContain('zone-1');
    // A revision this node never gave: the whole answer, as an older page reads it.
    const other = await read('0badc0de.1');
    expect(other.since).toBeNull();
    expect(other.groups).toHaveLength(full.groups.length);
    expect((await a.app.inject('/api/v1/groups?since=x')).statusCode).toBe(400);
  });

  it('sends the alarm list again only when it changed since the revision the reader holds', async () => {
    const { a, cluster } = await setup();
    const id = cluster.alarms.raise('inlet-recommended', 'zone-1', 'RA-01', 'RA-01 inlet 28.0 °C', {
      value: 28,
    });
    const first = (await a.app.inject('/api/v1/alarms')).json();
    expect(first.alarms.map((x: { id: string }) => x.id)).toEqual([id]);
    expect(first.since).toBeNull();
    // Unchanged: no list, and the reader keeps what it holds.
    const same = (await a.app.inject(`/api/v1/alarms?since=${first.rev}`)).json();
    expect(same).toEqual({ rev: first.rev, since: first.rev });
    // Acknowledged through this node: the next read has it so, at once.
    const ack = await a.app.inject({
      method: 'POST',
      url: `/api/v1/alarms/${encodeURIComponent(id)}/ack`,
      headers: { 'content-type': 'application/json' },
      payload: '{}',
    });
    expect(ack.statusCode).toBe(200);
    const acked = (await a.app.inject(`/api/v1/alarms?since=${first.rev}`)).json();
    expect(acked.alarms[0].state).toBe('acknowledged');
    expect(acked.rev).not.toBe(first.rev);
    // Raised elsewhere (etcd): read within the list's second.
    const other = cluster.alarms.raise('inlet-recommended', 'zone-2', 'RB-01', 'RB-01 inlet 28.5 °C', {
      value: 28.5,
    });
    await waitFor('the new alarm listed', async () => {
      const r = (await a.app.inject(`/api/v1/alarms?since=${acked.rev}`)).json();
      return r.alarms?.some((x: { id: string }) => x.id === other);
    });
  });

  it('sends only the alarms that changed and the ids that left, which merged make the whole list', async () => {
    const { a, cluster } = await setup();
    type Alarm = { id: string; raisedAt: string; state: string; ack: unknown; shelvedUntil: string | null };
    type Answer = { alarms?: Alarm[]; removed?: string[]; rev: string; since: string | null };
    const get = async (url: string) => (await a.app.inject(url)).json() as Answer;
    const act = async (id: string, what: string, body: unknown) =>
      expect(
        (
          await a.app.inject({
            method: 'POST',
            url: `/api/v1/alarms/${encodeURIComponent(id)}/${what}`,
            headers: { 'content-type': 'application/json' },
            payload: JSON.stringify(body),
          })
        ).statusCode,
      ).toBe(200);
    // Two raised in the same millisecond (a storm in one evaluation): their order must be one a
    // reader can make again.
    const atMs = Date.now() - 60_000;
    const hot = cluster.alarms.raise('inlet-recommended', 'zone-1', 'RA-01', 'RA-01 inlet 28.0 °C', { atMs });
    const warm = cluster.alarms.raise('inlet-recommended', 'zone-1', 'RA-02', 'RA-02 inlet 27.5 °C', {
      atMs,
    });
    const old = cluster.alarms.raise('inlet-recommended', 'zone-2', 'RB-01', 'RB-01 inlet 28.5 °C', {
      atMs: atMs - 1000,
    });
    // A reader that holds what it read and merges each change-only answer into it, as the page does.
    const reader = (which: 'active' | 'all') => {
      let held = { rev: '', list: [] as Alarm[] };
      const read = async () => {
        const r = await get(
          `/api/v1/alarms?state=${which}${held.rev ? `&since=${held.rev}&changes=only` : ''}`,
        );
        const list = new Map(r.since === null ? [] : held.list.map((x) => [x.id, x]));
        for (const id of r.removed ?? []) list.delete(id);
        for (const x of r.alarms ?? []) list.set(x.id, x);
        held = {
          rev: r.rev,
          list: [...list.values()].sort(
            (x, y) =>
              Date.parse(y.raisedAt) - Date.parse(x.raisedAt) || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0),
          ),
        };
        return r;
      };
      return { read, list: () => held.list, rev: () => held.rev };
    };
    const active = reader('active');
    const all = reader('all');
    const first = await active.read();
    expect(first.since).toBeNull();
    expect(first.alarms?.map((x) => x.id)).toHaveLength(3);
    await all.read();
    const whole = async (which: 'active' | 'all') => (await get(`/api/v1/alarms?state=${which}`)).alarms;

    // An acknowledgement: that alarm alone, in its new state.
    await act(hot, 'ack', { comment: 'seen' });
    const acked = await active.read();
    expect(acked.since).toBe(first.rev);
    expect(acked.alarms?.map((x) => [x.id, x.state])).toEqual([[hot, 'acknowledged']]);
    expect(acked.removed).toEqual([]);
    // A reader that does not ask for changes only (an older page, another client) reads it whole.
    const older = await get(`/api/v1/alarms?since=${first.rev}`);
    expect(older.since).toBeNull();
    expect(older.alarms).toHaveLength(3);

    // A shelf: that alarm alone.
    await act(warm, 'shelve', { durationS: 600 });
    const shelved = await active.read();
    expect(shelved.alarms?.map((x) => x.id)).toEqual([warm]);
    expect(shelved.alarms?.[0]?.shelvedUntil).not.toBeNull();

    // Cleared (by its leader, through etcd): it leaves the active list by id, and changes in all.
    cluster.alarms.clear(old);
    const cleared = await waitFor('the cleared alarm removed', async () => {
      const r = await active.read();
      return r.removed?.length ? r : null;
    });
    expect(cleared.removed).toEqual([old]);
    expect(cleared.alarms).toEqual([]);
    const clearedAll = await all.read();
    // Its reader last read before the acknowledgement: every change since, each alarm once.
    expect(clearedAll.alarms?.map((x) => [x.id, x.state])).toEqual([
      ...[
        [hot, 'acknowledged'],
        [warm, 'raised'],
      ].sort(),
      [old, 'cleared'],
    ]);

    // Raised anew, and a cleared one dropped by retention: one answer says both.
    const fresh = cluster.alarms.raise('inlet-recommended', 'zone-4', 'RD-01', 'RD-01 inlet 29.0 °C', {});
    cluster.alarms.records.delete(old);
    const both = await waitFor('the new alarm listed', async () => {
      const r = await all.read();
      return r.alarms?.length ? r : null;
    });
    expect(both.alarms?.map((x) => x.id)).toEqual([fresh]);
    expect(both.removed).toEqual([old]);
    await waitFor('the new alarm listed as active', async () => (await active.read()).alarms?.length);

    // Unchanged: no alarms and nothing removed, as before.
    const same = await active.read();
    expect(same).toEqual({ rev: same.rev, since: same.since });
    // What each reader merged is what a whole read answers, in the same order.
    expect(active.list()).toEqual(await whole('active'));
    expect(all.list()).toEqual(await whole('all'));
    expect(active.list().map((x) => x.id)).toEqual([fresh, ...[hot, warm].sort()]);

    // A revision this node never gave, or one of the other list: the whole list.
    for (const since of ['0badc0de.1', all.rev()]) {
      const r = await get(`/api/v1/alarms?state=active&since=${since}&changes=only`);
      expect(r.since).toBeNull();
      expect(r.alarms).toHaveLength(3);
      expect(r.removed).toBeUndefined();
    }
    expect((await a.app.inject(`/api/v1/alarms?since=${first.rev}&changes=all`)).statusCode).toBe(400);
  });

  it('records operator actions with the authenticated user, node, target and answer, and leaderships gained', async () => {
    const { a, cluster } = await setup();
    await zone1Driven(a);
    const post = (url: string, body: unknown) =>
      a.app.inject({
        method: 'POST',
        url,
        // A name the client claims is ignored: the trail says who signed the request.
        headers: { 'content-type': 'application/json', 'x-coolctl-operator': 'mallory' },
        payload: JSON.stringify(body),
        remoteAddress: '10.1.2.3',
      });
    expect((await post('/api/v1/groups/zone-1/commands', { ahu: 'AHU-01', fanPct: 55 })).statusCode).toBe(
      200,
    );
    expect((await post('/api/v1/groups/zone-2/commands', { fanPct: 60 })).statusCode).toBe(409);
    expect((await post('/api/v1/groups/zone-1/switchover', { to: 'node-b' })).statusCode).toBe(200);
    expect(cluster.switched).toEqual([{ group: 'zone-1', from: 'node-a', to: 'node-b' }]);
    cluster.move('zone-1', 'node-a', 'test: back');
    const log = await waitFor('four entries', async () => {
      const l = (await a.app.inject('/api/v1/audit')).json();
      return l.entries.length === 4 ? l : null;
    });
    expect(log).toMatchObject({ node: 'node-a', capacity: 10_000 });
    const seqs = log.entries.map((e: { seq: number }) => e.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect(log.lastSeq).toBe(seqs.at(-1));
    expect(log.entries).toEqual([
      expect.objectContaining({
        kind: 'operator',
        action: 'commands',
        group: 'zone-1',
        params: { ahu: 'AHU-01', fanPct: 55 },
        clientIp: '10.1.2.3',
        user: 'operator',
        role: 'operator',
        node: 'node-a',
        status: 200,
        error: null,
      }),
      expect.objectContaining({
        status: 409,
        error: expect.objectContaining({ code: 'COOLCTL_E_NOT_LEADER' }),
      }),
      expect.objectContaining({ action: 'switchover', params: { to: 'node-b' }, status: 200 }),
      expect.objectContaining({ kind: 'role', node: 'node-a', group: 'zone-1', to: 'leader' }),
    ]);
    expect(JSON.stringify(log)).not.toContain('mallory');
    expect(
      (await a.app.inject(`/api/v1/audit?since=${seqs[2]}`))
        .json()
        .entries.map((e: { seq: number }) => e.seq),
    ).toEqual([seqs[3]]);
    expect((await a.app.inject('/api/v1/audit?limit=1')).json().entries).toHaveLength(1);
    // Reads are not operator actions.
    expect((await a.app.inject('/api/v1/audit')).json().lastSeq).toBe(seqs[3]);
  });

  it('stops listening to role changes when the API closes', async () => {
    const { a, cluster } = await setup();
    await a.app.inject('/api/v1/audit');
    expect(a.leadership.listenerCount('role')).toBeGreaterThan(0);
    for (const d of a.drivers.values()) d.stop();
    await a.app.close();
    expect(a.leadership.listenerCount('role')).toBe(0);
    cluster.move('zone-2', 'node-a', 'test');
    expect((await a.audit.list()).entries).toEqual([]);
  });

  it('samples trends: the held fan % of the groups this node drives', async () => {
    const { a } = await setup();
    await zone1Driven(a);
    await a.app.ready();
    const t = await waitFor('a zone-1 sample with a fan figure', async () => {
      const r = (await a.app.inject('/api/v1/trends')).json();
      const z = r.groups.find((g: { group: string }) => g.group === 'zone-1');
      return z.fanPct.includes(50) ? r : null;
    });
    expect(t).toMatchObject({ periodMs: 2000, windowMs: 600_000 });
    const z2 = t.groups.find((g: { group: string }) => g.group === 'zone-2');
    expect(z2.fanPct.every((x: unknown) => x === null)).toBe(true);
    expect(z2.inletMaxC.every((x: unknown) => x === null)).toBe(true);
    const later = (await a.app.inject(`/api/v1/trends?sinceMs=${Date.now() + 1000}`)).json();
    expect(later.groups.every((g: { t: number[] }) => g.t.length === 0)).toBe(true);
  });

  it('a group view on a node that no longer drives it holds no commands (its last term’s are stale)', async () => {
    const { a, cluster } = await setup();
    await zone1Driven(a);
    const view = async () => (await a.app.inject('/api/v1/groups/zone-1')).json();
    expect((await view()).units.every((u: { held: unknown }) => u.held !== null)).toBe(true);
    cluster.move('zone-1', 'node-b', 'test');
    const v = await waitFor('node-a no longer driving zone-1', async () => {
      const x = await view();
      return x.driving ? null : x;
    });
    expect(v).toMatchObject({ leader: 'node-b', state: 'follower' });
    expect(v.units.length).toBeGreaterThan(0);
    expect(v.units.every((u: { held: unknown }) => u.held === null)).toBe(true);
  });

  it('follows a hot reload: a group added gets trends, a group removed has none', async () => {
    const { a } = await setup();
    await a.app.ready();
    // What the daemon's reload does to the list the API was built with (src/daemon/controller.ts).
    a.groups.splice(a.groups.indexOf('zone-4'), 1, 'zone-9');
    const groupsOf = async () =>
      (await a.app.inject('/api/v1/trends')).json().groups as { group: string; t: number[] }[];
    const after = await waitFor('a trend sample of the added group', async () => {
      const g = await groupsOf();
      return g.find((x) => x.group === 'zone-9')?.t.length ? g : null;
    });
    expect(after.map((x) => x.group).sort()).toEqual(['zone-1', 'zone-2', 'zone-3', 'zone-9']);
    expect(after.find((x) => x.group === 'zone-1')!.t.length).toBeGreaterThan(1); // kept its history
  });

  it('lets the cluster’s own pages call it cross-origin, and nobody else', async () => {
    const { a } = await setup();
    const pre = await a.app.inject({
      method: 'OPTIONS',
      url: '/api/v1/groups/zone-1/commands',
      headers: { origin: 'http://127.0.0.1:8102', 'access-control-request-method': 'POST' },
    });
    expect(pre.statusCode).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBe('http://127.0.0.1:8102');
    expect(pre.headers['access-control-allow-headers']).toMatch(
      /content-type.*authorization.*x-coolctl-request/,
    );
    expect(pre.headers['access-control-allow-credentials']).toBe('true');
    const get = await a.app.inject({ url: '/api/v1/cluster', headers: { origin: 'http://127.0.0.1:8102' } });
    expect(get.headers['access-control-allow-origin']).toBe('http://127.0.0.1:8102');
    const evil = await a.app.inject({
      method: 'OPTIONS',
      url: '/api/v1/groups/zone-1/commands',
      headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(evil.headers['access-control-allow-origin']).toBeUndefined();
    expect(evil.headers['access-control-allow-methods']).toBeUndefined();
  });

  it('refuses bad queries with the stable error body, counts them, and describes every route in OpenAPI', async () => {
    const { a } = await setup();
    for (const url of [
      '/api/v1/audit?since=-1',
      '/api/v1/audit?limit=0',
      '/api/v1/audit?limit=x',
      '/api/v1/trends?sinceMs=abc',
      '/api/v1/audit?limit=5000',
      '/api/v1/trends?sinceMs=Infinity',
      '/api/v1/trends?sinceMs=1e400',
      `/api/v1/trends?group=${'g'.repeat(129)}`,
    ]) {
      const r = await a.app.inject(url);
      expect(r.statusCode, url).toBe(400);
      expect(r.json()).toMatchObject({ error: 'COOLCTL_E_BAD_REQUEST', details: [expect.any(String)] });
    }
    expect(await refusedCount(a)).toBe(8);
    // An unknown query parameter is refused by name, never dropped in silence.
    const unknown = await a.app.inject('/api/v1/audit?what=1');
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().details).toEqual(['querystring: unknown parameter "what"']);
    expect(await refusedCount(a)).toBe(9);
    const spec = (await a.app.inject('/openapi.json')).json();
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining([
        '/',
        '/ui/{file}',
        '/api/v1/site',
        '/api/v1/site/live',
        '/api/v1/trends',
        '/api/v1/audit',
      ]),
    );
    for (const p of ['/api/v1/site', '/api/v1/site/live', '/api/v1/trends', '/api/v1/audit'])
      expect(spec.paths[p].get.description, p).toBeTruthy();
  });

  it('refuses a trends answer too big for one request, and says how to ask for less', async () => {
    const { a } = await setup();
    // A large node: a reload brought 150 more groups (the API serves a.groups as the daemon keeps it).
    a.groups.push(...Array.from({ length: 150 }, (_, i) => `extra-${i}`));
    const before = await refusedCount(a);
    for (const url of ['/api/v1/trends?range=day', '/api/v1/trends']) {
      const r = await a.app.inject(url);
      expect(r.statusCode, url).toBe(400);
      expect(r.json()).toMatchObject({
        error: 'COOLCTL_E_BAD_REQUEST',
        message: expect.stringMatching(/all 154 groups holds up to \d+ figures/),
        details: [expect.stringMatching(/group=ID/), expect.stringMatching(/sinceMs=\d+/)],
      });
    }
    expect(await refusedCount(a)).toBe(before + 2);
    // What the page asks for (one group), and the newest steps of all, are answered.
    expect((await a.app.inject('/api/v1/trends?range=day&group=zone-1')).statusCode).toBe(200);
    await waitFor('the newest steps of all 154 groups answered', async () => {
      const r = await a.app.inject(`/api/v1/trends?range=day&sinceMs=${Date.now() - 10 * 60_000}`);
      return r.statusCode === 200 && r.json().groups.length === 154;
    });
    // An unknown group's refusal names a few groups, not every one of a large cluster.
    const unknown = await a.app.inject('/api/v1/trends?group=zone-9');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().details[0]).toMatch(/, … \(154 in all: GET \/api\/v1\/cluster\)$/);
    expect(unknown.json().details[0].length).toBeLessThan(400);
  });
});
