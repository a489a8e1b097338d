// The physics' true influence matrix and the layout changes that move it (docs/thermal-model.md):
// a two-unit, two-rack room worked out by hand, checked against what a supply-setpoint step
// really does to the inlets; a moved unit and a removed blanking panel change both the matrix
// and the inlets, and undoing them restores the hall exactly.
import { describe, expect, it } from 'vitest';
import { recirculation, THERMAL_PARAMS, ThermalModel } from '../../firmware-sim/thermal/model.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { labRoom, labUnit, settle } from '../support/lab-room.ts';

/** A 10 × 10 m room: A1 at (1, 5), A2 at (9, 5); racks R1 at (3, 5), R2 at (7, 5), 10 kW / 0.8 m³/s each. */
function twoByTwoRoom(): Site {
  return labRoom('two by two', [labUnit('A1', 1), labUnit('A2', 9)], { R1: 3, R2: 7 });
}

// By hand, fans 100 % (2 m³/s each), L = 6 m: A1→R1 is 2 m away, k = 1/(1 + 4/36) = 0.9; A1→R2
// 6 m, k = 0.5; local shares 0.9/1.4 and 0.5/1.4 of 70 % of 2 m³/s = 0.9 and 0.5 m³/s; the plenum
// (30 % of both units, 1.2 m³/s) splits by rack airflow, 0.3 m³/s of each unit to each rack.
// C(A1,R1) = 1.2, C(A2,R1) = 0.8, C(R1) = 2.0: supply response 0.6 and 0.4; s = 2.5, f = 0.09174,
// intake share 0.6 × 0.90826 = 0.54496 and 0.4 × 0.90826 = 0.36330.
const F_25 = 1 - (1 - 0.05) * (1 - Math.exp(-2.5 / 0.8));

