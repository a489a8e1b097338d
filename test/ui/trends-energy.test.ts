// The dashboard's trend rings and energy meter, pure: a day of samples in fixed memory at two
// resolutions, gaps read as no data, and fan energy against the local-control baseline by the cube law.
import { describe, expect, it } from 'vitest';
import { baselineKw, EnergyMeter, fanKwAt, HOUR_MS, type UnitRating } from '../../src/api/energy.ts';
import { GROUP_TRENDS, TrendStore, UNIT_TRENDS } from '../../src/api/trends.ts';

const T0 = Date.UTC(2026, 11, 4, 0, 0, 0);

describe('trend rings', () => {
  it('keeps 10 minutes at 2 s and 24 hours of 1-minute mean, min and max', () => {
    const s = new TrendStore(GROUP_TRENDS, ['zone-1']);
    // 25 hours of samples every 2 s: a saw tooth of the minute (inlet 20…21.9 °C), fan at 40 %.
    for (let t = T0; t < T0 + 25 * HOUR_MS; t += 2000) {
      const k = ((t - T0) / 2000) % 30;
      s.add('zone-1', t, { inletMaxC: 20 + k * (1.9 / 29), fanPct: 40 });
    }
    // Read within the last sample's step: the ring's 300 steps end with it.
    const now = T0 + 25 * HOUR_MS - 1000;
    const recent = s.read('zone-1', 'recent', 0, now)!;
    expect(recent.stepMs).toBe(2000);
    expect(recent.t).toHaveLength(300);
    expect(recent.t[0]).toBe(T0 + 25 * HOUR_MS - 300 * 2000);
    expect(recent.t.at(-1)).toBe(T0 + 25 * HOUR_MS - 2000);
    expect(recent.min).toBeUndefined();
    expect(recent.mean.fanPct.every((x) => x === 40)).toBe(true);

    const day = s.read('zone-1', 'day', 0, now)!;
    expect(day.stepMs).toBe(60_000);
    expect(day.t).toHaveLength(1440);
    expect(day.t.at(-1)! - day.t[0]!).toBe(1439 * 60_000);
    expect(day.mean.inletMaxC[5]).toBeCloseTo(20.95, 2);
    expect(day.min!.inletMaxC[5]).toBe(20);
    expect(day.max!.inletMaxC[5]).toBe(21.9);
    // Memory is what the spec says, whatever was sampled.
    expect(s.bytes()).toBe(TrendStore.bytesPerOwner(GROUP_TRENDS));
    expect(TrendStore.bytesPerOwner(GROUP_TRENDS)).toBeLessThan(19_000);
    expect(TrendStore.bytesPerOwner(UNIT_TRENDS)).toBeLessThan(2_500);
  });

  it('reads a gap as no data, and forgets steps older than the ring', () => {
    const s = new TrendStore(GROUP_TRENDS, ['g']);
    s.add('g', T0, { inletMaxC: 22, fanPct: null });
    s.add('g', T0 + 10_000, { inletMaxC: 23, fanPct: 50 });
    const r = s.read('g', 'recent', 0, T0 + 12_000)!;
    expect(r.t).toEqual([T0, T0 + 2000, T0 + 4000, T0 + 6000, T0 + 8000, T0 + 10_000]);
    expect(r.mean.inletMaxC).toEqual([22, null, null, null, null, 23]);
    expect(r.mean.fanPct).toEqual([null, null, null, null, null, 50]);
    // sinceMs: only the steps after it.
    expect(s.read('g', 'recent', T0 + 8000, T0 + 12_000)!.t).toEqual([T0 + 10_000]);
    // Nothing sampled for 11 minutes: the recent ring shows nothing, the day ring its two minutes.
    const later = T0 + 11 * 60_000;
    expect(s.read('g', 'recent', 0, later)!.t).toEqual([]);
    expect(s.read('g', 'day', 0, later)!.mean.inletMaxC).toEqual([22.5]);
  });

  it('keeps sampling after the wall clock is set back, and drops what it took from the wrong clock', () => {
    const s = new TrendStore(GROUP_TRENDS, ['g']);
    // A node booted with its clock a day ahead samples for a minute, then NTP sets it right.
    for (let t = T0 + 24 * HOUR_MS; t < T0 + 24 * HOUR_MS + 60_000; t += 2000)
      s.add('g', t, { inletMaxC: 40, fanPct: 90 });
    for (let t = T0; t < T0 + 5 * 60_000; t += 2000) s.add('g', t, { inletMaxC: 22, fanPct: 40 });
    const now = T0 + 5 * 60_000 - 1000;
    for (const range of ['recent', 'day'] as const) {
      const r = s.read('g', range, 0, now)!;
      expect(r.t.length, range).toBeGreaterThan(0);
      expect(r.t.at(-1)!, range).toBeLessThanOrEqual(now);
      expect(
        r.mean.inletMaxC.filter((x) => x !== null).every((x) => x === 22),
        range,
      ).toBe(true);
    }
    expect(s.read('g', 'recent', 0, now)!.t).toHaveLength(150);
    // A step back within one step (a clock slewed across a step's edge) keeps the history.
    s.add('g', now + 1500, { inletMaxC: 23, fanPct: 40 });
    s.add('g', now + 900, { inletMaxC: 23, fanPct: 40 });
    expect(s.read('g', 'day', 0, now + 1500)!.t).toHaveLength(5);
  });

  it('follows the running config: an added owner starts empty, a removed one goes', () => {
    const s = new TrendStore(UNIT_TRENDS, ['AHU-01', 'AHU-02']);
    s.add('AHU-01', T0, { fanPct: 60, supplyC: 17.5, supplySetpointC: 18 });
    s.keep(['AHU-01', 'AHU-03']);
    expect(s.owned()).toEqual(['AHU-01', 'AHU-03']);
    expect(s.read('AHU-01', 'recent', 0, T0)!.mean).toEqual({
      fanPct: [60],
      supplyC: [17.5],
      supplySetpointC: [18],
    });
    expect(s.read('AHU-03', 'recent', 0, T0)!.t).toEqual([]);
    expect(s.read('AHU-02', 'recent', 0, T0)).toBeNull();
    // A wall clock set back: the step taken under the clock that ran ahead goes, sampling goes on.
    s.add('AHU-01', T0 - 60_000, { fanPct: 10 });
    expect(s.read('AHU-01', 'recent', 0, T0)!.mean.fanPct).toEqual([10]);
  });
});

