// Every command goes through the safety layer, whoever decided it: a hold group's commands taken
// from what a unit runs, an operator's command, a cached row's on a warm start, the write that
// hands a unit to local control (pause, shutdown), an override under the control law, and the API.
// Real parts: the simulator's unit behind its Modbus TCP server on loopback, the Modbus adapter,
// the group driver; the journal shows what reached the unit. Only leadership and the state cache
// are fakes (what is under test is the path from a decision to the wire).
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { ModbusAhuServer } from '../../firmware-sim/ahu/modbus-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal, type JournalEntry } from '../../firmware-sim/journal.ts';
import type { CachedRow } from '../../src/cache/rows.ts';
import type { ProcessStateStore } from '../../src/cache/state-cache.ts';
import { NO_OPERATOR_STATE, type OperatorState } from '../../src/cluster/operator-state.ts';
import type { ControlGroup, ModbusAirHandler } from '../../src/config/site-schema.ts';
import { resolveTuning } from '../../src/config/tuning-schema.ts';
import { GroupDriver, type GroupDriverOptions } from '../../src/control/group-driver.ts';
import { influenceFromRecords } from '../../src/control/law/influence.ts';
import { enforceHardLimits } from '../../src/control/law/safety.ts';
import { ControlMetrics } from '../../src/control/metrics.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { ModbusDevice } from '../../src/devices/modbus/modbus-device.ts';
import type { GroupSensorView } from '../../src/sensors/sensor-store.ts';
import { SUPPLY_SETPOINT_RANGE_C } from '../../src/unit-contract.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { FakeCluster, FakeLeadership, fakeNode, type UnitWrite } from '../support/fake-cluster.ts';

const MAX_C = SUPPLY_SETPOINT_RANGE_C.max;
const site = generateSite(demoShape);
const baseAhu = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp')!;
const GROUP = { id: 'g1', airHandlers: [baseAhu.id] } as unknown as ControlGroup;
const EPOCH = 100;

/** A leader whose operators' state the test sets (the real one reads it from etcd). */
class OperatedLeadership extends FakeLeadership {
  op: OperatorState = NO_OPERATOR_STATE;
  override operator(): OperatorState {
    return this.op;
  }
}

/** A state cache holding one row another leader wrote (the real one gets it from a peer). */
function storeWith(body: unknown): ProcessStateStore {
  const rows = new Map<string, CachedRow>([
    [
      GROUP.id,
      {
        group: GROUP.id,
        epoch: EPOCH - 10,
        seq: 1,
        writer: 'n0',
        atMs: Date.now(),
        body: Buffer.from(JSON.stringify(body)),
      },
    ],
  ]);
  return {
    get: (g) => rows.get(g),
    pull: async () => {},
    write: (g, epoch, state) => {
      const row = {
        group: g,
        epoch,
        seq: (rows.get(g)?.seq ?? 0) + 1,
        writer: 'n1',
        atMs: Date.now(),
        body: Buffer.from(JSON.stringify(state)),
      };
      rows.set(g, row);
      return row;
    },
  };
}

const holdRow = (fanPct: number, supplySetpointC: number) => ({
  v: 2,
  kind: 'hold',
  commands: { [baseAhu.id]: { fanPct, supplySetpointC } },
  mode: 'hold',
});

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

interface Rig {
  unit: SimAirHandler;
  journal: Journal;
  driver: GroupDriver;
  leadership: OperatedLeadership;
  registry: Registry;
  entries(): JournalEntry[];
}

async function rig(
  opts: { localSetpointC?: number; driver?: Partial<GroupDriverOptions>; start?: boolean } = {},
): Promise<Rig> {
  const journal = new Journal(() => 0);
  const cfg: ModbusAirHandler = { ...baseAhu, localSetpointC: opts.localSetpointC ?? 18, watchdogS: 30 };
  const unit = new SimAirHandler(cfg, journal);
  const server = new ModbusAhuServer(unit, { host: '127.0.0.1', port: 0, unitId: 1, logger: quietLogger });
  const { port } = await server.start();
  stops.push(() => server.stop());
  const device = new ModbusDevice(
    { ...cfg, endpoint: { host: '127.0.0.1', port, unitId: 1 }, client: { timeoutMs: 500 } },
    { logger: quietLogger },
  );
  stops.push(() => device.close());
  const c = new FakeCluster({ [GROUP.id]: ['n1', EPOCH] });
  const leadership = new OperatedLeadership('n1', c);
  c.nodes.set('n1', leadership);
  const registry = new Registry();
  const driver = new GroupDriver(GROUP, new Map<string, DeviceIo>([[baseAhu.id, device]]), leadership, {
    periodMs: 50,
    logger: quietLogger,
    metrics: new ControlMetrics(registry),
    ...opts.driver,
  });
  stops.push(() => driver.stop());
  if (opts.start !== false) driver.start();
  return {
    unit,
    journal,
    driver,
    leadership,
    registry,
    entries: () => journal.since(0).entries.filter((e) => e.ahu === baseAhu.id),
  };
}

