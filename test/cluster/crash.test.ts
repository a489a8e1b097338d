// A leader in its own process, killed or frozen: kill -9 moves only its groups, after ≈ one TTL;
// restarted with the same data dir it revokes its old lease, so its groups move at once; frozen
// (SIGSTOP) past its deadline, it finds itself fenced on resume before anything else runs.
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership, EtcdLeadershipOptions } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { ChildNode } from './child-node.ts';
import { FenceMonitor, makeNode, TEST_TIMING, useEtcdFixture, writers } from './harness.ts';

const GROUPS = ['g1', 'g2', 'g3', 'g4', 'g5', 'g6'];

const fx = useEtcdFixture('crash');
let inProc: EtcdLeadership[] = [];
let child: ChildNode | undefined;
let monitor: FenceMonitor | undefined;
let seq = 0;

afterEach(async () => {
  monitor?.stop();
  await child?.kill();
  child = undefined;
  await Promise.all(inProc.map((n) => n.stop()));
  inProc = [];
});

const wall = (): number => performance.timeOrigin + performance.now();

/** n1 in a child process, n2 and n3 in this one; waits until n1 leads its share (2 of 6). */
async function startMixed(timing: Partial<EtcdLeadershipOptions> = {}) {
  const prefix = `/coolctl-test/crash-${++seq}`;
  const base = { etcd: fx.etcd.clientOptions(), prefix, groups: GROUPS, dataRoot: `${fx.root.dir}/${seq}` };
  child = new ChildNode({
    node: 'n1',
    apiUrl: 'http://n1.test',
    groups: GROUPS,
    etcd: fx.etcd.clientOptions(),
    prefix,
    dataDir: `${base.dataRoot}/n1`,
    ...TEST_TIMING,
    ...timing,
  });
  await child.ready();
  inProc = ['n2', 'n3'].map((n) => makeNode(n, base, timing));
  monitor = new FenceMonitor(GROUPS, () => inProc);
  monitor.start(2);
  await Promise.all(inProc.map((n) => n.start()));
  await waitFor(
    'n1 leads 2 groups, n2 and n3 the rest',
    () => {
      const w = writers(inProc, GROUPS);
      const mine = child!.writable();
      const c2 = [...w.values()].filter((n) => n === 'n2').length;
      const c3 = [...w.values()].filter((n) => n === 'n3').length;
      return (
        mine.size === 2 && c2 === 2 && c3 === 2 && GROUPS.every((g) => (w.get(g) !== null) !== mine.has(g))
      );
    },
    { timeoutMs: 15_000 },
  );
  return { base, prefix };
}

describe('a leader process that dies or freezes', () => {
  it('kill -9: only its groups move, after about one lease TTL', async () => {
    await startMixed();
    const before = writers(inProc, GROUPS);
    const lost = [...child!.writable().keys()];
    const tKill = performance.now();
    await child!.kill();
    await waitFor('n1’s groups have new leaders', () => lost.every((g) => inProc.some((n) => n.fence(g))), {
      timeoutMs: 5_000,
      intervalMs: 5,
    });
    const tookMs = performance.now() - tKill;
    const ttlMs = TEST_TIMING.leaseTtlS * 1000;
    // etcd expires the lease TTL after the last keepalive it saw (≤ one interval before the kill).
    expect(tookMs).toBeGreaterThan(ttlMs - TEST_TIMING.keepaliveIntervalMs - 100);
    expect(tookMs).toBeLessThan(ttlMs + 500);
    for (const g of GROUPS) if (!lost.includes(g)) expect(writers(inProc, [g]).get(g)).toBe(before.get(g));
    expect(monitor!.violations).toEqual([]);
  });

  it('a restart with the same data dir revokes the previous lease: its groups move at once', async () => {
    // A long TTL makes the difference plain: without the revoke, takeover would wait ≈ 6 s.
    const timing = { leaseTtlS: 6, keepaliveIntervalMs: 500, safetyMarginMs: 1000, etcdCallTimeoutMs: 1000 };
    const { base } = await startMixed(timing);
    const lost = [...child!.writable().keys()];
    const tKill = performance.now();
    await child!.kill();
    const again = makeNode('n1', base, timing);
    inProc.push(again);
    await again.start();
    await waitFor(
      'n1’s former groups have leaders',
      () => lost.every((g) => inProc.some((n) => n.fence(g))),
      {
        timeoutMs: 10_000,
        intervalMs: 5,
      },
    );
    expect(performance.now() - tKill).toBeLessThan(2_000);
    expect(monitor!.violations).toEqual([]);
  });

  it('SIGSTOP past the deadline: on SIGCONT it is fenced before it could write, and others led meanwhile', async () => {
    await startMixed();
    const held = child!.writable();
    const tStop = wall();
    child!.signal('SIGSTOP');
    await waitFor(
      'n2/n3 took over n1’s groups',
      () => [...held.keys()].every((g) => inProc.some((n) => n.fence(g))),
      {
        timeoutMs: 6_000,
        intervalMs: 5,
      },
    );
    const tTakeover = wall();
    child!.signal('SIGCONT');
    await waitFor('the resumed child reports every held group fenced', () =>
      [...held.keys()].every((g) =>
        child!.lines.some((l) => l.ev === 'fence' && l.group === g && l.t > tStop && l.epoch === null),
      ),
    );
    // Nothing after the freeze allowed writing with the old epoch; in particular not while the
    // others led (from tTakeover on).
    for (const [g, epoch] of held) {
      const after = child!.lines.filter((l) => l.ev === 'fence' && l.group === g && l.t > tStop);
      expect(after[0]?.epoch).toBeNull();
      expect(after.some((l) => l.epoch === epoch)).toBe(false);
    }
    expect(tTakeover).toBeGreaterThan(tStop);
    expect(monitor!.violations).toEqual([]);
  });
});
