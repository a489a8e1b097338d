// The control law under hostile inputs, randomized from a seed: NaN, ±Infinity, −0, huge and tiny
// values, missing and duplicated units, every unit tripped, sensors blind, a dew point above the
// supply range, dt of 0 or of a paused process, malformed process states from peers. What must hold
// at every step: nothing throws; every command is a finite number inside the unit's limits (fan
// within [floor, 100], setpoint within 12–27 °C and not under dew point + margin); consecutive
// commands respect the rate limits (to the units' 0.1 resolution); the state stays a valid,
// finite process state that survives JSON. A failure prints its seed: rerun with LAW_FUZZ_SEED.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { mulberry32 } from '../../firmware-sim/random.ts';
import { slewOffsets, targetOffsets } from '../../src/control/law/allocation.ts';
import {
  type ControlView,
  type GroupControlConfig,
  type GroupControlInputs,
  type GroupControlOutput,
  type GroupControlState,
  groupControlConfig,
  isGroupControlState,
  resumeState,
  stepGroup,
  type UnitInput,
  type UnitOverride,
} from '../../src/control/law/group-controller.ts';
import { answeredHelpK, callFrom } from '../../src/control/law/help.ts';
import type { InfluenceMatrix } from '../../src/control/law/influence.ts';
import { learnerFor, stepGroupLearning } from '../../src/control/law/influence-learner.ts';
import {
  type Command,
  enforceHardLimits,
  enforceSafety,
  fanFloorPct,
  inletRateHold,
  isInletHistory,
  recordInlet,
  SAFETY,
} from '../../src/control/law/safety.ts';

const BASE_SEED = Number(process.env.LAW_FUZZ_SEED ?? 0x5eed22);
/** Runs per property and steps per run: bounded, ~10 000 law steps in all. */
const RUNS = 24;
const STEPS = 80;
// The units' resolution: each command is the unrounded ramp (which the rate limits hold exactly)
// rounded to the units' 0.1 grid, so two consecutive ones may lie half a step to either side of it.
const RES = 0.1 + 1e-9;

const site = generateSite(demoShape);
const racks = site.racks.map((r) => r.id);
const configs: Record<string, GroupControlConfig> = {
  default: groupControlConfig(site, 'zone-1'),
  // Fractional floors: a unit minimum and a dew-point margin that are not on the 0.1 grid.
  fractional: groupControlConfig(site, 'zone-2', {
    tuning: {
      unitMinFanPct: { [site.controlGroups[1]!.airHandlers[0]!]: 33.33 },
      setpoint: { dewPointMarginC: 1.37 },
      fan: { minPct: 25 },
    },
  }),
  tight: groupControlConfig(site, 'zone-3', {
    tuning: {
      setpoint: { rateCPerS: 0.02, resetPeriodS: 5 },
      fan: { rampUpPctPerS: 0.7, rampDownPctPerS: 0.3 },
    },
  }),
};

const HOSTILE = [
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  -0,
  0,
  1e308,
  -1e308,
  5e-324,
  -5e-324,
  Number.MAX_SAFE_INTEGER,
  1e-9,
];

class Gen {
  readonly rnd: () => number;
  constructor(seed: number) {
    this.rnd = mulberry32(seed);
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rnd() * xs.length)]!;
  }
  between(lo: number, hi: number): number {
    return lo + (hi - lo) * this.rnd();
  }
  /** Mostly a plausible value in [lo, hi], sometimes anything a broken peer or probe could send. */
  num(lo: number, hi: number, pHostile = 0.1): number {
    if (this.chance(pHostile)) return this.chance(0.7) ? this.pick(HOSTILE) : this.between(-1e6, 1e6);
    return this.between(lo, hi);
  }
}

interface Scenario {
  allTripped: boolean;
  blind: boolean;
  hotDew: boolean;
  hostile: number;
}

function scenario(g: Gen): Scenario {
  return {
    allTripped: g.chance(0.1),
    blind: g.chance(0.1),
    hotDew: g.chance(0.1),
    hostile: g.pick([0, 0.02, 0.1, 0.3]),
  };
}

function hostileMatrix(g: Gen, cfg: GroupControlConfig): InfluenceMatrix {
  const rackIndex = new Map(racks.map((r, i) => [r, i]));
  const rows = new Map(
    cfg.ahus.map((a) => [a, Float64Array.from(racks, () => g.num(0, 1, 0.3))] as [string, Float64Array]),
  );
  return { rackIndex, rows };
}

