import modbusSerial from 'modbus-serial';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { ProfilePdu, ProfileQuirks } from '../../firmware-sim/ahu/profile-pdu.ts';
import type { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { buildSimApi } from '../../firmware-sim/api.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal, type JournalEntry } from '../../firmware-sim/journal.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import type { ModbusAirHandler, Site } from '../../src/config/site-schema.ts';
import type { CompiledProfile } from '../../src/devices/profile/codec.ts';
import type { ProfileCommand } from '../../src/devices/profile/values.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { NO_QUIRKS, startProfileUnit } from '../support/profile-unit.ts';

const ModbusRTU = modbusSerial.default;
type ModbusClient = InstanceType<typeof ModbusRTU>;

const site = generateSite(demoShape);
const base = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp');
if (!base) throw new Error('demo site has no Modbus TCP air handler');
const journal = new Journal(() => 0);

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A wall clock the test moves by hand. */
class Clock {
  ms = 1_000_000;
  readonly now = (): number => this.ms;
  advanceS(s: number): void {
    this.ms += s * 1000;
  }
}

interface Rig {
  unit: SimAirHandler;
  pdu: ProfilePdu;
  profile: CompiledProfile;
  client: ModbusClient;
  clock: Clock;
  /** Sends the codec's writes for `cmd`, as a controller would. */
  command(cmd: ProfileCommand): Promise<void>;
  entries(): JournalEntry[];
}

let unitCount = 0;

async function rig(profileName: string, quirks: ProfileQuirks = NO_QUIRKS): Promise<Rig> {
  const clock = new Clock();
  const config: ModbusAirHandler & { profile: string } = {
    ...base!,
    id: `AHU-V${++unitCount}`,
    endpoint: { host: '127.0.0.1', port: 0, unitId: 1 },
    localSetpointC: 18,
    localFanPct: 80,
    profile: profileName,
  };
  const { unit, server, port, profile, pdu } = await startProfileUnit(config, journal, {
    quirks,
    wallNowMs: clock.now,
  });
  cleanups.push(() => server.stop());
  const client = new ModbusRTU();
  client.on('error', () => undefined);
  await client.connectTCP('127.0.0.1', { port });
  client.setID(1);
  client.setTimeout(3000);
  cleanups.push(() => new Promise<void>((r) => client.close(() => r())));
  const seq = journal.lastSeq;
  return {
    unit,
    pdu,
    profile,
    client,
    clock,
    async command(cmd) {
      for (const w of profile.encodeCommand(cmd)) await send(client, w.fc, w.address, w.values);
    },
    entries: () => journal.since(seq).entries.filter((e) => e.ahu === config.id),
  };
}

async function send(client: ModbusClient, fc: number, address: number, values: number[]): Promise<void> {
  if (fc === 5) await client.writeCoil(address, values[0] === 1);
  else if (fc === 6) await client.writeRegister(address, values[0] ?? 0);
  else if (fc === 15)
    await client.writeCoils(
      address,
      values.map((v) => v === 1),
    );
  else await client.writeRegisters(address, values);
}

const last = (r: Rig) => r.entries().at(-1);

describe('a vendor unit’s own watchdog, per style', () => {
  it('toggle: heartbeat unchanged past timeoutS → BMS commands dropped, local fallback; a toggle brings it back', async () => {
    const r = await rig('float32-lsw-toggle-inverted-coil');
    await r.command({ heartbeat: 1, run: true, supplySetpointC: 20, fanPct: 55 });
    expect(r.unit.effectiveCommand()).toEqual({ running: true, fanPct: 55, supplySetpointC: 20 });
    expect(r.entries().map((e) => [e.values, e.accepted, e.epoch])).toEqual([
      [{ heartbeat: 1 }, true, 0],
      [{ run: true }, true, 0],
      [{ supplySetpointC: 20 }, true, 0],
      [{ fanPct: 55 }, true, 0],
    ]);
    // run is an inverted coil (1 = supervisory off): "run" put a 0 on the wire.
    const runCoil = r.profile.points.get('run')!.address;
    expect((await r.client.readCoils(runCoil, 1)).data[0]).toBe(false);

    r.clock.advanceS(170);
    await r.command({ supplySetpointC: 21 }); // commands alone do not feed a toggle watchdog
    r.clock.advanceS(11);
    r.pdu.checkWatchdog();
    expect(r.unit.mode).toBe('fallback');
    expect(r.unit.effectiveCommand()).toEqual({ running: true, fanPct: 80, supplySetpointC: 18 });

    // The unit answers the write as usual, but ignores it; the journal says so.
    await r.command({ fanPct: 40 });
    expect(last(r)).toMatchObject({ values: { fanPct: 40 }, accepted: false, reason: 'bms-timeout' });
    expect(r.unit.mode).toBe('fallback');

    await r.command({ heartbeat: 0 });
    expect(r.unit.mode).toBe('remote');
    // The commands it dropped stay dropped until the BMS writes them again.
    expect(r.unit.effectiveCommand().fanPct).toBe(80);
    await r.command({ fanPct: 40 });
    expect(r.unit.effectiveCommand().fanPct).toBe(40);

    // Writing the coil's raw 1 stops the unit: inverted, journaled as run false.
    await r.client.writeCoil(runCoil, true);
    expect(last(r)).toMatchObject({ values: { run: false }, accepted: true });
    expect(r.unit.effectiveCommand()).toMatchObject({ running: false, fanPct: 0 });
  });

  it('timeout-register: the period written in minutes; no command within it → fallback; the next command is back', async () => {
    const r = await rig('holding-tenths-c-timeout-register');
    await r.command({ watchdogTimerS: 60, supplySetpointC: 20 });
    expect(r.entries().map((e) => e.values)).toEqual([{ watchdogTimerS: 60 }, { supplySetpointC: 20 }]);
    const timer = r.profile.points.get('watchdogTimerS')!.address;
    expect((await r.client.readHoldingRegisters(timer, 1)).data[0]).toBe(1); // minutes on the wire
    expect(r.unit.mode).toBe('remote');
    r.clock.advanceS(50);
    await r.command({ fanPct: 70 }); // any command refreshes it
    r.clock.advanceS(50);
    r.pdu.checkWatchdog();
    expect(r.unit.mode).toBe('remote');
    r.clock.advanceS(11);
    r.pdu.checkWatchdog();
    expect(r.unit.mode).toBe('fallback');
    expect(r.unit.effectiveCommand()).toEqual({ running: true, fanPct: 80, supplySetpointC: 18 });
    await r.command({ supplySetpointC: 19 });
    expect(r.unit.mode).toBe('remote');
    expect(r.unit.effectiveCommand().supplySetpointC).toBe(19);
  });

  it('countdown: the timer counts down as read back; at 0 the unit is on its own until the timer is rewritten', async () => {
    const r = await rig('tenths-c-countdown-command-bits');
    await r.command({ fanPct: 55, watchdogTimerS: 30, run: true });
    expect(r.entries().map((e) => e.values)).toEqual([{ run: true }, { fanPct: 55, watchdogTimerS: 30 }]);
    const timer = r.profile.points.get('watchdogTimerS')!.address;
    r.clock.advanceS(10);
    expect((await r.client.readHoldingRegisters(timer, 1)).data[0]).toBe(20);
    r.clock.advanceS(21);
    r.pdu.checkWatchdog();
    expect(r.unit.mode).toBe('fallback');
    await r.command({ supplySetpointC: 21 });
    expect(last(r)).toMatchObject({ accepted: false, reason: 'bms-timeout' });
    await r.command({ fanPct: 50, watchdogTimerS: 30 });
    expect(r.unit.mode).toBe('remote');
    expect(r.unit.effectiveCommand().fanPct).toBe(50);
  });

  it('countdown unit: run by command bits (2 on, 1 off); any other value is exception 03', async () => {
    const r = await rig('tenths-c-countdown-command-bits');
    const run = r.profile.points.get('run')!.address;
    await r.client.writeRegister(run, 2);
    expect(last(r)).toMatchObject({ values: { run: true }, accepted: true });
    await r.client.writeRegister(run, 1);
    expect(last(r)).toMatchObject({ values: { run: false }, accepted: true });
    expect(r.unit.effectiveCommand()).toMatchObject({ running: false });
    await expect(r.client.writeRegister(run, 3)).rejects.toMatchObject({ modbusCode: 3 });
    expect(last(r)).toMatchObject({ accepted: false, reason: 'out-of-range' });
  });

  it('validity: values valid for the timer written, 0 = for ever; and a unit without FC6 answers it with 01', async () => {
    const r = await rig('coils-fc16-only-validity-timer');
    await r.command({ watchdogTimerS: 20, fanPct: 55, supplySetpointC: 20, run: true });
    expect(r.unit.effectiveCommand()).toEqual({ running: true, fanPct: 55, supplySetpointC: 20 });
    r.clock.advanceS(21);
    r.pdu.checkWatchdog();
    expect(r.unit.mode).toBe('fallback');

    await r.command({ watchdogTimerS: 0 });
    expect(r.unit.mode).toBe('remote');
    r.clock.advanceS(3600);
    r.pdu.checkWatchdog();
    expect(r.unit.mode).toBe('remote');

    const timer = r.profile.points.get('watchdogTimerS')!.address;
    await expect(r.client.writeRegister(timer, 30)).rejects.toMatchObject({ modbusCode: 1 });
    expect(last(r)).toMatchObject({
      values: { fc: 6, address: timer, count: 1 },
      accepted: false,
      reason: 'unsupported-function',
    });
  });

  it('none: the unit never falls back on its own; the journal shows the last write was long ago', async () => {
    const r = await rig('tenths-f-int32-msw-no-watchdog');
    await r.command({ run: true, supplySetpointC: 20 });
    const lastWrite = last(r);
    expect(lastWrite).toMatchObject({ values: { supplySetpointC: 20 }, accepted: true });
    r.clock.advanceS(10 * 3600);
    r.pdu.checkWatchdog();
    expect(r.unit.mode).toBe('remote');
    expect(r.unit.effectiveCommand().supplySetpointC).toBe(20);
    expect(last(r)?.seq).toBe(lastWrite?.seq);
    expect(r.pdu.watchdogPeriodS()).toBeUndefined();
  });
});

describe('what bites at start-up', () => {
  it('exception 02 before data is ready, then the no-data value, then data; writes too early are 02 and journaled', async () => {
    const r = await rig('holding-tenths-c-timeout-register', {
      notReadyMs: 1000,
      noDataMs: 1000,
      firstReadDelayMs: 0,
    });
    const supply = r.profile.points.get('supplyC')!.address;
    r.unit.updateMeasurements({
      fanPct: 60,
      supplyC: 19.4,
      returnC: 29,
      cwValvePct: 40,
      fanKw: 2,
      coolingKw: 30,
    });
    await expect(r.client.readInputRegisters(supply, 1)).rejects.toMatchObject({ modbusCode: 2 });
    await expect(
      r.client.writeRegister(r.profile.points.get('supplySetpointC')!.address, 200),
    ).rejects.toMatchObject({
      modbusCode: 2,
    });
    expect(last(r)).toMatchObject({ values: { supplySetpointC: 20 }, accepted: false, reason: 'not-ready' });
    r.clock.advanceS(1.5);
    expect((await r.client.readInputRegisters(supply, 1)).buffer.readInt16BE(0)).toBe(-32768);
    r.clock.advanceS(1);
    expect((await r.client.readInputRegisters(supply, 1)).buffer.readInt16BE(0)).toBe(194);
  });

  it('the first read of a block is slow, the next one is not', async () => {
    const r = await rig('holding-tenths-c-timeout-register', {
      notReadyMs: 0,
      noDataMs: 0,
      firstReadDelayMs: 250,
    });
    const supply = r.profile.points.get('supplyC')!.address;
    let t0 = performance.now();
    await r.client.readInputRegisters(supply, 2);
    const firstMs = performance.now() - t0;
    t0 = performance.now();
    await r.client.readInputRegisters(supply, 2);
    const secondMs = performance.now() - t0;
    expect(firstMs).toBeGreaterThanOrEqual(240);
    expect(secondMs).toBeLessThan(firstMs - 150);
  });

  it('reads outside the map are 02, a read function the unit lacks is 01', async () => {
    const r = await rig('tenths-c-countdown-command-bits');
    const supply = r.profile.points.get('supplyC')!.address;
    // maxGap 2: a block may span unused registers inside, but must start on a point.
    await expect(r.client.readInputRegisters(supply - 1, 2)).rejects.toMatchObject({ modbusCode: 2 });
    await expect(r.client.readCoils(0, 1)).rejects.toMatchObject({ modbusCode: 1 });
  });
});

describe('vendor units in a simulation, behind its TCP→RTU gateway', () => {
  let sim: Simulation | undefined;
  afterAll(() => sim?.stop());

  it('serves each unit’s profile on one endpoint; a dead unit is 0x0B while the other answers; /sim/state shows profiles and the gateway', async () => {
    const port = 15_000 + Math.floor(Math.random() * 20_000);
    const ahus = site.airHandlers.slice(0, 2).map(
      (a, i): ModbusAirHandler => ({
        ...(a as ModbusAirHandler),
        protocol: 'modbus-tcp',
        endpoint: { host: '127.0.0.1', port, unitId: i + 1 },
        profile: i === 0 ? 'holding-tenths-c-timeout-register' : 'tenths-f-int32-msw-no-watchdog',
        client: { timeoutMs: 600 },
      }),
    );
    const vendorSite: Site = {
      ...site,
      airHandlers: [...ahus, ...site.airHandlers.slice(2).filter((a) => a.protocol !== 'opcua')],
      controlGroups: [],
    };
    sim = new Simulation({
      site: vendorSite,
      seed: 3,
      ephemeralPorts: true,
      profileQuirks: NO_QUIRKS,
      logger: quietLogger,
    });
    await sim.start();
    const api = buildSimApi(sim, quietLogger);
    cleanups.push(() => api.close());
    const state = (await api.inject({ method: 'GET', url: '/sim/state' })).json() as {
      ahus: { id: string; profile: string; endpoint: string }[];
      rtuLines: { kind: string; endpoint: string; units: { ahu: string; unitId: number }[] }[];
    };
    const [a1, a2] = ahus as [ModbusAirHandler, ModbusAirHandler];
    expect(state.ahus.find((a) => a.id === a1.id)?.profile).toBe('holding-tenths-c-timeout-register');
    expect(state.ahus.find((a) => a.id === a2.id)?.profile).toBe('tenths-f-int32-msw-no-watchdog');
    expect(state.ahus.find((a) => a.id === 'AHU-03' || a.id === site.airHandlers[2]?.id)?.profile).toBe(
      'coolctl-native',
    );
    const gw = state.rtuLines.find((l) => l.kind === 'rtu-gateway');
    expect(gw?.units).toEqual([
      { ahu: a1.id, unitId: 1 },
      { ahu: a2.id, unitId: 2 },
    ]);
    const gwPort = Number(new URL(gw!.endpoint.replace(/^modbus-tcp:/, 'http:')).port);

    const client = new ModbusRTU();
    client.on('error', () => undefined);
    await client.connectTCP('127.0.0.1', { port: gwPort });
    client.setTimeout(3000);
    cleanups.push(() => new Promise<void>((r) => client.close(() => r())));
    // Unit 2 (tenths of °F, INT32 high word first at wire 94) answers through the gateway.
    client.setID(2);
    const supply = await client.readHoldingRegisters(94, 2);
    const tenthsF = supply.buffer.readInt32BE(0);
    expect(((tenthsF / 10 - 32) * 5) / 9).toBeCloseTo(sim.units.get(a2.id)!.status().supplyC, 0);

    await sim.applyFaults([{ fault: 'ahu-offline', ahu: a1.id }]);
    client.setID(1);
    await expect(client.readInputRegisters(30440 - 30001, 1)).rejects.toMatchObject({ modbusCode: 0x0b });
    client.setID(2);
    await client.readHoldingRegisters(94, 2);
    client.setID(9);
    await expect(client.readHoldingRegisters(94, 2)).rejects.toMatchObject({ modbusCode: 0x0a });

    // The unit's own watchdog runs in the simulation's tick: a write takes it to remote.
    client.setID(2);
    await client.writeRegister(3, 680); // 68.0 °F = 20 °C
    await waitFor('unit 2 under BMS control', () => sim?.units.get(a2.id)?.mode === 'remote');
    expect(
      sim.journal
        .since(0)
        .entries.filter((e) => e.ahu === a2.id)
        .at(-1),
    ).toMatchObject({
      values: { supplySetpointC: 20 },
      accepted: true,
    });
  });
});
