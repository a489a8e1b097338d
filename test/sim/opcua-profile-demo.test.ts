// The demo site's OPC-UA vendor unit (AHU-06, opcua-tenths-c-method-heartbeat) in the whole
// simulator: served beside the native OPC-UA unit on one endpoint, driven by the controller's
// OpcuaDevice, reported in GET /sim/state with its profile; and the simulation's tick runs the
// unit's own heartbeat watchdog (the profile's timeout, not the native 30 s one). The profile is
// copied with a 2 s timeout so the expiry is seen within the test.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Simulation } from '../../firmware-sim/simulation.ts';
import { loadSite } from '../../src/config/load-site.ts';
import type { OpcuaAirHandler, Site } from '../../src/config/site-schema.ts';
import { createDevice, DEFAULT_PROFILES_DIR } from '../../src/devices/create-device.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const PROFILE = 'opcua-tenths-c-method-heartbeat';
const TIMEOUT_S = 2;

let sim: Simulation;
let device: DeviceIo;
let dir = '';
let ahu: OpcuaAirHandler;

const state = (id: string) =>
  (
    sim.state().ahus as { id: string; profile: string; mode: string; fanPct: number; endpoint: string }[]
  ).find((a) => a.id === id)!;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-opcua-profile-demo-'));
  const text = await readFile(join(DEFAULT_PROFILES_DIR, `${PROFILE}.yaml`), 'utf8');
  await writeFile(
    join(dir, `${PROFILE}.yaml`),
    text.replace(/timeoutS: 180, refreshS: 60/, `timeoutS: ${TIMEOUT_S}, refreshS: 1`),
  );
  const demo = await loadSite('config/demo-site.yaml');
  const opcua = demo.airHandlers.filter((a): a is OpcuaAirHandler => a.protocol === 'opcua');
  ahu = opcua.find((a) => a.profile === PROFILE)!;
  expect(ahu?.id).toBe('AHU-06');
  expect(opcua.some((a) => a.profile === undefined)).toBe(true);
  // Only the OPC-UA units: the Modbus ones are not what this test is about. Two units of eight cool
  // a quarter of the IT load, so the hall settles where a hall runs (the full load on two units
  // settles at ~70 °C of return air: a reading outside what air temperatures can be, absent).
  const site: Site = {
    ...demo,
    airHandlers: opcua,
    controlGroups: [],
    racks: demo.racks.map((r) => ({ ...r, itLoadKw: r.itLoadKw * (opcua.length / demo.airHandlers.length) })),
  };
  sim = new Simulation({
    site,
    seed: 3,
    ephemeralPorts: true,
    logger: quietLogger,
    profilesDir: dir,
    profileQuirks: { notReadyMs: 0, noDataMs: 0, firstReadDelayMs: 0 },
  });
  await sim.start();
  device = await createDevice(
    { ...ahu, endpoint: { url: state('AHU-06').endpoint } },
    {
      logger: quietLogger,
      pkiDir: join(dir, 'client-pki'),
      trustUnknownCertificates: true,
      profilesDir: dir,
    },
  );
  await device.open();
}, 90_000);

afterAll(async () => {
  await device?.close();
  await sim?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 30_000);

describe('the demo’s OPC-UA vendor unit in the simulator', () => {
  it('is served beside the native unit and driven through its profile', async () => {
    expect(state('AHU-06')).toMatchObject({ profile: PROFILE, mode: 'local' });
    expect(state('AHU-02').profile).toBe('coolctl-native');
    expect(state('AHU-06').endpoint).toBe(state('AHU-02').endpoint);
    const r = await device.read();
    expect(r.quality).toBe('good');
    expect(Math.abs(r.supplyC - sim.ahuStates().find((a) => a.id === 'AHU-06')!.supplyC)).toBeLessThan(0.06);
    await device.writeCommand({ epoch: 5, remoteEnable: true, fanPct: 45, supplySetpointC: 19 });
    expect(state('AHU-06')).toMatchObject({ mode: 'remote', supplySetpointC: 19 });
    // Five sim minutes at once: the fan has followed its command.
    sim.advance(300);
    expect(state('AHU-06').fanPct).toBeCloseTo(45, 0);
  }, 60_000);

  it('the tick runs the unit’s own heartbeat watchdog: remote until its timeout, then fallback', async () => {
    await device.writeCommand({ epoch: 5, remoteEnable: true, fanPct: 50, supplySetpointC: 19 });
    const wroteMs = performance.now();
    await waitFor('fallback after the profile’s timeout', () => state('AHU-06').mode === 'fallback', {
      timeoutMs: TIMEOUT_S * 1000 + 5_000,
    });
    // Not before the unit's own timeout (the native watchdog would not apply here at all).
    expect(performance.now() - wroteMs).toBeGreaterThanOrEqual(TIMEOUT_S * 1000 - 50);
    const r = await device.read();
    expect(r.mode).toBe('fallback');
    expect(r.alarmNames).toContain('bmsCommLoss');
  }, 60_000);
});
