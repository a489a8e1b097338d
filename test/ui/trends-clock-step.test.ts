// Trends and energy across a wall-clock step: only the wall clock moves (NTP stepping a node that
// booted a day off), the monotonic clock does not. History stays, no day of empty slots appears, no
// hour of energy is invented or dropped; the labels follow the wall clock.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DAY_MS, EnergyMeter, HOUR_MS, type UnitRating } from '../../src/api/energy.ts';
import { GROUP_TRENDS, SampleClock, TrendStore } from '../../src/api/trends.ts';
import { loadSite } from '../../src/config/load-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { waitFor } from '../helpers.ts';
import { FakeCluster, fakeNode, type UnitWrite } from '../support/fake-cluster.ts';

const site: Site = await loadSite('config/demo-site.yaml');
const open: { close(): Promise<unknown> }[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const n of open.splice(0).reverse()) await n.close();
});

interface Trend {
  groups: { group: string; t: number[]; fanPct: (number | null)[] }[];
}
interface Energy {
  hours: { startMs: number; unitSeconds: number }[];
  days: { startMs: number; unitSeconds: number }[];
}

describe('trends and energy across a wall-clock step', () => {
  it('keep their history and count only real seconds when the wall clock steps a day and back', async () => {
    const cluster = new FakeCluster({ 'zone-1': ['node-a', 41] });
    cluster.members.push({ node: 'node-a', apiUrl: 'http://127.0.0.1:8101', startedAtMs: 1 });
    const written: UnitWrite[] = [];
    const a = await fakeNode(cluster, 'node-a', site, written);
    open.push(a);
    await a.app.ready();
    const realNow = Date.now.bind(Date);
    const trend = async (range: 'recent' | 'day') =>
      ((await a.app.inject(`/api/v1/trends?group=zone-1&range=${range}`)).json() as Trend).groups[0]!;
    const filled = (g: { fanPct: (number | null)[] }) => g.fanPct.filter((x) => x !== null).length;
    const energy = async () => (await a.app.inject('/api/v1/energy')).json() as Energy;
    const unitSeconds = (e: Energy) => e.hours.reduce((s, h) => s + h.unitSeconds, 0);
    // Sampled until a few steps of fan figures and some energy are there.
    const before = await waitFor(
      'three recent steps and some energy',
      async () => {
        const r = await trend('recent');
        return filled(r) >= 3 && unitSeconds(await energy()) > 0 ? r : null;
      },
      { timeoutMs: 15_000 },
    );
    const dayBefore = filled(await trend('day'));

    // The wall clock steps a day ahead.
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + DAY_MS);
    const ahead = await waitFor(
      'a sample after the step',
      async () => {
        const r = await trend('recent');
        return filled(r) > filled(before) ? r : null;
      },
      { timeoutMs: 15_000 },
    );
    // What was sampled before the step is still there, shown in the new wall time.
    expect(ahead.t.at(-1)!).toBeGreaterThan(realNow() + DAY_MS - 10_000);
    expect(ahead.t.at(-1)!).toBeLessThanOrEqual(realNow() + DAY_MS);
    expect(ahead.t.length - filled(ahead)).toBeLessThanOrEqual(2);
    const day = await trend('day');
    // Not a day of empty minutes between the old samples and the new.
    expect(day.t.length).toBeLessThanOrEqual(3);
    expect(filled(day)).toBeGreaterThanOrEqual(dayBefore);
    const e1 = await energy();
    // A day's step counted as a few seconds, never as a day of energy.
    expect(unitSeconds(e1)).toBeLessThan(3_600);
    expect(e1.hours.at(-1)!.startMs % HOUR_MS).toBe(0);

    // And back: nothing sampled meanwhile is dropped.
    vi.mocked(Date.now).mockImplementation(realNow);
    const back = await waitFor(
      'a sample after the step back',
      async () => {
        const r = await trend('recent');
        return filled(r) > filled(ahead) ? r : null;
      },
      { timeoutMs: 15_000 },
    );
    expect(back.t.at(-1)!).toBeLessThanOrEqual(realNow());
    expect(filled(await trend('day'))).toBeGreaterThanOrEqual(filled(day));
    const e2 = await energy();
    expect(unitSeconds(e2)).toBeGreaterThanOrEqual(unitSeconds(e1));
    expect(e2.days.reduce((s, d) => s + d.unitSeconds, 0)).toBeCloseTo(unitSeconds(e2), 6);
  }, 60_000);
});

describe('the sampler clock, rings and meter', () => {
  const T0 = Date.UTC(2026, 11, 4, 0, 0, 0);
  const rating: UnitRating = { fanMaxKw: 4.8, localFanPct: 100 };
  const u = [{ ahu: 'AHU-01', fanPct: 50, fanKw: null, coolingKw: null }];

  it('labels steps with the wall clock now, in whole steps, and takes sinceMs as wall time', () => {
    let wall = T0;
    let mono = 0;
    const clock = new SampleClock(
      () => wall,
      () => mono,
    );
    const s = new TrendStore(GROUP_TRENDS, ['g']);
    const m = new EnergyMeter();
    for (; mono < 10 * 60_000; mono += 2000, wall += 2000) {
      s.add('g', clock.now(), { inletMaxC: 22, fanPct: 40 });
      m.add('g', clock.now(), u, () => rating);
    }
    // NTP steps the wall clock back 3 h 10 min and 0.5 s (a node that booted ahead).
    wall -= 3 * HOUR_MS + 10 * 60_000 + 500;
    const off = clock.wallOffsetMs();
    mono -= 1000; // read within the last sample's step: the ring's 300 steps end with it
    const r = s.read('g', 'recent', 0, clock.now(), off)!;
    expect(r.t).toHaveLength(300);
    expect(r.t.every((t) => t % 2000 === 0)).toBe(true);
    expect(r.t.at(-1)!).toBe(T0 + 10 * 60_000 - 2000 - 3 * HOUR_MS - 10 * 60_000);
    expect(s.read('g', 'recent', r.t.at(-2)!, clock.now(), off)!.t).toEqual([r.t.at(-1)]);
    const day = s.read('g', 'day', 0, clock.now(), off)!;
    expect(day.t).toHaveLength(10);
    expect(day.t.every((t) => t % 60_000 === 0)).toBe(true);
    // The energy: ten minutes counted once, in an hour three hours before the wrong clock's.
    const { hours, days } = m.report(off);
    expect(hours).toHaveLength(1);
    expect(hours[0]!.startMs).toBe(T0 - 3 * HOUR_MS);
    expect(hours[0]!.unitSeconds).toBeCloseTo(598, 6);
    expect(days.map((d) => d.startMs)).toEqual([T0 - DAY_MS]);
  });
});
