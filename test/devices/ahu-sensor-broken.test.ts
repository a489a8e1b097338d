// A broken probe injected through the simulator's HTTP API (POST /sim/faults, `ahu-sensor-broken`)
// and read by real coolctl devices: a native Modbus unit dialled directly, and the same unit behind
// a fencing gateway (GatewayService, what `coolctl gateway` runs), read through the coolctl-native
// profile. What a user must see on both: the point absent (NaN, listed, quality uncertain) — 0x7FFF
// fan power is no 327.67 kW — the link up, coolctl_device_absent_readings_total counting, bad fault
// requests refused with a reason, and the reading back once the fault is cleared.
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildSimApi } from '../../firmware-sim/api.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import type { ModbusAirHandler, OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { AhuReadings, DeviceIo } from '../../src/devices/device-io.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import { ModbusDevice } from '../../src/devices/modbus/modbus-device.ts';
import { ProfileModbusDevice } from '../../src/devices/modbus/profile-device.ts';
import { parseGatewayConfig } from '../../src/gateway/config.ts';
import { GatewayService } from '../../src/gateway/service.ts';
import { MetricsExposition } from '../../src/metrics/exposition.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const site = generateSite(demoShape);
const unit = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp')!;
const GATEWAY_UNIT_ID = 7;
const FENCE_BASE = 0xf000;

let sim: Simulation;
let api: FastifyInstance;
let apiUrl = '';
let gateway: GatewayService;
let dir = '';
const registry = new Registry();
const metrics = new DeviceMetrics(registry);
const devices: DeviceIo[] = [];

beforeAll(async () => {
  sim = new Simulation({ site, seed: 5, ephemeralPorts: true, logger: quietLogger });
  await sim.start();
  api = buildSimApi(sim, quietLogger);
  await api.listen({ host: '127.0.0.1', port: 0 });
  apiUrl = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), 'coolctl-sensor-broken-'));
  const { host, port } = simEndpoint();
  const cfg = parseGatewayConfig(
    [
      'gateway: probe-gw',
      'listen: { host: 127.0.0.1, port: 0 }',
      'http: { host: 127.0.0.1, port: 0 }',
      `stateFile: ${join(dir, 'epochs.json')}`,
      'lines:',
      `  - { name: sim, tcp: { host: ${host}, port: ${port} }, queueTimeoutMs: 500 }`,
      'units:',
      `  - { id: ${GATEWAY_UNIT_ID}, name: ${unit.id}, line: sim, unitId: ${unit.endpoint.unitId}, timeoutMs: 400 }`,
    ].join('\n'),
    'probe-gw.yaml',
  );
  gateway = new GatewayService(cfg, { logger: quietLogger });
  await gateway.start();
}, 30_000);

// A test that fails half way must not leave a probe broken for the next.
afterEach(async () => {
  await faults({ fault: 'clear-all' });
});

