// One oversized publish on a report topic, through a real broker in its own process (mosquitto):
// the controller's MQTT 3.1.1 client refuses the packet from its header, before buffering it (its
// memory grows by a small fraction of the packet), counts it, logs it once with the topic and the
// announced size, reconnects and ingests what follows; a second one in a row doubles the wait.
// An MQTT 5 client announces its Maximum Packet Size, and the broker never sends it the packet.
import net from 'node:net';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { MAX_MQTT_PACKET_BYTES, MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { waitFor } from '../helpers.ts';
import { captureLogs } from '../support/log-lines.ts';
import { remainingLength } from '../support/mqtt-frames.ts';
import { mosquittoWithPublisher } from './mosquitto.ts';

const site = generateSite(demoShape);
const node = site.sensorNodes[0]!;
const reportTopic = `coolctl/sim/gateway/${node.gateway}/node/${node.id}/report`;
const BIG_BYTES = 128 * 1024 * 1024;

const mosquitto = mosquittoWithPublisher();

/**
 * Publishes a QoS 0 message of `payloadBytes` zero bytes on `topic` over a raw connection, written
 * 1 MB at a time from one buffer (with backpressure): the sender holds no copy of the packet.
 */
async function publishHuge(port: number, topic: string, payloadBytes: number): Promise<void> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const id = Buffer.from('huge-sender');
  const connectBody = Buffer.concat([
    Buffer.from([0, 4]),
    Buffer.from('MQTT'),
    Buffer.from([4, 0x02, 0, 30, 0, id.length]),
    id,
  ]);
  socket.write(Buffer.concat([Buffer.from([0x10]), remainingLength(connectBody.length), connectBody]));
  await new Promise<void>((resolve, reject) => {
    socket.once('data', (b: Buffer) =>
      b[0] === 0x20 && b[3] === 0 ? resolve() : reject(new Error('no CONNACK')),
    );
    socket.once('error', reject);
  });
  const t = Buffer.from(topic);
  const remaining = 2 + t.length + payloadBytes;
  socket.write(
    Buffer.concat([
      Buffer.from([0x30]),
      remainingLength(remaining),
      Buffer.from([t.length >> 8, t.length & 0xff]),
      t,
    ]),
  );
  const chunk = Buffer.alloc(1024 * 1024);
  for (let left = payloadBytes; left > 0; left -= chunk.length) {
    const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
    if (!socket.write(piece)) await new Promise((resolve) => socket.once('drain', resolve));
  }
  // a PINGREQ after the publish: its answer says the broker has read the whole packet
  await new Promise<void>((resolve, reject) => {
    socket.removeAllListeners('data');
    socket.on('data', (b: Buffer) => {
      if (b.includes(0xd0)) resolve();
    });
    socket.once('error', reject);
    socket.write(Buffer.from([0xc0, 0x00]));
  });
  socket.destroy();
}

async function report(seq: number): Promise<void> {
  await mosquitto.publisher().publishAsync(
    reportTopic,
    JSON.stringify({
      node: node.id,
      gateway: node.gateway,
      seq,
      readings: [{ sensor: 'inlet-top', kind: 'inlet-top', value: 20 + seq / 100 }],
    }),
  );
}

function memoryMb(): number {
  const m = process.memoryUsage();
  return (m.heapUsed + m.external + m.arrayBuffers) / 1e6;
}

describe('an oversized MQTT packet', () => {
  it('is refused before it is buffered, counted and logged; ingest goes on after a reconnect', async () => {
    const logs = captureLogs({ node: 'ctl-1' });
    const registry = new Registry();
    const store = new SensorStore(site, { logger: logs.logger.child({ component: 'sensors' }) });
    const v4 = new MqttSource(site, store, {
      url: mosquitto.broker().url,
      logger: logs.logger.child({ component: 'mqtt' }),
      registry,
    });
    const store5 = new SensorStore(site);
    const v5 = new MqttSource(site, store5, { url: mosquitto.broker().url, protocolVersion: 5 });
    try {
      v4.start();
      v5.start();
      await Promise.all([v4.waitConnected(10_000), v5.waitConnected(10_000)]);
      const lastSeq = (s: SensorStore) => s.nodeHealth().find((h) => h.node === node.id)!.lastSeq;
      await report(1);
      await waitFor('the first report in both stores', () => lastSeq(store) === 1 && lastSeq(store5) === 1);

      const baseMb = memoryMb();
      let peakMb = baseMb;
      const sampler = setInterval(() => {
        peakMb = Math.max(peakMb, memoryMb());
      }, 5);
      try {
        await publishHuge(mosquitto.broker().port, reportTopic, BIG_BYTES);
        await waitFor('the MQTT 3.1.1 client to refuse the packet', () => v4.counters.refusedPackets === 1, {
          timeoutMs: 20_000,
        });
      } finally {
        clearInterval(sampler);
      }
      peakMb = Math.max(peakMb, memoryMb());
      // Buffered, the packet alone would be 134 MB; refused from its header, a read or two (64 KB).
      expect(peakMb - baseMb).toBeLessThan(BIG_BYTES / 1e6 / 8);

      expect(await registry.getSingleMetricAsString('coolctl_sensor_mqtt_packets_refused_total')).toMatch(
        /^coolctl_sensor_mqtt_packets_refused_total\{reason="too-large"\} 1$/m,
      );
      const refusals = logs.parsed().filter((l) => String(l.msg).startsWith('MQTT packet refused'));
      expect(refusals).toHaveLength(1);
      expect(refusals[0]).toMatchObject({
        level: 40,
        component: 'mqtt',
        reason: 'too-large',
        topic: reportTopic,
        announcedBytes: 1 + 4 + 2 + reportTopic.length + BIG_BYTES,
        maxBytes: MAX_MQTT_PACKET_BYTES,
      });

      // reconnected (after a second), and what follows is ingested
      await waitFor('reconnected', () => v4.counters.connects === 2 && v4.connected, { timeoutMs: 10_000 });
      for (let seq = 2; seq <= 4; seq++) await report(seq);
      await waitFor(
        'reports after the refusal ingested',
        () => lastSeq(store) === 4 && lastSeq(store5) === 4,
      ).catch((err: Error) => {
        throw new Error(`${err.message}: ${JSON.stringify([lastSeq(store), lastSeq(store5), v4.counters])}`);
      });
      // the MQTT 5 client never saw the packet: the broker kept it from a client that said its limit
      expect(v5.counters.refusedPackets).toBe(0);
      expect(v5.counters.connects).toBe(1);
      expect(store.counters.drops['too-large'] + store5.counters.drops['too-large']).toBe(0);

      // a second one right after: refused too, and the next attempt waits twice as long
      await publishHuge(mosquitto.broker().port, reportTopic, 1024 * 1024);
      await waitFor('the second refusal', () => v4.counters.refusedPackets === 2, { timeoutMs: 10_000 });
      const second = logs.parsed().filter((l) => String(l.msg).startsWith('MQTT packet refused'));
      expect(second.map((l) => l.reconnectMs)).toEqual([1000, 2000]);
      const refusedAt = performance.now();
      await waitFor('reconnected again', () => v4.counters.connects === 3 && v4.connected, {
        timeoutMs: 10_000,
      });
      expect(performance.now() - refusedAt).toBeGreaterThan(1500);
      await report(5);
      await waitFor('ingesting again', () => lastSeq(store) === 5);
    } finally {
      await Promise.all([v4.stop(), v5.stop()]);
    }
  }, 60_000);
});
