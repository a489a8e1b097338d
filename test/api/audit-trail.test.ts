// The audit trail keeps its retention (the newest maxEntries, nothing older than maxAgeMs; what it
// prunes is counted), pages by seq (the store's revision), keeps no request body too big to be an
// operator action, and never a secret. An entry the store does not take waits for a later try
// (bounded; what is never stored is counted dropped). On the PrefixKv contract in memory; the etcd side runs in
// test/api/auth-cluster.test.ts.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  AuditTrail,
  MAX_PARAMS_CHARS,
  MAX_PENDING,
  type OperatorAction,
} from '../../src/api/audit/audit-trail.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { MemoryKv } from '../support/memory-kv.ts';

const action = (n: number, params: unknown = { fanPct: n }): OperatorAction => ({
  kind: 'operator',
  action: 'commands',
  method: 'POST',
  path: '/api/v1/groups/zone-1/commands',
  group: 'zone-1',
  target: null,
  params,
  user: 'alice',
  role: 'operator',
  clientIp: '127.0.0.1',
  node: 'n1',
  status: 200,
  error: null,
});

function trail(
  opts: { maxEntries?: number; maxAgeMs?: number; pruneEvery?: number; now?: () => number } = {},
) {
  const kv = new MemoryKv();
  const registry = new Registry();
  return { kv, registry, t: new AuditTrail({ kv, prefix: '/c', logger: quietLogger, registry, ...opts }) };
}

describe('AuditTrail', () => {
  it('keeps the newest maxEntries, oldest first, and counts what it pruned', async () => {
    const { t, kv, registry } = trail({ maxEntries: 3, pruneEvery: 5 });
    for (let i = 1; i <= 5; i++) await t.record(action(i));
    await t.prune();
    const { entries } = await t.list();
    expect(entries.map((e) => (e as OperatorAction).params)).toEqual([
      { fanPct: 3 },
      { fanPct: 4 },
      { fanPct: 5 },
    ]);
    expect(await kv.count('/c/audit/')).toBe(3);
    expect(await registry.getSingleMetricAsString('coolctl_audit_pruned_total')).toMatch(/ 2$/m);
  });

  it('drops entries older than maxAgeMs', async () => {
    let now = 1_000_000;
    const { t } = trail({ maxAgeMs: 60_000, now: () => now });
    await t.record(action(1));
    now += 120_000;
    await t.record(action(2));
    await t.prune();
    expect((await t.list()).entries.map((e) => (e as OperatorAction).params)).toEqual([{ fanPct: 2 }]);
  });

  it('pages by seq and limit', async () => {
    const { t } = trail();
    for (let i = 1; i <= 5; i++) await t.record(action(i));
    const all = (await t.list()).entries.map((e) => e.seq);
    expect(all).toHaveLength(5);
    expect((await t.list({ since: all[2]! })).entries.map((e) => e.seq)).toEqual(all.slice(3));
    expect((await t.list({ limit: 2 })).entries.map((e) => e.seq)).toEqual(all.slice(3));
    expect((await t.list({ since: all[4]! })).lastSeq).toBe(all[4]);
  });

  it('keeps a request body only when it is small enough, never a secret', async () => {
    const { t } = trail();
    await t.record(action(1, { blob: 'x'.repeat(MAX_PARAMS_CHARS + 1) }));
    await t.record(action(2, { name: 'bob', password: 'hunter2hunter2' }));
    const [big, user] = (await t.list()).entries as OperatorAction[];
    expect(big!.params).toBeNull();
    expect(user!.params).toEqual({ name: 'bob', password: '(secret)' });
  });

  it('a store that fails loses no request: the entry waits and is written by a later try', async () => {
    const { t, kv, registry } = trail();
    const put = kv.put.bind(kv);
    let down = true;
    kv.put = async (k, v) => {
      if (down) throw new Error('etcd down');
      return put(k, v);
    };
    await expect(t.record(action(1))).resolves.toBeUndefined();
    await t.record(action(2));
    const metrics = () => registry.metrics();
    expect(await metrics()).toMatch(/coolctl_audit_entries_total\{kind="operator",result="failed"} 2/);
    expect(await metrics()).toMatch(/coolctl_audit_entries_pending 2/);
    down = false;
    await waitFor('both entries stored on a later try', async () => (await t.list()).entries.length === 2);
    expect((await t.list()).entries.map((e) => (e as OperatorAction).params)).toEqual([
      { fanPct: 1 },
      { fanPct: 2 },
    ]);
    expect(await metrics()).toMatch(/coolctl_audit_entries_total\{kind="operator",result="retried"} 2/);
    expect(await metrics()).toMatch(/coolctl_audit_entries_pending 0/);
    await t.stop();
  });

  it('at stop, what etcd still does not take is counted dropped; beyond the bound, the oldest is', async () => {
    const { t, kv, registry } = trail();
    let tries = 0;
    kv.put = async () => {
      tries++;
      throw new Error('etcd down');
    };
    for (let i = 1; i <= MAX_PENDING + 1; i++) await t.record(action(i));
    expect(await registry.metrics()).toMatch(/result="dropped"} 1\n/);
    expect(await registry.metrics()).toMatch(new RegExp(`coolctl_audit_entries_pending ${MAX_PENDING}\\n`));
    const before = tries;
    await t.stop();
    expect(tries).toBe(before + 1); // one last try at stop, which stops at the first failure
    expect(await registry.metrics()).toMatch(new RegExp(`result="dropped"} ${MAX_PENDING + 1}\\n`));
    expect(await registry.metrics()).toMatch(/coolctl_audit_entries_pending 0\n/);
    await t.record(action(0));
    expect(await registry.metrics()).toMatch(new RegExp(`result="dropped"} ${MAX_PENDING + 2}\\n`));
  });
});
