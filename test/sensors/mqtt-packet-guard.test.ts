// The packet guard on a connection's reads: packets within the limit are never refused however
// the reads split them (headers included); the first packet that announces more than the limit, or
// a PUBLISH above the QoS we subscribe with, is refused from its header alone, with its topic and
// announced size, and the connection destroyed before any read after that one.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { guardPacketSize, type RefusedPacket } from '../../src/sensors/mqtt-packet-guard.ts';
import { remainingLength } from '../support/mqtt-frames.ts';

/** A PUBLISH as a broker sends it (QoS 0 unless asked; QoS 1 and 2 carry message id 1). */
function publish(topic: string, payload: Buffer, qos = 0): Buffer {
  const t = Buffer.from(topic, 'utf8');
  const id = qos > 0 ? Buffer.from([0, 1]) : Buffer.alloc(0);
  const body = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, id, payload]);
  return Buffer.concat([Buffer.from([0x30 | (qos << 1)]), remainingLength(body.length), body]);
}

/** Only the fixed header and topic of a PUBLISH announcing `payloadBytes`: no body to allocate. */
function publishHead(topic: string, payloadBytes: number): Buffer {
  const t = Buffer.from(topic, 'utf8');
  return Buffer.concat([
    Buffer.from([0x30]),
    remainingLength(2 + t.length + payloadBytes),
    Buffer.from([t.length >> 8, t.length & 0xff]),
    t,
  ]);
}

async function run(reads: Buffer[], max: number, maxQos?: number) {
  const socket = new PassThrough();
  const refused: RefusedPacket[] = [];
  guardPacketSize(socket, max, (p) => refused.push(p), maxQos);
  // what the client's parser would get: it listens after the guard, as mqtt.js pipes the socket
  const parsed: Buffer[] = [];
  socket.on('data', (b: Buffer) => parsed.push(Buffer.from(b)));
  let error: unknown;
  socket.on('error', (err) => {
    error = err;
  });
  for (const r of reads) {
    if (socket.destroyed) break; // a destroyed socket reads nothing more
    socket.emit('data', r);
  }
  await new Promise((resolve) => setImmediate(resolve));
  return { parsed: () => Buffer.concat(parsed), refused, error: () => error, socket };
}

/** `bytes` cut at the given offsets. */
function cut(bytes: Buffer, at: number[]): Buffer[] {
  const points = [0, ...at, bytes.length];
  return points.slice(1).map((end, i) => bytes.subarray(points[i], end));
}

