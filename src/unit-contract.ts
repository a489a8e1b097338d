// The device contract: what coolctl means by an air handler, whatever its protocol or vendor — its
// modes, the command it takes, the status it reports, and the range of every point. The one owner
// of these facts: the API's schemas, the safety layer, the adapters, the profiles and the simulator
// import them from here (docs/device-io.md, "The device contract"); nobody keeps a copy.

/** A unit's operating modes, in the order of their numeric codes on coolctl-native units. */
export const AHU_MODES = ['local', 'remote', 'fallback', 'tripped'] as const;
export type AhuMode = (typeof AHU_MODES)[number];
/** A mode as read from a unit: one of the contract's, or `unknown` for a code nobody maps. */
export type AhuModeName = AhuMode | 'unknown';

/** Numeric mode codes on the native wire (Modbus status register, OPC-UA Mode variable). */
export const MODE_CODE: Readonly<Record<AhuMode, number>> = Object.freeze(
  Object.fromEntries(AHU_MODES.map((m, i) => [m, i])) as Record<AhuMode, number>,
);

/** Bits of the native `alarms` word. */
export const ALARM_BITS = { commLoss: 1, trip: 2, highSupplyTemp: 4 } as const;

export type AhuProtocol = 'modbus-tcp' | 'modbus-rtu' | 'opcua';

/** A closed range of a point, in the unit its name carries. */
export interface PointRange {
  readonly min: number;
  readonly max: number;
}

/**
 * Supply-air setpoint, commanded and local. 12 °C keeps the coil well above freezing and the supply
 * air above any dew point a hall runs at; 27 °C is the inlet alarm (ASHRAE A1 recommended maximum):
 * supply air warmer than that cannot hold an inlet under it. Units refuse a command outside it.
 */
export const SUPPLY_SETPOINT_RANGE_C: PointRange = Object.freeze({ min: 12, max: 27 });
/** Fan speed, commanded and read back. */
export const FAN_RANGE_PCT: PointRange = Object.freeze({ min: 0, max: 100 });
/**
 * Air temperatures a unit reads (supply, return: read only). Outside it the reading is a broken
 * probe or a "no data" code (3276.7, −273), never air a controller should act on.
 */
export const AIR_TEMP_RANGE_C: PointRange = Object.freeze({ min: -20, max: 70 });
/**
 * Electrical and cooling power a unit reads (fan kW, cooling kW: read only). No CRAH or CRAC draws
 * or moves a megawatt: above it the reading is a fault code (0x7FFF in tenths of a kW is 3276.7).
 */
export const POWER_RANGE_KW: PointRange = Object.freeze({ min: 0, max: 1000 });
/** Chilled-water valve position (read only). */
export const VALVE_RANGE_PCT: PointRange = Object.freeze({ min: 0, max: 100 });

/** The range of each ranged point, by the point's name. */
export const POINT_RANGES = Object.freeze({
  fanPct: FAN_RANGE_PCT,
  supplySetpointC: SUPPLY_SETPOINT_RANGE_C,
  localSetpointC: SUPPLY_SETPOINT_RANGE_C,
  cwValvePct: VALVE_RANGE_PCT,
} as const);
export type RangedPoint = keyof typeof POINT_RANGES;

/** Finite and inside the range, ends included. */
export function inRange(x: number, r: PointRange): boolean {
  return Number.isFinite(x) && x >= r.min && x <= r.max;
}

/** "12…27" — how messages, schemas' descriptions and docs print a range. */
export function rangeText(r: PointRange): string {
  return `${r.min}…${r.max}`;
}

/** JSON Schema bounds of a ranged point, for request schemas (fastify, OpenAPI) and TypeBox. */
export function rangeSchema(point: RangedPoint): { type: 'number'; minimum: number; maximum: number } {
  const r = POINT_RANGES[point];
  return { type: 'number', minimum: r.min, maximum: r.max };
}

/** What control asks of a unit, besides fencing: the two commanded values. */
export interface UnitSetpoints {
  fanPct: number;
  supplySetpointC: number;
}

/** A fenced command: epoch, heartbeat and commands, always written together in one request. */
export interface AhuCommand extends UnitSetpoints {
  epoch: number;
  heartbeat: number;
  remoteEnable: boolean;
}

/** What a unit measures. */
export interface AhuMeasurements {
  fanPct: number;
  supplyC: number;
  returnC: number;
  cwValvePct: number;
  fanKw: number;
  coolingKw: number;
}

/** Everything a unit reports (a native unit reports all of it; a profile maps what its unit has). */
export interface AhuStatus extends AhuMeasurements {
  id: string;
  protocol: AhuProtocol;
  mode: AhuMode;
  /** Setpoint the unit is controlling to now (remote command, or local setpoint). */
  supplySetpointC: number;
  /** Fan speed the unit is asked for now (remote command, or local speed; 0 when tripped). */
  fanCmdPct: number;
  epoch: number;
  heartbeat: number;
  lastWriter: string | null;
  alarms: number;
  watchdogS: number;
  localSetpointC: number;
}
