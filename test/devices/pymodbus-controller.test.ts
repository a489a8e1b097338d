// The pymodbus proof, end to end through a controller's own parts: every temperature lives in
// Debian's pymodbus (a stack nobody here wrote) — rack inlets in a Modbus TCP sensor gateway, the
// unit's supply and return in a vendor-style air handler (float32-lsw-toggle-inverted-coil). The
// controller's sensor poller (ModbusSource → SensorStore), its control loop (GroupDriver running
// the law, leading for good by a stub leadership: no etcd) and its profile device drive the unit. The test
// sets temperatures in the datastores and reads back the fan speed and setpoint the controller
// wrote there, scaled as the profile says (fan in %, setpoint in tenths of °C).
import { EventEmitter } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GroupLeadership, Leadership } from '../../src/cluster/leadership.ts';
import { parseSite } from '../../src/config/load-site.ts';
import { GroupDriver } from '../../src/control/group-driver.ts';
import { groupControlConfig } from '../../src/control/law/group-controller.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { AhuCommandSet, DeviceIo, WriteOptions } from '../../src/devices/device-io.ts';
import { ProfileModbusDevice } from '../../src/devices/modbus/profile-device.ts';
import { encodeNode } from '../../src/sensors/modbus-gateway-map.ts';
import { ModbusSource } from '../../src/sensors/modbus-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { PymodbusUnit } from './pymodbus-unit.ts';

/** Wire addresses of float32-lsw-toggle-inverted-coil's points. */
const AT = { supplyC: 9, returnC: 1, setpoint: 4, fan: 5070, run: 61 };

function f32lsw(v: number): number[] {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, v);
  return [dv.getUint16(2), dv.getUint16(0)];
}

/** This node leads G1 with epoch 7 for good: the loop under test, without etcd. */
class SoleLeader extends EventEmitter implements Leadership {
  readonly node = 'n1';
  readonly healthy = true;
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  groups(): GroupLeadership[] {
    return [{ group: 'G1', role: 'leader', leader: 'n1', epoch: 7, sinceMs: 1, relinquished: null }];
  }
  members() {
    return [];
  }
  fence(group: string) {
    return group === 'G1' ? { epoch: 7, untilMs: Number.POSITIVE_INFINITY } : null;
  }
  async switchover(): Promise<void> {}
}

let ahuPy: PymodbusUnit;
let sensorPy: PymodbusUnit;
let store: SensorStore;
let source: ModbusSource;
let driver: GroupDriver;
let device: DeviceIo;
let seq = 0;
/** Every command the device wrote successfully, in order. */
const written: AhuCommandSet[] = [];

/** A new report of sensor node N1 in the gateway's registers: three inlet temperatures. */
async function inlets(c: number): Promise<void> {
  seq++;
  await sensorPy.set(
    'holding',
    0,
    encodeNode({ seq, ageS: 0, batteryPct: 90, rssiDbm: -60, hops: 1, values: [c, c - 0.5, c - 1] }),
  );
}