function inputs(g: Gen, cfg: GroupControlConfig, sc: Scenario, inletC: number): GroupControlInputs {
  const h = sc.hostile;
  const units: UnitInput[] = [];
  for (const id of cfg.ahus) {
    if (g.chance(h / 2)) continue; // missing from the list
    const status = sc.allTripped
      ? g.pick(['tripped', 'lost'] as const)
      : g.chance(0.9)
        ? 'available'
        : g.pick(['tripped', 'lost'] as const);
    const read = g.chance(h) ? null : { fanPct: g.num(20, 100, h), supplySetpointC: g.num(12, 27, h) };
    const air = g.chance(0.2) ? null : { returnC: g.num(25, 40, h), supplyC: g.num(12, 24, h) };
    units.push({ id, status, read, air });
    if (g.chance(h / 4)) units.push({ id, status: 'available', read, air }); // duplicated
  }
  if (g.chance(h / 4)) units.push({ id: 'AHU-999', status: 'available', read: null });
  const view: ControlView = {
    verdict: sc.blind ? 'blind' : g.chance(0.9) ? 'ok' : g.pick(['degraded', 'blind'] as const),
    inletMaxC: sc.blind && g.chance(0.5) ? null : g.chance(h) ? g.pick([null, ...HOSTILE, 80, -40]) : inletC,
    hottestRack: g.chance(h) ? g.pick([null, 'nope', '__proto__', 'constructor']) : g.pick(racks),
    dewPointC: sc.hotDew
      ? g.pick([26, 30, 45, 1e308])
      : g.chance(h)
        ? g.pick([null, ...HOSTILE])
        : g.between(5, 14),
  };
  const overrides: Record<string, UnitOverride> = {};
  for (const id of cfg.ahus)
    if (g.chance(0.03 + h / 5)) {
      const ov: UnitOverride = {};
      if (g.chance(0.5)) ov.fanPct = g.num(0, 100, 0.4);
      if (g.chance(0.5)) ov.supplySetpointC = g.num(12, 27, 0.4);
      if (g.chance(0.1)) ov.toLocal = true;
      overrides[id] = ov;
    }
  const dtS = g.chance(h) ? g.pick([...HOSTILE, -1, 0.25, 7, 3600]) : g.chance(0.2) ? g.between(0.1, 2) : 1;
  return {
    view,
    units,
    dtS,
    overrides,
    paused: g.chance(0.02),
    neighbourHelpK: g.chance(0.2) ? g.num(0, 5, 0.5) : 0,
    ...(g.chance(h) ? { influence: hostileMatrix(g, cfg) } : {}),
    ...(g.chance(0.2) ? { ditherK: { [g.pick(cfg.ahus)]: g.num(-1, 1, 0.5) } } : {}),
  };
}

/** The dew point the law must keep the supply above, as the law reads the view. */
function setpointFloorC(cfg: GroupControlConfig, view: ControlView): number {
  const dew = Number.isFinite(view.dewPointC) ? view.dewPointC! : cfg.dewPointFallbackC;
  const want = dew + cfg.tuning.setpoint.dewPointMarginC;
  return Math.min(SAFETY.setpointMaxC, Math.max(SAFETY.setpointMinC, want));
}

function lawDtS(inp: GroupControlInputs): number {
  return Number.isFinite(inp.dtS) ? Math.min(5, Math.max(0, inp.dtS)) : 0;
}

