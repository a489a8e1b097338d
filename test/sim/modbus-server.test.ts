// The simulated air handler's Modbus TCP server through two independent real clients (modbus-serial,
// and Debian's pymodbus in a child process) and a raw socket: the register map a controller reads,
// the fenced FC16 write (accept, stale epoch, watchdog fallback), the exact exception for every bad
// frame, faults on the wire, and a server that keeps serving and stops cleanly whatever it was sent.
import { execFile } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { promisify } from 'node:util';
import modbusSerial from 'modbus-serial';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModbusAhuServer, type ModbusAhuServerOptions } from '../../firmware-sim/ahu/modbus-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { ModbusAirHandler } from '../../src/config/site-schema.ts';
import {
  COMMAND_BLOCK_LEN,
  decodeStatus,
  encodeCommand,
  MODBUS_EXCEPTION,
  resolvePointMap,
  STALE_EPOCH_EXCEPTION,
  STATUS_BLOCK_LEN,
} from '../../src/devices/modbus/point-map.ts';
import { ErrorCodes } from '../../src/errors.ts';
import type { AhuCommand } from '../../src/unit-contract.ts';
import { quietLogger, waitFor } from '../helpers.ts';

// modbus-serial is CommonJS with `module.exports = ModbusRTU` and `module.exports.default = module.exports`;
// its typings declare only the `default` member, so that is the typed way to reach the class.
const ModbusRTU = modbusSerial.default;
type ModbusClient = InstanceType<typeof ModbusRTU>;

// Debian's python3 has pymodbus 3.0; the pyenv `python3` on PATH does not.
const SYSTEM_PYTHON = '/usr/bin/python3';
const FRAME_TIMEOUT_MS = 300;

const site = generateSite(demoShape);
const modbusAhus = site.airHandlers.filter((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp');
const journal = new Journal(() => 0);
const pm = resolvePointMap(undefined);
const servers: ModbusAhuServer[] = [];
const clients: ModbusClient[] = [];
const sockets: RawClient[] = [];

function cfg(i: number, patch: Partial<ModbusAirHandler> = {}): ModbusAirHandler {
  const c = modbusAhus[i];
  if (!c) throw new Error(`demo site has no Modbus AHU #${i}`);
  return { ...c, ...patch };
}

async function startUnit(
  config: ModbusAirHandler,
  opts: Partial<ModbusAhuServerOptions> = {},
): Promise<{ unit: SimAirHandler; server: ModbusAhuServer; port: number }> {
  const unit = new SimAirHandler(config, journal);
  const server = new ModbusAhuServer(unit, {
    host: '127.0.0.1',
    port: 0,
    unitId: config.endpoint.unitId,
    logger: quietLogger,
    ...opts,
  });
  servers.push(server);
  const { port } = await server.start();
  return { unit, server, port };
}

async function modbusClient(port: number, unitId = 1): Promise<ModbusClient> {
  const client = new ModbusRTU();
  // A dropped connection surfaces as a rejected request; the emitter's 'error' must not become uncaught.
  client.on('error', () => undefined);
  await client.connectTCP('127.0.0.1', { port });
  client.setID(unitId);
  client.setTimeout(2000);
  clients.push(client);
  return client;
}

function closeClient(client: ModbusClient): Promise<void> {
  return new Promise((resolve) => client.close(() => resolve()));
}

const command = (c: Partial<AhuCommand> & { epoch: number; heartbeat: number }): number[] =>
  encodeCommand({ remoteEnable: true, fanPct: 60, supplySetpointC: 20, ...c }, pm);

const lastEntry = () => journal.since(journal.lastSeq - 1).entries[0];

/** A bare TCP connection that splits what it receives into MBAP frames, for requests no client library sends. */
class RawClient {
  readonly socket: Socket;
  closed = false;
  /** performance.now() when the server closed the connection. */
  readonly closedAt: Promise<number>;
  private buffer = Buffer.alloc(0);
  private readonly frames: Buffer[] = [];
  private wake: (() => void) | undefined;

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        const raw = new RawClient(socket);
        sockets.push(raw);
        resolve(raw);
      });
    });
  }

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('error', () => undefined);
    this.closedAt = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        this.wake?.();
        resolve(performance.now());
      }),
    );
    socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      while (this.buffer.length >= 6 && this.buffer.length >= 6 + this.buffer.readUInt16BE(4)) {
        const len = 6 + this.buffer.readUInt16BE(4);
        this.frames.push(this.buffer.subarray(0, len));
        this.buffer = this.buffer.subarray(len);
      }
      this.wake?.();
    });
  }

  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  /** The next answer, in arrival order; rejects if the server closes the connection or stays silent. */
  async next(timeoutMs = 3000): Promise<Buffer> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const frame = this.frames.shift();
      if (frame) return frame;
      if (this.closed) throw new Error('connection closed by the server');
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no answer within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async request(frame: Buffer): Promise<Buffer> {
    this.send(frame);
    return this.next();
  }
}

