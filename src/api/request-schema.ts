// How the API checks what a client sends, for every route. A body is taken exactly as sent: no type
// is coerced (null, false, [30] or "25" is not a fan %) and no field is dropped in silence (an
// unknown one is refused by name). Query strings and path parameters arrive as text, so numbers and
// booleans are read from it (`?limit=5`), and are still refused when they are not one (`?limit=lots`);
// a number only in plain decimal (`?limit=0x10`, ` 5`, `1e2` are refused, not read as 16, 5, 100).
// A route takes only what it declares: no body schema means no body (`{}` or none), no querystring
// schema means no parameters — except the dashboard's page and assets, which a browser may open
// with any query, and /metrics, /healthz and /readyz, which machines poll. Free text the API stores
// or echoes holds no control characters (C0, C1) and no bidirectional formatting, which would
// rewrite a terminal or reorder what a reader of the trail sees.
import { Type as T } from '@sinclair/typebox';
import { Ajv, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
import type { RouteOptions } from 'fastify';
import { schemaProblemsOf } from '../util/schema-problems.ts';
import { TOKEN_SHAPE } from './auth/credentials.ts';

/** The characters no text field may hold: C0, DEL and C1 controls, and bidirectional marks, embeddings, overrides and isolates. */
const UNPRINTABLE_CLASS = '\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069';
/** The JSON-schema pattern of text without them (Ajv compiles patterns with the `u` flag). */
export const PRINTABLE_PATTERN = `^[^${UNPRINTABLE_CLASS}]*$`;
const UNPRINTABLE = new RegExp(`[${UNPRINTABLE_CLASS}]`, 'gu');

/** Free text the API stores (a reason, a label, a comment): printable, at most `maxLength` characters. */
export function Text(opts: { maxLength: number; minLength?: number; description?: string }) {
  return T.String({ ...opts, pattern: PRINTABLE_PATTERN });
}

/** A name the client picks from a list (a group, a unit, a node): printable, so it may be echoed. */
export const Name = T.String({ minLength: 1, maxLength: 128, pattern: PRINTABLE_PATTERN });

/** The body of a state-changing route that takes none: nothing, or `{}`. */
export const NoBody = T.Object({}, { additionalProperties: false, description: 'no body, or {}' });
/** The query of a route that takes none. */
export const NoQuery = T.Object({}, { additionalProperties: false });

/**
 * Client input quoted in an answer or a log line: control and bidirectional characters shown as
 * `\u{…}`, at most `max` characters, so an echo cannot rewrite a terminal or flood a line, and
 * the secret of anything shaped like an API token left out (its id kept, to revoke it by).
 */
export function quoted(s: string, max = 64): string {
  // A token pasted where a name or path goes is masked before the cut, so no part of its secret shows.
  const masked = s.replace(TOKEN_SHAPE, (_t, id: string) => `cct_${id}_…`);
  const cut = masked.length > max ? `${masked.slice(0, max)}…` : masked;
  return cut.replace(UNPRINTABLE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

const COMMON: Options = {
  useDefaults: true,
  removeAdditional: false,
  // One problem per request: all of them would let a crafted body make the check itself expensive.
  allErrors: false,
  addUsedSchema: false,
};

/**
 * Fastify's validator factory (`schemaController.compilersFactory.buildValidator`): bodies on an
 * Ajv that coerces nothing, every other part (querystring, params, headers) on one that reads
 * scalars from text. Formats are not registered: a request schema that names one fails at build
 * time, loudly, rather than passing anything. Fastify asks once per plugin context; the pair is
 * made once per set of shared schemas in the process (as @fastify/ajv-compiler pools its own), and
 * a schema compiled for one app serves the next: `ready()` compiles every route's schemas on the
 * event loop, while the control loops already run.
 */
const pool = new Map<string, (route: { schema: unknown; httpPart?: string }) => ValidateFunction>();
export function buildValidator(
  externalSchemas: Record<string, unknown>,
): (route: { schema: unknown; httpPart?: string }) => ValidateFunction {
  const key = JSON.stringify(externalSchemas);
  const pooled = pool.get(key);
  if (pooled) return pooled;
  const bodies = new Ajv({ ...COMMON, coerceTypes: false });
  const text = new Ajv({ ...COMMON, coerceTypes: 'array' });
  for (const s of Object.values(externalSchemas)) {
    bodies.addSchema(exactIntegers(s) as object);
    text.addSchema(exactIntegers(s) as object);
  }
  const compile = ({ schema, httpPart }: { schema: unknown; httpPart?: string }) => {
    const ajv = httpPart === 'body' ? bodies : text;
    const id = (schema as { $id?: string }).$id;
    const validate = (id ? ajv.getSchema(id) : undefined) ?? ajv.compile(exactIntegers(schema) as object);
    return httpPart === 'body' ? validate : finiteText(plainDecimalText(schema, validate));
  };
  pool.set(key, compile);
  return compile;
}

/** Keywords whose values are data, not schemas: never rewritten. */
const DATA_KEYWORDS = new Set(['const', 'default', 'enum', 'examples', 'example']);

/**
 * A copy of `schema` whose integers are exact: one past 2^53 − 1 (`9007199254740993`) has lost its
 * last digits by the time it is read, so each `integer` is held to ±(2^53 − 1), inside any bound the
 * schema sets itself, and the refusal names the field (`body/ttlS: must be <= 9007199254740991`).
 */
export function exactIntegers(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(exactIntegers);
  if (!schema || typeof schema !== 'object') return schema;
  const src = schema as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src)) out[k] = DATA_KEYWORDS.has(k) ? v : exactIntegers(v);
  if (src.type === 'integer' || (Array.isArray(src.type) && src.type.includes('integer'))) {
    const max = Number.MAX_SAFE_INTEGER;
    out.maximum = Math.min(typeof src.maximum === 'number' ? src.maximum : max, max);
    out.minimum = Math.max(typeof src.minimum === 'number' ? src.minimum : -max, -max);
  }
  return out;
}

/**
 * A text part's validator that also refuses numbers that are not finite. Ajv reads `1e309` from
 * text as Infinity, takes it as an integer and skips every bound for it (its bound checks apply
 * to finite numbers only), so `?since=1e309` reached the handler; bodies need no such check (JSON
 * `1e309` is Infinity too, and Ajv's type check without coercion refuses it).
 */
function finiteText(validate: ValidateFunction): ValidateFunction {
  const checked = ((data: unknown) => {
    if (!validate(data)) {
      checked.errors = validate.errors ?? null;
      return false;
    }
    const where = nonFinite(data, '', 0);
    checked.errors =
      where === null
        ? null
        : [
            {
              instancePath: where,
              schemaPath: '#',
              keyword: 'type',
              params: {},
              message: 'must be a finite number',
            },
          ];
    return where === null;
  }) as ValidateFunction;
  checked.errors = null;
  return checked;
}

/** How a text part's number must be written: digits, an optional leading `-`, and for a `number` a fraction. */
const PLAIN_INTEGER = /^-?\d+$/;
const PLAIN_NUMBER = /^-?\d+(?:\.\d+)?$/;

/**
 * What a schema position takes of numbers: null when none; `integer` when no alternative takes a
 * fraction; `only` when every alternative is a number (else a string may also be valid there).
 */
interface NumberRule {
  integer: boolean;
  only: boolean;
}
function numberRule(schema: unknown, depth = 0): NumberRule | null {
  if (!schema || typeof schema !== 'object' || depth > 4) return null;
  const s = schema as { type?: unknown; anyOf?: unknown; oneOf?: unknown };
  const branches = [s.anyOf, s.oneOf].find(Array.isArray) as unknown[] | undefined;
  if (branches) {
    const rules = branches.map((b) => numberRule(b, depth + 1));
    const numeric = rules.filter((r): r is NumberRule => r !== null);
    if (numeric.length === 0) return null;
    return { integer: numeric.every((r) => r.integer), only: rules.every((r) => r?.only === true) };
  }
  const types = Array.isArray(s.type) ? (s.type as unknown[]) : [s.type];
  const numeric = types.filter((t) => t === 'integer' || t === 'number');
  if (numeric.length === 0) return null;
  return { integer: !numeric.includes('number'), only: numeric.length === types.length };
}

/**
 * A text part's validator that takes a number only in plain decimal. Ajv reads a number from text
 * with JavaScript's `+`: `?limit=0x10` is 16, `?limit=%205` (a space) 5, `?limit=1e2` 100,
 * `?limit=0b11` 3, `?limit=%20` 0 — spellings no client means and a filter in front of the node
 * would read otherwise. Each raw string is checked before Ajv coerces it, against the number rule
 * of its property (or of its items, for a repeated parameter); where a string is also valid (a union
 * with one), only a string `+` would read as a number is held to the rule.
 */
function plainDecimalText(schema: unknown, validate: ValidateFunction): ValidateFunction {
  const props = (schema as { properties?: Record<string, unknown> } | null)?.properties ?? {};
  const rules = new Map<string, NumberRule>();
  for (const [name, p] of Object.entries(props)) {
    const items =
      (p as { type?: unknown; items?: unknown }).type === 'array' ? (p as { items: unknown }).items : p;
    const rule = numberRule(items);
    if (rule) rules.set(name, rule);
  }
  if (rules.size === 0) return validate;
  const checked = ((data: unknown) => {
    const problem = notPlain(data, rules);
    if (problem) {
      checked.errors = [problem];
      return false;
    }
    const ok = validate(data);
    checked.errors = ok ? null : (validate.errors ?? null);
    return ok;
  }) as ValidateFunction;
  checked.errors = null;
  return checked;
}

/** The first raw value of `data` written as no plain decimal where its rule says a number goes, or null. */
function notPlain(data: unknown, rules: ReadonlyMap<string, NumberRule>): ErrorObject | null {
  if (!data || typeof data !== 'object') return null;
  for (const [name, rule] of rules) {
    const raw = (data as Record<string, unknown>)[name];
    for (const v of Array.isArray(raw) ? raw : [raw]) {
      if (typeof v !== 'string' || (rule.integer ? PLAIN_INTEGER : PLAIN_NUMBER).test(v)) continue;
      // Beside a string alternative, what `+` would not read as a number is that string's to judge.
      if (!rule.only && (v === '' || Number.isNaN(Number(v)))) continue;
      return {
        instancePath: `/${name.replaceAll('~', '~0').replaceAll('/', '~1')}`,
        schemaPath: '#',
        keyword: 'type',
        params: {},
        message: `must be ${rule.integer ? 'an integer written as -?digits' : 'a number written as -?digits[.digits]'} (plain decimal), got "${quoted(v, 32)}"`,
      };
    }
  }
  return null;
}

/** Where in `data` (already past its schema, so of bounded depth) a number is not finite, or null. */
function nonFinite(data: unknown, at: string, depth: number): string | null {
  if (typeof data === 'number') return Number.isFinite(data) ? null : at;
  if (!data || typeof data !== 'object' || depth > 8) return null;
  for (const [k, v] of Object.entries(data)) {
    const found = nonFinite(v, `${at}/${k}`, depth + 1);
    if (found !== null) return found;
  }
  return null;
}

/**
 * Routes that ignore any query: the dashboard's page and assets (a browser or a bookmark may add
 * one), and what machines poll — /metrics (a Prometheus job may send `params:`), /healthz and
 * /readyz (a load balancer's probe may add a cache-buster). None of them reads a parameter.
 */
const TAKES_ANY_QUERY = new Set(['/', '/ui/:file', '/metrics', '/healthz', '/readyz']);

/** Closes what a route does not declare (an onRoute hook, before the route's schemas compile). */
export function closeUndeclaredInput(r: RouteOptions, changesState: (method: string) => boolean): void {
  const methods = Array.isArray(r.method) ? r.method : [r.method];
  // CORS preflights (@fastify/cors) carry whatever URL the request they precede will have.
  if (methods.every((m) => m === 'OPTIONS')) return;
  const schema = { ...r.schema };
  if (methods.some(changesState) && !schema.body) schema.body = NoBody;
  if (!schema.querystring && !TAKES_ANY_QUERY.has(r.url)) schema.querystring = NoQuery;
  r.schema = schema;
}

/**
 * One line per problem Ajv found (../util/schema-problems.ts), naming the field: `body/fanPct: must
 * be number`, `body: unknown field "evil"`, `querystring/state: must be one of "active", "all"`.
 */
export function schemaProblems(context: string | undefined, errors: ErrorObject[]): string[] {
  const part = context ?? 'request';
  const oneOf = (values: unknown[]) => `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}`;
  const lines = schemaProblemsOf(errors).map((p) => {
    const where = `${part}${p.path}`;
    const e = p.error;
    switch (p.kind) {
      case 'unknown-property':
        return `${where}: unknown ${part === 'body' ? 'field' : 'parameter'} "${quoted(p.name)}"`;
      case 'missing-property':
        return `${where}: missing "${quoted(p.name)}"`;
      case 'one-of':
        return `${where}: ${oneOf(p.values)}`;
      default:
        if (e.keyword === 'pattern' && e.params.pattern === PRINTABLE_PATTERN)
          return `${where}: control characters (C0, C1) and bidirectional formatting characters are not allowed`;
        if (e.keyword === 'const') return `${where}: ${oneOf([e.params.allowedValue])}`;
        if (e.keyword === 'enum') return `${where}: ${oneOf(e.params.allowedValues as unknown[])}`;
        return `${where}: ${e.message ?? e.keyword}`;
    }
  });
  return [...new Set(lines)];
}
