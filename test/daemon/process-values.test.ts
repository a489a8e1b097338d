// The plant's process values on /metrics, in process: real group drivers over units that report
// every point, a real sensor store fed with reports, leadership from a fake cluster of two nodes.
// Only the node that leads a group says its group's, units' and racks' values; it stops saying them
// when it loses the group; enumerations are state sets; the energy counters integrate the units'
// power; /metrics' own text is the text prom-client renders for the same families, holds the series
// the values are read from (computed here the way they were before the families wrote bytes), and
// passes `promtool check metrics`; scrapes that come together share one render.
import { Gauge, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { parseMetrics, type Sample } from '../../bench/lib/scale-probe.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { metricsBody } from '../../src/api/metrics-text.ts';
import { GroupDriver } from '../../src/control/group-driver.ts';
import { ProcessValues } from '../../src/daemon/process-values.ts';
import type { AhuReadings, DeviceIo } from '../../src/devices/device-io.ts';
import { MetricsExposition } from '../../src/metrics/exposition.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { FakeCluster } from '../support/fake-cluster.ts';
import { promtoolCheck } from '../support/promtool.ts';
import { reportNodes } from '../support/sensor-reports.ts';

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

/** A unit that reports READING, or with `vary` figures of its own (a mode, alarms, a point it lacks). */
function unit(id: string, vary = false): DeviceIo {
  const i = site.airHandlers.findIndex((a) => a.id === id);
  const own: Partial<AhuReadings> = vary
    ? {
        fanPct: 40 + i * 3.7,
        supplyC: i === 1 ? Number.NaN : 17 + i / 7,
        returnC: 28.25 + i,
        fanKw: 1.1 + i / 3,
        mode: (['remote', 'local', 'fallback', 'tripped', 'unknown'] as const)[i % 5]!,
        alarms: i % 8,
      }
    : {};
  return {
    id,
    protocol: 'modbus-tcp',
    linkState: vary ? (['up', 'degraded', 'down'] as const)[i % 3] : 'up',
    remoteControlLost: false,
    on() {},
    off() {},
    once() {},
    open: async () => {},
    read: async () => ({ ...READING, ...own, sourceTimeMs: Date.now() }),
    writeCommand: async () => {},
    close: async () => {},
  } as unknown as DeviceIo;
}

async function text(registry: Registry): Promise<string> {
  return (await new MetricsExposition(registry, { reuseMs: 0 }).body()).toString('utf8');
}

const value = (samples: Sample[], name: string, where: Record<string, string>) =>
  samples.filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v));

let stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops) s();
  stops = [];
});

function node(o: { vary?: boolean; leadsAll?: boolean } = {}) {
  const cluster = new FakeCluster(
    Object.fromEntries(
      site.controlGroups.map((g, i) => [g.id, [i === 0 || o.leadsAll ? 'n1' : 'n2', 5 + i]]),
    ),
  );
  const leadership = cluster.node('n1');
  cluster.node('n2');
  const devices = new Map(site.airHandlers.map((a) => [a.id, unit(a.id, o.vary)]));
  const drivers = new Map(
    site.controlGroups.map((g) => [
      g.id,
      new GroupDriver(g, devices, leadership, { periodMs: 50, logger: quietLogger }),
    ]),
  );
  const store = new SensorStore(site);
  // Every sensor node of the first group (of every group: leadsAll) reports, its racks' inlets
  // 22 °C + the rack's index.
  reportNodes(store, site, o.leadsAll ? site.sensorNodes.map((n) => n.id) : g0!.sensorNodes, (n, s) =>
    s.kind === 'humidity'
      ? 40
      : s.kind === 'subfloor-pressure'
        ? 20
        : 22 + site.racks.findIndex((r) => r.id === n.rack) / 10,
  );
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
    devices,
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
  it('writes the series the store, drivers and units hold, as before it wrote bytes; promtool takes it', async () => {
    const n = node({ vary: true, leadsAll: true });
    await waitFor('every unit read', () =>
      site.controlGroups.every((g) =>
        g.airHandlers.every((a) => n.drivers.get(g.id)!.lastReading(a) !== null),
      ),
    );
    n.advance(1000);
    const body = await text(n.registry);
    const got = parseMetrics(body)
      .filter((x) => /^coolctl_(rack|group|unit)_|^coolctl_plant_\w+_power_watts$/.test(x.name))
      .map((x) => series(x.name, x.labels, x.value))
      .sort();
    const want = expectedSeries(n).sort();
    expect(want.length).toBeGreaterThan(100);
    expect(got).toEqual(want);
    // The text is also what prom-client renders from the same families, byte for byte.
    expect(body).toBe(await n.registry.metrics());
    const check = await promtoolCheck(body);
    expect(check).toEqual({ code: 0, out: '' });
  });

  it('gives scrapes that come together one render, and a scrape after reuseMs a new one', async () => {
    const registry = new Registry();
    let collects = 0;
    new Gauge({
      name: 'coolctl_test_renders',
      help: 'how often the registry was read',
      registers: [registry],
      collect() {
        collects++;
        this.set(collects);
      },
    });
    let nowMs = 0;
    const e = new MetricsExposition(registry, { reuseMs: 500, now: () => nowMs });
    const [a, b, c] = await Promise.all([e.body(), e.body(), e.body()]);
    expect(collects).toBe(1);
    expect(e.renders).toBe(1);
    expect(b).toBe(a);
    expect(c).toBe(a);
    nowMs = 499;
    expect(await e.body()).toBe(a);
    nowMs = 500;
    const d = await e.body();
    expect(collects).toBe(2);
    expect(d.toString('utf8')).toContain('coolctl_test_renders 2\n');
    // /metrics' own entry point keeps one exposition per registry, so its scrapes share too.
    const [x, y] = await Promise.all([metricsBody(registry), metricsBody(registry)]);
    expect(y).toBe(x);
    expect(collects).toBe(3);
  });
});

