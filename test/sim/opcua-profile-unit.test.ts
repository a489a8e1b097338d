// The simulator's OPC-UA server serving a vendor profile (config/profiles/opcua-tenths-c-method-
// heartbeat.yaml) beside a native unit, driven by the controller's OpcuaDevice made by createDevice,
// over real sockets on loopback: the profile's namespace, node ids and browse paths, Int16 tenths
// of °C, mode codes and alarm bits; commands land in the simulated unit and its journal (epoch 0,
// the controller's session as the writer); a point without data reads absent, never 0; the unit's
// own heartbeat watchdog drops BMS commands when the heartbeat stops changing.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpcuaAhuServer } from '../../firmware-sim/ahu/opcua-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { quietLogger } from '../helpers.ts';
import { TEST_AHU_PLANT } from '../support/air-handler.ts';

const PROFILE = 'opcua-tenths-c-method-heartbeat';
const NO_DATA_MS = 60_000;

function opcuaAhu(id: string, extra: Partial<OpcuaAirHandler> = {}): OpcuaAirHandler {
  return {
    id,
    ...TEST_AHU_PLANT,
    localSetpointC: 17,
    localFanPct: 80,
    protocol: 'opcua',
    endpoint: { url: 'opc.tcp://127.0.0.1:0/sim' },
    client: { timeoutMs: 2_000, maxApplyDelayMs: 500 },
    ...extra,
  };
}

const journal = new Journal(() => 0);
/** The units' wall clock: the test moves it through the start-up window and past the watchdog. */
let clockMs = 0;
const vendor = new SimAirHandler(opcuaAhu('AHU-08', { profile: PROFILE }), journal);
const native = new SimAirHandler(opcuaAhu('AHU-09'), journal);
let server: OpcuaAhuServer;
let device: DeviceIo;
let root = '';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-profile-unit-'));
  server = new OpcuaAhuServer([native, vendor], {
    host: '127.0.0.1',
    port: 0,
    resourcePath: '/sim',
    logger: quietLogger,
    profileQuirks: { notReadyMs: 0, noDataMs: NO_DATA_MS, firstReadDelayMs: 0 },
    wallNowMs: () => clockMs,
  });
  const { endpointUrl } = await server.start();
  device = await createDevice(opcuaAhu('AHU-08', { profile: PROFILE, endpoint: { url: endpointUrl } }), {
    logger: quietLogger,
    pkiDir: join(root, 'client-pki'),
    trustUnknownCertificates: true,
  });
  await device.open();
}, 90_000);

afterAll(async () => {
  await device?.close();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
}, 30_000);

describe('the simulator serves an OPC-UA vendor profile', () => {
  it('a sensor without data yet reads absent, never 0; then its value, scaled as the profile says', async () => {
    const early = await device.read();
    expect(early.supplyC).toBeNaN();
    expect(early.returnC).toBeNaN();
    expect(early.absent).toEqual(expect.arrayContaining(['supplyC', 'returnC', 'cwValvePct']));
    expect(early.quality).toBe('uncertain');
    // Not a sensor: the mode is there from the start.
    expect(early.mode).toBe('local');

    clockMs = NO_DATA_MS;
    vendor.updateMeasurements({
      fanPct: 80,
      supplyC: 18.44,
      returnC: 29.16,
      cwValvePct: 41.4,
      fanKw: 3.27,
      coolingKw: 50,
    });
    const r = await device.read();
    expect(r).toMatchObject({
      supplyC: 18.4, // Int16 tenths of °C: 184
      returnC: 29.2,
      cwValvePct: 41,
      fanKw: 3.3,
      fanPct: 80,
      supplySetpointC: 17, // the local setpoint in force
      mode: 'local',
      quality: 'good',
      unitWatchdog: 'toggle',
      absent: [],
    });
    expect(device.fencing).toBe('lease');
  }, 60_000);

  it('a command lands in the unit and its journal: method arguments and variables, epoch 0', async () => {
    const from = journal.lastSeq;
    await device.writeCommand({ epoch: 12, remoteEnable: true, fanPct: 61.5, supplySetpointC: 19.5 });
    expect(vendor.mode).toBe('remote');
    expect(vendor.effectiveCommand()).toEqual({ running: true, fanPct: 61.5, supplySetpointC: 19.5 });
    const entries = journal.since(from).entries.filter((e) => e.ahu === 'AHU-08');
    expect(entries.length).toBeGreaterThanOrEqual(2);
    for (const e of entries) {
      expect(e).toMatchObject({ protocol: 'opcua', epoch: 0, accepted: true, reason: null });
      expect(e.client).toMatch(/^opcua:.+@/);
    }
    const values = Object.assign({}, ...entries.map((e) => e.values));
    expect(values).toMatchObject({ remoteEnable: true, fanPct: 61.5, supplySetpointC: 19.5, run: true });
    expect(typeof values.heartbeat).toBe('number');
    // The native unit on the same server saw nothing.
    expect(native.mode).toBe('local');

    const r = await device.read();
    expect(r.mode).toBe('remote');
    expect(r.supplySetpointC).toBe(19.5);
  }, 60_000);

  it('the unit drops BMS commands when the heartbeat stops changing, and says so in its alarm word', async () => {
    const unit = server.profileUnit('AHU-08');
    expect(unit?.watchdogPeriodS()).toBe(180);
    clockMs += 179_000;
    unit?.checkWatchdog();
    expect(vendor.mode).toBe('remote');
    clockMs += 2_000;
    unit?.checkWatchdog();
    expect(vendor.mode).toBe('fallback');
    expect(vendor.effectiveCommand().fanPct).toBe(80);
    const r = await device.read();
    expect(r.mode).toBe('fallback');
    expect(r.alarmNames).toContain('bmsCommLoss');
    // A live controller's next command changes the heartbeat: the unit takes commands again.
    await device.writeCommand(
      { epoch: 12, remoteEnable: true, fanPct: 55, supplySetpointC: 20 },
      { reassert: true },
    );
    expect(vendor.mode).toBe('remote');
  }, 60_000);
});
