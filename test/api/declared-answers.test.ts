// What the OpenAPI description promises about answers holds for every operation: each declares the
// refusals the app gives before or beside its handler (no identity, a role too low, a cross-site or
// oversized body, the limiter, a path parameter too long, etcd out of reach) and a success, so a
// client generated from /openapi.json meets no undeclared status; and answers under a declared
// schema keep their fields (readyz's 503). Numbers read from a query are finite and exact:
// `?since=1e309` once reached etcd as Infinity and failed the request with a 500.
import { afterEach, describe, expect, it } from 'vitest';
import { type ApiNode, apiNode } from './api-node.ts';

const open: ApiNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
});
async function node() {
  const n = await apiNode();
  open.push(n);
  return n;
}

type Responses = Record<string, unknown>;
const PUBLIC = new Set(['/healthz', '/readyz', '/', '/ui/{file}', '/api/v1/auth/sign-in']);

describe('declared answers', () => {
  it('every operation declares a success and every refusal the app can give it', async () => {
    const n = await node();
    const doc = (await n.app.inject({ url: '/openapi.json', headers: n.as('viewer') })).json() as {
      paths: Record<string, Record<string, { responses: Responses }>>;
    };
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths))
      for (const [method, op] of Object.entries(ops)) {
        const has = (s: number) => Object.hasOwn(op.responses, String(s));
        const name = `${method.toUpperCase()} ${path}`;
        expect(
          Object.keys(op.responses).some((s) => s.startsWith('2')),
          `${name}: a success`,
        ).toBe(true);
        expect(has(400) && has(503), `${name}: 400 and 503`).toBe(true);
        if (!PUBLIC.has(path)) expect(has(401), `${name}: 401`).toBe(true);
        if (path.includes('{')) expect(has(414), `${name}: 414`).toBe(true);
        if (method !== 'get')
          for (const s of [403, 413, 415, 429]) expect(has(s), `${name}: ${s}`).toBe(true);
        checked++;
      }
    expect(checked).toBeGreaterThan(25);
  });

  it('answers a request without an identity with the 401 its operation declares', async () => {
    const n = await node();
    const doc = (await n.app.inject({ url: '/openapi.json', headers: n.as('viewer') })).json() as {
      paths: Record<string, { get: { responses: Responses } }>;
    };
    const reads: [string, string][] = [
      ['/api/v1/cluster', '/api/v1/cluster'],
      ['/api/v1/cache', '/api/v1/cache'],
      ['/api/v1/groups/zone-1', '/api/v1/groups/{id}'],
      ['/api/v1/audit', '/api/v1/audit'],
      ['/metrics', '/metrics'],
    ];
    for (const [url, path] of reads) {
      const res = await n.app.inject({ url });
      expect(res.statusCode, url).toBe(401);
      expect(res.json(), url).toMatchObject({ error: 'COOLCTL_E_UNAUTHENTICATED' });
      expect(Object.keys(doc.paths[path]!.get.responses), path).toContain('401');
    }
  });

  it('keeps the fields of an answer under a declared schema: readyz while not ready', async () => {
    const n = await node();
    n.cluster.nodes.get('node-a')!.healthy = false;
    const res = await n.app.inject('/readyz');
    expect(res.statusCode).toBe(503);
    expect(res.json()).toEqual({ ready: false, node: 'node-a' });
    const me = await n.app.inject({ url: '/api/v1/auth/me', headers: n.as('operator') });
    expect(me.json()).toEqual({ user: 'operator', role: 'operator', via: 'token' });
  });

  it('refuses numbers in a query that are not finite or not exact, naming the parameter', async () => {
    const n = await node();
    const cases: [string, RegExp][] = [
      // Past a double in plain decimal (`1e309` is refused before, as no plain decimal).
      [`since=1${'0'.repeat(309)}`, /querystring\/since: must be a finite number/],
      [`limit=-1${'0'.repeat(309)}`, /querystring\/limit: must be a finite number/],
      ['since=9007199254740993', /querystring\/since: must be <= 9007199254740991/],
    ];
    for (const [q, problem] of cases) {
      const res = await n.app.inject({ url: `/api/v1/audit?${q}`, headers: n.as('viewer') });
      expect(res.statusCode, q).toBe(400);
      expect(res.json().error, q).toBe('COOLCTL_E_BAD_REQUEST');
      expect(res.json().details.join(' '), q).toMatch(problem);
    }
    const ok = await n.app.inject({
      url: '/api/v1/audit?since=9007199254740991&limit=5',
      headers: n.as('viewer'),
    });
    expect(ok.statusCode).toBe(200);
    expect(await n.count('coolctl_api_requests_refused_total', { route: '/api/v1/audit' })).toBe(3);
  });
});
