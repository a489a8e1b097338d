// The whole simulated hall through its public surfaces: the HTTP API (state, journal, faults),
// a real Modbus client writing to a unit, the physics answering a trip, and bad requests refused.
import modbusSerial from 'modbus-serial';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSimApi } from '../../firmware-sim/api.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import { encodeCommand, resolvePointMap } from '../../src/devices/modbus/point-map.ts';
import { quietLogger, waitFor } from '../helpers.ts';

// modbus-serial is CommonJS; its type declarations expose the client class as `.default`.
const ModbusRTU = modbusSerial.default;

const site = generateSite(demoShape);
let sim: Simulation;
let api: ReturnType<typeof buildSimApi>;

beforeAll(async () => {
  sim = new Simulation({ site, seed: 7, ephemeralPorts: true, logger: quietLogger, timeScale: 1 });
  await sim.start();
  api = buildSimApi(sim, quietLogger);
  await api.ready();
}, 120_000);

afterAll(async () => {
  await api?.close();
  await sim?.stop();
});

async function getJson(url: string) {
  const res = await api.inject({ method: 'GET', url });
  return { status: res.statusCode, body: res.json() };
}

async function postFault(payload: unknown) {
  const res = await api.inject({
    method: 'POST',
    url: '/sim/faults',
    headers: { 'content-type': 'application/json' },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });
  return { status: res.statusCode, body: res.json() };
}

