// Sensor polling on the devices' Modbus TCP stack: a gateway that accepts connections but never
// answers, or answers too late, costs one deadline per poll and no more; the gateway is offline at
// once with the typed reason; a timed-out connection is never reused (a late answer cannot pair with
// a later request); and a dead gateway is retried with the devices' reconnect backoff, not at every
// poll interval. The gateway here is a scripted MBAP server on loopback: the simulator's gateway
// has no "answers late" or "never answers" fault.
import { createServer, type Server, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { encodeNode, NODE_HEADER_LEN } from '../../src/sensors/modbus-gateway-map.ts';
import { ModbusSource } from '../../src/sensors/modbus-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { waitFor } from '../helpers.ts';
import { captureLogs } from '../support/log-lines.ts';

const TIMEOUT_MS = 100;
/** Poll interval 20 ms of real time: far shorter than the backoff, so the backoff shows. */
const TIME_SCALE = 50;

interface ScriptedGateway {
  server: Server;
  port: number;
  /** `performance.now()` of every accepted connection. */
  accepts: number[];
  /** Requests received, per connection (index into `accepts`). */
  requests: number[];
  /** undefined: never answer; otherwise answer each request after this many ms. */
  answerAfterMs: number | undefined;
  seq: number;
}

const gateways: ScriptedGateway[] = [];
const sources: ModbusSource[] = [];

afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
  for (const g of gateways.splice(0)) await new Promise<void>((r) => g.server.close(() => r()));
});

/** An FC3-only node gateway: every slave id has a node with a report, a new seq per answer. */
async function scriptedGateway(answerAfterMs: number | undefined): Promise<ScriptedGateway> {
  const gw: ScriptedGateway = {
    server: createServer(),
    port: 0,
    accepts: [],
    requests: [],
    answerAfterMs,
    seq: 0,
  };
  const sockets = new Set<Socket>();
  gw.server.on('connection', (socket) => {
    const conn = gw.accepts.push(performance.now()) - 1;
    gw.requests[conn] = 0;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (req: Buffer) => {
      // One 12-byte FC3 request per chunk: the client sends one at a time.
      if (req.length !== 12 || req[7] !== 0x03) return;
      gw.requests[conn]!++;
      const after = gw.answerAfterMs;
      if (after === undefined) return;
      const count = req.readUInt16BE(10);
      const words = encodeNode({
        seq: ++gw.seq,
        ageS: 0,
        batteryPct: 90,
        rssiDbm: -60,
        hops: 1,
        values: Array.from({ length: count - NODE_HEADER_LEN }, () => 22.5),
      });
      const res = Buffer.alloc(9 + 2 * count);
      req.copy(res, 0, 0, 4); // transaction and protocol id
      res.writeUInt16BE(3 + 2 * count, 4);
      res[6] = req[6]!;
      res[7] = 0x03;
      res[8] = 2 * count;
      for (const [i, w] of words.entries()) res.writeUInt16BE(w, 9 + 2 * i);
      setTimeout(() => {
        if (!socket.destroyed) socket.write(res);
      }, after);
    });
  });
  gw.server.on('close', () => {
    for (const s of sockets) s.destroy();
  });
  await new Promise<void>((r) => gw.server.listen(0, '127.0.0.1', () => r()));
  gw.port = (gw.server.address() as { port: number }).port;
  gateways.push(gw);
  return gw;
}

const base = generateSite({ ...demoShape, modbusBasePort: 0, opcuaShare: 0 });
const site: Site = {
  ...base,
  gateways: base.gateways.map((g) =>
    g.id === 'gw-2'
      ? { ...g, transport: 'modbus-tcp', endpoint: { host: '127.0.0.1', port: 0 }, pollIntervalS: 1 }
      : g,
  ),
};
const gw2Nodes = site.sensorNodes.filter((n) => n.gateway === 'gw-2');

