// The control law one step at a time, on hand-made sensor views: what an operator would see of
// its decisions — bumpless resume, each safe mode, overrides, pause, and the safety layer's limits.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { resolveTuning } from '../../src/config/tuning-schema.ts';
import {
  type ControlView,
  type GroupControlConfig,
  type GroupControlInputs,
  type GroupControlState,
  groupControlConfig,
  isGroupControlState,
  resumeState,
  stepGroup,
  type UnitInput,
} from '../../src/control/law/group-controller.ts';
import { influenceFromRecords, influenceOf } from '../../src/control/law/influence.ts';
import { enforceSafety } from '../../src/control/law/safety.ts';
import { stepsOf } from '../support/law-steps.ts';

const site = generateSite(demoShape);
const cfg: GroupControlConfig = groupControlConfig(site, 'zone-1');
const [A, B] = cfg.ahus as [string, string];

const view = (inletMaxC: number | null, verdict: ControlView['verdict'] = 'ok'): ControlView => ({
  verdict,
  inletMaxC,
  hottestRack: 'RA-04',
  dewPointC: 8,
});
const units = (fan = 60, sp = 18, status: Partial<Record<string, UnitInput['status']>> = {}): UnitInput[] =>
  cfg.ahus.map((id) => ({
    id,
    status: status[id] ?? 'available',
    read: { fanPct: fan, supplySetpointC: sp },
  }));

const run = (n: number, inp: Omit<GroupControlInputs, 'dtS'>, state: GroupControlState | null) =>
  stepsOf(cfg, n, inp, state);

describe('bumpless start', () => {
  it('a cold start continues what the units run now, whatever the inlet error', () => {
    for (const inlet of [20, 25, 29]) {
      const out = stepGroup(cfg, { view: view(inlet), units: units(63.5, 18.5), dtS: 1 }, null);
      for (const a of cfg.ahus) {
        expect(Math.abs(out.commands[a]!.fanPct - 63.5)).toBeLessThanOrEqual(0.635);
        expect(out.commands[a]!.supplySetpointC).toBeCloseTo(18.5, 5);
      }
    }
  });

  it('a new leader resuming from the last commands (the cached row) continues them within 1 %, although the units fell back to 100 %', () => {
    const last = { [A]: { fanPct: 71.3, supplySetpointC: 18 }, [B]: { fanPct: 58.9, supplySetpointC: 18 } };
    const out = stepGroup(cfg, { view: view(25.8), units: units(100, 18), dtS: 1 }, resumeState(last));
    expect(Math.abs(out.commands[A]!.fanPct - 71.3)).toBeLessThanOrEqual(0.713);
    expect(Math.abs(out.commands[B]!.fanPct - 58.9)).toBeLessThanOrEqual(0.589);
  });

  it('a full state survives JSON and resumes where it left off', () => {
    const a = run(300, { view: view(26), units: units(50) }, null);
    const copy = JSON.parse(JSON.stringify(a.state));
    expect(isGroupControlState(copy)).toBe(true);
    expect(JSON.stringify(copy).length).toBeLessThan(1024);
    const next = stepGroup(cfg, { view: view(26), units: units(50), dtS: 1 }, copy);
    for (const c of cfg.ahus)
      expect(Math.abs(next.commands[c]!.fanPct - a.commands[c]!.fanPct)).toBeLessThan(1);
    expect(isGroupControlState({ v: 1, demandPct: 'x' })).toBe(false);
  });
});

