// The controller's profile-driven device (src/devices) against the simulator's profile units, as
// the demo runs them: every vendor-style profile, alone on its TCP port or two behind one
// simulated TCP→RTU gateway, with the start-up bites on. The controller reads through "not ready"
// and "no data", writes fan and setpoint, and the simulated unit applies them — the journal
// records the points that reached the unit.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load as loadYaml } from 'js-yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_PROFILES_DIR, ModbusDevices } from '../../firmware-sim/ahu/modbus-devices.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { ModbusAirHandler } from '../../src/config/site-schema.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger, waitFor } from '../helpers.ts';

/** The profiles a Modbus unit can serve (OPC-UA-only ones are proven in opcua-profile-unit.test.ts). */
function servesModbus(file: string): boolean {
  return (
    (loadYaml(readFileSync(join(DEFAULT_PROFILES_DIR, file), 'utf8')) as { modbus?: unknown }).modbus !==
    undefined
  );
}

const VENDOR_PROFILES = readdirSync(DEFAULT_PROFILES_DIR)
  .filter((f) => f.endsWith('.yaml') && f !== 'coolctl-native.yaml' && servesModbus(f))
  .map((f) => f.slice(0, -'.yaml'.length))
  .sort();

const base = generateSite(demoShape).airHandlers.find(
  (a): a is ModbusAirHandler => a.protocol === 'modbus-tcp',
);
if (!base) throw new Error('demo site has no Modbus TCP air handler');
const journal = new Journal(() => 0);
const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

async function hall(configs: ModbusAirHandler[]) {
  const units = new Map(configs.map((c) => [c.id, new SimAirHandler(c, journal)]));
  const devices = new ModbusDevices(units, {
    ephemeralPorts: false,
    profileQuirks: { notReadyMs: 400, noDataMs: 400, firstReadDelayMs: 100 },
    logger: quietLogger,
  });
  stops.push(() => devices.stop());
  await devices.start(configs);
  for (const u of units.values()) {
    u.updateMeasurements({
      fanPct: 70,
      supplyC: 19.4,
      returnC: 29.7,
      cwValvePct: 41,
      fanKw: 3.2,
      coolingKw: 45.6,
    });
  }
  return units;
}

async function controllerDevice(ahu: ModbusAirHandler): Promise<DeviceIo> {
  const d = await createDevice(ahu, { logger: quietLogger });
  stops.push(() => d.close());
  return d;
}

/** Drives one unit as a leader would, and checks what the simulated unit did with it. */
async function drive(d: DeviceIo, unit: SimAirHandler): Promise<void> {
  // Through "not ready" (02) and "no data" (−32768) to a reading with the unit's temperature, as
  // the daemon's loop gets there: the device says "not ready yet", the loop tries again.
  const r = await waitFor(
    `${unit.id}: a reading with data`,
    async () => {
      if (d.linkState !== 'up') await d.open();
      const x = await d.read();
      return Number.isFinite(x.supplyC) ? x : undefined;
    },
    { timeoutMs: 5_000, intervalMs: 100 },
  );
  expect(r.supplyC).toBeCloseTo(19.4, 1);
  const seq = journal.lastSeq;
  // A profile without a fan point (the in-row style) keeps its own fan speed.
  const fan = (pct: number) =>
    unit.config.profile === 'tenths-f-int32-msw-no-watchdog' ? unit.config.localFanPct : pct;
  await d.writeCommand({ epoch: 7, remoteEnable: true, fanPct: 55, supplySetpointC: 19.5 });
  expect(unit.status().mode).toBe('remote');
  // Tenths of °F carry a °C setpoint to within 0.03 °C.
  expect(unit.effectiveCommand()).toEqual({
    running: true,
    fanPct: fan(55),
    supplySetpointC: expect.closeTo(19.5, 1),
  });
  const written = journal.since(seq).entries.filter((e) => e.ahu === unit.id);
  expect(written.every((e) => e.accepted && e.epoch === 0)).toBe(true);
  const points = Object.assign({}, ...written.map((e) => e.values)) as Record<string, unknown>;
  expect(points).toMatchObject({ supplySetpointC: expect.closeTo(19.5, 1) });
  if (fan(55) === 55) expect(points).toMatchObject({ fanPct: 55 });
  // The next command lands too (the heartbeat, where there is one, moves on).
  await d.writeCommand({ epoch: 7, remoteEnable: true, fanPct: 48, supplySetpointC: 20 });
  expect(unit.effectiveCommand()).toEqual({
    running: true,
    fanPct: fan(48),
    supplySetpointC: expect.closeTo(20, 1),
  });
}

describe('the controller drives every vendor-style profile the simulator serves', () => {
  it('lists at least three vendor-style profiles', () => {
    expect(VENDOR_PROFILES.length).toBeGreaterThanOrEqual(3);
  });

  it.each(VENDOR_PROFILES)('%s, alone on its TCP port', async (profile) => {
    const ahu: ModbusAirHandler = {
      ...base,
      id: `AHU-${profile}`.slice(0, 60),
      endpoint: { host: '127.0.0.1', port: await freePort('127.0.0.1'), unitId: 1 },
      profile,
      client: { timeoutMs: 1000 },
    };
    const units = await hall([ahu]);
    await drive(await controllerDevice(ahu), units.get(ahu.id)!);
  });

  it('two vendor units behind one TCP→RTU gateway, each by its unit id', async () => {
    const port = await freePort('127.0.0.1');
    const ahus: ModbusAirHandler[] = [
      {
        ...base,
        id: 'AHU-GW1',
        endpoint: { host: '127.0.0.1', port, unitId: 1 },
        profile: 'float32-lsw-toggle-inverted-coil',
      },
      {
        ...base,
        id: 'AHU-GW2',
        endpoint: { host: '127.0.0.1', port, unitId: 2 },
        profile: 'coils-fc16-only-validity-timer',
      },
      // Both units' first reads (100 ms per new block) queue on one line in front of the other's
      // requests: a 1 s call deadline is not enough while they learn their blocks.
    ].map((a) => ({ ...a, client: { timeoutMs: 2000 } }));
    const units = await hall(ahus);
    const [d1, d2] = await Promise.all(ahus.map((a) => controllerDevice(a)));
    await Promise.all([drive(d1!, units.get('AHU-GW1')!), drive(d2!, units.get('AHU-GW2')!)]);
  });
});
