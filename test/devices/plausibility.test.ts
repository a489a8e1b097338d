// The plausibility screen every adapter serves readings through (src/devices/plausibility.ts) and the
// native Modbus map's no-data words (src/devices/modbus/point-map.ts), as pure functions: which
// figures are absent, what a reading looks like then, and how often a unit's log hears of it.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { AhuReadings } from '../../src/devices/device-io.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import { decodeStatus, encodeStatus, STATUS_OFFSET } from '../../src/devices/modbus/point-map.ts';
import { profileReadings } from '../../src/devices/modbus/profile-device.ts';
import {
  AbsentPointsNotice,
  READING_RANGES,
  SCREENED_POINTS,
  screenReadings,
} from '../../src/devices/plausibility.ts';
import type { DecodedStatus } from '../../src/devices/profile/values.ts';
import { AIR_TEMP_RANGE_C, FAN_RANGE_PCT, POWER_RANGE_KW, VALVE_RANGE_PCT } from '../../src/unit-contract.ts';

const GOOD: AhuReadings = {
  mode: 'remote',
  fanPct: 55,
  supplySetpointC: 19,
  supplyC: 18.5,
  returnC: 29.5,
  cwValvePct: 40,
  alarms: 0,
  epoch: 3,
  heartbeat: 7,
  fanKw: 3.2,
  coolingKw: 45,
  quality: 'good',
  sourceTimeMs: 1,
};

describe('the readings screen', () => {
  it('takes its ranges from the device contract, one per measured point', () => {
    expect(READING_RANGES).toEqual({
      fanPct: FAN_RANGE_PCT,
      supplySetpointC: AIR_TEMP_RANGE_C,
      supplyC: AIR_TEMP_RANGE_C,
      returnC: AIR_TEMP_RANGE_C,
      cwValvePct: VALVE_RANGE_PCT,
      fanKw: POWER_RANGE_KW,
      coolingKw: POWER_RANGE_KW,
    });
  });

  it('serves plausible readings as they are, ends of each range included', () => {
    expect(screenReadings(GOOD)).toBe(GOOD);
    const edges = {
      ...GOOD,
      fanPct: 100,
      supplyC: -20,
      returnC: 70,
      cwValvePct: 0,
      fanKw: 0,
      coolingKw: 1000,
    };
    expect(screenReadings(edges)).toBe(edges);
  });

  it.each([
    ['supplyC', 3276.7],
    ['returnC', -3276.8],
    ['fanPct', 6553.5],
    ['cwValvePct', -0.1],
    ['coolingKw', 1000.1],
    ['supplySetpointC', Number.POSITIVE_INFINITY],
    ['fanKw', Number.NaN],
  ] as const)('%s = %d is absent: NaN, listed, quality uncertain; the rest untouched', (point, value) => {
    const r = screenReadings({ ...GOOD, [point]: value });
    expect(r[point]).toBeNaN();
    expect(r.absent).toEqual([point]);
    expect(r.quality).toBe('uncertain');
    for (const p of SCREENED_POINTS) if (p !== point) expect(r[p]).toBe(GOOD[p]);
    expect(r.epoch).toBe(3);
  });

  it('a no-data code is absent even where its figure would fit the range; earlier absent points are kept', () => {
    const r = screenReadings({ ...GOOD, absent: ['humidity'], fanKw: 327.67 }, new Set(['fanKw']));
    expect(r.absent).toEqual(['humidity', 'fanKw']);
    expect(r.fanKw).toBeNaN();
    expect(screenReadings({ ...GOOD, quality: 'bad', supplyC: 999 }).quality).toBe('bad');
  });

  it('profile units use the same table: a 0x7FFF figure the profile does not name is absent', () => {
    const s = {
      alarms: [],
      absent: [],
      supplyC: 3276.7,
      returnC: 25,
      fanFeedbackPct: 6553.5,
    } as unknown as DecodedStatus;
    const r = profileReadings(s, [], 'none', 0);
    expect(r.absent).toEqual(['fanFeedbackPct', 'supplyC']);
    expect(r.returnC).toBe(25);
  });
});

