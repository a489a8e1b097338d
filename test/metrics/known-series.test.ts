// Before anything has happened on a node, every labelled counter whose label values are known at
// start is on /metrics at 0, one series per value: Prometheus' rate() and increase() see a step only
// from a sample before it, so a series born at its first event hides that event (the first refusal,
// the first bad payload) from a dashboard and an alert. A controller in process on the demo site and
// a real etcd (its units unreachable, its broker absent: nothing counts yet), and a fencing
// gateway's registry.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ALARM_KINDS } from '../../src/alarms/alarm.ts';
import { ALARM_TRANSITIONS } from '../../src/alarms/notify.ts';
import { AUTH_FAILURE_REASONS } from '../../src/api/auth/auth-store.ts';
import { REJECT_REASONS } from '../../src/cache/peer-channel.ts';
import { StateCache } from '../../src/cache/state-cache.ts';
import { memberName } from '../../src/cluster/etcd/etcd-members.ts';
import { IGNORED_KINDS } from '../../src/cluster/view.ts';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import { Controller, RELOAD_RESULTS } from '../../src/daemon/controller.ts';
import { HTTP_REFUSALS } from '../../src/gateway/http.ts';
import { BAD_REQUEST_REASONS, GatewayMetrics } from '../../src/gateway/metrics.ts';
import { tmpDir } from '../cluster/harness.ts';
import { writeOneNodeConfig } from '../daemon/one-node.ts';
import { type EtcdCluster, freePort, startEtcdCluster } from '../support/etcd-cluster.ts';

let etcd: EtcdCluster | undefined;
let root: { dir: string; cleanup: () => Promise<void> } | undefined;
let controller: Controller | undefined;

beforeAll(async () => {
  root = await tmpDir('known-series');
  etcd = await startEtcdCluster({ size: 1 });
  const { config } = await writeOneNodeConfig({
    dir: root.dir,
    etcd: etcd.clientConfig(),
    prefix: '/coolctl/known-series',
  });
  // A broker nobody answers on: the MQTT source runs (and registers its counters), receives nothing.
  const doc = parse(await readFile(config, 'utf8')) as Record<string, unknown>;
  doc['sensors'] = { mqtt: { url: `mqtt://127.0.0.1:${await freePort()}` } };
  await writeFile(config, stringify(doc));
  controller = new Controller(await loadControllerConfig(config, 'n1'), {
    logger: pino({ level: 'silent' }),
  });
  await controller.start();
}, 90_000);

afterAll(async () => {
  await controller?.stop();
  await etcd?.stop();
  await root?.cleanup();
}, 30_000);

/** A family's series as `label=value,…` → value, labels in the order given. */
async function series(registry: Registry, name: string, labels: string[]): Promise<Map<string, number>> {
  const metric = registry.getSingleMetric(name);
  expect(metric, `${name} registered`).toBeDefined();
  const out = new Map<string, number>();
  for (const v of (await metric!.get()).values)
    out.set(labels.map((l) => `${l}=${String(v.labels[l])}`).join(','), v.value);
  return out;
}

/** The keys `series` makes for every combination of `values`. */
function combinations(values: Record<string, readonly string[]>): string[] {
  return Object.entries(values).reduce<string[]>(
    (keys, [label, vs]) => keys.flatMap((k) => vs.map((v) => [k, `${label}=${v}`].filter(Boolean).join(','))),
    [''],
  );
}

/** Every combination of `values` is a series of `name` at 0. */
async function expectZeros(registry: Registry, name: string, values: Record<string, readonly string[]>) {
  const got = await series(registry, name, Object.keys(values));
  const want = combinations(values);
  expect(Object.fromEntries(want.map((k) => [k, got.get(k)])), name).toEqual(
    Object.fromEntries(want.map((k) => [k, 0])),
  );
}

describe('a controller that has just started', () => {
  it('says every refusal and error it can count at 0, one series per known kind', async () => {
    const registry = controller!.registry;
    const groups = controller!.cfg.site.controlGroups.map((g) => g.id);
    expect(groups.length).toBeGreaterThan(1);

    await expectZeros(registry, 'coolctl_api_auth_failures_total', { reason: AUTH_FAILURE_REASONS });
    await expectZeros(registry, 'coolctl_auth_records_invalid_total', { kind: ['user', 'token'] });
    await expectZeros(registry, 'coolctl_api_requests_refused_total', {
      route: ['unknown', 'connection', '/api/v1/cluster', '/api/v1/groups/:id/switchover'],
    });
    await expectZeros(registry, 'coolctl_config_reloads_total', { result: RELOAD_RESULTS });
    await expectZeros(registry, 'coolctl_audit_entries_total', {
      kind: ['operator', 'role'],
      result: ['failed', 'retried', 'dropped'],
    });
    await expectZeros(registry, 'coolctl_leadership_ignored_keys_total', { kind: IGNORED_KINDS });
    await expectZeros(registry, 'coolctl_etcd_keepalive_failures_total', {
      member: etcd!.clientConfig().hosts.map(memberName),
    });
    await expectZeros(registry, 'coolctl_control_loop_crashes_total', { group: groups });
    await expectZeros(registry, 'coolctl_control_relinquished_total', {
      group: groups,
      cause: ['undriven', 'crashing', 'stale-epoch'],
    });
    await expectZeros(registry, 'coolctl_leadership_relinquished_total', { group: groups });
    await expectZeros(registry, 'coolctl_operator_state_invalid_total', { group: groups });
    await expectZeros(registry, 'coolctl_sensor_mqtt_messages_dropped_total', {
      reason: ['malformed-status', 'unknown-gateway', 'unroutable-topic', 'handler-error'],
    });
    await expectZeros(registry, 'coolctl_sensor_reports_dropped_total', { reason: ['schema'] });
    await expectZeros(registry, 'coolctl_control_verdict_hold_refused_total', { group: groups });

    // Counts of what happens anyway (an evaluation a second, a transition once a unit is found
    // unreachable): every series there, whatever it says by now.
    const transitions = await series(registry, 'coolctl_alarm_transitions_total', ['kind', 'transition']);
    for (const k of combinations({ kind: Object.keys(ALARM_KINDS), transition: ALARM_TRANSITIONS }))
      expect(transitions.has(k), k).toBe(true);
    const evaluations = await series(registry, 'coolctl_alarm_evaluations_total', ['result']);
    expect([...evaluations.keys()].sort()).toEqual(['result=failed', 'result=ok']);
  });
});

describe('a state cache that has just started', () => {
  it('says every result of a received row and every reason it refuses at 0', async () => {
    const registry = new Registry();
    const cache = new StateCache({
      node: 'n1',
      cluster: '/coolctl/known-series',
      secret: randomBytes(32),
      listen: { host: '127.0.0.1', port: 0 },
      logger: pino({ level: 'silent' }),
      registry,
    });
    try {
      await expectZeros(registry, 'coolctl_cache_rows_received_total', {
        result: ['applied', 'duplicate', 'stale', 'not-leader', 'unknown-group'],
      });
      await expectZeros(registry, 'coolctl_cache_rejects_total', { reason: REJECT_REASONS });
    } finally {
      await cache.stop();
    }
  });
});

describe('a fencing gateway that has just started', () => {
  it('says every reason it refuses a request or a connection for at 0', async () => {
    const registry = new Registry();
    new GatewayMetrics(registry);
    await expectZeros(registry, 'coolctl_gateway_bad_requests_total', { reason: BAD_REQUEST_REASONS });
    await expectZeros(registry, 'coolctl_gateway_http_refused_total', { reason: HTTP_REFUSALS });
  });
});