function start(gw: ScriptedGateway) {
  const logs = captureLogs();
  const registry = new Registry();
  const store = new SensorStore(site, { timeScale: TIME_SCALE, logger: logs.logger });
  const source = new ModbusSource(site, store, {
    endpoints: { 'gw-2': { host: '127.0.0.1', port: gw.port } },
    timeScale: TIME_SCALE,
    timeoutMs: TIMEOUT_MS,
    logger: logs.logger,
    registry,
  });
  sources.push(source);
  source.start();
  const online = () => store.gatewayStates().find((g) => g.id === 'gw-2')?.online;
  /** A counter's value on /metrics, from the registry's text. */
  const metric = async (name: string, labels = '') => {
    const text = await registry.getSingleMetricAsString(name);
    const m = new RegExp(`^${name}${labels.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
    return Number(m?.[1]);
  };
  return { store, source, logs, online, metric };
}

describe('sensor polling against a dead or slow Modbus gateway', () => {
  it('a gateway that never answers: offline at the deadline, one request per connection, retried with backoff', async () => {
    expect(gw2Nodes.length).toBeGreaterThan(2);
    const gw = await scriptedGateway(undefined);
    const { source, logs, online, metric } = start(gw);
    await waitFor('a first connection', () => gw.accepts.length > 0);
    const firstMs = gw.accepts[0]!;
    await waitFor('gw-2 offline', () => online() === false, { timeoutMs: 5_000, intervalMs: 5 });
    // One deadline, not one per node: the first request that times out ends the poll.
    expect(performance.now() - firstMs).toBeLessThan(TIMEOUT_MS * (gw2Nodes.length - 1));
    const offline = logs.parsed().find((l) => l.msg === 'sensor gateway offline');
    expect(offline?.reason).toMatch(/COOLCTL_E_DEVICE_TIMEOUT.*no answer within 100 ms/);

    // Watch the retries for 4 s: at a 20 ms interval and a 100 ms deadline, retrying at every
    // interval would connect ~33 times, at even gaps; the backoff (100 ms doubling, ≤ 3 s) about 6,
    // each gap longer than the one before.
    const watchStart = gw.accepts.length;
    const t0 = performance.now();
    await waitFor('4 s of retries', () => performance.now() - t0 > 4_000, {
      timeoutMs: 6_000,
      intervalMs: 50,
    });
    const tries = gw.accepts.slice(watchStart - 1);
    expect(tries.length - 1).toBeLessThanOrEqual(10);
    const gaps = tries.slice(1).map((t, i) => t - tries[i]!);
    expect(Math.max(...gaps.slice(-2))).toBeGreaterThan(3 * Math.min(...gaps.slice(0, 2)));
    // Every connection carried exactly one request: after a timeout it is never used again.
    expect(gw.requests.every((n) => n <= 1)).toBe(true);
    expect(source.counters.newReports).toBe(0);

    // The gateway comes back: seen within the backoff's cap, and its nodes' readings arrive.
    gw.answerAfterMs = 0;
    await waitFor('gw-2 online again', () => online() === true, { timeoutMs: 5_000 });
    await waitFor('reports', () => source.counters.newReports >= gw2Nodes.length);
    expect(source.counters.malformed).toBe(0);
    // The same story on /metrics: every failed poll, every connection, the reports.
    expect(await metric('coolctl_sensor_modbus_polls_total', '{outcome="failed"}')).toBeGreaterThanOrEqual(
      tries.length,
    );
    expect(await metric('coolctl_sensor_modbus_connects_total')).toBeGreaterThanOrEqual(tries.length + 1);
    expect(
      await metric('coolctl_sensor_modbus_polls_total', '{outcome="new_report"}'),
    ).toBeGreaterThanOrEqual(gw2Nodes.length);
  });

  it('a gateway that answers after the deadline: no late answer is taken, and a fast one is fine again', async () => {
    const gw = await scriptedGateway(TIMEOUT_MS + 60);
    const { store, source, online } = start(gw);
    await waitFor('gw-2 offline', () => online() === false, { timeoutMs: 5_000 });
    await waitFor('three timed-out connections', () => gw.accepts.length >= 3, { timeoutMs: 5_000 });
    // Each late answer arrived on a connection already destroyed: none reached the store.
    expect(source.counters.newReports).toBe(0);
    expect(store.sensor(gw2Nodes[0]!.id, 'inlet-top')?.value ?? null).toBeNull();
    expect(gw.requests.every((n) => n <= 1)).toBe(true);

    gw.answerAfterMs = TIMEOUT_MS / 4;
    await waitFor('gw-2 online', () => online() === true, { timeoutMs: 5_000 });
    const reading = await waitFor(
      'a reading',
      () => store.sensor(gw2Nodes[0]!.id, 'inlet-top')?.value ?? null,
    );
    expect(reading).toBe(22.5);
    expect(source.counters.malformed).toBe(0);
  });
});
