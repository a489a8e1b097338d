// Device profiles on the wire, against the simulator's vendor units on loopback Modbus TCP: a unit
// that shows a fault code the profile does not name (0x7FFF, 0xFFFF, a float Infinity, a float with
// its words swapped) is read as absent — NaN, quality uncertain, one log line — never as a
// believable figure; and a setpoint at the top of the range reaches a whole-°F unit as one it
// accepts, not as 81 °F (27.2 °C) that it refuses on every write.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_PROFILES_DIR } from '../../firmware-sim/ahu/modbus-devices.ts';
import { ModbusAhuServer } from '../../firmware-sim/ahu/modbus-server.ts';
import { ProfilePdu } from '../../firmware-sim/ahu/profile-pdu.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import { ProfileModbusDevice } from '../../src/devices/modbus/profile-device.ts';
import { type CompiledProfile, compileProfile } from '../../src/devices/profile/codec.ts';
import { parseProfile } from '../../src/devices/profile/load.ts';
import type { RegisterImage } from '../../src/devices/profile/register-image.ts';
import { SUPPLY_SETPOINT_RANGE_C } from '../../src/unit-contract.ts';
import { quietLogger } from '../helpers.ts';
import { modbusTestAhu } from '../support/air-handler.ts';
import { NO_QUIRKS } from '../support/profile-unit.ts';

const journal = new Journal(() => 0);
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let count = 0;

/**
 * A vendor unit serving `text` (a profile's YAML) on a loopback port, its registers as the codec
 * shows them and then changed by `garble`; and a controller's device for it, logging into `logs`.
 */
async function rig(text: string, garble: (image: RegisterImage) => void = () => {}) {
  const raw = parseProfile(text);
  const profile = compileProfile(raw);
  // The unit's side: the same codec, with the registers the test garbles.
  const shown: CompiledProfile = {
    ...profile,
    encodeImage: (values) => {
      const image = profile.encodeImage(values);
      garble(image);
      return image;
    },
  };
  const id = `AHU-H${++count}`;
  const config = modbusTestAhu(id, 0, {
    localFanPct: 80,
    client: { timeoutMs: 1_000, retries: 0, maxApplyDelayMs: 300 },
  });
  const unit = new SimAirHandler(config, journal);
  const server = new ModbusAhuServer(unit, {
    host: '127.0.0.1',
    port: 0,
    unitId: 1,
    logger: quietLogger,
    handler: (counters, log) =>
      new ProfilePdu(unit, shown, raw, counters, { log, quirks: NO_QUIRKS, wallNowMs: () => 0 }),
  });
  const { port } = await server.start();
  cleanups.push(() => server.stop());
  const logs: { level: number; msg: string; absent?: string[] }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const device = new ProfileModbusDevice(
    { ...config, endpoint: { host: '127.0.0.1', port, unitId: 1 } },
    profile,
    { logger },
  );
  cleanups.push(() => device.close());
  const seq = journal.lastSeq;
  return { unit, device, logs, entries: () => journal.since(seq).entries.filter((e) => e.ahu === id) };
}

const shipped = (name: string) => readFile(join(DEFAULT_PROFILES_DIR, `${name}.yaml`), 'utf8');

const f32Words = (f: number): [number, number] => {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, f);
  return [dv.getUint16(0), dv.getUint16(2)];
};

