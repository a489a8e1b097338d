// Sensor ingest over real MQTT from the simulator's mesh: readings reach every control group's
// view; each sim fault raises the right flag and verdict and clearing it clears them; bad payloads
// published by a stranger are counted and dropped while the real readings keep flowing.
import mqtt from 'mqtt';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fault } from '../../firmware-sim/faults.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import { MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';

// 20× time: a node reports every 0.5 s of wall time, so "stale after 3 intervals" is 1.5 s.
const TIME_SCALE = 20;
const site = generateSite({ ...demoShape, modbusBasePort: 0, opcuaShare: 0 });
const registry = new Registry();
let sim: Simulation;
let store: SensorStore;
let source: MqttSource;
let stranger: mqtt.MqttClient;

beforeAll(async () => {
  sim = new Simulation({ site, seed: 3, ephemeralPorts: true, logger: quietLogger, timeScale: TIME_SCALE });
  await sim.start();
  store = new SensorStore(site, { timeScale: TIME_SCALE, logger: quietLogger, registry });
  source = new MqttSource(site, store, { url: sim.brokerUrl, logger: quietLogger });
  source.start();
  await source.waitConnected(10_000);
  stranger = await mqtt.connectAsync(sim.brokerUrl, { reconnectPeriod: 0 });
}, 120_000);

afterAll(async () => {
  await stranger?.endAsync(true);
  await source?.stop();
  await sim?.stop();
});

const fault = (f: Fault) => sim.applyFaults([f]);
const flagsOf = (node: string, sensor: string) => store.sensor(node, sensor)?.flags ?? [];
const zone1 = site.controlGroups[0]!;
const gw1Groups = site.controlGroups.filter((g) =>
  g.sensorNodes.every((n) => site.sensorNodes.find((x) => x.id === n)?.gateway === 'gw-1'),
);