describe('MQTT packet-size guard', () => {
  const small = [
    publish('coolctl/sim/gateway/gw-1/node/N1/report', Buffer.from('{"a":1}')),
    Buffer.from([0xd0, 0x00]), // PINGRESP: no body
    publish('t', Buffer.alloc(200, 0x41)), // a two-byte length
    publish('coolctl/sim/gateway/gw-1/status', Buffer.alloc(20_000, 0x42)), // a three-byte length
  ];
  const stream = Buffer.concat(small);

  it('refuses no packet within the limit, whatever the reads split (headers too)', async () => {
    const whole = await run([stream], 64 * 1024);
    expect(whole.refused).toEqual([]);
    expect(whole.parsed().equals(stream)).toBe(true);
    // every byte a read of its own: each header is split at every point
    const bytewise = await run(
      cut(
        stream,
        [...Array(stream.length - 1).keys()].map((i) => i + 1),
      ),
      64 * 1024,
    );
    expect(bytewise.refused).toEqual([]);
    expect(bytewise.parsed().equals(stream)).toBe(true);
    for (let seed = 1; seed <= 50; seed++) {
      const at = [
        ...new Set(Array.from({ length: 8 }, (_, k) => ((seed * 7919 * (k + 1)) % (stream.length - 1)) + 1)),
      ];
      const r = await run(
        cut(
          stream,
          at.sort((a, b) => a - b),
        ),
        64 * 1024,
      );
      expect(r.refused).toEqual([]);
      expect(r.socket.destroyed).toBe(false);
    }
  });

  it('refuses a 200 MB publish from its header: the connection ends with the read that brought it', async () => {
    const topic = 'coolctl/sim/gateway/gw-1/node/N0001/report';
    const before = Buffer.concat(small.slice(0, 2));
    const head = publishHead(topic, 200 * 1024 * 1024);
    const first = Buffer.concat([before, head, Buffer.alloc(1000)]);
    const r = await run([first, Buffer.alloc(64 * 1024), Buffer.alloc(64 * 1024)], 64 * 1024);
    const remaining = 2 + topic.length + 200 * 1024 * 1024;
    expect(r.refused).toEqual([
      {
        reason: 'too-large',
        packetType: 3,
        qos: 0,
        announcedBytes: 1 + remainingLength(remaining).length + remaining,
        topic,
      },
    ]);
    expect((r.error() as { code?: string }).code).toBe('COOLCTL_E_MQTT_PACKET_TOO_LARGE');
    expect(r.socket.destroyed).toBe(true);
    // the parser got the read with the header in it, and nothing after
    expect(r.parsed().equals(first)).toBe(true);
  });

  it('refuses on a header split over reads; the topic is unknown when it had not arrived yet', async () => {
    const head = publishHead('x/y', 1_000_000);
    const r = await run([head.subarray(0, 2), head.subarray(2, 4)], 64 * 1024);
    expect(r.refused).toEqual([
      {
        reason: 'too-large',
        packetType: 3,
        qos: 0,
        announcedBytes: 1 + 3 + 2 + 3 + 1_000_000,
        topic: undefined,
      },
    ]);
    expect(r.socket.destroyed).toBe(true);
  });

  it('the limit is the whole packet: one byte over is refused, the limit itself passes', async () => {
    const p = publish('t', Buffer.alloc(1000));
    expect((await run([p], p.length)).refused).toEqual([]);
    expect((await run([p], p.length - 1)).refused).toHaveLength(1);
  });

  it('refuses a length field that runs past 4 bytes', async () => {
    const r = await run([Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])], 64 * 1024);
    expect(r.refused).toEqual([
      { reason: 'malformed-length', packetType: 3, qos: 0, announcedBytes: 0, topic: undefined },
    ]);
  });

  it('refuses a PUBLISH above the QoS we subscribe with, from its header; QoS 0 and 1 and the acks pass', async () => {
    const topic = 'coolctl/sim/gateway/gw-1/node/N0001/report';
    const pubrel = Buffer.from([0x62, 0x02, 0x00, 0x01]); // flags 0b0010, as a PUBREL must have
    const fine = Buffer.concat([
      publish(topic, Buffer.from('{}'), 0),
      publish(topic, Buffer.from('{}'), 1),
      pubrel,
    ]);
    const ok = await run([fine], 64 * 1024, 1);
    expect(ok.refused).toEqual([]);
    expect(ok.socket.destroyed).toBe(false);

    const qos2 = publish(topic, Buffer.alloc(60_000, 0x20), 2);
    const first = Buffer.concat([fine, qos2.subarray(0, 1000)]);
    const r = await run([first, qos2.subarray(1000), publish(topic, Buffer.from('{}'), 2)], 64 * 1024, 1);
    expect(r.refused).toEqual([
      { reason: 'qos-not-granted', packetType: 3, qos: 2, announcedBytes: qos2.length, topic },
    ]);
    expect((r.error() as { code?: string }).code).toBe('COOLCTL_E_MQTT_PROTOCOL_VIOLATION');
    expect(r.socket.destroyed).toBe(true);
    // the parser got the read with the header in it, and nothing after: never the whole QoS 2 packet
    expect(r.parsed().equals(first)).toBe(true);

    // QoS 3 is no QoS: refused too; and the guard's default (2) lets QoS 2 through
    const qos3 = Buffer.from(publish('t', Buffer.from('x'), 2));
    qos3[0] = 0x36;
    expect((await run([qos3], 64 * 1024, 1)).refused).toMatchObject([{ reason: 'qos-not-granted', qos: 3 }]);
    expect((await run([qos2], 64 * 1024)).refused).toEqual([]);
  });
});
