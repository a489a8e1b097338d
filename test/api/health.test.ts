// GET /healthz fails (503, with the reason) when a loop of the node has stopped — a group's control
// loop, sensor ingest, the leadership decision loop — and recovers when it runs again; /readyz stays
// what it is (the lease). In process: real group drivers and a real MQTT ingest client, the node's
// own probe set (daemon/loop-health.ts, as the controller builds it).
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { buildApp } from '../../src/api/app.ts';
import { GroupDriver } from '../../src/control/group-driver.ts';
import { checkLoops, nodeLoopProbes } from '../../src/daemon/loop-health.ts';
import { MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { apiAuth } from '../support/api-auth.ts';
import { freePort } from '../support/etcd-cluster.ts';
import { FakeCluster, fakeUnit, type UnitWrite } from '../support/fake-cluster.ts';

const site = generateSite({ ...demoShape, modbusBasePort: 0 });
const PERIOD_MS = 50;

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup) await c();
  cleanup = [];
});

async function node(leadershipLoop?: { lastPassAtMs?: number }) {
  const cluster = new FakeCluster(Object.fromEntries(site.controlGroups.map((g) => [g.id, ['n1', 3]])));
  const leadership = cluster.node('n1');
  const written: UnitWrite[] = [];
  const devices = new Map(site.airHandlers.map((a) => [a.id, fakeUnit(a.id, written, 'n1')]));
  const drivers = new Map(
    site.controlGroups.map((g) => [
      g.id,
      new GroupDriver(g, devices, leadership, { periodMs: PERIOD_MS, logger: quietLogger }),
    ]),
  );
  // Sensor ingest toward a port nobody listens on: the client keeps reconnecting, which is running.
  const mqtt = new MqttSource(site, new SensorStore(site), {
    url: `mqtt://127.0.0.1:${await freePort()}`,
    stopDeadlineMs: 200,
  });
  mqtt.start();
  const registry = new Registry();
  const auth = await apiAuth(registry, quietLogger);
  const app = await buildApp({
    auth: auth.auth,
    audit: auth.audit,
    node: 'n1',
    version: '0.1.0',
    leadership,
    registry,
    groups: site.controlGroups.map((g) => g.id),
    drivers,
    logger: quietLogger,
    startedAtMs: Date.now(),
    loops: () =>
      checkLoops(
        nodeLoopProbes({
          drivers: drivers.values(),
          periodMs: PERIOD_MS,
          ...(leadershipLoop ? { leadership: leadershipLoop } : {}),
          leaseTtlS: 2,
          mqtt: () => mqtt.running,
        }),
      ),
  });
  await app.ready();
  for (const d of drivers.values()) d.start();
  cleanup.push(async () => {
    for (const d of drivers.values()) d.stop();
    await mqtt.stop();
    await app.close();
  });
  return { app, drivers, mqtt, leadership };
}

describe('GET /healthz', () => {
  it('is ok while every loop runs, and 503 naming the group whose control loop stopped', async () => {
    const { app, drivers, leadership } = await node();
    const ok = await app.inject('/healthz');
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({ status: 'ok', node: 'n1' });

    const [stopped, d] = [...drivers][1]!;
    d.stop();
    const res = await waitFor(
      'healthz failing',
      async () => {
        const r = await app.inject('/healthz');
        return r.statusCode === 503 ? r : null;
      },
      { timeoutMs: 5000 },
    );
    const body = res.json() as { status: string; problems: string[] };
    expect(body.status).toBe('failing');
    expect(body.problems).toHaveLength(1);
    expect(body.problems[0]).toMatch(new RegExp(`control loop of group ${stopped} has not run`));
    // Readiness is the lease's, not the loops'.
    expect(leadership.healthy).toBe(true);
    expect((await app.inject('/readyz')).statusCode).toBe(200);

    d.start();
    await waitFor('healthz ok again', async () => (await app.inject('/healthz')).statusCode === 200, {
      timeoutMs: 5000,
    });
  });

  it('fails when sensor ingest has stopped', async () => {
    const { app, mqtt } = await node();
    expect((await app.inject('/healthz')).statusCode).toBe(200);
    await mqtt.stop();
    const res = await app.inject('/healthz');
    expect(res.statusCode).toBe(503);
    expect(res.json().problems).toEqual(['sensor ingest over MQTT is stopped']);
  });

  it('fails when the leadership decision loop has not finished a pass for too long', async () => {
    const loop = { lastPassAtMs: performance.now() };
    const { app } = await node(loop);
    expect((await app.inject('/healthz')).statusCode).toBe(200);
    loop.lastPassAtMs = performance.now() - 11_000; // the limit is max(10 s, 3 TTL) = 10 s here
    const res = await app.inject('/healthz');
    expect(res.statusCode).toBe(503);
    expect(res.json().problems[0]).toMatch(/^the leadership decision loop has not run for \d+ ms/);
  });
});
