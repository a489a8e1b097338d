// A removed user's tokens stay dead when the name comes back (real etcd, nodes as separate auth
// stores). removeUser revokes the tokens the removing node knows; a session another node issued while
// the remove ran — its sign-in had checked the password against the user's record a moment before —
// or one a failed revoke left behind stays in etcd. The next user of that name (a new person, or the
// same one added again with a lower role) must not inherit it: each token names the user record it
// was issued to.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthStore } from '../../src/api/auth/auth-store.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { EtcdPrefixKv } from '../../src/cluster/etcd/prefix-kv.ts';
import { useEtcdFixture } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';

const fx = useEtcdFixture('auth-hostile-sessions');
const PREFIX = '/coolctl-test/auth-hostile-sessions';
type Client = ReturnType<typeof createEtcdClient>;
const clients: Client[] = [];
let lines: string[] = [];
const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });

beforeAll(() => {
  lines = [];
});
afterAll(() => {
  for (const c of clients) c.close();
});

async function node(): Promise<AuthStore> {
  const client = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 2000 });
  clients.push(client);
  const kv = new EtcdPrefixKv(client, 2000, {
    newClient: () => {
      const c = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 2000 });
      clients.push(c);
      return c;
    },
  });
  const store = new AuthStore({ kv, prefix: PREFIX, logger, registry: new Registry() });
  await store.start();
  return store;
}

describe('tokens of a removed user (real etcd)', () => {
  it('a session issued on a node that had not yet seen the remove does not wake up for the next user of the name', async () => {
    const a = await node();
    const b = await node();
    await a.addUser('alice', 'admin', 'first alice password');
    await waitFor('node b knows alice', async () => b.hasUser('alice'));
    // Node b's sign-in for alice has checked her password; before it writes her session, node a
    // removes her. b's view still holds alice (its watch has not delivered the delete): a stopped
    // watch makes that moment last.
    await expect(b.verify('alice', 'first alice password')).resolves.toMatchObject({ role: 'admin' });
    await b.stop();
    expect(await a.removeUser('alice')).toBe(true);
    const late = await b.issue('alice', 'session', 3_600_000);
    // Alice comes back as a viewer: the admin's old session must not act as her now.
    await a.addUser('alice', 'viewer', 'second alice password');
    const c = await node(); // a node that starts later reads it all from etcd
    await waitFor('node a has the late session', async () =>
      a.listTokens().some((t) => t.id === late.record.id),
    );
    expect(a.authenticate(late.token)).toBeNull();
    expect(c.authenticate(late.token)).toBeNull();
    // Sessions of the new alice work on every node.
    const fresh = await a.issue('alice', 'session', 3_600_000);
    await waitFor('node c knows the new session', async () => c.authenticate(fresh.token) !== null);
    expect(c.authenticate(fresh.token)).toMatchObject({ user: 'alice', role: 'viewer' });
    expect(lines.join('\n')).not.toContain(late.token.split('_')[2]!);
    expect(lines.join('\n')).not.toContain('alice password');
    await Promise.all([a.stop(), c.stop()]);
  });

  it('a node whose user is gone refuses to issue a token for it', async () => {
    const a = await node();
    await a.addUser('bob', 'operator', 'bob the operator pw');
    await a.removeUser('bob');
    await expect(a.issue('bob', 'session', 60_000)).rejects.toMatchObject({ httpStatus: 401 });
    await a.stop();
  });
});