let nextTid = 1;
function mbap(
  pdu: readonly number[] | Buffer,
  o: { unitId?: number; protocolId?: number; length?: number } = {},
): Buffer {
  const body = Buffer.from(pdu);
  const head = Buffer.alloc(7);
  head.writeUInt16BE(nextTid++ & 0xffff, 0);
  head.writeUInt16BE(o.protocolId ?? 0, 2);
  head.writeUInt16BE(o.length ?? 1 + body.length, 4);
  head.writeUInt8(o.unitId ?? 1, 6);
  return Buffer.concat([head, body]);
}

const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];
const readPdu = (fc: number, start: number, quantity: number) => [fc, ...u16(start), ...u16(quantity)];
function writeMultiplePdu(start: number, values: readonly number[], byteCount = 2 * values.length): number[] {
  return [0x10, ...u16(start), ...u16(values.length), byteCount, ...values.flatMap(u16)];
}

function expectException(answer: Buffer, request: Buffer, code: number): void {
  expect(answer.readUInt16BE(0), 'transaction id echoed').toBe(request.readUInt16BE(0));
  expect(answer.readUInt16BE(2), 'protocol id').toBe(0);
  expect([...answer.subarray(7)]).toEqual([(request.readUInt8(7) | 0x80) & 0xff, code]);
}

afterAll(async () => {
  for (const s of sockets) s.socket.destroy();
  await Promise.all(clients.map((c) => (c.isOpen ? closeClient(c) : undefined)));
  await Promise.all(servers.map((s) => s.stop()));
});

