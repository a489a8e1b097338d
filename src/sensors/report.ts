// A sensor node report as it arrives from a gateway (docs/mqtt-topics.md), and its validation.
// Everything from the wire is untrusted: size first, then JSON, then the schema; the result is
// either a typed report or a drop reason with a one-line detail, never an exception.
import { type Static, Type as T } from '@sinclair/typebox';
import { Ajv } from 'ajv';

/** Why an incoming report (or one reading of it) was not used; each is a counter label. */
export type DropReason =
  | 'too-large'
  | 'malformed-json'
  | 'schema'
  | 'unknown-node'
  | 'topic-mismatch'
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

const ajv = new Ajv({ allErrors: false, strict: false });
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
  if (!validate(body)) {
    const e = validate.errors?.[0];
    return { ok: false, reason: 'schema', detail: `${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}` };
  }
  return { ok: true, report: body };
}
