// Loads a site file (YAML) and validates it against the one site schema plus the cross-reference
// rules. Every problem is collected and reported together — never just the first — each with the
// file, the path in the document, the line, what is wrong and what is allowed.
import { readFile } from 'node:fs/promises';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { isMap, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors.ts';
import { checkSiteRules } from './site-rules.ts';
import { type Site, SiteSchema } from './site-schema.ts';

export const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, discriminator: true });
const validateSchema = ajv.compile<Site>(SiteSchema);

/** Parses and validates YAML text; `file` only labels the problems. Throws ConfigError listing all problems. */
export function parseSite(text: string, file = '<inline>'): Site {
  return parseYamlConfig(text, file, validateSchema, checkSiteRules);
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
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true });
  const problems: ConfigProblem[] = [];
  for (const err of doc.errors) {
    const pos = err.linePos?.[0];
    problems.push({
      file,
      path: '',
      line: pos?.line,
      message: `YAML syntax: ${err.message.split('\n')[0]}`,
      allowed: 'well-formed YAML',
    });
  }
  if (problems.length > 0) throw new ConfigError(file, problems);

  const data: unknown = doc.toJS();
  if (!validate(data)) {
    for (const e of validate.errors ?? []) problems.push(fromAjv(e, file, doc.contents, lineCounter));
    throw new ConfigError(file, dedupe(problems));
  }
  for (const p of rules(data)) {
    problems.push({ ...p, file, line: lineOf(doc.contents, p.path, lineCounter) });
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return data;
}

export async function loadSite(file: string): Promise<Site> {
  return parseSite(await readConfigFile(file), file);
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

function fromAjv(e: ErrorObject, file: string, root: unknown, lc: LineCounter): ConfigProblem {
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
  return { file, path, line: lineOf(root, path, lc), message, allowed };
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
function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
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
