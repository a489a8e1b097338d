// `coolctl config validate FILE`: tells a site file from a controller config by what it holds (by
// its name when it cannot be read as YAML or is empty), and checks it with the loader `coolctl run`
// uses — a controller config with its site file and every file either names, so that what run would
// refuse, validate refuses. A site file given to the controller's schema would be told "/cluster is
// required" and "unknown setting" for every site key, which helps nobody. --kind overrides the
// guess. Every problem is listed with its file and line (the first 100 of them, then a count).
import { basename } from 'node:path';
import { loadYamlData } from '../config/config-check.ts';
import { readConfigFile, SITE_FILE_MAX_BYTES } from '../config/config-files.ts';
import {
  ConfigError,
  type ConfigProblem,
  formatProblem,
  formatProblems,
  MAX_LISTED_PROBLEMS,
  problemCount,
  problemCountWords,
} from '../errors.ts';
import { printable } from '../util/printable.ts';

export type ConfigKind = 'site' | 'controller';

/** Keys only a site file has at its top level. */
const SITE_KEYS = [
  'rooms',
  'racks',
  'airHandlers',
  'gateways',
  'sensorNodes',
  'controlGroups',
  'mesh',
  'sensing',
];
/** Keys only a controller config has. */
const CONTROLLER_KEYS = ['cluster', 'nodes', 'dataDir', 'api', 'control', 'peer', 'sensors', 'timeScale'];

/**
 * What a parsed document is: a controller config names its site file (`site: path`) and has
 * `cluster:`/`nodes:`; a site file describes the site (`site: {id, name}`, rooms, racks, units).
 * Null when it is neither (the caller says what each would have).
 */
export function detectConfigKind(doc: unknown): ConfigKind | null {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return null;
  const d = doc as Record<string, unknown>;
  const site = SITE_KEYS.filter((k) => k in d).length + (d.site && typeof d.site === 'object' ? 1 : 0);
  const controller = CONTROLLER_KEYS.filter((k) => k in d).length + (typeof d.site === 'string' ? 1 : 0);
  if (site === controller) return null;
  return site > controller ? 'site' : 'controller';
}

export interface ValidateResult {
  file: string;
  kind: ConfigKind | null;
  valid: boolean;
  summary: string | null;
  problems: ConfigProblem[];
  /** What the daemon would run with but probably should not (e.g. MQTT gateways and no broker). */
  warnings: ConfigProblem[];
}

/** A file's kind from its name, for a file whose contents cannot tell: `site.yaml`, `controller.yaml`. */
function kindFromName(file: string): ConfigKind | null {
  const name = basename(file);
  if (/site/i.test(name)) return 'site';
  if (/controller/i.test(name)) return 'controller';
  return null;
}

