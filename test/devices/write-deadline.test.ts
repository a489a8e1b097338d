// Writes end inside the term, at the device seam: a write goes on the wire only while the unit's
// stated worst case (client.maxApplyDelayMs) fits before the caller's deadline, an OPC-UA write
// carries what is left as its timeoutHint, and the simulator's units keep the bound a real unit or
// gateway keeps — a request held past it is dropped (journaled 'expired'), never applied later.
// Real servers over real sockets (the simulator's Modbus TCP, RTU over a socat pty pair, OPC-UA).
import { mkdtemp, rm } from 'node:fs/promises';
import { type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ModbusRtuAhuServer } from '../../firmware-sim/ahu/modbus-rtu-server.ts';
import { ModbusAhuServer } from '../../firmware-sim/ahu/modbus-server.ts';
import { OpcuaAhuServer } from '../../firmware-sim/ahu/opcua-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type {
  DeviceClientSettings,
  ModbusAirHandler,
  ModbusRtuAirHandler,
  OpcuaAirHandler,
} from '../../src/config/site-schema.ts';
import type { AhuCommandSet, DeviceIo } from '../../src/devices/device-io.ts';
import { ModbusDevice } from '../../src/devices/modbus/modbus-device.ts';
import { ModbusTcpClient } from '../../src/devices/modbus/modbus-tcp.ts';
import { encodeCommand, resolvePointMap } from '../../src/devices/modbus/point-map.ts';
import { OpcuaDevice, routeNodeOpcuaLogs } from '../../src/devices/opcua/opcua-device.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { quietLogger, rejectionOf, waitFor } from '../helpers.ts';
import { type PtyPair, ptyPair } from '../support/pty-pair.ts';

const site = generateSite(demoShape);
const modbusBase = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp')!;
const opcuaBase = site.airHandlers.find((a): a is OpcuaAirHandler => a.protocol === 'opcua')!;
const journal = new Journal(() => 0);
const stops: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

const remote = (epoch: number): AhuCommandSet => ({
  epoch,
  remoteEnable: true,
  fanPct: 60,
  supplySetpointC: 19,
});
const entries = (ahu: string, epoch: number) =>
  journal.since(0).entries.filter((e) => e.ahu === ahu && e.epoch === epoch);

function failure(p: Promise<unknown>): Promise<DeviceError> {
  return rejectionOf(p, DeviceError);
}

/** Holds the test until `ms` have passed: the slow unit's delay, which a dropped write must outlive. */
async function outlive(what: string, startedMs: number, ms: number): Promise<void> {
  await waitFor(what, () => performance.now() - startedMs >= ms, { timeoutMs: ms + 5_000, intervalMs: 50 });
}

async function modbusUnit(id: string, client: DeviceClientSettings) {
  const config: ModbusAirHandler = { ...modbusBase, id, client };
  const unit = new SimAirHandler(config, journal);
  const server = new ModbusAhuServer(unit, { host: '127.0.0.1', port: 0, unitId: 1, logger: quietLogger });
  const { port } = await server.start();
  stops.push(() => server.stop());
  return { unit, config: { ...config, endpoint: { host: '127.0.0.1', port, unitId: 1 } } };
}

function keep<T extends DeviceIo>(d: T): T {
  stops.push(() => d.close());
  return d;
}

describe('Modbus: a write starts only if the unit can apply it before the deadline', () => {
  it('refuses to send (NOT_LEADER) when less than maxApplyDelayMs is left, sends when it fits', async () => {
    const { config } = await modbusUnit('wd-mb-budget', { timeoutMs: 500, maxApplyDelayMs: 400 });
    const d = keep(new ModbusDevice(config, { logger: quietLogger }));
    await d.open();
    const tight = await failure(
      d.writeCommand(remote(5), { deadlineMs: () => performance.now() + 300, reassert: true }),
    );
    expect(tight.code).toBe(ErrorCodes.NOT_LEADER);
    expect(tight.message).toMatch(/ms are left of the lease but the unit may take 400 ms/);
    const gone = await failure(d.writeCommand(remote(5), { deadlineMs: () => null, reassert: true }));
    expect(gone.code).toBe(ErrorCodes.NOT_LEADER);
    expect(entries('wd-mb-budget', 5)).toEqual([]);
    await d.writeCommand(remote(5), { deadlineMs: () => performance.now() + 450, reassert: true });
    expect(entries('wd-mb-budget', 5)).toEqual([expect.objectContaining({ accepted: true })]);
  });

  it('the simulated unit drops a request held past its bound, even for a client that never hangs up', async () => {
    // A frozen controller (SIGSTOP) cannot close its socket: only the unit's bound ends its write.
    const { unit, config } = await modbusUnit('wd-mb-frozen', { timeoutMs: 500, maxApplyDelayMs: 300 });
    unit.faults.slowMs = 1_500;
    const socket: Socket = await new Promise((ok, fail) => {
      const s = tcpConnect({ host: '127.0.0.1', port: config.endpoint.port }, () => ok(s)).once(
        'error',
        fail,
      );
    });
    stops.push(() => void socket.destroy());
    const client = new ModbusTcpClient(1);
    socket.on('data', (chunk) => client.receive(chunk));
    client.attach(socket);
    const pm = resolvePointMap(config.pointMap);
    const started = performance.now();
    const answer = client
      .writeRegisters(pm.commandBlock, encodeCommand({ ...remote(7), heartbeat: 1 }, pm))
      .then(
        () => 'answered',
        (e: unknown) => String(e),
      );
    await waitFor('the write journaled', () => entries('wd-mb-frozen', 7).length > 0);
    const droppedAfterMs = performance.now() - started;
    expect(droppedAfterMs).toBeGreaterThanOrEqual(290);
    expect(droppedAfterMs).toBeLessThan(1_000);
    await outlive('the slow delay', started, 2_000);
    expect(entries('wd-mb-frozen', 7)).toEqual([
      expect.objectContaining({ accepted: false, reason: 'expired' }),
    ]);
    expect(unit.status().epoch).toBe(0);
    // Dropped unanswered, like a gateway set to answer nothing: the socket stays open and quiet.
    expect(await Promise.race([answer, Promise.resolve('no answer')])).toBe('no answer');
  });
});

