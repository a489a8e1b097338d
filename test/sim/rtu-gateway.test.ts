// Several simulated units on one RS-485 line (a socat pty pair), reached directly by an RTU master
// and through the simulated Modbus TCP→RTU gateway: dispatch by slave address, silence for unknown
// addresses and broadcasts, 0x0B for a dead unit while the others keep answering, 0x0A for an
// address not behind the gateway, 06 when a master's queue is full, and line time at the baud.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import modbusSerial from 'modbus-serial';
import { afterEach, describe, expect, it } from 'vitest';
import { ModbusDevices } from '../../firmware-sim/ahu/modbus-devices.ts';
import { ModbusAhuPdu, newPduCounters } from '../../firmware-sim/ahu/modbus-pdu.ts';
import { ModbusRtuLineServer } from '../../firmware-sim/ahu/modbus-rtu-server.ts';
import {
  GATEWAY_EXCEPTION,
  InProcessLink,
  RtuGateway,
  SerialMasterLink,
} from '../../firmware-sim/ahu/rtu-gateway.ts';
import { RtuLine } from '../../firmware-sim/ahu/rtu-line.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import { checkSiteRules } from '../../src/config/site-rules.ts';
import type { ModbusAirHandler, ModbusRtuAirHandler } from '../../src/config/site-schema.ts';
import {
  decodeStatus,
  encodeCommand,
  resolvePointMap,
  STATUS_BLOCK_LEN,
} from '../../src/devices/modbus/point-map.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const ModbusRTU = modbusSerial.default;
type ModbusClient = InstanceType<typeof ModbusRTU>;

const base = generateSite(demoShape).airHandlers[0];
if (!base) throw new Error('demo site has no air handler');
const pm = resolvePointMap(undefined);
const journal = new Journal(() => 0);

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A fresh pty pair: `master` for the RTU master (controller or gateway), `device` for the line. */
async function ptyPair(): Promise<{ master: string; device: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'coolctl-line-'));
  const master = join(dir, 'master');
  const device = join(dir, 'device');
  const socat: ChildProcess = spawn(
    'socat',
    ['-d', '-d', `pty,raw,echo=0,link=${master}`, `pty,raw,echo=0,link=${device}`],
    { stdio: 'ignore' },
  );
  socat.on('error', () => undefined); // a missing socat fails the waitFor below with a clear message
  cleanups.push(() => {
    if (socat.exitCode === null) socat.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor('socat pty pair (apt-get install socat)', () => existsSync(master) && existsSync(device));
  return { master, device };
}

function unitAt(id: string, unitId: number, localSetpointC: number, devicePath: string): SimAirHandler {
  const config: ModbusRtuAirHandler = {
    ...base!,
    id,
    protocol: 'modbus-rtu',
    endpoint: { path: '/dev/null', simPath: devicePath, unitId },
    localSetpointC,
    client: { timeoutMs: 1000 },
  } as ModbusRtuAirHandler;
  return new SimAirHandler(config, journal);
}

/** Three native units at slave addresses 1, 2, 3 on one line served on the pty's device end. */
async function lineOfThree(device: string, opts: { simulateTiming?: boolean } = {}) {
  const server = new ModbusRtuLineServer({ path: device, logger: quietLogger, ...opts });
  const units = [
    unitAt('AHU-L1', 1, 17, device),
    unitAt('AHU-L2', 2, 18, device),
    unitAt('AHU-L3', 3, 19, device),
  ];
  units.forEach((u, i) => {
    server.addUnit(i + 1, new ModbusAhuPdu(u, pm, newPduCounters(), quietLogger));
  });
  await server.start();
  cleanups.push(() => server.stop());
  return { server, units };
}

async function tcpClient(port: number): Promise<ModbusClient> {
  const client = new ModbusRTU();
  client.on('error', () => undefined);
  await client.connectTCP('127.0.0.1', { port });
  client.setTimeout(3000);
  cleanups.push(() => new Promise<void>((r) => client.close(() => r())));
  return client;
}

async function statusVia(client: ModbusClient, unitId: number) {
  client.setID(unitId);
  const r = await client.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN);
  return decodeStatus(r.data, pm);
}

