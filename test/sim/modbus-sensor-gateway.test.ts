// The simulated Modbus TCP sensor gateway (firmware-sim/mesh/modbus-gateway.ts) on a real loopback
// socket, as a careless or hostile Modbus client meets it: every complete request gets an answer or
// the exact exception of Modbus Application Protocol v1.1b3, counted; a stream that cannot be framed,
// a frame that never completes and connections past the cap are closed and counted; the gateway
// keeps serving node blocks throughout (docs/sensor-ingest.md, "Modbus TCP sensor gateways").
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { ModbusGatewayServer } from '../../firmware-sim/mesh/modbus-gateway.ts';
import type { SensorMesh } from '../../firmware-sim/mesh/sensor-mesh.ts';
import { nodeUnitIds } from '../../src/config/site-rules.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { decodeNode, NODE_HEADER_LEN } from '../../src/sensors/modbus-gateway-map.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const base = generateSite(demoShape);
const site: Site = {
  ...base,
  gateways: base.gateways.map((g) =>
    g.id === 'gw-2' ? { ...g, transport: 'modbus-tcp', endpoint: { host: '127.0.0.1', port: 0 } } : g,
  ),
};
const [nodeId, unitId] = [...nodeUnitIds(site).get('gw-2')!][0]!;
const sensors = site.sensorNodes.find((n) => n.id === nodeId)!.sensors;
const blockLen = NODE_HEADER_LEN + sensors.length;

// The mesh as the gateway reads it: one report held for the first node, none for the others.
const mesh = {
  nodeSensorIds: (id: string) => site.sensorNodes.find((n) => n.id === id)!.sensors.map((s) => s.id),
  heldReport: (_gw: string, id: string) =>
    id === nodeId
      ? {
          receivedAtMs: Date.now(),
          report: {
            seq: 77,
            batteryPct: 90,
            rssiDbm: -70,
            hops: 2,
            readings: sensors.map((s) => ({ sensor: s.id, value: 22.5 })),
          },
        }
      : undefined,
} as unknown as SensorMesh;

const FRAME_TIMEOUT_MS = 300;
const MAX_CONNECTIONS = 8;
const gateway = new ModbusGatewayServer(site, 'gw-2', mesh, {
  host: '127.0.0.1',
  port: 0,
  logger: quietLogger,
  frameTimeoutMs: FRAME_TIMEOUT_MS,
  maxConnections: MAX_CONNECTIONS,
});
let port = 0;

beforeAll(async () => {
  ({ port } = await gateway.start());
});
afterAll(async () => {
  await gateway.stop();
});

const mbap = (unit: number, pdu: number[], opts: { tid?: number; len?: number; proto?: number } = {}) => {
  const { tid = 1, len = pdu.length + 1, proto = 0 } = opts;
  return Buffer.from([tid >> 8, tid & 255, proto >> 8, proto & 255, len >> 8, len & 255, unit, ...pdu]);
};

/** Sends `bytes` on a new connection; what came back within `waitMs`, and whether the gateway closed it. */
function exchange(bytes: Buffer, waitMs = 1000): Promise<{ answer: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let answer = Buffer.alloc(0);
    let closed = false;
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve({ answer, closed });
    };
    const timer = setTimeout(done, waitMs);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      answer = Buffer.concat([answer, d]);
      // one whole answer frame is all a request gets
      if (answer.length >= 6 && answer.length >= 6 + answer.readUInt16BE(4)) done();
    });
    s.on('close', () => {
      closed = true;
      done();
    });
    s.on('connect', () => s.write(bytes));
  });
}

/** The exception code of an answer frame to function code `fc`, or undefined if it is not one. */
function exceptionOf(answer: Buffer, fc: number): number | undefined {
  if (answer.length !== 9 || answer.readUInt8(7) !== ((fc | 0x80) & 0xff)) return undefined;
  return answer.readUInt8(8);
}