describe('fan loop', () => {
  it('a hot inlet raises the fans faster than a cool inlet lowers them, within min and max', () => {
    const atTarget = run(60, { view: view(25), units: units(50) }, null);
    expect(atTarget.state.demandPct).toBeCloseTo(50, 5);
    const up = run(5, { view: view(28), units: units() }, atTarget.state);
    const down = run(5, { view: view(21), units: units() }, atTarget.state);
    const rise = up.state.demandPct - 50;
    const fall = 50 - down.state.demandPct;
    expect(rise).toBeGreaterThan(5);
    expect(fall).toBeGreaterThan(0.5);
    expect(rise).toBeGreaterThan(4 * fall);
    const low = run(2000, { view: view(18), units: units() }, null);
    for (const a of cfg.ahus) expect(low.commands[a]!.fanPct).toBeGreaterThanOrEqual(cfg.tuning.fan.minPct);
    const high = run(200, { view: view(32), units: units() }, null);
    for (const a of cfg.ahus) expect(high.commands[a]!.fanPct).toBe(100);
  });

  it('no wind-up: after an hour saturated at 100 %, fans start down as soon as the inlet is under target', () => {
    const sat = run(3600, { view: view(30), units: units() }, null);
    expect(sat.state.demandPct).toBe(100);
    const after = run(10, { view: view(24), units: units() }, sat.state);
    expect(after.state.demandPct).toBeLessThan(100);
  });

  it("the site config's influence replaces the geometry's", () => {
    const near = influenceOf(cfg.influence, A, 'RA-04') > influenceOf(cfg.influence, B, 'RA-04') ? A : B;
    const far = near === A ? B : A;
    const given = groupControlConfig(site, 'zone-1', {
      influence: { [far]: { 'RA-04': 1 }, [near]: { 'RA-04': 0.1 } },
    });
    expect(influenceOf(given.influence, far, 'RA-04')).toBe(1);
    expect(influenceOf(given.influence, near, 'RA-04')).toBeCloseTo(0.1);
    expect(influenceOf(given.influence, near, 'RA-05')).toBe(0);
    let out = stepGroup(given, { view: view(25.2), units: units(), dtS: 1 }, null);
    for (let i = 1; i < 600; i++)
      out = stepGroup(given, { view: view(25.2), units: units(), dtS: 1 }, out.state);
    expect(out.commands[far]!.fanPct).toBeGreaterThan(out.commands[near]!.fanPct + 2);
  });

  it('the unit nearer the hottest rack runs faster', () => {
    const out = run(600, { view: view(25.2), units: units() }, null);
    const near = influenceOf(cfg.influence, A, 'RA-04') > influenceOf(cfg.influence, B, 'RA-04') ? A : B;
    const far = near === A ? B : A;
    expect(out.commands[near]!.fanPct).toBeGreaterThan(out.commands[far]!.fanPct + 2);
  });
});

describe('setpoint reset', () => {
  it('fans saturated with the inlet above target lower the setpoint, not under the dew-point-safe floor', () => {
    const out = run(3600, { view: { ...view(27.5), dewPointC: 15 }, units: units(100) }, null);
    expect(out.commands[A]!.supplySetpointC).toBe(17); // dew point 15 + 2 K margin, above the 16 °C minimum
    const dry = run(3600, { view: view(27.5), units: units(100) }, null);
    expect(dry.commands[A]!.supplySetpointC).toBe(cfg.tuning.setpoint.minC);
  });

  it('fans idling with a cool room raise the setpoint, up to its maximum', () => {
    const out = run(7200, { view: view(21), units: units(30) }, null);
    expect(out.commands[A]!.supplySetpointC).toBe(cfg.tuning.setpoint.maxC);
  });
});

describe('safe modes', () => {
  it('degraded: fans not under the degraded floor, and the setpoint never raised', () => {
    const out = run(7200, { view: view(21, 'degraded'), units: units(30) }, null);
    for (const a of cfg.ahus) {
      expect(out.commands[a]!.fanPct).toBeGreaterThanOrEqual(cfg.tuning.degraded.minFanPct);
      expect(out.commands[a]!.supplySetpointC).toBeLessThanOrEqual(18);
    }
    expect(out.mode).toBe('degraded');
  });

  it('blind: fans ramp to the safe level and setpoints to the units’ local values; back to normal without a bump', () => {
    const start = run(600, { view: view(22), units: units(40, 20) }, null);
    const blind = run(120, { view: view(null, 'blind'), units: units(40, 20) }, start.state);
    expect(blind.mode).toBe('blind');
    for (const a of cfg.ahus) {
      expect(blind.commands[a]!.fanPct).toBe(cfg.tuning.blindFanPct);
      expect(blind.commands[a]!.supplySetpointC).toBe(cfg.local[a]!.supplySetpointC);
    }
    const back = stepGroup(cfg, { view: view(22), units: units(100, 18), dtS: 1 }, blind.state);
    expect(back.mode).toBe('normal');
    for (const a of cfg.ahus) expect(back.commands[a]!.fanPct).toBeGreaterThanOrEqual(99);
  });

  it('a unit tripped: the other takes its airflow at once and the group asks its neighbours for air', () => {
    const before = run(600, { view: view(25), units: units() }, null);
    const fan0 = before.commands[B]!.fanPct;
    const out = run(10, { view: view(25), units: units(60, 18, { [A]: 'tripped' }) }, before.state);
    expect(out.commands[B]!.fanPct).toBeGreaterThan(Math.min(100, fan0 + 20));
    expect(out.state.helpK).toBeGreaterThan(1);
    expect(out.reasons.join(' ')).toMatch(/tripped: others compensate/);
  });

  it('a neighbour short of air raises this group’s fans although its own racks are cool', () => {
    const alone = run(600, { view: view(23), units: units() }, null);
    const helping = run(600, { view: view(23), units: units(), neighbourHelpK: 2 }, null);
    expect(helping.state.demandPct).toBeGreaterThan(alone.state.demandPct + 20);
  });
});

