// A token's end does not hang on the clock of the node a client talks to (real etcd, nodes as
// separate auth stores with their own injected wall clocks). Each token record is bound to an etcd
// lease: when it ends, etcd deletes the record and every node's watch drops it — so a node whose
// clock is a day behind refuses the token within seconds of its end, not a day later, and a node
// issuing with a clock a day ahead cannot make a token outlive its lifetime. Revoking one token
// leaves the others of its (shared) lease alone, and a lease whose TTL an etcd leader change reset
// is revoked by the node that granted it once its end has passed.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { AuthStore } from '../../src/api/auth/auth-store.ts';
import { EtcdTokenLeases } from '../../src/api/auth/token-leases.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { EtcdPrefixKv } from '../../src/cluster/etcd/prefix-kv.ts';
import { useEtcdFixture } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';

const fx = useEtcdFixture('auth-lease-expiry');
const PREFIX = '/coolctl-test/auth-lease-expiry';
const DAY_MS = 86_400_000;
/** Short buckets and sweeps, so a test waits seconds rather than minutes. */
const BUCKET_MS = 1_000;
type Client = ReturnType<typeof createEtcdClient>;
const clients: Client[] = [];
const stores: AuthStore[] = [];
const lines: string[] = [];
const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });

afterAll(async () => {
  await Promise.all(stores.map((s) => s.stop()));
  for (const c of clients) c.close();
});

function client(): Client {
  const c = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 2000 });
  clients.push(c);
  return c;
}

/** A node whose wall clock is `skewMs` off; its registry, to read its counters. */
async function node(prefix: string, skewMs = 0): Promise<{ store: AuthStore; registry: Registry }> {
  const c = client();
  const kv = new EtcdPrefixKv(c, 2000, { newClient: client });
  const registry = new Registry();
  const leases = new EtcdTokenLeases({
    client: c,
    callTimeoutMs: 2000,
    logger,
    registry,
    bucketMs: BUCKET_MS,
  });
  const store = new AuthStore({ kv, prefix, logger, registry, leases, now: () => Date.now() + skewMs });
  stores.push(store);
  await store.start();
  return { store, registry };
}

async function tokensInEtcd(prefix: string): Promise<number> {
  return client().getAll().prefix(`${prefix}/auth/tokens/`).count();
}

async function endedBy(registry: Registry, by: 'etcd' | 'node'): Promise<number> {
  const m = await registry.getSingleMetric('coolctl_auth_token_leases_ended_total')?.get();
  return m?.values.find((v) => v.labels.by === by)?.value ?? 0;
}

