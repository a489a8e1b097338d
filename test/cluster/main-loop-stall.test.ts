// The lease is kept alive off the main event loop: a leader whose main thread is blocked (a huge
// message parsed, a GC storm) for longer than TTL − margin keeps its lease and its groups, because
// the keepalive worker renews on its own loop; a main thread stuck past the stall bound loses the
// lease (the worker revokes it) so another node leads. Real etcd; the other node is a process of its own.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';
import { ChildNode } from './child-node.ts';
import { makeNode, type RecordedChange, TEST_TIMING, useEtcdFixture } from './harness.ts';

const GROUPS = ['g1'];
const fx = useEtcdFixture('main-loop-stall');
let child: ChildNode | undefined;
let leader: EtcdLeadership | undefined;
let seq = 0;

afterEach(async () => {
  await child?.kill();
  child = undefined;
  await leader?.stop();
  leader = undefined;
});

/** Blocks this thread (and every in-process node's main loop) for `ms`, as a long synchronous job does. */
function blockMainThread(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy: nothing else on this loop runs
  }
}

/** n1 in this process leads g1; n2, in a child process, is next in line. */
async function startPair(): Promise<{ changes: RecordedChange[]; logs: { msg: string; reason?: string }[] }> {
  const prefix = `/coolctl-test/stall-${++seq}`;
  const base = { etcd: fx.etcd.clientOptions(), prefix, groups: GROUPS, dataRoot: `${fx.root.dir}/${seq}` };
  const changes: RecordedChange[] = [];
  const logs: { msg: string; reason?: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  leader = makeNode('n1', base, { logger: pino({ level: 'info' }, sink) }, changes);
  await leader.start();
  await waitFor('n1 leads g1', () => leader!.fence('g1'), { timeoutMs: 10_000 });
  child = new ChildNode({
    node: 'n2',
    apiUrl: 'http://n2.test',
    groups: GROUPS,
    etcd: fx.etcd.clientOptions(),
    prefix,
    dataDir: `${base.dataRoot}/n2`,
    ...TEST_TIMING,
  });
  await child.ready();
  await waitFor('n2 is a candidate behind n1', () =>
    child!.lines.some((l) => l.ev === 'role' && l.group === 'g1' && l.to === 'candidate'),
  );
  return { changes, logs };
}

describe('a blocked main event loop', () => {
  it('blocked longer than TTL − margin but within the stall bound: keeps its lease and its group', async () => {
    const { changes } = await startPair();
    const ttlMs = TEST_TIMING.leaseTtlS * 1000;
    const epoch = leader!.fence('g1')!.epoch;
    // 2.2 s > TTL (2 s) > TTL − margin (1.6 s), < the default stall bound (1.5 × TTL = 3 s).
    blockMainThread(ttlMs + 200);
    // Synchronously, before any callback of this loop ran: the worker kept the deadline moving.
    expect(leader!.fence('g1')?.epoch).toBe(epoch);
    // A few keepalive rounds later, still the leader with the same term, and n2 never led.
    const deadlineAfter = leader!.leaseDeadlineMs;
    await waitFor(
      'the deadline moves on',
      () => leader!.leaseDeadlineMs > deadlineAfter + 2 * TEST_TIMING.keepaliveIntervalMs,
    );
    expect(leader!.fence('g1')?.epoch).toBe(epoch);
    expect(changes.filter((c) => c.group === 'g1' && c.from === 'leader')).toEqual([]);
    expect(child!.writable().size).toBe(0);
  });

  it('stuck past the stall bound: the lease is lost and the other node leads', async () => {
    const { changes, logs } = await startPair();
    blockMainThread(4_000); // > the 3 s stall bound
    // The worker revoked the lease and invalidated the shared deadline while this thread was stuck.
    expect(leader!.fence('g1')).toBeNull();
    await waitFor('n2 leads g1', () => child!.writable().has('g1'), { timeoutMs: 5_000 });
    await waitFor('n1 left the leader role', () =>
      changes.some((c) => c.group === 'g1' && c.from === 'leader'),
    );
    // …and its log says why: the worker gave the lease up for the stall, not etcd.
    await waitFor('the stall is logged', () =>
      logs.some((l) => l.msg === 'lease lost' && /main event loop stalled/.test(l.reason ?? '')),
    );
  });
});
