// Which range each measured point of a unit's readings must be in to be served as good, whatever the
// protocol or vendor: the one table native Modbus, OPC-UA and profile units screen readings with (the
// ranges themselves are the device contract's, ../unit-contract.ts). A figure outside it, or a no-data
// code its wire format names, is a broken probe: absent — NaN, listed in `absent`, quality
// `uncertain` — counted per unit and point, and logged at most once a minute per unit. The link is
// not touched: the unit answered, one bad point is not a communication loss.
import type { Logger } from 'pino';
import {
  AIR_TEMP_RANGE_C,
  FAN_RANGE_PCT,
  inRange,
  POWER_RANGE_KW,
  type PointRange,
  VALVE_RANGE_PCT,
} from '../unit-contract.ts';
import type { AhuReadings } from './device-io.ts';
import type { DeviceMeter } from './metrics.ts';

/** The range each measured point of `AhuReadings` can be in; the order is the order of `absent`. */
export const READING_RANGES = Object.freeze({
  fanPct: FAN_RANGE_PCT,
  // A setpoint in force may be a local one outside what coolctl commands: it is an air temperature.
  supplySetpointC: AIR_TEMP_RANGE_C,
  supplyC: AIR_TEMP_RANGE_C,
  returnC: AIR_TEMP_RANGE_C,
  cwValvePct: VALVE_RANGE_PCT,
  fanKw: POWER_RANGE_KW,
  coolingKw: POWER_RANGE_KW,
} as const satisfies Record<string, PointRange>);

export type ScreenedPoint = keyof typeof READING_RANGES;
export const SCREENED_POINTS: readonly ScreenedPoint[] = Object.freeze(
  Object.keys(READING_RANGES) as ScreenedPoint[],
);

/** Whether `name` is one of the measured points the screen judges. */
export function isScreenedPoint(name: string): name is ScreenedPoint {
  return Object.hasOwn(READING_RANGES, name);
}

/** Whether `value` can be what `point` measures (finite, inside its range, ends included). */
export function isPlausible(point: ScreenedPoint, value: number): boolean {
  return inRange(value, READING_RANGES[point]);
}

/**
 * `r` with each screened point that is outside its range, or named in `noData` (a no-data code of the
 * wire format), made absent: NaN, appended to `absent` (in SCREENED_POINTS order), and quality
 * `uncertain` (a `bad` one stays bad). Pure: `r` itself is returned when every point is plausible.
 */
export function screenReadings(r: AhuReadings, noData?: ReadonlySet<ScreenedPoint>): AhuReadings {
  let out: AhuReadings | undefined;
  for (const p of SCREENED_POINTS) {
    if (!noData?.has(p) && isPlausible(p, r[p])) continue;
    out ??= { ...r, absent: [...(r.absent ?? [])] };
    out[p] = Number.NaN;
    out.absent!.push(p);
  }
  if (!out) return r;
  if (out.quality === 'good') out.quality = 'uncertain';
  return out;
}

/** At most one line per unit in this long (ms) about its absent points, however often it is read. */
export const ABSENT_LOG_INTERVAL_MS = 60_000;

/**
 * One unit's absent points: each read counts every absent point (coolctl_device_absent_readings_total),
 * and a change of the set is logged — the first change at once, later ones at most once per
 * `intervalMs` (a probe that flickers between good and broken on every read costs one line a
 * minute), the line saying how many changes went unlogged. The set in force is always logged
 * eventually: a change held back is written at the first read after the interval.
 */
export class AbsentPointsNotice {
  private readonly log: () => Logger;
  private readonly meter: DeviceMeter | undefined;
  private readonly intervalMs: number;
  private readonly now: () => number;
  /** The set last logged, joined; '' is "every point usable". */
  private logged = '';
  private loggedAtMs = Number.NEGATIVE_INFINITY;
  /** Changes of the set since the last line (the one a line reports included). */
  private changes = 0;
  private lastSeen = '';

  constructor(
    log: () => Logger,
    meter: DeviceMeter | undefined,
    intervalMs = ABSENT_LOG_INTERVAL_MS,
    now: () => number = () => performance.now(),
  ) {
    this.log = log;
    this.meter = meter;
    this.intervalMs = intervalMs;
    this.now = now;
  }

  /** One read's absent points; `fields` adds to the warning line (made only when it is written). */
  note(absent: readonly string[] | undefined, fields?: () => Record<string, unknown>): void {
    const points = absent ?? [];
    for (const p of points) this.meter?.absent(p);
    const key = points.join(',');
    if (key !== this.lastSeen) {
      this.lastSeen = key;
      this.changes++;
    }
    if (key === this.logged) return;
    const t = this.now();
    if (t - this.loggedAtMs < this.intervalMs) return;
    const notLogged = this.changes - 1;
    this.logged = key;
    this.loggedAtMs = t;
    this.changes = 0;
    if (key === '') {
      this.log().info({ changesNotLogged: notLogged }, 'every point reads a usable value again');
      return;
    }
    this.log().warn(
      { absent: points, changesNotLogged: notLogged, ...fields?.() },
      'points read no data or a value outside what they can be; shown as absent (NaN), quality uncertain',
    );
  }
}