const setpoints = (es: JournalEntry[]) => es.map((e) => e.values.supplySetpointC as number);

async function limitedCount(registry: Registry, limit: string): Promise<number> {
  const m = await registry.getSingleMetric('coolctl_control_commands_limited_total')?.get();
  return m?.values.filter((v) => v.labels.limit === limit).reduce((a, v) => a + v.value, 0) ?? 0;
}

describe('enforceHardLimits: the gate right before a write', () => {
  it('passes a command inside the contract unchanged, clamps one outside it, and refuses NaN with nothing told', () => {
    expect(enforceHardLimits({ fanPct: 55.55, supplySetpointC: 19.37 }, null)).toEqual({
      command: { fanPct: 55.55, supplySetpointC: 19.37 },
      clipped: [],
    });
    expect(enforceHardLimits({ fanPct: 150, supplySetpointC: 40 }, null)).toEqual({
      command: { fanPct: 100, supplySetpointC: MAX_C },
      clipped: ['fan-range', 'setpoint-range'],
    });
    expect(enforceHardLimits({ fanPct: 10, supplySetpointC: 5 }, null, 20).command).toEqual({
      fanPct: 20,
      supplySetpointC: SUPPLY_SETPOINT_RANGE_C.min,
    });
    expect(enforceHardLimits({ fanPct: 50, supplySetpointC: Number.NaN }, null).command).toBeNull();
    expect(
      enforceHardLimits({ fanPct: 50, supplySetpointC: Number.NaN }, { fanPct: 40, supplySetpointC: 21 })
        .command,
    ).toEqual({ fanPct: 50, supplySetpointC: 21 });
  });
});