/** Every property of one step; returns the problems found (empty: all held). */
function problems(
  cfg: GroupControlConfig,
  inp: GroupControlInputs,
  prev: { inp: GroupControlInputs; out: GroupControlOutput } | null,
  out: GroupControlOutput,
): string[] {
  const t = cfg.tuning;
  const bad: string[] = [];
  const floorC = setpointFloorC(cfg, inp.view);
  const dt = lawDtS(inp);
  for (const [a, c] of Object.entries(out.commands)) {
    if (!cfg.ahus.includes(a)) bad.push(`command for unknown unit ${a}`);
    if (!Number.isFinite(c.fanPct) || !Number.isFinite(c.supplySetpointC))
      bad.push(`${a} command not finite ${JSON.stringify(c)}`);
    const floor = fanFloorPct(t, a);
    if (!(c.fanPct >= floor && c.fanPct <= SAFETY.fanMaxPct))
      bad.push(`${a} fan ${c.fanPct} outside [${floor}, 100]`);
    if (!(c.supplySetpointC >= floorC && c.supplySetpointC <= SAFETY.setpointMaxC))
      bad.push(`${a} setpoint ${c.supplySetpointC} outside [${floorC}, 27]`);
    const p = prev?.out.commands[a];
    const manual = (o?: UnitOverride) =>
      o !== undefined && (o.fanPct !== undefined || o.supplySetpointC !== undefined);
    if (p && !manual(inp.overrides?.[a]) && !manual(prev.inp.overrides?.[a])) {
      const dFan = c.fanPct - p.fanPct;
      if (dFan > t.fan.rampUpPctPerS * dt + RES || -dFan > t.fan.rampDownPctPerS * dt + RES)
        bad.push(`${a} fan ${p.fanPct} → ${c.fanPct} in ${dt} s beyond its ramp`);
      const dSp = c.supplySetpointC - p.supplySetpointC;
      const raisedByFloor = dSp > 0 && c.supplySetpointC <= Math.ceil(floorC * 10) / 10 + 1e-9;
      if (Math.abs(dSp) > t.setpoint.rateCPerS * dt + RES && !raisedByFloor)
        bad.push(`${a} setpoint ${p.supplySetpointC} → ${c.supplySetpointC} in ${dt} s beyond its rate`);
    }
  }
  for (const a of out.release) if (!cfg.ahus.includes(a)) bad.push(`release of unknown unit ${a}`);
  const s = out.state;
  if (!isGroupControlState(s)) bad.push(`state not valid: ${JSON.stringify(s)}`);
  const copy = JSON.parse(JSON.stringify(s)) as unknown;
  if (!isGroupControlState(copy)) bad.push('state does not survive JSON');
  if (!(s.demandPct >= 0 && s.demandPct <= 100)) bad.push(`demand ${s.demandPct} out of range`);
  if (!(s.setpointC >= SAFETY.setpointMinC && s.setpointC <= SAFETY.setpointMaxC))
    bad.push(`group setpoint ${s.setpointC} out of range`);
  if (!(s.helpK >= 0) || !Number.isFinite(s.helpK)) bad.push(`helpK ${s.helpK}`);
  if (s.inletHist && !isInletHistory(s.inletHist)) bad.push('inlet history not valid');
  return bad;
}

/** Steps the law `STEPS` times from `start`; throws with the seed on the first broken property. */
function walk(
  name: string,
  seed: number,
  step: (cfg: GroupControlConfig, inp: GroupControlInputs, s: GroupControlState | null) => GroupControlOutput,
  start?: (g: Gen, cfg: GroupControlConfig) => GroupControlState | null,
): void {
  const g = new Gen(seed);
  const cfg = configs[g.pick(Object.keys(configs))]!;
  const sc = scenario(g);
  let inlet = g.between(20, 29);
  let state = start ? start(g, cfg) : null;
  let prev: { inp: GroupControlInputs; out: GroupControlOutput } | null = null;
  for (let i = 0; i < STEPS; i++) {
    inlet = Math.min(35, Math.max(15, inlet + g.between(-0.3, 0.3)));
    const inp = inputs(g, cfg, sc, inlet);
    let out: GroupControlOutput;
    try {
      out = step(cfg, inp, state);
    } catch (err) {
      throw new Error(`${name}: seed ${seed} step ${i} threw ${(err as Error).stack}`);
    }
    const bad = problems(cfg, inp, prev, out);
    if (bad.length > 0)
      throw new Error(
        `${name}: seed ${seed} (${cfg.group}, ${JSON.stringify(sc)}) step ${i}: ${bad.join('; ')}\n` +
          `inputs ${JSON.stringify({ ...inp, influence: undefined })}\nprev state ${JSON.stringify(state)}`,
      );
    // A pause or a to-local hands units back: the next command starts from what they run.
    prev = inp.paused ? null : { inp, out };
    state = out.state;
  }
}

