// Operators acting on one group through several nodes at once write one key (compare-and-swap). A
// lost race is retried after a random, growing wait; before, three tries with none made a burst of
// eight actions answer 500 "changed three times under us" while every one of them was valid.
import { describe, expect, it } from 'vitest';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { updateOperatorState } from '../../src/cluster/etcd/operator-store.ts';
import { operatorKey, parseOperatorState } from '../../src/cluster/operator-state.ts';
import { useEtcdFixture } from './harness.ts';

const fx = useEtcdFixture('operator-contention');

describe('operator state under contention', () => {
  it('16 overrides written at once through 4 clients all land, none lost', async () => {
    const clients = Array.from({ length: 4 }, () =>
      createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 5_000 }),
    );
    try {
      const units = Array.from({ length: 16 }, (_, i) => `AHU-${String(i + 1).padStart(2, '0')}`);
      const results = await Promise.allSettled(
        units.map((unit, i) =>
          updateOperatorState(
            clients[i % clients.length]!,
            '/contention',
            'g1',
            (cur) => ({
              ...cur,
              overrides: { ...cur.overrides, [unit]: { fanPct: 40 + i } },
            }),
            5_000,
          ),
        ),
      );
      expect(
        results
          .filter((r) => r.status === 'rejected')
          .map((r) => String((r as PromiseRejectedResult).reason)),
      ).toEqual([]);
      const kv = await clients[0]!.get(operatorKey('/contention', 'g1')).string();
      const stored = parseOperatorState(kv!);
      expect(Object.keys(stored!.overrides).sort()).toEqual(units);
    } finally {
      for (const c of clients) c.close();
    }
  });
});