describe('simulated hall', () => {
  it('reports its state: racks, AHUs with endpoints, broker, power', async () => {
    const { status, body } = await getJson('/sim/state');
    expect(status).toBe(200);
    expect(body.racks).toHaveLength(site.racks.length);
    expect(body.ahus).toHaveLength(8);
    for (const a of body.ahus) {
      expect(a.mode).toBe('local');
      expect(a.endpoint).toMatch(
        a.protocol === 'opcua' ? /^opc\.tcp:\/\/127\.0\.0\.1:\d+/ : /^modbus-tcp:\/\/127\.0\.0\.1:\d+\/1$/,
      );
    }
    expect(body.mqttBrokerUrl).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
    expect(body.power.fanKw).toBeGreaterThan(0);
    // on local control (18 °C supply, full fans) every inlet is inside the ASHRAE recommended range
    for (const r of body.racks) {
      expect(r.inletC).toBeGreaterThan(15);
      expect(r.inletC).toBeLessThan(27);
    }
  });

  it('journals a real Modbus fenced write and shows the unit under remote control', async () => {
    const ahu = sim.ahuStates().find((a) => a.protocol === 'modbus-tcp')!;
    const port = Number(/:(\d+)\//.exec(ahu.endpoint)![1]);
    const client = new ModbusRTU();
    await client.connectTCP('127.0.0.1', { port });
    client.setID(1);
    client.setTimeout(2000);
    try {
      const pm = resolvePointMap(undefined);
      const before = sim.journal.lastSeq;
      await client.writeRegisters(
        pm.commandBlock,
        encodeCommand({ epoch: 42, heartbeat: 1, remoteEnable: true, fanPct: 70, supplySetpointC: 21 }, pm),
      );
      const { body } = await getJson(`/sim/journal?since=${before}`);
      expect(body.entries).toHaveLength(1);
      expect(body.entries[0]).toMatchObject({
        ahu: ahu.id,
        protocol: 'modbus-tcp',
        epoch: 42,
        accepted: true,
        reason: null,
      });
      expect(body.entries[0].client).toMatch(/^modbus:127\.0\.0\.1:\d+$/);
      const state = (await getJson('/sim/state')).body;
      const seen = state.ahus.find((a: { id: string }) => a.id === ahu.id);
      expect(seen).toMatchObject({ mode: 'remote', epoch: 42, supplySetpointC: 21 });
      expect(seen.lastWriter).toBe(body.entries[0].client);
    } finally {
      client.close(() => {});
    }
  });

  it('a tripped AHU makes the inlets near it rise, and clearing the trip restores it', async () => {
    const target = site.airHandlers.find((a) => a.protocol === 'modbus-tcp' && a.id !== 'AHU-01')!;
    const nearest = [...site.racks].sort(
      (a, b) =>
        (a.xM - target.xM) ** 2 +
        (a.yM - target.yM) ** 2 -
        ((b.xM - target.xM) ** 2 + (b.yM - target.yM) ** 2),
    )[0]!;
    const before = sim.model.rackInletC(nearest.id);
    expect((await postFault({ fault: 'ahu-trip', ahu: target.id })).status).toBe(200);
    sim.advance(1800);
    const state = (await getJson('/sim/state')).body;
    expect(state.ahus.find((a: { id: string }) => a.id === target.id).mode).toBe('tripped');
    expect(state.faults).toContainEqual({ fault: 'ahu-trip', ahu: target.id });
    const after = sim.model.rackInletC(nearest.id);
    expect(after).toBeGreaterThan(before + 0.5);
    expect((await postFault({ fault: 'ahu-trip', ahu: target.id, clear: true })).status).toBe(200);
    expect(sim.units.get(target.id)!.mode).not.toBe('tripped');
    expect((await getJson('/sim/faults')).body.faults).toEqual([]);
  });

  it('an offline Modbus unit refuses connections until the fault is cleared', async () => {
    const ahu = sim.ahuStates().find((a) => a.protocol === 'modbus-tcp')!;
    const port = Number(/:(\d+)\//.exec(ahu.endpoint)![1]);
    expect((await postFault({ fault: 'ahu-offline', ahu: ahu.id })).status).toBe(200);
    const refused = new ModbusRTU();
    await expect(refused.connectTCP('127.0.0.1', { port })).rejects.toThrow(/ECONNREFUSED/);
    expect((await postFault({ fault: 'clear-all' })).status).toBe(200);
    const client = new ModbusRTU();
    await waitFor('the unit to accept connections again', () =>
      client.connectTCP('127.0.0.1', { port }).then(() => true),
    );
    client.setID(1);
    client.setTimeout(2000);
    const res = await client.readHoldingRegisters(resolvePointMap(undefined).statusBlock, 16);
    expect(res.data).toHaveLength(16);
    client.close(() => {});
  });

  it('refuses malformed fault requests with a 400 that says why, counts them, and applies nothing', async () => {
    const before = (await getJson('/sim/state')).body;
    const cases: [unknown, RegExp][] = [
      ['{not json', /JSON/i],
      [{ fault: 'meteor-strike' }, /unknown fault "meteor-strike"; allowed: ahu-trip/],
      [{ fault: 'ahu-trip' }, /must have required property 'ahu'/],
      [{ fault: 'ahu-trip', ahu: 'AHU-99' }, /unknown air handler "AHU-99"/],
      [{ fault: 'ahu-slow', ahu: 'AHU-01', ms: -5 }, /\/ms: must be >= 1/],
      [{ fault: 'ahu-trip', ahu: 'AHU-01', colour: 'red' }, /must NOT have additional properties "colour"/],
      [{ fault: 'sensor-stuck', node: 'N0001', sensor: 'nope' }, /unknown sensor on N0001 "nope"/],
      [{ fault: 'ahu-bad-status', ahu: 'AHU-01' }, /applies to OPC-UA/],
      [
        [
          { fault: 'ahu-trip', ahu: 'AHU-01' },
          { fault: 'gateway-down', gateway: 'gw-9' },
        ],
        /\[1\] unknown gateway "gw-9"/,
      ],
      [[], /empty fault list/],
      ['42', /must be an object/],
    ];
    for (const [payload, pattern] of cases) {
      const res = await postFault(payload);
      expect(res.status, JSON.stringify(payload)).toBe(400);
      expect(res.body.error).toMatch(/^COOLCTL_E_/);
      expect(`${res.body.message} ${res.body.details.join(' ')}`).toMatch(pattern);
    }
    const after = (await getJson('/sim/state')).body;
    // all-or-nothing: the valid first half of the mixed batch did not trip AHU-01
    expect(after.ahus.find((a: { id: string }) => a.id === 'AHU-01').mode).not.toBe('tripped');
    expect(after.faults).toEqual([]);
    expect(after.api.badRequests - before.api.badRequests).toBe(cases.length);
  });

  it('clear-all brings the IT load back to the configured profile, and /sim/state says so', async () => {
    sim.advance(5);
    const normal = (await getJson('/sim/state')).body;
    // started without --profile: constant at full nominal load
    expect(normal.loadProfile).toEqual({ profile: 'constant', factor: 1, source: 'configured' });
    expect(
      (
        await postFault([
          { fault: 'load-profile', profile: 'constant', factor: 0.5 },
          { fault: 'packet-loss' },
        ])
      ).status,
    ).toBe(200);
    sim.advance(5);
    const light = (await getJson('/sim/state')).body;
    expect(light.loadProfile).toEqual({ profile: 'constant', factor: 0.5, source: 'fault' });
    expect(light.faults).toContainEqual({ fault: 'load-profile', profile: 'constant', factor: 0.5 });
    expect(light.power.itKw).toBeCloseTo(normal.power.itKw * 0.5, 0);

    expect((await postFault({ fault: 'clear-all' })).status).toBe(200);
    sim.advance(5);
    const cleared = (await getJson('/sim/state')).body;
    expect(cleared.faults).toEqual([]);
    expect(cleared.loadProfile).toEqual({ profile: 'constant', factor: 1, source: 'configured' });
    expect(cleared.power.itKw).toBeCloseTo(normal.power.itKw, 0);
  });

  it('refuses bad journal queries', async () => {
    expect((await getJson('/sim/journal?since=-1')).status).toBe(400);
    expect((await getJson('/sim/journal?since=abc')).status).toBe(400);
    expect((await getJson('/sim/journal?since=0&limit=0')).status).toBe(400);
    expect((await getJson('/sim/journal?since=0&limit=5')).status).toBe(200);
  });

  it('keeps sim time running with the wall clock', async () => {
    const t0 = sim.simTimeMs;
    await waitFor('sim time to advance', () => sim.simTimeMs > t0 + 300);
  });
});
