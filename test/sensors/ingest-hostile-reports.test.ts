// Reports that parse but lie, through a real broker (the simulator's aedes) into a real MqttSource:
// a retained report of unknown age at (re)connect, a report whose gateway or rack is not the site's,
// a node clock far ahead, and a catalogue of absurd payloads and topics. Each is refused (or its
// lie ignored) with a counter and one log line; a good report beside a bad one still counts; no
// lie reads as a fresh value.
import mqtt from 'mqtt';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { type BrokerHandle, startBroker } from '../../firmware-sim/mesh/broker.ts';
import type { SensorNode } from '../../src/config/site-schema.ts';
import { MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { waitFor } from '../helpers.ts';
import { captureLogs } from '../support/log-lines.ts';

const site = generateSite(demoShape);
const n1 = site.sensorNodes[0]!;
const n2 = site.sensorNodes.find((n) => n.gateway !== n1.gateway)!;
const n3 = site.sensorNodes.find((n) => n.gateway === n1.gateway && n.rack !== n1.rack)!;
const inlet = n1.sensors.find((s) => s.kind === 'inlet-top')!.id;
const topicOf = (gw: string, node: string) => `coolctl/sim/gateway/${gw}/node/${node}/report`;

let broker: BrokerHandle;
let gateway: mqtt.MqttClient;

beforeAll(async () => {
  broker = await startBroker({ host: '127.0.0.1', port: 0 });
  gateway = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
});

afterAll(async () => {
  await gateway?.endAsync(true);
  await broker?.close();
});

/** A report of `n` as its gateway publishes it, inlets at `inletC`, with `fields` over the defaults. */
function report(n: SensorNode, seq: number, inletC: number, fields: Record<string, unknown> = {}): string {
  return JSON.stringify({
    node: n.id,
    gateway: n.gateway,
    rack: n.rack,
    seq,
    readings: n.sensors.map((s) => ({
      sensor: s.id,
      kind: s.kind,
      value: s.kind === 'humidity' ? 45 : inletC,
    })),
    ...fields,
  });
}

async function controller() {
  const logs = captureLogs();
  const registry = new Registry();
  const store = new SensorStore(site, { logger: logs.logger, registry });
  const source = new MqttSource(site, store, { url: broker.url, logger: logs.logger });
  source.start();
  await source.waitConnected(10_000);
  const publish = async (items: readonly (readonly [string, string | Buffer])[]) => {
    const before = source.counters.messages;
    for (const [topic, payload] of items) await gateway.publishAsync(topic, payload as Buffer);
    await waitFor('every message handled', () => source.counters.messages >= before + items.length);
  };
  const lines = (msg: string) => logs.parsed().filter((l) => l.msg === msg);
  return { store, source, registry, publish, lines, stop: () => source.stop() };
}

describe('MQTT reports that parse but lie', () => {
  it('a retained report, however old, is never applied at (re)connect; a live one beside it is', async () => {
    // A gateway (misconfigured, or someone who can publish) retained a report long ago.
    await gateway.publishAsync(topicOf(n1.gateway, n1.id), report(n1, 7, 19), { qos: 1, retain: true });
    try {
      for (let connect = 1; connect <= 2; connect++) {
        const c = await controller();
        try {
          await c.publish([[topicOf(n2.gateway, n2.id), report(n2, connect, 22)]]);
          await waitFor('the retained report handled', () => c.store.counters.drops.retained === 1);
          // It would have read as a good 19 °C received just now.
          expect(c.store.sensor(n1.id, inlet)!.value).toBeNull();
          expect(c.store.sensor(n1.id, inlet)!.quality).toBe('bad');
          expect(c.store.sensor(n2.id, inlet)!.value).toBe(22);
          expect(c.store.counters.reports).toBe(1);
          expect(c.lines('sensor report dropped').filter((l) => l.reason === 'retained')).toHaveLength(1);
          expect(await c.registry.getSingleMetricAsString('coolctl_sensor_reports_dropped_total')).toContain(
            'reason="retained"} 1',
          );
          // The same node's live reports still count.
          await c.publish([[topicOf(n1.gateway, n1.id), report(n1, 8, 23)]]);
          expect(c.store.sensor(n1.id, inlet)!.value).toBe(23);
        } finally {
          await c.stop();
        }
      }
    } finally {
      await gateway.publishAsync(topicOf(n1.gateway, n1.id), '', { qos: 1, retain: true });
    }
  });

  it('a report that names another gateway or rack than the site is refused; the good one beside it counts', async () => {
    const c = await controller();
    try {
      await c.publish([
        [topicOf(n1.gateway, n1.id), report(n1, 1, 30, { gateway: n2.gateway })],
        [topicOf(n1.gateway, n1.id), report(n1, 2, 31, { rack: n3.rack })],
        [topicOf(n3.gateway, n3.id), report(n3, 1, 22)],
      ]);
      expect(c.store.counters.drops['site-mismatch']).toBe(2);
      expect(c.store.sensor(n1.id, inlet)!.value).toBeNull();
      expect(c.store.sensor(n3.id, inlet)!.value).toBe(22);
      const dropped = c.lines('sensor report dropped').filter((l) => l.reason === 'site-mismatch');
      expect(dropped).toHaveLength(1);
      expect(dropped[0]!.detail).toContain(`says gateway ${n2.gateway}`);
      // The site's own words are taken: a report without a rack is fine.
      await c.publish([[topicOf(n1.gateway, n1.id), report(n1, 3, 24, { rack: undefined })]]);
      expect(c.store.sensor(n1.id, inlet)!.value).toBe(24);
    } finally {
      await c.stop();
    }
  });

  it('a node clock far ahead, or a time that is none, never passes for a reboot', async () => {
    const c = await controller();
    try {
      const now = Date.now();
      const at = (ms: number) => new Date(ms).toISOString();
      await c.publish([[topicOf(n1.gateway, n1.id), report(n1, 500, 22, { sampledAt: at(now) })]]);
      // A low seq "sampled" a year ahead: taken as a time, it was a reboot believed at once, its 40 °C
      // applied, and the node's true next report dropped as late.
      await c.publish([
        [topicOf(n1.gateway, n1.id), report(n1, 1, 40, { sampledAt: at(now + 365 * 86_400_000) })],
      ]);
      expect(c.store.sensor(n1.id, inlet)!.value).toBe(22);
      expect(c.store.nodeLastSeq(n1.id)).toBe(500);
      expect(c.store.counters.restarts).toBe(0);
      await c.publish([[topicOf(n1.gateway, n1.id), report(n1, 501, 23, { sampledAt: at(now + 1000) })]]);
      expect(c.store.sensor(n1.id, inlet)!.value).toBe(23);
      // A true reboot with a sane clock is still followed at once.
      await c.publish([[topicOf(n1.gateway, n1.id), report(n1, 1, 25, { sampledAt: at(now + 2000) })]]);
      expect(c.store.sensor(n1.id, inlet)!.value).toBe(25);
      expect(c.store.counters.restarts).toBe(1);
      // Not a time at all: the report is ordered by its seq alone.
      await c.publish([[topicOf(n1.gateway, n1.id), report(n1, 2, 24, { sampledAt: 'yesterday-ish' })]]);
      expect(c.store.sensor(n1.id, inlet)!.value).toBe(24);
      expect(c.store.counters.timesIgnored).toBe(2);
      expect(c.lines('sensor report time ignored; ordered by its seq alone')).toHaveLength(1);
      expect(await c.registry.getSingleMetricAsString('coolctl_sensor_report_times_ignored_total')).toContain(
        'coolctl_sensor_report_times_ignored_total 2',
      );
    } finally {
      await c.stop();
    }
  });

  it('absurd payloads and topics are each counted, and a good report between them still counts', async () => {
    const c = await controller();
    try {
      const t1 = topicOf(n1.gateway, n1.id);
      const good = (seq: number) => [topicOf(n3.gateway, n3.id), report(n3, seq, 20 + seq / 10)] as const;
      await c.publish([
        good(1),
        [t1, report(n1, 1, 1e308)], // applied, flagged out-of-range: never in a view
        good(2),
        [t1, report(n1, 2, 22).replace('{', `{"x":${'['.repeat(7000)}${']'.repeat(7000)},`)], // deep, unread field
        good(3),
        [
          t1,
          `{"node":"${n1.id}","gateway":"${n1.gateway}","seq":3,"readings":${'['.repeat(7000)}${']'.repeat(7000)}}`,
        ],
        good(4),
        [t1, `${'{"a":'.repeat(3400)}1${'}'.repeat(3400)}`], // over 16 KiB
        good(5),
        [t1, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(report(n1, 4, 22))])], // BOM
        good(6),
        [t1, Buffer.from(report(n1, 5, 22).replace(`"${inlet}"`, `"${inlet}\u00ff"`), 'latin1')], // bad UTF-8
        good(7),
        [topicOf(n1.gateway, `${n1.id}\u0000`), report(n1, 6, 22)], // NUL in a level
        good(8),
        [topicOf(n1.gateway, 'N'.repeat(60_000)), report(n1, 6, 22)], // a 60 KB level
        good(9),
        [topicOf(n2.gateway, n1.id), report(n1, 6, 22)], // the node on another gateway's topic
        good(10),
        // Duplicate keys: JSON.parse keeps the last, and the topic binds the node either way.
        [t1, report(n1, 7, 22).replace('{', `{"node":"${n2.id}","seq":4294967295,`)],
        good(11),
        [t1, `${report(n1, 8, 22).slice(0, -1)},"node":"${n2.id}"}`],
        good(12),
      ]);
      const d = c.store.counters.drops;
      expect(d['too-large']).toBe(1);
      expect(d['malformed-json']).toBe(1);
      expect(d.schema).toBe(1);
      expect(d['unknown-sensor']).toBe(1);
      expect(d['topic-mismatch']).toBe(4);
      expect(c.source.counters.dropped['handler-error']).toBe(0);
      expect(c.store.nodeLastSeq(n3.id)).toBe(12);
      expect(c.store.sensor(n3.id, n3.sensors.find((s) => s.kind === 'inlet-top')!.id)!.value).toBe(21.2);
      // 1e308 was kept out of the view: the group's hottest inlet is a real one.
      const group = site.controlGroups.find((g) => g.sensorNodes.includes(n1.id))!;
      expect(c.store.view(group.id).inletMaxC).toBeLessThan(60);
      expect(c.store.nodeLastSeq(n1.id)).toBe(7);
      // One line per reason however many came.
      const reasons = c.lines('sensor report dropped').map((l) => l.reason);
      expect(reasons.length).toBe(new Set(reasons).size);
      for (const l of c.lines('sensor report dropped')) expect(JSON.stringify(l).length).toBeLessThan(2000);
    } finally {
      await c.stop();
    }
  });
});