beforeAll(async () => {
  [ahuPy, sensorPy] = await Promise.all([PymodbusUnit.start(), PymodbusUnit.start()]);
  await ahuPy.set('input', AT.supplyC, f32lsw(17.5));
  await ahuPy.set('input', AT.returnC, f32lsw(29));
  await inlets(24);
  const site = parseSite(
    JSON.stringify({
      site: { id: 'py-hall', name: 'pymodbus hall' },
      rooms: [{ id: 'hall', widthM: 12, depthM: 10 }],
      racks: [{ id: 'R1', room: 'hall', row: 'A', xM: 3, yM: 3, itLoadKw: 10 }],
      airHandlers: [
        {
          id: 'AHU-V',
          room: 'hall',
          xM: 1,
          yM: 1,
          capacityKw: 60,
          maxAirflowM3s: 6,
          fanMaxKw: 4,
          protocol: 'modbus-tcp',
          endpoint: { host: '127.0.0.1', port: ahuPy.port, unitId: 1 },
          profile: 'float32-lsw-toggle-inverted-coil',
          client: { timeoutMs: 1000, maxApplyDelayMs: 300 },
        },
      ],
      gateways: [
        {
          id: 'gw-py',
          transport: 'modbus-tcp',
          topicPrefix: 'coolctl/py',
          endpoint: { host: '127.0.0.1', port: sensorPy.port },
          pollIntervalS: 0.2,
        },
      ],
      sensorNodes: [
        {
          id: 'N1',
          rack: 'R1',
          gateway: 'gw-py',
          unitId: 1,
          reportIntervalS: 1,
          sensors: [
            { id: 'top', kind: 'inlet-top' },
            { id: 'mid', kind: 'inlet-middle' },
            { id: 'bot', kind: 'inlet-bottom' },
          ],
        },
      ],
      controlGroups: [{ id: 'G1', airHandlers: ['AHU-V'], sensorNodes: ['N1'] }],
    }),
    'py-hall.json',
  );
  store = new SensorStore(site, { logger: quietLogger });
  source = new ModbusSource(site, store, { logger: quietLogger });
  source.start();
  const real = await createDevice(site.airHandlers[0]!, { logger: quietLogger });
  expect(real).toBeInstanceOf(ProfileModbusDevice);
  // The real device, with a note of each command it wrote: what the test expects to find in pymodbus.
  device = Object.assign(Object.create(real) as DeviceIo, {
    writeCommand: async (cmd: AhuCommandSet, opts?: WriteOptions) => {
      await real.writeCommand(cmd, opts);
      written.push(cmd);
    },
    close: () => real.close(),
  });
  driver = new GroupDriver(site.controlGroups[0]!, new Map([['AHU-V', device]]), new SoleLeader(), {
    periodMs: 200,
    logger: quietLogger,
    control: { config: groupControlConfig(site, 'G1'), sensors: store },
  });
  driver.start();
}, 60_000);

afterAll(async () => {
  driver?.stop();
  source?.stop();
  await device?.close();
  await Promise.all([ahuPy?.stop(), sensorPy?.stop()]);
});

/** The last command written, once pymodbus holds exactly it (no write in flight between). */
async function settledCommand(): Promise<{ cmd: AhuCommandSet; fan: number; setpoint: number }> {
  return waitFor(
    'pymodbus to hold the last command written',
    async () => {
      const cmd = written.at(-1);
      if (!cmd) return undefined;
      const [fan] = await ahuPy.get('holding', AT.fan);
      const [sp] = await ahuPy.get('holding', AT.setpoint);
      const setpoint = sp! >= 0x8000 ? sp! - 0x10000 : sp!;
      if (written.at(-1) !== cmd) return undefined;
      return fan === Math.round(cmd.fanPct) && setpoint === Math.round(cmd.supplySetpointC * 10)
        ? { cmd, fan, setpoint }
        : undefined;
    },
    { timeoutMs: 15_000, intervalMs: 50 },
  );
}

describe('a controller drives a pymodbus unit from temperatures in pymodbus', () => {
  it('writes fan and setpoint scaled as the profile says, and cools harder when the inlets get hot', async () => {
    await waitFor('the first commands', () => written.length >= 3, { timeoutMs: 20_000, intervalMs: 50 });
    const cool = await settledCommand();
    expect(cool.cmd.epoch).toBe(7);
    expect(cool.cmd.remoteEnable).toBe(true);
    // Supervisory off (1 = off, inverted): the controller runs the unit.
    expect(await ahuPy.get('coil', AT.run)).toEqual([0]);

    // Hot inlets, reported through the sensor gateway: more air, or colder air, within seconds.
    for (let i = 0; i < 3; i++) await inlets(31);
    const hot = await waitFor(
      'the controller to answer the hot inlets',
      async () => {
        await inlets(31);
        const c = await settledCommand();
        return c.cmd.fanPct > cool.cmd.fanPct + 5 || c.cmd.supplySetpointC < cool.cmd.supplySetpointC - 0.5
          ? c
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(hot.fan).toBe(Math.round(hot.cmd.fanPct));
    expect(hot.setpoint).toBe(Math.round(hot.cmd.supplySetpointC * 10));
    // What the controller reads back from pymodbus is what it wrote, in engineering units.
    const r = await device.read();
    expect(r.supplyC).toBeCloseTo(17.5, 5);
    expect(r.returnC).toBeCloseTo(29, 5);
  }, 90_000);
});
