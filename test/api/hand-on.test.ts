// Never none, as the API says it: a leader whose units accept nothing hands the group on and says
// why in GET /api/v1/cluster and in the group's view; while its relinquish back-off holds it says
// why it keeps a group it cannot drive; a unit's unproven stale-epoch refusals are counted per unit.
// The API over a fake cluster and fake units (buildApp opens no socket: inject()).
import { EventEmitter } from 'node:events';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/app.ts';
import type { ControlGroup } from '../../src/config/site-schema.ts';
import { GroupDriver } from '../../src/control/group-driver.ts';
import { ControlMetrics } from '../../src/control/metrics.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { apiAuth, injectAs } from '../support/api-auth.ts';
import { FakeCluster } from '../support/fake-cluster.ts';

const GROUP = { id: 'g1', airHandlers: ['A', 'B'] } as unknown as ControlGroup;

/** A unit that reads fine and answers every write as `fail()` says (undefined: accepted). */
function unit(id: string, fail: () => DeviceError | undefined): DeviceIo {
  return Object.assign(new EventEmitter(), {
    id,
    protocol: 'modbus-tcp' as const,
    linkState: 'up' as const,
    remoteControlLost: false,
    open: async () => {},
    read: async () => ({ mode: 'remote', fanPct: 50, supplySetpointC: 18, epoch: 1 }),
    writeCommand: async () => {
      const e = fail();
      if (e) throw e;
    },
    close: async () => {},
  }) as unknown as DeviceIo;
}

