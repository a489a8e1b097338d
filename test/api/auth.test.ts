// Who may steer: every state-changing route of the app (taken from its own OpenAPI description, so
// a new route nobody listed here fails the test) answers 401 without credentials and 403 below its
// role, and at its role does the work and lands in the audit trail with the authenticated user.
// A cross-site form post carrying the session cookie is refused; sign-in never says whether a user
// exists and is rate-limited; a revoked token stops working on every node; junk is not stored.
import { chmod, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { alarmId, conditionKey } from '../../src/alarms/alarm.ts';
import { buildApp } from '../../src/api/app.ts';
import { AuthStore } from '../../src/api/auth/auth-store.ts';
import { parseToken } from '../../src/api/auth/credentials.ts';
import { ROLES, type Role } from '../../src/api/auth/roles.ts';
import { loadSite } from '../../src/config/load-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { apiAuth, TEST_PASSWORD } from '../support/api-auth.ts';
import { FakeCluster, type FakeNode, fakeNode } from '../support/fake-cluster.ts';
import { MemoryKv } from '../support/memory-kv.ts';

const site: Site = await loadSite('config/demo-site.yaml');
const open: FakeNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
});

async function cluster(nodes = ['node-a']) {
  const c = new FakeCluster({ 'zone-1': ['node-a', 41], 'zone-2': ['node-b', 57], 'zone-3': [null, null] });
  c.alarms.raise('unit-tripped', 'zone-1', AHU, `unit ${AHU} tripped`, { atMs: ALARM_AT_MS });
  c.members.push(
    { node: 'node-a', apiUrl: 'http://127.0.0.1:8101', startedAtMs: 1 },
    { node: 'node-b', apiUrl: 'http://127.0.0.1:8102', startedAtMs: 2 },
  );
  const out: FakeNode[] = [];
  for (const n of nodes) out.push(await fakeNode(c, n, site, []));
  open.push(...out);
  return { c, nodes: out };
}

const AHU = 'AHU-01';
const ALARM_AT_MS = 1_764_800_000_000;
const ALARM = alarmId(conditionKey('unit-tripped', 'zone-1', AHU), ALARM_AT_MS);
/** Every state-changing route, its least role and a request that does its work. */
const CHANGING: Record<string, { role: Role | 'public'; body?: object; params?: Record<string, string> }> = {
  'POST /api/v1/groups/{id}/commands': { role: 'operator', body: { ahu: AHU, fanPct: 40 } },
  'POST /api/v1/groups/{id}/switchover': { role: 'operator', body: { to: 'node-b' } },
  'POST /api/v1/groups/{id}/pause': { role: 'operator', body: { reason: 'filter change' } },
  'POST /api/v1/groups/{id}/resume': { role: 'operator' },
  'PUT /api/v1/groups/{id}/overrides/{ahu}': { role: 'operator', body: { fanPct: 50 } },
  'DELETE /api/v1/groups/{id}/overrides/{ahu}': { role: 'operator' },
  'POST /api/v1/auth/sign-in': {
    role: 'public',
    body: { name: 'viewer', password: TEST_PASSWORD, as: 'token' },
  },
  'POST /api/v1/auth/sign-out': { role: 'viewer' },
  'POST /api/v1/users': {
    role: 'admin',
    body: { name: 'newbie', role: 'viewer', password: 'a long enough secret' },
  },
  'DELETE /api/v1/users/{name}': { role: 'admin', params: { name: 'newbie' } },
  'POST /api/v1/tokens': { role: 'admin', body: { label: 'grafana', user: 'viewer' } },
  'DELETE /api/v1/tokens/{tokenId}': { role: 'admin' },
  'POST /api/v1/alarms/{alarm}/ack': {
    role: 'operator',
    body: { comment: 'on it' },
    params: { alarm: ALARM },
  },
  'POST /api/v1/alarms/{alarm}/shelve': {
    role: 'operator',
    body: { durationS: 3600, comment: 'filter change' },
    params: { alarm: ALARM },
  },
  'POST /api/v1/alarms/{alarm}/unshelve': { role: 'operator', params: { alarm: ALARM } },
};

function urlOf(path: string, params: Record<string, string>): string {
  return path.replace(/\{(\w+)\}/g, (_, k: string) => params[k] ?? 'x');
}

