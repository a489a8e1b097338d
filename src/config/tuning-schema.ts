// Per-group tuning of the control law (docs/control.md): one TypeBox fragment the site schema can
// take as `controlGroups[].tuning`, and the defaults every omitted field falls back to.
// Invariant: `resolveTuning` always returns a complete, internally consistent tuning (min ≤ max,
// floors inside the range), so the law never has to check a setting again. A written setting it
// would have to move is refused at load (`tuningProblems`); a default it moves is reported
// (`tuningNotes`), so that no group runs a value the operator neither wrote nor was told of.
import { type Static, Type as T } from '@sinclair/typebox';
import { FAN_RANGE_PCT, SUPPLY_SETPOINT_RANGE_C } from '../unit-contract.ts';

/**
 * ASHRAE TC9.9 (2021): an inlet moves at most 20 K in any hour and 5 K in any 15 minutes, measured as
 * max − min within the window. Tighter settings are allowed (5 K/h where tape drives are present).
 * The inlet-rate setting's default and its maximum.
 */
export const ASHRAE_INLET_RATE = { perHourC: 20, per15MinC: 5 } as const;

/** A fan speed (every % setting here is one): the device contract's range. */
const Pct = (def: number, description: string) =>
  T.Optional(T.Number({ minimum: FAN_RANGE_PCT.min, maximum: FAN_RANGE_PCT.max, default: def, description }));
const C = (def: number, description: string, min = 5, max = 40) =>
  T.Optional(T.Number({ minimum: min, maximum: max, default: def, description }));
/** A supply-air setpoint: only what the device contract lets a unit be told. */
const SetpointC = (def: number, description: string) =>
  C(def, description, SUPPLY_SETPOINT_RANGE_C.min, SUPPLY_SETPOINT_RANGE_C.max);
const Pos = (def: number, description: string, max = 1000) =>
  T.Optional(T.Number({ exclusiveMinimum: 0, maximum: max, default: def, description }));