describe('energy meter', () => {
  const rating: UnitRating = { fanMaxKw: 4.8, localFanPct: 100 };
  const ratings = (ahu: string) => (ahu === 'unknown' ? undefined : rating);

  it('integrates fan power against every unit at its local speed, by the cube law', () => {
    expect(fanKwAt(rating, 50)).toBeCloseTo(0.6, 6);
    expect(baselineKw(rating)).toBe(4.8);
    expect(baselineKw({ fanMaxKw: 4.8, localFanPct: 80 })).toBeCloseTo(2.4576, 6);
    const m = new EnergyMeter();
    // One hour of 2-s steps, each counted in the hour it ends in: one unit reads its fan kW point
    // (1.2 kW), one has none (50 % → 0.6 kW by the cube law).
    for (let t = T0 - 2000; t < T0 + HOUR_MS; t += 2000)
      m.add(
        'zone-1',
        t,
        [
          { ahu: 'AHU-01', fanPct: 63, fanKw: 1.2, coolingKw: 30 },
          { ahu: 'AHU-05', fanPct: 50, fanKw: Number.NaN, coolingKw: null },
          { ahu: 'unknown', fanPct: 50, fanKw: 1, coolingKw: 1 },
        ],
        ratings,
      );
    const { hours, days } = m.report();
    expect(hours).toHaveLength(1);
    const h = hours[0]!;
    expect(h.startMs).toBe(T0);
    expect(h.fanKwh).toBeCloseTo(1.8, 3);
    expect(h.estimatedFanKwh).toBeCloseTo(0.6, 3);
    expect(h.baselineFanKwh).toBeCloseTo(9.6, 3);
    expect(h.coolingKwh).toBeCloseTo(30, 3);
    expect(h.unitSeconds).toBeCloseTo(7200, 3);
    expect(h.groups['zone-1']!.fanKwh).toBeCloseTo(1.8, 3);
    expect(days[0]!.baselineFanKwh).toBeCloseTo(9.6, 3);
  });

  it('integrates nothing across a gap or after the group stopped being driven here', () => {
    const m = new EnergyMeter();
    const u = [{ ahu: 'AHU-01', fanPct: 100, fanKw: 4.8, coolingKw: 10 }];
    m.add('g', T0, u, ratings);
    m.add('g', T0 + 60_000, u, ratings); // a minute without samples: not integrated
    m.add('g', T0 + 62_000, u, ratings);
    m.stop('g');
    m.add('g', T0 + 64_000, u, ratings); // a new term starts afresh
    const h = m.report().hours[0]!;
    expect(h.unitSeconds).toBe(2);
    expect(h.fanKwh).toBeCloseTo((4.8 * 2) / 3600, 9);
    expect(h.baselineFanKwh).toBeCloseTo(h.fanKwh, 9);
  });

  it('keeps 48 hours and 7 days, the older ones go', () => {
    const m = new EnergyMeter();
    const u = [{ ahu: 'AHU-01', fanPct: 50, fanKw: null, coolingKw: null }];
    for (let hour = 0; hour < 24 * 9; hour++) {
      m.add('g', T0 + hour * HOUR_MS, u, ratings);
      m.add('g', T0 + hour * HOUR_MS + 2000, u, ratings);
    }
    const { hours, days } = m.report();
    expect(hours).toHaveLength(48);
    expect(days).toHaveLength(7);
    expect(hours.at(-1)!.startMs).toBe(T0 + (24 * 9 - 1) * HOUR_MS);
  });

  it('drops the hours it counted under a clock that was ahead once the clock is set back', () => {
    const m = new EnergyMeter();
    const u = [{ ahu: 'AHU-01', fanPct: 50, fanKw: null, coolingKw: null }];
    const ahead = T0 + 30 * 24 * HOUR_MS;
    m.add('g', ahead, u, ratings);
    m.add('g', ahead + 2000, u, ratings);
    m.add('g', T0, u, ratings);
    m.add('g', T0 + 2000, u, ratings);
    const { hours, days } = m.report();
    expect(hours.map((h) => h.startMs)).toEqual([T0]);
    expect(days.map((d) => d.startMs)).toEqual([T0]);
    expect(hours[0]!.unitSeconds).toBe(2);
  });
});
