// A vendor-style unit served by Debian's pymodbus 3.0 (a Modbus stack nobody here wrote), driven by
// the controller's profile device over a real socket: the test sets temperatures and alarms in
// pymodbus's datastore and reads back what the controller wrote, scaled as the profile says
// (float32 low word first, tenths of °C, inverted run coil, FC5/FC6, a toggled heartbeat coil).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FencingKind, ModbusAirHandler } from '../../src/config/site-schema.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { AhuCommandSet } from '../../src/devices/device-io.ts';
import { ProfileModbusDevice } from '../../src/devices/modbus/profile-device.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { modbusTestAhu } from '../support/air-handler.ts';
import { PymodbusUnit, word } from './pymodbus-unit.ts';

// The shipped profile float32-lsw-toggle-inverted-coil (config/profiles): Data Aire dap4-style
// points — setpoint and fan speed in holding registers by FC6, a supervisory-off coil where
// 1 = off, a heartbeat coil the BMS must toggle, airflow and high-return alarm bits — with float32
// temperatures low word first (Liebert module-style).
const PROFILE = 'float32-lsw-toggle-inverted-coil';

/** Wire addresses of that profile (Modicon 40005 → holding 4, 00062 → coil 61, …). */
const AT = {
  returnC: 1,
  supplyC: 9,
  cwValve: 5044,
  fanFeedback: 5109,
  setpoint: 4,
  fan: 5070,
  run: 61,
  heartbeat: 69,
  airflow: 10,
  returnHigh: 25,
};

/** A float32 as the two registers of a low-word-first unit. */
function f32lsw(v: number): number[] {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, v);
  return [dv.getUint16(2), dv.getUint16(0)];
}

function vendorAhu(id: string, port: number, fencing?: FencingKind): ModbusAirHandler {
  return modbusTestAhu(id, port, {
    client: { timeoutMs: 1_000, retries: 2, maxApplyDelayMs: 200 },
    profile: PROFILE,
    ...(fencing ? { fencing } : {}),
  });
}

const cmd = (fanPct: number, supplySetpointC: number): AhuCommandSet => ({
  epoch: 7,
  remoteEnable: true,
  fanPct,
  supplySetpointC,
});

let py: PymodbusUnit;
const devices: ProfileModbusDevice[] = [];

beforeAll(async () => {
  py = await PymodbusUnit.start();
});

afterAll(async () => {
  for (const d of devices) await d.close();
  await py?.stop();
});

/** Built as the daemon builds it: createDevice finds the profile in config/profiles. */
async function device(id: string): Promise<ProfileModbusDevice> {
  const d = await createDevice(vendorAhu(id, py.port), { logger: quietLogger });
  expect(d).toBeInstanceOf(ProfileModbusDevice);
  devices.push(d as ProfileModbusDevice);
  return d as ProfileModbusDevice;
}