describe('Modbus TCP air handler: reads and the fenced write (modbus-serial client)', () => {
  let unit: SimAirHandler;
  let port: number;
  let client: ModbusClient;

  beforeAll(async () => {
    ({ unit, port } = await startUnit(cfg(0)));
    client = await modbusClient(port, cfg(0).endpoint.unitId);
  });

  it('serves the live status block over FC3 and FC4, and the command block before any write', async () => {
    unit.updateMeasurements({
      fanPct: 55,
      supplyC: 17.5,
      returnC: 29.1,
      cwValvePct: 40,
      fanKw: 3.25,
      coolingKw: 80,
    });
    for (const read of [client.readHoldingRegisters, client.readInputRegisters]) {
      const res = await read.call(client, pm.statusBlock, STATUS_BLOCK_LEN);
      const st = decodeStatus(res.data, pm);
      expect(st).toMatchObject({
        mode: 'local',
        fanPct: 55,
        supplySetpointC: cfg(0).localSetpointC,
        supplyC: 17.5,
        returnC: 29.1,
        cwValvePct: 40,
        alarms: 0,
        epoch: 0,
        fanKw: 3.25,
        coolingKw: 80,
        watchdogS: cfg(0).watchdogS,
      });
    }
    // A read may cover part of a block.
    expect((await client.readHoldingRegisters(pm.statusBlock + 3, 2)).data).toEqual([175, 291]);
    // Before any write the command registers show the unit's own state: epoch 0, local values.
    const cmd = await client.readHoldingRegisters(pm.commandBlock, COMMAND_BLOCK_LEN);
    expect(cmd.data).toEqual(
      encodeCommand(
        {
          epoch: 0,
          heartbeat: 0,
          remoteEnable: false,
          fanPct: cfg(0).localFanPct,
          supplySetpointC: cfg(0).localSetpointC,
        },
        pm,
      ),
    );
  });

  it('applies a fenced FC16 write: unit remote, journaled with the client address, block reads back', async () => {
    const words = command({ epoch: 10, heartbeat: 1, fanPct: 70, supplySetpointC: 21 });
    const res = await client.writeRegisters(pm.commandBlock, words);
    expect(res).toMatchObject({ address: pm.commandBlock, length: COMMAND_BLOCK_LEN });
    expect(unit.mode).toBe('remote');
    const entry = lastEntry();
    expect(entry).toMatchObject({
      ahu: unit.id,
      protocol: 'modbus-tcp',
      epoch: 10,
      values: { heartbeat: 1, remoteEnable: true, fanPct: 70, supplySetpointC: 21 },
      accepted: true,
      reason: null,
    });
    expect(entry?.client).toMatch(/^modbus:127\.0\.0\.1:\d+$/);
    expect(unit.status().lastWriter).toBe(entry?.client);
    expect((await client.readHoldingRegisters(pm.commandBlock, COMMAND_BLOCK_LEN)).data).toEqual(words);
    const st = decodeStatus((await client.readInputRegisters(pm.statusBlock, STATUS_BLOCK_LEN)).data, pm);
    expect(st).toMatchObject({ mode: 'remote', supplySetpointC: 21, epoch: 10, heartbeat: 1 });
  });

  it('refuses a stale epoch with exception 0x0D, journals it, and keeps the newer command', async () => {
    const accepted = command({ epoch: 10, heartbeat: 2, supplySetpointC: 21.5 });
    await client.writeRegisters(pm.commandBlock, accepted);
    await expect(
      client.writeRegisters(pm.commandBlock, command({ epoch: 9, heartbeat: 3, supplySetpointC: 25 })),
    ).rejects.toMatchObject({ modbusCode: STALE_EPOCH_EXCEPTION });
    expect(lastEntry()).toMatchObject({ ahu: unit.id, epoch: 9, accepted: false, reason: 'stale-epoch' });
    expect(unit.status()).toMatchObject({ epoch: 10, supplySetpointC: 21.5, heartbeat: 2 });
    expect((await client.readHoldingRegisters(pm.commandBlock, COMMAND_BLOCK_LEN)).data).toEqual(accepted);
    await client.writeRegisters(pm.commandBlock, command({ epoch: 11, heartbeat: 4, supplySetpointC: 22 }));
    expect(lastEntry()).toMatchObject({ epoch: 11, accepted: true });
    expect(unit.status()).toMatchObject({ epoch: 11, supplySetpointC: 22, mode: 'remote' });
  });

  it('refuses values out of range with exception 03 and journals out-of-range', async () => {
    await expect(
      client.writeRegisters(pm.commandBlock, command({ epoch: 11, heartbeat: 5, fanPct: 150 })),
    ).rejects.toMatchObject({ modbusCode: MODBUS_EXCEPTION.illegalDataValue });
    expect(lastEntry()).toMatchObject({ accepted: false, reason: 'out-of-range' });
    // remote enable must be 0 or 1: any other word is not a command this map defines
    const badEnable = command({ epoch: 11, heartbeat: 6 });
    badEnable[5] = 2;
    await expect(client.writeRegisters(pm.commandBlock, badEnable)).rejects.toMatchObject({
      modbusCode: MODBUS_EXCEPTION.illegalDataValue,
    });
    expect(lastEntry()).toMatchObject({ accepted: false, reason: 'out-of-range' });
    expect(unit.status()).toMatchObject({ supplySetpointC: 22, fanCmdPct: 60 });
  });

  it('falls back when the heartbeat stops; a repeated heartbeat is refused, a fresh one retakes control', async () => {
    const c = cfg(1, { watchdogS: 0.5 });
    const { unit: wd, port: wdPort } = await startUnit(c);
    const wdClient = await modbusClient(wdPort, c.endpoint.unitId);
    await wdClient.writeRegisters(pm.commandBlock, command({ epoch: 3, heartbeat: 7, supplySetpointC: 23 }));
    expect(wd.mode).toBe('remote');
    const fallback = await waitFor('watchdog fallback seen over Modbus', async () => {
      wd.checkWatchdog(); // the simulation tick does this in the running hall
      const st = decodeStatus(
        (await wdClient.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN)).data,
        pm,
      );
      return st.mode === 'fallback' ? st : null;
    });
    expect(fallback.alarms & 1).toBe(1);
    expect(fallback.supplySetpointC).toBe(c.localSetpointC);
    await expect(
      wdClient.writeRegisters(pm.commandBlock, command({ epoch: 3, heartbeat: 7, supplySetpointC: 23 })),
    ).rejects.toMatchObject({ modbusCode: MODBUS_EXCEPTION.illegalDataValue });
    expect(lastEntry()).toMatchObject({ ahu: wd.id, accepted: false, reason: 'heartbeat-unchanged' });
    expect(wd.mode).toBe('fallback');
    await wdClient.writeRegisters(pm.commandBlock, command({ epoch: 3, heartbeat: 8, supplySetpointC: 23 }));
    const st = decodeStatus((await wdClient.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN)).data, pm);
    expect(st).toMatchObject({ mode: 'remote', supplySetpointC: 23, alarms: 0 });
  });
});

