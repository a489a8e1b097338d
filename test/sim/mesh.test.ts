// The sensor mesh as a subscriber sees it: a real embedded broker on a free port, the mesh's gateways
// publishing over real MQTT connections, and a real mqtt client subscribed to coolctl/sim/#.
// The sim clock is driven by the test, so report timing is under its control.
import { connectAsync, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { type BrokerHandle, startBroker } from '../../firmware-sim/mesh/broker.ts';
import { type GatewayStatus, type NodeReport, SensorMesh } from '../../firmware-sim/mesh/sensor-mesh.ts';
import type { RackClimate } from '../../firmware-sim/thermal/types.ts';
import type { MeshSettings, Site } from '../../src/config/site-schema.ts';
import { ErrorCodes } from '../../src/errors.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const CLIMATE: RackClimate = {
  inletTopC: 24,
  inletMiddleC: 22,
  inletBottomC: 20,
  relativeHumidityPct: 45,
  subfloorPa: 12,
};
const REPORT_TOPIC = /^coolctl\/sim\/gateway\/(gw-\d+)\/node\/(N\d{4})\/report$/;
const STATUS_TOPIC = /^coolctl\/sim\/gateway\/(gw-\d+)\/status$/;

interface Received {
  topic: string;
  retain: boolean;
  body: unknown;
}

interface Harness {
  site: Site;
  broker: BrokerHandle;
  mesh: SensorMesh;
  sub: MqttClient;
  received: Received[];
  reports: () => NodeReport[];
  statuses: () => GatewayStatus[];
  clock: { simMs: number; running: boolean; ticks: number };
}

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function subscriber(url: string, into: Received[]): Promise<MqttClient> {
  const sub = await connectAsync(url, { reconnectPeriod: 0 });
  cleanups.push(() => sub.endAsync(true));
  sub.on('message', (topic, payload, packet) => {
    into.push({ topic, retain: packet.retain, body: JSON.parse(payload.toString()) });
  });
  await sub.subscribeAsync('coolctl/sim/#', { qos: 1 });
  return sub;
}

