// Reads a YAML config and lists every problem in it, never just the first: the one parser the site
// file, the controller config, the fencing gateway's config and the device profiles share. File
// size and encoding are config-files.ts's; here: YAML bounded in nodes and aliases, values no schema
// sees (NaN, infinities, credentials in a URL), the schema with its error cap, then the rules —
// each problem with the file, the path in the document, the line, what is wrong and what is allowed.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { CORE_SCHEMA, load as loadYaml, YAMLException } from 'js-yaml';
import type { LineCounter, Node as YamlNode } from 'yaml';
import { ConfigError, type ConfigProblem, checkingStoppedProblem, MAX_CHECKED_PROBLEMS } from '../errors.ts';
import { clip } from '../util/log-limit.ts';
import { printable } from '../util/printable.ts';
import { yamlLib } from '../util/yaml-lib.ts';
import { urlCredentialProblem } from './link-secrets.ts';
import type { RuleProblem } from './site-rules.ts';

export const ajv = new Ajv({
  allErrors: true,
  useDefaults: true,
  strict: false,
  discriminator: true,
  code: { process: (code) => stopAtErrorCap(code) },
});

/** What a validator stopped at MAX_CHECKED_PROBLEMS throws: the errors it had found. */
const STOPPED_WITH = 'coolctlStoppedWith';

/**
 * Every error listed (allErrors) has no limit in ajv, and a file can hold far more errors than
 * bytes: 8 MB of `racks: [{}, {}, …]` is 16 million "is required", more heap than a gateway has.
 * The generated code counts the errors it holds in `errors` (one `errors++` per error, `errors =
 * vErrors.length` after a nested validator): after each, a check stops the validation at
 * MAX_CHECKED_PROBLEMS by throwing what it found. A union's failed branch holds errors that a
 * later branch may drop; no union of ours has a branch that fails a valid value with more than one.
 * Should ajv ever generate this code differently, compiling fails here rather than the cap going.
 */
