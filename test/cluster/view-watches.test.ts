// The view's watches when etcd cancels them: watches from a revision etcd has compacted away are
// cancelled (events may be lost), each says so once with its sub-prefix and asks for a full load;
// the watches of the next load bring every event, and a cancelled generation never speaks again.
// Real 3-member etcd.
import { afterEach, describe, expect, it } from 'vitest';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { ViewWatches } from '../../src/cluster/etcd/view-watches.ts';
import type { WatchEvent } from '../../src/cluster/etcd/watched-view.ts';
import { waitFor } from '../helpers.ts';
import { captureLogs } from '../support/log-lines.ts';
import { TEST_TIMING, useEtcdFixture } from './harness.ts';

const PREFIX = '/coolctl-test/view-watches';
const fx = useEtcdFixture('view-watches');
const cleanups: (() => void)[] = [];

afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

describe('view watches', () => {
  it('watches etcd cancels (compacted revision) ask for a full load; the next load watches on', async () => {
    const client = createEtcdClient({
      ...fx.etcd.clientOptions(),
      callTimeoutMs: TEST_TIMING.etcdCallTimeoutMs,
    });
    cleanups.push(() => client.close());
    for (let i = 0; i < 3; i++) await client.put(`${PREFIX}/members/old`).value(String(i)).exec();
    const compactedAt = Number((await client.kv.range({ key: Buffer.from(`${PREFIX}/`) })).header.revision);
    await client.kv.compact({ revision: String(compactedAt), physical: true });

    const logs = captureLogs();
    const events: WatchEvent[] = [];
    let cancelled = 0;
    let connected = 0;
    const watches = new ViewWatches({
      etcd: fx.etcd.clientOptions(),
      prefix: PREFIX,
      callTimeoutMs: TEST_TIMING.etcdCallTimeoutMs,
      logger: logs.logger,
      now: () => performance.now(),
      stopping: () => false,
      onEvents: (e) => events.push(...e),
      onConnected: () => connected++,
      onDisconnected: () => {},
      onCancelled: () => cancelled++,
      onSilent: () => {},
      onReplaced: () => {},
    });
    cleanups.push(() => watches.close());

    // A load read before the compaction: its watches start where etcd has nothing left.
    watches.start(compactedAt - 2);
    await waitFor('every sub-prefix watch cancelled', () => cancelled === 4);
    const said = logs.parsed().filter((l) => l.msg === 'watch cancelled by etcd; loading the view again');
    expect(said.map((l) => l.watch).sort()).toEqual(['election', 'handover', 'members', 'operator']);
    expect(said.every((l) => l.level === 40)).toBe(true);
    expect(events).toEqual([]);

    // The load that follows: its watches confirm and bring what happens next.
    const connectedBefore = connected;
    watches.start(compactedAt + 1);
    await waitFor('the new watches confirmed', () => connected - connectedBefore >= 4, { timeoutMs: 5_000 });
    await client.put(`${PREFIX}/election/g1/abc`).value('n1').exec();
    await client.put(`${PREFIX}/elsewhere/k`).value('x').exec();
    await waitFor('the election key seen', () => events.some((e) => e.kv.key.toString().endsWith('/g1/abc')));
    expect(events.map((e) => `${e.type} ${e.kv.key.toString()}`)).toEqual([`Put ${PREFIX}/election/g1/abc`]);
    expect(cancelled).toBe(4);
  }, 30_000);
});
