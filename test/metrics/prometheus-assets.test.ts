// What a Prometheus and Grafana user gets from running processes: two controller nodes and a
// fencing gateway (`coolctl gateway`, as the systemd unit runs it) in front of a vendor unit. Every
// label and label value that deploy/prometheus/alerts.yml and deploy/grafana/coolctl.json select on
// is one the nodes export (a selector on a label value nobody writes is a panel that stays empty and
// an alert that never fires); Debian's `promtool check metrics` judges each /metrics as it is
// scraped; and when a group moves to the other node its process values move with it, said once
// cluster-wide, none left behind on the node that gave it up.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';
import { Hall } from '../support/hall.ts';
import { promtoolCheck } from '../support/promtool.ts';
import { REPO_ROOT } from '../support/repo.ts';
import {
  dashboardQueries,
  dashboardTargets,
  declaredNames,
  metricNamesIn,
  ruleExprs,
  selectorProblems,
  seriesIn,
  undeclared,
} from './metric-names.ts';

let hall: Hall | undefined;

beforeAll(async () => {
  hall = await Hall.start({
    name: 'prom-assets',
    controllers: 2,
    groups: 3,
    airHandlers: 6,
    vendor: [
      { id: 'AHU-08', group: 'zone-3', profile: 'float32-lsw-toggle-inverted-coil', fencing: 'gateway' },
    ],
  });
  await hall.waitForLeaders({ timeoutMs: 60_000 });
}, 180_000);

afterAll(async () => {
  await hall?.stopAll();
}, 60_000);

async function scrape(node: string): Promise<string> {
  const res = await fetch(`${hall!.apiUrl(node)}/metrics`, {
    headers: hall!.apiHeaders,
    signal: AbortSignal.timeout(10_000),
  });
  expect(res.status).toBe(200);
  return res.text();
}

