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
