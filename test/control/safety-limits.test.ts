// The limits operators rely on, in the safety layer: ASHRAE's rate of change (an inlet moves at
// most 5 K in any 15 minutes and 20 K in any hour, for every change the controller makes), supply
// air above the dew point with margin, and a fan floor per unit. Unit tests on the pure functions and
// the law's step, then the closed loop: a controller taking over a cold hall warms it no faster
// than ASHRAE allows.
import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { checkSiteRules } from '../../src/config/site-rules.ts';
import {
  ASHRAE_INLET_RATE,
  ControlTuningSchema,
  DEFAULT_TUNING,
  resolveTuning,
} from '../../src/config/tuning-schema.ts';
import {
  type ControlView,
  type GroupControlState,
  groupControlConfig,
  isGroupControlState,
  stepGroup,
  type UnitInput,
} from '../../src/control/law/group-controller.ts';
import {
  emptyInletHistory,
  enforceSafety,
  fanFloorPct,
  INLET_BUCKET_S,
  type InletHistory,
  inletRateHold,
  isInletHistory,
  recordInlet,
  type SafetyLimits,
} from '../../src/control/law/safety.ts';
import { ControlHall } from '../support/control-hall.ts';

const HOUR = 3600;
const site = generateSite(demoShape);
const lim: SafetyLimits = {
  fanMinPct: 20,
  setpointFloorC: 12,
  fanUpPctPerS: 6,
  fanDownPctPerS: 0.5,
  setpointRateCPerS: 0.1,
};
const last = { fanPct: 60, supplySetpointC: 18 };
const rate = DEFAULT_TUNING.inletRate;

/** A history of the hottest inlet going linearly from `fromC` to `toC` over `seconds`, 1 s steps. */
function ramp(
  fromC: number,
  toC: number,
  seconds: number,
  h: InletHistory = emptyInletHistory(),
): InletHistory {
  let x = h;
  for (let t = 1; t <= seconds; t++) x = recordInlet(x, fromC + ((toC - fromC) * t) / seconds, 1);
  return x;
}