describe('a vendor-style unit on pymodbus, driven through its profile', () => {
  it('reads temperatures, mode and alarms as the profile scales them; no-data is NaN, never 0', async () => {
    await py.set('input', AT.returnC, f32lsw(29.1));
    await py.set('input', AT.supplyC, f32lsw(-3.5));
    await py.set('input', AT.cwValve, [41]);
    await py.set('input', AT.fanFeedback, [63]);
    await py.set('holding', AT.setpoint, [180]);
    await py.set('discrete', AT.airflow, [1]);
    await py.set('discrete', AT.returnHigh, [0]);
    const d = await device('py-read');
    expect(d.fencing).toBe('lease');
    const r = await d.read();
    expect(r.returnC).toBeCloseTo(29.1, 5);
    expect(r).toMatchObject({
      supplyC: -3.5,
      cwValvePct: 41,
      fanPct: 63,
      supplySetpointC: 18,
      // The profile has no mode point: never guessed.
      mode: 'unknown',
      alarmNames: ['airflow'],
      unitWatchdog: 'toggle',
      quality: 'good',
      epoch: 0,
    });
    expect(r.alarms).not.toBe(0);
    // The setpoint register's no-data value, and a float that is not a number.
    await py.set('holding', AT.setpoint, [word(-32768)]);
    await py.set('input', AT.supplyC, f32lsw(Number.NaN));
    await py.set('discrete', AT.airflow, [0]);
    const nodata = await d.read();
    expect(nodata.supplyC).toBeNaN();
    expect(nodata.supplySetpointC).toBeNaN();
    expect([...(nodata.absent ?? [])].sort()).toEqual(['supplyC', 'supplySetpointC']);
    expect(nodata.quality).toBe('uncertain');
    expect(nodata.alarmNames).toEqual([]);
    expect(nodata.alarms).toBe(0);
  });

  it('writes fan and setpoint scaled by the profile, by FC5/FC6, run inverted, heartbeat toggled', async () => {
    await py.set('input', AT.supplyC, f32lsw(19.4));
    const d = await device('py-write');
    await d.open();
    const before = (await py.writes()).length;
    await d.writeCommand(cmd(55, 19.5));
    expect(await py.get('holding', AT.setpoint)).toEqual([195]);
    expect(await py.get('holding', AT.fan)).toEqual([55]);
    // Supervisory off: 1 = off, so running is 0.
    expect(await py.get('coil', AT.run)).toEqual([0]);
    const hb1 = (await py.get('coil', AT.heartbeat))[0];
    await d.writeCommand(cmd(62.4, 18));
    expect(await py.get('holding', AT.setpoint)).toEqual([180]);
    expect(await py.get('holding', AT.fan)).toEqual([62]);
    const hb2 = (await py.get('coil', AT.heartbeat))[0];
    expect(hb2).toBe(1 - hb1!);
    const writes = (await py.writes()).slice(before);
    // In the profile's point order: heartbeat, run, setpoint, fan; the second command leaves run alone (a state, written
    // once per connection), and no write is ever a function code the unit lacks (no FC15/FC16).
    expect(writes).toEqual([
      [5, AT.heartbeat, 1],
      [5, AT.run, 1],
      [6, AT.setpoint, 1],
      [6, AT.fan, 1],
      [5, AT.heartbeat, 1],
      [6, AT.setpoint, 1],
      [6, AT.fan, 1],
    ]);
    // The setpoint in force reads back from its holding register (the profile has no feedback point).
    const r = await d.read();
    expect(r.supplySetpointC).toBe(18);
    expect(r.supplyC).toBeCloseTo(19.4, 5);
  });

  it('a lease write whose requests do not all fit before the deadline sends none of them', async () => {
    const d = await device('py-lease');
    await d.open();
    const before = (await py.writes()).length;
    // Four requests × maxApplyDelayMs 200 = 800 ms of worst case; 500 ms are left.
    const err = await d.writeCommand(cmd(40, 20), { deadlineMs: () => performance.now() + 500 }).then(
      () => undefined,
      (e: unknown) => e as DeviceError,
    );
    expect(err).toBeInstanceOf(DeviceError);
    expect(err?.code).toBe(ErrorCodes.NOT_LEADER);
    expect((await py.writes()).length).toBe(before);
    await d.writeCommand(cmd(40, 20), { deadlineMs: () => performance.now() + 2_000 });
    expect(await py.get('holding', AT.fan)).toEqual([40]);
  });

  it('exception 02 before a block ever answered is "not ready yet": retried, and the link stays up', async () => {
    await py.ready(false);
    try {
      const d = await device('py-not-ready');
      // The airflow bit was set earlier, so it answers; a new discrete point would not. Ask for the
      // whole map: the coil block (never set by the test) is not ready.
      const err = await d.readAll().then(
        () => undefined,
        (e: unknown) => e as DeviceError,
      );
      expect(err).toBeInstanceOf(DeviceError);
      expect(err).toMatchObject({ code: ErrorCodes.DEVICE_EXCEPTION, deviceCode: 2, retryable: true });
      expect(err?.message).toMatch(/not ready yet/);
      expect(d.linkState).toBe('up');
      await py.ready(true);
      const all = await waitFor('the unit has data', () => d.readAll().catch(() => undefined));
      expect(all.status.supplyC).toBeCloseTo(19.4, 5);
      // Once the block has answered, 02 is a fault (a point the unit lacks), not "not ready".
      await py.ready(false);
      const fault = await d.readAll().then(
        () => undefined,
        (e: unknown) => e as DeviceError,
      );
      expect(fault).toMatchObject({ code: ErrorCodes.DEVICE_EXCEPTION, deviceCode: 2, retryable: false });
    } finally {
      await py.ready(true);
    }
  });
});
