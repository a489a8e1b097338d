// Cases the randomized tests of the control law (law-fuzz.test.ts) found, kept as plain tests: each
// failed before its fix. What an operator would see: a setpoint under dew point + margin, a fan under
// a unit's floor, a process state peers refuse, commands frozen by one bad influence cell.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { slewOffsets, targetOffsets } from '../../src/control/law/allocation.ts';
import {
  type ControlView,
  type GroupControlInputs,
  type GroupControlState,
  groupControlConfig,
  isGroupControlState,
  stepGroup,
  type UnitInput,
} from '../../src/control/law/group-controller.ts';
import { answeredHelpK } from '../../src/control/law/help.ts';
import type { InfluenceMatrix } from '../../src/control/law/influence.ts';
import {
  enforceHardLimits,
  enforceSafety,
  isInletHistory,
  recordInlet,
} from '../../src/control/law/safety.ts';
import { stepsOf } from '../support/law-steps.ts';

const site = generateSite(demoShape);
const cfg = groupControlConfig(site, 'zone-1');
const [A, B] = cfg.ahus as [string, string];

const view = (v: Partial<ControlView> = {}): ControlView => ({
  verdict: 'ok',
  inletMaxC: 25,
  hottestRack: 'RA-04',
  dewPointC: 8,
  ...v,
});
const units = (read: UnitInput['read'] = { fanPct: 60, supplySetpointC: 18 }): UnitInput[] =>
  cfg.ahus.map((id) => ({ id, status: 'available', read }));
const settled = (): GroupControlState => stepsOf(cfg, 30, { view: view(), units: units() }, null).state;
const step = (inp: Partial<GroupControlInputs>, s: GroupControlState | null = settled()) =>
  stepGroup(cfg, { view: view(), units: units(), dtS: 1, ...inp }, s);

describe('commands stay on the right side of their floors after rounding to 0.1', () => {
  it('a supply setpoint is never rounded under dew point + margin (dew 14.43 °C: 16.5, not 16.4)', () => {
    // Dew point 14.43 + margin 2 = 16.43 °C: rounding to the units' 0.1 gave 16.4, under it.
    const at = { fanPct: 60, supplySetpointC: 16.4 };
    const s: GroupControlState = { ...settled(), setpointC: 16.4, last: { [A]: at, [B]: at } };
    const out = step({ view: view({ dewPointC: 14.43 }) }, s);
    for (const a of cfg.ahus) expect(out.commands[a]!.supplySetpointC).toBeGreaterThanOrEqual(16.43);
  });

  it("a fan is never rounded under a unit's own floor (33.33 %: 33.4, not 33.3)", () => {
    const res = enforceSafety(
      { fanPct: 20, supplySetpointC: 18 },
      { fanPct: 40, supplySetpointC: 18 },
      { fanMinPct: 33.33, setpointFloorC: 14, fanUpPctPerS: 6, fanDownPctPerS: 0.5, setpointRateCPerS: 0.1 },
      { dtS: 1, hot: false, rateLimit: false },
    );
    expect(res.command.fanPct).toBeGreaterThanOrEqual(33.33);
  });
});

describe('a dew point that is not a number, or above the supply range', () => {
  it('a NaN dew point keeps the site fallback + margin as the floor (it used to lift the floor entirely)', () => {
    // Fans saturated, inlet over target: the reset lowers the setpoint every period, and with a NaN
    // floor nothing stopped it under the site's dew point + margin (10 + 2 °C).
    let s: GroupControlState = { ...settled(), setpointC: 13, demandPct: 100, integralPct: 100 };
    s.last = { [A]: { fanPct: 100, supplySetpointC: 13 }, [B]: { fanPct: 100, supplySetpointC: 13 } };
    for (let i = 0; i < 300; i++) {
      const out = step({ view: view({ inletMaxC: 27.5, dewPointC: Number.NaN }) }, s);
      for (const a of cfg.ahus) expect(out.commands[a]!.supplySetpointC).toBeGreaterThanOrEqual(12);
      s = out.state;
    }
    expect(s.setpointC).toBeGreaterThanOrEqual(cfg.dewPointFallbackC + cfg.tuning.setpoint.dewPointMarginC);
  });

  it('a dew point above the range sends the warmest setpoint and keeps a state peers accept', () => {
    // (+∞ is not a number of a dew point: the site's fallback, as for NaN.)
    for (const dewPointC of [30, 9007199254740991]) {
      const out = stepsOf(cfg, 400, { view: view({ dewPointC }), units: units() }, settled());
      for (const a of cfg.ahus) expect(out.commands[a]!.supplySetpointC).toBe(27);
      expect(out.state.setpointC).toBeLessThanOrEqual(27);
      expect(isGroupControlState(JSON.parse(JSON.stringify(out.state)))).toBe(true);
    }
  });
});