describe('every command reaches the unit inside the device contract', () => {
  it('a hold group takes over a unit running a setpoint above the range: it is told 27 °C, never more', async () => {
    // A unit may run locally what no command may ask for (its own panel setting).
    const r = await rig({ localSetpointC: 30 });
    const accepted = await waitFor('an accepted write', () => r.entries().find((e) => e.accepted));
    expect(accepted.values).toMatchObject({ remoteEnable: true, supplySetpointC: MAX_C, fanPct: 100 });
    expect(Math.max(...setpoints(r.entries()))).toBeLessThanOrEqual(MAX_C);
    expect(r.unit.status()).toMatchObject({ mode: 'remote', supplySetpointC: MAX_C });
    expect(r.driver.units()[0]!.held).toEqual({ fanPct: 100, supplySetpointC: MAX_C });
    expect(await limitedCount(r.registry, 'setpoint-range')).toBeGreaterThan(0);
  });

  it('an operator’s command to a hold group above the range is clamped before the write', async () => {
    const r = await rig();
    await waitFor('driving', () => r.entries().some((e) => e.accepted) && r.driver.driving);
    const from = r.journal.lastSeq;
    expect(r.driver.setCommand({ supplySetpointC: 35, fanPct: 120 })).toEqual([
      { fanPct: 100, supplySetpointC: MAX_C },
    ]);
    const next = await waitFor('the operator’s command on the wire', () =>
      r.journal.since(from).entries.find((e) => e.values.supplySetpointC !== 18),
    );
    expect(next).toMatchObject({ accepted: true, values: { supplySetpointC: MAX_C, fanPct: 100 } });
    expect(Math.max(...setpoints(r.entries()))).toBeLessThanOrEqual(MAX_C);
  });

  it('a warm start from a cached row carrying 40 °C writes 27 °C', async () => {
    const r = await rig({ driver: { store: storeWith(holdRow(60, 40)) } });
    const accepted = await waitFor('an accepted write', () => r.entries().find((e) => e.accepted));
    expect(r.driver.startInfo?.source).toBe('cache');
    expect(accepted.values).toMatchObject({ remoteEnable: true, fanPct: 60, supplySetpointC: MAX_C });
    expect(Math.max(...setpoints(r.entries()))).toBeLessThanOrEqual(MAX_C);
  });

  it('the hand-over to local control (pause) carries the clamped command, so the unit takes it', async () => {
    // The unit runs remote under an earlier leader; the row that leader left says 40 °C.
    const r = await rig({ driver: { store: storeWith(holdRow(60, 40)) }, start: false });
    r.unit.write('n0', {
      epoch: EPOCH - 10,
      heartbeat: 1,
      remoteEnable: true,
      fanPct: 60,
      supplySetpointC: 20,
    });
    r.leadership.op = { ...NO_OPERATOR_STATE, paused: true };
    r.driver.start();
    const released = await waitFor('the release write', () =>
      r.entries().find((e) => e.epoch === EPOCH && e.values.remoteEnable === false),
    );
    expect(released).toMatchObject({ accepted: true, values: { supplySetpointC: MAX_C } });
    expect(r.unit.status().mode).toBe('local');
    expect(Math.max(...setpoints(r.entries()))).toBeLessThanOrEqual(MAX_C);
  });

  it('releaseAll at shutdown writes the clamped command', async () => {
    // One period by hand, no loop: the term begins from the row (40 °C) and nothing else runs, so
    // the shutdown's releaseAll is the first write of the term.
    const r = await rig({ driver: { store: storeWith(holdRow(60, 40)) }, start: false });
    r.unit.write('n0', {
      epoch: EPOCH - 10,
      heartbeat: 1,
      remoteEnable: true,
      fanPct: 60,
      supplySetpointC: 20,
    });
    const from = r.journal.lastSeq;
    r.driver.tick();
    await waitFor('the term begun from the row', () => r.driver.startInfo?.source === 'cache');
    expect(r.journal.since(from).entries).toHaveLength(0);
    await r.driver.releaseAll(2_000);
    const written = r.journal.since(from).entries;
    expect(written).toHaveLength(1);
    expect(written[0]).toMatchObject({
      accepted: true,
      epoch: EPOCH,
      values: { remoteEnable: false, supplySetpointC: MAX_C, fanPct: 60 },
    });
    expect(r.unit.status().mode).toBe('local');
  });

  it('an override of 29 °C under the control law (valid in etcd, beyond the contract) is written as 27 °C', async () => {
    const view: GroupSensorView = {
      group: GROUP.id,
      verdict: 'ok',
      inletMaxC: 22,
      inletMeanC: 21,
      hottestRack: 'R1',
      humidityPct: 40,
      dewPointC: 8,
      coverage: 1,
      goodInletSensors: 1,
      configuredInletSensors: 1,
      uncoveredRacks: [],
      atMs: Date.now(),
    };
    const r = await rig({
      start: false,
      driver: {
        control: {
          config: {
            group: GROUP.id,
            ahus: [baseAhu.id],
            tuning: resolveTuning(),
            influence: influenceFromRecords({ [baseAhu.id]: { R1: 1 } }),
            local: { [baseAhu.id]: { fanPct: 100, supplySetpointC: 18 } },
            dewPointFallbackC: 10,
          },
          sensors: { view: () => view },
        },
      },
    });
    r.leadership.op = {
      ...NO_OPERATOR_STATE,
      overrides: { [baseAhu.id]: { supplySetpointC: 29, fanPct: 70 } },
    };
    r.driver.start();
    const w = await waitFor('the override on the wire', () =>
      r.entries().find((e) => e.accepted && e.values.fanPct === 70),
    );
    expect(w.values.supplySetpointC).toBe(MAX_C);
    expect(Math.max(...setpoints(r.entries()))).toBeLessThanOrEqual(MAX_C);
  });
});

describe('the API refuses commands outside the device contract', () => {
  it('a hold command or an override above 27 °C is a 400, and nothing is written', async () => {
    const c = new FakeCluster({ 'zone-1': ['n1', 5] });
    const written: UnitWrite[] = [];
    const n = await fakeNode(c, 'n1', site, written);
    stops.push(() => n.close());
    const ahu = site.controlGroups.find((g) => g.id === 'zone-1')!.airHandlers[0]!;
    await waitFor('the leader drives zone-1', () => n.drivers.get('zone-1')!.driving);
    const before = written.filter((w) => w.cmd.supplySetpointC > MAX_C).length;
    const cmd = await n.app.inject({
      method: 'POST',
      url: '/api/v1/groups/zone-1/commands',
      payload: { supplySetpointC: 28 },
    });
    expect(cmd.statusCode).toBe(400);
    const ov = await n.app.inject({
      method: 'PUT',
      url: `/api/v1/groups/zone-1/overrides/${ahu}`,
      payload: { supplySetpointC: 28 },
    });
    expect(ov.statusCode).toBe(400);
    const ok = await n.app.inject({
      method: 'POST',
      url: '/api/v1/groups/zone-1/commands',
      payload: { supplySetpointC: MAX_C },
    });
    expect(ok.statusCode).toBe(200);
    expect(written.filter((w) => w.cmd.supplySetpointC > MAX_C).length).toBe(before);
    // The OpenAPI document carries the same range.
    const doc = (await n.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    expect(JSON.stringify(doc)).toContain(`"minimum":${SUPPLY_SETPOINT_RANGE_C.min},"maximum":${MAX_C}`);
  });
});
