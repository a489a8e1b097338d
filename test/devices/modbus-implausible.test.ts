// A native Modbus unit with a broken probe, against the simulator's real Modbus TCP server: the unit
// reports the vendors' no-data words (0x7FFF, 0x8000 = −32768, 0xFFFF) in its measurement registers.
// What a user must see: the point is absent (NaN, listed, quality uncertain) — never a good 3276.7 °C
// handed to control, trends and alarms — counted per unit and point on /metrics, one log line per
// unit however often it is read, the link up and remote control kept, and good readings once the
// probe is mended.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { ModbusAhuServer } from '../../firmware-sim/ahu/modbus-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import { evaluateGroup, newMemory } from '../../src/alarms/rules.ts';
import { alarmDelays, alarmLimits } from '../../src/config/alarm-schema.ts';
import type { ModbusAirHandler } from '../../src/config/site-schema.ts';
import type { LinkEvent } from '../../src/devices/device-io.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import { ModbusDevice } from '../../src/devices/modbus/modbus-device.ts';
import { MetricsExposition } from '../../src/metrics/exposition.ts';
import type { AhuMeasurements } from '../../src/unit-contract.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const site = generateSite(demoShape);
const baseAhu = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp')!;
const journal = new Journal(() => 0);
const closers: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

const GOOD: AhuMeasurements = {
  fanPct: 55,
  supplyC: 18.5,
  returnC: 29.5,
  cwValvePct: 40,
  fanKw: 3.2,
  coolingKw: 45,
};

async function startUnit(patch: Partial<ModbusAirHandler> = {}) {
  const unit = new SimAirHandler({ ...baseAhu, ...patch }, journal);
  unit.updateMeasurements(GOOD);
  const server = new ModbusAhuServer(unit, {
    host: '127.0.0.1',
    port: 0,
    unitId: 1,
    logger: quietLogger,
    ...(patch.pointMap ? { pointMap: patch.pointMap } : {}),
  });
  const { port } = await server.start();
  closers.push(() => server.stop());
  const config: ModbusAirHandler = {
    ...baseAhu,
    ...patch,
    endpoint: { host: '127.0.0.1', port, unitId: 1 },
    client: { timeoutMs: 500 },
  };
  return { unit, config };
}

/** JSON log lines the device writes, at info and above. */
function logCapture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

function device(config: ModbusAirHandler, deps: ConstructorParameters<typeof ModbusDevice>[1]) {
  const d = new ModbusDevice(config, deps);
  closers.push(() => d.close());
  return d;
}

const absentLines = (lines: Record<string, unknown>[]) =>
  lines.filter((l) => Array.isArray(l.absent) || /usable value again/.test(String(l.msg)));