describe('Modbus TCP air handler: an independent client (pymodbus 3.0)', () => {
  const script = `
import json, sys
from pymodbus.client import ModbusTcpClient

port, unit, status_block, command_block = (int(a) for a in sys.argv[1:5])
good, stale = json.loads(sys.argv[5]), json.loads(sys.argv[6])

def outcome(r):
    if r.isError():
        return {"error": True, "code": getattr(r, "exception_code", None)}
    return {"error": False, "registers": getattr(r, "registers", None)}

c = ModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
if not c.connect():
    print(json.dumps({"connected": False}))
    sys.exit(1)
out = {"connected": True}
out["status"] = outcome(c.read_holding_registers(status_block, 16, slave=unit))
out["write"] = outcome(c.write_registers(command_block, good, slave=unit))
out["stale"] = outcome(c.write_registers(command_block, stale, slave=unit))
out["readBack"] = outcome(c.read_holding_registers(command_block, 8, slave=unit))
# unit id 255: the spec's address for a device reached directly over TCP
out["direct"] = outcome(c.read_input_registers(status_block, 16, slave=255))
# FC6 into the command block: a command is only ever a whole FC16 block
out["single"] = outcome(c.write_register(command_block + 5, 1, slave=unit))
# FC23 read/write multiple: not a function this device has
out["readWrite"] = outcome(c.readwrite_registers(read_address=status_block, read_count=1,
    write_address=command_block, write_registers=good, unit=unit))
c.close()
print(json.dumps(out))
`;

  it('reads, writes a fenced command, and gets the stale-epoch and illegal-function exceptions', async () => {
    const c = cfg(2);
    const { unit, port } = await startUnit(c);
    const unitId = c.endpoint.unitId;
    const good = command({ epoch: 20, heartbeat: 1, fanPct: 65, supplySetpointC: 19.5 });
    const stale = command({ epoch: 19, heartbeat: 2, supplySetpointC: 25 });
    const seqBefore = journal.lastSeq;
    const { stdout } = await promisify(execFile)(
      SYSTEM_PYTHON,
      [
        '-c',
        script,
        String(port),
        String(unitId),
        String(pm.statusBlock),
        String(pm.commandBlock),
        JSON.stringify(good),
        JSON.stringify(stale),
      ],
      { timeout: 20_000 },
    );
    const out = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
    expect(out.connected).toBe(true);
    expect(out.status.error).toBe(false);
    expect(decodeStatus(out.status.registers, pm)).toMatchObject({ mode: 'local', epoch: 0 });
    expect(out.write).toMatchObject({ error: false });
    expect(out.stale).toEqual({ error: true, code: STALE_EPOCH_EXCEPTION });
    expect(out.readBack).toEqual({ error: false, registers: good });
    expect(out.direct.error).toBe(false);
    expect(decodeStatus(out.direct.registers, pm)).toMatchObject({
      mode: 'remote',
      epoch: 20,
      supplySetpointC: 19.5,
    });
    expect(out.single).toEqual({ error: true, code: MODBUS_EXCEPTION.illegalFunction });
    expect(out.readWrite).toEqual({ error: true, code: MODBUS_EXCEPTION.illegalFunction });

    expect(unit.status()).toMatchObject({ mode: 'remote', epoch: 20, fanCmdPct: 65, supplySetpointC: 19.5 });
    const entries = journal.since(seqBefore).entries.filter((e) => e.ahu === unit.id);
    expect(entries.map((e) => [e.epoch, e.accepted, e.reason])).toEqual([
      [20, true, null],
      [19, false, 'stale-epoch'],
      // the FC6 laid over the current block: epoch 20, remote enable written as 1
      [20, false, 'partial-command-block'],
    ]);
    expect(entries[0]?.client).toMatch(/^modbus:127\.0\.0\.1:\d+$/);
  });
});

