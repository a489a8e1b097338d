// The tuned conventional hall the control bench compares coolctl with (test/support/control-hall.ts
// `TUNED_BASELINE`, found by bench/control-baseline.ts): every unit alone, fan speed by a PI on its
// own return air, supply air fixed. Asserted: it is as economical as the limits allow — it keeps every
// inlet in 18–27 °C through the day and the fault runs, and 0.2 K warmer return air would not.
import { describe, expect, it } from 'vitest';
import { evaluateBaseline, INLET_MAX_C } from '../../bench/lib/control-baseline-search.ts';
import { ControlHall, TUNED_BASELINE } from '../support/control-hall.ts';

const HOUR = 3600;

describe('tuned conventional baseline', () => {
  it('keeps every inlet in 18–27 °C over the daily profile, a +30 % load step at full load and at 03:00 and a trip, without hunting', () => {
    const r = evaluateBaseline(TUNED_BASELINE);
    process.stdout.write(
      `tuned baseline: hottest ${r.maxInletC.toFixed(2)} °C, coolest ${r.minInletC.toFixed(2)} °C, fans ${r.fanKwh.toFixed(1)} kWh/day, ${r.reversals} reversals\n`,
    );
    expect(r.ok).toBe(true);
  });

  it('is tuned to the edge, not with room to spare: 0.2 K warmer return air takes an inlet over 27 °C', () => {
    const r = evaluateBaseline({ ...TUNED_BASELINE, returnSetpointC: TUNED_BASELINE.returnSetpointC + 0.2 });
    expect(r.maxInletC).toBeGreaterThan(INLET_MAX_C);
  });

  it('each unit follows its own return air: more IT load, faster fans; the supply setpoint stays fixed', () => {
    const h = new ControlHall({ control: 'tuned' });
    h.run(HOUR);
    const before = h.site.airHandlers.map((a) => h.command(a.id).fanPct);
    h.model.setLoadStep('*', 1.2);
    h.run(HOUR);
    h.site.airHandlers.forEach((a, i) => {
      expect(h.command(a.id).fanPct).toBeGreaterThanOrEqual(before[i]!);
      expect(h.command(a.id).supplySetpointC).toBe(TUNED_BASELINE.supplySetpointC);
      expect(Math.abs(h.model.ahu(a.id).returnC - TUNED_BASELINE.returnSetpointC)).toBeLessThan(0.5);
    });
    expect(h.site.airHandlers.some((a, i) => h.command(a.id).fanPct > before[i]! + 2)).toBe(true);
  });
});
