// Gateway fencing end to end on real sockets: a vendor-style unit (Debian's pymodbus, which checks
// nothing) behind the coolctl fencing gateway (in process, over its Modbus TCP listener), driven by
// two controller-side profile devices with `fencing: gateway`. The newer epoch's writes reach the
// unit; the deposed one's are refused at the gateway, proven by its epoch block, and never reach
// the unit (pymodbus's own write log).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModbusAhuServer } from '../../firmware-sim/ahu/modbus-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { ModbusAirHandler } from '../../src/config/site-schema.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { AhuCommandSet, DeviceIo } from '../../src/devices/device-io.ts';
import { ProfileModbusDevice } from '../../src/devices/modbus/profile-device.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { parseGatewayConfig } from '../../src/gateway/config.ts';
import { GatewayService } from '../../src/gateway/service.ts';
import { quietLogger } from '../helpers.ts';
import { modbusTestAhu } from '../support/air-handler.ts';
import { PymodbusUnit } from './pymodbus-unit.ts';

const PROFILE = 'float32-lsw-toggle-inverted-coil';
/** Wire addresses of that profile's setpoint and fan speed registers. */
const AT = { setpoint: 4, fan: 5070 };
const GATEWAY_UNIT_ID = 11;
const NATIVE_UNIT_ID = 12;
const FENCE_BASE = 50_000;

const journal = new Journal(() => 0);
let py: PymodbusUnit;
let sim: ModbusAhuServer;
let gateway: GatewayService;
let dir = '';
const devices: DeviceIo[] = [];

beforeAll(async () => {
  py = await PymodbusUnit.start();
  const native = new SimAirHandler(baseAhu('gw-native-unit'), journal);
  sim = new ModbusAhuServer(native, { host: '127.0.0.1', port: 0, unitId: 1, logger: quietLogger });
  const { port: simPort } = await sim.start();
  dir = await mkdtemp(join(tmpdir(), 'coolctl-fence-gw-'));
  const cfg = parseGatewayConfig(
    [
      'gateway: test-gw',
      'listen: { host: 127.0.0.1, port: 0 }',
      'http: { host: 127.0.0.1, port: 0 }',
      `stateFile: ${join(dir, 'epochs.json')}`,
      // Not the default (0xF000): the units' `fenceBase` must carry it to the controller.
      `fenceBase: ${FENCE_BASE}`,
      'lines:',
      `  - { name: py, tcp: { host: 127.0.0.1, port: ${py.port} }, queueTimeoutMs: 500 }`,
      `  - { name: sim, tcp: { host: 127.0.0.1, port: ${simPort} }, queueTimeoutMs: 500 }`,
      'units:',
      `  - { id: ${GATEWAY_UNIT_ID}, name: CRAH-11, line: py, unitId: 1, timeoutMs: 400 }`,
      `  - { id: ${NATIVE_UNIT_ID}, name: CRAH-12, line: sim, unitId: 1, timeoutMs: 400 }`,
    ].join('\n'),
    'test-gw.yaml',
  );
  gateway = new GatewayService(cfg, { logger: quietLogger });
  await gateway.start();
}, 30_000);

afterAll(async () => {
  for (const d of devices) await d.close();
  await gateway?.stop();
  await sim?.stop();
  await py?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function baseAhu(id: string): ModbusAirHandler {
  return modbusTestAhu(id, 0);
}

function behindGateway(id: string, unitId = GATEWAY_UNIT_ID, profile = PROFILE): ModbusAirHandler {
  return {
    ...baseAhu(id),
    endpoint: { host: gateway.modbus.host, port: gateway.modbus.port, unitId },
    client: { timeoutMs: 1_500, retries: 1, maxApplyDelayMs: 900 },
    fencing: 'gateway',
    fenceBase: FENCE_BASE,
    ...({ profile } as object),
  };
}

async function controller(id: string, unitId?: number, profile?: string): Promise<ProfileModbusDevice> {
  const d = await createDevice(behindGateway(id, unitId, profile), { logger: quietLogger });
  devices.push(d);
  expect(d).toBeInstanceOf(ProfileModbusDevice);
  expect((d as ProfileModbusDevice).fencing).toBe('gateway');
  return d as ProfileModbusDevice;
}

const cmd = (epoch: number, fanPct: number, supplySetpointC: number): AhuCommandSet => ({
  epoch,
  remoteEnable: true,
  fanPct,
  supplySetpointC,
});

describe('gateway fencing: a unit that checks nothing, behind coolctl gateway', () => {
  it('the newer epoch drives the unit; the deposed leader is refused, proven, and never reaches it', async () => {
    const old = await controller('gw-old');
    const next = await controller('gw-new');
    await old.open();
    await next.open();
    await old.writeCommand(cmd(5, 40, 20));
    expect(await py.get('holding', AT.fan)).toEqual([40]);
    expect(await py.get('holding', AT.setpoint)).toEqual([200]);
    await next.writeCommand(cmd(9, 70, 17));
    expect(await py.get('holding', AT.fan)).toEqual([70]);
    const before = (await py.writes()).length;

    const err = await old.writeCommand(cmd(5, 10, 25)).then(
      () => undefined,
      (e: unknown) => e as DeviceError,
    );
    expect(err).toBeInstanceOf(DeviceError);
    expect(err).toMatchObject({ code: ErrorCodes.DEVICE_FENCED, unitEpoch: 9, retryable: false });
    expect(err?.message).toMatch(/fencing gateway holds epoch 9 for this unit, above ours \(5\)/);
    // Nothing of the deposed write reached the unit: not its first request, not any after it.
    expect((await py.writes()).length).toBe(before);
    expect(await py.get('holding', AT.fan)).toEqual([70]);
    expect(await py.get('holding', AT.setpoint)).toEqual([170]);
    // Reads pass through the gateway unchanged.
    const r = await next.read();
    expect(r.supplySetpointC).toBe(17);
  });

  it('a coolctl-native unit behind the gateway: its one FC16 rides the window; the journal shows only the newer epoch', async () => {
    const old = await controller('gwn-old', NATIVE_UNIT_ID, 'coolctl-native');
    const next = await controller('gwn-new', NATIVE_UNIT_ID, 'coolctl-native');
    await old.writeCommand(cmd(21, 50, 19), { reassert: true });
    await next.writeCommand(cmd(30, 65, 18), { reassert: true });
    const err = await old.writeCommand(cmd(21, 20, 24)).then(
      () => undefined,
      (e: unknown) => e as DeviceError,
    );
    expect(err).toMatchObject({ code: ErrorCodes.DEVICE_FENCED, unitEpoch: 30 });
    const writes = journal.since(0).entries.filter((e) => e.ahu === 'gw-native-unit');
    expect(writes.map((e) => [e.epoch, e.accepted])).toEqual([
      [21, true],
      [30, true],
    ]);
    const r = await next.read();
    expect(r).toMatchObject({ epoch: 30, mode: 'remote', supplySetpointC: 18 });
  });
});
