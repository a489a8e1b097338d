// The fault catalogue of the simulated hall: one schema for every fault request that
// POST /sim/faults accepts, and their validation. A batch is validated whole before any fault is
// applied, so a bad request changes nothing; every problem is reported, not just the first.
// Ids are at most as long as the site schema allows (64), so an unknown one is echoed back short.
// Every number must be finite (JSON's `1e999` parses to Infinity), and every refusal of a field says
// what it got and what is allowed, from the schema itself, so message and range cannot drift apart.
import { type Static, Type as T } from '@sinclair/typebox';
import { Ajv, type ErrorObject } from 'ajv';
import { StatusCodes } from 'node-opcua';
import { MEASUREMENT_REGISTERS, NO_DATA_WORDS } from '../src/devices/modbus/point-map.ts';
import { BadRequestError, ErrorCodes } from '../src/errors.ts';
import { clip } from '../src/util/log-limit.ts';
import { schemaProblemsOf } from '../src/util/schema-problems.ts';
import { MEASURED_POINTS, type MeasuredPoint } from './ahu/unit.ts';

/** The word a native Modbus unit serves for a broken probe unless the fault names another. */
export const DEFAULT_NO_DATA_WORD = 0x7fff;

function hex16(w: number): string {
  return `0x${w.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** A site id (src/config/site-schema.ts: at most 64 characters), or `*` where a fault allows it. */
const SiteId = (description?: string) =>
  T.String({ minLength: 1, maxLength: 64, ...(description ? { description } : {}) });
const Clear = T.Optional(T.Boolean({ description: 'true clears this fault' }));
const Ahu = SiteId('air handler id');
const WritesOnly = T.Optional(
  T.Boolean({ description: 'true: only writes get the fault, reads are served as usual (default false)' }),
);

export const FaultSchema = T.Union([
  T.Object({ fault: T.Literal('ahu-trip'), ahu: Ahu, clear: Clear }, { additionalProperties: false }),
  T.Object({ fault: T.Literal('ahu-offline'), ahu: Ahu, clear: Clear }, { additionalProperties: false }),
  T.Object(
    {
      fault: T.Literal('ahu-slow'),
      ahu: Ahu,
      ms: T.Optional(T.Integer({ minimum: 1, maximum: 60_000 })),
      clear: Clear,
    },
    { additionalProperties: false },
  ),
  T.Object(
    {
      fault: T.Literal('ahu-exception'),
      ahu: Ahu,
      code: T.Optional(
        T.Integer({ minimum: 1, maximum: 255, description: 'Modbus exception code, default 4' }),
      ),
      writesOnly: WritesOnly,
      clear: Clear,
    },
    { additionalProperties: false },
  ),
  T.Object({ fault: T.Literal('ahu-garbage'), ahu: Ahu, clear: Clear }, { additionalProperties: false }),
  T.Object({ fault: T.Literal('ahu-reset'), ahu: Ahu, clear: Clear }, { additionalProperties: false }),
  T.Object({ fault: T.Literal('ahu-silent'), ahu: Ahu, clear: Clear }, { additionalProperties: false }),
  T.Object(
    {
      fault: T.Literal('ahu-bad-status'),
      ahu: Ahu,
      status: T.Optional(
        T.String({
          pattern: '^Bad[A-Za-z]+$',
          maxLength: 64,
          description: 'OPC-UA status name, default BadDeviceFailure',
        }),
      ),
      writesOnly: WritesOnly,
      clear: Clear,
    },
    { additionalProperties: false },
  ),
  T.Object(
    {
      fault: T.Literal('ahu-sensor-broken'),
      ahu: Ahu,
      point: T.Union(
        MEASURED_POINTS.map((p) => T.Literal(p)),
        { description: `the measured point whose probe is broken: ${MEASURED_POINTS.join(', ')}` },
      ),
      word: T.Optional(
        T.Integer({
          minimum: 0,
          maximum: 0xffff,
          description:
            'the no-data word a native Modbus unit serves: 32767 (0x7FFF, default), 32768 (0x8000), 65535 (0xFFFF, unsigned registers only)',
        }),
      ),
      clear: Clear,
    },
    { additionalProperties: false },
  ),
  T.Object(
    {
      fault: T.Union([T.Literal('sensor-stuck'), T.Literal('sensor-dead')]),
      node: SiteId(),
      sensor: T.Optional(SiteId('sensor id, or * for all (default)')),
      clear: Clear,
    },
    { additionalProperties: false },
  ),
  T.Object(
    {
      fault: T.Literal('sensor-noisy'),
      node: SiteId(),
      sensor: T.Optional(SiteId()),
      sigma: T.Optional(
        T.Number({ exclusiveMinimum: 0, maximum: 100, description: 'extra noise σ, default 2' }),
      ),
      clear: Clear,
    },
    { additionalProperties: false },
  ),
  T.Object(
    {
      fault: T.Literal('sensor-out-of-range'),
      node: SiteId(),
      sensor: T.Optional(SiteId()),
      value: T.Optional(T.Number({ description: 'raw value reported, default 150' })),
      clear: Clear,
    },
    { additionalProperties: false },
  ),
  T.Object(
    { fault: T.Literal('gateway-down'), gateway: SiteId(), clear: Clear },
    { additionalProperties: false },
  ),
  T.Object(
    {
      fault: T.Literal('packet-loss'),
      pct: T.Optional(T.Number({ minimum: 0, maximum: 100 })),
      clear: Clear,
    },
    { additionalProperties: false },
  ),
  T.Object(
    {
      fault: T.Literal('heat-load-step'),
      rack: SiteId('rack id, or * for every rack'),
      factor: T.Optional(
        T.Number({ minimum: 0, maximum: 5, description: 'multiplies IT load; default 1.5' }),
      ),
      clear: Clear,
    },
    { additionalProperties: false },
  ),
  T.Object(
    {
      fault: T.Literal('load-profile'),
      profile: T.Union([T.Literal('daily'), T.Literal('constant')]),
      factor: T.Optional(
        T.Number({ minimum: 0, maximum: 2, description: 'constant profile level, default 1' }),
      ),
    },
    { additionalProperties: false },
  ),
  T.Object(
    {
      fault: T.Literal('broker-restart'),
      downMs: T.Optional(
        T.Integer({
          minimum: 0,
          maximum: 60_000,
          description: 'how long the embedded MQTT broker stays down before it listens again, default 1000',
        }),
      ),
    },
    { additionalProperties: false },
  ),
  T.Object(
    {
      fault: T.Literal('unit-moved'),
      ahu: Ahu,
      dxM: T.Optional(
        T.Number({
          minimum: -1000,
          maximum: 1000,
          description: 'm along x from the site file position, default 0',
        }),
      ),
      dyM: T.Optional(
        T.Number({
          minimum: -1000,
          maximum: 1000,
          description: 'm along y from the site file position, default 0',
        }),
      ),
      clear: Clear,
    },
    { additionalProperties: false },
  ),
  T.Object(
    { fault: T.Literal('blanking-panel-removed'), rack: SiteId(), clear: Clear },
    { additionalProperties: false },
  ),
  T.Object({ fault: T.Literal('clear-all') }, { additionalProperties: false }),
]);

export type Fault = Static<typeof FaultSchema>;
const MAX_FAULTS_PER_REQUEST = 1000;
export const FaultBatchSchema = T.Union([
  FaultSchema,
  T.Array(FaultSchema, { minItems: 1, maxItems: MAX_FAULTS_PER_REQUEST }),
]);

/** The OPC-UA status names a unit can answer with: node-opcua's, the Bad ones only. */
const BAD_STATUS_NAMES: ReadonlySet<string> = new Set(
  Object.entries(StatusCodes as unknown as Record<string, { isBad?: () => boolean }>)
    .filter(([name, code]) => name.startsWith('Bad') && typeof code?.isBad === 'function' && code.isBad())
    .map(([name]) => name),
);

// strictNumbers: Infinity and NaN are no numbers. verbose: each error carries the field's schema and
// value, from which its refusal says what is allowed and what was sent.
const ajv = new Ajv({ allErrors: true, strict: false, strictNumbers: true, verbose: true });
// One validator per fault kind, so a bad request is reported against its own shape only (a union
// would report a mismatch with every other kind too).
const validatorByKind = new Map(
  FaultSchema.anyOf.flatMap((branch) => {
    const f = branch.properties.fault as { const?: string; anyOf?: { const: string }[] };
    const kinds = f.anyOf ? f.anyOf.map((x) => x.const) : [f.const ?? ''];
    const validate = ajv.compile(branch);
    return kinds.map((k) => [k, validate] as const);
  }),
);
const FAULT_KINDS = [...validatorByKind.keys()];

/**
 * The `fault` a request sent, as a refusal quotes it: a string clipped, anything else by its type
 * only (a 200 000-deep array would overflow JSON.stringify's stack; a long one would size the answer).
 */
function describeKind(kind: unknown): string {
  if (typeof kind === 'string') return JSON.stringify(clip(kind));
  if (kind === undefined) return 'missing';
  return `of type ${kind === null ? 'null' : Array.isArray(kind) ? 'array' : typeof kind}`;
}

/** Schema fields as Ajv's `verbose` errors carry them (a TypeBox schema is plain JSON Schema). */
interface FieldSchema {
  type?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  const?: unknown;
  anyOf?: FieldSchema[];
  properties?: Record<string, unknown>;
}

/** What a field's schema allows, in words: `a number from 0 to 5`, `one of daily, constant`. */
function allowedBy(s: FieldSchema): string {
  if (s.anyOf?.every((b) => b.const !== undefined))
    return `one of ${s.anyOf.map((b) => String(b.const)).join(', ')}`;
  if (s.type === 'number' || s.type === 'integer') {
    const what = s.type === 'integer' ? 'an integer' : 'a finite number';
    const lo =
      s.exclusiveMinimum !== undefined
        ? `above ${s.exclusiveMinimum}`
        : s.minimum !== undefined
          ? `from ${s.minimum}`
          : '';
    const hi =
      s.maximum !== undefined ? `${lo ? ' ' : ''}${lo.startsWith('above') ? 'up ' : ''}to ${s.maximum}` : '';
    return `${what}${lo || hi ? ' ' : ''}${lo}${hi}`;
  }
  if (s.type === 'string') {
    const len = `a string of ${s.minLength ?? 0} to ${s.maxLength ?? '∞'} characters`;
    return s.pattern ? `${len} matching ${s.pattern}` : len;
  }
  if (s.type === 'boolean') return 'true or false';
  return 'see docs/sim-api.md';
}

/** A value as a refusal quotes it: short whatever was sent (a 10 000-character id is its length). */
function quoteValue(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  if (v === null) return 'null';
  return Array.isArray(v) ? 'an array' : typeof v === 'boolean' ? String(v) : `an ${typeof v}`;
}

/** Infinity (JSON's `1e999`) is refused by its type; told by the bound it passes, as any other number. */
function nonFiniteMessage(v: number, s: FieldSchema): string {
  if (v > 0 && s.maximum !== undefined) return `must be <= ${s.maximum}`;
  if (v < 0 && s.exclusiveMinimum !== undefined) return `must be > ${s.exclusiveMinimum}`;
  if (v < 0 && s.minimum !== undefined) return `must be >= ${s.minimum}`;
  return 'must be a finite number';
}

/**
 * One line per problem Ajv found (../src/util/schema-problems.ts), naming the field, what was sent
 * and what is allowed: `/factor: must be >= 0 (got -5; allowed: a finite number from 0 to 5)`. A
 * choice among names is one line, `/profile: must be one of daily, constant (got "weekly")`.
 */
function describeSchemaErrors(where: string, errors: readonly ErrorObject[]): string[] {
  const ranged = ['type', 'minimum', 'maximum', 'exclusiveMinimum', 'minLength', 'maxLength', 'pattern'];
  return schemaProblemsOf(errors).map((p) => {
    const field = `${where}${p.path || '/'}`;
    const e = p.error;
    const schema = e.parentSchema as FieldSchema;
    switch (p.kind) {
      case 'one-of':
        return `${field}: must be one of ${p.values.map(String).join(', ')} (got ${quoteValue(e.data)})`;
      case 'unknown-property': {
        const known = Object.keys(schema.properties ?? {}).join(', ');
        return `${field}: ${e.message ?? 'is invalid'} "${clip(p.name, 60)}" (allowed: ${known})`;
      }
      default: {
        const suffix = ranged.includes(e.keyword)
          ? ` (got ${quoteValue(e.data)}; allowed: ${allowedBy(schema)})`
          : '';
        const message =
          e.keyword === 'type' && typeof e.data === 'number' && !Number.isFinite(e.data)
            ? nonFiniteMessage(e.data, schema)
            : (e.message ?? 'is invalid');
        return `${field}: ${message}${suffix}`;
      }
    }
  });
}

/** Parses one fault or a list of faults; throws BadRequestError naming each problem. */
export function parseFaults(body: unknown): Fault[] {
  const list = Array.isArray(body) ? body : [body];
  if (list.length === 0)
    throw new BadRequestError(ErrorCodes.FAULT_INVALID, 'empty fault list', ['send at least one fault']);
  if (list.length > MAX_FAULTS_PER_REQUEST)
    throw new BadRequestError(ErrorCodes.FAULT_INVALID, 'too many faults', [
      `body: got ${list.length} faults, allowed: at most ${MAX_FAULTS_PER_REQUEST} per request`,
    ]);
  const problems: string[] = [];
  list.forEach((item, i) => {
    const where = Array.isArray(body) ? `[${i}]` : '';
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      problems.push(`${where || 'body'}: must be an object like {"fault": "ahu-trip", "ahu": "AHU-01"}`);
      return;
    }
    const kind = (item as { fault?: unknown }).fault;
    const validate = typeof kind === 'string' ? validatorByKind.get(kind) : undefined;
    if (!validate) {
      problems.push(`${where}fault: unknown fault ${describeKind(kind)}; allowed: ${FAULT_KINDS.join(', ')}`);
      return;
    }
    if (!validate(item)) {
      problems.push(...describeSchemaErrors(where, validate.errors ?? []));
      return;
    }
    const status = (item as { status?: unknown }).status;
    if (kind === 'ahu-bad-status' && typeof status === 'string' && !BAD_STATUS_NAMES.has(status)) {
      // Before: accepted, shown in /sim/faults as asked, and served as BadDeviceFailure instead.
      problems.push(
        `${where}/status: ${JSON.stringify(clip(status))} is not an OPC-UA Bad status; allowed: a name such as BadDeviceFailure, BadCommunicationError, BadOutOfService (node-opcua's StatusCodes)`,
      );
    }
    if (kind === 'ahu-sensor-broken') {
      const { point, word } = item as { point: MeasuredPoint; word?: number };
      const type = MEASUREMENT_REGISTERS.find(([p]) => p === point)?.[2] ?? 'u16';
      const words: readonly number[] = NO_DATA_WORDS[type];
      if (word !== undefined && !words.includes(word)) {
        // Any other word is a reading (0xFFFF in a signed register is −0.1 °C), not a broken probe.
        problems.push(
          `${where}/word: ${word} is not a no-data word of ${point} (a ${type} register); allowed: ${words.join(', ')} (${words.map(hex16).join(', ')})`,
        );
      }
    }
  });
  if (problems.length > 0) {
    throw new BadRequestError(
      ErrorCodes.FAULT_INVALID,
      `invalid fault request: ${problems.join('; ')}`,
      problems,
    );
  }
  return list as Fault[];
}