describe('a native Modbus unit that reports no-data words', () => {
  it('0x7FFF, 0x8000 and 0xFFFF read as absent, counted and logged once, link and remote control kept', async () => {
    const { unit, config } = await startUnit();
    const registry = new Registry();
    const { logger, lines } = logCapture();
    const d = device(config, { logger, metrics: new DeviceMetrics(registry) });
    const links: LinkEvent[] = [];
    d.on('link', (e: LinkEvent) => links.push(e));
    await d.open();
    await d.writeCommand({ epoch: 3, remoteEnable: true, fanPct: 60, supplySetpointC: 19 });
    expect((await d.read()).quality).toBe('good');

    // Supply probe open (0x7FFF: 3276.7 °C), return probe shorted (0x8000: −3276.8 °C), fan feedback
    // 0xFFFF (6553.5 %), fan power 0x7FFF (327.67 kW: inside the power range, no data all the same).
    unit.updateMeasurements({ ...GOOD, supplyC: 3276.7, returnC: -3276.8, fanPct: 6553.5, fanKw: 327.67 });
    const reads = [];
    for (let i = 0; i < 20; i++) reads.push(await d.read());
    const r = reads.at(-1)!;
    expect(r.quality).toBe('uncertain');
    expect(r.absent).toEqual(['fanPct', 'supplyC', 'returnC', 'fanKw']);
    for (const p of ['fanPct', 'supplyC', 'returnC', 'fanKw'] as const) expect(r[p]).toBeNaN();
    // The rest of the unit is read as it is.
    expect(r).toMatchObject({ mode: 'remote', epoch: 3, supplySetpointC: 19, cwValvePct: 40, coolingKw: 45 });
    expect(reads.every((x) => x.quality === 'uncertain' && Number.isNaN(x.supplyC))).toBe(true);

    // One bad probe is not a lost unit: the link stays up, remote control stays ours.
    expect(d.linkState).toBe('up');
    expect(links.filter((e) => e.to !== 'up')).toEqual([]);
    expect(d.remoteControlLost).toBe(false);
    await d.writeCommand({ epoch: 3, remoteEnable: true, fanPct: 62, supplySetpointC: 19 });

    // Counted per unit and point, every read.
    const text = (await new MetricsExposition(registry, { reuseMs: 0 }).body()).toString('utf8');
    const labels = `device="${d.id}",protocol="modbus-tcp"`;
    for (const p of ['fanPct', 'supplyC', 'returnC', 'fanKw'])
      expect(text).toMatch(
        new RegExp(`coolctl_device_absent_readings_total\\{${labels},point="${p}"\\} 2[0-9]\\b`),
      );
    expect(text).not.toContain(`coolctl_device_absent_readings_total{${labels},point="coolingKw"}`);

    // One warning for twenty reads, naming the points.
    const warned = absentLines(lines);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({
      level: 40,
      device: d.id,
      absent: ['fanPct', 'supplyC', 'returnC', 'fanKw'],
    });

    // The unit's comm-loss alarm stays clear, as for an OPC-UA unit's implausible value.
    const memory = newMemory();
    for (const tS of [0, 600]) {
      const conditions = evaluateGroup(
        {
          group: 'zone-1',
          nowMs: tS * 1000,
          rackInletsC: {},
          rackDewPointsC: {},
          verdict: 'ok',
          recovery: null,
          configuredInletSensors: 0,
          units: [{ id: d.id, link: d.linkState, mode: r.mode, refusal: d.refusal ?? null }],
          drive: { driving: true, problem: null },
          limits: alarmLimits(undefined),
          delays: alarmDelays(undefined),
        },
        memory,
      );
      expect(conditions.filter((c) => c.kind === 'unit-comm-loss' && c.verdict === 'active')).toEqual([]);
    }

    // Mended: good readings at once.
    unit.updateMeasurements(GOOD);
    const again = await waitFor('good readings', () =>
      d.read().then((x) => (x.quality === 'good' ? x : null)),
    );
    expect(again.absent).toBeUndefined();
    expect(again.supplyC).toBe(18.5);
    expect(again.returnC).toBe(29.5);
  });

  it('a no-data word is no data at any scale: 0x7FFF at tempScale 1000 is not 32.767 °C', async () => {
    const pointMap = { commandBlock: 0, statusBlock: 100, tempScale: 1000, pctScale: 10 };
    const { unit, config } = await startUnit({ pointMap });
    const d = device(config, { logger: quietLogger });
    unit.updateMeasurements({ ...GOOD, supplyC: 32.767, returnC: -32.768 });
    const r = await d.read();
    expect(r.absent).toEqual(['supplyC', 'returnC']);
    expect(r.supplyC).toBeNaN();
    expect(r.returnC).toBeNaN();
    // A word next to them is a reading: 0x7FFE is 32.766 °C.
    unit.updateMeasurements({ ...GOOD, supplyC: 32.766, returnC: -0.001 });
    const ok = await d.read();
    expect(ok.quality).toBe('good');
    expect(ok.supplyC).toBe(32.766);
    expect(ok.returnC).toBe(-0.001);
  });
});
