// The metric names a PromQL expression, a rule file or a Grafana dashboard refers to, and the
// families a Prometheus text scrape declares — so a test can hold the assets to what a node exports.
import { parse } from 'yaml';

/** Names exported by coolctl (coolctl_*) or by every Node process (process_*, nodejs_*). */
const OURS = /\b((?:coolctl|process|nodejs)_[a-zA-Z0-9_]+)\b/g;
const SERIES_SUFFIXES = /_(bucket|sum|count)$/;

export function metricNamesIn(exprs: Iterable<string>): string[] {
  const names = new Set<string>();
  for (const e of exprs) for (const m of e.matchAll(OURS)) names.add(m[1]!);
  return [...names].sort();
}

/** The `expr` of every alerting or recording rule of a Prometheus rule file. */
export function ruleExprs(yamlText: string): string[] {
  const doc = parse(yamlText) as { groups: { rules: { expr: string }[] }[] };
  return doc.groups.flatMap((g) => g.rules.map((r) => String(r.expr)));
}

/** Every query of a Grafana dashboard: panel targets, template variables, annotations. */
export function dashboardQueries(dash: unknown): string[] {
  const out: string[] = [];
  const walk = (x: unknown): void => {
    if (Array.isArray(x)) for (const v of x) walk(v);
    else if (x && typeof x === 'object') {
      for (const [k, v] of Object.entries(x)) {
        if ((k === 'expr' || k === 'definition') && typeof v === 'string') out.push(v);
        else if (k === 'query' && typeof v === 'string') out.push(v);
        else walk(v);
      }
    }
  };
  walk(dash);
  return out;
}

/**
 * The families a scrape declares (`# TYPE name type`) and the series names they may have: a
 * histogram's `_bucket`, `_sum` and `_count`.
 */
export function declaredNames(scrapeText: string): Set<string> {
  const names = new Set<string>();
  for (const m of scrapeText.matchAll(/^# TYPE (\S+) (\w+)$/gm)) {
    names.add(m[1]!);
    if (m[2] === 'histogram' || m[2] === 'summary')
      for (const s of ['_bucket', '_sum', '_count']) names.add(`${m[1]}${s}`);
  }
  return names;
}

/** Names in `used` that `declared` lacks (a histogram's series count as declared through its family). */
export function undeclared(used: Iterable<string>, declared: Set<string>): string[] {
  return [...used].filter((n) => !declared.has(n) && !declared.has(n.replace(SERIES_SUFFIXES, '')));
}

/** Every series of a Prometheus text scrape, by name: its label sets (values unescaped). */
export function seriesIn(scrapeText: string): Map<string, Record<string, string>[]> {
  const out = new Map<string, Record<string, string>[]>();
  for (const line of scrapeText.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const list = out.get(m[1]!) ?? [];
    if (!list.length) out.set(m[1]!, list);
    list.push(labels);
  }
  return out;
}

/** One Grafana query with the legend it draws its series' names from. */
export interface DashboardTarget {
  expr: string;
  legendFormat?: string;
}

/** The panel targets of a Grafana dashboard. */
export function dashboardTargets(dash: { panels?: { targets?: DashboardTarget[] }[] }): DashboardTarget[] {
  return (dash.panels ?? []).flatMap((p) => p.targets ?? []).filter((t) => typeof t.expr === 'string');
}

/** Labels Prometheus adds to every scraped series (the target's), not the node's own. */
const TARGET_LABELS = new Set(['job', 'instance']);
const SELECTOR = /\b((?:coolctl|process|nodejs)_[a-zA-Z0-9_]+)\b\s*(?:\{([^}]*)\})?/g;
const MATCHER = /([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g;

/**
 * What in `exprs` can match nothing on a node that exports `series`: a label matcher whose label or
 * value no series of that metric has, a `by (…)` or `label_values(…)` label none of the expression's
 * metrics carries, a legend that names a label the query's result cannot have. A panel or alert
 * built on such a selector is silently empty and never fires. Metrics without any series in the
 * scrape are left to `undeclared()`. Grafana variables (`$group`) match anything.
 */
export function selectorProblems(
  exprs: Iterable<string | DashboardTarget>,
  series: Map<string, Record<string, string>[]>,
): string[] {
  const problems: string[] = [];
  const hasLabel = (names: string[], label: string): boolean =>
    TARGET_LABELS.has(label) || names.some((n) => (series.get(n) ?? []).some((l) => label in l));
  for (const item of exprs) {
    const t = typeof item === 'string' ? { expr: item } : item;
    const expr = t.expr.replace(/\$\{?\w+\}?/g, '.*');
    const names: string[] = [];
    for (const s of expr.matchAll(SELECTOR)) {
      const name = s[1]!;
      names.push(name);
      const own = series.get(name);
      if (!own?.length) continue;
      for (const [, label, op, value] of (s[2] ?? '').matchAll(MATCHER)) {
        if (TARGET_LABELS.has(label!)) continue;
        if (!own.some((l) => label! in l)) {
          problems.push(`${t.expr}: ${name} has no label ${label}`);
          continue;
        }
        if (op === '=' || op === '=~') {
          const re = new RegExp(
            `^(?:${op === '=' ? value!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') : value})$`,
          );
          if (!own.some((l) => l[label!] !== undefined && re.test(l[label!]!)))
            problems.push(`${t.expr}: no ${name} series has ${label}${op}"${value}"`);
        }
      }
    }
    const known = names.filter((n) => series.get(n)?.length);
    if (!known.length) continue;
    const bys = [...expr.matchAll(/\bby\s*\(([^)]*)\)/g)].map((m) =>
      m[1]!
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean),
    );
    for (const label of bys.flat())
      if (label !== 'le' && !hasLabel(known, label))
        problems.push(`${t.expr}: by (${label}) is on none of its metrics`);
    for (const m of expr.matchAll(/label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)/g))
      if (!hasLabel([m[1]!], m[2]!)) problems.push(`${t.expr}: ${m[1]} has no label ${m[2]}`);
    // The outermost aggregation decides what a legend can show.
    const outer = /^\s*(?:sum|max|min|avg|count)\s+by\s*\(([^)]*)\)/
      .exec(expr)?.[1]
      ?.split(',')
      .map((x) => x.trim());
    for (const m of (t.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)) {
      const label = m[1]!;
      if (outer ? !outer.includes(label) : !hasLabel(known, label))
        problems.push(`${t.expr}: legend {{${label}}} is not a label of its result`);
    }
  }
  return problems;
}
