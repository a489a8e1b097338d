// The energy bound of the control hall (bench/lib/control-bound.ts): the fan speeds it reports are a
// real operating point of the simulator that holds the limit, and a tight one; what cannot be held is
// reported as such; the day's trade between fans and total moves the way its price says.
import { describe, expect, it } from 'vitest';
import { boundTable, commandAll, dayBound, steadyFans } from '../../bench/lib/control-bound.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { ThermalModel } from '../../firmware-sim/thermal/model.ts';

const site = generateSite(demoShape);

/** The hottest top inlet of a fresh hall at `load`, every unit on `fans` and `supplyC`, after 2 h. */
function hottestTop(load: number, supplyC: number, fans: readonly number[]): number {
  const m = new ThermalModel(site, { seed: 1, profile: 'constant' });
  m.setProfile('constant', load);
  commandAll(m, site, fans, supplyC);
  for (let s = 0; s < 7200; s += 15) m.step(15);
  return Math.max(...site.racks.map((r) => m.readRack(r.id).inletTopC));
}

describe('control-hall energy bound', () => {
  it('reports fan speeds that hold the limit in a fresh hall, and that cannot all slow by 2 %', () => {
    const p = steadyFans(1, 18, 26.6, { site });
    expect(Number.isFinite(p.fanKw)).toBe(true);
    expect(p.topC).toBeLessThanOrEqual(26.6);
    expect(hottestTop(1, 18, p.fanPct)).toBeLessThanOrEqual(26.6 + 1e-3);
    expect(
      hottestTop(
        1,
        18,
        p.fanPct.map((f) => Math.max(30, f - 2)),
      ),
    ).toBeGreaterThan(26.6);
    // Cheaper than every unit at the slowest common speed that holds the limit (what a hall whose
    // units all run alike could do at best).
    let lo = 30;
    let hi = 100;
    while (hi - lo > 0.5) {
      const mid = (lo + hi) / 2;
      if (
        hottestTop(
          1,
          18,
          site.airHandlers.map(() => mid),
        ) <= 26.6
      )
        hi = mid;
      else lo = mid;
    }
    const uniform = hi;
    const uniformKw = site.airHandlers.reduce((s, a) => s + a.fanMaxKw * (uniform / 100) ** 3, 0);
    expect(p.fanKw).toBeLessThan(0.95 * uniformKw);
    expect(p.bottomC).toBeGreaterThanOrEqual(18);
  });

  it('says Infinity where even full fans cannot hold the limit', () => {
    const p = steadyFans(1, 22, 26.6, { site });
    expect(p.fanKw).toBe(Number.POSITIVE_INFINITY);
    expect(p.topC).toBeGreaterThan(26.6);
  });

  it('trades fans for plant as the price of fan energy says', () => {
    const t = boundTable(27, [0.7, 1], [18, 20], { site });
    const held = dayBound(t, 0, 18);
    const cheapest = dayBound(t, 0);
    const fansDear = dayBound(t, 100);
    expect(held.supplyByHour.every((s) => s === 18)).toBe(true);
    expect(cheapest.totalKwh).toBeLessThanOrEqual(held.totalKwh);
    // Warmer supply air at some hours: less plant, more fans.
    expect(cheapest.supplyByHour).toContain(20);
    expect(cheapest.plantKwh).toBeLessThan(held.plantKwh);
    expect(cheapest.fanKwh).toBeGreaterThan(held.fanKwh);
    expect(fansDear.fanKwh).toBeLessThanOrEqual(cheapest.fanKwh);
  });
});
