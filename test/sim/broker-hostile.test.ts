// The simulator's embedded MQTT broker (firmware-sim/mesh/broker.ts, on its own thread) as careless
// or hostile MQTT clients meet it: a subscriber that stops reading while someone floods its topic is
// disconnected, counted and logged once it leaves `maxBacklogBytes` unread; before, aedes waited
// for it, so delivery to every other subscriber stopped and the broker queued every message in
// memory (4.6 GB in 20 s). Connections past the cap are closed at once and counted (before: no cap,
// and each silent one held for aedes' 30 s connect timeout, with the units' file descriptors at
// stake). Garbage bytes and garbage payloads on the report topics cost their sender only.
import { connect, type Socket } from 'node:net';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BrokerHandle, startBroker } from '../../firmware-sim/mesh/broker.ts';
import { waitFor } from '../helpers.ts';

const REPORT_TOPIC = 'coolctl/sim/gw-1/nodes/N-01/report';
const warnings: string[] = [];
const logger = {
  debug: () => {},
  info: () => {},
  error: () => {},
  warn: (_fields: unknown, msg: string) => void warnings.push(msg),
};
const MAX_BACKLOG_BYTES = 4 * 1024 * 1024;
let broker: BrokerHandle;
let port = 0;

beforeAll(async () => {
  broker = await startBroker({
    host: '127.0.0.1',
    port: 0,
    logger: logger as never,
    maxBacklogBytes: MAX_BACKLOG_BYTES,
  });
  port = broker.port;
});
afterAll(async () => {
  await broker.close();
});

const str = (s: string) => Buffer.concat([Buffer.from([s.length >> 8, s.length & 255]), Buffer.from(s)]);
/** CONNECT (MQTT 3.1.1, clean session, keep-alive 60 s) then SUBSCRIBE `topic` at QoS 0, as raw bytes. */
function rawSubscriber(clientId: string, topic: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    const connectBody = Buffer.concat([str('MQTT'), Buffer.from([4, 2, 0, 60]), str(clientId)]);
    const subBody = Buffer.concat([Buffer.from([0, 1]), str(topic), Buffer.from([0])]);
    let got = Buffer.alloc(0);
    s.on('data', function onData(d: Buffer) {
      got = Buffer.concat([got, d]);
      // CONNACK (4 bytes) then SUBACK (5 bytes): subscribed
      if (got.length >= 9) {
        s.off('data', onData);
        if (got[3] !== 0 || got[4] !== 0x90) reject(new Error(`not subscribed: ${got.toString('hex')}`));
        else resolve(s);
      }
    });
    s.on('connect', () =>
      s.write(
        Buffer.concat([
          Buffer.from([0x10, connectBody.length]),
          connectBody,
          Buffer.from([0x82, subBody.length]),
          subBody,
        ]),
      ),
    );
  });
}

async function publisher(clientId: string): Promise<mqtt.MqttClient> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  return c;
}

describe('embedded MQTT broker under hostile clients', () => {
  it('disconnects a subscriber that stops reading once its unread backlog passes the bound, and serves the rest', async () => {
    const slow = await rawSubscriber('slow-reader', 'coolctl/sim/#');
    slow.pause(); // reads nothing more: the broker's writes to it pile up
    const slowClosed = new Promise<void>((r) => slow.once('close', () => r()));
    const live = await publisher('live-reader');
    let liveGot = 0;
    live.on('message', () => liveGot++);
    await new Promise<void>((r) => live.subscribe('coolctl/sim/#', { qos: 0 }, () => r()));

    const flood = await publisher('flooder');
    const payload = Buffer.alloc(64 * 1024, 0x78);
    // Flood until the slow reader is dropped, at most 30 × the bound: before, it never was, and
    // the reading subscriber stopped getting messages once the broker waited for the slow one.
    let sent = 0;
    const dropped = () => broker.counters.slowClientsDropped > 0;
    while (!dropped() && sent * payload.length < 30 * MAX_BACKLOG_BYTES) {
      await new Promise<void>((r) => flood.publish(REPORT_TOPIC, payload, { qos: 0 }, () => r()));
      sent++;
    }
    await waitFor('the broker to drop the reader that does not read', () => dropped() || undefined, {
      timeoutMs: 5000,
    });
    expect(sent * payload.length).toBeGreaterThan(MAX_BACKLOG_BYTES);
    // the slow reader, reading again, finds its connection closed
    slow.resume();
    await slowClosed;
    expect(broker.counters.slowClientsDropped).toBe(1);
    expect(warnings).toContain('MQTT client disconnected: it does not read what it subscribed to');
    // the others are still served, the flooder included, and get what is published next
    expect(flood.connected && live.connected).toBe(true);
    const before = liveGot;
    flood.publish(REPORT_TOPIC, '{"still":"here"}');
    await waitFor('the reading subscriber to get the next message', () => liveGot > before || undefined);
    flood.end(true);
    live.end(true);
  });

  it('drops a client that sends garbage bytes, and delivers garbage payloads as they are, harming no one', async () => {
    const reader = await publisher('reader-2');
    const got: Buffer[] = [];
    reader.on('message', (_t, p) => got.push(p));
    await new Promise<void>((r) => reader.subscribe('coolctl/sim/#', { qos: 0 }, () => r()));

    for (const junk of [
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]), // a remaining length over 4 bytes
      Buffer.from([0x30, 0x05, 0x00, 0x03, 0x61, 0x2f, 0x62]), // PUBLISH before CONNECT
    ]) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => {});
      const closed = new Promise<void>((r) => s.once('close', () => r()));
      s.on('connect', () => s.write(junk));
      await closed;
    }
    const sender = await publisher('garbage-sender');
    const garbage = [Buffer.from([0, 1, 2, 0xff]), Buffer.from('{"seq":'), Buffer.alloc(0)];
    for (const g of garbage) sender.publish(REPORT_TOPIC, g);
    await waitFor('the garbage payloads to arrive', () => got.length >= garbage.length || undefined);
    expect(got.slice(0, garbage.length)).toEqual(garbage);
    expect(reader.connected).toBe(true);
    sender.end(true);
    reader.end(true);
  });

  it('closes connections past its cap at once, counted and logged, and serves again when they go', async () => {
    const capped = await startBroker({
      host: '127.0.0.1',
      port: 0,
      logger: logger as never,
      maxConnections: 4,
    });
    const held: Socket[] = [];
    try {
      for (let i = 0; i < 10; i++) {
        const s = connect(capped.port, '127.0.0.1');
        s.on('error', () => {});
        held.push(s);
      }
      await waitFor(
        'the connections over the cap to be refused',
        () => capped.counters.connectionsRefused >= 6 || undefined,
      );
      expect(warnings).toContain('MQTT connection refused: too many connections');
    } finally {
      for (const s of held) s.destroy();
    }
    await waitFor('a client to connect again', async () => {
      const c = mqtt.connect(`mqtt://127.0.0.1:${capped.port}`, { reconnectPeriod: 0, connectTimeout: 1000 });
      const ok = await new Promise<boolean>((r) => {
        c.once('connect', () => r(true));
        c.once('error', () => r(false));
        c.once('close', () => r(false));
      });
      c.end(true);
      return ok || undefined;
    });
    await capped.close();
  });
});