describe('token expiry on etcd’s clock (real etcd)', () => {
  it('a node a day behind refuses a token once its lease has ended in etcd', async () => {
    const prefix = `${PREFIX}/behind`;
    const { store: right } = await node(prefix);
    const { store: behind } = await node(prefix, -DAY_MS);
    await right.addUser('admin', 'admin', 'correct horse battery');
    await waitFor('the lagging node knows admin', async () => behind.hasUser('admin'));
    const issuedAt = performance.now();
    const s = await right.issue('admin', 'session', 3_000);
    await waitFor('the lagging node takes the session', async () => behind.authenticate(s.token) !== null);
    // Until its end it works on both nodes…
    expect(right.authenticate(s.token)?.user).toBe('admin');
    // …and after it, the lagging node — whose own clock says it has a day left — refuses it too.
    await waitFor(
      'the lagging node refuses the expired session',
      async () => behind.authenticate(s.token) === null,
      {
        timeoutMs: 15_000,
      },
    );
    const refusedAfterMs = performance.now() - issuedAt;
    expect(refusedAfterMs).toBeGreaterThanOrEqual(3_000);
    // Bound: TTL + one bucket + the TTL's rounding + etcd's expiry loop and the watch.
    expect(refusedAfterMs).toBeLessThan(3_000 + BUCKET_MS + 1_000 + 3_000);
    expect(await tokensInEtcd(prefix)).toBe(0);
    expect(right.authenticate(s.token)).toBeNull();
  });

  it('a node issuing with its clock a day ahead cannot make a token outlive its lifetime', async () => {
    const prefix = `${PREFIX}/ahead`;
    const { store: ahead } = await node(prefix, DAY_MS);
    const { store: right } = await node(prefix);
    await ahead.addUser('admin', 'admin', 'correct horse battery');
    const t = await ahead.issue('admin', 'token', 3_000, 'ci');
    // Its record says it expires a day and 3 s from now by a right clock…
    expect(t.record.expiresAtMs).toBeGreaterThan(Date.now() + DAY_MS);
    await waitFor(
      'the right node knows admin and the token',
      async () => right.authenticate(t.token) !== null,
    );
    // …but the lease ends it 3 s after issue, on every node.
    await waitFor('the right node refuses it', async () => right.authenticate(t.token) === null, {
      timeoutMs: 15_000,
    });
    expect(await tokensInEtcd(prefix)).toBe(0);
  });

  it('revoking a token ends it on a lagging node and leaves the others of its lease alone', async () => {
    const prefix = `${PREFIX}/revoke`;
    const { store: right } = await node(prefix);
    const { store: behind } = await node(prefix, -DAY_MS);
    await right.addUser('admin', 'admin', 'correct horse battery');
    // One bucket: both tokens share a lease.
    const [gone, kept] = await Promise.all([
      right.issue('admin', 'token', 3_600_000, 'gone'),
      right.issue('admin', 'token', 3_600_000, 'kept'),
    ]);
    await waitFor('the lagging node takes both', async () =>
      [gone, kept].every((t) => behind.authenticate(t.token) !== null),
    );
    expect(await right.revoke(gone.record.id)).toBe(true);
    await waitFor(
      'the lagging node refuses the revoked token',
      async () => behind.authenticate(gone.token) === null,
    );
    expect(behind.authenticate(kept.token)?.user).toBe('admin');
    expect(await tokensInEtcd(prefix)).toBe(1);
    // A revoke on the lagging node reaches the others the same way.
    expect(await behind.revoke(kept.record.id)).toBe(true);
    await waitFor('the right node refuses it', async () => right.authenticate(kept.token) === null);
  });

  it('a lease whose TTL an etcd leader change reset is revoked by the node that granted it', async () => {
    const prefix = `${PREFIX}/leader-change`;
    const { store: right, registry } = await node(prefix);
    const { store: behind } = await node(prefix, -DAY_MS);
    await right.addUser('admin', 'admin', 'correct horse battery');
    const ttlMs = 8_000;
    const issuedAt = performance.now();
    const s = await right.issue('admin', 'session', ttlMs);
    await waitFor('the lagging node takes the session', async () => behind.authenticate(s.token) !== null);
    // Late in the session's life the etcd leader goes: the new leader gives every lease its whole
    // TTL again (etcd's lease checkpointing is off), so etcd alone would keep it ~8 s more.
    await waitFor('6 s into the session', async () => performance.now() - issuedAt > 6_000, {
      timeoutMs: 10_000,
      intervalMs: 100,
    });
    const leader = await fx.etcd.leader();
    expect(leader).not.toBeNull();
    await fx.etcd.kill(leader as number);
    try {
      await waitFor(
        'the lagging node refuses the session',
        async () => behind.authenticate(s.token) === null,
        {
          timeoutMs: 20_000,
        },
      );
      const refusedAfterMs = performance.now() - issuedAt;
      // Ended by the issuing node: TTL + a bucket + 1 s rounding + 2 s late + one sweep + slack,
      // well before the reset lease's end (kill time + 8 s and more).
      expect(refusedAfterMs).toBeLessThan(ttlMs + BUCKET_MS + 1_000 + 2_000 + BUCKET_MS + 1_500);
      expect(await endedBy(registry, 'node')).toBe(1);
      expect(lines.join('\n')).toContain('token lease outlived its end in etcd');
    } finally {
      await fx.etcd.restart(leader as number);
    }
  });
});
