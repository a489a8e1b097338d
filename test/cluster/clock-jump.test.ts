// A node whose wall clock jumps (NTP stepping it, an RTC that was wrong at boot) while it leads:
// leadership runs on the monotonic clock, so the jump changes nothing a user would notice — every
// group stays led by exactly one node, and a node that joins after the clock went back an hour still
// gets its even share (placement's hold on freshly led groups must not last the hour).
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { balanced, FenceMonitor, makeNode, useEtcdFixture, writers } from './harness.ts';

const GROUPS = ['g1', 'g2', 'g3', 'g4'];
const HOUR_MS = 3_600_000;
const fx = useEtcdFixture('clock-jump');
let nodes: EtcdLeadership[] = [];
let monitor: FenceMonitor | undefined;

afterEach(async () => {
  monitor?.stop();
  vi.useRealTimers();
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
});

describe('a wall clock that jumps', () => {
  for (const jumpMs of [-HOUR_MS, HOUR_MS]) {
    it(`by ${jumpMs / HOUR_MS} h: every group stays led by one node, and a joining node gets its share`, async () => {
      const prefix = `/coolctl-test/clock-jump${jumpMs}`;
      const base = {
        etcd: fx.etcd.clientOptions(),
        prefix,
        groups: GROUPS,
        dataRoot: `${fx.root.dir}/${jumpMs}`,
      };
      const n1 = makeNode('n1', base);
      nodes = [n1];
      monitor = new FenceMonitor(GROUPS, () => nodes);
      monitor.start();
      await n1.start();
      await waitFor('n1 leads every group', () => GROUPS.every((g) => n1.fence(g)));

      // Only Date moves: timers and performance.now() run on as before.
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + jumpMs, shouldAdvanceTime: true });
      const n2 = makeNode('n2', base);
      nodes.push(n2);
      await n2.start();
      await waitFor(
        'an even placement after the jump',
        () => balanced(writers(nodes, GROUPS), ['n1', 'n2']),
        {
          timeoutMs: 10_000,
        },
      );
      expect(monitor.violations).toEqual([]);
      expect(nodes.every((n) => n.healthy)).toBe(true);
    });
  }
});
