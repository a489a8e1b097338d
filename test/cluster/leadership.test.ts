// Leadership across 3 in-process nodes on a real 3-member etcd cluster: one writer per group at
// every observation, even placement, switchover, graceful stop, rejoin without flapping, and a
// restart that revokes its previous lease. (Crash, restart and freeze: crash.test.ts; netsplit and quorum loss: netsplit.test.ts.)
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { balanced, FenceMonitor, makeNode, type RecordedChange, useEtcdFixture, writers } from './harness.ts';

const GROUPS = ['g1', 'g2', 'g3', 'g4', 'g5', 'g6'];
const NAMES = ['n1', 'n2', 'n3'];

const fx = useEtcdFixture('leadership');
let nodes: EtcdLeadership[] = [];
let changes: RecordedChange[] = [];
let monitor: FenceMonitor;
let prefixSeq = 0;
let registries = new Map<string, Registry>();

afterEach(async () => {
  monitor?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
});

/** Starts the three nodes under a fresh prefix; waits for an even placement. */
async function startTrio(): Promise<{ prefix: string; base: Parameters<typeof makeNode>[1] }> {
  const prefix = `/coolctl-test/leadership-${++prefixSeq}`;
  const base = {
    etcd: fx.etcd.clientOptions(),
    prefix,
    groups: GROUPS,
    dataRoot: `${fx.root.dir}/${prefixSeq}`,
  };
  changes = [];
  registries = new Map(NAMES.map((n) => [n, new Registry()]));
  nodes = NAMES.map((n) => makeNode(n, base, { registry: registries.get(n)! }, changes));
  monitor = new FenceMonitor(GROUPS, () => nodes);
  monitor.start();
  await Promise.all(nodes.map((n) => n.start()));
  await waitFor('an even placement over n1..n3', () => balanced(writers(nodes, GROUPS), NAMES), {
    timeoutMs: 15_000,
  });
  return { prefix, base };
}

function node(name: string): EtcdLeadership {
  return nodes.find((n) => n.node === name)!;
}

