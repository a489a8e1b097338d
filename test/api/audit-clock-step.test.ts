// Retention by age against one node's wrong clock: the cluster's nodes share one trail in etcd, and
// one node reading a month ahead, or reading 1970, must neither empty it nor drop fresh entries.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { AuditTrail, type OperatorAction } from '../../src/api/audit/audit-trail.ts';
import { quietLogger } from '../helpers.ts';
import { MemoryKv } from '../support/memory-kv.ts';

const DAY_MS = 86_400_000;
const T = Date.UTC(2026, 11, 6, 12, 0, 0);

const action = (node: string, n: number): OperatorAction => ({
  kind: 'operator',
  action: 'commands',
  method: 'POST',
  path: '/api/v1/groups/zone-1/commands',
  group: 'zone-1',
  target: null,
  params: { fanPct: n },
  user: 'alice',
  role: 'operator',
  clientIp: '127.0.0.1',
  node,
  status: 200,
  error: null,
});

/** One node's view of the shared trail, with its own clock. */
const nodeOn = (kv: MemoryKv, now: () => number) =>
  new AuditTrail({
    kv,
    prefix: '/c',
    logger: quietLogger,
    registry: new Registry(),
    pruneEvery: 1_000_000,
    now,
  });

const kept = async (t: AuditTrail) =>
  (await t.list({ limit: 1000 })).entries.map(
    (e) =>
      `${e.node}:${(e as OperatorAction).params && ((e as OperatorAction).params as { fanPct: number }).fanPct}`,
  );

describe('audit retention by age with one wrong clock', () => {
  it('a node 31 days ahead does not prune the entries the others wrote today', async () => {
    const kv = new MemoryKv();
    let now = T;
    const a = nodeOn(kv, () => now);
    const b = nodeOn(kv, () => now);
    for (let i = 0; i < 5; i++) {
      await a.record(action('node-a', i));
      await b.record(action('node-b', i));
      now += 60_000;
    }
    const ahead = nodeOn(kv, () => now + 31 * DAY_MS);
    await ahead.record(action('node-c', 0));
    await ahead.prune();
    expect(await kept(a)).toHaveLength(11);
    // The others' clocks, not node-c's, say what is a month old: a real month later it goes.
    now += 31 * DAY_MS;
    await a.record(action('node-a', 99));
    await a.prune();
    expect(await kept(a)).toEqual(['node-c:0', 'node-a:99']);
  });

  it('entries a node wrote while it read 1970 are kept as long as the ones around them', async () => {
    const kv = new MemoryKv();
    let now = T - 40 * DAY_MS;
    const a = nodeOn(kv, () => now);
    await a.record(action('node-a', 1)); // 40 days old by now: goes
    now = T - DAY_MS;
    const unset = nodeOn(kv, () => 5_000 + now - (T - DAY_MS)); // a gateway booted without its clock
    await unset.record(action('node-b', 2));
    await unset.record(action('node-b', 3));
    // While node-b's newest entry reads 1970, its vote holds age pruning back (the safe way).
    now = T;
    await a.prune();
    expect(await kept(a)).toEqual(['node-a:1', 'node-b:2', 'node-b:3']);
    // Its clock set, node-b writes again; then node-a.
    const fixed = nodeOn(kv, () => now);
    now = T - 2 * 3_600_000;
    await fixed.record(action('node-b', 5));
    now = T - 3_600_000;
    await a.record(action('node-a', 4));
    now = T;
    await a.prune();
    // Written a day ago, after node-a's entry of 40 days ago and before today's: not a month old.
    expect(await kept(a)).toEqual(['node-b:2', 'node-b:3', 'node-b:5', 'node-a:4']);
  });

  it('the count bound still holds, and age takes nothing only a wrong clock calls old', async () => {
    const kv = new MemoryKv();
    const ahead = new AuditTrail({
      kv,
      prefix: '/c',
      logger: quietLogger,
      registry: new Registry(),
      pruneEvery: 1_000_000,
      maxEntries: 3,
      now: () => T + 365 * DAY_MS,
    });
    const behind = nodeOn(kv, () => 1_000);
    for (let i = 0; i < 3; i++) {
      await ahead.record(action('node-a', i));
      await behind.record(action('node-b', i));
    }
    await ahead.prune();
    expect(await kept(ahead)).toEqual(['node-b:1', 'node-a:2', 'node-b:2']);
  });
});
