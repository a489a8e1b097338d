// The Prometheus and Grafana assets a user installs: deploy/prometheus/alerts.yml passes Debian's
// `promtool check rules` and its unit tests (`promtool test rules alerts.test.yml`: a hot rack
// through a failover, units in fallback or tripped, a node down, a group not driven or without a
// leader, a fenced lease); a rule file promtool refuses is refused here too; deploy/grafana/coolctl.json
// is a dashboard whose every query names only metrics of the shape coolctl exports (the names
// themselves are checked against a real node's scrape in prometheus-hall.test.ts).
// promtool comes with Debian's `prometheus` package (deploy/dev/prepare.sh test installs it).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from '../support/repo.ts';
import { dashboardQueries, metricNamesIn } from './metric-names.ts';

const run = promisify(execFile);
const PROM_DIR = join(REPO_ROOT, 'deploy/prometheus');

async function promtool(args: string[], cwd = PROM_DIR): Promise<{ code: number; out: string }> {
  try {
    const r = await run('promtool', args, { cwd, timeout: 60_000 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (e.code === 'ENOENT')
      throw new Error('promtool not found: run deploy/dev/prepare.sh test (Debian package prometheus)');
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

interface AlertRule {
  alert: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

async function alertRules(): Promise<AlertRule[]> {
  const doc = parse(await readFile(join(PROM_DIR, 'alerts.yml'), 'utf8')) as {
    groups: { rules: (AlertRule | { record: string })[] }[];
  };
  return doc.groups.flatMap((g) => g.rules.filter((r): r is AlertRule => 'alert' in r));
}

describe('deploy/prometheus/alerts.yml', () => {
  it('passes promtool check rules', async () => {
    const r = await promtool(['check', 'rules', 'alerts.yml']);
    expect(r.out).toMatch(/SUCCESS: \d+ rules found/);
    expect(r.code).toBe(0);
  });

  it('passes its promtool unit tests', async () => {
    const r = await promtool(['test', 'rules', 'alerts.test.yml']);
    expect(r.out).toMatch(/SUCCESS/);
    expect(r.code).toBe(0);
  });

  it('is a real check: a rule promtool cannot parse, or a test the rules do not meet, fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-promtool-'));
    try {
      const rules = await readFile(join(PROM_DIR, 'alerts.yml'), 'utf8');
      await writeFile(join(dir, 'bad.yml'), rules.replace('> 27', '> > 27'));
      expect((await promtool(['check', 'rules', 'bad.yml'], dir)).code).not.toBe(0);
      // The same tests against rules whose recommended limit moved to 30 °C: the hot rack stays quiet.
      await writeFile(
        join(dir, 'alerts.yml'),
        rules.replace('coolctl_rack_inlet_celsius) > 27', 'coolctl_rack_inlet_celsius) > 30'),
      );
      await writeFile(
        join(dir, 'alerts.test.yml'),
        await readFile(join(PROM_DIR, 'alerts.test.yml'), 'utf8'),
      );
      const r = await promtool(['test', 'rules', 'alerts.test.yml'], dir);
      expect(r.code).not.toBe(0);
      expect(r.out).toMatch(/CoolctlRackInletAboveRecommended/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('has the alerts the hall needs, each with a severity and a summary', async () => {
    const text = await readFile(join(PROM_DIR, 'alerts.yml'), 'utf8');
    const alerts = [...text.matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
    for (const a of [
      'CoolctlRackInletAboveRecommended',
      'CoolctlRackInletAboveAllowable',
      'CoolctlGroupNotDriven',
      'CoolctlGroupWithoutLeader',
      'CoolctlUnitInFallback',
      'CoolctlUnitTripped',
      'CoolctlNodeDown',
      'CoolctlLeaseFenced',
    ])
      expect(alerts).toContain(a);
    expect(text.match(/severity: (warning|critical)/g)).toHaveLength(alerts.length);
    expect(text.match(/summary: /g)).toHaveLength(alerts.length);
  });

  it('gives every alert a for:, a severity, a summary and a description of what to do', async () => {
    for (const r of await alertRules()) {
      expect(r.for, `${r.alert}: for`).toMatch(/^\d+[smh]$/);
      expect(['warning', 'critical'], r.alert).toContain(r.labels?.['severity']);
      expect(r.annotations?.['summary'], `${r.alert}: summary`).toBeTruthy();
      // What to look at or do, not only what happened.
      expect(r.annotations?.['description'], `${r.alert}: description`).toMatch(
        /\b(Check|Look|Find|Act|send|The unit needs)\b/i,
      );
    }
  });

  it('has a promtool test that each alert fires and one that it stays quiet', async () => {
    const tests = parse(await readFile(join(PROM_DIR, 'alerts.test.yml'), 'utf8')) as {
      tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const { alert } of await alertRules()) {
      const mine = cases.filter((c) => c.alertname === alert);
      expect(
        mine.some((c) => (c.exp_alerts?.length ?? 0) > 0),
        `${alert} fires in a test`,
      ).toBe(true);
      expect(
        mine.some((c) => (c.exp_alerts?.length ?? 0) === 0),
        `${alert} stays quiet in a test`,
      ).toBe(true);
    }
  });
});

describe('deploy/grafana/coolctl.json', () => {
  it('is a Grafana dashboard whose queries name coolctl, process and Node.js metrics only', async () => {
    const dash = JSON.parse(await readFile(join(REPO_ROOT, 'deploy/grafana/coolctl.json'), 'utf8'));
    expect(dash.uid).toBe('coolctl-hall');
    expect(dash.schemaVersion).toBeGreaterThan(30);
    const queries = dashboardQueries(dash);
    const panels = (dash.panels as { type: string; title: string; targets?: { expr: string }[] }[]).filter(
      (p) => p.type !== 'row',
    );
    expect(panels.length).toBeGreaterThan(20);
    for (const p of panels) expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
    const names = metricNamesIn(queries);
    expect(names).toContain('coolctl_rack_inlet_celsius');
    expect(names).toContain('coolctl_plant_fan_energy_joules_total');
    // Every panel keeps within the dashboard's 24 columns.
    for (const p of dash.panels as { gridPos: { x: number; w: number } }[])
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
  });
});