export const ControlTuningSchema = T.Object(
  {
    inletTargetC: C(25, 'the hottest good rack inlet is held here (°C); 2 K under the 27 °C alarm', 15, 27),
    fan: T.Optional(
      T.Object(
        {
          minPct: Pct(30, 'lowest fan speed the law commands'),
          maxPct: Pct(100, 'highest fan speed the law commands'),
          kpPctPerK: Pos(4, 'proportional gain, % fan per K of inlet error', 100),
          kiPctPerKS: Pos(0.08, 'integral gain, % fan per K·s of inlet error', 10),
          rampUpPctPerS: Pos(6, 'fastest rise of a fan command, %/s', 100),
          rampDownPctPerS: Pos(0.5, 'fastest fall of a fan command, %/s (slower than up)', 100),
        },
        { additionalProperties: false },
      ),
    ),
    setpoint: T.Optional(
      T.Object(
        {
          minC: SetpointC(16, 'lowest supply-air setpoint the reset may choose while fans saturate (°C)'),
          preferredMinC: SetpointC(
            18,
            'a setpoint under this is raised back as soon as the fans have headroom (°C): colder supply air puts rack bottoms under the 18 °C recommended minimum',
          ),
          maxC: SetpointC(24, 'highest supply-air setpoint the reset may choose (°C)'),
          dewPointMarginC: T.Optional(
            T.Number({
              minimum: 0,
              maximum: 10,
              default: 2,
              description: 'supply air is kept this far above the room dew point (K)',
            }),
          ),
          resetPeriodS: Pos(60, 'trim-and-respond period (s)', 3600),
          trimStepC: Pos(0.2, 'raise per period while the fans idle at their floor (K)', 5),
          respondStepC: Pos(0.5, 'lowering per period while the fans saturate (K)', 5),
          fanHighPct: Pct(90, 'fans at or above this (and inlet at target) → lower the setpoint'),
          fanLowPct: Pct(35, 'fans at or below this (and inlet well under target) → raise the setpoint'),
          rateCPerS: Pos(0.1, 'fastest change of a setpoint command, K/s', 10),
        },
        { additionalProperties: false },
      ),
    ),
    allocation: T.Optional(
      T.Object(
        {
          gain: T.Optional(
            T.Number({
              minimum: 0,
              maximum: 2,
              default: 0.3,
              description: 'how strongly units nearer the hottest rack run faster (0 = all equal)',
            }),
          ),
          maxOffsetPct: Pct(15, 'largest difference of one unit from the group demand, %'),
          slewPctPerS: Pos(0.2, 'how fast a unit’s share follows the hot spot, %/s', 100),
        },
        { additionalProperties: false },
      ),
    ),
    help: T.Optional(
      T.Object(
        {
          startPct: Pct(
            90,
            'a group asks its neighbours for air as its fan demand rises from this to fan.maxPct (%): lower spreads airflow earlier (fan power ∝ speed³)',
          ),
          lostUnitK: T.Optional(
            T.Number({
              minimum: 0,
              maximum: 10,
              default: 4,
              description:
                'help asked at once with every unit of the group down, in proportion for fewer (K)',
            }),
          ),
          feedForwardPctPerK: T.Optional(
            T.Number({
              minimum: 0,
              maximum: 50,
              default: 15,
              description:
                'a neighbour’s help rising by ≥ 0.5 K in one step (a unit down next door) raises this group’s fan demand at once by this much per K (%/K)',
            }),
          ),
          priceGapPct: T.Optional(
            T.Number({
              minimum: -100,
              maximum: 100,
              default: 5,
              description:
                'a neighbour’s call for air is answered only while this group’s fan demand is more than this under the caller’s (a unit down next door is answered always); −100 answers every call (%)',
            }),
          ),
          priceBandPct: Pos(
            5,
            'over how much more demand gap a call goes from unanswered to answered in full, %',
            100,
          ),
        },
        { additionalProperties: false },
      ),
    ),
    coilLoad: T.Optional(
      T.Object(
        {
          feedForwardGain: T.Optional(
            T.Number({
              minimum: 0,
              maximum: 2,
              default: 1,
              description:
                'the running units’ mean return − supply air rising faster than its filter by more than riseFraction (more IT heat) raises the fan demand at once by this × the rise (0 = off)',
            }),
          ),
          riseFraction: T.Optional(
            T.Number({
              minimum: 0.01,
              maximum: 1,
              default: 0.05,
              description:
                'share by which the coils’ air temperature rise must jump over its filtered value to count as a load step',
            }),
          ),
          filterS: Pos(
            120,
            'time constant the coils’ filtered air temperature rise follows slow changes with (s)',
            3600,
          ),
        },
        { additionalProperties: false },
      ),
    ),
    degraded: T.Optional(
      T.Object(
        {
          minFanPct: Pct(60, 'fan floor while the sensor view is degraded'),
          targetOffsetC: T.Optional(
            T.Number({
              minimum: -10,
              maximum: 0,
              default: -1,
              description: 'inlet target shift while degraded (K, ≤ 0: cooler)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    blindFanPct: Pct(100, 'fan speed while the group is blind (setpoints go to the units’ local values)'),
    hardMinFanPct: Pct(20, 'safety layer: no command (override included) below this fan speed'),
    unitMinFanPct: T.Optional(
      T.Record(
        T.String({ minLength: 1 }),
        T.Number({ minimum: FAN_RANGE_PCT.min, maximum: FAN_RANGE_PCT.max }),
        {
          description:
            'safety layer: a unit’s own fan minimum (e.g. its EC fans’ or the vendor’s), above hardMinFanPct; per unit id',
        },
      ),
    ),
    inletRate: T.Optional(
      T.Object(
        {
          perHourC: T.Optional(
            T.Number({
              exclusiveMinimum: 0,
              maximum: ASHRAE_INLET_RATE.perHourC,
              default: ASHRAE_INLET_RATE.perHourC,
              description:
                'safety layer: most an inlet may move in any hour (K; ASHRAE TC9.9: 20, 5 with tape drives)',
            }),
          ),
          per15MinC: T.Optional(
            T.Number({
              exclusiveMinimum: 0,
              maximum: ASHRAE_INLET_RATE.per15MinC,
              default: ASHRAE_INLET_RATE.per15MinC,
              description: 'safety layer: most an inlet may move in any 15 minutes (K; ASHRAE TC9.9: 5)',
            }),
          ),
          holdFraction: T.Optional(
            T.Number({
              minimum: 0.2,
              maximum: 0.9,
              default: 0.6,
              description:
                'changes that would move the hottest inlet further are held once it has moved this share of a limit in its window',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    learning: T.Optional(
      T.Object(
        {
          dither: T.Optional(
            T.Boolean({
              default: true,
              description:
                'the influence learner may warm one unit’s supply setpoint by its bounded dither (docs/control.md, "Learned influence"); false: it learns from natural variation only',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    alarmInletC: C(
      27,
      'safety layer: at or above this inlet no fan is slowed and no setpoint raised',
      18,
      45,
    ),
  },
  { additionalProperties: false },
);

export type ControlTuningInput = Static<typeof ControlTuningSchema>;

export interface ControlTuning {
  inletTargetC: number;
  fan: {
    minPct: number;
    maxPct: number;
    kpPctPerK: number;
    kiPctPerKS: number;
    rampUpPctPerS: number;
    rampDownPctPerS: number;
  };
  setpoint: {
    minC: number;
    preferredMinC: number;
    maxC: number;
    dewPointMarginC: number;
    resetPeriodS: number;
    trimStepC: number;
    respondStepC: number;
    fanHighPct: number;
    fanLowPct: number;
    rateCPerS: number;
  };
  allocation: { gain: number; maxOffsetPct: number; slewPctPerS: number };
  help: {
    startPct: number;
    lostUnitK: number;
    feedForwardPctPerK: number;
    priceGapPct: number;
    priceBandPct: number;
  };
  coilLoad: { feedForwardGain: number; riseFraction: number; filterS: number };
  degraded: { minFanPct: number; targetOffsetC: number };
  blindFanPct: number;
  hardMinFanPct: number;
  /** Per unit id; absent: `hardMinFanPct`. */
  unitMinFanPct: Readonly<Record<string, number>>;
  inletRate: { perHourC: number; per15MinC: number; holdFraction: number };
  learning: { dither: boolean };
  alarmInletC: number;
}

export const DEFAULT_TUNING: ControlTuning = {
  inletTargetC: 25,
  fan: {
    minPct: 30,
    maxPct: 100,
    kpPctPerK: 4,
    kiPctPerKS: 0.08,
    rampUpPctPerS: 6,
    rampDownPctPerS: 0.5,
  },
  setpoint: {
    minC: 16,
    preferredMinC: 18,
    maxC: 24,
    dewPointMarginC: 2,
    resetPeriodS: 60,
    trimStepC: 0.2,
    respondStepC: 0.5,
    fanHighPct: 90,
    fanLowPct: 35,
    rateCPerS: 0.1,
  },
  allocation: { gain: 0.3, maxOffsetPct: 15, slewPctPerS: 0.2 },
  help: { startPct: 90, lostUnitK: 4, feedForwardPctPerK: 15, priceGapPct: 5, priceBandPct: 5 },
  coilLoad: { feedForwardGain: 1, riseFraction: 0.05, filterS: 120 },
  degraded: { minFanPct: 60, targetOffsetC: -1 },
  blindFanPct: 100,
  hardMinFanPct: 20,
  unitMinFanPct: {},
  inletRate: { ...ASHRAE_INLET_RATE, holdFraction: 0.6 },
  learning: { dither: true },
  alarmInletC: 27,
};

/** A setting of a group's tuning at its path in the site file, what is wrong, and what is allowed. */
export interface TuningProblem {
  path: string;
  message: string;
  allowed: string;
}

/** A setting that lies outside the range other settings make, and where `resolveTuning` puts it. */
interface Moved {
  /** Its path under the group's tuning, and the range it depends on. */
  key: string;
  range: 'fan' | 'setpoint' | 'inlet';
  from: number;
  to: number;
  /** The upper end is one the value must stay under, not reach (a target at the alarm). */
  strict?: boolean;
  /** The end it crossed, as `fan.minPct` and the key of that setting under the tuning. */
  bound: { name: string; key: string | undefined; value: number };
  /** The file set it; else only its default lies outside (a range the file moved). */
  written: boolean;
  allowed: string;
}

type Bound = Moved['bound'];

/**
 * The one place a tuning's ranges are ordered and its floors put inside them, for `resolveTuning`
 * and for the checks alike, so what the checks refuse or report is what the law would have run.
 * `input` is what the file wrote; the defaults fill the rest.
 */
function settle(input: ControlTuningInput): {
  inletTargetC: number;
  fan: ControlTuning['fan'];
  setpoint: ControlTuning['setpoint'];
  help: ControlTuning['help'];
  degraded: ControlTuning['degraded'];
  hardMinFanPct: number;
  blindFanPct: number;
  crossed: Set<Moved['range']>;
  moved: Moved[];
} {
  const d = DEFAULT_TUNING;
  const fan = { ...d.fan, ...input.fan };
  const setpoint = { ...d.setpoint, ...input.setpoint };
  const crossed = new Set<Moved['range']>();
  if (fan.minPct > fan.maxPct) {
    crossed.add('fan');
    [fan.minPct, fan.maxPct] = [fan.maxPct, fan.minPct];
  }
  if (setpoint.minC > setpoint.maxC) {
    crossed.add('setpoint');
    [setpoint.minC, setpoint.maxC] = [setpoint.maxC, setpoint.minC];
  }
  const moved: Moved[] = [];
  const inside = (
    key: string,
    range: Moved['range'],
    written: number | undefined,
    fallback: number,
    lo: Bound,
    hi: Bound,
    allowed: string,
    /** > 0: the value must stay this far under `hi` (it acts only below it). */
    underHi = 0,
  ): number => {
    const from = written ?? fallback;
    const to = underHi > 0 && from >= hi.value ? hi.value - underHi : clamp(from, lo.value, hi.value);
    if (to !== from)
      moved.push({
        key,
        range,
        from,
        to,
        bound: from < lo.value ? lo : hi,
        written: written !== undefined,
        allowed,
        ...(underHi > 0 && from >= hi.value ? { strict: true } : {}),
      });
    return to;
  };
  const noFloor: Bound = { name: 'no floor', key: undefined, value: Number.NEGATIVE_INFINITY };
  const noCeiling: Bound = { name: 'no ceiling', key: undefined, value: Number.POSITIVE_INFINITY };
  const fanMin: Bound = { name: 'fan.minPct', key: 'fan/minPct', value: fan.minPct };
  const fanMax: Bound = { name: 'fan.maxPct', key: 'fan/maxPct', value: fan.maxPct };
  setpoint.preferredMinC = inside(
    'setpoint/preferredMinC',
    'setpoint',
    input.setpoint?.preferredMinC,
    d.setpoint.preferredMinC,
    { name: 'setpoint.minC', key: 'setpoint/minC', value: setpoint.minC },
    { name: 'setpoint.maxC', key: 'setpoint/maxC', value: setpoint.maxC },
    'setpoint.minC ≤ preferredMinC ≤ setpoint.maxC (set it too when the range leaves its default)',
  );
  // The safety layer's floor under the law's: a law floor beneath it would be a floor never reached.
  const hardMinFanPct = inside(
    'hardMinFanPct',
    'fan',
    input.hardMinFanPct,
    d.hardMinFanPct,
    { name: 'the fan range', key: undefined, value: FAN_RANGE_PCT.min },
    fanMin,
    'hardMinFanPct ≤ fan.minPct (set it too when fan.minPct goes under its default)',
  );
  const degraded = { ...d.degraded, ...input.degraded };
  degraded.minFanPct = inside(
    'degraded/minFanPct',
    'fan',
    input.degraded?.minFanPct,
    d.degraded.minFanPct,
    fanMin,
    fanMax,
    'fan.minPct ≤ degraded.minFanPct ≤ fan.maxPct (set it too when the fan range leaves its default)',
  );
  const blindFanPct = inside(
    'blindFanPct',
    'fan',
    input.blindFanPct,
    d.blindFanPct,
    // The floor as it runs: the loaded site holds its defaults filled in, so the value alone decides.
    {
      name:
        hardMinFanPct === (input.hardMinFanPct ?? d.hardMinFanPct)
          ? 'hardMinFanPct'
          : 'hardMinFanPct held to fan.minPct',
      key: 'hardMinFanPct',
      value: hardMinFanPct,
    },
    { name: 'the fan range', key: undefined, value: FAN_RANGE_PCT.max },
    'hardMinFanPct ≤ blindFanPct (the safety layer would raise a blind group’s fans to its floor anyway)',
  );
  // Settings that act only when the group's fan demand or its hottest inlet reaches them: where the
  // fan range or the alarm keeps them from being reached, a part of the law would never act — no
  // colder air with the fans at their top, no warmer air at their floor, no neighbour asked for air,
  // a target the safety layer holds as too hot to slow any fan for.
  setpoint.fanHighPct = inside(
    'setpoint/fanHighPct',
    'fan',
    input.setpoint?.fanHighPct,
    d.setpoint.fanHighPct,
    noFloor,
    fanMax,
    'setpoint.fanHighPct ≤ fan.maxPct (the supply setpoint is lowered once the fans reach it)',
  );
  setpoint.fanLowPct = inside(
    'setpoint/fanLowPct',
    'fan',
    input.setpoint?.fanLowPct,
    d.setpoint.fanLowPct,
    fanMin,
    noCeiling,
    'fan.minPct ≤ setpoint.fanLowPct (the supply setpoint is raised once the fans fall to it)',
  );
  const help = { ...d.help, ...input.help };
  help.startPct = inside(
    'help/startPct',
    'fan',
    input.help?.startPct,
    d.help.startPct,
    noFloor,
    fanMax,
    'help.startPct < fan.maxPct (neighbours are asked as the demand rises from startPct to maxPct)',
    1,
  );
  const alarmInletC = input.alarmInletC ?? d.alarmInletC;
  const inletTargetC = inside(
    'inletTargetC',
    'inlet',
    input.inletTargetC,
    d.inletTargetC,
    noFloor,
    { name: 'alarmInletC', key: 'alarmInletC', value: alarmInletC },
    'inletTargetC < alarmInletC (at the alarm the safety layer slows no fan: the target could not be held)',
    0.5,
  );
  return { inletTargetC, fan, setpoint, help, degraded, hardMinFanPct, blindFanPct, crossed, moved };
}

/**
 * What the file sets in a group's tuning, over the defaults, that the law could not run as written
 * (`/controlGroups/N/tuning` at `at`): ranges whose ends cross (`fan: {maxPct: 20}` under the
 * default 30 % floor would let the fans reach 30 %), and a setting outside the range others make
 * (`degraded: {minFanPct: 20}` under `fan.minPct` 30 would run at 30). Refused at load, with both
 * values: the operator chooses which to change. A setting under a crossed range is judged once the
 * range is fixed (its problem would name an end the operator did not write).
 */
export function tuningProblems(input: ControlTuningInput | undefined, at: string): TuningProblem[] {
  if (!input) return [];
  const out: TuningProblem[] = [];
  const { crossed, moved } = settle(input);
  const fan = { ...DEFAULT_TUNING.fan, ...input.fan };
  const setpoint = { ...DEFAULT_TUNING.setpoint, ...input.setpoint };
  if (crossed.has('fan'))
    out.push({
      path: `${at}/fan/${input.fan?.maxPct !== undefined ? 'maxPct' : 'minPct'}`,
      message: `fan minPct (${fan.minPct}) is above maxPct (${fan.maxPct})`,
      allowed: 'minPct ≤ maxPct (set both when one leaves the default range)',
    });
  if (crossed.has('setpoint'))
    out.push({
      path: `${at}/setpoint/${input.setpoint?.maxC !== undefined ? 'maxC' : 'minC'}`,
      message: `setpoint minC (${setpoint.minC}) is above maxC (${setpoint.maxC})`,
      allowed: 'minC ≤ maxC (set both when one leaves the default range)',
    });
  for (const m of moved) {
    if (!m.written || crossed.has(m.range)) continue;
    out.push({
      path: `${at}/${m.key}`,
      message: `${m.key.replace('/', '.')} (${m.from}) is ${side(m)} ${m.bound.name} (${m.bound.value})`,
      allowed: m.allowed,
    });
  }
  return out;
}

/**
 * Defaults that a range the file moved leaves outside it, and where the group runs them instead
 * (`fan: {minPct: 10}` puts the default hardMinFanPct 20 above the fan floor: it runs at 10). Not
 * refused — the file did not write them — but said, at the setting that moved them, so that the
 * operator sees the value the group runs with.
 */
export function tuningNotes(input: ControlTuningInput | undefined, at: string): TuningProblem[] {
  if (!input) return [];
  const { crossed, moved } = settle(input);
  return moved
    .filter((m) => !m.written && !crossed.has(m.range))
    .map((m) => {
      const name = m.key.replace('/', '.');
      return {
        path: m.bound.key ? `${at}/${m.bound.key}` : at,
        message: `${name} is not set: its default ${m.from} is ${side(m)} ${m.bound.name} (${m.bound.value}), so the group runs ${name} ${m.to}`,
        allowed: `set ${name} in the file to choose it (${m.allowed.replace(/ \(.*\)$/, '')})`,
      };
    });
}

function side(m: Moved): string {
  return m.from < m.to ? 'below' : m.strict ? 'not under' : 'above';
}

/** A complete tuning from a (validated) partial one; ranges that cross are ordered, floors clamped in. */
export function resolveTuning(input: ControlTuningInput = {}): ControlTuning {
  const d = DEFAULT_TUNING;
  const { inletTargetC, fan, setpoint, help, degraded, hardMinFanPct, blindFanPct } = settle(input);
  return {
    inletTargetC,
    fan,
    setpoint,
    allocation: { ...d.allocation, ...input.allocation },
    help,
    coilLoad: { ...d.coilLoad, ...input.coilLoad },
    degraded,
    blindFanPct,
    hardMinFanPct,
    unitMinFanPct: { ...input.unitMinFanPct },
    inletRate: { ...d.inletRate, ...input.inletRate },
    learning: { ...d.learning, ...input.learning },
    alarmInletC: input.alarmInletC ?? d.alarmInletC,
  };
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

/** Optional per-group `influence[ahu][rack]` (≥ 0); absent, it is derived from the site's geometry. */
export const InfluenceSchema = T.Record(
  T.String({ minLength: 1 }),
  T.Record(T.String({ minLength: 1 }), T.Number({ minimum: 0, maximum: 1000 })),
  { description: 'how much each air handler cools each rack; default from positions (docs/control.md)' },
);