export function stopAtErrorCap(code: string): string {
  const stop = `if(errors>=${MAX_CHECKED_PROBLEMS}){throw {${STOPPED_WITH}:vErrors};}`;
  let counted = 0;
  const capped = code.replace(/(?<![\w$])(?:errors\+\+|errors = vErrors\.length);/g, (m) => {
    counted++;
    return m + stop;
  });
  if ((code.match(/vErrors\.push\(/g)?.length ?? 0) > counted)
    throw new Error('ajv generated code that adds errors uncounted: the error cap cannot be placed');
  return capped;
}

/** A validation of at most MAX_CHECKED_PROBLEMS errors: whether the value is valid, and its errors. */
export function validateBounded<T>(
  validate: ValidateFunction<T>,
  data: unknown,
): { valid: boolean; errors: ErrorObject[]; stopped: boolean } {
  try {
    const valid = validate(data);
    return { valid, errors: validate.errors ?? [], stopped: false };
  } catch (err) {
    if (err === null || typeof err !== 'object' || !Object.hasOwn(err, STOPPED_WITH)) throw err;
    return { valid: false, errors: (err as Record<string, ErrorObject[]>)[STOPPED_WITH]!, stopped: true };
  }
}

/** At most MAX_CHECKED_PROBLEMS problems, then the one that says checking stopped, if it did. */
export function boundedProblems<P extends ConfigProblem>(
  problems: P[],
  file: string,
  stopped = false,
): (P | ConfigProblem)[] {
  if (problems.length <= MAX_CHECKED_PROBLEMS && !stopped) return problems;
  return [...problems.slice(0, MAX_CHECKED_PROBLEMS), checkingStoppedProblem(file)];
}

/**
 * The most YAML nodes (keys and values) a config may hold: a generated 1 000-unit hall has 527 000,
 * a generated file at the 8 MB size limit ~975 000. A value costs up to ~70 bytes of heap however
 * few bytes it takes in the file (`{}, ` is three), so that the size limit alone lets 8 MB become
 * ~200 MB of values; past this bound the parser stops, at ~85 MB.
 */
export const MAX_YAML_NODES = 1_200_000;

/** Thrown by the parser's listener at the node past MAX_YAML_NODES (its 0-based line). */
class TooManyNodes extends Error {
  readonly line: number;
  constructor(line: number) {
    super('too many YAML nodes');
    this.line = line;
  }
}

/**
 * YAML text → plain values. A syntax error throws `fail` with its one problem and line (by default
 * a ConfigError; a loader with its own error code passes its own).
 */
export function loadYamlData(
  text: string,
  file: string,
  fail: (problems: ConfigProblem[]) => Error = (problems) => new ConfigError(file, problems),
): unknown {
  let data: unknown;
  try {
    // js-yaml builds plain values straight from the text: ~30 MB at the peak for a 4.4 MB
    // 1 000-unit site, where the `yaml` library's document model took ~100 MB (and a heap that big
    // at start stays in V8's page pool, i.e. in the daemon's RSS, for good).
    let nodes = 0;
    data = loadYaml(text, {
      schema: CORE_SCHEMA,
      filename: file,
      listener: (event, state) => {
        if (event === 'open' && ++nodes > MAX_YAML_NODES) throw new TooManyNodes(state.line);
      },
    });
  } catch (err) {
    if (err instanceof TooManyNodes)
      throw fail([
        {
          file,
          path: '',
          line: err.line + 1,
          message: `more than ${MAX_YAML_NODES} YAML keys and values (reading stopped here)`,
          allowed: `at most ${MAX_YAML_NODES} (docs/site-config.md, "File limits"); a generated 1 000-unit hall has 527 000`,
        },
      ]);
    // The parser recurses: a file of a million `[` must be a refusal, never a crash.
    if (err instanceof RangeError)
      throw fail([
        {
          file,
          path: '',
          message: 'YAML syntax: nested too deeply to read',
          allowed: 'well-formed YAML',
        },
      ]);
    if (!(err instanceof YAMLException)) throw err;
    throw fail([
      {
        file,
        path: '',
        line: err.mark ? err.mark.line + 1 : undefined,
        message: `YAML syntax: ${err.reason}`,
        allowed: 'well-formed YAML',
      },
    ]);
  }
  const aliases = aliasProblem(data, text.length);
  if (aliases) throw fail([shownProblem({ file, line: lineFinder(text)(aliases.path), ...aliases })]);
  return data;
}

/**
 * js-yaml gives an alias the very object its anchor made: `x: &a [*a]` is a value that holds
 * itself, and nine anchors of nine aliases each are 9^9 values from 200 bytes ("billion laughs").
 * Every walk after parsing (the checks, the schema, the JSON copy) would then run out of memory or
 * never end, in the daemon on a reload too. Without aliases a file holds at most about one value
 * per byte, so a walk that counts what the aliases add may stop at a bound no alias-free file
 * reaches: a cycle, or aliases that more than double the file, is refused before anything else
 * looks at it. No recursion: a deeply nested file is a list of work, not a stack.
 */
export function aliasProblem(data: unknown, textChars: number): Omit<ConfigProblem, 'file'> | undefined {
  const budget = 2 * textChars + 1024;
  let seen = 0;
  // The containers on the current path: one met again while open holds itself.
  const open = new Set<object>();
  let found: Omit<ConfigProblem, 'file'> | undefined;
  walkDocument(
    data,
    (v, path) => {
      if (v !== null && typeof v === 'object' && open.has(v))
        found = {
          path: path(),
          message: 'an alias (*name) refers to a value that holds it: the value would be endless',
          allowed: 'aliases only to anchors (&name) outside the value that uses them',
        };
      else if (++seen > budget)
        found = {
          path: path(),
          message: `aliases (*name) expand the file to more than ${budget} values (an alias bomb)`,
          allowed: 'each value written out, or aliases that repeat a few small values',
        };
      else if (v !== null && typeof v === 'object') open.add(v);
      return found !== undefined;
    },
    (container) => open.delete(container),
  );
  return found;
}

/**
 * Every value of a parsed document, depth first in document order, with its JSON-pointer path
 * (built only when asked for). No recursion, and no list of a container's children: a list of 4
 * million values is one frame of work, not 4 million. `visit` returns true to stop the walk;
 * `leave` hears of each container whose values are all visited.
 */
export function walkDocument(
  data: unknown,
  visit: (value: unknown, path: () => string) => boolean,
  leave?: (container: object) => void,
): void {
  const frames: { v: object; path: string; keys: string[] | undefined; i: number; n: number }[] = [];
  const step = (v: unknown, path: () => string): boolean => {
    if (visit(v, path)) return true;
    if (v !== null && typeof v === 'object') {
      const keys = Array.isArray(v) ? undefined : Object.keys(v);
      frames.push({ v, path: path(), keys, i: 0, n: keys ? keys.length : (v as unknown[]).length });
    }
    return false;
  };
  if (step(data, () => '')) return;
  while (frames.length > 0) {
    const f = frames.at(-1)!;
    if (f.i === f.n) {
      frames.pop();
      leave?.(f.v);
      continue;
    }
    const i = f.i++;
    const key = f.keys?.[i];
    const child = key === undefined ? (f.v as unknown[])[i] : (f.v as Record<string, unknown>)[key];
    if (step(child, () => `${f.path}/${key === undefined ? i : pointerToken(key)}`)) return;
  }
}

/** The longest key path, message or list of what is allowed a problem carries, in UTF-16 units. */
export const SHOWN_PROBLEM_CHARS = 300;

/**
 * A problem as it may be printed and logged: what it quotes of the file (a key in its path, an
 * unknown value in its message) has its control and bidi characters escaped, so that a key
 * holding ESC or U+202E cannot retitle a terminal or reorder the line, and is clipped, so that a
 * 100 KB value is not a 100 KB line. Its line was found from the path as written.
 */
export function shownProblem<P extends ConfigProblem | RuleProblem>(p: P): P {
  const shown = (s: string) => clip(printable(s), SHOWN_PROBLEM_CHARS);
  return { ...p, path: shown(p.path), message: shown(p.message), allowed: shown(p.allowed) };
}

/** A config checked without throwing: its value once its shape is valid, and every problem found. */
export interface CheckedConfig<T> {
  /** The document as parsed, whatever its shape (undefined for an empty file). */
  data: unknown;
  /** The value, defaults filled in, once the shape is valid (its rules may still have failed). */
  value: T | undefined;
  problems: ConfigProblem[];
  /** The line of a JSON-pointer path in the file. */
  lines: (pointer: string) => number | undefined;
}

/** Where a config's settings are documented: what a problem with no better hint points to. */
export interface ConfigDocs {
  docs?: string;
}

export interface CheckOptions extends ConfigDocs {
  /** Sees the parsed document before the schema fills its defaults in (it must not change it). */
  asWritten?: (data: unknown) => void;
}

/**
 * YAML → values no schema can judge (numbers that are not finite, credentials in URLs) → schema
 * (with defaults filled in) → cross-reference rules, every problem collected with its line.
 * Shared by the site file, the controller config and the fencing gateway's config. Throws only for
 * a YAML syntax error (the one problem a file can then have).
 */
export function checkYamlConfig<T>(
  text: string,
  file: string,
  validate: ValidateFunction<T>,
  rules: (data: T) => RuleProblem[],
  opts: CheckOptions = {},
): CheckedConfig<T> {
  const data = loadYamlData(text, file);
  const lines = lineFinder(text);
  const checked = (value: T | undefined, problems: ConfigProblem[]): CheckedConfig<T> => ({
    data,
    value,
    problems: problems.map(shownProblem),
    lines,
  });
  if (data === undefined || data === null)
    return checked(undefined, [
      {
        file,
        path: '',
        message: 'the file is empty (nothing but blank lines or comments)',
        allowed: `the settings as a YAML mapping of key: value lines${opts.docs ? ` (${opts.docs})` : ''}`,
      },
    ]);
  const raw = rawValueProblems(data);
  const problems: ConfigProblem[] = [...raw.notFinite, ...raw.urls].map((p) => ({
    ...p,
    file,
    line: lines(p.path),
  }));
  opts.asWritten?.(data);
  // Each step stops at MAX_CHECKED_PROBLEMS: what a refusal costs is bounded whatever the file holds.
  const v = validateBounded(validate, data);
  if (!v.valid) {
    // What the walk above said of a value is the real problem: not also "must be <= 200" and
    // "must be >= 0" for a .nan, or the pattern that only keeps credentials out of a URL.
    const notFinite = new Set(raw.notFinite.map((p) => p.path));
    const urls = new Set(raw.urls.map((p) => p.path));
    for (const e of unionBranchErrors(v.errors, data)) {
      if (notFinite.has(e.instancePath)) continue;
      if (e.keyword === 'pattern' && urls.has(e.instancePath)) continue;
      problems.push(fromAjv(e, file, lines, opts.docs));
    }
    return checked(undefined, boundedProblems(dedupeProblems(problems), file, raw.stopped || v.stopped));
  }
  // Rules judge sound values only (a NaN end would also make a range "empty"); and a NaN would
  // become null in the copy below, a value the schema never allowed.
  if (raw.notFinite.length > 0) return checked(undefined, boundedProblems(problems, file, raw.stopped));
  for (const p of rules(data as T)) {
    if (problems.length > MAX_CHECKED_PROBLEMS) break;
    problems.push({ ...p, file, line: lines(p.path) });
  }
  // Strings cut from the text may be V8 slices of it, so one kept string (a sensor's id) would
  // keep the whole text alive: 4.3 MB for a 1 000-unit site, as long as the config runs. A JSON
  // round trip gives the config strings of its own; equal values are then made one.
  return checked(
    internValues(JSON.parse(JSON.stringify(data))) as T,
    boundedProblems(problems, file, raw.stopped),
  );
}

/** checkYamlConfig, throwing ConfigError with every problem; the value when there is none. */
export function parseYamlConfig<T>(
  text: string,
  file: string,
  validate: ValidateFunction<T>,
  rules: (data: T) => RuleProblem[],
  opts: CheckOptions = {},
): T {
  const { value, problems } = checkYamlConfig(text, file, validate, rules, opts);
  if (problems.length > 0 || value === undefined) throw new ConfigError(file, problems);
  return value;
}

/** A key as one JSON-pointer token (RFC 6901). */
export const pointerToken = (key: string): string => key.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * What a schema cannot see in the parsed values: a number that is not finite (YAML's `.nan`,
 * `.inf`: JSON Schema's number type lets them through, and the JSON copy of the config would turn
 * them into null, so that a default or "out of range" took their place unseen), and a URL that
 * carries a user or password (it would be written to logs and errors). Every value, anywhere in
 * the document, whatever its setting, up to MAX_CHECKED_PROBLEMS problems (`stopped` past them).
 */
export function rawValueProblems(data: unknown): {
  notFinite: RuleProblem[];
  urls: RuleProblem[];
  stopped: boolean;
} {
  const notFinite: RuleProblem[] = [];
  const urls: RuleProblem[] = [];
  let stopped = false;
  walkDocument(data, (v, path) => {
    if (typeof v === 'number' && !Number.isFinite(v))
      notFinite.push({
        path: path(),
        message: Number.isNaN(v) ? 'is not a number (.nan)' : `is infinite (${v > 0 ? '.inf' : '-.inf'})`,
        allowed: 'a finite number',
      });
    else if (typeof v === 'string') {
      const p = urlCredentialProblem(v, path);
      if (p) urls.push(p);
    }
    stopped = notFinite.length + urls.length >= MAX_CHECKED_PROBLEMS;
    return stopped;
  });
  return { notFinite, urls, stopped };
}

/**
 * A union (JSON Schema anyOf) that fails reports every branch's errors and "must match a schema in
 * anyOf": for `cluster.etcd` written as a mapping with one bad key, "must be array" would bury the
 * real problem. Keep the errors of the branch whose type the value has; when none has, one problem
 * that says what the value may be (a list or a mapping; one of the listed words).
 */
export function unionBranchErrors(errors: ErrorObject[], data: unknown): ErrorObject[] {
  const drop = new Set<ErrorObject>();
  const add: ErrorObject[] = [];
  for (const union of errors) {
    if (union.keyword !== 'anyOf' || drop.has(union)) continue;
    const prefix = `${union.schemaPath}/`;
    const branches = new Map<number, ErrorObject[]>();
    for (const e of errors) {
      if (!e.schemaPath.startsWith(prefix)) continue;
      const branch = Number(e.schemaPath.slice(prefix.length).split('/')[0]);
      if (!branches.has(branch)) branches.set(branch, []);
      branches.get(branch)!.push(e);
    }
    const atRoot = (e: ErrorObject) => e.instancePath === union.instancePath;
    const misfit = (es: ErrorObject[]) =>
      es.some((e) => atRoot(e) && (e.keyword === 'type' || e.keyword === 'const'));
    const fitting = [...branches.entries()].filter(([, es]) => !misfit(es));
    drop.add(union);
    if (fitting.length > 0) {
      const keep = fitting[0]![0];
      for (const [b, es] of branches) if (b !== keep) for (const e of es) drop.add(e);
      continue;
    }
    for (const es of branches.values()) for (const e of es) drop.add(e);
    const words = [...branches.values()].flatMap((es) =>
      es
        .filter(atRoot)
        .map((e) =>
          e.keyword === 'const'
            ? JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)
            : typeWord(String((e.params as { type: unknown }).type)),
        ),
    );
    const unique = [...new Set(words)];
    add.push({
      ...union,
      keyword: 'anyOf',
      message: `is ${describeValue(valueAt(data, union.instancePath))}`,
      params: {
        allowed: unique.length > 1 ? `${unique.slice(0, -1).join(', ')} or ${unique.at(-1)}` : unique[0],
      },
    });
  }
  return [...errors.filter((e) => !drop.has(e)), ...add];
}

