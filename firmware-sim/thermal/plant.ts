// The chilled-water plant behind the air handlers' coils (equations, sources and a worked example:
// docs/thermal-model.md#chilled-water-plant): a water-cooled chiller on a published EnergyPlus /
// DOE-2 EIR curve, a cooling tower, pumps, and a waterside economiser ahead of the chiller.
// Pure functions of one operating point: the plant's water loops settle in minutes, far faster
// than anything its energy depends on, so it has no state of its own.

/** A chiller's EnergyPlus `Chiller:Electric:EIR` performance curves (PLANT-MODEL-NOTES.md). */
export interface ChillerCurve {
  name: string;
  source: string;
  /** Reference COP at the reference point. */
  copRef: number;
  /** Capacity vs temperature, {a…f} of a + b·Tcw + c·Tcw² + d·Tce + e·Tce² + f·Tcw·Tce. */
  capFT: readonly [number, number, number, number, number, number];
  /** Energy input ratio vs temperature, same form. */
  eirFT: readonly [number, number, number, number, number, number];
  /** Energy input ratio vs part load, a + b·PLR + c·PLR². */
  eirFPLR: readonly [number, number, number];
  /** Leaving chilled-water °C the curves were fitted over; inputs are clamped into it. */
  lchwtRangeC: readonly [number, number];
  /** Entering condenser-water °C the curves were fitted over; inputs are clamped into it. */
  ecwtRangeC: readonly [number, number];
  /** Below this part-load ratio the chiller cycles: power × PLR / plrMin at plrMin's efficiency. */
  plrMin: number;
  /** Below this (and above plrMin) it false-loads: power flat at this ratio's. */
  minUnloadRatio: number;
}

/** Carrier 19XR, 742 kW, COP 5.42, variable-speed drive: Modelica Buildings `ElectricEIR.mo`, used by its data-centre plant. */
export const CARRIER_19XR: ChillerCurve = {
  name: 'Carrier 19XR 742 kW VSD',
  source: 'Modelica Buildings Fluid/Chillers/Data/ElectricEIR.mo',
  copRef: 5.42,
  capFT: [0.9797101, -2.895701e-3, -8.970718e-4, 0.0103144, -7.431651e-4, 1.453508e-3],
  eirFT: [0.9946139, -0.04829399, 4.674277e-4, -1.158726e-3, 5.762583e-4, 2.148192e-4],
  eirFPLR: [0.1202277, 0.1396384, 0.7394038],
  lchwtRangeC: [5.56, 10],
  ecwtRangeC: [11.25, 23.89],
  plrMin: 0.19,
  minUnloadRatio: 0.19,
};

/** The DOE-2 centrifugal chiller, COP 5.50 (EnergyPlus `datasets/Chillers.idf`). */
export const DOE2_CENTRIFUGAL: ChillerCurve = {
  name: 'DOE-2 centrifugal 5.50 COP',
  source: 'EnergyPlus datasets/Chillers.idf',
  copRef: 5.5,
  capFT: [0.257896, 0.0389016, -2.1708e-4, 0.0468684, -9.4284e-4, -3.4344e-4],
  eirFT: [0.933884, -0.058212, 4.50036e-3, 2.43e-3, 4.86e-4, -1.215e-3],
  eirFPLR: [0.222903, 0.313387, 0.46371],
  lchwtRangeC: [5, 10],
  ecwtRangeC: [24, 35],
  plrMin: 0.1,
  minUnloadRatio: 0.2,
};

/** Outdoor wet bulb over the day: meanC + swingK·cos(2π·(h − peakHour)/24). */
export interface WetBulbProfile {
  meanC: number;
  swingK: number;
  peakHour: number;
}

/** A warm mid-latitude summer day (inferred): 14 °C wet bulb at 03:00, 20 °C at 15:00. */
export const SUMMER_WET_BULB: WetBulbProfile = { meanC: 17, swingK: 3, peakHour: 15 };

export function wetBulbC(hourOfDay: number, p: WetBulbProfile): number {
  return p.meanC + p.swingK * Math.cos(((hourOfDay - p.peakHour) / 24) * 2 * Math.PI);
}

export interface PlantParams {
  chiller: ChillerCurve;
  /** Chiller reference capacity, kW; absent: the sum of the hall's unit coil capacities. */
  chillerRefKw?: number;
  /** Supply air sits this far above the chilled water entering the coil, K (inferred: 2–4 K coils). */
  coilApproachK: number;
  /** Chilled-water supply is kept in this range, °C (Modelica data-centre example's reset range). */
  chwSupplyRangeC: readonly [number, number];
  /** Chilled-water return − supply, K, held by variable-flow pumps (inferred). */
  chwDeltaK: number;
  /** Tower leaving water above the wet bulb, K (ASHRAE G36 default, Modelica). */
  towerApproachK: number;
  /** Economiser heat exchanger approach, K (ASHRAE G36 default, Modelica). */
  hxApproachK: number;
  /** The economiser runs while its predicted outlet is this far below the chilled-water return, K. */
  economiserOffsetK: number;
  /** Chilled- and condenser-water pumps, kW per kW of cooling (inferred: ASHRAE 90.1 App. G 22 + 19 W/gpm). */
  pumpKwPerKw: number;
  /** Tower fans, kW per kW of heat rejected (inferred: ASHRAE 90.1 App. G 38.2 gpm/hp). */
  towerFanKwPerKw: number;
  wetBulb: WetBulbProfile;
}