async function harness(mesh: Partial<MeshSettings>, seed = 42): Promise<Harness> {
  const base = generateSite(demoShape);
  const site: Site = {
    ...base,
    sensorNodes: base.sensorNodes.map((n) => ({ ...n, reportIntervalS: 1 })),
    mesh: { perHopLossPct: 0, perHopLatencyMs: 5, maxRetries: 3, batteryDrainPctPerReport: 0.01, ...mesh },
  };
  const broker = await startBroker({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => broker.close());
  const received: Received[] = [];
  const sub = await subscriber(broker.url, received);
  const clock = { simMs: 0, running: true, ticks: 0 };
  const racks = new Set(site.racks.map((r) => r.id));
  const meshUnderTest = new SensorMesh(
    site,
    (rack) => {
      if (!racks.has(rack)) throw new Error(`unknown rack ${rack}`);
      return CLIMATE;
    },
    { brokerUrl: broker.url, seed, simNowMs: () => clock.simMs, logger: quietLogger },
  );
  cleanups.push(() => meshUnderTest.stop());
  await meshUnderTest.start();
  // 100 sim ms every 20 wall ms: the sim runs 5× faster than the wall, like a sped-up simulation.
  const ticker = setInterval(() => {
    if (clock.running) clock.simMs += 100;
    meshUnderTest.tick();
    clock.ticks++;
  }, 20);
  cleanups.push(() => clearInterval(ticker));
  return {
    site,
    broker,
    mesh: meshUnderTest,
    sub,
    received,
    clock,
    reports: () => received.filter((m) => REPORT_TOPIC.test(m.topic)).map((m) => m.body as NodeReport),
    statuses: () => received.filter((m) => STATUS_TOPIC.test(m.topic)).map((m) => m.body as GatewayStatus),
  };
}

/** Each node's last seq now: reports with a higher seq were sampled after this moment. */
function seqSnapshot(h: Harness): Map<string, number> {
  return new Map(h.mesh.nodeStates().map((n) => [n.id, n.lastSeq]));
}

function lastSeqOf(h: Harness, node: string): number {
  return h.mesh.nodeStates().find((n) => n.id === node)!.lastSeq;
}

describe('sensor mesh over MQTT', () => {
  it('publishes every node report on its documented topic, with plausible readings and increasing seq', async () => {
    const h = await harness({ perHopLossPct: 0 });
    const nodeCount = h.site.sensorNodes.length;
    await waitFor('3 reports from every node', () => {
      const perNode = new Map<string, number>();
      for (const r of h.reports()) perNode.set(r.node, (perNode.get(r.node) ?? 0) + 1);
      return perNode.size === nodeCount && [...perNode.values()].every((c) => c >= 3);
    });

    const byNode = new Map(h.site.sensorNodes.map((n) => [n.id, n]));
    const seqs = new Map<string, number[]>();
    for (const m of h.received.filter((x) => REPORT_TOPIC.test(x.topic))) {
      const [, gw, node] = REPORT_TOPIC.exec(m.topic)!;
      const r = m.body as NodeReport;
      const cfg = byNode.get(r.node)!;
      expect(m.retain).toBe(false);
      expect(r.node).toBe(node);
      expect(r.gateway).toBe(gw);
      expect(r.gateway).toBe(cfg.gateway);
      expect(r.rack).toBe(cfg.rack);
      expect(r.hops).toBe(cfg.hops);
      expect(r.retries).toBe(0);
      expect(Number.isNaN(Date.parse(r.sampledAt))).toBe(false);
      expect(r.simTimeS).toBeGreaterThanOrEqual(0);
      expect(r.rssiDbm).toBeGreaterThanOrEqual(-100);
      expect(r.rssiDbm).toBeLessThanOrEqual(-30);
      expect(r.batteryPct).toBeGreaterThan(99);
      expect(r.batteryPct).toBeLessThan(100);
      expect(r.readings.map((x) => x.sensor)).toEqual(cfg.sensors.map((s) => s.id));
      for (const reading of r.readings) {
        // within 6 σ of the true climate at the rack
        const [truth, unit, tol] = {
          'inlet-top': [CLIMATE.inletTopC, 'Cel', 0.6],
          'inlet-middle': [CLIMATE.inletMiddleC, 'Cel', 0.6],
          'inlet-bottom': [CLIMATE.inletBottomC, 'Cel', 0.6],
          humidity: [CLIMATE.relativeHumidityPct, '%RH', 6],
          'subfloor-pressure': [CLIMATE.subfloorPa, 'Pa', 1.2],
        }[reading.kind] as [number, string, number];
        expect(reading.unit).toBe(unit);
        expect(Math.abs(reading.value - truth)).toBeLessThan(tol);
      }
      seqs.set(r.node, [...(seqs.get(r.node) ?? []), r.seq]);
    }
    for (const [node, list] of seqs) {
      // lossless and no duplicates: 1, 2, 3, … in arrival order
      expect(list, node).toEqual(list.map((_, i) => i + 1));
    }
    const s = h.mesh.stats();
    expect(s.lost).toBe(0);
    expect(s.duplicates).toBe(0);
    expect(s.publishErrors).toBe(0);
    expect(s.sent).toBe(s.delivered + s.inFlight);
  });

  it('reports on the sim clock: a frozen clock sends nothing', async () => {
    const h = await harness({});
    await waitFor('first reports', () => h.mesh.stats().sent > 0);
    h.clock.running = false;
    const sent = h.mesh.stats().sent;
    const ticks = h.clock.ticks;
    await waitFor('10 more ticks with the clock frozen', () => h.clock.ticks >= ticks + 10);
    expect(h.mesh.stats().sent).toBe(sent);
    h.clock.running = true;
    await waitFor('reports again', () => h.mesh.stats().sent > sent);
  });

  it('keeps each gateway online status retained for late subscribers', async () => {
    const h = await harness({});
    const late: Received[] = [];
    await subscriber(h.broker.url, late);
    const statuses = await waitFor('retained status of both gateways', () => {
      const s = late.filter((m) => STATUS_TOPIC.test(m.topic));
      return s.length >= h.site.gateways.length ? s : undefined;
    });
    for (const m of statuses) {
      const body = m.body as GatewayStatus;
      expect(m.retain).toBe(true);
      expect(body.online).toBe(true);
      expect(body.reason).toBe('connected');
      expect(body.nodes).toBe(h.site.sensorNodes.filter((n) => n.gateway === body.gateway).length);
      expect(Number.isNaN(Date.parse(body.at!))).toBe(false);
    }
    expect(h.mesh.gateways().every((g) => g.online)).toBe(true);
  });

  it('loses everything at 100 % packet loss and counts it', async () => {
    const h = await harness({});
    await waitFor('first reports', () => h.reports().length > 0);
    h.mesh.setPacketLoss(100);
    const before = seqSnapshot(h);
    const lost = h.mesh.stats().lost;
    await waitFor('40 more reports lost', () => h.mesh.stats().lost >= lost + 40);
    expect(h.reports().filter((r) => r.seq > before.get(r.node)!)).toHaveLength(0);
    h.mesh.setPacketLoss(null);
    await waitFor('reports again once loss is cleared', () => h.reports().length > 0);
  });

  it('delivers duplicates (same seq twice) and retries on a lossy mesh', async () => {
    const h = await harness({ perHopLossPct: 30, maxRetries: 3 }, 7);
    const dup = await waitFor('a duplicate seen by the subscriber', () => {
      const seen = new Set<string>();
      for (const r of h.reports()) {
        const key = `${r.node}#${r.seq}`;
        if (seen.has(key)) return key;
        seen.add(key);
      }
      return undefined;
    });
    expect(dup).toMatch(/^N\d{4}#\d+$/);
    const s = h.mesh.stats();
    expect(s.duplicates).toBeGreaterThan(0);
    expect(h.reports().some((r) => r.retries > 0)).toBe(true);
    expect(s.published).toBeGreaterThanOrEqual(s.delivered);
    await waitFor('some reports lost', () => h.mesh.stats().lost > 0);
  });

  it('a gateway going down sends its last will, silences its nodes, and comes back online', async () => {
    const h = await harness({});
    const gw = 'gw-1';
    const gwNodes = new Set(h.site.sensorNodes.filter((n) => n.gateway === gw).map((n) => n.id));
    expect(gwNodes.size).toBeGreaterThan(0);
    await waitFor('reports from gw-1', () => h.reports().some((r) => r.gateway === gw));

    h.mesh.setGatewayDown(gw, true);
    const will = await waitFor('the last will of gw-1', () =>
      h.statuses().find((s) => s.gateway === gw && !s.online),
    );
    expect(will).toEqual({
      online: false,
      gateway: gw,
      nodes: gwNodes.size,
      at: null,
      reason: 'connection-lost',
    });
    expect(h.mesh.gateways().find((g) => g.id === gw)?.online).toBe(false);

    const before = seqSnapshot(h);
    const lost = h.mesh.stats().lost;
    await waitFor('20 new reports via gw-2 and gw-1 nodes counted lost', () => {
      const viaGw2 = h.reports().filter((r) => r.gateway === 'gw-2' && r.seq > before.get(r.node)!).length;
      return viaGw2 >= 20 && h.mesh.stats().lost > lost;
    });
    expect(h.reports().filter((r) => gwNodes.has(r.node) && r.seq > before.get(r.node)!)).toHaveLength(0);

    // A late subscriber sees the retained will: the gateway is offline.
    const late: Received[] = [];
    await subscriber(h.broker.url, late);
    await waitFor('retained offline status', () =>
      late.some(
        (m) =>
          m.topic === `coolctl/sim/gateway/${gw}/status` && m.retain && !(m.body as GatewayStatus).online,
      ),
    );

    const mark = h.received.length;
    const beforeUp = seqSnapshot(h);
    h.mesh.setGatewayDown(gw, false);
    await waitFor('gw-1 online again', () =>
      h.received
        .slice(mark)
        .some((m) => m.topic === `coolctl/sim/gateway/${gw}/status` && (m.body as GatewayStatus).online),
    );
    await waitFor('new reports from gw-1 nodes', () =>
      h.reports().some((r) => gwNodes.has(r.node) && r.seq > beforeUp.get(r.node)!),
    );
    expect(h.mesh.gateways().find((g) => g.id === gw)?.online).toBe(true);
  });

  it('sensor faults: stuck repeats, dead drops, out-of-range shows the raw value, noisy spreads', async () => {
    const h = await harness({});
    const node = 'N0001'; // has inlet-top, inlet-middle, inlet-bottom, rh, subfloor
    expect(h.site.sensorNodes.find((n) => n.id === node)!.sensors).toHaveLength(5);
    await waitFor('a first report of N0001', () => h.reports().some((r) => r.node === node));

    h.mesh.setSensorFault(node, 'inlet-top', { kind: 'stuck' });
    h.mesh.setSensorFault(node, 'rh', { kind: 'dead' });
    h.mesh.setSensorFault(node, 'inlet-bottom', { kind: 'out-of-range', value: 150 });
    h.mesh.setSensorFault(node, 'subfloor', { kind: 'noisy', sigma: 20 });
    const fromSeq = lastSeqOf(h, node);
    const after = await waitFor('6 reports of N0001 after the faults', () => {
      const r = h.reports().filter((x) => x.node === node && x.seq > fromSeq);
      return r.length >= 6 ? r : undefined;
    });
    const values = (sensor: string) => after.map((r) => r.readings.find((x) => x.sensor === sensor)?.value);
    const top = values('inlet-top');
    expect(new Set(top).size).toBe(1);
    expect(Math.abs(top[0]! - CLIMATE.inletTopC)).toBeLessThan(0.6);
    expect(new Set(values('inlet-middle')).size).toBeGreaterThan(1); // a healthy sensor keeps moving
    expect(values('rh').every((v) => v === undefined)).toBe(true);
    expect(after.every((r) => r.readings.length === 4)).toBe(true);
    expect(values('inlet-bottom').every((v) => v === 150)).toBe(true);
    const subfloor = values('subfloor') as number[];
    expect(Math.max(...subfloor) - Math.min(...subfloor)).toBeGreaterThan(5);

    // all sensors dead: the node goes silent; cleared: it reports a full, healthy set again
    h.mesh.setSensorFault(node, '*', { kind: 'dead' });
    const silentSeq = lastSeqOf(h, node);
    const sent = h.mesh.stats().sent;
    await waitFor('other nodes keep reporting', () => h.mesh.stats().sent > sent + 100);
    expect(lastSeqOf(h, node)).toBe(silentSeq);

    h.mesh.setSensorFault(node, '*', null);
    const healthy = await waitFor('a healthy report of N0001', () =>
      h.reports().find((r) => r.node === node && r.seq > silentSeq),
    );
    expect(healthy.readings).toHaveLength(5);
    expect(healthy.readings.find((x) => x.sensor === 'inlet-bottom')!.value).toBeLessThan(25);
  });

  it('a graceful stop says offline (shutdown) rather than leaving the will to the broker', async () => {
    const h = await harness({});
    const mark = h.received.length;
    await h.mesh.stop();
    const offline = await waitFor('both gateways offline', () => {
      const s = h.received
        .slice(mark)
        .map((m) => m.body as GatewayStatus)
        .filter((b) => b.online === false);
      return s.length >= h.site.gateways.length ? s : undefined;
    });
    expect(offline.every((b) => b.reason === 'shutdown' && typeof b.at === 'string')).toBe(true);
    expect(h.mesh.gateways().every((g) => !g.online)).toBe(true);
  });

  it('fails to start with a clear error when the broker is unreachable', async () => {
    // a port that was just free: nothing listens there
    const broker = await startBroker({ host: '127.0.0.1', port: 0 });
    const url = broker.url;
    await broker.close();
    const mesh = new SensorMesh(generateSite(demoShape), () => CLIMATE, {
      brokerUrl: url,
      seed: 1,
      simNowMs: () => 0,
      logger: quietLogger,
    });
    cleanups.push(() => mesh.stop());
    await expect(mesh.start()).rejects.toMatchObject({
      code: ErrorCodes.STARTUP,
      message: expect.stringContaining(url),
    });
  });

  it('refuses bad fault arguments with a clear error', async () => {
    const h = await harness({});
    const expectInvalid = (fn: () => void, message: RegExp) => {
      expect(fn).toThrow(message);
      try {
        fn();
      } catch (err) {
        expect((err as { code: string }).code).toBe(ErrorCodes.FAULT_INVALID);
      }
    };
    expectInvalid(() => h.mesh.setSensorFault('N9999', '*', { kind: 'dead' }), /unknown sensor node "N9999"/);
    expectInvalid(
      () => h.mesh.setSensorFault('N0001', 'nope', { kind: 'dead' }),
      /unknown sensor "nope" on node N0001/,
    );
    expectInvalid(() => h.mesh.setSensorFault('N0001', '*', { kind: 'noisy', sigma: -1 }), /sigma > 0/);
    expectInvalid(
      () => h.mesh.setSensorFault('N0001', '*', { kind: 'melted' } as never),
      /unknown sensor fault kind "melted"/,
    );
    expectInvalid(
      () => h.mesh.setSensorFault('N0001', '*', { kind: 'out-of-range', value: Number.NaN }),
      /finite value/,
    );
    expectInvalid(() => h.mesh.setGatewayDown('gw-9', true), /unknown gateway "gw-9"/);
    expectInvalid(() => h.mesh.setPacketLoss(150), /0 to 100/);
    // nothing was changed by the refused calls
    await waitFor(
      'healthy reports continue',
      () => h.reports().filter((r) => r.node === 'N0001').length >= 2,
    );
    expect(h.reports().every((r) => r.readings.length >= 4)).toBe(true);
  });
});
