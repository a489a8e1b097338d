// More IT heat reaches the units' return air at once and the rack inlets only after their mixing
// lag and the next sensor report. The law answers a jump of the coils' air temperature rise
// (return − supply) with that share more airflow at once (`coilLoad`); a slow drift, a fall, a
// unit that stops and a unit without return air never feed forward. In the hall, the +30 % step
// peaks lower with it than without.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { DEFAULT_TUNING } from '../../src/config/tuning-schema.ts';
import {
  type GroupControlInputs,
  type GroupControlState,
  groupControlConfig,
  stepGroup,
  type UnitInput,
} from '../../src/control/law/group-controller.ts';
import { ControlHall } from '../support/control-hall.ts';
import { stepsOf } from '../support/law-steps.ts';

const FED = 'coil load rose: demand feed-forward';
const site = generateSite(demoShape);
const cfg = groupControlConfig(site, 'zone-2');
// The inlet at the default target: the PI holds the demand where the units run (50 %).
const view = {
  verdict: 'ok' as const,
  inletMaxC: DEFAULT_TUNING.inletTargetC,
  hottestRack: null,
  dewPointC: 8,
};
const unitsAt = (returnC: number, status: UnitInput['status'] = 'available'): UnitInput[] =>
  cfg.ahus.map((id, i) => ({
    id,
    status: i === 0 ? status : 'available',
    read: { fanPct: 50, supplySetpointC: 18 },
    air: { returnC, supplyC: 18 },
  }));

const run = (n: number, inp: Omit<GroupControlInputs, 'dtS'>, s: GroupControlState | null) =>
  stepsOf(cfg, n, inp, s);

describe('coil-load feed-forward (the law)', () => {
  it('a jump of the coils’ rise raises the demand at once by the same share', () => {
    const settled = run(600, { view, units: unitsAt(26) }, null);
    const d0 = settled.state.demandPct;
    expect(d0).toBeCloseTo(50, 6);
    // 8 K → 10.4 K: +30 % heat at the same airflow.
    const next = stepGroup(cfg, { view, units: unitsAt(28.4), dtS: 1 }, settled.state);
    expect(next.reasons).toContain(FED);
    expect(next.state.demandPct).toBeCloseTo(d0 * 1.3, 6);
    // Commands still move at the safety layer's up-rate.
    for (const a of cfg.ahus)
      expect(next.commands[a]!.fanPct - settled.commands[a]!.fanPct).toBeLessThanOrEqual(
        DEFAULT_TUNING.fan.rampUpPctPerS + 1e-9,
      );
    // The jump is answered once; the rise staying there is not a second step.
    const again = stepGroup(cfg, { view, units: unitsAt(28.4), dtS: 1 }, next.state);
    expect(again.reasons).not.toContain(FED);
  });

  it('a slow rise, a fall and a unit without return air never feed forward', () => {
    let out = run(600, { view, units: unitsAt(26) }, null);
    let fed = 0;
    // The same +30 % over 20 minutes: the filter follows it.
    for (let i = 1; i <= 1200; i++) {
      out = stepGroup(cfg, { view, units: unitsAt(26 + (2.4 * i) / 1200), dtS: 1 }, out.state);
      if (out.reasons.includes(FED)) fed++;
    }
    const fall = stepGroup(cfg, { view, units: unitsAt(22), dtS: 1 }, out.state);
    if (fall.reasons.includes(FED)) fed++;
    const blindUnits = cfg.ahus.map((id) => ({
      id,
      status: 'available' as const,
      read: { fanPct: 50, supplySetpointC: 18 },
      air: { returnC: Number.NaN, supplyC: 18 },
    }));
    const none = stepGroup(cfg, { view, units: blindUnits, dtS: 1 }, out.state);
    if (none.reasons.includes(FED)) fed++;
    expect(fed).toBe(0);
    expect(none.state.coilRiseK).toBe(out.state.coilRiseK);
  });

  it('a broken probe on one unit (a "no data" code, −273, a rise no coil makes) neither feeds forward nor moves the filter', () => {
    const settled = run(600, { view, units: unitsAt(26) }, null);
    for (const bad of [
      { returnC: 3276.7, supplyC: 18 },
      { returnC: -273.1, supplyC: 18 },
      { returnC: 26, supplyC: -273.1 },
      { returnC: 65, supplyC: 12 },
      { returnC: Number.POSITIVE_INFINITY, supplyC: 18 },
    ]) {
      const units = unitsAt(26).map((u, i) => (i === 0 ? { ...u, air: bad } : u));
      const out = stepGroup(cfg, { view, units, dtS: 1 }, settled.state);
      expect(out.reasons).not.toContain(FED);
      expect(out.state.coilRiseK).toBeCloseTo(settled.state.coilRiseK!, 9);
    }
  });

  it('a unit that trips is the running-units feed-forward’s event, not a load step as well', () => {
    const settled = run(600, { view, units: unitsAt(26) }, null);
    // The others' return air rises as they carry the tripped unit's racks.
    const next = stepGroup(cfg, { view, units: unitsAt(29, 'tripped'), dtS: 1 }, settled.state);
    expect(next.reasons).not.toContain(FED);
    expect(next.reasons.some((r) => r.includes('demand feed-forward'))).toBe(true);
  });

  it('gain 0 switches it off', () => {
    const off = groupControlConfig(site, 'zone-2', { tuning: { coilLoad: { feedForwardGain: 0 } } });
    let out = stepGroup(off, { view, units: unitsAt(26), dtS: 1 }, null);
    for (let i = 0; i < 600; i++) out = stepGroup(off, { view, units: unitsAt(26), dtS: 1 }, out.state);
    const next = stepGroup(off, { view, units: unitsAt(28.4), dtS: 1 }, out.state);
    expect(next.reasons).not.toContain(FED);
  });
});

describe('coil-load feed-forward (the hall)', () => {
  const HOUR = 3600;
  const stepPeak = (feedForwardGain: number) => {
    const h = new ControlHall({
      control: 'law',
      tuning: { inletTargetC: 25.9, fan: { kpPctPerK: 8, kiPctPerKS: 0.16 }, coilLoad: { feedForwardGain } },
    });
    h.run(HOUR);
    h.resetInletStats();
    h.model.setLoadStep('*', 1.3);
    h.run(HOUR);
    return h.maxInletC;
  };

  it('takes a +30 % IT load step with a lower peak inlet than the PI alone', () => {
    const without = stepPeak(0);
    const withFf = stepPeak(DEFAULT_TUNING.coilLoad.feedForwardGain);
    process.stdout.write(`+30 % step peak: ${without.toFixed(2)} °C without, ${withFf.toFixed(2)} °C with\n`);
    expect(withFf).toBeLessThan(without - 0.3);
  });
});
