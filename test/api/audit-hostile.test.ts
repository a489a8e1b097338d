// The audit trail on a real 3-member etcd against what others can do to it: anyone with etcd write
// access can put anything under `<prefix>/audit/` (values that are not JSON, fields of the wrong
// type, times past 9999 or before 1970, keys that are not made of their entry's time and node,
// values of megabytes, thousands of keys); a careless operator can paste a token where a group or
// an alarm id goes; a cluster can lose its quorum under a write, or lose a write's answer. The
// trail must still answer with the real entries (never a 500), count and log what it does not
// show (a few lines, not thousands), keep no secret, and hold each action exactly once.
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../firmware-sim/random.ts';
import type { ApiDeps } from '../../src/api/api-deps.ts';
import {
  AuditTrail,
  type AuditTrailOptions,
  MAX_ENTRY_BYTES,
  type OperatorAction,
  PRUNE_BATCH,
} from '../../src/api/audit/audit-trail.ts';
import { auditRoutes } from '../../src/api/routes/audit.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { EtcdPrefixKv } from '../../src/cluster/etcd/prefix-kv.ts';
import { useEtcdFixture } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';

const fx = useEtcdFixture('audit-hostile');
type Client = ReturnType<typeof createEtcdClient>;
const clients: Client[] = [];
const apps: FastifyInstance[] = [];
const trails: AuditTrail[] = [];
afterEach(async () => {
  for (const t of trails.splice(0)) await t.stop();
  for (const a of apps.splice(0)) await a.close();
});
afterAll(() => {
  for (const c of clients) c.close();
});

function client(callTimeoutMs = 5_000): Client {
  const c = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs });
  clients.push(c);
  return c;
}

/** A node's trail on the real etcd; what it logs is kept in `lines`. */
function node(prefix: string, opts: Partial<AuditTrailOptions> & { callTimeoutMs?: number } = {}) {
  const { callTimeoutMs = 5_000, ...rest } = opts;
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const registry = new Registry();
  const kv = new EtcdPrefixKv(client(callTimeoutMs), callTimeoutMs, { newClient: () => client() });
  const audit = new AuditTrail({ kv, prefix, logger, registry, ...rest });
  trails.push(audit);
  const unreadable = async () =>
    Number(
      /^coolctl_audit_entries_unreadable_total (\d+)$/m.exec(await registry.metrics())?.[1] ?? Number.NaN,
    );
  return { audit, kv, lines, registry, unreadable };
}

/** The audit route alone, as the API serves it (its schema serializes the answer). */
async function serve(audit: AuditTrail): Promise<FastifyInstance> {
  const app = Fastify();
  apps.push(app);
  await app.register(auditRoutes, { audit, node: 'n1' } as unknown as ApiDeps);
  return app;
}

const action = (n: number, over: Partial<OperatorAction> = {}): OperatorAction => ({
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
  node: 'n1',
  status: 200,
  error: null,
  ...over,
});

const stampKey = (atMs: number, node: string) => `${String(atMs).padStart(14, '0')}-${node}-abcdef`;
const AT = Date.UTC(2026, 11, 6, 12);

