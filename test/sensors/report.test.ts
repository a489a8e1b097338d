// Report validation: the hand-written check for the common report never accepts what the schema
// rejects, and a report it is unsure of still gets the schema's verdict (and its error message);
// beyond the schema, every number is finite and a report reads each sensor once.
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import {
  isPlainlyValidReport,
  parseReport,
  REPORT_AJV_OPTIONS,
  ReportSchema,
  repeatedSensor,
} from '../../src/sensors/report.ts';

const bySchema = new Ajv(REPORT_AJV_OPTIONS).compile(ReportSchema);

const good = {
  node: 'N00001',
  gateway: 'gw-1',
  rack: 'R-A01',
  seq: 42,
  sampledAt: '2025-01-01T00:00:00.000Z',
  hops: 2,
  rssiDbm: -60,
  batteryPct: 98.5,
  retries: 0,
  t: 123.4,
  readings: [
    { sensor: 'inlet-top', kind: 'inlet-top', value: 21.3, unit: 'Cel' },
    { sensor: 'rh', kind: 'humidity', value: 45.2, unit: '%RH' },
  ],
};

const emoji64 = '🌡'.repeat(64); // 64 code points, 128 UTF-16 units: the schema accepts it
const values: unknown[] = [
  undefined,
  null,
  true,
  0,
  -1,
  1,
  1.5,
  64,
  65,
  -200,
  -201,
  100,
  100.5,
  4_294_967_295,
  4_294_967_296,
  '',
  'x',
  'x'.repeat(16),
  'x'.repeat(17),
  'x'.repeat(32),
  'x'.repeat(33),
  'x'.repeat(40),
  'x'.repeat(41),
  'x'.repeat(64),
  'x'.repeat(65),
  emoji64,
  [],
  {},
];

/** The report with one field (a path) set to each value in turn, or deleted. */
function* variants(): Generator<unknown> {
  yield good;
  for (const body of [null, [], 7, 'report', [good]]) yield body;
  const top = Object.keys(good).filter((k) => k !== 'readings');
  for (const key of top) for (const v of values) yield { ...good, [key]: v };
  for (const v of values) yield { ...good, readings: v };
  const many = (n: number) => Array.from({ length: n }, (_, i) => ({ ...good.readings[0], sensor: `s${i}` }));
  yield { ...good, readings: many(32) };
  yield { ...good, readings: many(33) };
  for (const item of [null, [], 'x', 5]) yield { ...good, readings: [good.readings[0], item] };
  for (const key of Object.keys(good.readings[0]!))
    for (const v of values)
      yield { ...good, readings: [good.readings[1], { ...good.readings[0], [key]: v }] };
}

describe('report validation', () => {
  it('agrees with the schema on every variant, and never accepts what the schema rejects', () => {
    let n = 0;
    for (const body of variants()) {
      n++;
      const schemaSays = bySchema(body);
      if (isPlainlyValidReport(body)) expect(schemaSays, JSON.stringify(body)).toBe(true);
      const parsed = parseReport(JSON.stringify(body));
      expect(parsed.ok ? true : parsed.reason, JSON.stringify(body)).toBe(schemaSays ? true : 'schema');
    }
    expect(n).toBeGreaterThan(300);
  });

  it('takes the common report without the schema, and leaves the unusual to it', () => {
    expect(isPlainlyValidReport(good)).toBe(true);
    // valid, but the quick check counts UTF-16 units where the schema counts code points
    const wide = { ...good, node: emoji64 };
    expect(isPlainlyValidReport(wide)).toBe(false);
    expect(parseReport(JSON.stringify(wide)).ok).toBe(true);
  });

  it('explains a rejected report with the schema error', () => {
    const r = parseReport(JSON.stringify({ ...good, seq: 0 }));
    expect(r).toEqual({ ok: false, reason: 'schema', detail: '/seq must be >= 1' });
  });

  it('drops a report that reads one sensor twice: no copy is applied, whichever is right', () => {
    const top = good.readings[0]!;
    const rh = good.readings[1]!;
    const six = { ...good, readings: Array.from({ length: 6 }, () => top) };
    expect(parseReport(JSON.stringify(six))).toEqual({
      ok: false,
      reason: 'schema',
      detail: '/readings/1/sensor repeats an earlier reading\'s sensor "inlet-top"',
    });
    const apart = { ...good, readings: [top, rh, { ...top, value: 30 }] };
    expect(parseReport(JSON.stringify(apart))).toMatchObject({ ok: false, reason: 'schema' });
    expect(repeatedSensor(apart.readings)).toBe(2);
    expect(repeatedSensor(good.readings)).toBe(-1);
    // the same kind twice under two sensor ids is two sensors
    expect(
      parseReport(JSON.stringify({ ...good, readings: [top, { ...top, sensor: 'inlet-top-2' }] })).ok,
    ).toBe(true);
  });

  it('takes no number that is not finite: 1e999 is Infinity to JSON.parse, and no reading', () => {
    const text = JSON.stringify({ ...good, readings: [{ ...good.readings[0], value: 12345 }] });
    expect(parseReport(text.replace('12345', '1e999'))).toEqual({
      ok: false,
      reason: 'schema',
      detail: '/readings/0/value must be a finite number',
    });
    expect(parseReport(text.replace('12345', '-1e999'))).toMatchObject({ ok: false, reason: 'schema' });
    for (const field of ['retries', 'batteryPct', 'rssiDbm', 'hops', 'seq']) {
      const body = JSON.stringify({ ...good, [field]: 12345 }).replace('12345', '1e999');
      expect(parseReport(body), field).toMatchObject({
        ok: false,
        reason: 'schema',
        detail: expect.stringMatching(new RegExp(`^/${field} must be`)),
      });
    }
  });
});