describe('the control law under hostile inputs', () => {
  it('every step gives finite commands within the limits and rate limits, and a valid state', () => {
    for (let r = 0; r < RUNS; r++) walk('stepGroup', BASE_SEED + r, stepGroup);
  });

  it('so does the law with the influence learner beside it, on hostile plant observations', () => {
    for (let r = 0; r < RUNS; r++) {
      const seed = BASE_SEED + 1000 + r;
      const g = new Gen(seed ^ 0x9e37);
      const learners = new Map<GroupControlConfig, ReturnType<typeof learnerFor>>();
      walk('stepGroupLearning', seed, (cfg, inp, s) => {
        const learner = learners.get(cfg) ?? learnerFor(site, cfg);
        learners.set(cfg, learner);
        const plant = g.chance(0.1)
          ? null
          : {
              supplyC: Object.fromEntries(cfg.ahus.map((a) => [a, g.num(12, 24, 0.2)])),
              racks: learner.racks,
              inletC: Float64Array.from(learner.racks, () => g.num(18, 30, 0.2)),
            };
        const out = stepGroupLearning(cfg, learner, inp, s, plant);
        const m = learner.matrix();
        for (const row of m.rows.values())
          for (const w of row)
            if (!(w >= 0 && w <= 1)) throw new Error(`learned influence ${w} not a share (seed ${seed})`);
        return out;
      });
    }
  });

  it('a peer state that is malformed, of another version or out of range is refused or repaired', () => {
    for (let r = 0; r < RUNS; r++) {
      const seed = BASE_SEED + 2000 + r;
      walk('restored state', seed, stepGroup, (g, cfg) => {
        // A state that ran, then one field broken as a peer (or another version) might send it.
        let s: GroupControlState | null = null;
        const inlet = g.between(22, 28);
        const calm: GroupControlInputs = {
          view: { verdict: 'ok', inletMaxC: inlet, hottestRack: racks[0]!, dewPointC: 9 },
          units: cfg.ahus.map((id) => ({
            id,
            status: 'available',
            read: { fanPct: 60, supplySetpointC: 18 },
          })),
          dtS: 1,
        };
        for (let i = 0; i < 30; i++) s = stepGroup(cfg, calm, s).state;
        const row = JSON.parse(JSON.stringify(s)) as Record<string, unknown>;
        const keys = [...Object.keys(row), 'inletHist', 'last', 'offsets'];
        for (let k = 0; k < 1 + Math.floor(g.rnd() * 3); k++) corrupt(g, row, g.pick(keys), cfg);
        if (g.chance(0.05)) row.v = g.pick([2, 0, '1', null]);
        // What the group driver does with a row: the state if it is one, else resume from the commands.
        return isGroupControlState(row) ? row : resumeState({});
      });
    }
  });
});

/** Breaks one field of a state row. */
function corrupt(g: Gen, row: Record<string, unknown>, key: string, cfg: GroupControlConfig): void {
  const a = g.pick(cfg.ahus);
  const v = () => g.pick<unknown>([...HOSTILE, -5, 1e6, '7', null, undefined, {}, [], true]);
  switch (key) {
    case 'last':
      row.last = g.chance(0.2)
        ? v()
        : { ...(row.last as object), [a]: { fanPct: v(), supplySetpointC: v() } };
      return;
    case 'offsets':
      row.offsets = g.chance(0.2) ? v() : { ...(row.offsets as object), [a]: v() };
      return;
    case 'inletHist': {
      const t = g.rnd();
      if (t < 0.3) row.inletHist = { ageS: v(), b: [[20, 21]] };
      else if (t < 0.6) row.inletHist = { ageS: 10, b: [[g.pick(HOSTILE), 20], null, [-1e308, 1e308]] };
      else if (t < 0.8) row.inletHist = { ageS: -1e9, b: Array.from({ length: 40 }, () => [20, 30]) };
      else row.inletHist = v();
      return;
    }
    default:
      if (g.chance(0.2)) delete row[key];
      else row[key] = v();
  }
}

