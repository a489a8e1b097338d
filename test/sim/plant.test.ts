// The chilled-water plant against the hand calculation in docs/thermal-model.md (one unit, one
// rack), the published curves at their reference points, the stated treatment outside the curves'
// range, and the behaviour the supply-setpoint reset relies on: warmer supply air, less plant energy.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { ThermalModel } from '../../firmware-sim/thermal/model.ts';
import {
  CARRIER_19XR,
  type ChillerCurve,
  chillerPower,
  chwSupplyForC,
  DEFAULT_PLANT,
  DOE2_CENTRIFUGAL,
  plantPoint,
  wetBulbC,
} from '../../firmware-sim/thermal/plant.ts';
import { oneRackRoom, settle } from '../support/lab-room.ts';

const steadyWetBulb = (meanC: number) => ({ wetBulb: { meanC, swingK: 0, peakHour: 15 } });

function capFT(c: ChillerCurve, x: number, y: number): number {
  const k = c.capFT;
  return k[0] + k[1] * x + k[2] * x * x + k[3] * y + k[4] * y * y + k[5] * x * y;
}

describe('chilled-water plant', () => {
  it('reproduces the one-unit case worked out by hand', () => {
    const m = new ThermalModel(oneRackRoom(), { seed: 1, profile: 'constant', plant: steadyWetBulb(18) });
    settle(m);
    // Case A (docs/thermal-model.md): setpoint 18 °C, wet bulb 18 °C, 10 kW on a 40 kW chiller.
    // CHW 15/21 °C, condenser 20 °C, economiser outlet 22 °C ≥ 21 − 1: mechanical. Curve at
    // (10 °C clamped, 20 °C): CAPFT 1.06077, EIRFT 0.80871; PLR 10/42.431 = 0.23568, EIRFPLR 0.19421;
    // chiller 42.431/5.42 × 0.80871 × 0.19421 = 1.2295 kW; pumps 0.300; tower 0.015 × 11.2295 = 0.1684.
    const a = m.plant();
    expect(a.mode).toBe('mechanical');
    expect(a.chwSupplyC).toBe(15);
    expect(a.chwReturnC).toBe(21);
    expect(a.condenserC).toBe(20);
    expect(a.economiserOutletC).toBe(22);
    expect(a.plr).toBeCloseTo(0.23568, 4);
    expect(a.chillerKw).toBeCloseTo(1.2295, 3);
    expect(a.pumpKw).toBeCloseTo(0.3, 3);
    expect(a.towerFanKw).toBeCloseTo(0.1684, 3);
    expect(a.plantKw).toBeCloseTo(1.698, 3);
    expect(m.totals().plantKw).toBeCloseTo(1.698, 3);
    m.resetEnergy();
    settle(m, 3600);
    expect(m.totals().plantKwh).toBeCloseTo(1.698, 3);
    expect(m.totals().chillerKwh).toBeCloseTo(1.2295, 3);
    expect(m.totals().economiserHours).toBe(0);

    // Case B: setpoint 22 °C. CHW 19/25 °C; outlet 22 °C: partial, share (25 − 22)/(25 − 19) = 0.5;
    // chiller 5 kW, PLR 0.11784 < 0.19: cycles 0.62021 at EIRFPLR(0.19) = 0.17345 → 0.6811 kW;
    // tower 0.015 × 10.6811 = 0.1602; plant 1.1413 kW, a third less.
    m.setAhuCommand('A1', { running: true, fanPct: 100, supplySetpointC: 22 });
    settle(m);
    const b = m.plant();
    expect(b.mode).toBe('partial');
    expect(b.chwSupplyC).toBe(19);
    expect(b.freeCoolingKw).toBeCloseTo(5, 2);
    expect(b.plr).toBeCloseTo(0.11784, 4);
    expect(b.chillerKw).toBeCloseTo(0.6811, 3);
    expect(b.plantKw).toBeCloseTo(1.1413, 3);
    m.resetEnergy();
    settle(m, 3600);
    expect(m.totals().plantKwh).toBeCloseTo(1.1413, 3);
    expect(m.totals().economiserHours).toBeCloseTo(1, 6);
    expect(m.totals().freeCoolingKwh).toBeCloseTo(5, 2);
    // the coil duty the air side meters is unchanged: only the plant earns the warmer supply
    expect(m.totals().coolingKw).toBeCloseTo(10, 2);

    // Case C: wet bulb 14 °C, setpoint 22 °C: outlet 18 °C ≤ 19 °C, free cooling; pumps and tower only.
    const c = new ThermalModel(oneRackRoom(), { seed: 1, profile: 'constant', plant: steadyWetBulb(14) });
    c.setAhuCommand('A1', { running: true, fanPct: 100, supplySetpointC: 22 });
    settle(c);
    expect(c.plant().mode).toBe('free');
    expect(c.plant().chillerKw).toBe(0);
    expect(c.plant().plantKw).toBeCloseTo(0.45, 3);
  });

  it('uses the published curves: about 1 at their reference points, clamped outside their range', () => {
    expect(capFT(CARRIER_19XR, 5.56, 21.11)).toBeCloseTo(1, 1);
    expect(capFT(DOE2_CENTRIFUGAL, 6.67, 29.4)).toBeCloseTo(1, 2);
    // DOE-2 at its reference point, full load: COP 5.50
    expect(chillerPower(1000, 6.67, 29.4, DOE2_CENTRIFUGAL, 1000).kw).toBeCloseTo(1000 / 5.5, -1);
    // warmer chilled water saves within the range (≈ 4 %/K for the 19XR), nothing beyond 10 °C
    const at = (t: number) => chillerPower(300, t, 20, CARRIER_19XR, 742).kw;
    expect(at(7) / at(6)).toBeLessThan(0.97);
    expect(at(15)).toBe(at(10));
    expect(at(3)).toBe(at(5.56));
    // cooler condenser water saves, down to the curve's 11.25 °C
    const cond = (t: number) => chillerPower(300, 8, t, CARRIER_19XR, 742).kw;
    expect(cond(18)).toBeLessThan(cond(22));
    expect(cond(5)).toBe(cond(11.25));
    // cycling below PLRmin: power proportional to load
    const low = (q: number) => chillerPower(q, 8, 20, CARRIER_19XR, 742).kw;
    expect(low(50) / low(100)).toBeCloseTo(0.5, 9);
    expect(chillerPower(0, 8, 20, CARRIER_19XR, 742).kw).toBe(0);
  });

  it('sets chilled water from the coldest running setpoint, bounded, and follows the wet-bulb day', () => {
    expect(chwSupplyForC([21, 18, 24], DEFAULT_PLANT)).toBe(15);
    expect(chwSupplyForC([7], DEFAULT_PLANT)).toBe(5.56);
    expect(chwSupplyForC([30], DEFAULT_PLANT)).toBe(22);
    expect(wetBulbC(15, DEFAULT_PLANT.wetBulb)).toBeCloseTo(20, 9);
    expect(wetBulbC(3, DEFAULT_PLANT.wetBulb)).toBeCloseTo(14, 9);
    expect(plantPoint(0, 15, 18, DEFAULT_PLANT, 100).plantKw).toBe(0);
    // a tripped unit's setpoint no longer holds the chilled water down
    const m = new ThermalModel(oneRackRoom(), { seed: 1, profile: 'constant', plant: steadyWetBulb(18) });
    m.setAhuCommand('A1', { running: false, fanPct: 0, supplySetpointC: 16 });
    settle(m, 60);
    expect(m.plant().chwSupplyC).toBe(22);
  });

  it('warmer supply air lowers plant energy over a summer day in the demo hall', () => {
    const site = generateSite(demoShape);
    const day = (setpointC: number) => {
      const m = new ThermalModel(site, { seed: 1, profile: 'daily', startHourOfDay: 0 });
      for (const a of site.airHandlers)
        m.setAhuCommand(a.id, { running: true, fanPct: 100, supplySetpointC: setpointC });
      for (let t = 0; t < 1800; t += 10) m.step(10);
      m.resetEnergy();
      for (let t = 0; t < 24 * 3600; t += 30) m.step(30);
      return m.totals();
    };
    const cold = day(18);
    const warm = day(21);
    // the heat removed is the same; the plant's electricity is not
    expect(warm.coolingKwh).toBeCloseTo(cold.coolingKwh, -1);
    expect(warm.plantKwh).toBeLessThan(cold.plantKwh * 0.9);
    expect(warm.economiserHours).toBeGreaterThan(cold.economiserHours);
    expect(warm.freeCoolingKwh).toBeGreaterThan(cold.freeCoolingKwh);
    expect(cold.plantKwh).toBeGreaterThan(cold.chillerKwh);
    // the hall's plant at about 375 kW of IT: tens of kW, not hundreds
    expect(cold.plantKwh / 24).toBeGreaterThan(10);
    expect(cold.plantKwh / 24).toBeLessThan(100);
  });
});