export const DEFAULT_PLANT: PlantParams = {
  chiller: CARRIER_19XR,
  coilApproachK: 3,
  chwSupplyRangeC: [5.56, 22],
  chwDeltaK: 6,
  towerApproachK: 2,
  hxApproachK: 2,
  economiserOffsetK: 1,
  pumpKwPerKw: 0.03,
  towerFanKwPerKw: 0.015,
  wetBulb: SUMMER_WET_BULB,
};

/** The chilled-water supply the units need: their lowest supply-air setpoint minus the coil approach, bounded. */
export function chwSupplyForC(setpointsC: readonly number[], p: PlantParams): number {
  const [lo, hi] = p.chwSupplyRangeC;
  if (setpointsC.length === 0) return hi;
  return clamp(Math.min(...setpointsC) - p.coilApproachK, lo, hi);
}

export type PlantMode = 'off' | 'free' | 'partial' | 'mechanical';

export interface PlantPoint {
  mode: PlantMode;
  wetBulbC: number;
  chwSupplyC: number;
  chwReturnC: number;
  condenserC: number;
  /** Economiser heat-exchanger outlet (G36 prediction at design flow). */
  economiserOutletC: number;
  /** Cooling the economiser carries, kW; the chiller carries the rest. */
  freeCoolingKw: number;
  chillerLoadKw: number;
  plr: number;
  chillerKw: number;
  pumpKw: number;
  towerFanKw: number;
  /** chillerKw + pumpKw + towerFanKw. */
  plantKw: number;
}

/**
 * The plant's electrical power carrying `loadKw` of coil duty at `chwSupplyC` with the outdoor
 * wet bulb at `wetBulbC`. Economiser (notes: ASHRAE G36 and 90.1 §6.5.1, integrated): free while its
 * outlet ≤ chilled-water supply; partial while it is more than `economiserOffsetK` below the
 * return, precooling the return water to its outlet; off above. The chiller's curve inputs are
 * clamped into the range it was fitted over (data halls run warmer chilled water than the curves
 * know: above 10 °C it is credited as if at 10 °C, never extrapolated).
 */
export function plantPoint(
  loadKw: number,
  chwSupplyC: number,
  wetBulb: number,
  p: PlantParams,
  chillerRefKw: number,
): PlantPoint {
  const chwReturnC = chwSupplyC + p.chwDeltaK;
  const condenserC = wetBulb + p.towerApproachK;
  const economiserOutletC = wetBulb + p.towerApproachK + p.hxApproachK;
  const base = { wetBulbC: wetBulb, chwSupplyC, chwReturnC, condenserC, economiserOutletC };
  const load = Math.max(0, loadKw);
  if (!(load > 0))
    return {
      ...base,
      mode: 'off',
      freeCoolingKw: 0,
      chillerLoadKw: 0,
      plr: 0,
      chillerKw: 0,
      pumpKw: 0,
      towerFanKw: 0,
      plantKw: 0,
    };
  let share = 0;
  if (economiserOutletC <= chwSupplyC) share = 1;
  else if (economiserOutletC < chwReturnC - p.economiserOffsetK)
    share = (chwReturnC - economiserOutletC) / (chwReturnC - chwSupplyC);
  const freeCoolingKw = load * share;
  const chillerLoadKw = load - freeCoolingKw;
  const { plr, kw: chillerKw } = chillerPower(chillerLoadKw, chwSupplyC, condenserC, p.chiller, chillerRefKw);
  const pumpKw = p.pumpKwPerKw * load;
  const towerFanKw = p.towerFanKwPerKw * (load + chillerKw);
  return {
    ...base,
    mode: share >= 1 ? 'free' : share > 0 ? 'partial' : 'mechanical',
    freeCoolingKw,
    chillerLoadKw,
    plr,
    chillerKw,
    pumpKw,
    towerFanKw,
    plantKw: chillerKw + pumpKw + towerFanKw,
  };
}

/**
 * EnergyPlus `Chiller:Electric:EIR`: Q_avail = Q_ref·CAPFT, PLR = Q / Q_avail clipped to [0, 1],
 * P = Q_avail / COP_ref · EIRFT · EIRFPLR; false loading below the minimum unloading ratio,
 * cycling below PLRmin. A load beyond Q_avail is carried at PLR 1 (the plant is sized so it is not).
 */
export function chillerPower(
  loadKw: number,
  lchwtC: number,
  ecwtC: number,
  c: ChillerCurve,
  refKw: number,
): { plr: number; kw: number } {
  if (!(loadKw > 0) || !(refKw > 0)) return { plr: 0, kw: 0 };
  const tcw = clamp(lchwtC, c.lchwtRangeC[0], c.lchwtRangeC[1]);
  const tce = clamp(ecwtC, c.ecwtRangeC[0], c.ecwtRangeC[1]);
  const qAvail = refKw * biquadratic(c.capFT, tcw, tce);
  const plr = clamp(loadKw / qAvail, 0, 1);
  const cycling = plr < c.plrMin ? plr / c.plrMin : 1;
  const plrEff = Math.max(plr, c.minUnloadRatio, c.plrMin);
  const [a, b, q] = c.eirFPLR;
  const eirFPlr = a + b * plrEff + q * plrEff * plrEff;
  return { plr, kw: (qAvail / c.copRef) * biquadratic(c.eirFT, tcw, tce) * eirFPlr * cycling };
}

function biquadratic(
  k: readonly [number, number, number, number, number, number],
  x: number,
  y: number,
): number {
  return k[0] + k[1] * x + k[2] * x * x + k[3] * y + k[4] * y * y + k[5] * x * y;
}

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}