describe('ASHRAE rate of change: the hold', () => {
  it('defaults are ASHRAE TC9.9’s (5 K / 15 min, 20 K / h); the schema refuses anything looser', () => {
    expect(resolveTuning().inletRate).toMatchObject({ per15MinC: 5, perHourC: 20 });
    expect(ASHRAE_INLET_RATE).toEqual({ perHourC: 20, per15MinC: 5 });
    expect(Value.Check(ControlTuningSchema, { inletRate: { per15MinC: 3, perHourC: 5 } })).toBe(true);
    expect(Value.Check(ControlTuningSchema, { inletRate: { per15MinC: 6 } })).toBe(false);
    expect(Value.Check(ControlTuningSchema, { inletRate: { perHourC: 25 } })).toBe(false);
  });

  it('an inlet that rose 3.2 K in 10 minutes holds warming moves; 2.5 K does not', () => {
    const risen = ramp(22, 25.2, 600);
    const r = inletRateHold(risen, 25.2, rate);
    expect(r.warming).toBe(true);
    expect(r.cooling).toBe(false);
    expect(r.rise15MinC).toBeCloseTo(3.2, 1);
    expect(inletRateHold(ramp(22, 24.5, 600), 24.5, rate).warming).toBe(false);
    // The same fall holds cooling moves instead.
    expect(inletRateHold(ramp(25.2, 22, 600), 22, rate)).toMatchObject({ warming: false, cooling: true });
  });

  it('a rise older than the 15-minute window no longer holds; 12 K within the hour does', () => {
    const old = ramp(22, 25.2, 300);
    let flat = old;
    for (let t = 0; t < 25 * 60; t++) flat = recordInlet(flat, 25.2, 1);
    expect(inletRateHold(flat, 25.2, rate).warming).toBe(false);
    const slow = ramp(14, 26.5, 50 * 60); // 12.5 K in 50 min: ~3.75 K per 15 min, under that window's hold
    const r = inletRateHold(slow, 26.5, rate);
    expect(r.rise15MinC).toBeLessThan(0.6 * 5 + 1.3);
    expect(r.riseHourC).toBeGreaterThanOrEqual(12);
    expect(r.warming).toBe(true);
  });

  it('the history stays an hour long and small, survives JSON, and a bad one is refused', () => {
    const h = ramp(20, 26, 5 * HOUR);
    expect(h.b.length).toBe(HOUR / INLET_BUCKET_S + 1);
    expect(JSON.stringify(h).length).toBeLessThan(300);
    expect(isInletHistory(JSON.parse(JSON.stringify(h)))).toBe(true);
    expect(isInletHistory({ ageS: 0, b: [[1, 'x']] })).toBe(false);
    expect(isInletHistory({ ageS: 0, b: new Array(40).fill(null) })).toBe(false);
    // No inlet seen (blind): time passes, nothing is recorded, nothing is held.
    const blind = recordInlet(emptyInletHistory(), null, 5);
    expect(blind.b).toEqual([null]);
    expect(inletRateHold(blind, null, rate)).toMatchObject({ warming: false, cooling: false });
  });

  it('enforceSafety: a warming hold keeps fans from slowing and setpoints from rising; a cooling hold the reverse, unless an inlet is at alarm', () => {
    const warm = {
      warming: true,
      cooling: false,
      rise15MinC: 3.5,
      riseHourC: 3.5,
      fall15MinC: 0,
      fallHourC: 0,
    };
    const r = enforceSafety({ fanPct: 50, supplySetpointC: 19 }, last, lim, {
      dtS: 10,
      hot: false,
      rateLimit: true,
      inletRate: warm,
    });
    expect(r.command).toEqual(last);
    expect(r.clipped).toContain('rate-hold');
    // Cooling moves stay free while warming is held.
    expect(
      enforceSafety({ fanPct: 70, supplySetpointC: 17.5 }, last, lim, {
        dtS: 10,
        hot: false,
        rateLimit: true,
        inletRate: warm,
      }).command,
    ).toEqual({ fanPct: 70, supplySetpointC: 17.5 });
    const cool = {
      warming: false,
      cooling: true,
      rise15MinC: 0,
      riseHourC: 0,
      fall15MinC: 3.5,
      fallHourC: 3.5,
    };
    expect(
      enforceSafety({ fanPct: 70, supplySetpointC: 17 }, last, lim, {
        dtS: 10,
        hot: false,
        rateLimit: true,
        inletRate: cool,
      }).command,
    ).toEqual(last);
    expect(
      enforceSafety({ fanPct: 70, supplySetpointC: 17 }, last, lim, {
        dtS: 10,
        hot: true,
        rateLimit: true,
        inletRate: cool,
      }).command,
    ).toEqual({ fanPct: 70, supplySetpointC: 17 });
  });
});

