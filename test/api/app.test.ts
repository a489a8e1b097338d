// The controller API through inject() (no socket): health and readiness follow the lease, the
// cluster view, switchover sent to the right node, bad requests refused with a stable code and
// counted, and an OpenAPI description of every route.
import { EventEmitter } from 'node:events';
import { gunzipSync } from 'node:zlib';
import { Counter, Gauge, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/app.ts';
import type { GroupLeadership, Leadership, Member } from '../../src/cluster/leadership.ts';
import { GroupDriver } from '../../src/control/group-driver.ts';
import type { AhuCommandSet, DeviceIo } from '../../src/devices/device-io.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { apiAuth, injectAs } from '../support/api-auth.ts';

class FakeLeadership extends EventEmitter implements Leadership {
  readonly node = 'node-a';
  healthy = true;
  switched: [string, string][] = [];
  private readonly state: GroupLeadership[] = [
    { group: 'zone-1', role: 'leader', leader: 'node-a', epoch: 41, sinceMs: 1 },
    { group: 'zone-2', role: 'candidate', leader: 'node-b', epoch: 57, sinceMs: 2 },
  ];
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  groups(): GroupLeadership[] {
    return this.state;
  }
  members(): Member[] {
    return [
      { node: 'node-a', apiUrl: 'http://127.0.0.1:8101', startedAtMs: 1 },
      { node: 'node-b', apiUrl: 'http://127.0.0.1:8102', startedAtMs: 2 },
    ];
  }
  fence(group: string): { epoch: number; untilMs: number } | null {
    const g = this.state.find((x) => x.group === group);
    return g?.role === 'leader' && g.epoch !== null
      ? { epoch: g.epoch, untilMs: Number.POSITIVE_INFINITY }
      : null;
  }
  async switchover(group: string, target: string): Promise<void> {
    this.switched.push([group, target]);
  }
}

/** A unit that answers at once and remembers what it was told. */
function fakeUnit(written: AhuCommandSet[]): DeviceIo {
  return {
    read: async () => ({ fanPct: 50, supplySetpointC: 18 }),
    writeCommand: async (cmd: AhuCommandSet) => {
      written.push(cmd);
    },
    close: async () => {},
  } as unknown as DeviceIo;
}

async function setup(drivers = new Map<string, GroupDriver>()) {
  const leadership = new FakeLeadership();
  const registry = new Registry();
  const a = await apiAuth(registry, quietLogger);
  const app = await buildApp({
    auth: a.auth,
    audit: a.audit,
    node: 'node-a',
    version: '0.1.0',
    leadership,
    registry,
    groups: ['zone-1', 'zone-2'],
    drivers,
    logger: quietLogger,
    startedAtMs: Date.now(),
  });
  return { app: injectAs(app, a.as('operator')), leadership, registry };
}

describe('controller API', () => {
  it('healthz always answers; readyz follows the lease', async () => {
    const { app, leadership } = await setup();
    expect((await app.inject('/healthz')).json()).toMatchObject({ status: 'ok', node: 'node-a' });
    expect((await app.inject('/readyz')).statusCode).toBe(200);
    leadership.healthy = false;
    const r = await app.inject('/readyz');
    expect(r.statusCode).toBe(503);
    expect(r.json()).toEqual({ ready: false, node: 'node-a' });
  });

  it('says in the group view when the stored operator state is invalid and what this node acts on', async () => {
    const { app, leadership } = await setup();
    expect((await app.inject('/api/v1/groups/zone-1')).json().operatorProblem).toBeNull();
    const problem = {
      problem: 'not JSON',
      key: '/coolctl/operator/zone-1',
      keptLastValid: false,
      sinceMs: 1,
    };
    Object.assign(leadership, { operatorProblem: (g: string) => (g === 'zone-1' ? problem : null) });
    expect((await app.inject('/api/v1/groups/zone-1')).json().operatorProblem).toEqual(problem);
    expect((await app.inject('/api/v1/groups/zone-2')).json().operatorProblem).toBeNull();
  });

  it('shows members and, per group, leader, epoch and this node’s state', async () => {
    const { app } = await setup();
    const c = (await app.inject('/api/v1/cluster')).json();
    expect(c.members.map((m: Member) => m.node)).toEqual(['node-a', 'node-b']);
    expect(c.groups).toEqual([
      expect.objectContaining({ id: 'zone-1', leader: 'node-a', epoch: 41, state: 'leader', driving: false }),
      expect.objectContaining({ id: 'zone-2', leader: 'node-b', epoch: 57, state: 'candidate' }),
    ]);
    expect((await app.inject('/api/v1/groups/zone-1')).json()).toMatchObject({
      id: 'zone-1',
      epoch: 41,
      units: [],
    });
  });

  it('switches a group over from its leader; elsewhere says who leads; refuses bad requests and counts them', async () => {
    const { app, leadership, registry } = await setup();
    const post = (url: string, body: unknown) =>
      app.inject({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify(body),
      });
    const ok = await post('/api/v1/groups/zone-1/switchover', { to: 'node-b' });
    expect(ok.statusCode).toBe(200);
    expect(leadership.switched).toEqual([['zone-1', 'node-b']]);
    const notHere = await post('/api/v1/groups/zone-2/switchover', { to: 'node-a' });
    expect(notHere.statusCode).toBe(409);
    expect(notHere.json()).toMatchObject({
      error: 'COOLCTL_E_NOT_LEADER',
      details: ['leader API: http://127.0.0.1:8102'],
    });
    expect((await post('/api/v1/groups/zone-9/switchover', { to: 'node-b' })).statusCode).toBe(404);
    const unknownNode = await post('/api/v1/groups/zone-1/switchover', { to: 'node-x' });
    expect(unknownNode.statusCode).toBe(400);
    expect(unknownNode.json().details[0]).toMatch(/one of the members: node-a, node-b/);
    const noBody = await post('/api/v1/groups/zone-1/switchover', { target: 'node-b' });
    expect(noBody.statusCode).toBe(400);
    const garbage = await app.inject({
      method: 'POST',
      url: '/api/v1/groups/zone-1/switchover',
      headers: { 'content-type': 'application/json' },
      payload: '{"to":',
    });
    expect(garbage.statusCode).toBe(400);
    expect(garbage.json().error).toBe('COOLCTL_E_BAD_REQUEST');
    expect(leadership.switched).toHaveLength(1);
    const refused = (await registry.getSingleMetricAsString('coolctl_api_requests_refused_total'))
      .split('\n')
      .filter((l) => l.startsWith('coolctl_api_requests_refused_total{'))
      .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
    expect(refused).toBe(5);
  });

  it('serves Prometheus metrics and an OpenAPI description of its routes', async () => {
    const { app, registry } = await setup();
    new Gauge({ name: 'coolctl_test_a', help: 'a', labelNames: ['x'], registers: [registry] }).set(
      { x: 'q"1' },
      2,
    );
    new Counter({ name: 'coolctl_test_b_total', help: 'b', registers: [registry] }).inc(3);
    // The per-device families render their own text, in chunks of devices: more devices than a
    // chunk holds, errors of two kinds, and a device id that needs escaping.
    const devices = new DeviceMetrics(registry);
    for (let i = 0; i < 150; i++) {
      const meter = devices.meter(i === 7 ? 'AHU-"7"\\x' : `AHU-${i}`, i % 2 ? 'modbus-tcp' : 'opcua');
      meter.link(i % 3 ? 'up' : 'degraded');
      meter.observe('read', 0.004);
      if (i % 5 === 0) meter.observe('write', 1.5, 'COOLCTL_E_DEVICE_TIMEOUT');
      if (i % 10 === 0) meter.observe('write', 0.01, 'COOLCTL_E_DEVICE_FENCED');
    }
    const m = await app.inject('/metrics');
    expect(m.headers['content-type']).toMatch(/text\/plain/);
    // Rendered a family per event-loop turn (src/api/metrics-text.ts), the same text as prom-client's.
    expect(m.body).toBe(await registry.metrics());
    expect(m.body).toContain('coolctl_test_a{x="q\\"1"} 2');
    expect(m.body).toContain('coolctl_test_b_total 3');
    expect(m.body).toContain(
      'coolctl_device_link_state{device="AHU-\\"7\\"\\\\x",protocol="modbus-tcp",state="up"} 1',
    );
    expect(m.body).toContain(
      'coolctl_device_errors_total{device="AHU-140",protocol="opcua",kind="fenced"} 1',
    );
    expect(m.body).toContain(
      'coolctl_device_transactions_total{device="AHU-149",protocol="modbus-tcp",op="read",outcome="ok"} 1',
    );
    expect(m.body.match(/^coolctl_device_link_state\{/gm)).toHaveLength(450);
    expect(m.body.match(/^coolctl_device_errors_total\{/gm)).toHaveLength(45);
    expect(m.headers['content-encoding']).toBeUndefined();
    // Prometheus asks for gzip: the same text, compressed.
    const z = await app.inject({ url: '/metrics', headers: { 'accept-encoding': 'gzip' } });
    expect(z.statusCode).toBe(200);
    expect(z.headers['content-encoding']).toBe('gzip');
    expect(z.headers.vary).toMatch(/accept-encoding/i);
    expect(gunzipSync(z.rawPayload).toString('utf8')).toBe(await registry.metrics());
    expect(z.rawPayload.length).toBeLessThan(m.rawPayload.length / 4);
    const spec = (await app.inject('/openapi.json')).json();
    expect(spec.openapi).toMatch(/^3\./);
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining([
        '/healthz',
        '/readyz',
        '/metrics',
        '/api/v1/cluster',
        '/api/v1/groups/{id}',
        '/api/v1/groups/{id}/switchover',
      ]),
    );
  });

  it('takes an operator command on the leader only, validated; the next write carries it', async () => {
    const written: AhuCommandSet[] = [];
    const devices = new Map([
      ['AHU-1', fakeUnit(written)],
      ['AHU-2', fakeUnit(written)],
    ]);
    const leadership = new FakeLeadership();
    const drivers = new Map(
      (['zone-1', 'zone-2'] as const).map((id) => [
        id,
        new GroupDriver(
          { id, airHandlers: id === 'zone-1' ? ['AHU-1', 'AHU-2'] : [] } as never,
          devices,
          leadership,
          {
            periodMs: 50,
            logger: quietLogger,
          },
        ),
      ]),
    );
    const { app } = await setup(drivers);
    const post = (group: string, body: unknown) =>
      app.inject({ method: 'POST', url: `/api/v1/groups/${group}/commands`, payload: body as object });
    for (const d of drivers.values()) d.start();
    try {
      await waitFor('both units held', () =>
        drivers
          .get('zone-1')!
          .units()
          .every((u) => u.held),
      );
      expect((await post('zone-2', { fanPct: 60 })).statusCode).toBe(409);
      expect((await post('zone-1', { fanPct: 150 })).statusCode).toBe(400);
      expect((await post('zone-1', {})).statusCode).toBe(400);
      expect((await post('zone-1', { ahu: 'AHU-9', fanPct: 60 })).statusCode).toBe(400);
      expect((await post('nowhere', { fanPct: 60 })).statusCode).toBe(404);
      const ok = await post('zone-1', { ahu: 'AHU-2', fanPct: 61.5 });
      expect(ok.statusCode).toBe(200);
      expect(ok.json().held).toEqual([{ fanPct: 61.5, supplySetpointC: 18 }]);
      const n = written.length;
      await waitFor('a write with the command', () =>
        written.slice(n).some((c) => c.fanPct === 61.5 && c.epoch === 41),
      );
      expect((await app.inject('/api/v1/cache')).json()).toMatchObject({ enabled: false, rows: [] });
    } finally {
      for (const d of drivers.values()) d.stop();
    }
  });
});
