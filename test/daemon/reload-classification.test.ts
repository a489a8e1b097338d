// Every controller setting is either applied by a reload or refused as restart-only: the schema
// says which (src/config/reload-class.ts), a walk of the schema finds none that says neither, and a
// reload that changes an `api.*` setting, a file behind `cluster.*`, or the site's dew point is
// reported or applied, never ignored.
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Type as T } from '@sinclair/typebox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { makeCa, makeLeaf } from '../../scripts/lib/throwaway-pki.ts';
import {
  type ControllerConfigFile,
  ControllerConfigSchema,
  loadControllerConfig,
} from '../../src/config/controller-config.ts';
import { classifySettings, live, restartOnly } from '../../src/config/reload-class.ts';
import { diffSites, restartOnlyChanges } from '../../src/daemon/config-diff.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-reload-class-'));
  // The files the API settings below name: the config check reads them as the daemon would.
  const ca = await makeCa(dir, 'api-ca');
  const api = await makeLeaf(ca, 'api', { usage: ['serverAuth'] });
  await copyFile(api.certFile, join(dir, 'api.crt'));
  await copyFile(api.keyFile, join(dir, 'api.key'));
  await writeFile(join(dir, 'admin.yaml'), 'name: admin\npassword: "a long admin password"\n', {
    mode: 0o600,
  });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const base = (): ControllerConfigFile => ({
  site: resolve('config/demo-site.yaml'),
  cluster: { etcd: ['http://127.0.0.1:2379'], prefix: '/coolctl/test' },
  nodes: { n1: { api: '127.0.0.1:8101' }, n2: { api: '127.0.0.1:8102' } },
  dataDir: join(tmpdir(), 'coolctl-reload-class', '{node}'),
});

let written = 0;
/** Writes `doc` as a controller config and loads it for node n1, as a reload would. */
async function load(doc: object) {
  const file = join(dir, `controller-${++written}.yaml`);
  await writeFile(file, stringify(doc));
  return loadControllerConfig(file, 'n1');
}

describe('reload classes in the controller config schema', () => {
  it('every setting of the schema is live or restart-only', () => {
    const settings = classifySettings(ControllerConfigSchema);
    expect(settings.filter((s) => s.reload === undefined).map((s) => s.path)).toEqual([]);
    // The walk reaches the API's settings one by one (its section has no class as a whole).
    const byPath = Object.fromEntries(settings.map((s) => [s.path, s.reload]));
    expect(byPath).toMatchObject({
      '/api/bootstrapAdminFile': 'restart',
      '/api/tls': 'restart',
      '/api/metricsAuth': 'restart',
      '/api/sessionTtlS': 'restart',
      '/api/signInsPerMinute': 'restart',
      '/api/actionsPerMinute': 'restart',
      '/cluster': 'restart',
      '/nodes': 'restart',
      '/sensors': 'live',
      '/control/periodMs': 'restart',
    });
    // Each restart-only setting says what to do.
    expect(settings.filter((s) => s.reload === 'restart' && !s.hint)).toEqual([]);
  });

  it('the walk finds a setting with no class, under objects, maps and unions alike', () => {
    const schema = T.Object({
      a: T.Object({ b: T.String(), c: T.Integer(live()) }),
      m: T.Record(T.String(), T.Object({ x: T.String() })),
      u: T.Union([T.String(), T.Object({ y: T.String(restartOnly('why')) })]),
      done: T.Object({ z: T.String() }, restartOnly('why')),
    });
    expect(
      classifySettings(schema)
        .filter((s) => !s.reload)
        .map((s) => s.path),
    ).toEqual(['/a/b', '/m/*/x', '/u']);
  });
});