describe('the law under the rate hold', () => {
  const cfg = groupControlConfig(site, 'zone-1');
  const units = (fan: number, sp: number): UnitInput[] =>
    cfg.ahus.map((id) => ({ id, status: 'available', read: { fanPct: fan, supplySetpointC: sp } }));
  const view = (inletMaxC: number, dewPointC = 8): ControlView => ({
    verdict: 'ok',
    inletMaxC,
    hottestRack: 'RA-04',
    dewPointC,
  });

  it('an inlet under target but rising fast (3.5 K in 10 min): no fan slows and no setpoint rises, and it says why', () => {
    let state: GroupControlState | null = null;
    let out: ReturnType<typeof stepGroup> | null = null;
    // Far under target, fans idle: without the hold the PI slows them and the reset warms the supply.
    for (let t = 0; t < 600; t++) {
      out = stepGroup(cfg, { view: view(19 + (3.5 * t) / 600), units: units(70, 18), dtS: 1 }, state);
      state = out.state;
    }
    const before = { ...out!.commands };
    for (let t = 0; t < 120; t++) {
      out = stepGroup(cfg, { view: view(22.5), units: units(70, 18), dtS: 1 }, state);
      state = out.state;
    }
    for (const a of cfg.ahus) {
      expect(out!.commands[a]!.fanPct).toBeGreaterThanOrEqual(before[a]!.fanPct);
      expect(out!.commands[a]!.supplySetpointC).toBeLessThanOrEqual(before[a]!.supplySetpointC);
    }
    expect(out!.reasons).toContain('inlet rising near the ASHRAE rate limit: nothing warms');
    // The history is part of the process state: a new leader with the row holds too.
    const row = JSON.parse(JSON.stringify(state));
    expect(isGroupControlState(row)).toBe(true);
    const next = stepGroup(cfg, { view: view(22.5), units: units(70, 18), dtS: 1 }, row);
    expect(next.reasons).toContain('inlet rising near the ASHRAE rate limit: nothing warms');
  });

  it('a cached row from before the history existed still resumes', () => {
    const out = stepGroup(cfg, { view: view(24), units: units(60, 18), dtS: 1 }, null);
    const { inletHist: _, ...old } = out.state;
    expect(isGroupControlState(old)).toBe(true);
    expect(isGroupControlState({ ...old, inletHist: { ageS: 0, b: 'x' } })).toBe(false);
    expect(
      stepGroup(cfg, { view: view(24), units: units(60, 18), dtS: 1 }, old).state.inletHist,
    ).toBeDefined();
  });

  it('a unit’s own fan minimum holds for it, for the law and for an operator’s override; the others go to the group floor', () => {
    const [A, B] = cfg.ahus as [string, string];
    const own = groupControlConfig(site, 'zone-1', { tuning: { unitMinFanPct: { [A]: 45 } } });
    let state: GroupControlState | null = null;
    let out: ReturnType<typeof stepGroup> | null = null;
    for (let t = 0; t < 1800; t++) {
      out = stepGroup(own, { view: view(19), units: units(60, 18), dtS: 1 }, state);
      state = out.state;
    }
    expect(out!.commands[A]!.fanPct).toBe(45);
    expect(out!.commands[B]!.fanPct).toBeLessThan(35);
    const ov = stepGroup(
      own,
      { view: view(19), units: units(60, 18), dtS: 1, overrides: { [A]: { fanPct: 25 } } },
      state,
    );
    expect(ov.commands[A]!.fanPct).toBe(45);
  });

  it('supply air stays dew point + margin above the room’s dew point, an operator’s setpoint included', () => {
    const out = stepGroup(
      cfg,
      {
        view: view(24, 16),
        units: units(60, 18),
        dtS: 1,
        overrides: { [cfg.ahus[0]!]: { supplySetpointC: 13 } },
      },
      null,
    );
    expect(out.commands[cfg.ahus[0]!]!.supplySetpointC).toBe(16 + DEFAULT_TUNING.setpoint.dewPointMarginC);
  });
});

describe('closed loop: the rate limit holds in the hall', () => {
  it('taking over a cold hall (100 % fans, 13 °C supply), the law warms every inlet by at most 5 K in 15 min and 20 K in 1 h', () => {
    const h = new ControlHall({ control: 'law', settleWith: { fanPct: 100, supplySetpointC: 13 } });
    expect(h.inletRange().minC).toBeLessThan(15);
    h.run(2 * HOUR);
    process.stdout.write(
      `cold takeover: ${h.maxInletRate15MinC.toFixed(2)} K / 15 min, ${h.maxInletRateHourC.toFixed(2)} K / h, hottest ${h.maxInletC.toFixed(2)} °C\n`,
    );
    expect(h.maxInletRate15MinC).toBeLessThanOrEqual(ASHRAE_INLET_RATE.per15MinC);
    expect(h.maxInletRateHourC).toBeLessThanOrEqual(ASHRAE_INLET_RATE.perHourC);
    // And it still gets where it was going: fans down, inlets up to target.
    expect(h.maxInletC).toBeGreaterThan(24);
    expect(h.maxInletC).toBeLessThanOrEqual(27);
  });
});

describe('configuration of the limits', () => {
  it('a unit fan floor for a unit outside the group is refused at load, with the path', () => {
    const bad = structuredClone(site);
    bad.controlGroups[0]!.tuning = {
      unitMinFanPct: { 'AHU-99': 40, [bad.controlGroups[0]!.airHandlers[0]!]: 40 },
    };
    const problems = checkSiteRules(bad);
    expect(problems).toContainEqual(
      expect.objectContaining({ path: '/controlGroups/0/tuning/unitMinFanPct/AHU-99' }),
    );
    expect(problems.filter((p) => p.path.includes('unitMinFanPct'))).toHaveLength(1);
  });
});

describe('a unit fan floor looked up by id', () => {
  it('finds only the floors the tuning gives, never an Object member named like the unit', () => {
    const t = { hardMinFanPct: 20, unitMinFanPct: { 'AHU-01': 35 } };
    expect(fanFloorPct(t, 'AHU-01')).toBe(35);
    expect(fanFloorPct(t, 'AHU-02')).toBe(20);
    for (const id of ['constructor', 'toString', 'valueOf', '__proto__', 'hasOwnProperty'])
      expect(fanFloorPct(t, id), id).toBe(20);
  });
});