afterAll(async () => {
  for (const d of devices) await d.close();
  await gateway?.stop();
  await api?.close();
  await sim?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Where the simulator's Modbus TCP server for `unit` really listens (ephemeral port). */
function simEndpoint(): { host: string; port: number } {
  const endpoint = sim.ahuStates().find((a) => a.id === unit.id)?.endpoint ?? '';
  const u = new URL(endpoint.replace(/^modbus-tcp:/, 'http:'));
  return { host: u.hostname, port: Number(u.port) };
}

async function faults(body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${apiUrl}/sim/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function simState(): Promise<{
  counters: { faultRequestsRejected: number };
  api: { badRequests: number };
}> {
  return (await (await fetch(`${apiUrl}/sim/state`)).json()) as {
    counters: { faultRequestsRejected: number };
    api: { badRequests: number };
  };
}

async function open(config: ModbusAirHandler): Promise<DeviceIo> {
  const d = await createDevice(config, { logger: quietLogger, metrics });
  devices.push(d);
  await d.open();
  return d;
}

const direct = () =>
  open({ ...unit, endpoint: { ...unit.endpoint, ...simEndpoint() }, client: { timeoutMs: 1_000 } });
const behindGateway = () =>
  open({
    ...unit,
    id: `${unit.id}-gw`,
    endpoint: { host: gateway.modbus.host, port: gateway.modbus.port, unitId: GATEWAY_UNIT_ID },
    client: { timeoutMs: 1_500, retries: 1, maxApplyDelayMs: 900 },
    fencing: 'gateway',
    fenceBase: FENCE_BASE,
  });

async function absentCount(device: string, point: string): Promise<number> {
  const text = (await new MetricsExposition(registry, { reuseMs: 0 }).body()).toString('utf8');
  const m = new RegExp(
    `coolctl_device_absent_readings_total\\{device="${device}",[^}]*point="${point}"\\} (\\d+)`,
  ).exec(text);
  return m ? Number(m[1]) : 0;
}

const until = (d: DeviceIo, what: string, ok: (r: AhuReadings) => boolean) =>
  waitFor(what, () => d.read().then((r) => (ok(r) ? r : null)), { timeoutMs: 5_000 });

describe('ahu-sensor-broken through POST /sim/faults', () => {
  it('a native unit, directly and behind a fencing gateway: the point is absent, counted, link up; back when cleared', async () => {
    const native = await direct();
    const gated = await behindGateway();
    expect(native).toBeInstanceOf(ModbusDevice);
    expect(gated).toBeInstanceOf(ProfileModbusDevice);
    for (const d of [native, gated]) {
      const r = await d.read();
      expect(r.quality).toBe('good');
      expect(r.fanKw).toBeGreaterThan(0);
    }

    // Fan power probe open (0x7FFF: 327.67 kW, inside the power range) and supply probe shorted (0x8000).
    const injected = await faults([
      { fault: 'ahu-sensor-broken', ahu: unit.id, point: 'fanKw' },
      { fault: 'ahu-sensor-broken', ahu: unit.id, point: 'supplyC', word: 0x8000 },
    ]);
    expect(injected.status).toBe(200);
    expect(injected.body.faults).toEqual([
      { fault: 'ahu-sensor-broken', ahu: unit.id, point: 'fanKw' },
      { fault: 'ahu-sensor-broken', ahu: unit.id, point: 'supplyC', word: 0x8000 },
    ]);

    for (const d of [native, gated]) {
      const r = await until(d, `${d.id}: supplyC and fanKw absent`, (x) => (x.absent ?? []).length > 0);
      expect(r.absent).toEqual(['supplyC', 'fanKw']);
      expect(r.fanKw).toBeNaN();
      expect(r.supplyC).toBeNaN();
      expect(r.quality).toBe('uncertain');
      // The rest of the unit reads as it is.
      expect(Number.isFinite(r.returnC) && Number.isFinite(r.coolingKw)).toBe(true);
      expect(d.linkState).toBe('up');
      expect(await absentCount(d.id, 'fanKw')).toBeGreaterThanOrEqual(1);
      expect(await absentCount(d.id, 'supplyC')).toBeGreaterThanOrEqual(1);
    }

    // Cleared one by one: each point comes back on its own.
    expect(
      (await faults({ fault: 'ahu-sensor-broken', ahu: unit.id, point: 'supplyC', clear: true })).status,
    ).toBe(200);
    for (const d of [native, gated]) {
      const r = await until(d, `${d.id}: supplyC back`, (x) => Number.isFinite(x.supplyC));
      expect(r.absent).toEqual(['fanKw']);
    }
    const cleared = await faults({ fault: 'ahu-sensor-broken', ahu: unit.id, point: 'fanKw', clear: true });
    expect(cleared.body.faults).toEqual([]);
    for (const d of [native, gated]) {
      const r = await until(d, `${d.id}: good again`, (x) => x.quality === 'good');
      expect(r.absent ?? []).toEqual([]);
      expect(r.fanKw).toBeGreaterThan(0);
      expect(r.fanKw).toBeLessThan(100);
      expect(d.linkState).toBe('up');
    }
  });

  it('an OPC-UA unit: the point reads BadSensorFailure and is absent, the rest of the unit read, link up', async () => {
    const ua = site.airHandlers.find((a): a is OpcuaAirHandler => a.protocol === 'opcua')!;
    const url = sim.ahuStates().find((a) => a.id === ua.id)!.endpoint;
    const d = await createDevice(
      { ...ua, endpoint: { ...ua.endpoint, url, securityMode: 'None' }, client: { timeoutMs: 2_000 } },
      { logger: quietLogger, metrics, pkiDir: join(dir, 'client-pki') },
    );
    devices.push(d);
    await d.open();
    expect((await d.read()).quality).toBe('good');
    expect((await faults({ fault: 'ahu-sensor-broken', ahu: ua.id, point: 'returnC' })).status).toBe(200);
    const r = await until(d, 'returnC absent', (x) => (x.absent ?? []).includes('returnC'));
    expect(r.absent).toEqual(['returnC']);
    expect(r.returnC).toBeNaN();
    expect(r.quality).toBe('uncertain');
    expect(Number.isFinite(r.supplyC) && Number.isFinite(r.fanPct)).toBe(true);
    expect(d.linkState).toBe('up');
    expect(await absentCount(ua.id, 'returnC')).toBeGreaterThanOrEqual(1);
    await faults({ fault: 'ahu-sensor-broken', ahu: ua.id, point: 'returnC', clear: true });
    const back = await until(d, 'returnC back', (x) => x.quality === 'good');
    expect(Number.isFinite(back.returnC)).toBe(true);
  }, 30_000);

  it('refuses a word that is a reading, a point that is no probe and an unknown unit, saying why', async () => {
    const before = await simState();
    const signed = await faults({ fault: 'ahu-sensor-broken', ahu: unit.id, point: 'supplyC', word: 0xffff });
    expect(signed.status).toBe(400);
    expect(String(signed.body.message)).toMatch(/65535 is not a no-data word of supplyC \(a i16 register\)/);
    const mode = await faults({ fault: 'ahu-sensor-broken', ahu: unit.id, point: 'mode' });
    expect(mode.status).toBe(400);
    const unknown = await faults({ fault: 'ahu-sensor-broken', ahu: 'AHU-NOPE', point: 'fanKw' });
    expect(unknown.status).toBe(400);
    expect(String(unknown.body.message)).toMatch(/unknown air handler "AHU-NOPE"/);
    const after = await simState();
    expect(after.api.badRequests - before.api.badRequests).toBe(3);
    expect(after.counters.faultRequestsRejected - before.counters.faultRequestsRejected).toBe(1);
    // Nothing was applied.
    expect(((await (await fetch(`${apiUrl}/sim/faults`)).json()) as { faults: unknown[] }).faults).toEqual(
      [],
    );
  });
});