describe('Modbus TCP air handler: bad frames over a raw socket', () => {
  let unit: SimAirHandler;
  let server: ModbusAhuServer;
  let port: number;
  let raw: RawClient;

  beforeAll(async () => {
    ({ unit, server, port } = await startUnit(cfg(3), { frameTimeoutMs: FRAME_TIMEOUT_MS }));
    raw = await RawClient.open(port);
  });

  it('answers an unknown function code with exception 01', async () => {
    for (const fc of [0x2b, 0x07, 0x01, 0x05, 0x0f, 0x17]) {
      const req = mbap([fc, 0x0e, 0x01, 0x00]);
      expectException(await raw.request(req), req, MODBUS_EXCEPTION.illegalFunction);
    }
  });

  it('answers an address outside the register map with exception 02', async () => {
    for (const [start, qty] of [
      [5000, 1],
      [pm.commandBlock, pm.statusBlock + 1], // runs through the gap between the blocks
      [pm.statusBlock + STATUS_BLOCK_LEN - 1, 2], // one past the end of the status block
      [65535, 2], // past the end of the address space
    ] as const) {
      const req = mbap(readPdu(0x03, start, qty));
      expectException(await raw.request(req), req, MODBUS_EXCEPTION.illegalDataAddress);
    }
    const write = mbap(writeMultiplePdu(5000, [1, 2]));
    expectException(await raw.request(write), write, MODBUS_EXCEPTION.illegalDataAddress);
    const single = mbap([0x06, ...u16(pm.statusBlock), ...u16(1)]);
    expectException(await raw.request(single), single, MODBUS_EXCEPTION.illegalDataAddress);
  });

  it('answers a quantity of 0 or over 125, or a request of the wrong length, with exception 03', async () => {
    for (const req of [
      mbap(readPdu(0x03, pm.statusBlock, 0)),
      mbap(readPdu(0x04, pm.statusBlock, 200)),
      mbap([0x03, ...u16(pm.statusBlock)]), // quantity missing
    ]) {
      expectException(await raw.request(req), req, MODBUS_EXCEPTION.illegalDataValue);
    }
  });

  it('refuses a malformed FC16 with exception 03 and journals nothing: it never reached the unit', async () => {
    const before = journal.lastSeq;
    const words = command({ epoch: 1, heartbeat: 1 });
    for (const req of [
      mbap(writeMultiplePdu(pm.commandBlock, words, 15)), // byte count ≠ 2 × quantity
      mbap(writeMultiplePdu(pm.commandBlock, words).slice(0, -2)), // fewer bytes than the byte count says
      mbap([0x10, ...u16(pm.commandBlock), ...u16(0), 0]), // quantity 0
      // quantity 124, over the 123 that fit a frame
      mbap([0x10, ...u16(pm.commandBlock), ...u16(124), 248, ...new Array<number>(246).fill(0)]),
    ]) {
      expectException(await raw.request(req), req, MODBUS_EXCEPTION.illegalDataValue);
    }
    expect(journal.lastSeq).toBe(before);
    expect(unit.mode).toBe('local');
  });

  it('refuses a write of part of the command block with 02 (FC16) or 01 (FC6), and journals each attempt', async () => {
    const words = command({ epoch: 5, heartbeat: 1 });
    const partial = mbap(writeMultiplePdu(pm.commandBlock, words.slice(0, 4)));
    expectException(await raw.request(partial), partial, MODBUS_EXCEPTION.illegalDataAddress);
    expect(lastEntry()).toMatchObject({
      ahu: unit.id,
      epoch: 5,
      accepted: false,
      reason: 'partial-command-block',
    });
    const offset = mbap(writeMultiplePdu(pm.commandBlock + 1, words));
    expectException(await raw.request(offset), offset, MODBUS_EXCEPTION.illegalDataAddress);
    expect(lastEntry()).toMatchObject({ ahu: unit.id, accepted: false, reason: 'partial-command-block' });
    const single = mbap([0x06, ...u16(pm.commandBlock + 6), ...u16(500)]);
    expectException(await raw.request(single), single, MODBUS_EXCEPTION.illegalFunction);
    expect(lastEntry()).toMatchObject({
      ahu: unit.id,
      accepted: false,
      reason: 'partial-command-block',
      values: { fanPct: 50 },
    });
    expect(unit.mode).toBe('local');
  });

  it('answers pipelined requests in order, and ignores a request for another unit id', async () => {
    const before = server.counters.wrongUnitId;
    const a = mbap(readPdu(0x03, pm.statusBlock, 1));
    const other = mbap(readPdu(0x03, pm.statusBlock, 2), { unitId: 7 });
    const b = mbap(readPdu(0x04, pm.commandBlock, 8));
    raw.send(a, other, b);
    const first = await raw.next();
    const second = await raw.next();
    // The request for unit 7 got no answer at all: the next answer on the stream is b's.
    expect(first.readUInt16BE(0)).toBe(a.readUInt16BE(0));
    expect([...first.subarray(7, 9)]).toEqual([0x03, 2]);
    expect(second.readUInt16BE(0)).toBe(b.readUInt16BE(0));
    expect([...second.subarray(7, 9)]).toEqual([0x04, 16]);
    expect(server.counters.wrongUnitId).toBe(before + 1);
    // and a fresh connection is served as usual
    const fresh = await RawClient.open(port);
    const req = mbap(readPdu(0x03, pm.statusBlock, STATUS_BLOCK_LEN));
    const answer = await fresh.request(req);
    expect(answer.readUInt16BE(4)).toBe(3 + 2 * STATUS_BLOCK_LEN);
  });

  it('closes a connection whose frame stays incomplete past the frame timeout, and serves the next', async () => {
    const before = server.counters.frameTimeouts;
    const victim = await RawClient.open(port);
    const sentAt = performance.now();
    victim.send(mbap(readPdu(0x03, pm.statusBlock, 1)).subarray(0, 9));
    const closedAt = await victim.closedAt;
    expect(closedAt - sentAt).toBeGreaterThanOrEqual(FRAME_TIMEOUT_MS - 20);
    expect(server.counters.frameTimeouts).toBe(before + 1);
    const next = await RawClient.open(port);
    const req = mbap(readPdu(0x03, pm.statusBlock, 1));
    expect((await next.request(req)).readUInt16BE(0)).toBe(req.readUInt16BE(0));
  });

  it('closes a connection whose stream cannot be resynchronised (protocol id ≠ 0, bad MBAP length)', async () => {
    const before = server.counters.badFrames;
    for (const bad of [
      mbap(readPdu(0x03, pm.statusBlock, 1), { protocolId: 1 }),
      mbap(readPdu(0x03, pm.statusBlock, 1), { length: 1 }),
      mbap(readPdu(0x03, pm.statusBlock, 1), { length: 300 }),
    ]) {
      const victim = await RawClient.open(port);
      victim.send(bad);
      await victim.closedAt;
      await expect(victim.next()).rejects.toThrow(/closed/);
    }
    expect(server.counters.badFrames).toBe(before + 3);
    // the connection opened at the start of this block was never disturbed
    const req = mbap(readPdu(0x03, pm.statusBlock, 1));
    expect((await raw.request(req)).readUInt16BE(0)).toBe(req.readUInt16BE(0));
  });

  it('closes connections over the cap at once when every slot is in use, and keeps serving the ones it has', async () => {
    const { server: capped, port: cappedPort } = await startUnit(cfg(4), { maxConnections: 2 });
    const keep = [await RawClient.open(cappedPort), await RawClient.open(cappedPort)];
    // Clients that have spoken (a silent one would give its slot: modbus-idle-connections.test.ts).
    for (const k of keep) await k.request(mbap(readPdu(0x03, pm.statusBlock, 1)));
    const extra = await RawClient.open(cappedPort);
    await extra.closedAt;
    expect(capped.counters.connectionsRejected).toBe(1);
    for (const k of keep) {
      const req = mbap(readPdu(0x03, pm.statusBlock, 1));
      expect((await k.request(req)).readUInt16BE(0)).toBe(req.readUInt16BE(0));
    }
  });
});

