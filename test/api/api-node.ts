// One controller node's API over the fakes (as test/support/fake-cluster.ts builds it) for the tests
// of the API's own contract: what it logs is kept (`lines`), its audit trail can be given a small
// retention or a store of its own (a real etcd), its connection limits can be shrunk, and its
// security settings (the limiter's bound) given. The units are the demo site's, answering at
// once; the cluster's control plane is in memory.
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { alarmId, conditionKey } from '../../src/alarms/alarm.ts';
import type { ApiSecurity } from '../../src/api/api-deps.ts';
import { buildApp } from '../../src/api/app.ts';
import { AuditTrail } from '../../src/api/audit/audit-trail.ts';
import type { ConnectionLimits } from '../../src/api/connection-limits.ts';
import type { PrefixKv } from '../../src/cluster/etcd/prefix-kv.ts';
import { loadSite } from '../../src/config/load-site.ts';
import { GroupDriver } from '../../src/control/group-driver.ts';
import { type ApiAuth, apiAuth } from '../support/api-auth.ts';
import { FakeCluster, fakeUnit, type UnitWrite } from '../support/fake-cluster.ts';

export const site = await loadSite('config/demo-site.yaml');
export const AHU = 'AHU-01';
const ALARM_AT_MS = 1_764_800_000_000;
export const ALARM = alarmId(conditionKey('unit-tripped', 'zone-1', AHU), ALARM_AT_MS);

export interface ApiNode {
  app: FastifyInstance;
  cluster: FakeCluster;
  auth: ApiAuth;
  audit: AuditTrail;
  registry: Registry;
  /** Where the trail counts its entries (the node's own registry unless `audit` was given). */
  auditRegistry: Registry;
  /** Every log line the node wrote, parsed. */
  lines: Record<string, unknown>[];
  written: UnitWrite[];
  /** Headers that authenticate as `role`, and send JSON. */
  as(role: 'viewer' | 'operator' | 'admin'): Record<string, string>;
  /** The sum of a counter's samples whose labels match `labels`. */
  count(metric: string, labels?: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

export async function apiNode(
  opts: {
    audit?: { maxEntries?: number; pruneEvery?: number; kv?: PrefixKv; prefix?: string };
    limits?: Partial<ConnectionLimits>;
    security?: ApiSecurity;
  } = {},
): Promise<ApiNode> {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write(s: string) {
        lines.push(JSON.parse(s) as Record<string, unknown>);
      },
    },
  );
  const cluster = new FakeCluster({ 'zone-1': ['node-a', 41], 'zone-2': ['node-b', 57] });
  cluster.members.push(
    { node: 'node-a', apiUrl: 'http://127.0.0.1:8101', startedAtMs: 1 },
    { node: 'node-b', apiUrl: 'http://127.0.0.1:8102', startedAtMs: 2 },
  );
  cluster.alarms.raise('unit-tripped', 'zone-1', AHU, `unit ${AHU} tripped`, { atMs: ALARM_AT_MS });
  const leadership = cluster.node('node-a');
  const written: UnitWrite[] = [];
  const devices = new Map(site.airHandlers.map((a) => [a.id, fakeUnit(a.id, written, 'node-a')]));
  const drivers = new Map(
    site.controlGroups.map((g) => [g.id, new GroupDriver(g, devices, leadership, { periodMs: 100, logger })]),
  );
  const registry = new Registry();
  const auth = await apiAuth(registry, logger, cluster.controlPlane);
  const auditRegistry = opts.audit ? new Registry() : registry;
  const audit = opts.audit
    ? new AuditTrail({
        kv: auth.kv,
        prefix: '/coolctl',
        logger,
        registry: auditRegistry,
        ...opts.audit,
      })
    : auth.audit;
  const app = await buildApp({
    auth: auth.auth,
    audit,
    node: 'node-a',
    version: '0.1.0',
    leadership,
    registry,
    groups: site.controlGroups.map((g) => g.id),
    drivers,
    logger,
    startedAtMs: Date.now(),
    site,
    devices,
    alarms: cluster.alarms,
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.security ? { security: opts.security } : {}),
  });
  for (const d of drivers.values()) d.start();
  return {
    app,
    cluster,
    auth,
    audit,
    registry,
    auditRegistry,
    lines,
    written,
    as: (role) => ({ ...auth.as(role), 'content-type': 'application/json' }),
    count: async (metric, labels = {}) => {
      const m = await registry.getSingleMetric(metric)?.get();
      return (m?.values ?? [])
        .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
        .reduce((sum, v) => sum + v.value, 0);
    },
    close: async () => {
      for (const d of drivers.values()) d.stop();
      await app.close();
      await auth.auth.stop();
    },
  };
}
