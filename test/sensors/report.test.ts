// Report validation: the hand-written check for the common report never accepts what the schema
// rejects, and a report it is unsure of still gets the schema's verdict (and its error message).
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { isPlainlyValidReport, parseReport, ReportSchema } from '../../src/sensors/report.ts';

const bySchema = new Ajv({ allErrors: false, strict: false }).compile(ReportSchema);

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
  yield { ...good, readings: Array.from({ length: 32 }, () => good.readings[0]) };
  yield { ...good, readings: Array.from({ length: 33 }, () => good.readings[0]) };
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
});