describe('Modbus TCP air handler: faults on the wire', () => {
  let unit: SimAirHandler;
  let server: ModbusAhuServer;
  let port: number;
  let client: ModbusClient;

  beforeAll(async () => {
    ({ unit, server, port } = await startUnit(cfg(5)));
    client = await modbusClient(port, cfg(5).endpoint.unitId);
  });

  it('answers every request with the injected exception, journals writes as fault-exception, recovers', async () => {
    unit.faults.exceptionCode = MODBUS_EXCEPTION.serverDeviceFailure;
    await server.applyFaults();
    await expect(client.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN)).rejects.toMatchObject({
      modbusCode: 4,
    });
    await expect(
      client.writeRegisters(pm.commandBlock, command({ epoch: 2, heartbeat: 1 })),
    ).rejects.toMatchObject({ modbusCode: 4 });
    expect(lastEntry()).toMatchObject({ ahu: unit.id, epoch: 2, accepted: false, reason: 'fault-exception' });
    expect(unit.mode).toBe('local');
    unit.faults.exceptionCode = null;
    await server.applyFaults();
    await client.writeRegisters(pm.commandBlock, command({ epoch: 2, heartbeat: 2 }));
    expect(unit.mode).toBe('remote');
  });

  it('answers garbage: the client errors at once instead of hanging, a write still lands, clearing heals', async () => {
    unit.faults.garbage = true;
    await server.applyFaults();
    await expect(client.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN)).rejects.toThrow();
    await expect(client.readInputRegisters(pm.statusBlock, 4)).rejects.not.toThrow(/timed out/i);
    // The unit applied the write; only its answer was destroyed. The controller must read back.
    const words = command({ epoch: 3, heartbeat: 3, supplySetpointC: 24 });
    await expect(client.writeRegisters(pm.commandBlock, words)).rejects.toThrow();
    expect(lastEntry()).toMatchObject({ ahu: unit.id, epoch: 3, accepted: true });
    expect(server.counters.garbageSent).toBe(3);
    unit.faults.garbage = false;
    await server.applyFaults();
    // The same connection stays usable: garbage answers were framed so the stream never lost sync.
    expect((await client.readHoldingRegisters(pm.commandBlock, COMMAND_BLOCK_LEN)).data).toEqual(words);
  });

  it('delays every answer of a slow unit by at least the injected time', async () => {
    const slowMs = 400;
    unit.faults.slowMs = slowMs;
    await server.applyFaults();
    let t0 = performance.now();
    await client.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(slowMs - 5);
    t0 = performance.now();
    await client.writeRegisters(pm.commandBlock, command({ epoch: 3, heartbeat: 4 }));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(slowMs - 5);
    unit.faults.slowMs = 0;
    await server.applyFaults();
    expect(unit.status().heartbeat).toBe(4);
  });

  it('refuses connections while offline and accepts them again on the same port when cleared', async () => {
    unit.faults.offline = true;
    await server.applyFaults();
    await waitFor('the open connection to be dropped', () => !client.isOpen);
    await expect(modbusClient(port)).rejects.toThrow(/ECONNREFUSED/);
    unit.faults.offline = false;
    await server.applyFaults();
    expect(server.port).toBe(port);
    client = await modbusClient(port, cfg(5).endpoint.unitId);
    expect((await client.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN)).data).toHaveLength(16);
  });

  it('drops and journals a write that arrives after the unit went offline but before the listener closed', async () => {
    const raw = await RawClient.open(port);
    unit.faults.offline = true; // set, applyFaults() not yet called
    raw.send(mbap(writeMultiplePdu(pm.commandBlock, command({ epoch: 4, heartbeat: 9 }))));
    await expect(raw.next()).rejects.toThrow(/closed/);
    expect(lastEntry()).toMatchObject({ ahu: unit.id, epoch: 4, accepted: false, reason: 'offline' });
    unit.faults.offline = false;
    await server.applyFaults();
    expect((await client.readHoldingRegisters(pm.statusBlock, 1)).data).toHaveLength(1);
  });
});

describe('Modbus TCP air handler: start and stop', () => {
  it('refuses to start on a port that is taken, saying what to fix', async () => {
    const { port } = await startUnit(cfg(0));
    const second = new ModbusAhuServer(new SimAirHandler(cfg(0), journal), {
      host: '127.0.0.1',
      port,
      unitId: 1,
      logger: quietLogger,
    });
    servers.push(second);
    await expect(second.start()).rejects.toMatchObject({
      code: ErrorCodes.STARTUP,
      message: expect.stringMatching(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE.*free the port/),
    });
  });

  it('stop() closes the listener and every connection; stopping twice is harmless', async () => {
    const { server, port } = await startUnit(cfg(1), { frameTimeoutMs: 60_000 });
    const client = await modbusClient(port);
    const raw = await RawClient.open(port);
    raw.send(mbap(readPdu(0x03, pm.statusBlock, 1)).subarray(0, 4)); // a frame timer is running
    await client.readHoldingRegisters(pm.statusBlock, 1);
    await Promise.all([server.stop(), server.stop()]);
    await server.stop();
    await raw.closedAt;
    await waitFor('the client to see its connection closed', () => !client.isOpen);
    await expect(RawClient.open(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(server.counters.connectionsClosed).toBe(2);
  });
});
