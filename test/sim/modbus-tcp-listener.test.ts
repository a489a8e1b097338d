// The listener the simulator's Modbus TCP servers share (firmware-sim/ahu/modbus-tcp-listener.ts),
// met by a client that sends requests but never reads the answers: the server closes that connection
// once its unsent answers pass a bound, counts it (`pipelineOverflows`) and keeps serving everyone
// else. Before the shared listener the TCP→RTU gateway had no such bound: answers it gives at once
// (0x0A for a unit id not behind it) piled up in its memory for as long as the client kept sending.
import { once } from 'node:events';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ModbusAhuPdu, newPduCounters } from '../../firmware-sim/ahu/modbus-pdu.ts';
import { InProcessLink, RtuGateway } from '../../firmware-sim/ahu/rtu-gateway.ts';
import { RtuLine } from '../../firmware-sim/ahu/rtu-line.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import { ModbusGatewayServer } from '../../firmware-sim/mesh/modbus-gateway.ts';
import type { SensorMesh } from '../../firmware-sim/mesh/sensor-mesh.ts';
import type { ModbusAirHandler, Site } from '../../src/config/site-schema.ts';
import { resolvePointMap, STATUS_BLOCK_LEN } from '../../src/devices/modbus/point-map.ts';
import { quietLogger } from '../helpers.ts';

const base = generateSite(demoShape);
const pm = resolvePointMap(undefined);
const journal = new Journal(() => 0);
const ahuConfig = base.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp')!;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function readRequest(unitId: number, address: number, quantity: number, tid = 1): Buffer {
  return Buffer.from([
    tid >> 8,
    tid & 255,
    0,
    0,
    0,
    6,
    unitId,
    0x03,
    address >> 8,
    address & 255,
    quantity >> 8,
    quantity & 255,
  ]);
}

/** Sends `request` on a new connection and resolves its whole answer frame. */
async function ask(port: number, request: Buffer): Promise<Buffer> {
  const socket = connect(port, '127.0.0.1');
  cleanups.push(() => void socket.destroy());
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  socket.write(request);
  let got = Buffer.alloc(0);
  for await (const chunk of socket) {
    got = Buffer.concat([got, chunk as Buffer]);
    if (got.length >= 6 && got.length >= 6 + got.readUInt16BE(4)) break;
  }
  return got;
}

/**
 * A client that writes `perWrite` copies of `request` a turn of the event loop (the server in this
 * process gets its turn in between) and reads nothing, until `overflowed()` says the server gave up
 * on it or the answers it asked for pass `maxAnswerBytes`. Then it reads again, and resolves once the
 * server's end of the connection is gone.
 */
async function floodWithoutReading(
  port: number,
  request: Buffer,
  answerLen: number,
  perWrite: number,
  overflowed: () => boolean,
): Promise<{ cutOff: boolean; answerBytesAsked: number }> {
  const socket = connect(port, '127.0.0.1');
  cleanups.push(() => void socket.destroy());
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  socket.pause();
  // Not once(): it rejects on the reset the client may see when it reads again.
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  const batch = Buffer.concat(Array.from({ length: perWrite }, () => request));
  // Far past what loopback's kernel buffers hold (a few MB) plus the server's bound.
  const maxAnswerBytes = 48 * 1024 * 1024;
  const deadline = performance.now() + 20_000;
  let asked = 0;
  while (!overflowed() && asked < maxAnswerBytes && performance.now() < deadline && !socket.destroyed) {
    if (!socket.write(batch)) await Promise.race([new Promise((r) => socket.once('drain', r)), closed]);
    asked += perWrite * answerLen;
    await new Promise((r) => setImmediate(r));
  }
  const cutOff = overflowed();
  // Reading again: what was sent arrives, then the end of a connection the server closed.
  socket.resume();
  if (cutOff) await closed;
  return { cutOff, answerBytesAsked: asked };
}

describe('a client that sends requests and never reads the answers', () => {
  it('is cut off by the TCP→RTU gateway, even for answers it gives at once (0x0A)', async () => {
    const line = new RtuLine({ name: 'line-flood', logger: quietLogger, simulateTiming: false });
    const unit = new SimAirHandler({ ...ahuConfig, id: 'AHU-F1' }, journal);
    line.addUnit(1, new ModbusAhuPdu(unit, pm, newPduCounters(), quietLogger));
    const gateway = new RtuGateway({
      id: 'gw-flood',
      host: '127.0.0.1',
      port: 0,
      link: new InProcessLink(line),
      units: [{ unitId: 1 }],
      logger: quietLogger,
    });
    cleanups.push(async () => {
      await gateway.stop();
      line.stop();
    });
    const { port } = await gateway.start();
    // Unit 9 is not behind the gateway: 0x0A at once, no line time, no queue.
    const { cutOff, answerBytesAsked } = await floodWithoutReading(
      port,
      readRequest(9, 0, 1),
      9,
      512,
      () => gateway.counters.pipelineOverflows > 0,
    );
    expect(cutOff, `not cut off after ${answerBytesAsked} bytes of answers left unread`).toBe(true);
    expect(gateway.counters.pipelineOverflows).toBe(1);
    const answer = await ask(port, readRequest(1, pm.statusBlock, STATUS_BLOCK_LEN));
    expect(answer.readUInt8(7)).toBe(0x03);
    expect(answer.readUInt16BE(4)).toBe(3 + 2 * STATUS_BLOCK_LEN);
  });

  it('is cut off by the sensor gateway, as before', async () => {
    const site: Site = {
      ...base,
      gateways: base.gateways.map((g) =>
        g.id === 'gw-2' ? { ...g, transport: 'modbus-tcp', endpoint: { host: '127.0.0.1', port: 0 } } : g,
      ),
    };
    const mesh = { nodeSensorIds: () => [], heldReport: () => undefined } as unknown as SensorMesh;
    const gateway = new ModbusGatewayServer(site, 'gw-2', mesh, {
      host: '127.0.0.1',
      port: 0,
      logger: quietLogger,
    });
    cleanups.push(() => gateway.stop());
    const { port } = await gateway.start();
    // Slave id 250 has no node: exception 0x0B at once.
    const { cutOff } = await floodWithoutReading(
      port,
      readRequest(250, 0, 1),
      9,
      512,
      () => gateway.counters.pipelineOverflows > 0,
    );
    expect(cutOff).toBe(true);
    expect(gateway.counters.pipelineOverflows).toBe(1);
    expect((await ask(port, readRequest(250, 0, 1))).readUInt8(8)).toBe(0x0b);
  });
});