describe('Modbus RTU: queued requests past the bound never reach the unit', () => {
  let pair: PtyPair | undefined;
  afterEach(async () => {
    await pair?.close();
  });

  it('a write the client gave up on is dropped at the bound, not applied when the line frees', async () => {
    pair = await ptyPair();
    const { master: controllerEnd, device: deviceEnd } = pair;
    const config: ModbusRtuAirHandler = {
      ...modbusBase,
      id: 'wd-rtu',
      protocol: 'modbus-rtu',
      endpoint: { path: controllerEnd, simPath: deviceEnd, unitId: 3, baudRate: 19_200, parity: 'even' },
      client: { timeoutMs: 500, retries: 0, maxApplyDelayMs: 300 },
    };
    const unit = new SimAirHandler(config, journal);
    const server = new ModbusRtuAhuServer(unit, {
      path: deviceEnd,
      unitId: 3,
      parity: 'even',
      logger: quietLogger,
    });
    await server.start();
    stops.push(() => server.stop());
    const d = keep(new ModbusDevice(config, { logger: quietLogger }));
    await d.open();
    unit.faults.slowMs = 1_500;
    const started = performance.now();
    const err = await failure(d.writeCommand(remote(9)));
    expect(err.code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    await outlive('the slow delay', started, 2_000);
    expect(entries('wd-rtu', 9)).toEqual([expect.objectContaining({ accepted: false, reason: 'expired' })]);
    expect(unit.status().epoch).toBe(0);
  });
});

describe('OPC-UA: the write carries the time left as its timeoutHint, and the unit honours it', () => {
  const ids = ['wd-ua-budget', 'wd-ua-slow', 'wd-ua-fast'] as const;
  const units = ids.map((id) => new SimAirHandler({ ...opcuaBase, id }, journal));
  let root = '';
  let endpointUrl = '';

  beforeAll(async () => {
    routeNodeOpcuaLogs(quietLogger);
    root = await mkdtemp(join(tmpdir(), 'coolctl-wd-opcua-'));
    const server = new OpcuaAhuServer(units, {
      host: '127.0.0.1',
      port: 0,
      resourcePath: '/coolctl-sim',
      logger: quietLogger,
      pkiDir: join(root, 'server-pki'),
    });
    ({ endpointUrl } = await server.start());
    stopServer = () => server.stop();
  }, 60_000);
  let stopServer: () => Promise<void> = async () => {};
  afterAll(async () => {
    await stopServer();
    if (root) await rm(root, { recursive: true, force: true });
  });

  function opcua(i: number, client: DeviceClientSettings): OpcuaDevice {
    return keep(
      new OpcuaDevice(
        { ...opcuaBase, id: ids[i]!, endpoint: { url: endpointUrl, securityMode: 'None' }, client },
        { logger: quietLogger, pkiDir: join(root, 'client-pki'), clientName: `test-${ids[i]}` },
      ),
    );
  }

  it('refuses to send (NOT_LEADER) when less than maxApplyDelayMs is left', async () => {
    const d = opcua(0, { timeoutMs: 1_000, maxApplyDelayMs: 800 });
    await d.open();
    const err = await failure(
      d.writeCommand(remote(4), { deadlineMs: () => performance.now() + 500, reassert: true }),
    );
    expect(err.code).toBe(ErrorCodes.NOT_LEADER);
    expect(entries('wd-ua-budget', 4)).toEqual([]);
  });

  it('a slow unit drops the call when its hint passes; it never lands after the deadline', async () => {
    const unit = units[1]!;
    const d = opcua(1, { timeoutMs: 3_000, retries: 0, maxApplyDelayMs: 200 });
    await d.open();
    unit.faults.slowMs = 4_000;
    const started = performance.now();
    const deadline = started + 1_200;
    const err = await failure(d.writeCommand(remote(6), { deadlineMs: () => deadline, reassert: true }));
    // Our deadline and the unit's BadTimeout at the hint race: either way the caller hears a timeout.
    expect(err).toMatchObject({ code: ErrorCodes.DEVICE_TIMEOUT, retryable: true });
    await waitFor('the call journaled', () => entries('wd-ua-slow', 6).length > 0, { timeoutMs: 6_000 });
    const journaledAfterMs = performance.now() - started;
    expect(journaledAfterMs).toBeLessThan(2_000);
    await outlive('the slow delay', started, 4_500);
    expect(entries('wd-ua-slow', 6)).toEqual([
      expect.objectContaining({ accepted: false, reason: 'expired' }),
    ]);
    expect(unit.status().epoch).toBe(0);
  });

  it('a unit that answers in time is written as before', async () => {
    const d = opcua(2, { timeoutMs: 1_000 });
    await d.open();
    await d.writeCommand(remote(3), { deadlineMs: () => performance.now() + 2_000, reassert: true });
    expect(entries('wd-ua-fast', 3)).toEqual([expect.objectContaining({ accepted: true })]);
  });
});
