// A token whose issuing node is gone for good ends near its end across etcd leader changes, because
// etcd checkpoints lease TTLs (as deploy/etcd/etcd.env.example and the test cluster run it): a new
// etcd leader resumes a lease from its last checkpoint, taken every 5 minutes (fixed in etcd 3.4),
// instead of giving it its whole granted TTL again. Without checkpointing this token would live a
// whole lifetime past the last leader change; without the checkpoint persisted, as long past a move
// to a member that restarted. Long by necessity: etcd 3.4's first checkpoint comes 300 s after grant.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { AuthStore } from '../../src/api/auth/auth-store.ts';
import { EtcdTokenLeases } from '../../src/api/auth/token-leases.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { EtcdPrefixKv } from '../../src/cluster/etcd/prefix-kv.ts';
import { useEtcdFixture } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';
import { ETCD_BIN, etcdctl, freePort } from '../support/etcd-cluster.ts';

const fx = useEtcdFixture('auth-lease-checkpoint');
const PREFIX = '/coolctl-test/auth-lease-checkpoint';
const DAY_MS = 86_400_000;
/** etcd 3.4's lease checkpoint interval (lessor.defaultLeaseCheckpointInterval; no flag sets it). */
const CHECKPOINT_MS = 300_000;
/** Long enough to be checkpointed (more than 300 s left at grant), with 30 s left after the checkpoint. */
const LIFE_MS = CHECKPOINT_MS + 30_000;
type Client = ReturnType<typeof createEtcdClient>;
const clients: Client[] = [];
const stores: AuthStore[] = [];
const logger = pino({ level: 'silent' });

afterAll(async () => {
  await Promise.all(stores.map((s) => s.stop()));
  for (const c of clients) c.close();
});

function client(): Client {
  const c = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 2000 });
  clients.push(c);
  return c;
}

async function node(prefix: string, skewMs = 0): Promise<AuthStore> {
  const c = client();
  const kv = new EtcdPrefixKv(c, 2000, { newClient: client });
  const registry = new Registry();
  const leases = new EtcdTokenLeases({ client: c, callTimeoutMs: 2000, logger, registry, bucketMs: 1_000 });
  const store = new AuthStore({ kv, prefix, logger, registry, leases, now: () => Date.now() + skewMs });
  stores.push(store);
  await store.start();
  return store;
}

async function tokensInEtcd(prefix: string): Promise<number> {
  return client().getAll().prefix(`${prefix}/auth/tokens/`).count();
}

/** etcd's hex id of member `m`, as `move-leader` takes it. */
async function memberId(m: number): Promise<string> {
  const out = await fx.etcd.ctl(['member', 'list', '-w', 'simple'], { asRoot: true });
  const row = out.split('\n').find((l) => l.split(', ')[2] === `m${m}`);
  if (!row) throw new Error(`no member m${m} in:\n${out}`);
  return row.split(', ')[0]!;
}

