// The plant's process values on /metrics, in process: real group drivers over units that report
// every point, a real sensor store fed with reports, leadership from a fake cluster of two nodes.
// Only the node that leads a group says its group's, units' and racks' values; it stops saying them
// when it loses the group; enumerations are state sets; the energy counters integrate the units'
// power; and /metrics' own text is the text prom-client renders for the same families.
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { parseMetrics, type Sample } from '../../bench/lib/scale-probe.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { metricsStream } from '../../src/api/metrics-text.ts';
import { GroupDriver } from '../../src/control/group-driver.ts';
import type { AhuReadings, DeviceIo } from '../../src/devices/device-io.ts';
import { ProcessValues } from '../../src/metrics/process-values.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { FakeCluster } from '../support/fake-cluster.ts';

const site = generateSite({ ...demoShape, modbusBasePort: 0 });
const [g0, g1] = site.controlGroups;

const READING: AhuReadings = {
  mode: 'remote',
  fanPct: 60,
  supplySetpointC: 18,
  supplyC: 17.5,
  returnC: 29,
  cwValvePct: 40,
  alarms: 2, // trip
  epoch: 5,
  heartbeat: 1,
  fanKw: 2.5,
  coolingKw: 40,
  quality: 'good',
  sourceTimeMs: 0,
};

function unit(id: string): DeviceIo {
  return {
    id,
    protocol: 'modbus-tcp',
    linkState: 'up',
    remoteControlLost: false,
    on() {},
    off() {},
    once() {},
    open: async () => {},
    read: async () => ({ ...READING, sourceTimeMs: Date.now() }),
    writeCommand: async () => {},
    close: async () => {},
  } as unknown as DeviceIo;
}

async function text(registry: Registry): Promise<string> {
  let out = '';
  for await (const chunk of metricsStream(registry)) out += String(chunk);
  return out;
}

const value = (samples: Sample[], name: string, where: Record<string, string>) =>
  samples.filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v));

let stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops) s();
  stops = [];
});

function node() {
  const cluster = new FakeCluster(
    Object.fromEntries(site.controlGroups.map((g, i) => [g.id, [i === 0 ? 'n1' : 'n2', 5 + i]])),
  );
  const leadership = cluster.node('n1');
  cluster.node('n2');
  const devices = new Map(site.airHandlers.map((a) => [a.id, unit(a.id)]));
  const drivers = new Map(
    site.controlGroups.map((g) => [
      g.id,
      new GroupDriver(g, devices, leadership, { periodMs: 50, logger: quietLogger }),
    ]),
  );
  const store = new SensorStore(site);
  // Every sensor node of the first group reports, its racks' inlets 22 °C + the rack's index.
  for (const id of g0!.sensorNodes) {
    const n = site.sensorNodes.find((x) => x.id === id)!;
    const rackIndex = site.racks.findIndex((r) => r.id === n.rack);
    store.ingestReport(
      {
        node: n.id,
        gateway: n.gateway,
        seq: 1,
        readings: n.sensors.map((s) => ({
          sensor: s.id,
          kind: s.kind,
          value: s.kind === 'humidity' ? 40 : s.kind === 'subfloor-pressure' ? 20 : 22 + rackIndex / 10,
        })),
      },
      'mqtt',
      store.nowMs(),
    );
  }
  let nowMs = 0;
  const registry = new Registry();
  const values = new ProcessValues(registry, {
    node: 'n1',
    site: () => site,
    leadership: () => leadership,
    drivers,
    devices,
    sensors: store,
    now: () => nowMs,
  });
  for (const d of drivers.values()) d.start();
  stops.push(() => {
    for (const d of drivers.values()) d.stop();
  });
  return {
    cluster,
    drivers,
    registry,
    values,
    store,
    advance: (ms: number) => {
      nowMs += ms;
    },
  };
}

