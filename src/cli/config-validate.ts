// `coolctl config validate FILE`: tells a site file from a controller config by what it holds, and
// checks it against its own schema — a site file given to the controller's schema would be told
// "/cluster is required" and "unknown setting" for every site key, which helps nobody. --kind
// overrides the guess. Every problem is listed with its file and line.
import { readFile } from 'node:fs/promises';
import { load as loadYaml } from 'js-yaml';
import { ConfigError, type ConfigProblem, formatProblem } from '../errors.ts';

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
}

export async function validateConfigFile(
  file: string,
  o: { kind?: string; node?: string } = {},
): Promise<ValidateResult> {
  const fail = (kind: ConfigKind | null, problems: ConfigProblem[]): ValidateResult => ({
    file,
    kind,
    valid: false,
    summary: null,
    problems,
  });
  if (o.kind !== undefined && o.kind !== 'site' && o.kind !== 'controller')
    return fail(null, [{ file, path: '', message: `--kind ${o.kind}`, allowed: 'site or controller' }]);
  let kind = o.kind as ConfigKind | undefined;
  if (!kind) {
    let doc: unknown;
    try {
      doc = loadYaml(await readFile(file, 'utf8'));
    } catch {
      doc = undefined; // the loader of either kind reports an unreadable or broken file
    }
    const guess = detectConfigKind(doc);
    if (guess === null && doc !== undefined)
      return fail(null, [
        {
          file,
          path: '',
          message:
            'neither a controller config nor a site file: a controller config has cluster:, nodes: and site: <site file>; a site file has site: {id, name}, rooms:, racks:, airHandlers:, gateways:, sensorNodes: and controlGroups:',
          allowed: 'one of the two (or say which with --kind site|controller)',
        },
      ]);
    kind = guess ?? 'controller';
  }
  try {
    if (kind === 'site') {
      const { loadSite } = await import('../config/load-site.ts');
      const s = await loadSite(file);
      return {
        file,
        kind,
        valid: true,
        summary: `site ${s.site.id}: ${s.rooms.length} rooms, ${s.racks.length} racks, ${s.airHandlers.length} air handlers, ${s.sensorNodes.length} sensor nodes, ${s.controlGroups.length} groups`,
        problems: [],
      };
    }
    const { loadControllerConfig } = await import('../config/controller-config.ts');
    const node = o.node ?? (await firstNode(file));
    const cfg = await loadControllerConfig(file, node);
    return {
      file,
      kind,
      valid: true,
      summary:
        `${cfg.site.controlGroups.length} groups, ${cfg.site.airHandlers.length} air handlers, ` +
        `${Object.keys(cfg.nodes).length} nodes, lease TTL ${cfg.cluster.leaseTtlS} s`,
      problems: [],
    };
  } catch (err) {
    if (err instanceof ConfigError) return fail(kind, err.problems);
    throw err;
  }
}

/** The text `config validate` prints for a result (stdout when valid, stderr when not). */
export function formatValidation(r: ValidateResult): string {
  if (r.valid) return `${r.file}: valid ${r.kind === 'site' ? 'site file ' : ''}— ${r.summary}`;
  const what = r.kind === 'site' ? 'site file' : r.kind === 'controller' ? 'controller config' : 'file';
  return `${r.file}: not a valid ${what} — ${r.problems.length} problem(s)\n${r.problems.map(formatProblem).join('\n')}`;
}

async function firstNode(file: string): Promise<string> {
  try {
    const doc = loadYaml(await readFile(file, 'utf8')) as { nodes?: Record<string, unknown> };
    return Object.keys(doc?.nodes ?? {})[0] ?? '(none)';
  } catch {
    return '(none)'; // the loader reports the real problem
  }
}