describe('true influence', () => {
  it('is the share of each rack’s intake that each unit supplies, as worked out by hand', () => {
    const m = new ThermalModel(twoByTwoRoom(), { seed: 1, profile: 'constant' });
    settle(m);
    expect(F_25).toBeCloseTo(0.09174, 5);
    expect(recirculation(2.5)).toBeCloseTo(F_25, 9);
    const resp = m.trueInfluence({ measure: 'supply-response' });
    expect(resp.ahuIds).toEqual(['A1', 'A2']);
    expect(resp.rackIds).toEqual(['R1', 'R2']);
    expect(resp.rows[0]![0]).toBeCloseTo(0.6, 9);
    expect(resp.rows[1]![0]).toBeCloseTo(0.4, 9);
    expect(resp.rows[0]![1]).toBeCloseTo(0.4, 9);
    expect(resp.rows[1]![1]).toBeCloseTo(0.6, 9);
    const intake = m.trueInfluence();
    expect(intake.rows[0]![0]).toBeCloseTo(0.6 * (1 - F_25), 9);
    expect(intake.rows[0]![0]).toBeCloseTo(0.54496, 4);
    expect(intake.rows[1]![0]).toBeCloseTo(0.3633, 4);
    // design (every fan at 100 %) is where the hall already is
    expect(m.trueInfluence({ at: 'design' }).rows).toEqual(intake.rows);
  });

  it('predicts what a supply-setpoint step does to the inlets (the physics uses it)', () => {
    const m = new ThermalModel(twoByTwoRoom(), { seed: 1, profile: 'constant' });
    m.setAhuCommand('A1', { running: true, fanPct: 70, supplySetpointC: 18 });
    m.setAhuCommand('A2', { running: true, fanPct: 90, supplySetpointC: 18 });
    settle(m);
    const truth = m.trueInfluence({ measure: 'supply-response' });
    const before = [m.rackInletC('R1'), m.rackInletC('R2')];
    m.setAhuCommand('A1', { running: true, fanPct: 70, supplySetpointC: 19 });
    settle(m, 7200);
    expect(m.rackInletC('R1') - before[0]!).toBeCloseTo(truth.rows[0]![0]!, 3);
    expect(m.rackInletC('R2') - before[1]!).toBeCloseTo(truth.rows[0]![1]!, 3);
    // at unequal fans the current matrix differs from the design one: A2 blows harder
    expect(truth.rows[1]![0]!).toBeGreaterThan(
      m.trueInfluence({ at: 'design', measure: 'supply-response' }).rows[1]![0]!,
    );
  });

  it('a moved unit cools other racks: the matrix and the inlets follow, and moving it back restores both', () => {
    const m = new ThermalModel(twoByTwoRoom(), { seed: 1, profile: 'constant' });
    settle(m);
    const before = m.trueInfluence({ measure: 'supply-response' });
    const inlets = [m.rackInletC('R1'), m.rackInletC('R2')];
    m.layoutChange({ kind: 'unit-moved', ahu: 'A2', dxM: -4, dyM: 0 });
    settle(m);
    // By hand: A2 now at (5, 5), 2 m from both racks: shares 0.5/0.5, 0.7 + 0.3 = 1.0 m³/s to each.
    // C(R1) = 1.2 + 1.0 = 2.2, C(R2) = 0.8 + 1.0 = 1.8.
    const after = m.trueInfluence({ measure: 'supply-response' });
    expect(after.rows[0]![0]).toBeCloseTo(1.2 / 2.2, 9);
    expect(after.rows[1]![0]).toBeCloseTo(1.0 / 2.2, 9);
    expect(after.rows[0]![1]).toBeCloseTo(0.8 / 1.8, 9);
    expect(after.rows[1]![1]).toBeCloseTo(1.0 / 1.8, 9);
    // R2 lost cold air (s 2.5 → 2.25) and warms; R1 gained (2.75) and cools: inlet = 18 + f/(1−f)·ΔT
    const dT = 10 / (1.206 * 0.8);
    const inlet = (s: number) => 18 + (recirculation(s) / (1 - recirculation(s))) * dT;
    expect(m.rackInletC('R1')).toBeCloseTo(inlet(2.2 / 0.8), 3);
    expect(m.rackInletC('R2')).toBeCloseTo(inlet(1.8 / 0.8), 3);
    expect(m.rackInletC('R2')).toBeGreaterThan(inlets[1]! + 0.1);
    expect(m.rackInletC('R1')).toBeLessThan(inlets[0]!);
    // energy still balances
    expect(m.totals().coolingKw).toBeCloseTo(20, 2);
    m.restoreLayout({ kind: 'unit-moved', ahu: 'A2' });
    settle(m);
    expect(m.trueInfluence({ measure: 'supply-response' }).rows).toEqual(before.rows);
    expect(m.rackInletC('R2')).toBeCloseTo(inlets[1]!, 6);
  });

  it('a removed blanking panel raises the rack’s recirculation and lowers every unit’s influence on it', () => {
    const m = new ThermalModel(twoByTwoRoom(), { seed: 1, profile: 'constant' });
    settle(m);
    const before = m.trueInfluence();
    const r1 = m.rackInletC('R1');
    const r2 = m.rackInletC('R2');
    m.layoutChange({ kind: 'blanking-panel-removed', rack: 'R1' });
    settle(m);
    // By hand: f' = f + 0.15·(1 − f) = 0.22798; inlet = 18 + f'/(1 − f')·10.365 = 21.061 °C (was 19.047).
    const leak = THERMAL_PARAMS.blankingPanelLeak;
    const f2 = F_25 + leak * (1 - F_25);
    expect(f2).toBeCloseTo(0.22798, 4);
    expect(m.rackInletC('R1')).toBeCloseTo(21.061, 3);
    expect(m.rackInletC('R1')).toBeGreaterThan(r1 + 2);
    expect(m.rackInletC('R2')).toBeCloseTo(r2, 6);
    const after = m.trueInfluence();
    for (const a of [0, 1]) {
      expect(after.rows[a]![0]).toBeCloseTo(before.rows[a]![0]! * (1 - leak), 9);
      expect(after.rows[a]![1]).toBeCloseTo(before.rows[a]![1]!, 12);
    }
    // the servers still carry all their heat to the coils
    expect(m.totals().coolingKw).toBeCloseTo(20, 2);
    m.restoreLayout({ kind: 'blanking-panel-removed', rack: 'R1' });
    settle(m);
    expect(m.rackInletC('R1')).toBeCloseTo(r1, 6);
  });

  it('refuses a change it cannot make, naming why, and changes nothing', () => {
    const m = new ThermalModel(twoByTwoRoom(), { seed: 1, profile: 'constant' });
    const before = m.trueInfluence();
    expect(() => m.layoutChange({ kind: 'unit-moved', ahu: 'A9', dxM: 1, dyM: 0 })).toThrow(
      /unknown air handler "A9"/,
    );
    expect(() => m.layoutChange({ kind: 'unit-moved', ahu: 'A1', dxM: -2, dyM: 0 })).toThrow(
      /outside room r \(0…10 × 0…10 m\)/,
    );
    expect(() => m.layoutChange({ kind: 'unit-moved', ahu: 'A1', dxM: Number.NaN, dyM: 0 })).toThrow(
      /finite/,
    );
    expect(() => m.layoutChange({ kind: 'blanking-panel-removed', rack: 'R9' })).toThrow(/unknown rack "R9"/);
    expect(m.trueInfluence()).toEqual(before);
  });
});