describe('a reload against the classes', () => {
  it('refuses each changed api setting with its path and what to do; nothing else when nothing changed', async () => {
    const running = await load({ ...base(), api: { metricsAuth: 'none' } });
    expect(restartOnlyChanges(running, await load({ ...base(), api: { metricsAuth: 'none' } }))).toEqual([]);
    const next = await load({
      ...base(),
      api: {
        metricsAuth: 'viewer',
        sessionTtlS: 600,
        signInsPerMinute: 3,
        actionsPerMinute: 30,
        bootstrapAdminFile: 'admin.yaml',
        tls: { certFile: 'api.crt', keyFile: 'api.key' },
      },
    });
    const refused = restartOnlyChanges(running, next);
    expect(refused.map((p) => p.path).sort()).toEqual([
      '/api/actionsPerMinute',
      '/api/bootstrapAdminFile',
      '/api/metricsAuth',
      '/api/sessionTtlS',
      '/api/signInsPerMinute',
      '/api/tls',
    ]);
    const rate = refused.find((p) => p.path === '/api/signInsPerMinute')!;
    expect(rate.message).toBe('changed, but this setting is only read at start');
    expect(rate.allowed).toMatch(
      /^restart the node \(systemctl restart coolctl@n1\) to apply it — .*rate limits/,
    );
    expect(rate.allowed).toMatch(/the running config is kept$/);
    expect(refused.find((p) => p.path === '/api/tls')!.allowed).toMatch(/SIGHUP/);
  });

  it('names the leaf that changed under a restart-only section; live sections pass', async () => {
    const running = await load(base());
    const next = await load({
      ...base(),
      cluster: { ...base().cluster, rebalanceHoldMs: 9000 },
      nodes: { ...base().nodes, n2: { api: '127.0.0.1:9102' } },
      sensors: { mqttUrl: 'mqtt://127.0.0.1:1883' },
    });
    expect(restartOnlyChanges(running, next).map((p) => p.path)).toEqual([
      '/cluster/rebalanceHoldMs',
      '/nodes/n2/api',
    ]);
  });

  it('a file behind a restart-only setting changed on disk is refused too (same path, new contents)', async () => {
    const ca = await makeCa(dir, 'etcd-ca');
    const first = await makeLeaf(ca, 'node-1', { usage: ['clientAuth'] });
    const second = await makeLeaf(ca, 'node-2', { usage: ['clientAuth'] });
    const pki = async (leaf: { certFile: string; keyFile: string }) => {
      await copyFile(leaf.certFile, join(dir, 'node.crt'));
      await copyFile(leaf.keyFile, join(dir, 'node.key'));
    };
    await pki(first);
    const doc = {
      ...base(),
      cluster: {
        etcd: {
          hosts: ['https://127.0.0.1:2379'],
          tls: { caFile: 'etcd-ca.crt', certFile: 'node.crt', keyFile: 'node.key' },
        },
      },
    };
    const running = await load(doc);
    expect(restartOnlyChanges(running, await load(doc))).toEqual([]);
    await pki(second);
    const refused = restartOnlyChanges(running, await load(doc));
    expect(refused.map((p) => [p.path, p.message])).toEqual([
      ['/cluster/etcd', 'a file this setting names changed, but it is only read at start'],
    ]);
  });
});

describe('the site file reloads live, every part that a loop is built from', () => {
  const site = () => generateSite({ ...demoShape, airHandlers: 6, controlGroups: 3, opcuaShare: 0 });

  it("a new dew point restarts every group's loop", () => {
    const a = site();
    const b = site();
    b.site.supplyAirDewPointC = (a.site.supplyAirDewPointC ?? 10) + 2;
    expect(diffSites(a, b).changedGroups.sort()).toEqual(a.controlGroups.map((g) => g.id).sort());
  });

  it('a moved rack restarts the loops it is an input of; a rack field no loop uses restarts none', () => {
    const a = site();
    const g = a.controlGroups[0]!;
    const rackOf = (s: ReturnType<typeof site>) =>
      s.racks.find((r) => r.id === s.sensorNodes.find((n) => g.sensorNodes.includes(n.id))!.rack)!;
    const moved = site();
    rackOf(moved).xM += 3;
    expect(diffSites(a, moved).changedGroups).toContain(g.id);
    // The simulator's IT load is no input of any loop: the sensor ingest is rebuilt, no loop restarts.
    const loaded = site();
    rackOf(loaded).itLoadKw += 1;
    const d = diffSites(a, loaded);
    expect(d.changedGroups).toEqual([]);
    expect(d.sensorsChanged).toBe(true);
  });
});
