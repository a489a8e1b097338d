// A sensor node report as it arrives from a gateway (docs/mqtt-topics.md), and its validation.
// Everything from the wire is untrusted: size first, then JSON, then the schema (every number
// finite), then one reading per sensor; the result is either a typed report or a drop reason with a
// one-line detail, never an exception.
import { type Static, Type as T } from '@sinclair/typebox';
import { Ajv } from 'ajv';
import { isRecord } from '../util/is-record.ts';

/** Why an incoming report (or one reading of it) was not used; each is a counter label. */
export type DropReason =
  | 'too-large'
  | 'malformed-json'
  | 'schema'
  | 'unknown-node'
  | 'topic-mismatch'
  | 'site-mismatch'
  | 'retained'
  | 'duplicate'
  | 'out-of-order'
  | 'rate-limited'
  | 'unknown-sensor'
  | 'kind-mismatch';

export const DROP_REASONS: readonly DropReason[] = [
  'too-large',
  'malformed-json',
  'schema',
  'unknown-node',
  'topic-mismatch',
  'site-mismatch',
  'retained',
  'duplicate',
  'out-of-order',
  'rate-limited',
  'unknown-sensor',
  'kind-mismatch',
];

/** A real report is well under 2 KB; anything this large is garbage or an attack. */
export const MAX_REPORT_BYTES = 16 * 1024;

export const ReportSchema = T.Object({
  node: T.String({ minLength: 1, maxLength: 64 }),
  gateway: T.String({ minLength: 1, maxLength: 64 }),
  rack: T.Optional(T.String({ maxLength: 64 })),
  seq: T.Integer({ minimum: 1, maximum: 4_294_967_295 }),
  sampledAt: T.Optional(T.String({ maxLength: 40 })),
  hops: T.Optional(T.Integer({ minimum: 0, maximum: 64 })),
  rssiDbm: T.Optional(T.Number({ minimum: -200, maximum: 50 })),
  batteryPct: T.Optional(T.Number({ minimum: 0, maximum: 100 })),
  retries: T.Optional(T.Integer({ minimum: 0 })),
  readings: T.Array(
    T.Object({
      sensor: T.String({ minLength: 1, maxLength: 64 }),
      kind: T.String({ maxLength: 32 }),
      value: T.Number(),
      unit: T.Optional(T.String({ maxLength: 16 })),
    }),
    { minItems: 1, maxItems: 32 },
  ),
});

export type Report = Static<typeof ReportSchema>;

/**
 * `strictNumbers`: JSON.parse reads `1e999` as Infinity, which JSON Schema's `number` and `integer`
 * would take; a reading must be a finite number, like every other figure of a report.
 */
export const REPORT_AJV_OPTIONS = { allErrors: false, strict: false, strictNumbers: true } as const;
const ajv = new Ajv(REPORT_AJV_OPTIONS);
const validate = ajv.compile<Report>(ReportSchema);

export type ParseResult = { ok: true; report: Report } | { ok: false; reason: DropReason; detail: string };

/** Parses one report payload; never throws. */
export function parseReport(payload: Buffer | string): ParseResult {
  if (payload.length > MAX_REPORT_BYTES) {
    return { ok: false, reason: 'too-large', detail: `${payload.length} bytes, at most ${MAX_REPORT_BYTES}` };
  }
  let body: unknown;
  try {
    body = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch (err) {
    return { ok: false, reason: 'malformed-json', detail: (err as Error).message };
  }
  return checkReport(body);
}

/**
 * Judges a report however it arrived (parsed from MQTT, or built from a Modbus gateway's registers):
 * the schema's limits, then one reading per sensor; never throws.
 */
export function checkReport(body: unknown): ParseResult {
  // The schema is the authority; the hand-written check only lets the common, plainly valid report
  // skip it. Whatever it is unsure of (or rejects) goes to the schema, which decides and explains.
  if (!isPlainlyValidReport(body) && !validate(body)) {
    const e = validate.errors?.[0];
    const type = e?.keyword === 'type' ? (e.params as { type?: unknown }).type : undefined;
    const message =
      type === 'number' || type === 'integer' ? `must be a finite ${type}` : (e?.message ?? 'is invalid');
    return { ok: false, reason: 'schema', detail: `${e?.instancePath || '/'} ${message}` };
  }
  const report = body as Report;
  // Beyond what JSON Schema can say: a sensor read twice in one report would be applied twice (six
  // copies are "stuck" at once, alternating ones "noisy"), and which copy is right nobody knows.
  const repeat = repeatedSensor(report.readings);
  if (repeat > 0) {
    return {
      ok: false,
      reason: 'schema',
      detail: `/readings/${repeat}/sensor repeats an earlier reading's sensor "${report.readings[repeat]!.sensor}"`,
    };
  }
  return { ok: true, report };
}

/**
 * The index of the first reading whose sensor an earlier reading of the report names too, or -1.
 * Compares every pair: a report has a handful of readings (at most 32), and this allocates nothing.
 */
export function repeatedSensor(readings: Report['readings']): number {
  for (let i = 1; i < readings.length; i++) {
    const sensor = readings[i]!.sensor;
    for (let j = 0; j < i; j++) if (readings[j]!.sensor === sensor) return i;
  }
  return -1;
}

/**
 * True only for a body that `ReportSchema` accepts; false means "ask the schema", not "invalid".
 * Stricter than the schema where exactness would cost: a string's UTF-16 length must be within the
 * schema's limit (the schema counts code points, which are never more).
 */
export function isPlainlyValidReport(b: unknown): boolean {
  if (!isRecord(b)) return false;
  const r = b as Record<string, unknown>;
  if (!isText(r.node, 1, 64) || !isText(r.gateway, 1, 64)) return false;
  if (r.rack !== undefined && !isText(r.rack, 0, 64)) return false;
  if (!isInteger(r.seq, 1, 4_294_967_295)) return false;
  if (r.sampledAt !== undefined && !isText(r.sampledAt, 0, 40)) return false;
  if (r.hops !== undefined && !isInteger(r.hops, 0, 64)) return false;
  if (r.rssiDbm !== undefined && !isNumber(r.rssiDbm, -200, 50)) return false;
  if (r.batteryPct !== undefined && !isNumber(r.batteryPct, 0, 100)) return false;
  if (r.retries !== undefined && !isInteger(r.retries, 0, Number.POSITIVE_INFINITY)) return false;
  const readings = r.readings;
  if (!Array.isArray(readings) || readings.length < 1 || readings.length > 32) return false;
  for (let i = 0; i < readings.length; i++) {
    const x = readings[i] as unknown;
    if (!isRecord(x)) return false;
    const reading = x as Record<string, unknown>;
    if (!isText(reading.sensor, 1, 64) || !isText(reading.kind, 0, 32)) return false;
    if (!isNumber(reading.value, Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY)) return false;
    if (reading.unit !== undefined && !isText(reading.unit, 0, 16)) return false;
  }
  return true;
}

function isText(v: unknown, min: number, max: number): boolean {
  return typeof v === 'string' && v.length >= min && v.length <= max;
}

function isNumber(v: unknown, min: number, max: number): boolean {
  return typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max;
}

function isInteger(v: unknown, min: number, max: number): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}
