// etcd out of space, as an on-call engineer meets it: a gateway cluster whose backend quota fills up
// (no compaction) raises etcd's NOSPACE alarm, and etcd refuses every write. Real processes (the
// hall: 3-member etcd with a 4 MB quota, the simulator, 2 controllers). What must hold: leaders keep
// driving (reads and keepalives work), an operator action is refused with a stable code and the
// remedy instead of running unaudited, every node raises etcd-no-space once (metric too), a group
// still fails over to a queued candidate, and after compact + defrag + disarm all resumes unrestarted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { waitFor } from '../helpers.ts';
import {
  fillEtcd,
  freeEtcd,
  logLines,
  nodeAlarms,
  nodeMetric,
  SMALL_QUOTA_FLAGS,
} from '../support/etcd-space.ts';
import { Hall } from '../support/hall.ts';

let hall: Hall;

beforeAll(async () => {
  hall = await Hall.start({
    name: 'etcd-no-space',
    controllers: 2,
    groups: 2,
    airHandlers: 4,
    liveness: false,
    secure: false,
    etcdFlags: SMALL_QUOTA_FLAGS,
  });
}, 120_000);

afterAll(async () => {
  await hall?.stopAll();
}, 30_000);

async function pause(
  node: string,
  group: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${hall.apiUrl(node)}/api/v1/groups/${group}/pause`, {
    method: 'POST',
    headers: { ...hall.apiHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'filter change' }),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('etcd out of space', () => {
  it('leaders keep driving, actions are refused with the remedy, an alarm says so; disarm resumes all', async () => {
    const before = await hall.waitForLeaders();
    const etcd = createEtcdClient({ hosts: hall.etcd.clientUrls, callTimeoutMs: 5000 });
    try {
      await fillEtcd(etcd);

      // Every node says so once: an alarm with the remedy, kept on the node (etcd takes no record).
      for (const node of hall.nodes)
        await waitFor(
          `etcd-no-space active on ${node}`,
          async () =>
            (await nodeAlarms(hall, node, 'active')).some(
              (a) =>
                a.kind === 'etcd-no-space' && a.subject === node && /etcdctl alarm disarm/.test(a.message),
            ),
          { timeoutMs: 15_000, intervalMs: 200 },
        );
      for (const node of hall.nodes) expect(await nodeMetric(hall, node, 'coolctl_etcd_no_space')).toBe(1);

      // Leaders keep their leases and drive: the same leader and epoch for every group, never two.
      const { leaders, conflicts } = await hall.leaders();
      expect(conflicts).toEqual([]);
      expect(Object.fromEntries(leaders)).toEqual(Object.fromEntries(before));

      // An operator action cannot be audited: refused, with a code and the remedy; nothing applied.
      const [group, leader] = [...before][0]!;
      const refused = await pause(leader.node, group);
      expect(refused.status).toBe(503);
      expect(refused.body.error).toBe('COOLCTL_E_ETCD_NO_SPACE');
      expect(JSON.stringify(refused.body.details)).toMatch(/etcdctl alarm disarm/);

      // A failover still works: the queued candidate's key was written before the quota ran out.
      const other = hall.nodes.find((n) => n !== leader.node)!;
      await hall.kill(leader.node, 'SIGKILL');
      const after = await hall.waitForLeaders({ among: [other], timeoutMs: 10_000 });
      expect(after.get(group)!.epoch).toBeGreaterThan(leader.epoch);

      // The operator frees space and disarms; nothing is restarted.
      await freeEtcd(hall, etcd);

      await waitFor(
        `etcd-no-space cleared on ${other}`,
        async () => !(await nodeAlarms(hall, other, 'active')).some((a) => a.kind === 'etcd-no-space'),
        { timeoutMs: 15_000, intervalMs: 200 },
      );
      expect(await nodeMetric(hall, other, 'coolctl_etcd_no_space')).toBe(0);
      // Recorded in etcd, closed, now that it takes writes.
      await waitFor(
        'the cleared etcd-no-space recorded in etcd',
        async () =>
          (await hall.etcdctl(['get', '--prefix', '--keys-only', '/coolctl-chaos/alarms/'])).includes(
            'etcd-no-space',
          ),
        { timeoutMs: 10_000, intervalMs: 200 },
      );
      const resumed = await pause(other, group);
      expect(resumed.status, JSON.stringify(resumed.body)).toBe(200);
      // One line when it began, one when it ended: not one per probe.
      expect(await logLines(hall, other, 'etcd refuses writes')).toBe(1);
      expect(await logLines(hall, other, 'etcd takes writes again')).toBe(1);
    } finally {
      etcd.close();
    }
  }, 90_000);
});