const apps: FastifyInstance[] = [];
const drivers: GroupDriver[] = [];
afterEach(async () => {
  for (const d of drivers.splice(0)) d.stop();
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

async function node(
  c: FakeCluster,
  name: string,
  fail: (ahu: string) => DeviceError | undefined,
  undrivenLimitMs = 200,
) {
  const leadership = c.node(name);
  const registry = new Registry();
  const devices = new Map(GROUP.airHandlers.map((a) => [a, unit(a, () => fail(a))]));
  const driver = new GroupDriver(GROUP, devices, leadership, {
    periodMs: 20,
    logger: quietLogger,
    undrivenLimitMs,
    relinquishBackoff: { baseMs: 60_000, maxMs: 60_000 },
    metrics: new ControlMetrics(registry),
  });
  drivers.push(driver);
  const auth = await apiAuth(registry, quietLogger, c.controlPlane);
  const app = await buildApp({
    auth: auth.auth,
    audit: auth.audit,
    node: name,
    version: '0.1.0',
    leadership,
    registry,
    groups: [GROUP.id],
    drivers: new Map([[GROUP.id, driver]]),
    logger: quietLogger,
    startedAtMs: Date.now(),
  });
  injectAs(app, auth.as('viewer'));
  apps.push(app);
  driver.start();
  return { app, driver, registry };
}

const get = async (app: FastifyInstance, url: string) =>
  (await app.inject({ method: 'GET', url })).json() as Record<string, unknown> & {
    groups: Record<string, unknown>[];
  };

describe('hand-on in the API', () => {
  it('the reason a leader gave the group up, and why the next one keeps a group it cannot drive', async () => {
    const c = new FakeCluster({ g1: ['n1', 100] });
    const unreachable = (a: string) =>
      new DeviceError(ErrorCodes.DEVICE_UNREACHABLE, a, 'ECONNREFUSED 127.0.0.1:1502', { retryable: true });
    const n1 = await node(c, 'n1', unreachable);
    const n2 = await node(c, 'n2', unreachable);

    await waitFor('n1 hands on', () => c.relinquished.length >= 1, { timeoutMs: 5_000 });
    const n1Cluster = (await get(n1.app, '/api/v1/cluster')).groups[0]!;
    expect(n1Cluster).toMatchObject({ id: 'g1', leader: 'n2', driving: false, problem: null });
    expect(n1Cluster.relinquished).toMatchObject({ cause: 'undriven', epoch: 100 });
    expect((n1Cluster.relinquished as { reason: string }).reason).toMatch(
      /no unit accepted a write for \d+\.\d s \(bound 0\.2 s\): A: ECONNREFUSED/,
    );
    const view = await get(n1.app, '/api/v1/groups/g1');
    expect(view).toMatchObject({ relinquished: { cause: 'undriven' }, drive: { undrivenLimitMs: 200 } });

    // n2 fails too, hands on back to n1, which leads within its back-off: it keeps the group and says why.
    await waitFor('n2 hands on', () => c.relinquished.length >= 2, { timeoutMs: 5_000 });
    const held = await waitFor('n1 says why it keeps the group', async () => {
      const v = await get(n1.app, '/api/v1/groups/g1');
      return v.problem ? v : null;
    });
    expect(held.problem).toMatch(/no unit accepted a write/);
    expect((held.drive as { relinquishHeldUntilMs: number }).relinquishHeldUntilMs).toBeGreaterThan(
      Date.now(),
    );
    expect((await get(n1.app, '/api/v1/cluster')).groups[0]).toMatchObject({ leader: 'n1' });
    expect(((await get(n1.app, '/api/v1/cluster')).groups[0]!.problem as string) ?? '').toMatch(/no unit/);
    expect(c.relinquished).toHaveLength(2);
    const metrics = await (await n1.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/coolctl_control_relinquished_total\{group="g1",cause="undriven"\} 1/);
    const undrivenS = Number(/coolctl_control_undriven_seconds\{group="g1"\} (\S+)/.exec(metrics)?.[1]);
    expect(undrivenS).toBeGreaterThan(0.2);
    expect(n2.driver.driveStatus.relinquished?.cause).toBe('undriven');
  });

  it('counts a unit’s unproven stale-epoch refusals and shows its last error, the group driven all along', async () => {
    const c = new FakeCluster({ g1: ['n1', 100] });
    // A 1 s bound: a machine busy enough to stall this process's loop for 0.2 s would otherwise
    // judge the group undriven for the stall, not for A's refusals.
    const n1 = await node(
      c,
      'n1',
      (a) =>
        a === 'A'
          ? new DeviceError(
              ErrorCodes.DEVICE_EXCEPTION,
              a,
              'refused with exception 0x0D (stale epoch), not proven',
              {
                retryable: true,
                deviceCode: 13,
              },
            )
          : undefined,
      1_000,
    );
    const view = await waitFor(
      'refusals counted',
      async () => {
        const v = await get(n1.app, '/api/v1/groups/g1');
        const a = (v.units as { ahu: string; refusals: number }[]).find((u) => u.ahu === 'A');
        return (a?.refusals ?? 0) >= 75 ? v : null; // 75 periods of 20 ms: past the 1 s bound
      },
      { timeoutMs: 10_000 },
    );
    expect(view).toMatchObject({ driving: true, problem: null, relinquished: null });
    const units = view.units as { ahu: string; lastError: string | null; lastWriteOkMs: number | null }[];
    expect(units.find((u) => u.ahu === 'A')!.lastError).toMatch(/0x0D .*not proven/);
    expect(units.find((u) => u.ahu === 'B')).toMatchObject({ lastError: null });
    expect(c.relinquished).toEqual([]);
    const metrics = (await n1.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(
      /coolctl_control_stale_epoch_refusals_total\{group="g1",ahu="A",proven="false"\} \d+/,
    );
  });

  it('describes the additions in OpenAPI', async () => {
    const c = new FakeCluster({ g1: ['n1', 100] });
    const n1 = await node(c, 'n1', () => undefined);
    const doc = JSON.stringify(await get(n1.app, '/openapi.json'));
    for (const word of ['problem', 'relinquished', 'relinquishHeldUntilMs', 'undrivenLimitMs', 'refusals'])
      expect(doc).toContain(word);
  });
});