describe('audit trail against hostile values in etcd (real 3-member etcd)', () => {
  it('answers with the real entries only, counts each bad value once, logs a few lines', async () => {
    const prefix = '/coolctl-test/audit-hostile-values';
    const etcd = client();
    const put = (name: string, value: string) => etcd.put(`${prefix}/audit/${name}`).value(value);
    const { audit, lines, unreadable } = node(prefix, { maxEntries: 100, now: () => AT });
    // A flood of small junk first (oldest), 100 at a time.
    const rand = mulberry32(22);
    const junk = [
      '{',
      'null',
      '[]',
      '"x"',
      '{"wv":-1}',
      JSON.stringify({ kind: 'operator', atMs: 'soon', node: 'n9' }),
      JSON.stringify({ kind: 'role', atMs: 1e300, node: 'n9' }),
    ];
    for (let i = 0; i < 1_500; i += 100)
      await Promise.all(
        Array.from({ length: 100 }, (_, j) => put(`flood-${i + j}`, junk[Math.floor(rand() * junk.length)]!)),
      );
    await audit.record(action(1));
    const entry = (atMs: unknown, over: Record<string, unknown> = {}) =>
      JSON.stringify({ ...action(0, { user: 'mallory' }), node: 'n9', atMs, ...over });
    const hostile: [string, string][] = [
      [stampKey(AT, 'n9'), '{'],
      [`${String(AT).padStart(14, '0')}-n9-a1`, entry('abc')],
      [`${String(AT).padStart(14, '0')}-n9-a2`, entry({ $gt: 1 })],
      [`${String(AT).padStart(14, '0')}-n9-a3`, entry(true)],
      [stampKey(1e300, 'n9'), entry(1e300)],
      [stampKey(-5, 'n9'), entry(-5)],
      [stampKey(253_402_300_800_000, 'n9'), entry(253_402_300_800_000)],
      [stampKey(AT, 'n9'), entry(AT, { kind: 'evil' })],
      [`${stampKey(AT, 'n9')}1`, entry(AT, { user: { name: 'root' } })],
      [`${stampKey(AT, 'n9')}2`, entry(AT, { status: '200' })],
      [`${stampKey(AT, 'n9')}3`, entry(AT, { error: 'denied' })],
      [`${stampKey(AT, 'n9')}4`, entry(AT, { group: 7 })],
      // Keys that are not made of their entry's time and node.
      [stampKey(1_700_000_000_000, 'n9'), entry(AT)],
      [stampKey(AT, 'n1'), entry(AT)],
      // Larger than any entry, and larger than any value a record may be.
      [`${stampKey(AT, 'n9')}5`, entry(AT, { params: { blob: 'x'.repeat(MAX_ENTRY_BYTES) } })],
      [`${stampKey(AT, 'n9')}6`, entry(AT, { params: { blob: 'x'.repeat(1_400_000) } })],
    ];
    for (const [name, value] of hostile) await put(name, value);
    await audit.record(action(2));

    const app = await serve(audit);
    const get = async (query: string) => {
      const r = await app.inject({ method: 'GET', url: `/api/v1/audit${query}` });
      expect(r.statusCode, r.body.slice(0, 300)).toBe(200);
      return r.json() as { lastSeq: number; entries: (OperatorAction & { seq: number; atMs: number })[] };
    };
    const page = await get('?limit=1000');
    expect(page.entries.map((e) => [e.user, e.params, e.atMs])).toEqual([
      ['alice', { fanPct: 1 }, AT],
      ['alice', { fanPct: 2 }, AT],
    ]);
    // Every other row of the page is counted, once: reading it again counts nothing more.
    expect(await unreadable()).toBe(1_000 - 2);
    expect((await get('?limit=200')).entries).toHaveLength(2);
    await get('?limit=1000');
    expect(await unreadable()).toBe(1_000 - 2);
    // Paging by lastSeq reads nothing again: a reader past the newest row, shown or not.
    expect((await get(`?since=${page.lastSeq}`)).entries).toEqual([]);
    // A few log lines, none long, not one per value.
    const refused = lines.filter((l) => l.msg === 'audit entry in etcd cannot be read: not shown');
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.length).toBeLessThanOrEqual(5);
    expect(Math.max(...lines.map((l) => JSON.stringify(l).length))).toBeLessThan(2_000);

    // Retention over a flooded prefix: a bounded batch per prune, the newest kept.
    const count = () => etcd.getAll().prefix(`${prefix}/audit/`).count();
    const before = await count();
    await audit.prune();
    expect(await count()).toBe(before - PRUNE_BATCH);
    await audit.prune();
    expect(await count()).toBe(100);
    expect((await get('?limit=1000')).entries.map((e) => e.params)).toEqual([{ fanPct: 1 }, { fanPct: 2 }]);
  }, 120_000);

  it('keeps no token or password: not in a body, a path, a group, a target or an error message', async () => {
    const prefix = '/coolctl-test/audit-hostile-secrets';
    const { audit, lines } = node(prefix);
    const token = `cct_0123456789abcdef_${'A'.repeat(43)}`;
    // What the guard records for a token pasted where a group or an alarm id goes (404), a user made
    // with a password, and a token made (its answer, which holds the token, is never recorded).
    await audit.record(
      action(1, {
        action: 'pause',
        path: `/api/v1/groups/${token}/pause`,
        group: token,
        params: { reason: `oops ${token}` },
        status: 404,
        error: { code: 'COOLCTL_E_BAD_REQUEST', message: `unknown control group "${token}"` },
      }),
    );
    await audit.record(
      action(2, {
        action: 'ack',
        path: `/api/v1/alarms/${token}/ack`,
        group: null,
        target: token,
        params: { comment: 'x' },
        status: 404,
        error: { code: 'COOLCTL_E_BAD_REQUEST', message: `unknown alarm "${token}"` },
      }),
    );
    await audit.record(
      action(3, {
        action: 'users',
        path: '/api/v1/users',
        group: null,
        params: { name: 'bob', role: 'viewer', password: 'correct horse battery staple' },
        user: 'root',
        role: 'admin',
      }),
    );
    await audit.record(
      action(4, { action: 'tokens', path: '/api/v1/tokens', group: null, params: { label: 'ci' } }),
    );
    const stored = (await client().getAll().prefix(`${prefix}/audit/`).strings()) as Record<string, string>;
    const raw = Object.values(stored).join('\n');
    expect(Object.keys(stored)).toHaveLength(4);
    expect(raw).not.toContain(token.split('_')[2]);
    expect(raw).not.toContain('correct horse');
    expect(JSON.stringify(lines)).not.toContain(token.split('_')[2]);
    expect(JSON.stringify(lines)).not.toContain('correct horse');
    // What is kept still says who did what, where, and the answer.
    const { entries } = await audit.list();
    expect(entries).toEqual([
      expect.objectContaining({
        path: '/api/v1/groups/(secret)/pause',
        group: '(secret)',
        user: 'alice',
        role: 'operator',
        node: 'n1',
        status: 404,
        error: { code: 'COOLCTL_E_BAD_REQUEST', message: 'unknown control group "(secret)"' },
      }),
      expect.objectContaining({ target: '(secret)', path: '/api/v1/alarms/(secret)/ack' }),
      expect.objectContaining({
        params: { name: 'bob', role: 'viewer', password: '(secret)' },
        user: 'root',
        role: 'admin',
      }),
      expect.objectContaining({ params: { label: 'ci' }, status: 200 }),
    ]);
  }, 60_000);

  it('an entry written while etcd has no quorum, or whose answer was lost, is stored exactly once', async () => {
    const prefix = '/coolctl-test/audit-hostile-quorum';
    const { audit, kv, registry } = node(prefix, { callTimeoutMs: 1_000 });
    // A put that lands but whose answer is lost: the same key is written again, not a second entry.
    const realPut = kv.put.bind(kv);
    let lose = 1;
    kv.put = async (k, v) => {
      await realPut(k, v);
      if (lose-- > 0) throw new Error('etcd put: no answer within 1000 ms');
    };
    await audit.record(action(1));
    await waitFor('the entry retried', async () => /result="retried"} 1$/m.test(await registry.metrics()));
    // No quorum: two of three members down. The action's entry waits on the node.
    await fx.etcd.kill(1);
    await fx.etcd.kill(2);
    try {
      await expect(audit.record(action(2))).resolves.toBeUndefined();
      expect(await registry.metrics()).toMatch(/^coolctl_audit_entries_pending 1$/m);
    } finally {
      await Promise.all([fx.etcd.restart(1), fx.etcd.restart(2)]);
    }
    await waitFor(
      'the waiting entry stored once etcd has its quorum back',
      async () => /^coolctl_audit_entries_pending 0$/m.test(await registry.metrics()),
      { timeoutMs: 30_000 },
    );
    const stored = await client().getAll().prefix(`${prefix}/audit/`).strings();
    expect(Object.values(stored).map((v) => (JSON.parse(v) as OperatorAction).params)).toEqual([
      { fanPct: 1 },
      { fanPct: 2 },
    ]);
  }, 90_000);
});
