// The docs as a new operator reads them, held to the product at HEAD: an operator follows README.md
// and docs/*.md literally, so every option, config key, file, npm script, metric and route they
// name must be one the code has. Only what can be read without judging prose is checked: options
// on a `coolctl …` line, keys of YAML examples and of `a.b.c` settings, the site file's tables,
// repository paths, `npm run` lines, backticked metric names and `METHOD /path` routes. The other
// direction (everything a node exports is documented) is test/metrics/prometheus-assets.test.ts.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  DEFAULT_ALARM_DELAYS,
  DEFAULT_ALARM_LIMITS,
  DEFAULT_ALARM_RETENTION,
} from '../../src/config/alarm-schema.ts';
import { ControllerConfigSchema } from '../../src/config/controller-config.ts';
import { SiteSchema } from '../../src/config/site-schema.ts';
import { declaredNames } from '../metrics/metric-names.ts';
import { Hall } from '../support/hall.ts';
import { REPO_ROOT } from '../support/repo.ts';

const DOCS = [
  'README.md',
  ...readdirSync(join(REPO_ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const text = (doc: string): string => readFileSync(join(REPO_ROOT, doc), 'utf8');

/** Each doc's lines, with shell continuations (`\` at a line's end) joined. */
function docLines(): { where: string; line: string }[] {
  return DOCS.flatMap((doc) =>
    text(doc)
      .replace(/\\\n\s*/g, ' ')
      .split('\n')
      .map((line, i) => ({ where: `${doc}:${i + 1}`, line })),
  );
}

/** The CLI's command tree as its own completion script states it: command path → its options. */
function cliOptions(): Map<string, Set<string>> {
  const r = spawnSync(process.execPath, ['src/cli.ts', 'completion', 'bash'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(r.status, r.stderr).toBe(0);
  const tree = new Map<string, Set<string>>();
  for (const m of r.stdout.matchAll(/^\s+"([a-z ]+)"\) opts="([^"]*)"/gm))
    tree.set(m[1]!, new Set(m[2]!.split(' ')));
  return tree;
}

type Schema = { [k: string]: unknown };

/** The schemas a key may have below `s` (through unions, arrays and maps). */
function childSchemas(s: Schema, key: string): Schema[] {
  const out: Schema[] = [];
  const walk = (x: unknown): void => {
    if (!x || typeof x !== 'object') return;
    const o = x as Schema;
    const props = o.properties as Record<string, Schema> | undefined;
    if (props?.[key]) out.push(props[key]);
    else if (o.patternProperties) out.push(...Object.values(o.patternProperties as Record<string, Schema>));
    else if (o.additionalProperties && typeof o.additionalProperties === 'object')
      out.push(o.additionalProperties as Schema);
    for (const k of ['anyOf', 'oneOf', 'allOf'])
      if (Array.isArray(o[k])) for (const v of o[k] as unknown[]) walk(v);
    if (o.items) walk(o.items);
  };
  walk(s);
  return out;
}

/** Every property schema named `key` anywhere below `s`. */
function allNamed(s: unknown, key: string, out: Schema[] = []): Schema[] {
  if (!s || typeof s !== 'object') return out;
  for (const [k, v] of Object.entries(s as Schema)) {
    if (k === 'properties' && v && typeof v === 'object') {
      for (const [name, p] of Object.entries(v as Record<string, Schema>)) {
        if (name === key) out.push(p);
        allNamed(p, key, out);
      }
    } else if (typeof v === 'object') allNamed(v, key, out);
  }
  return out;
}

/** Keys of a parsed YAML value that no schema below `schemas` knows, as paths. */
function unknownKeys(schemas: Schema[], v: unknown, path: string, out: string[]): string[] {
  if (Array.isArray(v)) for (const x of v) unknownKeys(schemas, x, `${path}[]`, out);
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) {
      if (k === '…' || k === '...') continue; // an example's "and so on"
      const kids = schemas.flatMap((s) => childSchemas(s, k));
      if (kids.length === 0) out.push(`${path}.${k}`);
      else unknownKeys(kids, x, `${path}.${k}`, out);
    }
  return out;
}

const SITE = SiteSchema as unknown as Schema;
const CONTROLLER = ControllerConfigSchema as unknown as Schema;
const topKeys = (s: Schema): string[] => Object.keys(s.properties as object);

describe('the docs name only options, settings, files and scripts that exist', () => {
  it('every option on a `coolctl COMMAND …` line is one that command accepts', () => {
    const tree = cliOptions();
    expect(tree.get('status')?.has('--output')).toBe(true);
    const wrong: string[] = [];
    let checked = 0;
    // A command quoted inside another's option (`--activate-cmd 'ssh {node} coolctl release …'`)
    // is checked as its own command, and its options are not the outer command's.
    const check = (where: string, line: string): void => {
      for (const m of line.matchAll(/\bcoolctl(?: --)? ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?([^`#|]*)/g)) {
        const two = `${m[1]} ${m[2] ?? ''}`.trim();
        const path = tree.has(two) ? two : m[1]!;
        if (!tree.has(path)) continue; // prose: "coolctl keeps …"
        const quoted = /'[^']*'|"[^"]*"/g;
        const rest = (path === two ? m[3]! : `${m[2] ?? ''}${m[3]}`).replace(quoted, (q) => {
          check(where, q.slice(1, -1));
          return "''";
        });
        for (const o of rest.matchAll(/(?<![\w-])--[a-z][a-z0-9-]*/g)) {
          checked++;
          if (!tree.get(path)!.has(o[0])) wrong.push(`${where}: coolctl ${path} ${o[0]}`);
        }
      }
    };
    for (const { where, line } of docLines()) check(where, line);
    expect(checked).toBeGreaterThan(50);
    expect(wrong).toEqual([]);
  }, 30_000);

  it('every site or controller config example is made of keys the schemas know', () => {
    const wrong: string[] = [];
    let checked = 0;
    for (const doc of DOCS)
      for (const m of text(doc).matchAll(/```yaml\n([\s\S]*?)```/g)) {
        const v = parse(m[1]!) as unknown;
        if (!v || typeof v !== 'object' || Array.isArray(v)) continue;
        const keys = Object.keys(v);
        // An example is a config fragment when its top-level keys are all one kind's.
        const root = keys.every((k) => topKeys(CONTROLLER).includes(k))
          ? CONTROLLER
          : keys.every((k) => topKeys(SITE).includes(k))
            ? SITE
            : undefined;
        if (!root) continue;
        checked++;
        for (const k of unknownKeys([root], v, '', [])) wrong.push(`${doc}: ${k}`);
      }
    expect(checked).toBeGreaterThanOrEqual(4);
    expect(wrong).toEqual([]);
  });

  it('every `a.b.c` setting of the controller config or the site file resolves in their schemas', () => {
    const tops = new Set(topKeys(CONTROLLER));
    // Written the same way but no setting: fields of an answer (the group's `sensors`, the
    // simulator's `api`) and the site file's own sections.
    const notSettings = new Set([
      'api.badRequests',
      'sensors.reasons',
      'sensors.uncoveredRacks',
      'site.mesh',
    ]);
    const wrong: string[] = [];
    for (const doc of DOCS)
      for (const m of text(doc).matchAll(/`([a-z]\w*(?:\.[a-zA-Z]\w*)+)`/g)) {
        const path = m[1]!.split('.');
        if (!tops.has(path[0]!) || notSettings.has(m[1]!)) continue;
        const resolves = (s: Schema): boolean =>
          path.reduce<Schema[]>((at, k) => at.flatMap((x) => childSchemas(x, k)), [s]).length > 0;
        if (!resolves(CONTROLLER) && !resolves(SITE)) wrong.push(`${doc}: ${m[1]}`);
      }
    expect(wrong).toEqual([]);
  });

  it('docs/site-config.md: each section’s keys exist, and a number given as a default is the default', () => {
    const alarmDefaults: Record<string, Record<string, number>> = {
      ...DEFAULT_ALARM_LIMITS,
      delays: DEFAULT_ALARM_DELAYS,
      retention: DEFAULT_ALARM_RETENTION,
      notifications: { maxAttempts: 6 },
    };
    const wrong: string[] = [];
    let heading = '';
    let rows = 0;
    let defaultsChecked = 0;
    for (const line of text('docs/site-config.md').split('\n')) {
      if (line.startsWith('#')) heading = line;
      const row = line.match(/^\| `(\w+)(?:\[\])?` \| (.*?) \|/);
      if (!row) continue;
      const inAlarms = heading.includes('Alarms');
      const alarms = (SITE.properties as Record<string, Schema>).alarms!;
      const section = inAlarms
        ? (alarms.properties as Record<string, Schema>)[row[1]!]
        : (SITE.properties as Record<string, Schema>)[row[1]!];
      if (!section) {
        wrong.push(`${row[1]}: no such section`);
        continue;
      }
      rows++;
      for (const k of row[2]!.matchAll(/`(\w+)\??`(?: \(([^)]*)\))?/g)) {
        const found = allNamed(section, k[1]!);
        if (found.length === 0) {
          // A hyphenated word is a value (`modbus-tcp`, `inlet-top`), not a key.
          if (!/-/.test(k[1]!)) wrong.push(`${row[1]}.${k[1]}: not in the schema`);
          continue;
        }
        const stated = k[2]?.match(/^(?:default )?([−-]?\d[\d.]*)(?:$|;| )/);
        if (!stated) continue;
        const want = Number(stated[1]!.replace('−', '-'));
        const defaults = inAlarms
          ? [alarmDefaults[row[1]!]?.[k[1]!]]
          : found.map((s) => s.default).filter((d) => d !== undefined);
        if (defaults.length > 0) defaultsChecked++;
        if (defaults.length > 0 && !defaults.includes(want))
          wrong.push(`${row[1]}.${k[1]}: the doc says ${want}, the code ${JSON.stringify(defaults)}`);
      }
    }
    expect(rows).toBeGreaterThan(10);
    expect(defaultsChecked).toBeGreaterThan(40);
    expect(wrong).toEqual([]);
  });

  it('every repository path the docs name exists', () => {
    const wrong = new Set<string>();
    for (const doc of DOCS)
      for (const m of text(doc).matchAll(
        /(?<![\w./~-])((?:src|test|deploy|config|scripts|firmware-sim|bench|docs|\.ci)\/[\w@./-]*\w)/g,
      )) {
        const p = m[1]!;
        if (/[A-Z]{3,}/.test(p.replace(/\.md$|README/g, ''))) continue; // a placeholder: NAME, VERSION
        if (!existsSync(join(REPO_ROOT, p)) && !existsSync(join(REPO_ROOT, `${p}.test.ts`)))
          wrong.add(`${doc}: ${p}`);
      }
    expect([...wrong]).toEqual([]);
  });

  it('every `npm run NAME` is a script, and every `npm run bench -- NAME` a benchmark', () => {
    const scripts = Object.keys((JSON.parse(text('package.json')) as { scripts: object }).scripts);
    const benches = readdirSync(join(REPO_ROOT, 'bench'))
      .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
      .map((f) => f.replace(/\.ts$/, ''));
    const wrong = new Set<string>();
    for (const doc of DOCS) {
      const t = text(doc);
      for (const m of t.matchAll(/npm run ([a-z][\w:-]*)/g))
        if (!scripts.includes(m[1]!)) wrong.add(`${doc}: ${m[0]}`);
      for (const m of t.matchAll(/npm run bench -- ([a-z][\w-]*)/g))
        if (!benches.includes(m[1]!)) wrong.add(`${doc}: ${m[0]}`);
    }
    expect([...wrong]).toEqual([]);
    // README's "two commands" and CI: `npm test` is what .ci/run runs.
    expect(text('.ci/run')).toMatch(/^npm test$/m);
    expect(text('README.md')).toMatch(/```sh\nnpm run demo .*\nnpm test .*\n```/);
  });
});

// Families a node says only in some configurations, each with the condition its doc states; and
// names a doc gives as renamed, which no node may export any more.
const CONDITIONAL: Record<string, string> = {
  coolctl_sensor_modbus_polls_total: 'modbus-tcp',
  coolctl_sensor_modbus_connects_total: 'modbus-tcp',
  coolctl_sensor_modbus_stray_frames_total: 'modbus-tcp',
  coolctl_alarm_notifications_total: 'alarms.notifications',
  coolctl_alarm_notifications_pending: 'alarms.notifications',
};
const RENAMED = ['coolctl_lease_remaining_ms', 'coolctl_control_mode'];
/** The docs that describe a controller node's /metrics (the fencing gateway's are its own process). */
const NODE_METRIC_DOCS = [
  'docs/observability.md',
  'docs/alarms.md',
  'docs/sensor-ingest.md',
  'docs/leadership.md',
  'docs/state-cache.md',
  'docs/daemon.md',
  'docs/device-io.md',
];

describe('a running node exports the metrics and serves the routes the docs name', () => {
  let hall: Hall | undefined;
  beforeAll(async () => {
    hall = await Hall.start({ name: 'docs-truth', controllers: 1, groups: 1, airHandlers: 2 });
    await hall.waitForLeaders({ timeoutMs: 60_000 });
  }, 180_000);
  afterAll(async () => {
    await hall?.stopAll();
  }, 60_000);

  const get = async (path: string): Promise<Response> => {
    const res = await fetch(`${hall!.apiUrl(hall!.nodes[0]!)}${path}`, {
      headers: hall!.apiHeaders,
      signal: AbortSignal.timeout(10_000),
    });
    expect(res.status, path).toBe(200);
    return res;
  };

  it('every metric a node’s doc names is declared on its /metrics, or the doc says when it is not', async () => {
    const declared = declaredNames(await (await get('/metrics')).text());
    const missing = new Set<string>();
    const named = new Set<string>();
    for (const doc of NODE_METRIC_DOCS) {
      const t = text(doc);
      // A full name in backticks (`name` or `name{labels}`), not a prefix such as `nodejs_eventloop_lag_*`.
      for (const m of t.matchAll(/`((?:coolctl|nodejs|process)_\w*[a-z0-9])(?=[`{])/g)) {
        const name = m[1]!;
        if (name.startsWith('coolctl_gateway_') || RENAMED.includes(name)) continue;
        named.add(name);
        if (declared.has(name)) continue;
        const when = CONDITIONAL[name];
        // A conditional family's table row, or the paragraph that names it, says when it is there.
        const said = (block: string): boolean =>
          block.includes(name) && block.includes('only') && block.includes(when!);
        if (when && t.split('\n').some((l) => l.startsWith('|') && said(l))) continue;
        if (when && t.split(/\n\s*\n/).some((p) => !p.startsWith('|') && said(p))) continue;
        missing.add(`${doc}: ${name}${when ? ` (said without "only … ${when}")` : ''}`);
      }
    }
    expect(named.size).toBeGreaterThan(60);
    expect([...missing]).toEqual([]);
    for (const name of RENAMED) expect(declared.has(name), name).toBe(false);
    for (const name of Object.keys(CONDITIONAL))
      expect(declared.has(name), `${name} is conditional`).toBe(false);
  }, 60_000);

  it('every `METHOD /path` of the controller API the docs name is in its /openapi.json', async () => {
    const spec = (await (await get('/openapi.json')).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const served = new Set(
      Object.entries(spec.paths).flatMap(([p, methods]) =>
        Object.keys(methods).map((m) => `${m.toUpperCase()} ${p.replace(/\{[^}]+\}/g, '{}')}`),
      ),
    );
    const wrong = new Set<string>();
    let checked = 0;
    for (const doc of DOCS)
      for (const m of text(doc).matchAll(
        /\b(GET|POST|PUT|DELETE|PATCH) (\/(?:api\/v1|healthz|readyz|metrics|openapi|ui)[^\s`?|)]*|\/(?=[\s`]))/g,
      )) {
        const path = m[2]!.replace(/\{[^}]+\}|:[a-zA-Z]+/g, '{}').replace(/(.)\/$/, '$1');
        checked++;
        if (!served.has(`${m[1]} ${path}`)) wrong.add(`${doc}: ${m[0]}`);
      }
    expect(checked).toBeGreaterThan(20);
    expect([...wrong]).toEqual([]);
  }, 30_000);
});