describe('inputs that are not numbers never reach the process state', () => {
  it('an inlet of 1e308 is no reading: the group goes blind, and its state stays one peers accept', () => {
    const out = step({ view: view({ inletMaxC: 1e308 }) });
    expect(out.mode).toBe('blind');
    expect(isInletHistory(out.state.inletHist)).toBe(true);
    expect(isGroupControlState(JSON.parse(JSON.stringify(out.state)))).toBe(true);
  });

  it('a unit that reads back NaN is continued from its local values, never from NaN', () => {
    const out = stepGroup(
      cfg,
      { view: view(), units: units({ fanPct: Number.NaN, supplySetpointC: Number.NaN }), dtS: 1 },
      null,
    );
    for (const a of cfg.ahus) {
      expect(Number.isFinite(out.commands[a]!.fanPct)).toBe(true);
      expect(Number.isFinite(out.commands[a]!.supplySetpointC)).toBe(true);
    }
    expect(isGroupControlState(out.state)).toBe(true);
  });

  it('one infinite cell of the influence matrix does not freeze every unit at its last command', () => {
    const rackIndex = new Map([['RA-04', 0]]);
    const m: InfluenceMatrix = {
      rackIndex,
      rows: new Map([
        [A, Float64Array.of(Number.POSITIVE_INFINITY)],
        [B, Float64Array.of(0.5)],
      ]),
    };
    expect(
      Object.values(targetOffsets([A, B], m, 'RA-04', 60, cfg.tuning.allocation)).every(Number.isFinite),
    ).toBe(true);
    // Inlet hot: the fans must rise, on the same matrix, step after step.
    let s = settled();
    const before = s.last[A]!.fanPct;
    for (let i = 0; i < 5; i++) s = step({ view: view({ inletMaxC: 27.5 }), influence: m }, s).state;
    expect(s.last[A]!.fanPct).toBeGreaterThan(before + 5);
    expect(isGroupControlState(s)).toBe(true);
  });

  it('an offset slew of −∞ per step moves nothing (it sent every offset to +∞)', () => {
    expect(slewOffsets({ [A]: 1 }, { [A]: 5 }, Number.NEGATIVE_INFINITY)).toEqual({ [A]: 1 });
  });

  it("a neighbour's call is answered in full when this group's own demand is not a number", () => {
    const k = answeredHelpK(Number.NaN, [{ helpK: 1.5, demandPct: 95, helpDownK: 0 }], {
      priceGapPct: 5,
      priceBandPct: 5,
    });
    expect(k).toBe(1.5);
  });

  it('the hard-limit gate keeps fans at 0 % or more when the floor it is given is not a number', () => {
    const res = enforceHardLimits({ fanPct: -5e-324, supplySetpointC: 17 }, null, Number.NaN);
    expect(res.command!.fanPct).toBeGreaterThanOrEqual(0);
  });

  it('the inlet history ignores a dt that is not a number', () => {
    expect(isInletHistory(recordInlet({ ageS: 10, b: [[20, 21]] }, 22, Number.NaN))).toBe(true);
  });
});

describe('a process state from a peer, damaged or out of range, is refused', () => {
  it('refuses values the law never keeps: demand, setpoint, commands, clocks, mode, history', () => {
    const good = JSON.parse(JSON.stringify(settled())) as GroupControlState;
    expect(isGroupControlState(good)).toBe(true);
    const bad: Partial<Record<keyof GroupControlState, unknown>>[] = [
      { demandPct: 1e300 },
      { setpointC: -40 },
      { resetClockS: -1e300 }, // the reset would never run again
      { running: -3 },
      { helpK: -1 },
      { track: null },
      { mode: 'turbo' },
      { offsets: { [A]: 1e300 } },
      { last: { [A]: { fanPct: 1e9, supplySetpointC: 18 } } },
      // [−1e308, 1e308] held every change of every unit for an hour; a negative age froze the buckets.
      { inletHist: { ageS: 10, b: [[-1e308, 1e308]] } },
      { inletHist: { ageS: -1e9, b: [[20, 21]] } },
      { inletHist: { ageS: 10, b: [[24, 20]] } },
    ];
    for (const change of bad)
      expect(isGroupControlState({ ...good, ...change }), JSON.stringify(change)).toBe(false);
  });
});

describe('a ramp slower than the units’ 0.1 grid per step still moves, at its rate', () => {
  it('0.1 K/s at a 0.5 s period: the setpoint command follows the group setpoint down, 0.1 K a second', () => {
    const at = { fanPct: 60, supplySetpointC: 20 };
    let s: GroupControlState = { ...settled(), setpointC: 20, last: { [A]: at, [B]: at } };
    const sent: number[] = [];
    // Hot and staying hot: the fans climb to their top, then the reset lowers the group setpoint.
    for (let i = 0; i < 600; i++) {
      const out = step({ view: view({ inletMaxC: 27.5 }), units: units(at), dtS: 0.5 }, s);
      sent.push(out.commands[A]!.supplySetpointC);
      s = out.state;
    }
    // It was stuck at 20 while each 0.05 K step rounded back to it.
    expect(s.setpointC).toBeLessThan(19);
    expect(Math.abs(sent.at(-1)! - s.setpointC)).toBeLessThanOrEqual(0.1);
    for (let i = 1; i < sent.length; i++)
      expect(Math.abs(sent[i]! - sent[i - 1]!)).toBeLessThanOrEqual(0.1 + 1e-9);
    // Over any 10 s (20 steps) it moves no more than the rate allows, and a grid step.
    for (let i = 20; i < sent.length; i++)
      expect(Math.abs(sent[i]! - sent[i - 20]!)).toBeLessThanOrEqual(10 * 0.1 + 0.1 + 1e-9);
  });
});
