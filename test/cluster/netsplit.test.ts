// Partitions and pauses against a real etcd cluster: a leader cut off from etcd (blackholed TCP,
// sockets left open) is fenced BEFORE anyone else leads its groups; on quorum loss every leader
// stops at its own guard deadline; a frozen event loop finds fence() null on resume; watches
// require an etcd leader.
import { Etcd3 } from 'etcd3';
import { afterEach, describe, expect, it } from 'vitest';
import { BlackholeProxy } from '../../scripts/lib/blackhole-proxy.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { balanced, FenceMonitor, makeNode, TEST_TIMING, useEtcdFixture, writers } from './harness.ts';

const GROUPS = ['g1', 'g2', 'g3', 'g4', 'g5'];
const NAMES = ['n1', 'n2', 'n3'];

const fx = useEtcdFixture('netsplit');
let nodes: EtcdLeadership[] = [];
let proxies: BlackholeProxy[] = [];
let monitor: FenceMonitor | undefined;
let seq = 0;

afterEach(async () => {
  monitor?.stop();
  for (const p of proxies) p.heal();
  await Promise.all(nodes.map((n) => n.stop()));
  await Promise.all(proxies.map((p) => p.close()));
  nodes = [];
  proxies = [];
});

/** n1 reaches etcd only through proxies we can blackhole; n2 and n3 directly. */
async function startTrio(): Promise<void> {
  const prefix = `/coolctl-test/netsplit-${++seq}`;
  const base = { etcd: fx.etcd.clientOptions(), prefix, groups: GROUPS, dataRoot: `${fx.root.dir}/${seq}` };
  proxies = await Promise.all(
    fx.etcd.clientUrls.map((u) =>
      BlackholeProxy.start({ target: { host: '127.0.0.1', port: Number(new URL(u).port) } }),
    ),
  );
  nodes = [
    makeNode('n1', { ...base, etcd: fx.etcd.clientOptions(proxies.map((p) => p.address)) }),
    makeNode('n2', base),
    makeNode('n3', base),
  ];
  monitor = new FenceMonitor(GROUPS, () => nodes);
  monitor.start(2);
  await Promise.all(nodes.map((n) => n.start()));
  await waitFor('even placement', () => balanced(writers(nodes, GROUPS), NAMES), { timeoutMs: 15_000 });
}

/** Samples every 1 ms when each node stops/starts being able to write each group. */
function recordTransitions(): {
  stop: () => void;
  events: { node: string; group: string; canWrite: boolean; at: number }[];
} {
  const events: { node: string; group: string; canWrite: boolean; at: number }[] = [];
  const last = new Map<string, boolean>();
  const sample = (): void => {
    const at = performance.now();
    for (const n of nodes) {
      for (const g of GROUPS) {
        const canWrite = n.fence(g) !== null;
        const k = `${n.node}/${g}`;
        if (last.get(k) !== canWrite) {
          last.set(k, canWrite);
          events.push({ node: n.node, group: g, canWrite, at });
        }
      }
    }
  };
  const t = setInterval(sample, 1);
  return {
    stop: () => {
      clearInterval(t);
      sample(); // the last change may have happened after the last tick
    },
    events,
  };
}

