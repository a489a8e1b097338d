// The thermal model against hand calculations (docs/thermal-model.md): a one-rack, one-unit room
// whose steady state is worked out on paper, energy conservation in the demo hall, and the
// responses a controls engineer expects — less airflow or a tripped unit warms the inlets, a
// load step raises them, the daily profile moves the IT load.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import {
  AIR_RHO_CP,
  dailyLoadFactor,
  relativeHumidity,
  ThermalModel,
} from '../../firmware-sim/thermal/model.ts';
import { oneRackRoom, settle } from '../support/lab-room.ts';

describe('thermal model', () => {
  it('reaches the steady state worked out by hand for one rack and one unit', () => {
    const m = new ThermalModel(oneRackRoom(), { seed: 1, profile: 'constant' });
    settle(m);
    // By hand: cold air offered C = 2.0 m³/s (the only unit, fans 100 %), rack draws Q = 0.8 m³/s,
    // supply ratio s = 2.5; recirculation f = 1 − 0.95·(1 − e^(−2.5/0.8)) = 0.09174.
    // ΔT over the servers = 10 kW / (1.206 · 0.8) = 10.365 K; supply = setpoint = 18 °C.
    // inlet = 18 + f/(1−f)·ΔT = 19.047 °C; exhaust = 29.412 °C;
    // return = supply + IT / (ρcp · Q_ahu) = 18 + 10 / 2.412 = 22.146 °C; cooling = IT = 10 kW.
    expect(m.rackInletC('R1')).toBeCloseTo(19.047, 2);
    const a = m.ahu('A1');
    expect(a.supplyC).toBeCloseTo(18, 3);
    expect(a.returnC).toBeCloseTo(22.146, 2);
    expect(a.coolingKw).toBeCloseTo(10, 2);
    expect(a.cwValvePct).toBeCloseTo(25, 1); // 10 of 40 kW
    expect(a.fanKw).toBeCloseTo(1.5, 6);
    const c = m.readRack('R1');
    expect(c.inletTopC).toBeGreaterThan(c.inletMiddleC);
    expect(c.inletBottomC).toBeLessThan(c.inletMiddleC);
    expect((c.inletTopC + c.inletBottomC) / 2).toBeCloseTo(c.inletMiddleC, 6);
    expect(c.subfloorPa).toBeCloseTo(12 * 2.0, 6);
    expect(c.relativeHumidityPct).toBeCloseTo(relativeHumidity(19.047, 8), 1);
  });

  it('follows the fan affinity law and warms the inlet when airflow is cut', () => {
    const m = new ThermalModel(oneRackRoom(), { seed: 1, profile: 'constant' });
    settle(m);
    const before = m.rackInletC('R1');
    m.setAhuCommand('A1', { running: true, fanPct: 50, supplySetpointC: 18 });
    settle(m);
    // fan power ∝ speed³: 1.5 kW × 0.5³
    expect(m.ahu('A1').fanKw).toBeCloseTo(0.1875, 4);
    // C = 1.0 m³/s, s = 1.25: f = 1 − 0.95·(1 − e^(−1.25/0.8)) = 0.24913;
    // inlet = 18 + 0.24913/0.75087 · 10.365 = 21.439 °C
    expect(m.rackInletC('R1')).toBeCloseTo(21.439, 2);
    expect(m.rackInletC('R1')).toBeGreaterThan(before + 2);
    // energy still balances: the coil removes what the servers put in
    expect(m.ahu('A1').coolingKw).toBeCloseTo(10, 2);
  });

  it('a unit short of capacity lets its supply air and the inlets climb', () => {
    const m = new ThermalModel(oneRackRoom({ capacityKw: 6 }), { seed: 1, profile: 'constant' });
    settle(m, 600);
    const inlet10min = m.rackInletC('R1');
    settle(m, 1800);
    expect(m.ahu('A1').cwValvePct).toBeCloseTo(100, 6);
    expect(m.ahu('A1').supplyC).toBeGreaterThan(20);
    expect(m.rackInletC('R1')).toBeGreaterThan(inlet10min + 2);
  });

  it('conserves energy in the demo hall: cooling equals IT load at steady state', () => {
    const site = generateSite(demoShape);
    const m = new ThermalModel(site, { seed: 1, profile: 'constant' });
    settle(m, 7200);
    const t = m.totals();
    expect(t.itKw).toBeCloseTo(
      site.racks.reduce((s, r) => s + r.itLoadKw, 0),
      6,
    );
    expect(Math.abs(t.coolingKw - t.itKw) / t.itKw).toBeLessThan(0.001);
    // on local control (18 °C supply, fans 100 %) every inlet is in the ASHRAE recommended range
    for (const r of site.racks) {
      expect(m.rackInletC(r.id)).toBeGreaterThan(18);
      expect(m.readRack(r.id).inletTopC).toBeLessThan(27);
    }
    expect(t.fanKwh).toBeGreaterThan(0);
    m.resetEnergy();
    expect(m.totals().fanKwh).toBe(0);
  });

  it('inlets near a tripped unit rise more than those far from it', () => {
    const site = generateSite(demoShape);
    const m = new ThermalModel(site, { seed: 1, profile: 'constant' });
    settle(m);
    const tripped = site.airHandlers[2]!;
    const dist = (r: { xM: number; yM: number }) => Math.hypot(r.xM - tripped.xM, r.yM - tripped.yM);
    const byDistance = [...site.racks].sort((a, b) => dist(a) - dist(b));
    const near = byDistance[0]!;
    const far = byDistance.at(-1)!;
    const nearBefore = m.rackInletC(near.id);
    const farBefore = m.rackInletC(far.id);
    m.setAhuCommand(tripped.id, { running: false, fanPct: 0, supplySetpointC: 18 });
    settle(m);
    expect(m.ahu(tripped.id).fanPct).toBeLessThan(0.01);
    expect(m.ahu(tripped.id).coolingKw).toBeCloseTo(0, 3);
    const nearRise = m.rackInletC(near.id) - nearBefore;
    const farRise = m.rackInletC(far.id) - farBefore;
    expect(nearRise).toBeGreaterThan(0.5);
    expect(nearRise).toBeGreaterThan(farRise);
  });

  it('a heat-load step raises inlets and cooling; the daily profile moves IT load between 70 and 100 %', () => {
    const site = generateSite(demoShape);
    const m = new ThermalModel(site, { seed: 1, profile: 'constant' });
    settle(m);
    const it0 = m.totals().itKw;
    const inlet0 = m.rackInletC(site.racks[0]!.id);
    m.setLoadStep('*', 1.3);
    settle(m);
    expect(m.totals().itKw).toBeCloseTo(it0 * 1.3, 6);
    expect(m.totals().coolingKw).toBeCloseTo(it0 * 1.3, 0);
    expect(m.rackInletC(site.racks[0]!.id)).toBeGreaterThan(inlet0);
    expect(() => m.setLoadStep('nope', 2)).toThrow(/unknown rack/);

    expect(dailyLoadFactor(15)).toBeCloseTo(1, 9);
    expect(dailyLoadFactor(3)).toBeCloseTo(0.7, 9);
    const d = new ThermalModel(site, { seed: 1, profile: 'daily', startHourOfDay: 3 });
    d.step(1);
    expect(d.totals().itKw).toBeCloseTo(it0 * dailyLoadFactor(3 + 1 / 3600), 3);
    for (let t = 0; t < 12 * 3600; t += 60) d.step(60);
    expect(d.hourOfDay()).toBeCloseTo(15 + 1 / 3600, 6);
    expect(d.totals().itKw).toBeCloseTo(it0, 2);
  });

  it('is deterministic for a seed and refuses unknown ids', () => {
    const site = generateSite(demoShape);
    const a = new ThermalModel(site, { seed: 5, profile: 'daily' });
    const b = new ThermalModel(site, { seed: 5, profile: 'daily' });
    for (let i = 0; i < 100; i++) {
      a.step(5);
      b.step(5);
    }
    for (const r of site.racks) expect(a.readRack(r.id)).toEqual(b.readRack(r.id));
    expect(() => a.readRack('R-none')).toThrow(/unknown rack/);
    expect(() => a.ahu('AHU-99')).toThrow(/unknown air handler/);
    expect(AIR_RHO_CP).toBeCloseTo(1.2 * 1.005, 6);
  });
});