/** The value at a JSON pointer of the parsed document (undefined where there is none). */
export function valueAt(data: unknown, pointer: string): unknown {
  let v = data;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, key)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

function describeValue(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (v === null || v === undefined) return 'empty';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return 'text';
  return `a ${typeof v}`;
}

/** JSON Schema's type names as a YAML author knows them. */
function typeWord(type: string): string {
  switch (type) {
    case 'object':
      return 'a mapping (key: value)';
    case 'array':
      return 'a list';
    case 'string':
      return 'text';
    case 'integer':
      return 'a whole number';
    case 'number':
      return 'a number';
    case 'boolean':
      return 'true or false';
    case 'null':
      return 'nothing (null)';
    default:
      return `a ${type}`;
  }
}

/** Containers up to this many characters of JSON are shared when equal. */
const SHARED_UP_TO_CHARS = 256;

/**
 * `value` with equal strings made one string and equal small arrays and objects one object, in
 * place: a 1 000-unit site repeats `inlet-bottom` 23 000 times (V8 interns only the shortest JSON
 * values) and the same 4-sensor list on most of its 11 765 nodes. The config is read-only once
 * loaded, so sharing is safe.
 */
export function internValues(value: unknown): unknown {
  const strings = new Map<string, string>();
  const containers = new Map<string, object>();
  // Returns the value to keep and, for a small one, its JSON (the key it is shared by).
  const visit = (v: unknown): [unknown, string | undefined] => {
    if (typeof v === 'string') {
      const kept = strings.get(v);
      if (kept !== undefined) return [kept, JSON.stringify(kept)];
      strings.set(v, v);
      return [v, JSON.stringify(v)];
    }
    if (v === null || typeof v !== 'object') return [v, JSON.stringify(v)];
    let size = 2;
    const parts: string[] = [];
    const small = (key: string | undefined, prefix = ''): void => {
      if (key === undefined || size > SHARED_UP_TO_CHARS) size = Number.POSITIVE_INFINITY;
      else {
        size += prefix.length + key.length + 1;
        parts.push(prefix + key);
      }
    };
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const [kept, key] = visit(v[i]);
        v[i] = kept;
        small(key);
      }
    } else {
      const o = v as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        const [kept, key] = visit(o[k]);
        o[k] = kept;
        small(key, `${JSON.stringify(k)}:`);
      }
    }
    if (size > SHARED_UP_TO_CHARS) return [v, undefined];
    const key = Array.isArray(v) ? `[${parts.join(',')}]` : `{${parts.join(',')}}`;
    const shared = containers.get(key);
    if (shared !== undefined) return [shared, key];
    containers.set(key, v);
    return [v, key];
  };
  return visit(value)[0];
}