describe('multi-drop RTU line (socat pty pair)', () => {
  it('an RTU master reaches each unit by its address; unknown addresses and broadcasts get silence', async () => {
    const { master, device } = await ptyPair();
    const { server, units } = await lineOfThree(device);
    const client = new ModbusRTU();
    client.on('error', () => undefined);
    await client.connectRTUBuffered(master, { baudRate: 19_200, parity: 'even' });
    cleanups.push(() => new Promise<void>((r) => client.close(() => r())));
    client.setTimeout(400);

    for (const [i, expected] of [17, 18, 19].entries()) {
      const st = await statusVia(client, i + 1);
      expect(st.localSetpointC).toBe(expected);
    }
    await expect(statusVia(client, 7)).rejects.toThrow(/timed out/i);
    expect(server.line.counters.unknownUnitId).toBe(1);

    // A broadcast write is not acted on by anyone, and nobody answers it.
    const seq = journal.lastSeq;
    client.setID(0);
    await expect(
      client.writeRegisters(
        pm.commandBlock,
        encodeCommand({ epoch: 1, heartbeat: 1, remoteEnable: true, fanPct: 50, supplySetpointC: 20 }, pm),
      ),
    ).rejects.toThrow();
    expect(server.line.counters.broadcasts).toBe(1);
    expect(journal.lastSeq).toBe(seq);
    expect(units.map((u) => u.mode)).toEqual(['local', 'local', 'local']);

    // A fenced write to unit 2 lands on unit 2 only.
    client.setID(2);
    await client.writeRegisters(
      pm.commandBlock,
      encodeCommand({ epoch: 3, heartbeat: 1, remoteEnable: true, fanPct: 55, supplySetpointC: 21 }, pm),
    );
    expect(units.map((u) => u.mode)).toEqual(['local', 'remote', 'local']);
    expect(journal.since(seq).entries).toEqual([
      expect.objectContaining({ ahu: 'AHU-L2', epoch: 3, accepted: true }),
    ]);
  });

  it('through the TCP→RTU gateway on the same pty: a dead unit is 0x0B within its timeout, the others answer', async () => {
    const { master, device } = await ptyPair();
    const { units } = await lineOfThree(device);
    const gateway = new RtuGateway({
      id: 'gw-line',
      host: '127.0.0.1',
      port: 0,
      link: new SerialMasterLink(master, { baudRate: 19_200, parity: 'even' }, quietLogger),
      units: [{ unitId: 1 }, { unitId: 2, responseTimeoutMs: 300 }, { unitId: 3 }],
      logger: quietLogger,
    });
    const { port } = await gateway.start();
    cleanups.push(() => gateway.stop());
    const client = await tcpClient(port);

    expect((await statusVia(client, 1)).localSetpointC).toBe(17);
    units[1]!.faults.offline = true; // no power: the unit never answers
    const t0 = performance.now();
    await expect(statusVia(client, 2)).rejects.toMatchObject({
      modbusCode: GATEWAY_EXCEPTION.targetFailedToRespond,
    });
    const deadMs = performance.now() - t0;
    // Its own timeout (300 ms) plus the request's line time, not the others' (1 s default).
    expect(deadMs).toBeGreaterThanOrEqual(300);
    expect(deadMs).toBeLessThan(900);
    expect((await statusVia(client, 3)).localSetpointC).toBe(19);
    expect((await statusVia(client, 1)).localSetpointC).toBe(17);
    expect(gateway.counters.targetNoAnswer).toBe(1);

    units[1]!.faults.offline = false;
    expect((await statusVia(client, 2)).localSetpointC).toBe(18);
  });
});

