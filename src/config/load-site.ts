// Loads a site file (YAML) and validates it against the one site schema plus the cross-reference
// rules, through the parser every config shares (./config-check.ts): every problem reported
// together, each with the file, the path in the document, the line, what is wrong and what is
// allowed. Then what only a site has: its tuning notes, its vendor profiles, the files it names.
import { dirname, resolve } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { ConfigError, type ConfigProblem, MAX_CHECKED_PROBLEMS } from '../errors.ts';
import {
  ajv,
  boundedProblems,
  type CheckedConfig,
  checkYamlConfig,
  parseYamlConfig,
  shownProblem,
} from './config-check.ts';
import { readConfigFile, SITE_FILE_MAX_BYTES } from './config-files.ts';
import { checkSiteRules, siteTuningNotes } from './site-rules.ts';
import { type Site, SiteSchema } from './site-schema.ts';
import type { ControlTuningInput } from './tuning-schema.ts';

// Compiled on first use: the site schema's validator is ~14 MB of heap, and modules that only borrow
// parseYamlConfig (the fencing gateway's config) never need it.
let validateSchema: ValidateFunction<Site> | undefined;

/** Parses and validates YAML text; `file` only labels the problems. Throws ConfigError listing all problems. */
export function parseSite(text: string, file = '<inline>'): Site {
  const written = new WrittenTunings();
  return parseYamlConfig(text, file, siteValidator(), (s) => checkSiteRules(s, written.tunings), {
    asWritten: (data) => written.take(data),
  });
}

/**
 * Each group's tuning as the file wrote it: the schema fills its defaults into the document, and
 * the tuning checks must tell a written value (refused when it cannot run as written) from a
 * default (reported when a written range moves it). A copy of these few small objects, no more.
 */
class WrittenTunings {
  tunings: (ControlTuningInput | undefined)[] = [];
  take(data: unknown): void {
    const groups = (data as { controlGroups?: unknown } | null | undefined)?.controlGroups;
    if (!Array.isArray(groups)) return;
    this.tunings = groups.map((g: unknown) => {
      const t = g && typeof g === 'object' ? (g as { tuning?: unknown }).tuning : undefined;
      return t && typeof t === 'object' ? (structuredClone(t) as ControlTuningInput) : undefined;
    });
  }
}

function siteValidator(): ValidateFunction<Site> {
  validateSchema ??= ajv.compile<Site>(SiteSchema);
  return validateSchema;
}

/**
 * Loads and checks a site file; a unit whose profile (in `profilesDir`, default config/profiles)
 * has no section for the unit's protocol is refused with its line (./site-profiles.ts).
 */
export async function loadSite(file: string, opts: { profilesDir?: string } = {}): Promise<Site> {
  const { value, problems } = await checkSite(file, opts);
  if (problems.length > 0 || value === undefined) throw new ConfigError(file, problems);
  return value;
}

/** A site file checked, and what it runs with but probably should not (`tuningNotes`). */
export interface CheckedSite extends CheckedConfig<Site> {
  warnings: ConfigProblem[];
}

/**
 * A site file checked without throwing (but for a file that cannot be read or parsed at all): every
 * problem, and the site once its shape is valid, with the files it names resolved against it.
 */
export async function checkSite(file: string, opts: { profilesDir?: string } = {}): Promise<CheckedSite> {
  const text = await readConfigFile(file, SITE_FILE_MAX_BYTES, 'site file');
  const written = new WrittenTunings();
  const checked = checkYamlConfig(text, file, siteValidator(), (s) => checkSiteRules(s, written.tunings), {
    docs: 'docs/site-config.md',
    asWritten: (data) => written.take(data),
  });
  const site = checked.value;
  if (!site) return { ...checked, warnings: [] };
  const notes = siteTuningNotes(site, written.tunings).slice(0, MAX_CHECKED_PROBLEMS + 1);
  const warnings = boundedProblems(
    notes.map((p) => ({ ...p, file, line: checked.lines(p.path) })),
    file,
  ).map(shownProblem);
  const resolved = resolveSiteFiles(site, dirname(resolve(file)));
  // Only a site with vendor profiles reads them (and loads the profile loader).
  if (site.airHandlers.some((a) => a.profile !== undefined && a.profile !== 'coolctl-native')) {
    const { unitProfileProblems } = await import('./site-profiles.ts');
    const profiles = (await unitProfileProblems(site, opts.profilesDir)).slice(0, MAX_CHECKED_PROBLEMS + 1);
    checked.problems.push(...profiles.map((p) => ({ ...p, file, line: checked.lines(p.path) })));
    checked.problems = boundedProblems(checked.problems, file);
  }
  return { ...checked, value: resolved, warnings };
}

/**
 * The site with every file it names as an absolute path, resolved against the site file's folder
 * (as a relative path in the controller config is against that file): the OPC-UA units'
 * `endpoint.passwordFile` and the webhook's `headerFile` and `caFile`, whatever the process's
 * working folder.
 */
function resolveSiteFiles(site: Site, base: string): Site {
  const airHandlers = site.airHandlers.map((a) =>
    a.protocol === 'opcua' && a.endpoint.passwordFile !== undefined
      ? { ...a, endpoint: { ...a.endpoint, passwordFile: resolve(base, a.endpoint.passwordFile) } }
      : a,
  );
  const webhook = site.alarms?.notifications?.webhook;
  const alarms =
    webhook?.headerFile !== undefined || webhook?.caFile !== undefined
      ? {
          ...site.alarms,
          notifications: {
            ...site.alarms!.notifications,
            webhook: {
              ...webhook,
              ...(webhook.headerFile !== undefined ? { headerFile: resolve(base, webhook.headerFile) } : {}),
              ...(webhook.caFile !== undefined ? { caFile: resolve(base, webhook.caFile) } : {}),
            },
          },
        }
      : site.alarms;
  return { ...site, airHandlers, ...(alarms !== undefined ? { alarms } : {}) };
}
