// The rolling upgrade's decisions against a modelled cluster (three nodes, three groups, each group
// led by an up node): what an operator sees when the cluster is not fit before a node's turn, when
// the node list names a node twice, and when a node does not come back on the new release. Every
// snapshot the upgrade reads is also checked: no group is ever left without a driving leader by a
// step the upgrade took. The real processes' walk is test/upgrade/rolling-upgrade.test.ts.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { ClusterReader, ClusterSnapshot, MemberView } from '../../src/upgrade/cluster-view.ts';
import type { NodeControl } from '../../src/upgrade/node-control.ts';
import { rollingUpgrade, UpgradeFailedError } from '../../src/upgrade/rolling.ts';

const NODES = ['c1', 'c2', 'c3'];
const GROUPS = ['g1', 'g2', 'g3'];
const OLD = '1.0.0';
const NEW = '1.1.0';
const WIRE = { version: 1, oldest: 1 };

/** Nodes that run, what each runs and starts from, and who leads each group. */
class Model {
  readonly up = new Set(NODES);
  readonly running = new Map(NODES.map((n) => [n, OLD]));
  readonly current = new Map(NODES.map((n) => [n, OLD]));
  /** A node started on one of these comes up but never ready (a release that fails its health check). */
  readonly unhealthy = new Set<string>();
  readonly calls: string[] = [];
  /** Groups without a driving leader in any snapshot read while no node was stopped on purpose. */
  readonly undriven: string[] = [];
  private readonly leader = new Map(GROUPS.map((g, i) => [g, NODES[i]!]));

  private healthy(n: string): boolean {
    return this.up.has(n) && !this.unhealthy.has(this.running.get(n)!);
  }

  /** A group goes back to its own node once it is healthy; one whose leader went away, to the first healthy node. */
  private rebalance(): void {
    GROUPS.forEach((g, i) => {
      if (this.healthy(NODES[i]!)) this.leader.set(g, NODES[i]!);
    });
    for (const g of GROUPS)
      if (!this.healthy(this.leader.get(g)!)) {
        const next = NODES.find((n) => this.healthy(n));
        if (next) this.leader.set(g, next);
      }
  }

  readonly reader = {
    snapshot: async (): Promise<ClusterSnapshot> => {
      this.rebalance();
      const views = new Map<string, MemberView>();
      for (const n of NODES) {
        if (!this.up.has(n)) continue;
        views.set(n, {
          node: n,
          apiUrl: `http://${n}`,
          ready: this.healthy(n),
          groups: GROUPS.map((g) => {
            const leads = this.leader.get(g) === n && this.healthy(n);
            return {
              id: g,
              leader: this.leader.get(g)!,
              epoch: 1,
              state: leads ? 'leader' : 'follower',
              driving: leads,
            };
          }),
          peers: null,
          error: null,
        });
      }
      for (const g of GROUPS) if (!this.healthy(this.leader.get(g)!)) this.undriven.push(g);
      return { atMs: Date.now(), members: NODES.map((n) => ({ node: n, apiUrl: `http://${n}` })), views };
    },
    release: async (apiUrl: string): Promise<string | null> => {
      const n = apiUrl.replace('http://', '');
      return this.up.has(n) ? this.running.get(n)! : null;
    },
  };

  readonly control: NodeControl = {
    stop: async (node) => {
      this.calls.push(`stop ${node}`);
      this.up.delete(node);
      this.rebalance();
    },
    activate: async (node, version) => {
      this.calls.push(`activate ${node} ${version}`);
      this.current.set(node, version);
    },
    start: async (node) => {
      this.calls.push(`start ${node}`);
      this.up.add(node);
      this.running.set(node, this.current.get(node)!);
      this.rebalance();
    },
  };
}

function upgrade(m: Model, o: { nodes?: string[]; onStep?: () => void } = {}) {
  return rollingUpgrade({
    reader: m.reader as unknown as ClusterReader,
    control: m.control,
    to: { version: NEW, wire: WIRE },
    wireOf: async () => WIRE,
    ...o,
    logger: pino({ level: 'silent' }),
    handoverTimeoutMs: 1000,
    rejoinTimeoutMs: 300,
    pollMs: 10,
  });
}

async function failure(p: Promise<unknown>): Promise<UpgradeFailedError & { code: string }> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!err) throw new Error('the upgrade went through');
  return err as UpgradeFailedError & { code: string };
}

describe('rolling upgrade, step by step', () => {
  it('leaves a node running when the cluster is not fit before its turn, and says so', async () => {
    const m = new Model();
    // c3 fails on its own once c1's step is done: c2's turn finds a member that is not ready.
    const onStep = () => {
      m.unhealthy.add('crashed');
      m.running.set('c3', 'crashed');
    };
    const err = await failure(upgrade(m, { onStep }));
    expect(err).toBeInstanceOf(UpgradeFailedError);
    expect(err.code).toBe('COOLCTL_E_UPGRADE_FAILED');
    expect(err.node).toBe('c2');
    expect(err.message).toMatch(
      /^c2 was left running 1\.0\.0, untouched: the cluster fit before the step: not within 300 ms \(c3 is not ready/,
    );
    expect(err.rolledBack).toBe(true);
    // c2 kept driving: it was never stopped or re-pointed
    expect(m.calls).toEqual(['stop c1', `activate c1 ${NEW}`, 'start c1']);
    expect(m.up.has('c2')).toBe(true);
    expect(err.report.steps.map((s) => s.node)).toEqual(['c1']);
  });

  it('refuses a node list that names a node twice, touching nothing', async () => {
    const m = new Model();
    const err = await failure(upgrade(m, { nodes: ['c1', 'c2', 'c1'] }));
    expect(err.code).toBe('COOLCTL_E_UPGRADE_REFUSED');
    expect(err.message).toMatch(/c1: named more than once in the node list/);
    expect(m.calls).toEqual([]);
  });

  it('stops at a node that fails its health check on the new release, puts it back, and says why', async () => {
    const m = new Model();
    m.unhealthy.add(NEW);
    const err = await failure(upgrade(m));
    expect(err.code).toBe('COOLCTL_E_UPGRADE_FAILED');
    expect(err.node).toBe('c1');
    expect(err.message).toMatch(
      /^c1 on 1\.1\.0: ready and a member again: not within 300 ms \(c1 is not ready\); rolled back to 1\.0\.0$/,
    );
    expect(err.rolledBack).toBe(true);
    expect(m.calls).toEqual([
      'stop c1',
      `activate c1 ${NEW}`,
      'start c1',
      'stop c1',
      `activate c1 ${OLD}`,
      'start c1',
    ]);
    // the other nodes were never touched, and every node runs the old release again
    expect([...m.running.values()]).toEqual([OLD, OLD, OLD]);
  });

  it('moves every node when the cluster stays fit, every group driven in every snapshot', async () => {
    const m = new Model();
    const report = await upgrade(m);
    expect(report.steps.map((s) => [s.node, s.from, s.to])).toEqual(NODES.map((n) => [n, OLD, NEW]));
    expect([...m.running.values()]).toEqual([NEW, NEW, NEW]);
    expect(m.undriven).toEqual([]);
  });
});
