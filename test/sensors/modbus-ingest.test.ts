// Sensor ingest from a Modbus TCP sensor gateway (one slave id per node) served by the simulator:
// readings reach the group views with source "modbus", a dead sensor goes stale, a gateway that
// stops answering is offline at once and blinds the groups behind it, and it all comes back.
import modbusSerial from 'modbus-serial';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fault } from '../../firmware-sim/faults.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { ModbusSource } from '../../src/sensors/modbus-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const ModbusRTU = modbusSerial.default;
const TIME_SCALE = 20;
const base = generateSite({ ...demoShape, modbusBasePort: 0, opcuaShare: 0 });
// gw-2 becomes a polled Modbus gateway; gw-1 stays on MQTT.
const site: Site = {
  ...base,
  gateways: base.gateways.map((g) =>
    g.id === 'gw-2'
      ? { ...g, transport: 'modbus-tcp', endpoint: { host: '127.0.0.1', port: 0 }, pollIntervalS: 2 }
      : g,
  ),
};
const gw2Nodes = site.sensorNodes.filter((n) => n.gateway === 'gw-2');
const gw2Groups = site.controlGroups.filter((g) =>
  g.sensorNodes.every((id) => gw2Nodes.some((n) => n.id === id)),
);
let sim: Simulation;
let store: SensorStore;
let source: ModbusSource;

beforeAll(async () => {
  sim = new Simulation({ site, seed: 5, ephemeralPorts: true, logger: quietLogger, timeScale: TIME_SCALE });
  await sim.start();
  store = new SensorStore(site, { timeScale: TIME_SCALE, logger: quietLogger });
  source = new ModbusSource(site, store, {
    endpoints: sim.modbusGatewayEndpoints(),
    timeScale: TIME_SCALE,
    timeoutMs: 500,
    logger: quietLogger,
  });
  source.start();
}, 120_000);

afterAll(async () => {
  await source?.stop();
  await sim?.stop();
});

const fault = (f: Fault) => sim.applyFaults([f]);

describe('sensor ingest from a Modbus TCP gateway', () => {
  it('polls every node and fills the views of the groups behind the gateway', async () => {
    expect(gw2Groups.length).toBeGreaterThan(0);
    await waitFor('gw-2 groups ok', () => gw2Groups.every((g) => store.view(g.id).verdict === 'ok'), {
      timeoutMs: 20_000,
    });
    // the group is ok at 80 % coverage: this one node may not have been polled with a report yet
    const s = await waitFor('the first node polled', () => {
      const x = store.sensor(gw2Nodes[0]!.id, 'inlet-top')!;
      return x.value !== null ? x : undefined;
    });
    expect(s.source).toBe('modbus');
    const truth = sim.model.readRack(gw2Nodes[0]!.rack).inletTopC;
    expect(Math.abs(s.value! - truth)).toBeLessThan(0.6);
    expect(source.counters.newReports).toBeGreaterThan(gw2Nodes.length / 2);
    expect(source.counters.malformed).toBe(0);
    expect(sim.state().gateways).toContainEqual(
      expect.objectContaining({ id: 'gw-2', transport: 'modbus-tcp' }),
    );
  });

  it('a dead sensor goes stale; cleared, it is good again', async () => {
    const node = gw2Nodes[1]!.id;
    await fault({ fault: 'sensor-dead', node, sensor: 'inlet-bottom' });
    await waitFor('stale', () => store.sensor(node, 'inlet-bottom')!.flags.includes('stale'), {
      timeoutMs: 15_000,
    });
    expect(store.sensor(node, 'inlet-top')!.quality).toBe('good');
    await fault({ fault: 'sensor-dead', node, sensor: 'inlet-bottom', clear: true });
    await waitFor('good again', () => store.sensor(node, 'inlet-bottom')!.quality === 'good', {
      timeoutMs: 15_000,
    });
  });

  it('a gateway that stops answering is offline at once; its groups go blind and come back', async () => {
    await fault({ fault: 'gateway-down', gateway: 'gw-2' });
    await waitFor(
      'gw-2 offline',
      () => store.gatewayStates().find((g) => g.id === 'gw-2')?.online === false,
      { timeoutMs: 10_000 },
    );
    for (const g of gw2Groups) expect(store.view(g.id).verdict).toBe('blind');
    await fault({ fault: 'gateway-down', gateway: 'gw-2', clear: true });
    await waitFor('gw-2 groups ok again', () => gw2Groups.every((g) => store.view(g.id).verdict === 'ok'), {
      timeoutMs: 20_000,
    });
  });

  it('answers a slave id it does not know with exception 0x0B, and a read past the block with 0x02', async () => {
    const ep = sim.modbusGatewayEndpoints()['gw-2']!;
    const client = new ModbusRTU();
    await client.connectTCP(ep.host, { port: ep.port });
    client.setTimeout(1000);
    try {
      client.setID(200);
      await expect(client.readHoldingRegisters(0, 7)).rejects.toMatchObject({ modbusCode: 0x0b });
      client.setID(1);
      await expect(client.readHoldingRegisters(0, 40)).rejects.toMatchObject({ modbusCode: 0x02 });
      const ok = await client.readHoldingRegisters(0, 7);
      expect(ok.data).toHaveLength(7);
    } finally {
      client.close(() => {});
    }
  });
});