describe('simulated Modbus TCP→RTU gateway', () => {
  async function inProcessGateway(
    opts: {
      queueDepth?: number;
      simulateTiming?: boolean;
      queueTimeoutMs?: number;
      idleTimeoutMs?: number;
    } = {},
  ) {
    const line = new RtuLine({
      name: 'line-test',
      logger: quietLogger,
      simulateTiming: opts.simulateTiming ?? true,
    });
    const units = [unitAt('AHU-G1', 1, 17, ''), unitAt('AHU-G2', 2, 18, '')];
    units.forEach((u, i) => {
      line.addUnit(i + 1, new ModbusAhuPdu(u, pm, newPduCounters(), quietLogger));
    });
    const gateway = new RtuGateway({
      id: 'gw-test',
      host: '127.0.0.1',
      port: 0,
      link: new InProcessLink(line),
      units: [1, 2].map((unitId) => ({
        unitId,
        ...(opts.queueTimeoutMs !== undefined ? { queueTimeoutMs: opts.queueTimeoutMs } : {}),
      })),
      ...(opts.queueDepth !== undefined ? { queueDepth: opts.queueDepth } : {}),
      ...(opts.idleTimeoutMs !== undefined ? { idleTimeoutMs: opts.idleTimeoutMs } : {}),
      logger: quietLogger,
    });
    const { port } = await gateway.start();
    cleanups.push(async () => {
      await gateway.stop();
      line.stop();
    });
    return { gateway, line, units, port };
  }

  it('answers 0x0A for a unit id that is not behind it, at once', async () => {
    const { port, gateway } = await inProcessGateway();
    const client = await tcpClient(port);
    const t0 = performance.now();
    await expect(statusVia(client, 9)).rejects.toMatchObject({
      modbusCode: GATEWAY_EXCEPTION.pathUnavailable,
    });
    expect(performance.now() - t0).toBeLessThan(200);
    expect(gateway.counters.pathUnavailable).toBe(1);
    expect((await statusVia(client, 2)).localSetpointC).toBe(18);
  });

  it('a request on a slow line is in flight: its master is not closed for idleness and gets its answer', async () => {
    const IDLE_TIMEOUT_MS = 150;
    const { port, units, gateway } = await inProcessGateway({ idleTimeoutMs: IDLE_TIMEOUT_MS });
    // The unit answers well within its response timeout (1 s), but long past the idle timeout.
    units[0]!.faults.slowMs = 4 * IDLE_TIMEOUT_MS;
    const raw = await RawMbap.open(port);
    cleanups.push(() => raw.close());
    raw.send(readRequest(7, 1));
    const answer = await waitFor('the slow unit’s answer', () => raw.take()[0], { timeoutMs: 3_000 });
    expect(answer.readUInt16BE(0)).toBe(7);
    expect(answer.readUInt8(7)).toBe(0x03);
    expect(gateway.counters.answered).toBe(1);
    expect(gateway.counters.idleTimeouts).toBe(0);
    // Silent from here on: the same idle timeout does close it once nothing is in flight.
    await waitFor('idle close after the answer', () => gateway.counters.idleTimeouts === 1);
  });

  it('answers 06 to what a master sends past its queue, and serves the rest in order', async () => {
    const { port, units, gateway } = await inProcessGateway({ queueDepth: 2 });
    units[0]!.faults.slowMs = 150;
    const raw = await RawMbap.open(port);
    cleanups.push(() => raw.close());
    // Six reads pipelined on one connection: one goes on the line, two wait, three find the queue full.
    raw.send(...[1, 2, 3, 4, 5, 6].map((tid) => readRequest(tid, 1)));
    const answers = new Map<number, Buffer>();
    await waitFor('six answers', async () => {
      for (const f of raw.take()) answers.set(f.readUInt16BE(0), f);
      return answers.size === 6;
    });
    const busy = [...answers.values()].filter(
      (f) => f.readUInt8(7) === 0x83 && f.readUInt8(8) === GATEWAY_EXCEPTION.serverBusy,
    );
    const served = [...answers.values()].filter((f) => f.readUInt8(7) === 0x03);
    expect(busy.length).toBe(3);
    expect(served.map((f) => f.readUInt16BE(0))).toEqual([1, 2, 3]);
    expect(gateway.counters.busy).toBe(3);
  });

  it('a request that waited past its unit’s queue timeout is 0x0B at once and never goes on the line', async () => {
    const { port, units, gateway } = await inProcessGateway({ queueTimeoutMs: 100 });
    units[0]!.faults.slowMs = 250;
    const raw = await RawMbap.open(port);
    cleanups.push(() => raw.close());
    const seq = journal.lastSeq;
    // Unit 1 holds the line 250 ms; the write to unit 2 behind it is stale by then.
    const write = Buffer.from(readRequest(2, 2));
    write.writeUInt8(0x10, 7);
    const cmd = encodeCommand(
      { epoch: 1, heartbeat: 1, remoteEnable: true, fanPct: 50, supplySetpointC: 20 },
      pm,
    );
    const pdu = Buffer.alloc(6 + 2 * cmd.length);
    pdu.writeUInt8(0x10, 0);
    pdu.writeUInt16BE(pm.commandBlock, 1);
    pdu.writeUInt16BE(cmd.length, 3);
    pdu.writeUInt8(2 * cmd.length, 5);
    cmd.forEach((w, i) => {
      pdu.writeUInt16BE(w, 6 + 2 * i);
    });
    const mbapWrite = Buffer.concat([write.subarray(0, 7), pdu]);
    mbapWrite.writeUInt16BE(1 + pdu.length, 4);
    raw.send(readRequest(1, 1), mbapWrite);
    const answers = new Map<number, Buffer>();
    await waitFor('two answers', async () => {
      for (const f of raw.take()) answers.set(f.readUInt16BE(0), f);
      return answers.size === 2;
    });
    expect(answers.get(1)?.readUInt8(7)).toBe(0x03);
    expect([answers.get(2)?.readUInt8(7), answers.get(2)?.readUInt8(8)]).toEqual([
      0x90,
      GATEWAY_EXCEPTION.targetFailedToRespond,
    ]);
    expect(gateway.counters).toMatchObject({ forwarded: 1, queueExpired: 1 });
    // It never reached unit 2: nothing journaled, still on local control.
    expect(journal.since(seq).entries).toEqual([]);
    expect(units[1]!.mode).toBe('local');
  });

  it('one request at a time on the line: reads take the line time 19 200 baud allows', async () => {
    const { port, line } = await inProcessGateway();
    const client = await tcpClient(port);
    await statusVia(client, 1);
    const n = 15;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await statusVia(client, (i % 2) + 1);
    const elapsedMs = performance.now() - t0;
    // Request 8 bytes, answer 5 + 32 bytes, 3.5 characters of silence after each, 11 bits per character.
    const perReadMs = line.frameMs(8) + line.frameMs(5 + 2 * STATUS_BLOCK_LEN);
    expect(line.charMs).toBeCloseTo((11 * 1000) / 19_200, 6);
    expect(elapsedMs).toBeGreaterThanOrEqual(n * perReadMs * 0.95);
  });
});