describe('EtcdLeadership on a real etcd cluster', () => {
  it('elects exactly one leader per group, spreads groups evenly, and shows members and roles', async () => {
    const { prefix } = await startTrio();
    expect(monitor.violations).toEqual([]);
    for (const n of nodes) {
      expect(n.members().map((m) => m.node)).toEqual(NAMES);
      expect(n.healthy).toBe(true);
    }
    // Every node sees the same leader and epoch per group as the writer's fence() says.
    await waitFor('all views agree', () =>
      GROUPS.every((g) => {
        const w = nodes.find((n) => n.fence(g));
        return (
          w &&
          nodes.every((n) => {
            const v = n.groups().find((x) => x.group === g)!;
            return v.leader === w.node && v.epoch === w.fence(g)!.epoch;
          })
        );
      }),
    );
    // etcdctl sees the same leader for a group (the election recipe is etcd's own).
    const out = await fx.etcd.ctl(
      ['get', '--prefix', `${prefix}/election/g1/`, '--sort-by=CREATE', '--order=ASCEND'],
      { asUser: true },
    );
    const leader = nodes.find((n) => n.fence('g1'))!.node;
    expect(out.split('\n')[1]).toBe(leader);
  });

  it('reports leadership metrics: leader gauge, transitions, lease remaining, keepalive round trips', async () => {
    await startTrio();
    await waitFor('a keepalive round trip on every node', async () => {
      for (const r of registries.values()) {
        if (!/coolctl_etcd_keepalive_seconds_count [1-9]/.test(await r.metrics())) return false;
      }
      return true;
    });
    for (const g of GROUPS) {
      let leaders = 0;
      for (const r of registries.values()) {
        const v = (await r.getSingleMetric('coolctl_leader')!.get()).values.find((x) => x.labels.group === g);
        leaders += v?.value ?? 0;
      }
      expect(leaders).toBe(1);
    }
    const text = await registries.get('n1')!.metrics();
    expect(text).toMatch(/coolctl_leadership_transitions_total\{group="g\d",from="\w+",to="leader"\} [1-9]/);
    const remaining = (await registries.get('n1')!.getSingleMetric('coolctl_lease_remaining_seconds')!.get())
      .values[0]!.value;
    expect(remaining).toBeGreaterThan(0);
    expect(remaining).toBeLessThanOrEqual((2_000 - 400) / 1000);
  });

  it('switchover hands a group to the named node, which leads within a few hundred ms', async () => {
    await startTrio();
    const g = 'g1';
    const from = nodes.find((n) => n.fence(g))!;
    const target = NAMES.find((n) => n !== from.node)!;
    const epochBefore = from.fence(g)!.epoch;
    const t0 = performance.now();
    await from.switchover(g, target, { timeoutMs: 3_000 });
    await waitFor('target leads', () => node(target).fence(g), { intervalMs: 2 });
    const tookMs = performance.now() - t0;
    expect(tookMs).toBeLessThan(400);
    expect(from.fence(g)).toBeNull();
    expect(node(target).fence(g)!.epoch).toBeGreaterThan(epochBefore);
    // The handover marker is gone and the old leader is queued again (fast failover stays possible).
    await waitFor(
      'old leader re-queued',
      () => from.groups().find((x) => x.group === g)?.role === 'candidate',
    );
    expect(monitor.violations).toEqual([]);
  });

  it('switchover is refused by a node that does not lead, and for a non-member target', async () => {
    await startTrio();
    const g = 'g2';
    const leader = nodes.find((n) => n.fence(g))!;
    const other = nodes.find((n) => n !== leader)!;
    await expect(other.switchover(g, other.node)).rejects.toMatchObject({ code: 'COOLCTL_E_NOT_LEADER' });
    await expect(leader.switchover(g, 'nobody')).rejects.toMatchObject({
      code: 'COOLCTL_E_SWITCHOVER_FAILED',
    });
  });

  it('a graceful stop moves only the stopped node’s groups, at once (no TTL wait), with higher epochs', async () => {
    await startTrio();
    const before = writers(nodes, GROUPS);
    const epochs = new Map(GROUPS.map((g) => [g, nodes.find((n) => n.fence(g))!.fence(g)!.epoch]));
    const victim = node('n2');
    const victimGroups = GROUPS.filter((g) => before.get(g) === 'n2');
    expect(victimGroups.length).toBe(2);
    const t0 = performance.now();
    await victim.stop();
    const rest = nodes.filter((n) => n !== victim);
    await waitFor(
      'the victim’s groups have new leaders',
      () => victimGroups.every((g) => rest.some((n) => n.fence(g))),
      {
        intervalMs: 2,
      },
    );
    expect(performance.now() - t0).toBeLessThan(500);
    for (const g of GROUPS) {
      const now = rest.find((n) => n.fence(g))!;
      if (victimGroups.includes(g)) {
        expect(now.fence(g)!.epoch).toBeGreaterThan(epochs.get(g)!);
      } else {
        expect(now.node).toBe(before.get(g)); // untouched
        expect(now.fence(g)!.epoch).toBe(epochs.get(g));
      }
    }
    expect(victim.groups().every((x) => x.role === 'resigned')).toBe(true);
    expect(monitor.violations).toEqual([]);
  });

  it('a node that rejoins gets its share back by handover, without flapping', async () => {
    const { base } = await startTrio();
    await node('n3').stop();
    nodes = nodes.filter((n) => n.node !== 'n3');
    await waitFor('n1 and n2 lead everything', () => balanced(writers(nodes, GROUPS), ['n1', 'n2']), {
      timeoutMs: 10_000,
    });
    const mark = changes.length;
    const n3 = makeNode('n3', base, {}, changes);
    nodes.push(n3);
    await n3.start();
    await waitFor('n3 gets its share back', () => balanced(writers(nodes, GROUPS), NAMES), {
      timeoutMs: 10_000,
    });
    // Hold on for two more hold periods: nothing else moves.
    const settled = writers(nodes, GROUPS);
    await new Promise((r) => setTimeout(r, 2 * 800 + 300));
    expect(writers(nodes, GROUPS)).toEqual(settled);
    const gained = changes.slice(mark).filter((c) => c.to === 'leader');
    expect(gained.map((c) => c.node).sort()).toEqual(['n3', 'n3']); // exactly two moves, both to n3
    expect(monitor.violations).toEqual([]);
  });
});