describe('the safety layer alone', () => {
  const lim = {
    fanMinPct: 20,
    setpointFloorC: 14,
    fanUpPctPerS: 6,
    fanDownPctPerS: 0.5,
    setpointRateCPerS: 0.1,
  };
  it('enforceSafety gives a finite command inside the ranges for any wanted value and any finite last', () => {
    const g = new Gen(BASE_SEED + 3000);
    for (let i = 0; i < 5000; i++) {
      const wanted: Command = { fanPct: g.num(0, 100, 0.5), supplySetpointC: g.num(12, 27, 0.5) };
      const last: Command = { fanPct: g.num(0, 100, 0.05), supplySetpointC: g.num(12, 27, 0.05) };
      if (!Number.isFinite(last.fanPct) || !Number.isFinite(last.supplySetpointC)) continue;
      const l = { ...lim, fanMinPct: g.chance(0.2) ? 33.33 : 20, setpointFloorC: g.num(5, 30, 0.3) };
      const dtS = g.pick([0, 0.25, 1, 5]);
      const res = enforceSafety(wanted, last, l, {
        dtS,
        hot: g.chance(0.2),
        rateLimit: g.chance(0.8),
        ...(g.chance(0.3)
          ? { inletRate: inletRateHold({ ageS: 0, b: [[20, 26]] }, g.num(18, 30, 0.2), { ...rateLim }) }
          : {}),
      });
      const c = res.command;
      const spFloor = Number.isFinite(l.setpointFloorC)
        ? Math.min(27, Math.max(12, l.setpointFloorC))
        : SAFETY.setpointMinC;
      const where = `seed ${BASE_SEED + 3000} case ${i}: ${JSON.stringify({ wanted, last, l, dtS, c })}`;
      expect(Number.isFinite(c.fanPct) && Number.isFinite(c.supplySetpointC), where).toBe(true);
      expect(c.fanPct >= l.fanMinPct && c.fanPct <= 100, where).toBe(true);
      expect(c.supplySetpointC >= spFloor && c.supplySetpointC <= 27, where).toBe(true);
    }
  });

  it('enforceHardLimits lets through only commands inside the ranges, or refuses', () => {
    const g = new Gen(BASE_SEED + 4000);
    for (let i = 0; i < 5000; i++) {
      const wanted = { fanPct: g.num(0, 100, 0.5), supplySetpointC: g.num(12, 27, 0.5) };
      const last = g.chance(0.3) ? null : { fanPct: g.num(0, 100, 0.3), supplySetpointC: g.num(12, 27, 0.3) };
      const floor = g.num(0, 60, 0.2);
      const res = enforceHardLimits(wanted, last, floor);
      if (res.command === null) continue;
      const where = `seed ${BASE_SEED + 4000} case ${i}: ${JSON.stringify({ wanted, last, floor, res })}`;
      expect(res.command.fanPct >= 0 && res.command.fanPct <= 100, where).toBe(true);
      expect(res.command.supplySetpointC >= 12 && res.command.supplySetpointC <= 27, where).toBe(true);
    }
  });

  it('the inlet history stays bounded and valid with gaps, NaN and time going backwards', () => {
    const g = new Gen(BASE_SEED + 5000);
    for (let r = 0; r < RUNS; r++) {
      let h = { ageS: 0, b: [null] } as ReturnType<typeof recordInlet>;
      for (let i = 0; i < 400; i++) {
        const inlet = g.chance(0.1) ? null : g.num(18, 32, 0.2);
        h = recordInlet(h, inlet, g.num(0, 400, 0.3));
        const where = `seed ${BASE_SEED + 5000} run ${r} step ${i}: ${JSON.stringify(h)}`;
        expect(isInletHistory(h), where).toBe(true);
        expect(h.ageS >= 0 && h.ageS <= 300, where).toBe(true);
        const hold = inletRateHold(h, inlet, rateLim);
        for (const k of [hold.rise15MinC, hold.riseHourC, hold.fall15MinC, hold.fallHourC])
          expect(Number.isFinite(k) && k >= 0, where).toBe(true);
      }
    }
  });
});

const rateLim = { perHourC: 20, per15MinC: 5, holdFraction: 0.6 };

describe('allocation and help under hostile inputs', () => {
  it('offsets stay finite and bounded whatever the influence and demand', () => {
    const cfg = configs.default!;
    const g = new Gen(BASE_SEED + 6000);
    for (let i = 0; i < 3000; i++) {
      // The tuning is the schema's (finite, ≥ 0); the matrix, the rack and the demand are anything.
      const a = { gain: g.between(0, 1), maxOffsetPct: g.between(0, 20), slewPctPerS: 0.2 };
      const m = hostileMatrix(g, cfg);
      const off = targetOffsets(cfg.ahus, m, g.chance(0.1) ? null : g.pick(racks), g.num(20, 100, 0.2), a);
      const slewed = slewOffsets({}, off, g.num(0, 1, 0.2));
      const where = `seed ${BASE_SEED + 6000} case ${i}: ${JSON.stringify({ a, off })}`;
      for (const x of [...Object.values(off), ...Object.values(slewed)])
        expect(Number.isFinite(x) && Math.abs(x) <= 2 * a.maxOffsetPct, where).toBe(true);
    }
  });

  it('a neighbour call from any row is a finite, non-negative call or none', () => {
    const g = new Gen(BASE_SEED + 7000);
    for (let i = 0; i < 3000; i++) {
      const row = g.chance(0.05)
        ? g.pick([null, undefined])
        : ({ helpK: g.num(0, 5, 0.4), demandPct: g.num(0, 100, 0.4), helpDownK: g.num(0, 5, 0.4) } as never);
      const call = callFrom(row);
      const own = g.chance(0.2) ? undefined : g.num(0, 100, 0.3);
      const k = answeredHelpK(own, call ? [call] : [], { priceGapPct: g.between(-100, 50), priceBandPct: 5 });
      const where = `seed ${BASE_SEED + 7000} case ${i}: ${JSON.stringify({ row, call, own, k })}`;
      expect(Number.isFinite(k) && k >= 0, where).toBe(true);
    }
  });
});