function readRequest(tid: number, unitId: number): Buffer {
  const f = Buffer.alloc(12);
  f.writeUInt16BE(tid, 0);
  f.writeUInt16BE(0, 2);
  f.writeUInt16BE(6, 4);
  f.writeUInt8(unitId, 6);
  f.writeUInt8(0x03, 7);
  f.writeUInt16BE(pm.statusBlock, 8);
  f.writeUInt16BE(STATUS_BLOCK_LEN, 10);
  return f;
}

/** A bare TCP connection split into MBAP frames: pipelining that client libraries do not do. */
class RawMbap {
  private buffer = Buffer.alloc(0);
  private frames: Buffer[] = [];
  private readonly socket: Socket;
  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      while (this.buffer.length >= 6 && this.buffer.length >= 6 + this.buffer.readUInt16BE(4)) {
        const len = 6 + this.buffer.readUInt16BE(4);
        this.frames.push(Buffer.from(this.buffer.subarray(0, len)));
        this.buffer = this.buffer.subarray(len);
      }
    });
  }

  static open(port: number): Promise<RawMbap> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('error', reject);
      socket.once('connect', () => resolve(new RawMbap(socket)));
    });
  }

  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  take(): Buffer[] {
    return this.frames.splice(0);
  }

  close(): void {
    this.socket.destroy();
  }
}

describe('the site file: who shares a line or a gateway', () => {
  const site = generateSite(demoShape);
  const tcp = site.airHandlers.filter((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp');

  it('units on one TCP endpoint with distinct unit ids are behind one gateway; one unit id twice is refused', () => {
    const [a, b, c] = tcp as [ModbusAirHandler, ModbusAirHandler, ModbusAirHandler];
    const at = (x: ModbusAirHandler, unitId: number): ModbusAirHandler => ({
      ...x,
      endpoint: { host: '127.0.0.1', port: 15_099, unitId },
    });
    const shared = (ahus: ModbusAirHandler[]) => {
      const others = site.airHandlers.filter((x) => !ahus.some((y) => y.id === x.id));
      return checkSiteRules({ ...site, airHandlers: [...others, ...ahus] }).filter((p) =>
        /endpoint/.test(p.path),
      );
    };
    expect(shared([at(a, 1), at(b, 2), at(c, 3)])).toEqual([]);
    const clash = shared([at(a, 1), at(b, 2), at(c, 2)]);
    expect(clash).toEqual([
      expect.objectContaining({
        path: expect.stringMatching(/endpoint\/unitId$/),
        message: expect.stringMatching(/unit id 2 is already used/),
      }),
    ]);
    // Unit id 0 answers every id, 255 is the gateway itself: neither can share an endpoint.
    expect(shared([at(a, 1), at(b, 0)])).toHaveLength(1);
  });

  it('units naming one simPath with different line settings are refused at start, naming both', async () => {
    const rtu = (id: string, unitId: number, baudRate: number): ModbusRtuAirHandler =>
      ({
        ...base,
        id,
        protocol: 'modbus-rtu',
        endpoint: { path: '/dev/ttyX', simPath: '/nonexistent/line', unitId, baudRate },
      }) as ModbusRtuAirHandler;
    const ahus = [rtu('AHU-R1', 1, 19_200), rtu('AHU-R2', 2, 9_600)];
    const devices = new ModbusDevices(new Map(ahus.map((a) => [a.id, new SimAirHandler(a, journal)])), {
      ephemeralPorts: true,
      logger: quietLogger,
    });
    cleanups.push(() => devices.stop());
    await expect(devices.start(ahus)).rejects.toThrow(/AHU-R2 has 9600 8E1 .* but AHU-R1 has 19200 8E1/);
    const same = [rtu('AHU-R3', 1, 19_200), rtu('AHU-R4', 1, 19_200)];
    const twice = new ModbusDevices(new Map(same.map((a) => [a.id, new SimAirHandler(a, journal)])), {
      ephemeralPorts: true,
      logger: quietLogger,
    });
    cleanups.push(() => twice.stop());
    await expect(twice.start(same)).rejects.toThrow(/AHU-R4 and AHU-R3 both have slave address 1/);
  });
});