describe('the native register map: no-data words', () => {
  // The plausible readings above, as a unit's status block holds them.
  const words = () => encodeStatus({ ...GOOD, mode: 'remote', watchdogS: 10, localSetpointC: 20 });

  it('none in an ordinary block', () => {
    expect([...decodeStatus(words()).noData]).toEqual([]);
  });

  it.each(['fanPct', 'supplySetpointC', 'supplyC', 'returnC', 'cwValvePct', 'fanKw', 'coolingKw'] as const)(
    '%s holding 0x7FFF or 0x8000 is no data',
    (point) => {
      for (const w of [0x7fff, 0x8000]) {
        const regs = words();
        regs[STATUS_OFFSET[point]] = w;
        expect([...decodeStatus(regs).noData]).toEqual([point]);
      }
    },
  );

  it('0xFFFF is no data in an unsigned register, and −0.1 °C in a signed one', () => {
    for (const point of ['fanPct', 'cwValvePct', 'fanKw', 'coolingKw'] as const) {
      const regs = words();
      regs[STATUS_OFFSET[point]] = 0xffff;
      expect([...decodeStatus(regs).noData]).toEqual([point]);
    }
    const regs = words();
    regs[STATUS_OFFSET.supplyC] = 0xffff;
    const st = decodeStatus(regs);
    expect([...st.noData]).toEqual([]);
    expect(st.supplyC).toBe(-0.1);
  });

  it('counters and codes are not measurements: a heartbeat or alarm word of 0x7FFF is data', () => {
    const regs = words();
    regs[STATUS_OFFSET.heartbeat] = 0x7fff;
    regs[STATUS_OFFSET.alarms] = 0xffff;
    regs[STATUS_OFFSET.watchdogS] = 0x8000;
    expect([...decodeStatus(regs).noData]).toEqual([]);
  });
});

describe("a unit's absent points in the log and on /metrics", () => {
  function notice() {
    const lines: { level: number; msg: string; absent?: string[]; changesNotLogged: number }[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const registry = new Registry();
    const metrics = new DeviceMetrics(registry);
    let nowMs = 0;
    const n = new AbsentPointsNotice(
      () => log,
      metrics.meter('AHU-1', 'modbus-tcp'),
      60_000,
      () => nowMs,
    );
    return {
      n,
      lines,
      registry,
      advance: (ms: number) => {
        nowMs += ms;
      },
    };
  }

  it('one line per change of the set, never one per read; every read counted per point', async () => {
    const { n, lines, registry, advance } = notice();
    for (let i = 0; i < 100; i++) {
      n.note(['supplyC']);
      advance(1000);
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, absent: ['supplyC'], changesNotLogged: 0 });
    const text = await registry.metrics();
    expect(text).toContain(
      'coolctl_device_absent_readings_total{device="AHU-1",protocol="modbus-tcp",point="supplyC"} 100',
    );
    n.note([]);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ level: 30, msg: 'every point reads a usable value again' });
  });

  it('a probe that flickers every read: at most one line a minute, saying how many changes went unlogged', () => {
    const { n, lines, advance } = notice();
    for (let i = 0; i < 600; i++) {
      n.note(i % 2 === 0 ? ['returnC'] : []);
      advance(1000);
    }
    // 600 reads over 10 minutes: the first change at once, then one line per minute at most.
    expect(lines.length).toBeGreaterThanOrEqual(9);
    expect(lines.length).toBeLessThanOrEqual(11);
    expect(lines.slice(1).every((l) => l.changesNotLogged >= 50)).toBe(true);
  });

  it('a change held back is logged at the first read after the minute: the set in force is always told', () => {
    const { n, lines, advance } = notice();
    n.note(['supplyC']);
    advance(1000);
    n.note([]);
    advance(1000);
    n.note(['supplyC', 'fanKw']);
    expect(lines).toHaveLength(1);
    advance(60_000);
    n.note(['supplyC', 'fanKw']);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ absent: ['supplyC', 'fanKw'], changesNotLogged: 1 });
  });
});