describe('process values on /metrics', () => {
  it('the leader of a group says its units’, racks’ and group’s values, and nobody else’s', async () => {
    const n = node();
    const d0 = n.drivers.get(g0!.id)!;
    await waitFor('the first group driven and its units read', () =>
      g0!.airHandlers.every((a) => d0.lastReading(a) !== null),
    );
    n.advance(1000); // past the snapshot's lifetime
    const body = await text(n.registry);
    expect(body).toBe(await n.registry.metrics());
    const s = parseMetrics(body);

    for (const a of g0!.airHandlers) {
      const at = { unit: a, group: g0!.id };
      expect(value(s, 'coolctl_unit_supply_celsius', at).map((x) => x.value)).toEqual([17.5]);
      expect(value(s, 'coolctl_unit_return_celsius', at).map((x) => x.value)).toEqual([29]);
      expect(value(s, 'coolctl_unit_supply_setpoint_celsius', at).map((x) => x.value)).toEqual([18]);
      expect(value(s, 'coolctl_unit_fan_ratio', at).map((x) => x.value)).toEqual([0.6]);
      expect(value(s, 'coolctl_unit_fan_command_ratio', at).map((x) => x.value)).toEqual([0.6]);
      expect(value(s, 'coolctl_unit_fan_power_watts', at).map((x) => x.value)).toEqual([2500]);
      expect(value(s, 'coolctl_unit_cooling_power_watts', at).map((x) => x.value)).toEqual([40_000]);
      // State sets: one series per state, 1 for the current one.
      const modes = value(s, 'coolctl_unit_mode', at);
      expect(modes.map((x) => x.labels['mode']).sort()).toEqual(
        ['fallback', 'local', 'remote', 'tripped', 'unknown'].sort(),
      );
      expect(modes.filter((x) => x.value === 1).map((x) => x.labels['mode'])).toEqual(['remote']);
      const alarms = value(s, 'coolctl_unit_alarm', at);
      expect(alarms.filter((x) => x.value === 1).map((x) => x.labels['alarm'])).toEqual(['trip']);
      expect(alarms).toHaveLength(3);
      expect(value(s, 'coolctl_unit_link_state', { ...at, state: 'up' }).map((x) => x.value)).toEqual([1]);
    }
    const g = { group: g0!.id };
    expect(value(s, 'coolctl_group_driven', g).map((x) => x.value)).toEqual([1]);
    expect(value(s, 'coolctl_group_leader_epoch', g).map((x) => [x.labels['node'], x.value])).toEqual([
      ['n1', 5],
    ]);
    expect(value(s, 'coolctl_group_mode', { ...g, mode: 'hold' }).map((x) => x.value)).toEqual([1]);
    expect(value(s, 'coolctl_group_sensor_verdict', { ...g, verdict: 'ok' }).map((x) => x.value)).toEqual([
      1,
    ]);
    expect(value(s, 'coolctl_group_inlet_trust_ratio', g).map((x) => x.value)).toEqual([1]);
    const racks = value(s, 'coolctl_rack_inlet_celsius', g);
    expect(racks.length).toBeGreaterThan(0);
    for (const r of racks) {
      const idx = site.racks.findIndex((x) => x.id === r.labels['rack']);
      expect(r.value).toBeCloseTo(22 + idx / 10, 6);
      expect(value(s, 'coolctl_rack_inlet_trust_ratio', { rack: r.labels['rack']! })[0]!.value).toBe(1);
    }
    expect(Math.max(...racks.map((r) => r.value))).toBe(
      value(s, 'coolctl_group_inlet_max_celsius', g)[0]!.value,
    );
    // Nothing of a group another node leads.
    expect(s.filter((x) => x.labels['group'] === g1!.id)).toEqual([]);
    // 100 % of units of the led group, one series per unit for each value.
    expect(value(s, 'coolctl_unit_supply_celsius', {})).toHaveLength(g0!.airHandlers.length);
  });

  it('hands /metrics to the socket in few large pieces, not one per family or chunk', async () => {
    const n = node();
    const pieces: string[] = [];
    for await (const chunk of metricsStream(n.registry)) pieces.push(String(chunk));
    const text = pieces.join('');
    expect(n.registry.getMetricsAsArray().length).toBeGreaterThan(20);
    // A piece once 64 KB of text have gathered (this small hall: the whole text in one).
    expect(pieces).toHaveLength(Math.ceil(text.length / (64 * 1024)) || 1);
  });

  it('drops a group’s values at the scrape after the node lost it', async () => {
    const n = node();
    const d0 = n.drivers.get(g0!.id)!;
    await waitFor('the first group driven', () => g0!.airHandlers.every((a) => d0.lastReading(a) !== null));
    n.advance(1000);
    expect(parseMetrics(await text(n.registry)).some((x) => x.labels['group'] === g0!.id)).toBe(true);
    n.cluster.move(g0!.id, 'n2', 'switchover');
    n.advance(1000);
    const after = parseMetrics(await text(n.registry));
    expect(after.filter((x) => x.labels['group'] === g0!.id || x.labels['unit'] !== undefined)).toEqual([]);
    expect(after.filter((x) => x.name.startsWith('coolctl_rack_'))).toEqual([]);
  });

  it('integrates the driven units’ power into the energy counters', async () => {
    const n = node();
    const d0 = n.drivers.get(g0!.id)!;
    await waitFor('the first group driven', () => g0!.airHandlers.every((a) => d0.lastReading(a) !== null));
    n.values.integrate(); // takes the power the units report now
    const units = g0!.airHandlers.length;
    n.advance(10_000);
    n.values.integrate();
    const s = parseMetrics(await text(n.registry));
    expect(value(s, 'coolctl_plant_fan_power_watts', {})[0]!.value).toBe(units * 2500);
    expect(value(s, 'coolctl_plant_cooling_power_watts', {})[0]!.value).toBe(units * 40_000);
    expect(value(s, 'coolctl_plant_fan_energy_joules_total', {})[0]!.value).toBeCloseTo(units * 2500 * 10, 6);
    expect(value(s, 'coolctl_plant_cooling_energy_joules_total', {})[0]!.value).toBeCloseTo(
      units * 40_000 * 10,
      6,
    );
  });
});
