// relinquish(): a leader that cannot drive a group gives it to the next candidate at once, with the
// reason in its role event, in groups() and in a counter; a sole candidate leads again with a new
// epoch. Real 3-member etcd, in-process nodes, a FenceMonitor sampling every 5 ms for two writers.
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { balanced, FenceMonitor, makeNode, type RecordedChange, useEtcdFixture, writers } from './harness.ts';

const GROUPS = ['g1', 'g2', 'g3'];
const NAMES = ['n1', 'n2', 'n3'];
/** Relinquish → the next candidate leads: a delete, one watch event and one snapshot read on loopback. */
const HANDOFF_BOUND_MS = 500;

const fx = useEtcdFixture('relinquish');
let nodes: EtcdLeadership[] = [];
let monitor: FenceMonitor | undefined;
let seq = 0;

afterEach(async () => {
  monitor?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
});

function base(groups: string[]) {
  seq++;
  return {
    etcd: fx.etcd.clientOptions(),
    prefix: `/coolctl-test/relinquish-${seq}`,
    groups,
    dataRoot: `${fx.root.dir}/${seq}`,
  };
}

describe('relinquish', () => {
  it('hands the group to the next candidate within the bound, with the reason visible', async () => {
    const b = base(GROUPS);
    const changes: RecordedChange[] = [];
    const registry = new Registry();
    nodes = NAMES.map((n) => makeNode(n, b, n === 'n1' ? { registry } : {}, changes));
    monitor = new FenceMonitor(GROUPS, () => nodes);
    monitor.start();
    await Promise.all(nodes.map((n) => n.start()));
    await waitFor('an even placement', () => balanced(writers(nodes, GROUPS), NAMES), { timeoutMs: 15_000 });

    const n1 = nodes[0]!;
    const g = GROUPS.find((x) => n1.fence(x))!;
    const epoch = n1.fence(g)!.epoch;
    const reason = 'units refuse the epoch';
    const t0 = performance.now();
    n1.relinquish(g, reason);
    // The role goes before anything reaches etcd.
    expect(n1.fence(g)).toBeNull();
    const view = n1.groups().find((x) => x.group === g)!;
    expect(view).toMatchObject({ role: 'resigned', reason: `relinquished: ${reason}` });
    expect(view.relinquished?.reason).toBe(reason);
    expect(changes.at(-1)).toMatchObject({ node: 'n1', group: g, from: 'leader', to: 'resigned' });
    expect(changes.at(-1)!.reason).toContain(reason);

    const next = await waitFor('another node leads', () => nodes.find((n) => n !== n1 && n.fence(g)), {
      intervalMs: 2,
      timeoutMs: 5_000,
    });
    const tookMs = performance.now() - t0;
    expect(tookMs).toBeLessThan(HANDOFF_BOUND_MS);
    expect(next.fence(g)!.epoch).toBeGreaterThan(epoch);
    // n1 queues again at the back (rebalancing may give it a group back later), and still says why
    // it gave the group up.
    await waitFor('n1 re-queued', () =>
      changes.some((c) => c.node === 'n1' && c.group === g && c.from === 'resigned' && c.to === 'candidate'),
    );
    expect(n1.groups().find((x) => x.group === g)!.relinquished?.reason).toBe(reason);
    expect(await registry.metrics()).toMatch(
      new RegExp(`coolctl_leadership_relinquished_total\\{group="${g}"\\} 1`),
    );
    expect(monitor.violations).toEqual([]);
    // Not leading: a no-op.
    const other = GROUPS.find((x) => !n1.fence(x))!;
    const before = n1.groups().find((x) => x.group === other)!;
    n1.relinquish(other, 'not mine');
    const after = n1.groups().find((x) => x.group === other)!;
    expect([after.role, after.relinquished]).toEqual([before.role, before.relinquished]);
  });

  it('a sole candidate leads again, with a new epoch, and never on the key it gave up', async () => {
    const b = base(['solo']);
    const changes: RecordedChange[] = [];
    const n = makeNode('n1', b, {}, changes);
    nodes = [n];
    await n.start();
    const first = await waitFor('n1 leads', () => n.fence('solo'), { timeoutMs: 5_000 });
    const t0 = performance.now();
    n.relinquish('solo', 'loop cannot run');
    expect(n.fence('solo')).toBeNull();
    const again = await waitFor('n1 leads again', () => n.fence('solo'), { intervalMs: 2, timeoutMs: 5_000 });
    expect(performance.now() - t0).toBeLessThan(HANDOFF_BOUND_MS);
    expect(again.epoch).toBeGreaterThan(first.epoch);
    const led = changes.filter((c) => c.to === 'leader').map((c) => c.epoch);
    expect(led).toEqual([first.epoch, again.epoch]);
    expect(n.groups()[0]!.relinquished?.reason).toBe('loop cannot run');
  });
});
