// Loads a site file (YAML) and validates it against the one site schema plus the cross-reference
// rules. Every problem is collected and reported together — never just the first — each with the
// file, the path in the document, the line, what is wrong and what is allowed.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { CORE_SCHEMA, load as loadYaml, YAMLException } from 'js-yaml';
import type { LineCounter, Node as YamlNode } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors.ts';
import { checkSiteRules } from './site-rules.ts';
import { type Site, SiteSchema } from './site-schema.ts';

export const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, discriminator: true });
// Compiled on first use: the site schema's validator is ~14 MB of heap, and modules that only borrow
// parseYamlConfig (the fencing gateway's config) never need it.
let validateSchema: ValidateFunction<Site> | undefined;

/** Parses and validates YAML text; `file` only labels the problems. Throws ConfigError listing all problems. */
export function parseSite(text: string, file = '<inline>'): Site {
  validateSchema ??= ajv.compile<Site>(SiteSchema);
  return parseYamlConfig(text, file, validateSchema, checkSiteRules);
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
  try {
    // js-yaml builds plain values straight from the text: ~30 MB at the peak for a 4.4 MB
    // 1 000-unit site, where the `yaml` library's document model took ~100 MB (and a heap that big
    // at start stays in V8's page pool, i.e. in the daemon's RSS, for good).
    return loadYaml(text, { schema: CORE_SCHEMA, filename: file });
  } catch (err) {
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
}

/**
 * YAML → schema (with defaults filled in) → cross-reference rules, every problem collected with
 * its line. Shared by the site file and the controller config.
 */
export function parseYamlConfig<T>(
  text: string,
  file: string,
  validate: ValidateFunction<T>,
  rules: (data: T) => { path: string; message: string; allowed: string }[],
): T {
  const data = loadYamlData(text, file);
  const lines = lineFinder(text);
  const problems: ConfigProblem[] = [];
  if (!validate(data)) {
    for (const e of validate.errors ?? []) problems.push(fromAjv(e, file, lines));
    throw new ConfigError(file, dedupeProblems(problems));
  }
  for (const p of rules(data)) problems.push({ ...p, file, line: lines(p.path) });
  if (problems.length > 0) throw new ConfigError(file, problems);
  // Strings cut from the text may be V8 slices of it, so one kept string (a sensor's id) would
  // keep the whole text alive: 4.3 MB for a 1 000-unit site, as long as the config runs. A JSON
  // round trip gives the config strings of its own; equal values are then made one.
  return internValues(JSON.parse(JSON.stringify(data))) as T;
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

type YamlLib = typeof import('yaml');
let yamlLib: YamlLib | undefined;
/**
 * The `yaml` library, loaded on the first problem to place: 143 modules (~3 MB of heap) that a
 * daemon with a valid config never needs.
 */
const yaml = (): YamlLib => {
  yamlLib ??= createRequire(import.meta.url)('yaml') as YamlLib;
  return yamlLib;
};

/** The line (1-based) of a JSON-pointer path in the text, parsed for that only when asked. */
export function lineFinder(text: string): (pointer: string) => number | undefined {
  let doc: { root: unknown; lc: LineCounter } | null | undefined;
  return (pointer) => {
    if (doc === undefined) {
      if (text.length > LINES_UP_TO_BYTES) doc = null;
      else {
        const { LineCounter, parseDocument } = yaml();
        const lc = new LineCounter();
        doc = { root: parseDocument(text, { lineCounter: lc }).contents, lc };
      }
    }
    return doc ? lineOf(doc.root, pointer, doc.lc) : undefined;
  };
}

/**
 * Loads and checks a site file; a unit whose profile (in `profilesDir`, default config/profiles)
 * has no section for the unit's protocol is refused with its line (./site-profiles.ts).
 */
export async function loadSite(file: string, opts: { profilesDir?: string } = {}): Promise<Site> {
  const text = await readConfigFile(file);
  const site = parseSite(text, file);
  // Only a site with vendor profiles reads them (and loads the profile loader).
  if (site.airHandlers.some((a) => a.profile !== undefined && a.profile !== 'coolctl-native')) {
    const { unitProfileProblems } = await import('./site-profiles.ts');
    const problems = await unitProfileProblems(site, opts.profilesDir);
    if (problems.length > 0) {
      const lines = lineFinder(text);
      throw new ConfigError(
        file,
        problems.map((p) => ({ ...p, file, line: lines(p.path) })),
      );
    }
  }
  return site;
}

/** Reads a config file; an unreadable one is a ConfigError like any other problem. */
export async function readConfigFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(
      file,
      [
        {
          file,
          path: '',
          message: `cannot read file: ${(cause as Error).message}`,
          allowed: 'a readable YAML file',
        },
      ],
      { cause },
    );
  }
  return text;
}

export function fromAjv(
  e: ErrorObject,
  file: string,
  lines: (pointer: string) => number | undefined,
): ConfigProblem {
  let path = e.instancePath;
  let message = e.message ?? 'is invalid';
  let allowed = describeAllowed(e);
  if (e.keyword === 'additionalProperties') {
    const extra = String((e.params as { additionalProperty: string }).additionalProperty);
    path = `${path}/${extra}`;
    message = 'unknown setting';
    allowed = 'remove it or check the spelling';
  } else if (e.keyword === 'discriminator') {
    const tag = String((e.params as { tag: string }).tag);
    path = `${path}/${tag}`;
    message = `unknown ${tag} ${JSON.stringify((e.params as { tagValue?: unknown }).tagValue)}`;
    allowed = 'modbus-tcp, modbus-rtu or opcua';
  } else if (e.keyword === 'required') {
    const missing = String((e.params as { missingProperty: string }).missingProperty);
    path = `${path}/${missing}`;
    message = 'is required';
  }
  return { file, path, line: lines(path), message, allowed };
}

function describeAllowed(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `${String(p.comparison)} ${String(p.limit)}`;
    case 'type':
      return `a ${String(p.type)}`;
    case 'pattern':
      return `text matching ${String(p.pattern)}`;
    case 'const':
      return `exactly ${JSON.stringify(p.allowedValue)}`;
    case 'anyOf':
      return 'one of the documented shapes (see docs/site-config.md)';
    case 'minItems':
      return `at least ${String(p.limit)} item(s)`;
    case 'maxItems':
      return `at most ${String(p.limit)} item(s)`;
    case 'uniqueItems':
      return 'no duplicate entries';
    default:
      return 'see docs/site-config.md';
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
  const { isMap, isSeq } = yaml();
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
