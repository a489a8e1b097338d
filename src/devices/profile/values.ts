// A profile's values in engineering units (°C, %, kW, s) and how a point's raw value maps to them,
// shared by the Modbus and OPC-UA codecs: the command and status shapes, a point's scaling, and the
// refusal (COOLCTL_E_PROFILE_VALUE) of a value a point cannot carry. Pure: no I/O, no clocks.
import { CoolctlError, ErrorCodes } from '../../errors.ts';
import { inRange, POINT_RANGES, type PointRange } from '../../unit-contract.ts';
import { isPointName, POINTS, type PointKind, type ProfileMode } from './points.ts';
import type { ModbusPoint, OpcuaPoint } from './schema.ts';

/** What the controller asks for; only fields the profile has a point for may be given (`commandPoints`). */
export interface ProfileCommand {
  epoch?: number;
  heartbeat?: number;
  remoteEnable?: boolean;
  run?: boolean;
  fanPct?: number;
  supplySetpointC?: number;
  watchdogTimerS?: number;
}

/** Decoded status. A field is undefined when the profile has no such point, it was not read, or the unit said "no data". */
export interface DecodedStatus extends ProfileCommand {
  supplyC?: number;
  returnC?: number;
  supplySetpointFeedbackC?: number;
  localSetpointC?: number;
  fanFeedbackPct?: number;
  cwValvePct?: number;
  fanKw?: number;
  coolingKw?: number;
  /** 'unknown' when the unit reports a code the profile's `enum` does not map. */
  mode?: ProfileMode | 'unknown';
  modeCode?: number;
  runFeedback?: boolean;
  epochFeedback?: number;
  heartbeatFeedback?: number;
  watchdogS?: number;
  /** Names of the alarms that are on (the profile's `alarm` / `alarmBits` names). */
  alarms: string[];
  /** Points that were read but carried a no-data value (or a state the profile does not define). */
  absent: string[];
}

/** Values the simulator shows a unit to have; alarm names listed are on, every other alarm off. */
export type ImageValues = Partial<Omit<DecodedStatus, 'alarms' | 'absent' | 'modeCode'>> & {
  alarms?: readonly string[];
};

/** A command value a point cannot carry, or a field the profile has no point for. */
export class ProfileValueError extends CoolctlError {
  readonly point: string;
  constructor(profile: string, point: string, message: string) {
    super(ErrorCodes.PROFILE_VALUE, `profile ${profile}: ${point}: ${message}`);
    this.point = point;
  }
}

/** How an engineering value maps to a raw one; shared by Modbus and OPC-UA points. */
export interface Scaling {
  kind: PointKind | 'alarm';
  /** raw × scale + offset; `inverse` set when 1/scale is an integer, so 21.5 °C × 10 is exactly 215. */
  scale: number;
  inverse: number | undefined;
  offset: number;
  fahrenheit: boolean;
  inverted: boolean;
  modes: Map<number, ProfileMode>;
  codeOfMode: Map<ProfileMode, number>;
  alarm: string | undefined;
  alarmBits: [number, string][];
}

export function scalingOf(name: string, p: ModbusPoint | OpcuaPoint): Scaling {
  const scale = p.scale ?? 1;
  const inv = 1 / scale;
  const modes = new Map<number, ProfileMode>();
  const codeOfMode = new Map<ProfileMode, number>();
  for (const [code, mode] of Object.entries(p.enum ?? {})) {
    modes.set(Number(code), mode);
    if (!codeOfMode.has(mode)) codeOfMode.set(mode, Number(code));
  }
  return {
    kind: isPointName(name) ? POINTS[name].kind : 'alarm',
    scale,
    inverse: Math.abs(inv - Math.round(inv)) < 1e-9 ? Math.round(inv) : undefined,
    offset: p.offset ?? 0,
    fahrenheit: p.unit === 'F',
    inverted: p.inverted === true,
    modes,
    codeOfMode,
    alarm: p.alarm,
    alarmBits: Object.entries(p.alarmBits ?? {}).map(([bit, n]) => [Number(bit), n]),
  };
}

/** Raw → engineering units (°C, %, kW, s). */
export function toEngineering(s: Scaling, raw: number): number {
  const v = (s.inverse !== undefined ? raw / s.inverse : raw * s.scale) + s.offset;
  return s.fahrenheit ? ((v - 32) * 5) / 9 : v;
}

/** Engineering units → raw, before rounding. */
export function toRaw(s: Scaling, value: number): number {
  const v = (s.fahrenheit ? (value * 9) / 5 + 32 : value) - s.offset;
  return s.inverse !== undefined ? v * s.inverse : v / s.scale;
}

type Out = Record<string, unknown> & { alarms: string[]; absent: string[] };

/** One raw value into `status`, under the point's name (mode, booleans and alarms by their meaning). */
export function decodeValue(name: string, s: Scaling, raw: number, status: DecodedStatus): void {
  const out = status as unknown as Out;
  if (s.kind === 'alarm') {
    if (s.alarm !== undefined) {
      if ((raw !== 0) !== s.inverted) out.alarms.push(s.alarm);
    }
    for (const [bit, alarm] of s.alarmBits) {
      if (Math.floor(raw / 2 ** bit) % 2 === 1) out.alarms.push(alarm);
    }
    return;
  }
  switch (s.kind) {
    case 'mode':
      status.mode = s.modes.get(raw) ?? 'unknown';
      status.modeCode = raw;
      return;
    case 'boolean':
      if (raw !== 0 && raw !== 1) {
        out.absent.push(name);
        return;
      }
      out[name] = (raw === 1) !== s.inverted;
      return;
    default:
      out[name] = toEngineering(s, raw);
  }
}

/**
 * A ranged command (fan speed, supply setpoint) inside the device contract's range must reach the
 * unit inside it too: 27 °C is 80.6 °F, and a unit in whole °F would get 81 °F = 27.2 °C — a
 * setpoint the unit (and the simulator) refuses, on every write at the top of the range. Rounding
 * goes one raw step toward the range instead; a value outside the range is the safety layer's to
 * refuse and is left as it is, and a point with no step inside the range is refused.
 */
export function keptInRange(
  name: string,
  s: Scaling,
  value: number,
  raw: number,
  step: (raw: number, dir: 1 | -1) => number,
  fail: (why: string) => never,
): number {
  const range: PointRange | undefined = (POINT_RANGES as Record<string, PointRange>)[name];
  if (!range || !inRange(value, range)) return raw;
  const back = toEngineering(s, raw);
  if (inRange(back, range)) return raw;
  // Scales are positive (rules.ts), so the engineering value grows with the raw one.
  const inward = step(raw, back > range.max ? -1 : 1);
  if (!inRange(toEngineering(s, inward), range)) {
    fail(`${value} has no raw value that reads back inside ${range.min}…${range.max} (nearest: ${back})`);
  }
  return inward;
}
