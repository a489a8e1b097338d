// The two changes that let the law stand nearer 27 °C and stop paying the whole plant for one
// group's colder air: a neighbour's unit lost is answered with airflow at once (feed-forward, not
// the PI's slow integral), and a group keeps the hall's common supply setpoint until its own fans
// are at their top (the chilled water follows the coldest setpoint in the hall).
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
import { resetSetpoint } from '../../src/control/law/setpoint-reset.ts';
import { stepsOf } from '../support/law-steps.ts';

const site = generateSite(demoShape);
const cfg = groupControlConfig(site, 'zone-2');
const units: UnitInput[] = cfg.ahus.map((id) => ({
  id,
  status: 'available',
  read: { fanPct: 50, supplySetpointC: 18 },
}));
const view = { verdict: 'ok' as const, inletMaxC: 24, hottestRack: null, dewPointC: 8 };

const run = (n: number, inp: Omit<GroupControlInputs, 'dtS'>, s: GroupControlState | null) =>
  stepsOf(cfg, n, inp, s);

describe('a unit lost next door', () => {
  it('raises this group’s demand at once by the feed-forward per K of the neighbour’s help step', () => {
    const settled = run(600, { view, units }, null);
    const d0 = settled.state.demandPct;
    // A neighbour of two units loses one: it asks lostUnitK × 1/2 = 2 K of help in one step.
    const next = stepGroup(cfg, { view, units, dtS: 1, neighbourHelpK: 2 }, settled.state);
    const ff = DEFAULT_TUNING.help.feedForwardPctPerK;
    expect(ff).toBeGreaterThan(0);
    // Without the feed-forward the PI answers 2 K with kp × 2 = 8 % (and a little integral).
    expect(next.state.demandPct).toBeGreaterThanOrEqual(Math.min(100, d0 + ff * 2));
    expect(next.reasons).toContain('neighbour lost air: demand feed-forward');
    // The commands still move at the safety layer's up-rate, not in one jump.
    for (const a of cfg.ahus)
      expect(next.commands[a]!.fanPct - settled.commands[a]!.fanPct).toBeLessThanOrEqual(
        DEFAULT_TUNING.fan.rampUpPctPerS + 1e-9,
      );
  });

  it('a help that stays does not feed forward again, and one that creeps up never does', () => {
    const settled = run(600, { view, units }, null);
    const first = stepGroup(cfg, { view, units, dtS: 1, neighbourHelpK: 2 }, settled.state);
    const again = stepGroup(cfg, { view, units, dtS: 1, neighbourHelpK: 2 }, first.state);
    expect(again.reasons).not.toContain('neighbour lost air: demand feed-forward');
    let out = settled;
    let fed = 0;
    for (let k = 0.01; k <= 1; k += 0.01) {
      out = stepGroup(cfg, { view, units, dtS: 1, neighbourHelpK: k }, out.state);
      if (out.reasons.includes('neighbour lost air: demand feed-forward')) fed++;
    }
    expect(fed).toBe(0);
  });
});

describe('supply setpoint and the plant', () => {
  const t = DEFAULT_TUNING.setpoint;
  const base = { errorK: 0, fanMaxPct: 100, mayRaise: true, lowC: 16, highC: 24 };

  it('fans saturated high but not at their top: the group keeps the hall’s common setpoint', () => {
    const r = resetSetpoint(t.preferredMinC, t.resetPeriodS, 0, { ...base, demandPct: 95 }, t);
    expect(r.setpointC).toBe(t.preferredMinC);
    expect(r.action).toBeNull();
  });

  it('fans at their top and the inlet over target: only then under it (colder air than fans can give)', () => {
    const r = resetSetpoint(t.preferredMinC, t.resetPeriodS, 0, { ...base, demandPct: 100, errorK: 0.2 }, t);
    expect(r.setpointC).toBeCloseTo(t.preferredMinC - t.respondStepC, 9);
    expect(r.action).toBe('respond');
  });

  it('above the common setpoint the group still responds at its high mark (no plant cost there)', () => {
    const r = resetSetpoint(20, t.resetPeriodS, 0, { ...base, demandPct: 95 }, t);
    expect(r.setpointC).toBeCloseTo(20 - t.respondStepC, 9);
  });
});
