// Handover markers that no leader is running, on a real etcd written with real etcdctl: a marker
// without a lease naming nodes that do not exist (a restore, a hand-made put), one on a lease no
// member holds, one on a member's lease but naming another node, and one on a member's lease while
// another node leads. None may keep a group unled or block its switchovers: each is reported (a warn
// line, the ghost counter) and the group's leader deletes it; a switchover afterwards works, and no
// two nodes may write one group at any time.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { balanced, FenceMonitor, makeNode, useEtcdFixture, writers } from './harness.ts';

const GROUPS = ['g1', 'g2', 'g3', 'g4', 'g5', 'g6'];
const fx = useEtcdFixture('hostile-markers');
let nodes: EtcdLeadership[] = [];
let monitor: FenceMonitor | undefined;

afterEach(async () => {
  monitor?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
});

async function ghosts(r: Registry): Promise<number> {
  const m = await r.getSingleMetric('coolctl_leadership_ignored_keys_total')!.get();
  return m.values.find((v) => v.labels.kind === 'ghost')?.value ?? 0;
}

describe('handover markers no leader runs', () => {
  it('never keep a group unled nor block a switchover: reported, and deleted by the leader', async () => {
    const prefix = '/coolctl-test/hostile-markers';
    const etcdctl = (args: string[]) => fx.etcd.ctl(args, { asUser: true });
    const marker = (from: string, to: string) => JSON.stringify({ from, to, epoch: 1, atMs: 1 });
    const markerOf = async (g: string) =>
      (await etcdctl(['get', '--print-value-only', `${prefix}/handover/${g}`])).trim();
    // Before any node runs: a leaseless marker between nodes that do not exist, and one on a lease
    // that no member holds. With either in force, no node would ever queue for the group.
    await etcdctl(['put', `${prefix}/handover/g1`, marker('n9', 'n8')]);
    const granted = await etcdctl(['lease', 'grant', '60']);
    const stranger = /lease ([0-9a-f]+) granted/.exec(granted)![1]!;
    await etcdctl(['put', `--lease=${stranger}`, `${prefix}/handover/g2`, marker('n9', 'n1')]);
    // And one too large to read (over the 64 KiB bound): no node could ever see what it says.
    const huge = JSON.stringify({ from: 'n9', to: 'n8', pad: 'x'.repeat(70_000) });
    await etcdctl(['put', `${prefix}/handover/g5`, huge]);

    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    const registry = new Registry();
    const base = { etcd: fx.etcd.clientOptions(), prefix, groups: GROUPS, dataRoot: fx.root.dir };
    nodes = [makeNode('n1', base, { registry, logger }), makeNode('n2', base)];
    monitor = new FenceMonitor(GROUPS, () => nodes);
    monitor.start();
    await Promise.all(nodes.map((n) => n.start()));

    const allLed = () => [...writers(nodes, GROUPS).values()].every((w) => w !== null);
    await waitFor('every group led despite the markers', allLed, { timeoutMs: 8_000 });
    await waitFor(
      'the three markers deleted',
      async () => (await markerOf('g1')) + (await markerOf('g2')) + (await markerOf('g5')) === '',
      { timeoutMs: 5_000 },
    );
    expect(await ghosts(registry)).toBeGreaterThanOrEqual(2);
    const reported = lines
      .filter((l) => l.msg === 'ignoring a key under the cluster prefix')
      .map((l) => l.key);
    expect(reported).toEqual(expect.arrayContaining([`${prefix}/handover/g1`, `${prefix}/handover/g2`]));

    // On n1's own lease (anyone with etcd credentials can attach a key to it): naming n2 as its
    // writer, and naming n1 while n2 leads the group. Neither is a handover in progress.
    // Election keys are named after their lease (JSON would round the 64-bit id).
    const keys = (await etcdctl(['get', '--prefix', `${prefix}/election/`])).trim().split('\n');
    const n1Lease = keys[keys.indexOf('n1') - 1]!.split('/').at(-1)!;
    // Placement settled, so each node leads a group and nothing moves meanwhile.
    await waitFor('an even placement', () => balanced(writers(nodes, GROUPS), ['n1', 'n2']));
    const w = writers(nodes, GROUPS);
    const ledBy = (n: string) => GROUPS.find((g) => w.get(g) === n)!;
    const byN1 = ledBy('n1');
    const byN2 = ledBy('n2');
    expect(byN1 && byN2).toBeTruthy();
    await etcdctl(['put', `--lease=${n1Lease}`, `${prefix}/handover/${byN1}`, marker('n2', 'n8')]);
    await etcdctl(['put', `--lease=${n1Lease}`, `${prefix}/handover/${byN2}`, marker('n1', 'n8')]);
    await waitFor(
      'the borrowed-lease and stale markers deleted',
      async () => (await markerOf(byN1)) + (await markerOf(byN2)) === '',
      { timeoutMs: 5_000 },
    );
    expect(allLed()).toBe(true);

    // An oversized marker put while the group is led: its leader's next switchover clears it first.
    const g6From = nodes.find((n) => n.fence('g6'))!;
    await etcdctl(['put', `${prefix}/handover/g6`, huge]);
    await waitFor('the oversized value reported', () =>
      lines.some((l) => l.key === `${prefix}/handover/g6` && l.kind === 'oversized'),
    );
    // (Each node sees the value on its own watch: tried until the leader's has.)
    await waitFor('a switchover of g6 through', () =>
      g6From.switchover('g6', nodes.find((n) => n !== g6From)!.node, { timeoutMs: 5_000 }).then(() => true),
    );
    await waitFor('g6 handed over', () => nodes.find((n) => n !== g6From)!.fence('g6'));

    // The marker slot is free again: a switchover of g1 goes through. Moving g6 left the placement
    // uneven, so the nodes even it out first; g1 may be the group they move, in transit meanwhile.
    await waitFor('an even placement again', () => balanced(writers(nodes, GROUPS), ['n1', 'n2']));
    const g1From = await waitFor('g1 led', () => nodes.find((n) => n.fence('g1')));
    const g1To = nodes.find((n) => n !== g1From)!;
    await g1From.switchover('g1', g1To.node, { timeoutMs: 5_000 });
    await waitFor('g1 led by the target', () => g1To.fence('g1'));

    expect(monitor.violations).toEqual([]);
    expect(nodes.every((n) => n.healthy)).toBe(true);
  });
});
