// Debian's Prometheus against a running controller node: it scrapes /metrics with a viewer's token
// from a file (authorization.credentials_file, as docs/observability.md tells a site to), evaluates
// deploy/prometheus/alerts.yml, and after a heat-load step in the simulator the hot-rack rule fires.
// The same scrape holds the assets to what a node exports: every metric alerts.yml and
// deploy/grafana/coolctl.json name is declared on /metrics. Prometheus listens on loopback only,
// keeps its data in the test's tmp dir, scrapes and evaluates every second, and is stopped at the end.
// The hot-rack rule runs with a 5 s `for:` (its copy in the tmp dir, all else as shipped): the
// shipped 1 m hold is proven by promtool's unit tests (prometheus-rules.test.ts), not waited out here.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { waitFor } from '../helpers.ts';
import { freePort } from '../support/etcd-cluster.ts';
import { Hall } from '../support/hall.ts';
import { REPO_ROOT } from '../support/repo.ts';
import { dashboardQueries, declaredNames, metricNamesIn, ruleExprs, undeclared } from './metric-names.ts';

const TIME_SCALE = 10;
/** The rule this file fires, and the hold it fires after here (shipped: 1m). */
const HOT_RACK_RULE = 'CoolctlRackInletAboveRecommended';
const HOT_RACK_FOR = '5s';
let hall: Hall | undefined;
let prom: ChildProcess | undefined;
let promUrl = '';
let dir = '';
let promLog = '';

beforeAll(async () => {
  hall = await Hall.start({
    name: 'prometheus',
    controllers: 1,
    groups: 2,
    airHandlers: 4,
    timeScale: TIME_SCALE,
  });
  dir = await mkdtemp(join(tmpdir(), 'coolctl-prometheus-'));
  const node = hall.nodes[0]!;
  const target = new URL(hall.apiUrl(node)).host;
  const tokenFile = join(dir, 'viewer.token');
  // alerts.yml as shipped but for the hot-rack rule's hold: its expression, labels and
  // annotations are the ones a site runs.
  const rules = parse(await readFile(join(REPO_ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')) as {
    groups: { rules: { alert?: string; for?: string }[] }[];
  };
  const hotRack = rules.groups.flatMap((g) => g.rules).find((r) => r.alert === HOT_RACK_RULE);
  if (!hotRack?.for) throw new Error(`alerts.yml: no ${HOT_RACK_RULE} rule with a for: hold`);
  hotRack.for = HOT_RACK_FOR;
  const rulesFile = join(dir, 'alerts.yml');
  await writeFile(rulesFile, stringify(rules));
  await writeFile(tokenFile, hall.apiHeaders['authorization']!.replace(/^Bearer /, ''), { mode: 0o600 });
  await writeFile(
    join(dir, 'prometheus.yml'),
    stringify({
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: [rulesFile],
      scrape_configs: [
        {
          job_name: 'coolctl',
          authorization: { credentials_file: tokenFile },
          static_configs: [{ targets: [target] }],
        },
      ],
    }),
  );
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  prom = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      '--storage.tsdb.retention.time=1h',
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  prom.stdout?.on('data', (b: Buffer) => (promLog = (promLog + b.toString()).slice(-20_000)));
  prom.stderr?.on('data', (b: Buffer) => (promLog = (promLog + b.toString()).slice(-20_000)));
  await waitFor('prometheus ready', async () => (await fetch(`${promUrl}/-/ready`)).ok, {
    timeoutMs: 30_000,
    intervalMs: 200,
  }).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n--- prometheus ---\n${promLog}`);
  });
}, 180_000);

afterAll(async () => {
  if (prom && prom.exitCode === null) {
    prom.kill('SIGTERM');
    await waitFor('prometheus stopped', () => prom!.exitCode !== null || prom!.signalCode !== null, {
      timeoutMs: 10_000,
    }).catch(() => prom!.kill('SIGKILL'));
  }
  await hall?.stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

async function promQuery<T>(path: string): Promise<T> {
  const res = await fetch(`${promUrl}${path}`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { status: string; data: T };
  if (body.status !== 'success') throw new Error(`${path}: ${JSON.stringify(body)}`);
  return body.data;
}

interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
  value: string;
}

describe('Prometheus on a running node', () => {
  it('scrapes the node with the token file, and every metric the assets name is on /metrics', async () => {
    const h = hall!;
    await waitFor(
      'Prometheus scraping the node (up == 1)',
      async () => {
        const r = await promQuery<{ result: { value: [number, string] }[] }>('/api/v1/query?query=up');
        return r.result.length === 1 && r.result[0]!.value[1] === '1';
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n--- prometheus ---\n${promLog}`);
    });
    await waitFor(
      'rack inlets in Prometheus',
      async () =>
        (await promQuery<{ result: unknown[] }>('/api/v1/query?query=coolctl_rack_inlet_celsius')).result
          .length > 0,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const res = await fetch(`${h.apiUrl(h.nodes[0]!)}/metrics`, { headers: h.apiHeaders });
    expect(res.status).toBe(200);
    const declared = declaredNames(await res.text());
    const rules = ruleExprs(await readFile(join(REPO_ROOT, 'deploy/prometheus/alerts.yml'), 'utf8'));
    const dash = JSON.parse(await readFile(join(REPO_ROOT, 'deploy/grafana/coolctl.json'), 'utf8'));
    // The fencing gateway's families are on the gateway's /metrics (prometheus-assets.test.ts).
    const used = metricNamesIn([...rules, ...dashboardQueries(dash)]).filter(
      (n) => !n.startsWith('coolctl_gateway_'),
    );
    expect(used.length).toBeGreaterThan(25);
    expect(undeclared(used, declared)).toEqual([]);
  }, 150_000);

  it('fires the hot-rack rule after a heat-load step', async () => {
    const h = hall!;
    // Twice the IT load everywhere: more than the units carry. A steeper step (2.5×) made the inlets
    // climb ~0.8 °C between two reports, which the sensor rules judge noisy: the groups went blind
    // and no rack had a good inlet reading left to alert on.
    const fault = await fetch(`${h.simUrl}/sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ fault: 'heat-load-step', rack: '*', factor: 2 }),
    });
    expect(fault.status).toBeLessThan(300);
    const firing = await waitFor(
      `${HOT_RACK_RULE} firing`,
      async () => {
        const { alerts } = await promQuery<{ alerts: Alert[] }>('/api/v1/alerts');
        return alerts.find((a) => a.labels['alertname'] === HOT_RACK_RULE && a.state === 'firing');
      },
      { timeoutMs: 240_000, intervalMs: 1000 },
    );
    expect(firing.labels).toMatchObject({ severity: 'warning', job: 'coolctl' });
    expect(firing.labels['rack']).toBeTruthy();
    expect(firing.labels['group']).toBeTruthy();
    expect(Number(firing.value)).toBeGreaterThan(27);
    // The node says the same rack is hot, and the simulator's room agrees it is warm.
    const sim = (await (await fetch(`${h.simUrl}/sim/state`)).json()) as {
      racks: { id: string; inletC: number }[];
    };
    expect(sim.racks.find((r) => r.id === firing.labels['rack'])!.inletC).toBeGreaterThan(26);
  }, 300_000);
});
