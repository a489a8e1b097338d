// A broker that breaks the protocol (rogue-broker.ts, on loopback). QoS 2 PUBLISHes to a QoS 1
// subscriber, never released, are refused from their header: counted, logged, the connection closed,
// and none is kept waiting for a PUBREL (mqtt.js kept each one: 3 000 of 60 KB grew the controller
// by 210 MB, up to ~4 GB at 65 535 ids). Garbage statuses, statuses of unknown gateways and topics
// nobody subscribed to are counted by reason in /metrics and logged at most once per reason every
// 10 s, with the wire's text clipped (they were one warning each, or nothing, and no metric).
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { waitFor } from '../helpers.ts';
import { captureLogs } from '../support/log-lines.ts';
import { type RogueBroker, startRogueBroker } from './rogue-broker.ts';

const site = generateSite(demoShape);
const node = site.sensorNodes[0]!;
const reportTopic = `coolctl/sim/gateway/${node.gateway}/node/${node.id}/report`;
const statusTopic = `coolctl/sim/gateway/${node.gateway}/status`;

const report = (seq: number) =>
  Buffer.from(
    JSON.stringify({
      node: node.id,
      gateway: node.gateway,
      seq,
      readings: [{ sensor: 'inlet-top', kind: 'inlet-top', value: 21 + seq / 100 }],
    }),
  );

let broker: RogueBroker | undefined;
const sources: MqttSource[] = [];

afterEach(async () => {
  await Promise.all(sources.splice(0).map((s) => s.stop()));
  await broker?.close();
  broker = undefined;
});

function controller(url: string) {
  const logs = captureLogs({ node: 'ctl-1' });
  const registry = new Registry();
  const store = new SensorStore(site, { logger: logs.logger.child({ component: 'sensors' }) });
  const source = new MqttSource(site, store, {
    url,
    logger: logs.logger.child({ component: 'mqtt' }),
    registry,
  });
  sources.push(source);
  source.start();
  return { logs, registry, store, source };
}

/** What mqtt.js holds for PUBRELs that have not come. */
function heldForPubrel(source: MqttSource): number {
  const client = (
    source as unknown as { client: { incomingStore: { _inflights: Map<number, unknown> | null } } }
  ).client;
  return client.incomingStore._inflights?.size ?? 0;
}

describe('a rogue MQTT broker', () => {
  it('sends QoS 2 to a QoS 1 subscriber: refused from the header, none kept, ingest goes on after a reconnect', async () => {
    broker = await startRogueBroker(async (c) => {
      if (c.n === 1) {
        await c.send({ cmd: 'publish', topic: reportTopic, payload: report(1), qos: 0 });
        const payload = Buffer.alloc(60_000, 0x20);
        for (let id = 1; id <= 200; id++) {
          const sent = await c.send({ cmd: 'publish', topic: reportTopic, payload, qos: 2, messageId: id });
          if (!sent) break;
        }
      } else {
        await c.send({ cmd: 'publish', topic: reportTopic, payload: report(2), qos: 0 });
        await c.send({ cmd: 'publish', topic: reportTopic, payload: report(3), qos: 1, messageId: 7 });
      }
    });
    const { logs, registry, store, source } = controller(broker.url);
    await waitFor('the QoS 2 publish refused', () => source.counters.refused['qos-not-granted'] === 1);
    expect(heldForPubrel(source)).toBe(0);
    const lastSeq = () => store.nodeHealth().find((h) => h.node === node.id)!.lastSeq;
    await waitFor('reconnected, and ingesting QoS 0 and 1 again', () => lastSeq() === 3);
    expect(source.counters.connects).toBe(2);
    expect(heldForPubrel(source)).toBe(0);
    // not one QoS 2 message was acknowledged, let alone delivered
    expect(broker.received.get('pubrec') ?? 0).toBe(0);
    expect(store.counters.drops['too-large'] + store.counters.drops['malformed-json']).toBe(0);

    const refused = logs.parsed().filter((l) => String(l.msg).startsWith('MQTT packet refused'));
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({
      level: 40,
      component: 'mqtt',
      reason: 'qos-not-granted',
      qos: 2,
      maxQos: 1,
      topic: reportTopic,
      reconnectMs: 1000,
    });
    const metric = await registry.getSingleMetricAsString('coolctl_sensor_mqtt_packets_refused_total');
    expect(metric).toMatch(/^coolctl_sensor_mqtt_packets_refused_total\{reason="qos-not-granted"\} 1$/m);
    expect(metric).toMatch(/^coolctl_sensor_mqtt_packets_refused_total\{reason="too-large"\} 0$/m);
  }, 30_000);

  it('sends garbage statuses and stray topics: counted by reason, one line per reason, wire text clipped', async () => {
    const GARBAGE = 500;
    broker = await startRogueBroker(async (c) => {
      for (let i = 0; i < GARBAGE; i++) {
        const payload = Buffer.from(i % 2 ? '{"online":"yes"}' : 'not json');
        await c.send({ cmd: 'publish', topic: statusTopic, payload, qos: 0 });
      }
      await c.send({
        cmd: 'publish',
        topic: 'coolctl/sim/gateway/gw-zz/status',
        payload: '{"online":false}',
      });
      for (let i = 0; i < 3; i++)
        await c.send({ cmd: 'publish', topic: `elsewhere/${'t'.repeat(30_000)}`, payload: Buffer.from('x') });
      const reason = 'r'.repeat(60_000);
      await c.send({
        cmd: 'publish',
        topic: statusTopic,
        payload: JSON.stringify({ online: false, reason }),
      });
    });
    const { logs, registry, store, source } = controller(broker.url);
    await waitFor('every message handled', () => source.counters.messages === GARBAGE + 5);
    await waitFor(
      'the gateway offline',
      () => !store.gatewayStates().find((g) => g.id === node.gateway)!.online,
    );

    const metric = await registry.getSingleMetricAsString('coolctl_sensor_mqtt_messages_dropped_total');
    for (const [reason, n] of [
      ['malformed-status', GARBAGE],
      ['unknown-gateway', 1],
      ['unroutable-topic', 3],
      ['handler-error', 0],
    ] as const)
      expect(metric).toMatch(
        new RegExp(`^coolctl_sensor_mqtt_messages_dropped_total\\{reason="${reason}"\\} ${n}$`, 'm'),
      );
    expect(source.counters.dropped['malformed-status']).toBe(GARBAGE);

    const dropped = logs.parsed().filter((l) => l.msg === 'sensor MQTT message dropped');
    expect(dropped.map((l) => l.reason)).toEqual(['malformed-status', 'unknown-gateway', 'unroutable-topic']);
    expect(dropped[0]).toMatchObject({ component: 'mqtt', topic: statusTopic, notLogged: 0 });
    expect(String(dropped[2]!.topic)).toMatch(/^elsewhere\/t+… \(30010 chars\)$/);
    const offline = logs.parsed().find((l) => l.msg === 'sensor gateway offline')!;
    expect(offline.reason).toMatch(/^r{120}… \(60000 chars\)$/);
    expect(Math.max(...logs.lines.map((l) => l.length))).toBeLessThan(1000);
  }, 30_000);
});