function series(name: string, labels: Record<string, string>, v: number): string {
  const l = Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, x]) => `${k}=${x}`)
    .join(',');
  return `${name}{${l}} ${v}`;
}

/**
 * The process-value series of node `n`, read the way the families read them before they kept
 * numbers and wrote bytes: the store's views and rack statistics, each driver's decision, commands
 * and last readings, each unit's link.
 */
function expectedSeries(n: ReturnType<typeof node>): string[] {
  const out: string[] = [];
  const add = (name: string, labels: Record<string, string>, v: number) => out.push(series(name, labels, v));
  const nodeRack = new Map(site.sensorNodes.map((x) => [x.id, x.rack]));
  const owner = new Map<string, string>();
  for (const g of site.controlGroups)
    for (const id of g.sensorNodes) {
      const rack = nodeRack.get(id);
      if (rack !== undefined && !owner.has(rack)) owner.set(rack, g.id);
    }
  const leadership = n.cluster.nodes.get('n1')!;
  let fanW = 0;
  let coolingW = 0;
  for (const gl of leadership.groups()) {
    if (gl.role !== 'leader') continue;
    const group = gl.group;
    const g = site.controlGroups.find((x) => x.id === group)!;
    for (const st of n.store.rackInletStats(group)) {
      if (owner.get(st.rack) !== group) continue;
      const at = { rack: st.rack, group };
      if (st.inletMaxC !== null) add('coolctl_rack_inlet_celsius', at, st.inletMaxC);
      add('coolctl_rack_inlet_trust_ratio', at, st.inlets > 0 ? st.goodInlets / st.inlets : 0);
    }
    const view = n.store.view(group);
    if (view.inletMaxC !== null) add('coolctl_group_inlet_max_celsius', { group }, view.inletMaxC);
    if (view.dewPointC !== null) add('coolctl_group_dew_point_celsius', { group }, view.dewPointC);
    add('coolctl_group_inlet_trust_ratio', { group }, view.coverage);
    for (const v of ['ok', 'degraded', 'blind'])
      add('coolctl_group_sensor_verdict', { group, verdict: v }, v === view.verdict ? 1 : 0);
    const d = n.drivers.get(group)!;
    for (const m of ['normal', 'degraded', 'blind', 'paused', 'hold', 'starting'])
      add('coolctl_group_mode', { group, mode: m }, m === d.decision.mode ? 1 : 0);
    add('coolctl_group_driven', { group }, d.driving && d.driveStatus.problem === null ? 1 : 0);
    add('coolctl_group_leader_epoch', { group, node: 'n1' }, gl.epoch ?? 0);
    const held = new Map(d.units().map((u) => [u.ahu, u.held]));
    for (const unit of g.airHandlers) {
      const at = { unit, group };
      const r = d.lastReading(unit);
      if (r) {
        const perUnit: [string, number][] = [
          ['coolctl_unit_supply_celsius', r.supplyC],
          ['coolctl_unit_return_celsius', r.returnC],
          ['coolctl_unit_supply_setpoint_celsius', r.supplySetpointC],
          ['coolctl_unit_fan_ratio', r.fanPct / 100],
          ['coolctl_unit_fan_power_watts', r.fanKw * 1000],
          ['coolctl_unit_cooling_power_watts', r.coolingKw * 1000],
        ];
        for (const [name, v] of perUnit) if (Number.isFinite(v)) add(name, at, v);
        for (const m of ['local', 'remote', 'fallback', 'tripped', 'unknown'])
          add('coolctl_unit_mode', { ...at, mode: m }, m === r.mode ? 1 : 0);
        for (const [alarm, bit] of [
          ['comm_loss', 1],
          ['trip', 2],
          ['high_supply_temp', 4],
        ] as const)
          add('coolctl_unit_alarm', { ...at, alarm }, r.alarms & bit ? 1 : 0);
        fanW += r.fanKw * 1000;
        coolingW += r.coolingKw * 1000;
      }
      const h = held.get(unit);
      if (h) add('coolctl_unit_fan_command_ratio', at, h.fanPct / 100);
      const link = n.devices.get(unit)!.linkState;
      for (const st of ['up', 'degraded', 'down'])
        add('coolctl_unit_link_state', { ...at, state: st }, st === link ? 1 : 0);
    }
  }
  add('coolctl_plant_fan_power_watts', {}, fanW);
  add('coolctl_plant_cooling_power_watts', {}, coolingW);
  return out;
}