/**
 * Above this size a problem is reported by its path only: finding its line takes the `yaml`
 * library's document model, ~25× the file in memory.
 */
const LINES_UP_TO_BYTES = 512 * 1024;

/** The line (1-based) of a JSON-pointer path in the text, parsed for that only when asked. */
export function lineFinder(text: string): (pointer: string) => number | undefined {
  let doc: { root: unknown; lc: LineCounter } | null | undefined;
  return (pointer) => {
    if (doc === undefined) {
      if (text.length > LINES_UP_TO_BYTES) doc = null;
      else {
        const { LineCounter, parseDocument } = yamlLib();
        const lc = new LineCounter();
        doc = { root: parseDocument(text, { lineCounter: lc }).contents, lc };
      }
    }
    return doc ? lineOf(doc.root, pointer, doc.lc) : undefined;
  };
}

export function fromAjv(
  e: ErrorObject,
  file: string,
  lines: (pointer: string) => number | undefined,
  docs = 'docs/site-config.md',
): ConfigProblem {
  let path = e.instancePath;
  let message = e.message ?? 'is invalid';
  let allowed = describeAllowed(e, docs);
  if (e.keyword === 'additionalProperties') {
    const extra = String((e.params as { additionalProperty: string }).additionalProperty);
    path = `${path}/${extra}`;
    message = 'unknown setting';
    allowed = 'remove it or check the spelling';
  } else if (e.keyword === 'discriminator') {
    const tag = String((e.params as { tag: string }).tag);
    const value = (e.params as { tagValue?: unknown }).tagValue;
    path = `${path}/${tag}`;
    // ajv words a missing tag as the unknown value `undefined`.
    message = value === undefined ? 'is required' : `unknown ${tag} ${JSON.stringify(value)}`;
    allowed = 'modbus-tcp, modbus-rtu or opcua';
  } else if (e.keyword === 'required') {
    const missing = String((e.params as { missingProperty: string }).missingProperty);
    path = `${path}/${missing}`;
    message = 'is required';
  }
  return { file, path, line: lines(path), message, allowed };
}