describe('sensor ingest over MQTT', () => {
  it('fills every group view from the mesh, and the view matches the hall', async () => {
    // every sensor heard from (not just the 80 % an ok verdict needs), so the hottest rack is in the view
    await waitFor(
      'every group fully covered',
      () => site.controlGroups.every((g) => store.view(g.id).coverage === 1),
      { timeoutMs: 20_000 },
    );
    for (const g of site.controlGroups) {
      const v = store.view(g.id);
      expect(v.verdict).toBe('ok');
      expect(v.coverage).toBeGreaterThanOrEqual(0.8);
      // the truth: the hottest top inlet of the group's racks, as the thermal model has it
      const racks = new Set(g.sensorNodes.map((n) => site.sensorNodes.find((x) => x.id === n)!.rack));
      const truth = Math.max(...[...racks].map((r) => sim.model.readRack(r).inletTopC));
      expect(Math.abs(v.inletMaxC! - truth)).toBeLessThan(0.6);
      expect(v.humidityPct).toBeGreaterThan(20);
      expect(v.dewPointC).toBeGreaterThan(6);
      expect(v.dewPointC).toBeLessThan(10); // the site's supply-air dew point is 8 °C
    }
    expect(store.counters.readings.mqtt).toBeGreaterThan(100);
    expect(await registry.getSingleMetricAsString('coolctl_sensor_readings_total')).toMatch(
      /source="mqtt"} \d+/,
    );
  });

  it('stuck: flagged after repeated identical values, cleared when the sensor moves again', async () => {
    const node = zone1.sensorNodes[0]!;
    await fault({ fault: 'sensor-stuck', node, sensor: 'inlet-top' });
    await waitFor('stuck flag', () => flagsOf(node, 'inlet-top').includes('stuck'), { timeoutMs: 15_000 });
    expect(store.sensor(node, 'inlet-top')!.quality).toBe('bad');
    expect(flagsOf(node, 'inlet-middle')).not.toContain('stuck');
    await fault({ fault: 'sensor-stuck', node, sensor: 'inlet-top', clear: true });
    await waitFor('stuck flag to clear', () => !flagsOf(node, 'inlet-top').includes('stuck'), {
      timeoutMs: 15_000,
    });
  });

  it('out of range: the raw 150 °C is flagged and never reaches the group view', async () => {
    const node = zone1.sensorNodes[1]!;
    await fault({ fault: 'sensor-out-of-range', node, sensor: 'inlet-top', value: 150 });
    await waitFor('out-of-range flag', () => flagsOf(node, 'inlet-top').includes('out-of-range'), {
      timeoutMs: 10_000,
    });
    expect(store.view(zone1.id).inletMaxC).toBeLessThan(40);
    await fault({ fault: 'sensor-out-of-range', node, sensor: 'inlet-top', clear: true });
    await waitFor('out-of-range to clear', () => flagsOf(node, 'inlet-top').length === 0, {
      timeoutMs: 15_000,
    });
  });

  it('noisy: a sensor with extra noise is flagged and distrusted, then trusted again', async () => {
    const node = zone1.sensorNodes[2]!;
    await fault({ fault: 'sensor-noisy', node, sensor: 'inlet-middle', sigma: 4 });
    await waitFor('noisy flag', () => flagsOf(node, 'inlet-middle').includes('noisy'), { timeoutMs: 15_000 });
    await fault({ fault: 'sensor-noisy', node, sensor: 'inlet-middle', clear: true });
    await waitFor(
      'noisy to clear',
      () => !flagsOf(node, 'inlet-middle').some((f) => f === 'noisy' || f === 'spike'),
      { timeoutMs: 20_000 },
    );
  });

  it('dead: a silent node goes stale; a whole group of dead nodes makes the group blind, then ok again', async () => {
    const node = zone1.sensorNodes[3]!;
    await fault({ fault: 'sensor-dead', node, sensor: 'inlet-bottom' });
    await waitFor('stale flag', () => flagsOf(node, 'inlet-bottom').includes('stale'), { timeoutMs: 10_000 });
    expect(flagsOf(node, 'inlet-top')).not.toContain('stale');
    await sim.applyFaults(zone1.sensorNodes.map((n) => ({ fault: 'sensor-dead', node: n }) as Fault));
    await waitFor('zone-1 blind, every inlet stale', () => store.view(zone1.id).goodInletSensors === 0, {
      timeoutMs: 10_000,
    });
    expect(store.view(zone1.id).verdict).toBe('blind');
    expect(store.view(zone1.id).inletMaxC).toBeNull();
    // one group's blindness is its own: the others are ok (polled: on a loaded machine one of their
    // nodes' reports may be a moment late, and a rack unheard makes its group degraded)
    await waitFor(
      'the other groups ok',
      () => site.controlGroups.slice(1).every((g) => store.view(g.id).verdict === 'ok'),
      { timeoutMs: 10_000 },
    );
    expect(store.view(zone1.id).verdict).toBe('blind');
    await sim.applyFaults(
      zone1.sensorNodes.map((n) => ({ fault: 'sensor-dead', node: n, clear: true }) as Fault),
    );
    await fault({ fault: 'sensor-dead', node, sensor: 'inlet-bottom', clear: true });
    await waitFor('zone-1 ok again', () => store.view(zone1.id).verdict === 'ok', { timeoutMs: 10_000 });
  });

  it('gateway down: its last will flags its nodes at once and blinds the groups behind it', async () => {
    expect(gw1Groups.length).toBeGreaterThan(0);
    await fault({ fault: 'gateway-down', gateway: 'gw-1' });
    await waitFor(
      'gw-1 offline',
      () => store.gatewayStates().find((g) => g.id === 'gw-1')?.online === false,
      { timeoutMs: 10_000 },
    );
    const gw1Node = site.sensorNodes.find((n) => n.gateway === 'gw-1')!;
    expect(flagsOf(gw1Node.id, 'inlet-top')).toContain('gateway-offline');
    for (const g of gw1Groups) expect(store.view(g.id).verdict).toBe('blind');
    await fault({ fault: 'gateway-down', gateway: 'gw-1', clear: true });
    await waitFor(
      'gw-1 online and its groups ok',
      () => gw1Groups.every((g) => store.view(g.id).verdict === 'ok'),
      { timeoutMs: 15_000 },
    ).catch((err) => {
      throw new Error(
        `${err.message}: ${JSON.stringify({ gws: store.gatewayStates(), views: gw1Groups.map((g) => store.view(g.id)), sim: sim.state().gateways, nodes: store.nodeHealth().slice(0, 3) })}`,
      );
    });
  });

  it('packet loss: nodes behind a lossy mesh are flagged lossy, and the flag clears', async () => {
    await fault({ fault: 'packet-loss', pct: 85 });
    await waitFor('a lossy node', () => store.nodeHealth().some((n) => n.flags.includes('lossy')), {
      timeoutMs: 20_000,
    });
    await fault({ fault: 'packet-loss', clear: true });
    await waitFor('no lossy node', () => store.nodeHealth().every((n) => !n.flags.includes('lossy')), {
      timeoutMs: 30_000,
    });
  });

  it('counts and drops bad payloads from the wire, and the real readings keep flowing', async () => {
    const node = site.sensorNodes[5]!;
    const topic = (n: string, gw = node.gateway) => `coolctl/sim/gateway/${gw}/node/${n}/report`;
    const good = {
      node: node.id,
      gateway: node.gateway,
      seq: 1,
      readings: [{ sensor: 'inlet-top', kind: 'inlet-top', value: 21, unit: 'Cel' }],
    };
    const before = structuredClone(store.counters.drops);
    const readingsBefore = store.counters.readings.mqtt;
    const sends: [string, string | Buffer][] = [
      [topic(node.id), '{"node": "N00'], // truncated JSON
      [topic(node.id), JSON.stringify({ ...good, seq: 'seven' })], // wrong type
      [topic(node.id), Buffer.alloc(40_000, 0x7b)], // too large for a report, small enough to read
      [topic('N9999'), JSON.stringify({ ...good, node: 'N9999' })], // unknown node
      [topic(node.id, 'gw-x'), JSON.stringify(good)], // topic says another gateway
    ];
    for (const [t, p] of sends) await stranger.publishAsync(t, p);
    await waitFor('the five drops to be counted', () => {
      const d = store.counters.drops;
      return (
        d['malformed-json'] > before['malformed-json'] &&
        d.schema > before.schema &&
        d['too-large'] > before['too-large'] &&
        d['unknown-node'] > before['unknown-node'] &&
        d['topic-mismatch'] > before['topic-mismatch']
      );
    });
    // a replay of the node's current report is a duplicate; a flood is cut off by the rate limit
    const lastSeq = store.nodeHealth().find((n) => n.node === node.id)!.lastSeq;
    await stranger.publishAsync(topic(node.id), JSON.stringify({ ...good, seq: lastSeq }));
    await waitFor('the replay to be dropped', () => store.counters.drops.duplicate > before.duplicate);
    const flood = Array.from({ length: 400 }, (_, i) =>
      stranger.publishAsync(topic(node.id), JSON.stringify({ ...good, seq: lastSeq + 1000 + i })),
    );
    await Promise.all(flood);
    await waitFor(
      'the flood to be rate-limited',
      () => store.counters.drops['rate-limited'] > before['rate-limited'] + 100,
    );
    expect(await registry.getSingleMetricAsString('coolctl_sensor_reports_dropped_total')).toMatch(
      /reason="rate-limited"} \d+/,
    );
    // everybody else is unaffected
    const other = site.controlGroups.at(-1)!;
    await waitFor('readings still arriving', () => store.counters.readings.mqtt > readingsBefore + 50);
    // a group at 20x time is stale after 1.5 s: a moment's CPU starvation of this shared machine can
    // make it degraded for an instant, so it must be ok again within a few seconds, not at one sample
    await waitFor('the last group ok', () => store.view(other.id).verdict === 'ok', { timeoutMs: 5000 });
    expect(source.counters.dropped['handler-error']).toBe(0);
  });
});