export async function validateConfigFile(
  file: string,
  o: { kind?: string; node?: string } = {},
): Promise<ValidateResult> {
  const done = (kind: ConfigKind | null, r: Partial<ValidateResult>): ValidateResult =>
    withCappedJson({
      file,
      kind,
      valid: false,
      summary: null,
      ...r,
      problems: (r.problems ?? []).map(printableProblem),
      warnings: (r.warnings ?? []).map(printableProblem),
    });
  const fail = (kind: ConfigKind | null, problems: ConfigProblem[]) => done(kind, { problems });
  if (o.kind !== undefined && o.kind !== 'site' && o.kind !== 'controller')
    return fail(null, [{ file, path: '', message: `--kind ${o.kind}`, allowed: 'site or controller' }]);
  // Read as the loaders read (size, UTF-8, YAML), once: the guess and the default node come from it.
  let doc: unknown;
  let unreadable: ConfigProblem[] | undefined;
  try {
    doc = loadYamlData(await readConfigFile(file, SITE_FILE_MAX_BYTES), file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    unreadable = err.problems;
  }
  let kind = o.kind as ConfigKind | undefined;
  if (!kind) {
    const guess = unreadable ? null : detectConfigKind(doc);
    const empty = !unreadable && (doc === undefined || doc === null);
    if (guess) kind = guess;
    else if (kindFromName(file) && (unreadable || empty)) kind = kindFromName(file)!;
    else if (unreadable) return fail(null, unreadable);
    else if (empty)
      return fail(null, [
        {
          file,
          path: '',
          message: 'the file is empty (nothing but blank lines or comments)',
          allowed: 'a controller config or a site file (say which with --kind site|controller)',
        },
      ]);
    else
      return fail(null, [
        {
          file,
          path: '',
          message:
            'neither a controller config nor a site file: a controller config has cluster:, nodes: and site: <site file>; a site file has site: {id, name}, rooms:, racks:, airHandlers:, gateways:, sensorNodes: and controlGroups:',
          allowed: 'one of the two (or say which with --kind site|controller)',
        },
      ]);
  }
  try {
    if (kind === 'site') {
      const [{ checkSite }, { siteFileProblems }] = await Promise.all([
        import('../config/load-site.ts'),
        import('../config/site-files.ts'),
      ]);
      const c = await checkSite(file);
      if (c.problems.length > 0 || !c.value) return fail(kind, c.problems);
      const s = c.value;
      // The files it names, as a controller would read them (the simulator needs none of them).
      const files = await siteFileProblems(s, file);
      if (files.length > 0) return fail(kind, files);
      return done(kind, {
        valid: true,
        summary: `site ${s.site.id}: ${s.rooms.length} rooms, ${s.racks.length} racks, ${s.airHandlers.length} air handlers, ${s.sensorNodes.length} sensor nodes, ${s.controlGroups.length} groups`,
        warnings: c.warnings,
      });
    }
    const { loadControllerConfig } = await import('../config/controller-config.ts');
    const cfg = await loadControllerConfig(file, o.node ?? firstNode(doc));
    return done(kind, {
      valid: true,
      summary:
        `${cfg.site.controlGroups.length} groups, ${cfg.site.airHandlers.length} air handlers, ` +
        `${Object.keys(cfg.nodes).length} nodes, lease TTL ${cfg.cluster.leaseTtlS} s`,
      warnings: cfg.warnings ?? [],
    });
  } catch (err) {
    if (err instanceof ConfigError) return fail(kind, err.problems);
    throw err;
  }
}

/**
 * Every problem goes to a terminal: what it quotes of a file (a path, a file name, a value) has
 * its control and bidi characters escaped, whichever check found it (the loaders clip and escape
 * their own; the files a config names are checked here too).
 */
function printableProblem(p: ConfigProblem): ConfigProblem {
  return { ...p, path: printable(p.path), message: printable(p.message), allowed: printable(p.allowed) };
}

/**
 * The result as JSON lists the first MAX_LISTED_PROBLEMS problems and counts them all
 * (`problemCount`, with `checkingStopped` when the check stopped at MAX_CHECKED_PROBLEMS): 300 000
 * bad racks must not print 24 MB. The object keeps every problem found.
 */
function withCappedJson(r: ValidateResult): ValidateResult {
  Object.defineProperty(r, 'toJSON', {
    enumerable: false,
    value: () => ({
      ...r,
      problems: r.problems.slice(0, MAX_LISTED_PROBLEMS),
      ...problemCount(r.problems),
    }),
  });
  return r;
}

/** The text `config validate` prints for a result (stdout when valid, stderr when not). */
export function formatValidation(r: ValidateResult): string {
  const warnings = r.warnings.map((w) => `  warning:${formatProblem(w).slice(1)}`);
  if (r.valid)
    return [`${r.file}: valid ${r.kind === 'site' ? 'site file ' : ''}— ${r.summary}`, ...warnings].join(
      '\n',
    );
  const what = r.kind === 'site' ? 'site file' : r.kind === 'controller' ? 'controller config' : 'file';
  return `${r.file}: not a valid ${what} — ${problemCountWords(r.problems)}\n${formatProblems(r.problems)}`;
}

/** The node a controller config is checked for without --node: its first. */
function firstNode(doc: unknown): string {
  const nodes = (doc as { nodes?: unknown } | undefined)?.nodes;
  if (!nodes || typeof nodes !== 'object' || Array.isArray(nodes)) return '(none)';
  return Object.keys(nodes)[0] ?? '(none)'; // the loader reports what is wrong with the file
}
