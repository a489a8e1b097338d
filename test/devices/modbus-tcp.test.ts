// ModbusTcpClient against a real TCP peer on loopback whose answers each test writes byte by byte:
// well-formed answers, answers in pieces, and every way an answer can be wrong.
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ModbusConnectionClosedError,
  ModbusExceptionError,
  ModbusFrameError,
  ModbusTcpClient,
} from '../../src/devices/modbus/modbus-tcp.ts';

/** What the peer sends for a request (MBAP frame): chunks written in order, or nothing. */
type Answer = (req: Buffer) => Buffer[];

const open: { server: Server; sockets: Socket[] }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    for (const s of o.sockets) s.destroy();
    await new Promise<void>((r) => o.server.close(() => r()));
  }
});

async function pair(
  answer: Answer,
  unitId = 7,
): Promise<{ client: ModbusTcpClient; socket: Socket; requests: Buffer[] }> {
  const requests: Buffer[] = [];
  const sockets: Socket[] = [];
  const server = createServer((peer) => {
    sockets.push(peer);
    peer.on('data', (req) => {
      requests.push(Buffer.from(req));
      for (const chunk of answer(req)) peer.write(chunk);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  open.push({ server, sockets });
  const client = new ModbusTcpClient(unitId);
  const socket = connect({
    host: '127.0.0.1',
    port: (server.address() as AddressInfo).port,
    onread: {
      buffer: Buffer.alloc(1024),
      callback: (n, buf) => {
        client.receive(Buffer.from(buf.subarray(0, n)));
        return true;
      },
    },
  });
  sockets.push(socket);
  await once(socket, 'connect');
  client.attach(socket);
  return { client, socket, requests };
}

/** An answer frame: MBAP (the request's tid unless given) + unit + PDU. */
function frame(
  req: Buffer,
  pdu: number[],
  o: { tid?: number; unit?: number; protocol?: number } = {},
): Buffer {
  const b = Buffer.alloc(7 + pdu.length);
  b.writeUInt16BE(o.tid ?? req.readUInt16BE(0), 0);
  b.writeUInt16BE(o.protocol ?? 0, 2);
  b.writeUInt16BE(1 + pdu.length, 4);
  b[6] = o.unit ?? req[6]!;
  Buffer.from(pdu).copy(b, 7);
  return b;
}
const registers = (...words: number[]): number[] => words.flatMap((w) => [w >> 8, w & 0xff]);

describe('ModbusTcpClient', () => {
  it('reads holding registers: the request on the wire and the words of the answer', async () => {
    const { client, requests } = await pair((req) => [frame(req, [3, 6, ...registers(1, 0xabcd, 65535)])]);
    await expect(client.readHoldingRegisters(100, 3)).resolves.toEqual({ data: [1, 0xabcd, 65535] });
    const req = requests[0]!;
    expect([...req.subarray(2)]).toEqual([0, 0, 0, 6, 7, 3, 0, 100, 0, 3]);
  });

  it('writes multiple registers and checks the echo', async () => {
    const { client, requests } = await pair((req) => [frame(req, [16, 0, 200, 0, 2])]);
    await expect(client.writeRegisters(200, [0x1234, 9])).resolves.toEqual({ address: 200, length: 2 });
    expect([...requests[0]!.subarray(2)]).toEqual([0, 0, 0, 11, 7, 16, 0, 200, 0, 2, 4, 0x12, 0x34, 0, 9]);
  });

  it('puts together an answer that arrives in pieces, then takes the next request', async () => {
    const { client } = await pair((req) => {
      const f = frame(req, [3, 4, ...registers(5, 6)]);
      return [f.subarray(0, 3), f.subarray(3, 8), f.subarray(8)];
    });
    for (let i = 0; i < 3; i++)
      await expect(client.readHoldingRegisters(0, 2)).resolves.toEqual({ data: [5, 6] });
  });

  it('an exception answer rejects with its code', async () => {
    const { client } = await pair((req) => [frame(req, [0x83, 0x0d])]);
    const err = await client.readHoldingRegisters(0, 2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModbusExceptionError);
    expect((err as ModbusExceptionError).modbusCode).toBe(0x0d);
  });

  it.each<[string, Answer, RegExp]>([
    [
      'another transaction',
      (req) => [frame(req, [3, 4, ...registers(1, 2)], { tid: req.readUInt16BE(0) + 1 })],
      /transaction/,
    ],
    ['another unit', (req) => [frame(req, [3, 4, ...registers(1, 2)], { unit: 9 })], /unit 9/],
    ['not MBAP', (req) => [frame(req, [3, 4, ...registers(1, 2)], { protocol: 1 })], /MBAP/],
    ['another function', (req) => [frame(req, [4, 4, ...registers(1, 2)])], /function 4/],
    ['too few registers', (req) => [frame(req, [3, 2, ...registers(1)])], /Data length error/],
    ['a byte count that lies', (req) => [frame(req, [3, 6, ...registers(1, 2)])], /Data length error/],
  ])('an answer from %s is a frame error', async (_what, answer, message) => {
    const { client } = await pair(answer);
    const err = await client.readHoldingRegisters(0, 2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModbusFrameError);
    expect((err as Error).message).toMatch(message);
  });

  it('a write answer that does not echo the request is a frame error', async () => {
    const { client } = await pair((req) => [frame(req, [16, 0, 201, 0, 2])]);
    await expect(client.writeRegisters(200, [1, 2])).rejects.toBeInstanceOf(ModbusFrameError);
  });

  it('the peer closing with a request in flight rejects it; later requests fail at once', async () => {
    const { client } = await pair(() => []);
    const inFlight = client.readHoldingRegisters(0, 2);
    open[0]!.sockets[0]!.destroy();
    await expect(inFlight).rejects.toBeInstanceOf(ModbusConnectionClosedError);
    await expect(client.readHoldingRegisters(0, 2)).rejects.toBeInstanceOf(ModbusConnectionClosedError);
  });

  it('refuses a second request while one is in flight, and register counts Modbus does not allow', async () => {
    const { client } = await pair(() => []);
    const first = client.readHoldingRegisters(0, 2);
    await expect(client.readHoldingRegisters(0, 2)).rejects.toThrow(/already in flight/);
    await expect(client.readHoldingRegisters(0, 126)).rejects.toBeInstanceOf(RangeError);
    await expect(client.writeRegisters(0, [])).rejects.toBeInstanceOf(RangeError);
    client.destroy();
    await expect(first).rejects.toBeInstanceOf(ModbusConnectionClosedError);
  });
});
