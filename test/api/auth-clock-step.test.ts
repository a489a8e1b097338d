// Sessions and tokens when one node's wall clock is wrong: a node that starts with its clock a day
// ahead (NTP stepped it, or a gateway without a clock battery booted with a bad date) refuses what
// has expired by its clock, but deletes nothing from the cluster for it — every other node keeps
// signing everybody in. Two auth stores over one store of keys stand for two nodes.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { AuthStore, TOKEN_PRUNE_GRACE_MS } from '../../src/api/auth/auth-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { MemoryKv } from '../support/memory-kv.ts';

const PREFIX = '/coolctl/auth-clock';
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

function nodeStore(kv: MemoryKv, now: () => number): AuthStore {
  return new AuthStore({ kv, prefix: PREFIX, logger: quietLogger, registry: new Registry(), now });
}

describe('auth through a wrong wall clock', () => {
  it('a node a day ahead signs nobody out of the other nodes', async () => {
    const kv = new MemoryKv();
    const wall = Date.now();
    const right = nodeStore(kv, () => wall);
    await right.start();
    await right.addUser('admin', 'admin', 'correct horse battery');
    const session = await right.issue('admin', 'session', 8 * HOUR_MS);
    const grafana = await right.issue('admin', 'token', 2 * HOUR_MS, 'grafana');
    const ci = await right.issue('admin', 'token', 30 * DAY_MS, 'ci');

    const ahead = nodeStore(kv, () => wall + DAY_MS);
    await ahead.start();
    // By its own clock the session and the short token have run out, and it says so…
    expect(ahead.authenticate(session.token)).toBeNull();
    expect(ahead.authenticate(grafana.token)).toBeNull();
    expect(ahead.authenticate(ci.token)?.user).toBe('admin');
    // …but every record is still in etcd, and the node with the right clock takes them all.
    expect(await kv.count(`${PREFIX}/auth/tokens/`)).toBe(3);
    for (const t of [session, grafana, ci]) expect(right.authenticate(t.token)?.user).toBe('admin');
    await right.stop();
    await ahead.stop();
  });

  it('a token expired for longer than the grace is deleted for good', async () => {
    const kv = new MemoryKv();
    let wall = Date.now();
    const a = nodeStore(kv, () => wall);
    await a.start();
    await a.addUser('admin', 'admin', 'correct horse battery');
    const old = await a.issue('admin', 'token', HOUR_MS, 'old');
    const kept = await a.issue('admin', 'token', 30 * DAY_MS, 'kept');
    await a.stop();
    wall += HOUR_MS + TOKEN_PRUNE_GRACE_MS;
    const b = nodeStore(kv, () => wall);
    await b.start();
    await waitFor('the old token deleted', async () => (await kv.count(`${PREFIX}/auth/tokens/`)) === 1);
    expect(b.listTokens().map((t) => t.id)).toEqual([kept.record.id]);
    expect(b.authenticate(old.token)).toBeNull();
    await b.stop();
  });
});