describe('simulated Modbus sensor gateway under bad requests', () => {
  it('answers every request it cannot serve with the exact exception, counted', async () => {
    const before = { ...gateway.counters, exceptionsByCode: { ...gateway.counters.exceptionsByCode } };
    // before: every one of the function-code cases, and the short and long PDUs, went unanswered
    // (the client's timeout was the only answer), and a bad quantity was 0x02 or 0x04
    const cases: [string, number[], number, number][] = [
      ['FC7 (read exception status)', [0x07], 0x07, 0x01],
      ['FC0', [0x00], 0x00, 0x01],
      ['FC1 (coils)', [0x01, 0, 0, 0, 1], 0x01, 0x01],
      ['FC2 (discrete inputs)', [0x02, 0, 0, 0, 1], 0x02, 0x01],
      ['FC5 (write coil)', [0x05, 0, 0, 0xff, 0], 0x05, 0x01],
      ['FC6 (write register)', [0x06, 0, 0, 0, 1], 0x06, 0x01],
      ['FC16 (write registers)', [0x10, 0, 0, 0, 1, 2, 0, 1], 0x10, 0x01],
      ['FC43 (device id)', [0x2b, 0x0e, 1, 0], 0x2b, 0x01],
      ['read of quantity 0', [0x03, 0, 0, 0, 0], 0x03, 0x03],
      ['read of quantity 126', [0x03, 0, 0, 0, 126], 0x03, 0x03],
      ['read of quantity 65535', [0x04, 0, 0, 0xff, 0xff], 0x04, 0x03],
      ['read PDU cut short', [0x03, 0, 0], 0x03, 0x03],
      ['read PDU too long', [0x03, 0, 0, 0, 1, 9, 9], 0x03, 0x03],
      ['read past the node block', [0x03, 0, 0, 0, blockLen + 1], 0x03, 0x02],
      ['read at 65535', [0x03, 0xff, 0xff, 0, 2], 0x03, 0x02],
    ];
    for (const [what, pdu, fc, code] of cases) {
      const r = await exchange(mbap(unitId, pdu));
      expect(r.answer.length, `${what}: an answer`).toBeGreaterThan(0);
      expect(r.answer.readUInt16BE(0), what).toBe(1); // the request's transaction id
      expect(r.answer.readUInt8(6), what).toBe(unitId);
      expect(exceptionOf(r.answer, fc), what).toBe(code);
    }
    // a slave id with no node behind it is 0x0B, as before
    expect(exceptionOf((await exchange(mbap(250, [0x03, 0, 0, 0, 1]))).answer, 0x03)).toBe(0x0b);
    const c = gateway.counters;
    expect(c.illegalFunction - before.illegalFunction).toBe(8);
    expect(c.illegalValue - before.illegalValue).toBe(5);
    expect(c.badAddress - before.badAddress).toBe(2);
    expect(c.unknownUnit - before.unknownUnit).toBe(1);
    expect(c.exceptionsSent - before.exceptionsSent).toBe(cases.length + 1);
    expect((c.exceptionsByCode[1] ?? 0) - (before.exceptionsByCode[1] ?? 0)).toBe(8);
    // and a good read is still a node block
    const good = await exchange(mbap(unitId, [0x03, 0, 0, 0, blockLen]));
    const words = Array.from({ length: blockLen }, (_, i) => good.answer.readUInt16BE(9 + 2 * i));
    expect(decodeNode(words)).toMatchObject({ seq: 77, hops: 2, values: sensors.map(() => 22.5) });
  });

  it('closes a stream it cannot frame, and a frame that never completes, and counts both', async () => {
    const before = { ...gateway.counters };
    // before: each of these was held open, unanswered, for as long as the client liked
    for (const [what, bytes] of [
      ['protocol id 1', mbap(unitId, [0x03, 0, 0, 0, 1], { proto: 1 })],
      ['MBAP length 0', mbap(unitId, [0x03, 0, 0, 0, 1], { len: 0 })],
      ['MBAP length 1', mbap(unitId, [0x03, 0, 0, 0, 1], { len: 1 })],
      ['MBAP length 255', mbap(unitId, [0x03, 0, 0, 0, 1], { len: 255 })],
      ['MBAP length 65535', mbap(unitId, [0x03, 0, 0, 0, 1], { len: 0xffff })],
      ['HTTP', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ] as const) {
      const r = await exchange(bytes, 2000);
      expect(r.closed, what).toBe(true);
      expect(r.answer.length, what).toBe(0);
    }
    expect(gateway.counters.badFrames - before.badFrames).toBe(6);

    const partial = await exchange(mbap(unitId, [0x03, 0, 0, 0, 1], { len: 9 }), 10 * FRAME_TIMEOUT_MS);
    expect(partial.closed).toBe(true);
    expect(gateway.counters.frameTimeouts - before.frameTimeouts).toBe(1);
  });

  it('answers pipelined requests in order, and closes connections past its cap', async () => {
    // 40 requests in one write, each with its own transaction id: 40 answers, in order
    const many = Buffer.concat(
      Array.from({ length: 40 }, (_, i) => mbap(unitId, [0x03, 0, 0, 0, 1], { tid: i + 1 })),
    );
    const answers = await new Promise<number[]>((resolve, reject) => {
      const s = connect(port, '127.0.0.1');
      let buf = Buffer.alloc(0);
      const tids: number[] = [];
      s.setTimeout(5000, () => s.destroy(new Error(`only ${tids.length} answers`)));
      s.on('error', reject);
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 6 && buf.length >= 6 + buf.readUInt16BE(4)) {
          tids.push(buf.readUInt16BE(0));
          buf = buf.subarray(6 + buf.readUInt16BE(4));
        }
        if (tids.length === 40) {
          s.destroy();
          resolve(tids);
        }
      });
      s.on('connect', () => s.write(many));
    });
    expect(answers).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));

    const before = { ...gateway.counters };
    const held: Socket[] = [];
    try {
      for (let i = 0; i < MAX_CONNECTIONS + 5; i++) {
        const s = connect(port, '127.0.0.1');
        s.on('error', () => {});
        held.push(s);
      }
      // before: no cap, every connection was kept; then: the newcomers were closed at once. Now
      // each newcomer past the cap takes the slot of the oldest silent one.
      await waitFor('the oldest silent connections to give their slots', () =>
        gateway.counters.connectionsDisplaced - before.connectionsDisplaced >= 5 ? true : undefined,
      );
      // and a poller that comes now is served, in a silent one's slot
      const r = await exchange(mbap(unitId, [0x04, 0, 0, 0, 1]));
      expect(r.answer.length).toBe(11);
    } finally {
      for (const s of held) s.destroy();
    }
    expect(gateway.counters.connectionsRejected).toBe(before.connectionsRejected);
  });
});