async function gatewayScrape(): Promise<string> {
  const g = [...hall!.fencingGateways.values()][0]!;
  const res = await fetch(`${g.httpUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  expect(res.status).toBe(200);
  return res.text();
}

/** prom-client's default gauges keep the names every Node.js dashboard uses (docs/observability.md). */
const STOCK_NODEJS_LINT = [
  'nodejs_active_handles_total non-counter metrics should not have "_total" suffix',
  'nodejs_active_requests_total non-counter metrics should not have "_total" suffix',
  'nodejs_active_resources_total non-counter metrics should not have "_total" suffix',
];

/** Series that appear more than once in one scrape (same name and labels). */
function duplicates(text: string): string[] {
  const seen = new Set<string>();
  const dup: string[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const key = line.slice(0, line.lastIndexOf(' '));
    if (seen.has(key)) dup.push(key);
    seen.add(key);
  }
  return dup;
}

/** Families with samples but without their # HELP or # TYPE line. */
function undescribed(text: string): string[] {
  const help = new Set([...text.matchAll(/^# HELP (\S+) /gm)].map((m) => m[1]!));
  const type = new Map([...text.matchAll(/^# TYPE (\S+) (\w+)$/gm)].map((m) => [m[1]!, m[2]!]));
  const out = new Set<string>();
  for (const m of text.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)) {
    const family = type.has(m[1]!) ? m[1]! : m[1]!.replace(/_(bucket|sum|count)$/, '');
    if (!help.has(family) || !type.has(family)) out.add(m[1]!);
  }
  return [...out];
}

/** Process-value series (a rack's, a group's, a unit's) of a scrape, keyed without the node's labels. */
function processValueKeys(text: string, group: string): string[] {
  return text
    .split('\n')
    .filter((l) => /^coolctl_(rack|group|unit)_/.test(l) && l.includes(`group="${group}"`))
    .map((l) => l.slice(0, l.lastIndexOf(' ')).replace(/,?node="[^"]*"/, ''));
}

describe('the shipped rules and dashboard against running nodes', () => {
  it('select only labels and label values the nodes export', async () => {
    const h = hall!;
    // Every state set, rack and unit is said by one node or the other: judge against both.
    await waitFor(
      'rack inlets, unit modes and link states on the nodes',
      async () => {
        const s = seriesIn((await Promise.all(h.nodes.map(scrape))).join('\n'));
        return [
          'coolctl_rack_inlet_celsius',
          'coolctl_unit_mode',
          'coolctl_unit_link_state',
          'coolctl_group_mode',
        ].every((n) => (s.get(n)?.length ?? 0) > 0);
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const texts = [...(await Promise.all(h.nodes.map(scrape))), await gatewayScrape()];
    const series = seriesIn(texts.join('\n'));
    const rules = ruleExprs(await readFile(join(REPO_ROOT, 'deploy/prometheus/alerts.yml'), 'utf8'));
    const dash = JSON.parse(await readFile(join(REPO_ROOT, 'deploy/grafana/coolctl.json'), 'utf8'));
    // Every name is declared on a node's or the gateway's /metrics ...
    const declared = declaredNames(texts.join('\n'));
    expect(undeclared(metricNamesIn([...rules, ...dashboardQueries(dash)]), declared)).toEqual([]);
    // ... and every selector matches what they say.
    expect(
      selectorProblems([...rules, ...dashboardQueries(dash), ...dashboardTargets(dash)], series),
    ).toEqual([]);
    // A real check: a misspelt state, a label the metric lacks, a legend the aggregation dropped.
    expect(
      selectorProblems(
        [
          'max without (instance, node) (coolctl_unit_mode{mode="trip"}) == 1',
          'max without (instance, node) (coolctl_unit_link_state{status="down"}) == 1',
          { expr: 'sum by (group) (coolctl_unit_fan_power_watts)', legendFormat: '{{unit}}' },
          'label_values(coolctl_group_mode, zone)',
        ],
        series,
      ),
    ).toHaveLength(4);
  }, 120_000);

  it('pass promtool check metrics: a controller’s and the fencing gateway’s /metrics', async () => {
    const h = hall!;
    for (const [who, text] of [
      ...(await Promise.all(h.nodes.map(async (n) => [n, await scrape(n)] as const))),
      ['fencing gateway', await gatewayScrape()] as const,
    ]) {
      const check = await promtoolCheck(text);
      const lint = check.out.split('\n').filter(Boolean);
      expect(lint, `${who}: promtool check metrics`).toEqual(STOCK_NODEJS_LINT);
      expect(duplicates(text), `${who}: duplicate series`).toEqual([]);
      expect(undescribed(text), `${who}: families without HELP or TYPE`).toEqual([]);
    }
    // The gateway says what its unit's fencing stands at, under the unit's configured name.
    expect(await gatewayScrape()).toMatch(/^coolctl_gateway_unit_epoch\{unit="AHU-08"\} [1-9]\d*$/m);
  }, 60_000);

  it('are each documented: a node’s in docs/observability.md, the gateway’s in docs/fencing-gateway.md', async () => {
    const h = hall!;
    for (const [doc, text] of [
      ['docs/observability.md', (await Promise.all(h.nodes.map(scrape))).join('\n')],
      ['docs/fencing-gateway.md', await gatewayScrape()],
    ] as const) {
      // coolctl_build_info, which the gateway shares, is described once, in docs/observability.md.
      const written = `${await readFile(join(REPO_ROOT, doc), 'utf8')}${await readFile(join(REPO_ROOT, 'docs/observability.md'), 'utf8')}`;
      const families = [...declaredNames(text)].filter(
        (n) => n.startsWith('coolctl_') && !/_(bucket|sum|count)$/.test(n.replace(/_total$/, '')),
      );
      expect(families.length).toBeGreaterThan(5);
      expect(
        families.filter((n) => !written.includes(`\`${n}\``) && !written.includes(`\`${n}{`)),
        doc,
      ).toEqual([]);
    }
  }, 60_000);

  it('move a group’s process values with its leadership: one node says them, the other none', async () => {
    const h = hall!;
    const before = await h.waitForLeaders();
    const group = 'zone-1';
    const from = before.get(group)!.node;
    const to = h.nodes.find((n) => n !== from)!;
    await waitFor(
      `${from} says ${group}'s process values`,
      async () => processValueKeys(await scrape(from), group).length > 0,
      {
        timeoutMs: 30_000,
      },
    );
    // The state sets: always said by a leader (a temperature may be absent for a moment).
    const said = new Set(
      processValueKeys(await scrape(from), group).filter((k) =>
        /^coolctl_(group_mode|group_sensor_verdict|unit_mode|unit_link_state|unit_alarm)\{/.test(k),
      ),
    );
    expect(said.size).toBeGreaterThan(10);
    await h.operator(from, 'POST', `/api/v1/groups/${group}/switchover`, { to });
    await h.waitForLeaders({ timeoutMs: 30_000, where: (l) => l.get(group)?.node === to });
    // The former leader drops them at its next scrape; the new one says the same series.
    const moved = await waitFor(
      `${group}'s process values on ${to} only`,
      async () => {
        const [a, b] = [
          processValueKeys(await scrape(from), group),
          processValueKeys(await scrape(to), group),
        ];
        return a.length === 0 && [...said].every((k) => b.includes(k)) ? b : null;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(new Set(moved).size).toBe(moved.length);
    // Nothing of any group is said twice across the cluster.
    const all = (await Promise.all(h.nodes.map(scrape))).flatMap((t) =>
      ['zone-1', 'zone-2', 'zone-3'].flatMap((g) => processValueKeys(t, g)),
    );
    expect(duplicates(all.map((k) => `${k} 0`).join('\n'))).toEqual([]);
  }, 120_000);
});