describe('fault codes a profile does not name', () => {
  it('0x7FFF on a tenths-°C supply probe and 0xFFFF on a valve read as absent, not 3276.7 °C / 6553.5 %', async () => {
    // holding-tenths-c-timeout-register: supplyC 30440 (i16 tenths, noData −32768 only), cwValvePct 30446.
    const r = await rig(await shipped('holding-tenths-c-timeout-register'), (image) => {
      image.get('input')?.set(439, 0x7fff);
      image.get('input')?.set(445, 0xffff);
    });
    const got = await r.device.read();
    expect(got.supplyC).toBeNaN();
    expect(got.cwValvePct).toBeNaN();
    expect(got.absent).toEqual(expect.arrayContaining(['supplyC', 'cwValvePct']));
    expect(got.quality).toBe('uncertain');
    // What the unit really measures still reads.
    expect(got.returnC).toBeCloseTo(r.unit.status().returnC, 0);
    // One line says so, not one per read.
    await r.device.read();
    const said = r.logs.filter((l) => l.absent?.includes('supplyC'));
    expect(said).toHaveLength(1);
    expect(said[0]?.level).toBe(40);
  });

  it('0x7FFF on a tenths-of-a-kW cooling power reads as absent, not 3276.7 kW in the energy report', async () => {
    // tenths-f-int32-msw-no-watchdog: coolingKw holding 88, u16 tenths.
    const r = await rig(await shipped('tenths-f-int32-msw-no-watchdog'), (image) => {
      image.get('holding')?.set(88, 0x7fff);
    });
    const got = await r.device.read();
    expect(got.coolingKw).toBeNaN();
    expect(got.absent).toContain('coolingKw');
    expect(got.supplyC).toBeCloseTo(r.unit.status().supplyC, 0);
  });

  it('a float32 Infinity and a float32 with its words swapped read as absent, not ∞ or 0 °C', async () => {
    // float32-lsw-toggle-inverted-coil: returnC 30002 and supplyC 30010, float32 low word first.
    const r = await rig(await shipped('float32-lsw-toggle-inverted-coil'), (image) => {
      const input = image.get('input');
      const [infHi, infLo] = f32Words(Number.POSITIVE_INFINITY);
      input?.set(9, infLo);
      input?.set(10, infHi);
      // 21.5 as a unit with the other word order sends it: high word where the low one belongs.
      const [hi, lo] = f32Words(21.5);
      input?.set(1, hi);
      input?.set(2, lo);
    });
    const got = await r.device.read();
    expect(got.supplyC).toBeNaN();
    expect(got.returnC).toBeNaN();
    expect(got.absent).toEqual(expect.arrayContaining(['supplyC', 'returnC']));
    expect(got.quality).toBe('uncertain');
  });
});

describe('a setpoint at the end of the range, to a unit in whole °F', () => {
  it('27 °C goes out as 80 °F and the unit takes it; every write of the range is accepted', async () => {
    // The InRow-style map with a setpoint register in whole °F instead of tenths.
    const text = (await shipped('tenths-f-int32-msw-no-watchdog'))
      .replace(/^profile: .*$/m, 'profile: whole-f-setpoint')
      .replace(
        'supplySetpointC: { table: holding, address: 3, type: i16, scale: 0.1, unit: F, write: 6 }',
        'supplySetpointC: { table: holding, address: 3, type: i16, unit: F, write: 6 }',
      );
    expect(text).toContain('type: i16, unit: F, write: 6');
    const r = await rig(text);
    await r.device.open();
    for (const sp of [SUPPLY_SETPOINT_RANGE_C.max, SUPPLY_SETPOINT_RANGE_C.min, 26.9, 20]) {
      await r.device.writeCommand({ epoch: 1, remoteEnable: true, fanPct: 50, supplySetpointC: sp });
    }
    const landed = r.entries();
    expect(landed.filter((e) => !e.accepted)).toEqual([]);
    // The run point goes in a request of its own on the first write.
    const setpoints = landed
      .map((e) => e.values.supplySetpointC)
      .filter((v): v is number => typeof v === 'number');
    expect(setpoints).toHaveLength(4);
    for (const v of setpoints) {
      expect(v).toBeGreaterThanOrEqual(SUPPLY_SETPOINT_RANGE_C.min);
      expect(v).toBeLessThanOrEqual(SUPPLY_SETPOINT_RANGE_C.max);
    }
    // 80 °F, the whole °F nearest 27 °C inside the range.
    expect(setpoints[0]).toBeCloseTo((80 - 32) / 1.8, 9);
    expect(r.unit.status().supplySetpointC).toBeCloseTo(20, 0);
  });
});