describe('operator inputs', () => {
  it('a manual fan or setpoint holds that unit (within hard limits); to-local releases it', () => {
    const out = run(
      60,
      { view: view(25), units: units(), overrides: { [A]: { fanPct: 42, supplySetpointC: 19.5 } } },
      null,
    );
    expect(out.commands[A]).toEqual({ fanPct: 42, supplySetpointC: 19.5 });
    const low = stepGroup(
      cfg,
      { view: view(25), units: units(), dtS: 1, overrides: { [A]: { fanPct: 5 } } },
      null,
    );
    expect(low.commands[A]!.fanPct).toBe(cfg.tuning.hardMinFanPct);
    const local = stepGroup(
      cfg,
      { view: view(25), units: units(), dtS: 1, overrides: { [B]: { toLocal: true } } },
      null,
    );
    expect(local.commands[B]).toBeUndefined();
    expect(local.release).toEqual([B]);
  });

  it('pause: no commands, every unit released; resume starts from where the units run', () => {
    const paused = run(30, { view: view(25), units: units(60), paused: true }, null);
    expect(paused.commands).toEqual({});
    expect(paused.release.sort()).toEqual([...cfg.ahus].sort());
    const resumed = stepGroup(cfg, { view: view(25), units: units(100, 18), dtS: 1 }, paused.state);
    for (const a of cfg.ahus) expect(resumed.commands[a]!.fanPct).toBeGreaterThanOrEqual(99);
  });
});

describe('safety layer', () => {
  const t = resolveTuning();
  const lim = {
    fanMinPct: t.hardMinFanPct,
    setpointFloorC: 10,
    fanUpPctPerS: 6,
    fanDownPctPerS: 0.5,
    setpointRateCPerS: 0.1,
  };
  const last = { fanPct: 60, supplySetpointC: 18 };

  it('clips to hard limits, rate limits, and replaces non-finite values by the last command', () => {
    expect(
      enforceSafety({ fanPct: 150, supplySetpointC: 40 }, last, lim, {
        dtS: 100,
        hot: false,
        rateLimit: true,
      }).command,
    ).toEqual({ fanPct: 100, supplySetpointC: 27 });
    expect(
      enforceSafety({ fanPct: 0, supplySetpointC: 5 }, last, lim, { dtS: 1, hot: false, rateLimit: true })
        .command,
    ).toEqual({ fanPct: 59.5, supplySetpointC: 17.9 });
    expect(
      enforceSafety({ fanPct: Number.NaN, supplySetpointC: 18 }, last, lim, {
        dtS: 1,
        hot: false,
        rateLimit: true,
      }).command,
    ).toEqual(last);
  });

  it('with an inlet at alarm nothing slows and nothing warms', () => {
    const r = enforceSafety({ fanPct: 40, supplySetpointC: 20 }, last, lim, {
      dtS: 1,
      hot: true,
      rateLimit: true,
    });
    expect(r.command).toEqual(last);
    expect(r.clipped).toContain('hot-hold');
  });

  it('never commands a setpoint under the dew-point floor', () => {
    expect(
      enforceSafety(
        { fanPct: 60, supplySetpointC: 14 },
        last,
        { ...lim, setpointFloorC: 17 },
        { dtS: 100, hot: false, rateLimit: true },
      ).command.supplySetpointC,
    ).toBe(17);
  });
});

describe('influence from the config', () => {
  it('a rack named like an Object member is a rack: a unit without it has no weight there, not NaN', () => {
    const m = influenceFromRecords({ 'AHU-01': { constructor: 0.6, R1: 0.3 }, 'AHU-02': { R1: 0.5 } });
    const at = (ahu: string, rack: string) => m.rows.get(ahu)![m.rackIndex.get(rack)!];
    expect(at('AHU-01', 'constructor')).toBe(0.6);
    expect(at('AHU-02', 'constructor')).toBe(0);
    expect(at('AHU-02', 'R1')).toBe(0.5);
  });
});