describe('token leases across etcd leader changes, with lease checkpointing (real etcd)', () => {
  it("a gone issuer's token ends near its end after the etcd leader is killed and moved to a restarted member", async () => {
    const prefix = `${PREFIX}/gone-issuer`;
    const issuer = await node(prefix);
    const behind = await node(prefix, -DAY_MS);
    await issuer.addUser('admin', 'admin', 'correct horse battery');
    const issuedAt = performance.now();
    const s = await issuer.issue('admin', 'session', LIFE_MS);
    await waitFor('the lagging node takes the session', async () => behind.authenticate(s.token) !== null);
    // The issuing node goes for good: nothing of it revokes the lease once its end has passed.
    await issuer.stop();

    // Past the lease's first checkpoint (300 s after grant, ~30 s left, applied on every member)…
    await waitFor(
      'past the first checkpoint',
      async () => performance.now() - issuedAt > CHECKPOINT_MS + 1_500,
      { timeoutMs: CHECKPOINT_MS + 10_000, intervalMs: 500 },
    );
    // …a write, as a site always has some: a member restarting later resumes its log after it, so
    // it does not apply the checkpoint again and has it only if it was persisted…
    await client().put(`${prefix}/after-checkpoint`).value('x');
    await waitFor('the write on disk', async () => performance.now() - issuedAt > CHECKPOINT_MS + 3_000, {
      timeoutMs: 5_000,
      intervalMs: 100,
    });
    // …the etcd leader is killed (the others elect one, which resumes the lease from the
    // checkpoint), comes back, and is made leader: it has the checkpoint only if it was persisted.
    const killed = await fx.etcd.leader();
    expect(killed).not.toBeNull();
    await fx.etcd.kill(killed as number);
    await fx.etcd.restart(killed as number);
    if ((await fx.etcd.leader()) !== killed)
      await fx.etcd.ctl(['move-leader', await memberId(killed as number)], {
        asRoot: true,
        timeoutMs: 10_000,
      });
    await waitFor('the restarted member leads', async () => (await fx.etcd.leader(1_000)) === killed, {
      timeoutMs: 10_000,
    });
    const movedAt = performance.now();
    // Still before the session's end: this leader change is the one that counts.
    expect(movedAt - issuedAt).toBeLessThan(LIFE_MS - 5_000);
    expect(behind.authenticate(s.token)?.user).toBe('admin');

    await waitFor('the lagging node refuses the session', async () => behind.authenticate(s.token) === null, {
      timeoutMs: Math.round(issuedAt + LIFE_MS + 60_000 - performance.now()),
      intervalMs: 200,
    });
    const refusedAfterMs = performance.now() - issuedAt;
    expect(refusedAfterMs).toBeGreaterThanOrEqual(LIFE_MS);
    // The last leader change extended it by the time since the checkpoint, not by a whole lifetime:
    // from the move, the checkpoint's ~30 s left (+ bucket and rounding, 2 s), one election timeout,
    // etcd's expiry loop and the watch (slack 8 s). Without checkpointing, or without it persisted:
    // the move + 330 s.
    expect(performance.now() - movedAt).toBeLessThan(LIFE_MS - CHECKPOINT_MS + 2_000 + 8_000);
    expect(refusedAfterMs).toBeLessThan(LIFE_MS + 60_000);
    expect(await tokensInEtcd(prefix)).toBe(0);
  }, 420_000);
});

describe('deploy/etcd/etcd.env.example', () => {
  it('turns lease checkpointing on, persisted, and the installed etcd takes every setting in it', async () => {
    const text = await readFile(new URL('../../deploy/etcd/etcd.env.example', import.meta.url), 'utf8');
    const env = Object.fromEntries(
      [...text.matchAll(/^(ETCD_[A-Z0-9_]+)="([^"]*)"/gm)].map((m) => [m[1]!, m[2]!] as const),
    );
    expect(env.ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT).toBe('true');
    expect(env.ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT_PERSIST).toBe('true');
    // One member on loopback: the example's addresses and data dir replaced, every other setting kept.
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-etcd-env-'));
    const [client, peer] = [await freePort(), await freePort()];
    const loopback = {
      ETCD_DATA_DIR: join(dir, 'data'),
      ETCD_LISTEN_PEER_URLS: `http://127.0.0.1:${peer}`,
      ETCD_INITIAL_ADVERTISE_PEER_URLS: `http://127.0.0.1:${peer}`,
      ETCD_LISTEN_CLIENT_URLS: `http://127.0.0.1:${client}`,
      ETCD_ADVERTISE_CLIENT_URLS: `http://127.0.0.1:${client}`,
      ETCD_INITIAL_CLUSTER: `${env.ETCD_NAME}=http://127.0.0.1:${peer}`,
    };
    let log = '';
    const proc = spawn(ETCD_BIN, [], { env: { PATH: process.env.PATH, ...env, ...loopback } });
    proc.stderr.on('data', (b: Buffer) => {
      log += b.toString();
    });
    try {
      await waitFor(
        'the example etcd serves',
        // etcdctl tells health on stderr: it succeeding is the answer.
        () => etcdctl([`127.0.0.1:${client}`], ['endpoint', 'health']).then(() => true),
        {
          timeoutMs: 20_000,
          intervalMs: 200,
        },
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${log.slice(-2_000)}`);
      });
      // etcd ignores a variable it does not know (a typo, or a setting of a later release), with a warning.
      expect(log).not.toContain('unrecognized environment variable');
      for (const name of Object.keys(env))
        expect(log).toContain(`recognized and used environment variable ${name}=`);
    } finally {
      proc.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
