// Failsafe asks every node seen as a member since it started, not only the last snapshot's members:
// a member that stopped just before etcd became unreachable (so the leader's last snapshot no longer
// shows it) could otherwise restart, reach an etcd the leader cannot and be elected while the leader
// holds on the others' promises. Here n3 stops, then all of etcd goes: n1 and n2 ask n3 too, it is
// silent, so no hold starts and every leader stops at its lease deadline. Real etcd; the peer
// channel is an in-memory hub (a missing responder is a silent member).
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import type { FailsafeAnswer, FailsafeGroup, FailsafeTransport } from '../../src/cluster/failsafe.ts';
import { waitFor } from '../helpers.ts';
import { balanced, makeNode, useEtcdFixture, writers } from './harness.ts';

const GROUPS = ['g1', 'g2', 'g3'];
const TTL_S = 4;
type Responder = (from: string, groups: FailsafeGroup[], windowMs: number) => FailsafeAnswer;

class Hub {
  readonly responders = new Map<string, Responder>();
  readonly down = new Set<string>();
  readonly asked: string[][] = [];
  transport(node: string): FailsafeTransport {
    return {
      failsafePing: async (nodes, groups, windowMs) => {
        this.asked.push([...nodes]);
        const out = new Map<string, FailsafeAnswer>();
        for (const n of nodes) {
          const r = this.down.has(n) ? undefined : this.responders.get(n);
          out.set(n, r ? r(node, groups, windowMs) : { ok: false, reason: 'silent' });
        }
        return out;
      },
      setFailsafeResponder: (fn) => this.responders.set(node, fn),
    };
  }
}

const fx = useEtcdFixture('failsafe-members');
let nodes: EtcdLeadership[] = [];

afterEach(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
});

describe('failsafe membership', () => {
  it('asks a member that left the last snapshot: it is silent, so no hold starts', async () => {
    const hub = new Hub();
    const base = {
      etcd: fx.etcd.clientOptions(),
      prefix: '/coolctl-test/failsafe-members',
      groups: GROUPS,
      dataRoot: `${fx.root.dir}/1`,
    };
    // A TTL long enough for failsafe rounds to back a leader before its lease guard runs out.
    nodes = ['n1', 'n2', 'n3'].map((n) =>
      makeNode(n, base, { leaseTtlS: TTL_S, failsafe: hub.transport(n) }),
    );
    await Promise.all(nodes.map((n) => n.start()));
    await waitFor('every group led', () => balanced(writers(nodes, GROUPS), ['n1', 'n2', 'n3']), {
      timeoutMs: 15_000,
    });

    // n3 stops (its member key is revoked); n1 and n2 read the membership without it.
    const n3 = nodes[2]!;
    hub.down.add('n3');
    await n3.stop();
    const rest = nodes.slice(0, 2);
    await waitFor('n3 gone from the membership', () =>
      rest.every((n) => n.members().every((m) => m.node !== 'n3')),
    );
    await waitFor('n1 and n2 lead everything', () => balanced(writers(rest, GROUPS), ['n1', 'n2']), {
      timeoutMs: 10_000,
    });

    // All of etcd goes. Without n3 in the asked set, n1 and n2 would back each other and hold on.
    const t0 = performance.now();
    for (const i of [0, 1, 2]) await fx.etcd.kill(i, 'SIGKILL');
    await waitFor('a failsafe round', () => hub.asked.length > 0, { timeoutMs: 5_000 });
    const ttlMs = TTL_S * 1000;
    await waitFor(
      'every leader stopped at its lease deadline',
      () => GROUPS.every((g) => rest.every((n) => !n.fence(g))),
      {
        timeoutMs: ttlMs + 1_000,
        intervalMs: 10,
      },
    );
    expect(performance.now() - t0).toBeLessThan(ttlMs + 1_000);
    expect(hub.asked.every((list) => list.includes('n3'))).toBe(true);
    // The roles follow on the guard's expiry timer, a moment after fence() (which reads the clock).
    await waitFor('no node keeps a leader role', () =>
      rest.every((n) => n.groups().every((g) => g.role !== 'leader')),
    );
  });
});
