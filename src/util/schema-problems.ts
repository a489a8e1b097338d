// What Ajv's errors say, one problem per field, for every refusal that lists them (the controller
// API's, ../api/request-schema.ts; the simulator's faults, firmware-sim/faults.ts): a field that must
// be one of several literals (a union of consts) fails once, with every allowed value, not once per
// literal it is not; an unknown or missing property is named. Each caller words the problems its own
// documented way; which errors make which problem is decided here only.
import type { ErrorObject } from 'ajv';

export type SchemaProblem =
  /** A property the schema does not declare (`additionalProperties: false`). */
  | { kind: 'unknown-property'; path: string; name: string; error: ErrorObject }
  | { kind: 'missing-property'; path: string; name: string; error: ErrorObject }
  /** A value none of a union of literals: `values` in the schema's order. */
  | { kind: 'one-of'; path: string; values: unknown[]; error: ErrorObject }
  /** Anything else: Ajv's own message. */
  | { kind: 'other'; path: string; error: ErrorObject };

/**
 * The problems in `errors` (Ajv with `allErrors`), in Ajv's order. An `anyOf` whose failed branches
 * are all `const` is one `one-of` problem, and its branches' errors are not problems of their own.
 */
export function schemaProblemsOf(errors: readonly ErrorObject[]): SchemaProblem[] {
  const underAnyOf = (e: ErrorObject, anyOf: ErrorObject) =>
    e !== anyOf && e.instancePath === anyOf.instancePath && e.schemaPath.startsWith(`${anyOf.schemaPath}/`);
  // Grouped by field first: a body with thousands of refused items costs a pass per field, not a
  // pass over every error for every union.
  const atPath = new Map<string, ErrorObject[]>();
  for (const e of errors) {
    const list = atPath.get(e.instancePath);
    if (list) list.push(e);
    else atPath.set(e.instancePath, [e]);
  }
  const choices = new Map<ErrorObject, unknown[]>();
  const choicesAt = new Map<string, ErrorObject[]>();
  for (const a of errors) {
    if (a.keyword !== 'anyOf') continue;
    const branches = (atPath.get(a.instancePath) ?? []).filter((e) => underAnyOf(e, a));
    if (branches.length > 0 && branches.every((e) => e.keyword === 'const')) {
      choices.set(
        a,
        branches.map((e) => (e.params as { allowedValue: unknown }).allowedValue),
      );
      choicesAt.set(a.instancePath, [...(choicesAt.get(a.instancePath) ?? []), a]);
    }
  }
  const folded = (e: ErrorObject) => (choicesAt.get(e.instancePath) ?? []).some((a) => underAnyOf(e, a));
  const problems: SchemaProblem[] = [];
  for (const error of errors) {
    const path = error.instancePath;
    const values = choices.get(error);
    if (values) problems.push({ kind: 'one-of', path, values, error });
    else if (folded(error)) continue;
    else if (error.keyword === 'additionalProperties')
      problems.push({
        kind: 'unknown-property',
        path,
        name: String((error.params as { additionalProperty: unknown }).additionalProperty),
        error,
      });
    else if (error.keyword === 'required')
      problems.push({
        kind: 'missing-property',
        path,
        name: String((error.params as { missingProperty: unknown }).missingProperty),
        error,
      });
    else problems.push({ kind: 'other', path, error });
  }
  return problems;
}
