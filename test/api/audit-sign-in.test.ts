// Failed sign-ins in the audit trail, on a real 3-member etcd: who tried which name from where and
// how often, never the password, and never a name that is no user (people type their password into
// the name field). A guesser cannot flood etcd: one entry per name and address a minute per node,
// its count rewritten; past MAX_FAILED_SIGN_IN_KEYS of them, one entry for all the others. A
// successful sign-in and its sign-out stay operator actions under the user's name.
import cookie from '@fastify/cookie';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import type { ApiDeps } from '../../src/api/api-deps.ts';
import { type AuditEntry, MAX_FAILED_SIGN_IN_KEYS } from '../../src/api/audit/audit-trail.ts';
import { recordFirst } from '../../src/api/audit/record-first.ts';
import { guard } from '../../src/api/auth/guard.ts';
import { auditRoutes } from '../../src/api/routes/audit.ts';
import { authRoutes } from '../../src/api/routes/auth.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { EtcdPrefixKv } from '../../src/cluster/etcd/prefix-kv.ts';
import { useEtcdFixture } from '../cluster/harness.ts';
import { type ApiAuth, apiAuth, TEST_PASSWORD } from '../support/api-auth.ts';
import type { MemoryKv } from '../support/memory-kv.ts';

const fx = useEtcdFixture('audit-sign-in');
const closers: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

async function node(prefix: string): Promise<{ app: FastifyInstance; a: ApiAuth; kv: EtcdPrefixKv }> {
  const etcd = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 5_000 });
  closers.push(() => etcd.close());
  const kv = new EtcdPrefixKv(etcd, 5_000, {
    newClient: () => {
      const c = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 5_000 });
      closers.push(() => c.close());
      return c;
    },
  });
  const logger = pino({ level: 'silent' });
  const a = await apiAuth(new Registry(), logger, kv as unknown as MemoryKv, prefix);
  closers.push(() => a.auth.stop());
  const app = Fastify();
  closers.push(() => app.close());
  await app.register(cookie);
  // As ../../src/api/app.ts answers our errors: their status and stable code.
  app.setErrorHandler((err: Error & { httpStatus?: number; code?: string }, _req, reply) =>
    reply.status(err.httpStatus ?? 500).send({ error: err.code, message: err.message }),
  );
  await app.register(guard, { auth: a.auth });
  await app.register(recordFirst, { node: 'n1', audit: a.audit });
  const deps = { auth: a.auth, audit: a.audit, node: 'n1' } as unknown as ApiDeps;
  await app.register(authRoutes, deps);
  await app.register(auditRoutes, deps);
  return { app, a, kv };
}

const signIn = (app: FastifyInstance, name: string, password: string, from = '127.0.0.1') =>
  app.inject({
    method: 'POST',
    url: '/api/v1/auth/sign-in',
    remoteAddress: from,
    headers: { 'content-type': 'application/json', 'x-coolctl-request': '1' },
    payload: { name, password, as: 'token' },
  });

async function trail(app: FastifyInstance, a: ApiAuth): Promise<AuditEntry[]> {
  const r = await app.inject({ url: '/api/v1/audit?limit=1000', headers: a.as('admin') });
  expect(r.statusCode, r.body).toBe(200);
  return r.json().entries;
}

describe('sign-ins in the audit trail (real etcd)', () => {
  it('keeps who failed to sign in, from where and how often; never the password nor a non-user name', async () => {
    const { app, a } = await node('/coolctl/sign-in');
    for (let i = 0; i < 3; i++)
      expect((await signIn(app, 'operator', 'wrong password 1')).statusCode).toBe(401);
    for (let i = 0; i < 2; i++) expect((await signIn(app, 'hunter2hunter2', 'x')).statusCode).toBe(401);
    const ok = await signIn(app, 'operator', TEST_PASSWORD, '10.0.0.7');
    expect(ok.statusCode, ok.body).toBe(200);
    const out = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/sign-out',
      headers: { authorization: `Bearer ${ok.json().token}`, 'content-type': 'application/json' },
      payload: {},
    });
    expect(out.statusCode, out.body).toBe(200);

    const entries = await trail(app, a);
    expect(entries.filter((e) => e.kind === 'failed-sign-in')).toEqual([
      expect.objectContaining({
        name: 'operator',
        clientIp: '127.0.0.1',
        node: 'n1',
        count: 3,
        reason: 'wrong name or password',
      }),
      expect.objectContaining({ name: '(no such user)', clientIp: '127.0.0.1', count: 2 }),
    ]);
    expect(entries.filter((e) => e.kind === 'operator')).toEqual([
      expect.objectContaining({ action: 'sign-in', user: 'operator', clientIp: '10.0.0.7', status: 200 }),
      expect.objectContaining({ action: 'sign-out', user: 'operator', status: 200 }),
    ]);
    const text = JSON.stringify(entries);
    for (const secret of ['wrong password 1', 'hunter2hunter2', TEST_PASSWORD, ok.json().token])
      expect(text).not.toContain(secret);
  }, 60_000);

  it('a guesser from many addresses makes at most one entry per name and address, then one for the rest', async () => {
    const { app, a, kv } = await node('/coolctl/sign-in-flood');
    const tries = MAX_FAILED_SIGN_IN_KEYS + 50;
    for (let i = 0; i < tries; i++) {
      const r = await signIn(app, 'operator', `guess ${i}`, `10.1.${i >> 8}.${i & 255}`);
      expect([401, 429]).toContain(r.statusCode);
    }
    const failed = (await trail(app, a)).filter((e) => e.kind === 'failed-sign-in');
    expect(failed).toHaveLength(MAX_FAILED_SIGN_IN_KEYS + 1);
    expect(failed.at(-1)).toMatchObject({ name: '(other names)', clientIp: '(other addresses)', count: 50 });
    expect(failed.reduce((n, e) => n + (e as { count: number }).count, 0)).toBe(tries);
    // Past the per-name limit the tries are refused unchecked, and say so.
    expect(failed.filter((e) => (e as { reason: string }).reason === 'limited').length).toBeGreaterThan(0);
    expect(await kv.count('/coolctl/sign-in-flood/audit/')).toBe(MAX_FAILED_SIGN_IN_KEYS + 1);
  }, 120_000);
});
