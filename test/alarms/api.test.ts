// The alarm routes' contract (src/api/routes/alarms.ts), over the fake cluster's shared alarms:
// the list's shape and filter, acknowledge (with and without a body; the first one stays), shelve
// bounds and expiry field, unshelve, 404 for an unknown id and 409 for shelving a cleared alarm,
// all through the error catalog; the routes are in the OpenAPI description. Roles and the audit
// trail for these routes are checked with every other route in test/api/auth.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { loadSite } from '../../src/config/load-site.ts';
import { FakeCluster, type FakeNode, fakeNode } from '../support/fake-cluster.ts';

const site = await loadSite('config/demo-site.yaml');
const open: FakeNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
});

async function twoNodes() {
  const c = new FakeCluster({ 'zone-1': ['node-a', 41], 'zone-2': ['node-b', 57], 'zone-3': [null, null] });
  const a = await fakeNode(c, 'node-a', site, []);
  const b = await fakeNode(c, 'node-b', site, []);
  open.push(a, b);
  return { c, a, b };
}

const post = (n: FakeNode, url: string, body?: object) =>
  n.app.inject({
    method: 'POST',
    url,
    headers: {
      authorization: `Bearer ${n.auth.tokens.operator}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { payload: JSON.stringify(body) } : {}),
  });

describe('alarm routes', () => {
  it('list, acknowledge on one node and read it on the other, shelve, unshelve', async () => {
    const { c, a, b } = await twoNodes();
    const t0 = Date.parse('2026-12-04T10:00:00Z');
    const tripped = c.alarms.raise('unit-tripped', 'zone-1', 'AHU-01', 'unit AHU-01 tripped', { atMs: t0 });
    const hot = c.alarms.raise('inlet-recommended', 'zone-2', 'R07', 'rack R07 inlet 28.1 °C above 27 °C', {
      atMs: t0 + 1000,
      value: 28.1,
    });
    const gone = c.alarms.raise('node-down', null, 'n3', 'node n3 is not a member', { atMs: t0 - 1000 });
    c.alarms.clear(gone);

    const active = (await a.app.inject('/api/v1/alarms')).json() as { alarms: Record<string, unknown>[] };
    expect(active.alarms.map((x) => x.id)).toEqual([hot, tripped]);
    expect(active.alarms[0]).toEqual({
      id: hot,
      kind: 'inlet-recommended',
      severity: 'major',
      group: 'zone-2',
      subject: 'R07',
      message: 'rack R07 inlet 28.1 °C above 27 °C',
      state: 'raised',
      raisedAt: '2026-12-04T10:00:01.000Z',
      clearedAt: null,
      ack: null,
      shelvedUntil: null,
      value: 28.1,
    });
    const all = (await b.app.inject('/api/v1/alarms?state=all')).json() as {
      alarms: { id: string; state: string }[];
    };
    expect(all.alarms.map((x) => [x.id, x.state])).toEqual([
      [hot, 'raised'],
      [tripped, 'raised'],
      [gone, 'cleared'],
    ]);
    expect((await a.app.inject('/api/v1/alarms?state=open')).statusCode).toBe(400);

    const acked = await post(a, `/api/v1/alarms/${tripped}/ack`, { comment: 'reset at the unit' });
    expect(acked.statusCode).toBe(200);
    expect(acked.json().alarm).toMatchObject({
      id: tripped,
      state: 'acknowledged',
      ack: { user: 'operator', comment: 'reset at the unit', at: expect.stringMatching(/Z$/) },
    });
    // The other node answers the same; a second acknowledgement (no body) keeps the first.
    const onB = (await b.app.inject('/api/v1/alarms')).json() as { alarms: { id: string; ack: unknown }[] };
    expect(onB.alarms.find((x) => x.id === tripped)?.ack).toEqual(acked.json().alarm.ack);
    const again = await post(b, `/api/v1/alarms/${tripped}/ack`);
    expect(again.statusCode).toBe(200);
    expect(again.json().alarm.ack).toEqual(acked.json().alarm.ack);

    const before = Date.now();
    const shelf = await post(a, `/api/v1/alarms/${hot}/shelve`, {
      durationS: 3600,
      comment: 'hot-aisle work',
    });
    expect(shelf.statusCode).toBe(200);
    const until = Date.parse(shelf.json().alarm.shelvedUntil);
    expect(until).toBeGreaterThanOrEqual(before + 3_600_000);
    expect(until).toBeLessThan(before + 3_660_000);
    expect((await post(a, `/api/v1/alarms/${hot}/shelve`, { durationS: 30 })).statusCode).toBe(400);
    expect((await post(a, `/api/v1/alarms/${hot}/shelve`, { durationS: 86_401 })).statusCode).toBe(400);
    const un = await post(b, `/api/v1/alarms/${hot}/unshelve`);
    expect(un.statusCode).toBe(200);
    expect(un.json().alarm.shelvedUntil).toBeNull();
  });

  it('unknown id: 404; shelving a cleared alarm: 409 — both through the error catalog', async () => {
    const { c, a } = await twoNodes();
    const nobody = await post(a, '/api/v1/alarms/unit-tripped~zone-1~AHU-09~zzz/ack', {});
    expect(nobody.statusCode).toBe(404);
    expect(nobody.json()).toMatchObject({
      error: 'COOLCTL_E_BAD_REQUEST',
      message: expect.stringContaining('unknown alarm'),
    });
    const id = c.alarms.raise('dew-point', 'zone-1', 'R01', 'dew point 16 °C');
    c.alarms.clear(id);
    const r = await post(a, `/api/v1/alarms/${id}/shelve`, { durationS: 600 });
    expect(r.statusCode).toBe(409);
    expect(r.json().error).toBe('COOLCTL_E_BAD_REQUEST');
    expect((await post(a, '/api/v1/alarms/not%20an%20id/ack', {})).statusCode).toBe(400);
  });

  it('is described in the OpenAPI document', async () => {
    const { a } = await twoNodes();
    const spec = (await a.app.inject('/openapi.json')).json() as {
      paths: Record<string, Record<string, unknown>>;
    };
    expect(
      Object.keys(spec.paths)
        .filter((p) => p.startsWith('/api/v1/alarms'))
        .sort(),
    ).toEqual([
      '/api/v1/alarms',
      '/api/v1/alarms/notifications',
      '/api/v1/alarms/{alarm}/ack',
      '/api/v1/alarms/{alarm}/shelve',
      '/api/v1/alarms/{alarm}/unshelve',
    ]);
  });
});