function describeAllowed(e: ErrorObject, docs: string): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `${String(p.comparison)} ${String(p.limit)}`;
    case 'type':
      return typeWord(String(p.type));
    case 'pattern':
      return `text matching ${String(p.pattern)}`;
    case 'const':
      return `exactly ${JSON.stringify(p.allowedValue)}`;
    case 'enum': {
      const values = Array.isArray(p.allowedValues) ? p.allowedValues.map((v) => String(v)) : [];
      return values.length > 1 ? `${values.slice(0, -1).join(', ')} or ${values.at(-1)}` : `see ${docs}`;
    }
    case 'anyOf':
      return typeof p.allowed === 'string'
        ? `${p.allowed}; see ${docs}`
        : `one of the documented shapes (see ${docs})`;
    case 'minItems':
      return `at least ${String(p.limit)} item(s)`;
    case 'maxItems':
      return `at most ${String(p.limit)} item(s)`;
    case 'uniqueItems':
      return 'no duplicate entries';
    default:
      return `see ${docs}`;
  }
}

// A union error produces one error per branch; keep the first per path+message so the list stays readable.
export function dedupeProblems(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.path}|${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Line (1-based) of the deepest YAML node on a JSON-pointer path. */
function lineOf(root: unknown, pointer: string, lc: LineCounter): number | undefined {
  const { isMap, isSeq } = yamlLib();
  let node = root as YamlNode | null | undefined;
  let best: number | undefined;
  const parts = pointer.split('/').slice(1);
  for (const raw of parts) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (node?.range) best = lc.linePos(node.range[0]).line;
    if (isMap(node)) {
      const pair = node.items.find((it) => String((it.key as { value?: unknown })?.value ?? it.key) === key);
      if (!pair) return best;
      const keyNode = pair.key as YamlNode | undefined;
      if (keyNode?.range) best = lc.linePos(keyNode.range[0]).line;
      node = pair.value as YamlNode | null;
    } else if (isSeq(node)) {
      node = node.items[Number(key)] as YamlNode | null;
    } else {
      return best;
    }
  }
  if (node?.range) best = lc.linePos(node.range[0]).line;
  return best;
}