describe('leadership under partitions and pauses', () => {
  it('a leader cut off from etcd is fenced before another node leads its groups', async () => {
    await startTrio();
    const n1 = nodes[0]!;
    const held = GROUPS.filter((g) => n1.fence(g));
    expect(held.length).toBeGreaterThan(0);
    const rec = recordTransitions();
    const tCut = performance.now();
    for (const p of proxies) p.blackhole();
    await waitFor('n2/n3 lead n1’s groups', () => held.every((g) => nodes.slice(1).some((n) => n.fence(g))), {
      timeoutMs: 6_000,
      intervalMs: 2,
    });
    rec.stop();
    const deadline = n1.leaseDeadlineMs; // invalidated → −∞ only on a lost lease; here it just passed
    for (const g of held) {
      const fencedAt = rec.events.find((e) => e.node === 'n1' && e.group === g && !e.canWrite)!.at;
      const takenAt = rec.events.find((e) => e.node !== 'n1' && e.group === g && e.canWrite)!.at;
      expect(fencedAt).toBeLessThan(takenAt);
      expect(fencedAt).toBeLessThanOrEqual(
        tCut + TEST_TIMING.leaseTtlS * 1000 - TEST_TIMING.safetyMarginMs + 20,
      );
      if (Number.isFinite(deadline)) expect(takenAt).toBeGreaterThan(deadline);
    }
    expect(n1.healthy).toBe(false);
    expect(monitor!.violations).toEqual([]);
    // Healed, n1 comes back and the placement evens out again.
    for (const p of proxies) p.heal();
    await waitFor('even placement after healing', () => balanced(writers(nodes, GROUPS), NAMES), {
      timeoutMs: 20_000,
    });
    expect(monitor!.violations).toEqual([]);
  });

  it('quorum loss: every leader stops by its own guard deadline; leadership returns with quorum', async () => {
    await startTrio();
    const late: string[] = [];
    // Sample every ms whether any node could write at or past its own guard deadline.
    const sample = (): void => {
      const now = performance.now();
      for (const n of nodes) {
        const writing = GROUPS.some((g) => n.fence(g) !== null);
        if (writing && now >= n.leaseDeadlineMs) late.push(`${n.node} at ${now.toFixed(0)}`);
      }
    };
    const sampler = setInterval(sample, 1);
    const tLoss = performance.now();
    try {
      await fx.etcd.kill(1, 'SIGKILL');
      await fx.etcd.kill(2, 'SIGKILL');
      // If member 0 was the raft leader it keeps renewing leases until it notices it lost quorum
      // (etcd's check-quorum, one election timeout = 500 ms here): that much longer.
      const boundMs = TEST_TIMING.leaseTtlS * 1000 + 500 + 200;
      await waitFor('nobody may write', () => GROUPS.every((g) => nodes.every((n) => n.fence(g) === null)), {
        timeoutMs: boundMs,
        intervalMs: 2,
      });
      sample();
      expect(performance.now() - tLoss).toBeLessThan(boundMs);
      expect(late).toEqual([]);
    } finally {
      clearInterval(sampler);
      await Promise.all([fx.etcd.restart(1), fx.etcd.restart(2)]);
    }
    await waitFor('every group led again', () => GROUPS.every((g) => nodes.some((n) => n.fence(g))), {
      timeoutMs: 20_000,
    });
    await waitFor('even placement', () => balanced(writers(nodes, GROUPS), NAMES), { timeoutMs: 20_000 });
    expect(monitor!.violations).toEqual([]);
  });

  it('a main event loop stuck past the stall bound: on resume fence() is null at once, before any timer or I/O ran', async () => {
    await startTrio();
    const held = GROUPS.filter((g) => nodes.some((n) => n.fence(g)));
    expect(held.length).toBe(GROUPS.length);
    // Block this thread (the main loop of all three nodes) past the stall bound (1.5 × TTL): no
    // timer, no socket. The keepalive workers run on; each gives its lease up for the stall. A
    // shorter block keeps the leases (test/cluster/main-loop-stall.test.ts); a whole-process freeze
    // is SIGSTOP (crash.test.ts).
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, TEST_TIMING.leaseTtlS * 1500 + 500);
    const afterFreeze = GROUPS.flatMap((g) => nodes.map((n) => n.fence(g))).filter((f) => f !== null);
    expect(afterFreeze).toEqual([]);
    await waitFor('leadership re-proven', () => GROUPS.every((g) => nodes.some((n) => n.fence(g))), {
      timeoutMs: 15_000,
    });
    expect(monitor!.violations).toEqual([]);
  });

  it('watches require an etcd leader: a member without one refuses them', async () => {
    await waitFor('cluster healthy', () => fx.etcd.healthy(), { timeoutMs: 15_000 });
    const key = '/coolctl-test/netsplit-watch';
    const member0 = fx.etcd.clientOptions([fx.etcd.endpoints[0]!]);
    const client = createEtcdClient({ ...member0, callTimeoutMs: 500 });
    // The control: the same watch without the metadata, from a client with the same TLS and user.
    const plain = new Etcd3({
      hosts: member0.hosts,
      ...(member0.tls
        ? {
            credentials: {
              rootCertificate: Buffer.from(member0.tls.ca),
              ...(member0.tls.cert ? { certChain: Buffer.from(member0.tls.cert) } : {}),
              ...(member0.tls.key ? { privateKey: Buffer.from(member0.tls.key) } : {}),
            },
          }
        : {}),
      ...(member0.auth ? { auth: member0.auth } : {}),
    });
    try {
      // A secured cluster signs a user in through raft: both clients sign in while there is a leader.
      await client.get(key);
      await plain.get(key);
      // Member 0 alone (1 and 2 stopped) has no raft leader once its election timeout passes.
      await fx.etcd.kill(1, 'SIGSTOP');
      await fx.etcd.kill(2, 'SIGSTOP');
      // Until its election timeout passes, member 0 still believes in its old leader; from then on
      // it must refuse a watch that requires one (a plain watch would connect and stay silent).
      const refusal = await waitFor(
        'member 0 refuses a leader-requiring watch',
        async () => {
          const w = client.watch().key(key).watcher();
          const outcome = await new Promise<string>((resolve) => {
            const t = setTimeout(() => resolve('timeout'), 1_000);
            const done = (what: unknown): void => {
              clearTimeout(t);
              resolve(String(what));
            };
            w.once('disconnected', done);
            w.once('error', done);
            w.once('connected', () => done('connected'));
          });
          void w.cancel().catch(() => {});
          return /no leader/.test(outcome) ? outcome : null;
        },
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      expect(refusal).toMatch(/no leader/);
      // Control: the same watch without the metadata connects to the leaderless member and stays silent.
      {
        const w = plain.watch().key(key).watcher();
        const outcome = await new Promise<string>((resolve) => {
          const t = setTimeout(() => resolve('timeout'), 2_000);
          w.once('connected', () => {
            clearTimeout(t);
            resolve('connected');
          });
        });
        expect(outcome).toBe('connected');
      }
    } finally {
      plain.close();
      client.close();
      await fx.etcd.kill(1, 'SIGCONT');
      await fx.etcd.kill(2, 'SIGCONT');
      await waitFor('cluster healthy again', () => fx.etcd.healthy(), { timeoutMs: 15_000 });
    }
  });
});
