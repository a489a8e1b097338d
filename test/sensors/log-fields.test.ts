// The log lines of a real ingest run (MQTT source and sensor store on a real broker, with loggers
// made as the daemon makes them: `node` bound at the root, `component` per part) name each field
// once: a sensor node is `sensorNode`, never a second `node`. Read from the raw line text, since
// JSON.parse would keep one of two equal keys and hide the other.
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { type BrokerHandle, startBroker } from '../../firmware-sim/mesh/broker.ts';
import { MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { captureLogs, duplicateKeys, linesWithDuplicateKeys } from '../support/log-lines.ts';

const site = generateSite(demoShape);
const node = site.sensorNodes[3]!;
const topic = (n: string, gw = node.gateway) => `coolctl/sim/gateway/${gw}/node/${n}/report`;

let broker: BrokerHandle;
let gateway: mqtt.MqttClient;

beforeAll(async () => {
  broker = await startBroker({ host: '127.0.0.1', port: 0, logger: quietLogger });
  gateway = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
});

afterAll(async () => {
  await gateway?.endAsync(true);
  await broker?.close();
});

describe('log fields', () => {
  it('the duplicate-key check reads the raw text, at every depth', () => {
    expect(duplicateKeys('{"node":"a","x":{"node":"b"},"msg":"m"}')).toEqual([]);
    expect(duplicateKeys('{"node":"a","msg":"m","node":"b"}')).toEqual(['node']);
    expect(duplicateKeys('{"a":[{"k":1,"k":2}],"s":"\\"k\\":","b":{"c":{"d":1,"d":2}}}')).toEqual([
      'a[].k',
      'b.c.d',
    ]);
  });

  it('an ingest run writes no line with a key twice, and names a sensor node sensorNode', async () => {
    const logs = captureLogs({ app: 'coolctl', node: 'ctl-1' });
    const store = new SensorStore(site, { logger: logs.logger.child({ component: 'sensors' }) });
    const source = new MqttSource(site, store, {
      url: broker.url,
      logger: logs.logger.child({ component: 'mqtt' }),
    });
    try {
      source.start();
      await source.waitConnected(10_000);
      const good = (seq: number) =>
        JSON.stringify({
          node: node.id,
          gateway: node.gateway,
          seq,
          readings: [{ sensor: 'inlet-top', kind: 'inlet-top', value: 22 }],
        });
      // every kind of line ingest writes: drops of each reason, a node that restarted its count, a
      // gateway going offline and back, a malformed status, a refused packet
      const sends: [string, string | Buffer][] = [
        [topic(node.id), good(1000)],
        [topic(node.id), '{"node": "N00'],
        [topic(node.id), JSON.stringify({ node: node.id, gateway: node.gateway, seq: 'x', readings: [] })],
        [topic(node.id), Buffer.alloc(20_000, 0x7b)],
        [topic('N9999'), JSON.stringify({ ...JSON.parse(good(1)), node: 'N9999' })],
        [topic(node.id, 'gw-x'), good(1001)],
        [topic(node.id), good(1000)],
        [topic(node.id), good(1)],
        [topic(node.id), good(2)],
        [topic(node.id), good(3)],
        [
          topic(node.id),
          JSON.stringify({
            node: node.id,
            gateway: node.gateway,
            seq: 4,
            readings: [
              { sensor: 'nope', kind: 'inlet-top', value: 1 },
              { sensor: 'inlet-top', kind: 'humidity', value: 1 },
            ],
          }),
        ],
        [
          `coolctl/sim/gateway/${node.gateway}/status`,
          JSON.stringify({ online: false, reason: 'connection-lost' }),
        ],
        [`coolctl/sim/gateway/${node.gateway}/status`, 'not json'],
        [topic(node.id), good(5)],
      ];
      for (const [t, p] of sends) await gateway.publishAsync(t, p, { qos: 1 });
      await waitFor('the gateway back online after the offline status', () =>
        logs.lines.some((l) => l.includes('"sensor gateway online"')),
      );
      await gateway.publishAsync(topic(node.id), Buffer.alloc(100_000, 0x7b));
      await waitFor('the refused packet logged', () => source.counters.refusedPackets === 1);

      const msgs = new Set(logs.parsed().map((l) => l.msg));
      for (const m of [
        'sensor MQTT connected',
        'sensor report dropped',
        'sensor node restarted its sequence numbers',
        'sensor gateway offline',
        'sensor gateway online',
        'sensor MQTT message dropped',
        'MQTT packet refused before reading it; connection closed',
      ])
        expect(msgs).toContain(m);
      expect(linesWithDuplicateKeys(logs.lines)).toEqual([]);
      const dropped = logs.parsed().filter((l) => l.msg === 'sensor report dropped');
      expect(dropped.length).toBeGreaterThanOrEqual(6);
      expect(dropped.find((l) => l.reason === 'schema')).toMatchObject({
        node: 'ctl-1',
        sensorNode: node.id,
      });
    } finally {
      await source.stop();
    }
  });
});