describe('API identity and roles', () => {
  it('every state-changing route: 401 without credentials, 403 below its role, done and audited at it', async () => {
    const { nodes } = await cluster();
    const a = nodes[0]!;
    const spec = (await a.app.inject('/openapi.json')).json() as {
      paths: Record<string, Record<string, unknown>>;
    };
    const changing = Object.entries(spec.paths).flatMap(([path, ops]) =>
      Object.keys(ops)
        .filter((m) => ['post', 'put', 'delete', 'patch'].includes(m))
        .map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect([...changing].sort()).toEqual(Object.keys(CHANGING).sort());
    for (const route of Object.keys(CHANGING)) {
      const spec = CHANGING[route]!;
      const [method, path] = route.split(' ') as [string, string];
      // A token to revoke, made fresh for the route that revokes one.
      const spare = (await a.auth.auth.issue('viewer', 'token', 60_000, 'spare')).record.id;
      const url = urlOf(path, { id: 'zone-1', ahu: AHU, tokenId: spare, ...spec.params });
      const send = (headers: Record<string, string>) =>
        a.app.inject({
          method: method as 'POST',
          url,
          headers: { ...headers, ...(spec.body ? { 'content-type': 'application/json' } : {}) },
          ...(spec.body ? { payload: JSON.stringify(spec.body) } : {}),
        });
      if (spec.role !== 'public') {
        const none = await send({ authorization: '' });
        expect(none.statusCode, `${route} without credentials`).toBe(401);
        expect(none.json().error).toBe('COOLCTL_E_UNAUTHENTICATED');
        for (const below of ROLES.slice(0, ROLES.indexOf(spec.role))) {
          const r = await send({ authorization: `Bearer ${a.auth.tokens[below]}` });
          expect(r.statusCode, `${route} as ${below}`).toBe(403);
          expect(r.json().error).toBe('COOLCTL_E_FORBIDDEN');
        }
      }
      const role: Role = spec.role === 'public' ? 'viewer' : spec.role;
      // sign-out ends the session it is sent with: give it one of its own.
      const token =
        route === 'POST /api/v1/auth/sign-out'
          ? (await a.auth.auth.issue('viewer', 'session', 60_000)).token
          : a.auth.tokens[role];
      const before = (await a.audit.list({ limit: 1000 })).entries.length;
      const done = await send(
        spec.role === 'public'
          ? { authorization: '', 'x-coolctl-request': '1' }
          : { authorization: `Bearer ${token}` },
      );
      expect(done.statusCode, `${route} as ${role}: ${done.body}`).toBeLessThan(300);
      const entries = (await a.audit.list({ limit: 1000 })).entries;
      expect(entries.length, `${route} audited`).toBe(before + 1);
      expect(entries.at(-1)).toMatchObject({
        kind: 'operator',
        method,
        path: url,
        user: role,
        node: 'node-a',
        status: done.statusCode,
      });
      expect(JSON.stringify(entries.at(-1))).not.toContain(TEST_PASSWORD);
    }
  });

  it('refuses a cross-site form post that carries the session cookie, and a body-less one without the header', async () => {
    const { c, nodes } = await cluster();
    const a = nodes[0]!;
    const signIn = await a.app.inject({
      method: 'POST',
      url: '/api/v1/auth/sign-in',
      headers: { authorization: '', 'content-type': 'application/json', 'x-coolctl-request': '1' },
      payload: JSON.stringify({ name: 'operator', password: TEST_PASSWORD }),
    });
    expect(signIn.statusCode).toBe(200);
    const setCookie = String(signIn.headers['set-cookie']);
    expect(setCookie).toMatch(/coolctl_session=cct_/);
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).not.toMatch(/Secure/); // no TLS in this test
    const cookie = setCookie.split(';')[0]!;
    await a.app.inject({
      method: 'POST',
      url: '/api/v1/groups/zone-1/pause',
      payload: { reason: 'set up' },
    });
    const before = (await a.audit.list()).entries.length;
    // What a page on another site can make a browser send: a form (urlencoded), with the cookie.
    const form = await a.app.inject({
      method: 'POST',
      url: '/api/v1/groups/zone-1/resume',
      headers: {
        authorization: '',
        cookie,
        'content-type': 'application/x-www-form-urlencoded',
        origin: 'http://evil.example',
      },
      payload: 'x=1',
    });
    expect(form.statusCode).toBe(415);
    expect(form.json().error).toBe('COOLCTL_E_CROSS_SITE');
    const bare = await a.app.inject({
      method: 'POST',
      url: '/api/v1/groups/zone-1/resume',
      headers: { authorization: '', cookie },
    });
    expect(bare.statusCode).toBe(403);
    expect(bare.json().error).toBe('COOLCTL_E_CROSS_SITE');
    expect(c.operators.get('zone-1')?.paused).toBe(true);
    expect((await a.audit.list()).entries.length).toBe(before);
    // The dashboard's own request: JSON (or no body) and the header a form cannot set.
    const ok = await a.app.inject({
      method: 'POST',
      url: '/api/v1/groups/zone-1/resume',
      headers: { authorization: '', cookie, 'x-coolctl-request': '1' },
    });
    expect(ok.statusCode).toBe(200);
    expect(c.operators.get('zone-1')?.paused).toBe(false);
    expect((await a.audit.list()).entries.at(-1)).toMatchObject({ action: 'resume', user: 'operator' });
    // Signed out, the cookie is worth nothing.
    const out = await a.app.inject({
      method: 'POST',
      url: '/api/v1/auth/sign-out',
      headers: { authorization: '', cookie, 'x-coolctl-request': '1' },
    });
    expect(out.statusCode).toBe(200);
    expect(
      (await a.app.inject({ url: '/api/v1/cluster', headers: { authorization: '', cookie } })).statusCode,
    ).toBe(401);
  });

  it('sign-in: the same answer for a wrong password and an unknown user; limited per address', async () => {
    const { nodes } = await cluster();
    const a = nodes[0]!;
    const signIn = (name: string, password: string) =>
      a.app.inject({
        method: 'POST',
        url: '/api/v1/auth/sign-in',
        headers: { authorization: '', 'x-coolctl-request': '1' },
        payload: { name, password },
        remoteAddress: '10.9.9.9',
      });
    const wrong = await signIn('admin', 'not the password');
    const nobody = await signIn('nobody', 'not the password');
    expect(wrong.statusCode).toBe(401);
    expect(nobody.statusCode).toBe(401);
    expect(nobody.body).toBe(wrong.body);
    const codes: number[] = [];
    for (let i = 0; i < 10; i++) codes.push((await signIn('nobody', 'x')).statusCode);
    expect(codes.slice(0, 8).every((s) => s === 401)).toBe(true);
    expect(codes.at(-1)).toBe(429);
    expect((await signIn('admin', TEST_PASSWORD)).json().error).toBe('COOLCTL_E_RATE_LIMITED');
    const failures = await a.registry.getSingleMetricAsString('coolctl_api_auth_failures_total');
    expect(failures).toMatch(/reason="sign_in"} 10/);
  });

  it('sign-in limit: per node and per address, as docs/security.md states (N nodes allow N × the limit)', async () => {
    const { nodes } = await cluster(['node-a', 'node-b']);
    const [a, b] = nodes as [FakeNode, FakeNode];
    const signIn = (n: FakeNode, remoteAddress: string) =>
      n.app.inject({
        method: 'POST',
        url: '/api/v1/auth/sign-in',
        headers: { authorization: '', 'x-coolctl-request': '1' },
        payload: { name: 'nobody', password: 'x' },
        remoteAddress,
      });
    const codes = async (n: FakeNode, addr: string, k: number) => {
      const out: number[] = [];
      for (let i = 0; i < k; i++) out.push((await signIn(n, addr)).statusCode);
      return out;
    };
    expect(await codes(a, '10.9.9.1', 11)).toEqual([...Array(10).fill(401), 429]);
    // Another address on the same node, and the same address on another node: their own 10.
    expect(await codes(a, '10.9.9.2', 1)).toEqual([401]);
    expect(await codes(b, '10.9.9.1', 11)).toEqual([...Array(10).fill(401), 429]);
  });

  it('a wall clock stepped back a day does not lock a sign-in address out for a day', async () => {
    const { nodes } = await cluster(['node-a']);
    const [a] = nodes as [FakeNode];
    const signIn = () =>
      a.app.inject({
        method: 'POST',
        url: '/api/v1/auth/sign-in',
        headers: { authorization: '', 'x-coolctl-request': '1' },
        payload: { name: 'nobody', password: 'x' },
        remoteAddress: '10.9.9.7',
      });
    for (let i = 0; i < 10; i++) expect((await signIn()).statusCode).toBe(401);
    const realNow = Date.now;
    // NTP steps the clock back a day: the limiter's window is timed on the monotonic clock.
    Date.now = () => realNow() - 86_400_000;
    try {
      const refused = await signIn();
      expect(refused.statusCode).toBe(429);
      expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
    } finally {
      Date.now = realNow;
    }
  });

  it('a token revoked on one node is refused by the other; tokens carry their user’s current role', async () => {
    const { nodes } = await cluster(['node-a', 'node-b']);
    const [a, b] = nodes as [FakeNode, FakeNode];
    const made = await a.app.inject({
      method: 'POST',
      url: '/api/v1/tokens',
      headers: { authorization: `Bearer ${a.auth.tokens.admin}` },
      payload: { label: 'automation', user: 'operator', ttlS: 600 },
    });
    expect(made.statusCode).toBe(200);
    const { token, id } = made.json() as { token: string; id: string };
    const on = (n: FakeNode) =>
      n.app.inject({ url: '/api/v1/auth/me', headers: { authorization: `Bearer ${token}` } });
    await waitFor('node-b knows the token', async () => (await on(b)).statusCode === 200);
    expect((await on(b)).json()).toMatchObject({ user: 'operator', role: 'operator' });
    const list = (
      await b.app.inject({
        url: '/api/v1/tokens',
        headers: { authorization: `Bearer ${b.auth.tokens.admin}` },
      })
    ).json();
    // The secret is base64url, so it may itself hold '_': take it as the token's parser does.
    const secret = parseToken(token)?.secret;
    expect(secret).toHaveLength(43);
    expect(JSON.stringify(list)).not.toContain(secret!);
    const revoked = await a.app.inject({
      method: 'DELETE',
      url: `/api/v1/tokens/${id}`,
      headers: { authorization: `Bearer ${a.auth.tokens.admin}` },
    });
    expect(revoked.statusCode).toBe(200);
    await waitFor('node-b refuses the revoked token', async () => (await on(b)).statusCode === 401, {
      timeoutMs: 1000,
    });
    expect((await on(a)).statusCode).toBe(401);
  });

  it('junk is counted, not stored: unauthenticated and schema-refused requests leave the trail alone', async () => {
    const { nodes } = await cluster();
    const a = nodes[0]!;
    for (let i = 0; i < 50; i++)
      await a.app.inject({
        method: 'POST',
        url: '/api/v1/groups/zone-1/pause',
        headers: { authorization: '' },
        payload: {},
      });
    for (let i = 0; i < 5; i++)
      await a.app.inject({
        method: 'POST',
        url: '/api/v1/groups/zone-1/commands',
        payload: { fanPct: 'lots' },
      });
    expect((await a.audit.list()).entries).toEqual([]);
    const failures = await a.registry.getSingleMetricAsString('coolctl_api_auth_failures_total');
    expect(failures).toMatch(/reason="unauthenticated"} 50/);
  });

  it('/metrics needs a viewer unless api.metricsAuth is none; health needs nobody', async () => {
    const registry = new Registry();
    const auth = await apiAuth(registry, quietLogger);
    const { FakeCluster: FC } = await import('../support/fake-cluster.ts');
    const leadership = new FC({}).node('n1');
    const build = (metricsAuth: 'none' | 'viewer') =>
      buildApp({
        auth: auth.auth,
        audit: auth.audit,
        security: { metricsAuth },
        node: 'n1',
        version: '0',
        leadership,
        registry: new Registry(),
        groups: [],
        drivers: new Map(),
        logger: quietLogger,
        startedAtMs: 0,
      });
    const closed = await build('viewer');
    expect((await closed.inject('/metrics')).statusCode).toBe(401);
    expect((await closed.inject({ url: '/metrics', headers: auth.as('viewer') })).statusCode).toBe(200);
    expect((await closed.inject('/healthz')).statusCode).toBe(200);
    expect((await closed.inject('/readyz')).statusCode).toBe(200);
    expect((await closed.inject('/api/v1/cluster')).statusCode).toBe(401);
    const open = await build('none');
    const scraped = await open.inject('/metrics');
    expect(scraped.statusCode).toBe(200);
    // How old the render is: a number of ms, never more than one control period.
    const ageMs = Number(scraped.headers['x-coolctl-metrics-age-ms']);
    expect(ageMs).toBeGreaterThanOrEqual(0);
    expect(ageMs).toBeLessThanOrEqual(1000);
    await Promise.all([closed.close(), open.close()]);
    await auth.auth.stop();
  });

  it('takes the first admin from a file at first start, and refuses a world-readable one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-bootstrap-'));
    const file = join(dir, 'admin.yaml');
    await writeFile(file, `name: root\npassword: ${TEST_PASSWORD}\n`, { mode: 0o644 });
    const kv = new MemoryKv();
    const store = new AuthStore({ kv, prefix: '/c', logger: quietLogger, registry: new Registry() });
    await store.start();
    await expect(store.bootstrap(file)).rejects.toThrow(/world-readable.*chmod 600/);
    expect(store.empty).toBe(true);
    await chmod(file, 0o600);
    expect(await store.bootstrap(file)).toBe('created');
    expect(store.listUsers()).toEqual([expect.objectContaining({ name: 'root', role: 'admin' })]);
    // A second node starting with the same file: the cluster has a user, nothing changes.
    const other = new AuthStore({ kv, prefix: '/c', logger: quietLogger, registry: new Registry() });
    await other.start();
    expect(await other.bootstrap(file)).toBe('skipped');
    await expect(other.verify('root', TEST_PASSWORD)).resolves.toMatchObject({ role: 'admin' });
    expect(JSON.stringify([...kv.data.values()])).not.toContain(TEST_PASSWORD);
    await Promise.all([store.stop(), other.stop()]);
  });
});
