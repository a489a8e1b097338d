// Loads a device profile (config/profiles/NAME.yaml): YAML → schema → rules, every problem listed
// together with its line, as the site file's loader does (and with its line finder). Unlike the
// site file, the rules also run on a document that failed its schema in places — on the points and
// sections that passed — so one pass over a bad profile shows all that is wrong with it. What a
// hostile file costs is bounded as for the site file: its size (PROFILE_FILE_MAX_BYTES), at most
// MAX_CHECKED_PROBLEMS errors per validation and problems kept.
import { basename, extname } from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import {
  boundedProblems,
  dedupeProblems,
  fromAjv,
  lineFinder,
  loadYamlData,
  stopAtErrorCap,
  validateBounded,
} from '../../config/config-check.ts';
import { PROFILE_FILE_MAX_BYTES, readConfigFile } from '../../config/config-files.ts';
import { ConfigError, type ConfigProblem, ErrorCodes } from '../../errors.ts';
import { checkProfile } from './rules.ts';
import {
  ModbusPointSchema,
  ModbusSectionSchema,
  OpcuaPointSchema,
  OpcuaSectionSchema,
  type Profile,
  ProfileSchema,
  WatchdogSchema,
} from './schema.ts';

// `verbose` hands each error its schema, whose description says what a union allows.
const ajv = new Ajv({
  allErrors: true,
  strict: false,
  verbose: true,
  code: { process: (code) => stopAtErrorCap(code) },
});
const validateProfile = ajv.compile<Profile>(ProfileSchema);
const validModbusPoint = ajv.compile(ModbusPointSchema);
const validOpcuaPoint = ajv.compile(OpcuaPointSchema);
const validWatchdog = ajv.compile(WatchdogSchema);
const validModbusSection = ajv.compile({
  ...ModbusSectionSchema,
  properties: { ...ModbusSectionSchema.properties, points: { type: 'object' } },
});
const validOpcuaSection = ajv.compile({
  ...OpcuaSectionSchema,
  properties: { ...OpcuaSectionSchema.properties, points: { type: 'object' } },
});

export function profileError(file: string, problems: ConfigProblem[]): ConfigError {
  return new ConfigError(file, problems, { code: ErrorCodes.PROFILE_INVALID });
}

/**
 * Parses and checks a profile's YAML text. `file` labels the problems, and its base name must be
 * the profile's name. Throws ConfigError (code COOLCTL_E_PROFILE_INVALID) listing every problem.
 */
export function parseProfile(text: string, file = '<inline>'): Profile {
  const data = loadYamlData(text, file, (problems) => profileError(file, problems));
  const lines = lineFinder(text);
  const problems: ConfigProblem[] = [];
  const schema = validateBounded(validateProfile, data);
  for (const p of schemaProblems(schema.errors, file, lines)) problems.push(p);
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    const base = file.startsWith('<') ? undefined : basename(file, extname(file));
    const { view, dropped } = checkable(data as Record<string, unknown>);
    for (const p of checkProfile(view, { fileBase: base, dropped })) {
      problems.push({ ...p, file, line: lines(p.path) });
    }
  }
  if (problems.length > 0 || schema.stopped) {
    // In file order: schema and rule problems interleave as the reader walks down the file.
    const ordered = dedupeProblems(problems).sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
    throw profileError(file, boundedProblems(ordered, file, schema.stopped));
  }
  return data as Profile;
}

/** Reads (at most PROFILE_FILE_MAX_BYTES) and checks a profile file. */
export async function loadProfile(file: string): Promise<Profile> {
  return parseProfile(await readConfigFile(file, PROFILE_FILE_MAX_BYTES, 'device profile'), file);
}

/** Whether `v` passes `validate`, its errors kept on it; one stopped at the error cap fails. */
function passes(validate: ValidateFunction, v: unknown): boolean {
  const r = validateBounded(validate, v);
  validate.errors = r.errors;
  return r.valid;
}

/** Ajv's errors as problems; a union reports once, with what its schema says it allows. */
function schemaProblems(
  errors: ErrorObject[],
  file: string,
  lines: (pointer: string) => number | undefined,
): ConfigProblem[] {
  const unions = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const out: ConfigProblem[] = [];
  for (const e of errors) {
    // The branch errors of a failed union only say why each shape did not fit; the union says it once.
    if (e.keyword !== 'anyOf' && [...unions].some((u) => e.instancePath === u)) continue;
    const p = fromAjv(e, file, lines);
    const desc = (e.parentSchema as { description?: string } | undefined)?.description;
    if (e.keyword === 'enum') {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues;
      p.message = `${JSON.stringify(e.data)} is not allowed`;
      p.allowed = `one of ${allowed.join(', ')}`;
    } else if (e.keyword === 'anyOf' && desc) {
      p.message = `${JSON.stringify(e.data)} is not allowed`;
      p.allowed = desc;
    } else if (e.keyword === 'additionalProperties' && /\/(enum|alarmBits)$/.test(e.instancePath)) {
      p.message = 'is not an integer code';
      p.allowed = e.instancePath.endsWith('alarmBits') ? 'a bit number 0–31' : 'an integer code';
    }
    p.allowed = p.allowed.replace('docs/site-config.md', 'docs/device-profiles.md');
    out.push(p);
  }
  return out;
}

/**
 * The parts of a document that passed their schema, for the rules: a point, a section or the
 * watchdog that did not is left out (its own problems are already listed), the rest is checked.
 */
function checkable(doc: Record<string, unknown>): { view: Profile; dropped: Set<string> } {
  const view: Record<string, unknown> = { ...doc };
  // Names the rules must not judge references to: their definitions failed the schema.
  const dropped = new Set<string>();
  if (!passes(validWatchdog, view.watchdog)) {
    delete view.watchdog;
    dropped.add('/watchdog');
  }
  for (const [key, section, point] of [
    ['modbus', validModbusSection, validModbusPoint],
    ['opcua', validOpcuaSection, validOpcuaPoint],
  ] as const) {
    const s = view[key];
    if (s === undefined) continue;
    if (s === null || typeof s !== 'object' || Array.isArray(s)) {
      // A section that is there but broken still counts as there (protocol ↔ section rule).
      view[key] = { points: {} };
      dropped.add(`/${key}`);
      continue;
    }
    const sec: Record<string, unknown> = { ...(s as Record<string, unknown>) };
    if (!passes(section, s)) {
      // Leave out only the settings that failed; the points are still judged one by one.
      for (const e of section.errors ?? []) {
        const field =
          e.instancePath.split('/')[1] ??
          String((e.params as { missingProperty?: string }).missingProperty ?? '');
        if (field === '' || field === 'points') continue;
        delete sec[field];
        dropped.add(`/${key}/${field}`);
      }
    }
    if (sec.points === null || typeof sec.points !== 'object' || Array.isArray(sec.points)) {
      sec.points = {};
      dropped.add(`/${key}/points`);
    }
    const points: Record<string, unknown> = {};
    for (const [n, p] of Object.entries(sec.points as Record<string, unknown>)) {
      if (passes(point, p)) points[n] = p;
      else dropped.add(n);
    }
    view[key] = { ...sec, points };
  }
  if (!Array.isArray(view.fencing)) delete view.fencing;
  return { view: view as unknown as Profile, dropped };
}
