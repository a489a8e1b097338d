// What the API takes from a client and what it answers, for every route: a body exactly as typed
// (nothing coerced into a fan %, no unknown field dropped in silence), nothing where a route takes
// nothing, query strings read as text but still checked, free text without control or bidirectional
// characters, unknown routes and unreadable URLs inside the error contract, and answers no cache
// keeps and no browser sniffs. Each refusal: 4xx with a COOLCTL_E_ code naming the problem, counted,
// logged (not once per request), never in the audit trail, never a secret echoed.
import { afterEach, describe, expect, it } from 'vitest';
import { keepable } from '../../src/api/audit/audit-trail.ts';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import { AHU, ALARM, type ApiNode, apiNode } from './api-node.ts';

const open: ApiNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
});
async function node(opts?: Parameters<typeof apiNode>[0]) {
  const n = await apiNode(opts);
  open.push(n);
  return n;
}

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';
function send(
  n: ApiNode,
  method: Method,
  url: string,
  body?: unknown,
  role: 'viewer' | 'operator' | 'admin' = 'operator',
) {
  return n.app.inject({
    method,
    url,
    headers: n.as(role),
    ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
}

async function auditCount(n: ApiNode) {
  return (await n.audit.list({ limit: 1000 })).entries.length;
}

const OVERRIDE = `/api/v1/groups/zone-1/overrides/${AHU}`;

describe('API request contract', () => {
  it('takes a body as typed: null, false, true, [30] or "25" is no fan %, refused and never stored or sent', async () => {
    const n = await node();
    const before = await auditCount(n);
    for (const bad of [null, false, true, [30], '25', {}]) {
      const put = await send(n, 'PUT', OVERRIDE, { fanPct: bad });
      expect(put.statusCode, `override fanPct ${JSON.stringify(bad)}`).toBe(400);
      expect(put.json()).toMatchObject({ error: 'COOLCTL_E_BAD_REQUEST' });
      expect(put.json().details.join('\n')).toMatch(/^body\/fanPct: must be number$/m);
      const cmd = await send(n, 'POST', '/api/v1/groups/zone-1/commands', { ahu: AHU, fanPct: bad });
      expect(cmd.statusCode, `command fanPct ${JSON.stringify(bad)}`).toBe(400);
      const sp = await send(n, 'PUT', OVERRIDE, { supplySetpointC: bad });
      expect(sp.statusCode, `override supplySetpointC ${JSON.stringify(bad)}`).toBe(400);
    }
    expect((await send(n, 'PUT', OVERRIDE, { toLocal: 'true' })).statusCode).toBe(400);
    expect(
      (await send(n, 'POST', '/api/v1/groups/zone-1/switchover', { to: 'node-b', timeoutMs: '500' }))
        .statusCode,
    ).toBe(400);
    expect((await send(n, 'POST', '/api/v1/alarms/x/shelve', { durationS: '3600' })).statusCode).toBe(400);
    // Nothing was stored or sent to a unit, and nothing went into the trail.
    expect(n.cluster.operators.get('zone-1')?.overrides?.[AHU]).toBeUndefined();
    expect(n.written.some((w) => w.cmd.fanPct === 0 || w.cmd.fanPct === 1)).toBe(false);
    expect(await auditCount(n)).toBe(before);
    // The same value, typed: taken.
    const ok = await send(n, 'PUT', OVERRIDE, { fanPct: 25 });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(n.cluster.operators.get('zone-1')?.overrides?.[AHU]).toEqual({ fanPct: 25 });
  });

  it('reads query parameters from text and still refuses what is not one', async () => {
    const n = await node();
    const get = (url: string) => n.app.inject({ url, headers: n.as('viewer') });
    expect((await get('/api/v1/audit?since=0&limit=5')).statusCode).toBe(200);
    expect((await get('/api/v1/alarms?state=all')).statusCode).toBe(200);
    expect((await get('/api/v1/trends?range=day&sinceMs=1000')).statusCode).toBe(200);
    for (const url of [
      '/api/v1/audit?limit=lots',
      '/api/v1/audit?limit=1.5',
      '/api/v1/audit?limit=0',
      '/api/v1/audit?since=-1',
      '/api/v1/audit?since=',
      '/api/v1/audit?limit=1&limit=2',
      '/api/v1/trends?sinceMs=yesterday',
      '/api/v1/trends?range=week',
      '/api/v1/alarms?state=bogus',
    ]) {
      const r = await get(url);
      expect(r.statusCode, url).toBe(400);
      expect(r.json().error, url).toBe('COOLCTL_E_BAD_REQUEST');
      expect(r.json().details[0], url).toMatch(/^querystring/);
    }
    // A choice says what it may be, once.
    expect((await get('/api/v1/alarms?state=bogus')).json().details).toEqual([
      'querystring/state: must be one of "active", "all"',
    ]);
    expect((await get('/api/v1/trends?range=week')).json().details).toEqual([
      'querystring/range: must be one of "recent", "day"',
    ]);
  });

  it('refuses a field or parameter the route does not name, by name', async () => {
    const n = await node();
    const before = await auditCount(n);
    const evil = await send(n, 'PUT', OVERRIDE, { supplySetpointC: 20, evil: 1 });
    expect(evil.statusCode).toBe(400);
    expect(evil.json().details).toEqual(['body: unknown field "evil"']);
    expect(evil.json().message).toContain('unknown field "evil"');
    expect(n.cluster.operators.get('zone-1')?.overrides?.[AHU]).toBeUndefined();
    const admin = await send(
      n,
      'POST',
      '/api/v1/users',
      { name: 'mallory', role: 'viewer', password: 'a long enough secret', isAdmin: true },
      'admin',
    );
    expect(admin.statusCode).toBe(400);
    expect(admin.json().details).toEqual(['body: unknown field "isAdmin"']);
    expect(n.auth.auth.hasUser('mallory')).toBe(false);
    const signIn = await n.app.inject({
      method: 'POST',
      url: '/api/v1/auth/sign-in',
      headers: { 'content-type': 'application/json', 'x-coolctl-request': '1' },
      payload: { name: 'viewer', password: TEST_PASSWORD, remember: true },
    });
    expect(signIn.statusCode).toBe(400);
    expect(signIn.json().details).toEqual(['body: unknown field "remember"']);
    expect(signIn.headers['set-cookie']).toBeUndefined();
    // An unknown name is quoted, never echoed raw.
    const raw = await send(n, 'PUT', OVERRIDE, { fanPct: 20, '\u001b[2J\u202e': 1 });
    expect(raw.statusCode).toBe(400);
    expect(raw.json().details).toEqual(['body: unknown field "\\u{1b}[2J\\u{202e}"']);
    for (const url of ['/api/v1/audit?evil=1', '/api/v1/cluster?evil=1', '/api/v1/groups/zone-1?evil=1']) {
      const r = await n.app.inject({ url, headers: n.as('viewer') });
      expect(r.statusCode, url).toBe(400);
      expect(r.json().details, url).toEqual(['querystring: unknown parameter "evil"']);
    }
    // The dashboard's page and assets: a browser may open them with any query.
    expect((await n.app.inject('/?from=bookmark')).statusCode).toBe(200);
    expect((await n.app.inject('/ui/dashboard.js?v=2')).statusCode).toBe(200);
    // What machines poll: a Prometheus job's `params:`, a load balancer's cache-buster.
    const scrape = await n.app.inject({ url: '/metrics?module=coolctl', headers: n.as('viewer') });
    expect(scrape.statusCode).toBe(200);
    expect(scrape.body).toContain('coolctl_api_requests_refused_total');
    for (const url of ['/healthz?probe=1', '/readyz?probe=1'])
      expect((await n.app.inject(url)).statusCode, url).not.toBe(400);
    // A CORS preflight carries the URL of the request it precedes.
    const preflight = await n.app.inject({
      method: 'OPTIONS',
      url: '/api/v1/audit?since=3',
      headers: { origin: 'http://127.0.0.1:8102', 'access-control-request-method': 'GET' },
    });
    expect(preflight.statusCode).toBe(204);
    expect(await auditCount(n)).toBe(before);
  });

  it('a route that takes no body takes {} or nothing; anything else, secrets included, is refused and kept nowhere', async () => {
    const n = await node();
    const spare = async () => (await n.auth.auth.issue('viewer', 'token', 60_000, 'spare')).record.id;
    const NO_BODY: [Method, () => Promise<string>, 'operator' | 'admin' | 'viewer'][] = [
      ['POST', async () => '/api/v1/groups/zone-1/resume', 'operator'],
      ['DELETE', async () => OVERRIDE, 'operator'],
      ['POST', async () => '/api/v1/auth/sign-out', 'viewer'],
      ['POST', async () => `/api/v1/alarms/${ALARM}/unshelve`, 'operator'],
      ['DELETE', async () => '/api/v1/users/nobody', 'admin'],
      ['DELETE', async () => `/api/v1/tokens/${await spare()}`, 'admin'],
    ];
    const token = n.auth.tokens.admin;
    const secrets = { Password: 'hunter2hunter2', apiToken: token, passwd: 'p' };
    const deep = `${'['.repeat(30_000)}${']'.repeat(30_000)}`;
    const before = await auditCount(n);
    for (const [method, url, role] of NO_BODY) {
      const path = await url();
      const r = await send(n, method, path, secrets, role);
      expect(r.statusCode, `${method} ${path}`).toBe(400);
      expect(r.json().details, `${method} ${path}`).toEqual(['body: unknown field "Password"']);
      expect(r.body).not.toContain('hunter2');
      expect(r.body).not.toContain(token);
      expect((await send(n, method, path, deep, role)).statusCode, `${method} ${path} nested`).toBe(400);
      expect((await send(n, method, path, [], role)).statusCode, `${method} ${path} []`).toBe(400);
      expect((await send(n, method, path, 'null', role)).statusCode, `${method} ${path} null`).toBe(400);
    }
    expect(await auditCount(n)).toBe(before);
    const logged = JSON.stringify(n.lines);
    expect(logged).not.toContain('hunter2');
    expect(logged).not.toContain(token);
    // {} and no body at all do the work (the CLI sends none, the dashboard {}).
    await send(n, 'POST', '/api/v1/groups/zone-1/pause', { reason: 'filter change' });
    const bare = await n.app.inject({
      method: 'POST',
      url: '/api/v1/groups/zone-1/resume',
      headers: n.auth.as('operator'),
    });
    expect(bare.statusCode, bare.body).toBe(200);
    // A body-less action is in the trail with no parameters.
    expect((await n.audit.list()).entries.at(-1)).toMatchObject({ action: 'resume', params: null });
    expect((await send(n, 'POST', '/api/v1/groups/zone-1/resume', {})).statusCode).toBe(200);
    const revoked = await n.app.inject({
      method: 'DELETE',
      url: `/api/v1/tokens/${await spare()}`,
      headers: n.auth.as('admin'),
    });
    expect(revoked.statusCode, revoked.body).toBe(200);
  });

  it('keeps no secret of a body in the trail or its log line, whatever the field is called', async () => {
    const n = await node();
    const made = await send(
      n,
      'POST',
      '/api/v1/users',
      { name: 'alice', role: 'operator', password: 'alice has a long password' },
      'admin',
    );
    expect(made.statusCode, made.body).toBe(200);
    const entry = (await n.audit.list()).entries.at(-1);
    expect(entry).toMatchObject({ action: 'users', params: { name: 'alice', password: '(secret)' } });
    expect(JSON.stringify(n.lines)).not.toContain('alice has a long password');
    const token = n.auth.tokens.operator;
    expect(
      keepable({
        Password: 'p1',
        PASSWD: 'p2',
        apiToken: 'p3',
        client_secret: 'p4',
        nested: { privateKey: 'p5', Credentials: ['p6'], deeper: [{ sessionId: 'p7' }] },
        Authorization: 'p8',
        note: `see ${token} here`,
        fanPct: 40,
        reason: 'filter change',
      }),
    ).toEqual({
      Password: '(secret)',
      PASSWD: '(secret)',
      apiToken: '(secret)',
      client_secret: '(secret)',
      nested: { privateKey: '(secret)', Credentials: '(secret)', deeper: [{ sessionId: '(secret)' }] },
      Authorization: '(secret)',
      note: 'see (secret) here',
      fanPct: 40,
      reason: 'filter change',
    });
  });

  it('refuses control and bidirectional characters in every free-text field, naming the field', async () => {
    const n = await node();
    const before = await auditCount(n);
    const BAD = [
      '\u001b[31mred',
      'tab\there',
      'line\nbreak',
      'nel\u0085',
      'del\u007f',
      'rlo\u202etxt',
      'iso\u2066x',
      'lrm\u200e',
    ];
    const where = (r: { json(): { details: string[] } }) => r.json().details[0];
    for (const bad of BAD) {
      const cases: [string, Method, string, object, 'operator' | 'admin'][] = [
        ['body/reason', 'POST', '/api/v1/groups/zone-1/pause', { reason: bad }, 'operator'],
        ['body/label', 'POST', '/api/v1/tokens', { label: bad }, 'admin'],
        ['body/comment', 'POST', `/api/v1/alarms/${ALARM}/ack`, { comment: bad }, 'operator'],
        [
          'body/comment',
          'POST',
          `/api/v1/alarms/${ALARM}/shelve`,
          { durationS: 600, comment: bad },
          'operator',
        ],
        ['body/ahu', 'POST', '/api/v1/groups/zone-1/commands', { ahu: bad, fanPct: 40 }, 'operator'],
        ['body/to', 'POST', '/api/v1/groups/zone-1/switchover', { to: bad }, 'operator'],
        [
          'body/name',
          'POST',
          '/api/v1/users',
          { name: bad, role: 'viewer', password: 'a long enough secret' },
          'admin',
        ],
      ];
      for (const [field, method, url, body, role] of cases) {
        const r = await send(n, method, url, body, role);
        expect(r.statusCode, `${field} ${JSON.stringify(bad)}`).toBe(400);
        expect(where(r), `${field} ${JSON.stringify(bad)}`).toMatch(new RegExp(`^${field}: `));
      }
      const signIn = await n.app.inject({
        method: 'POST',
        url: '/api/v1/auth/sign-in',
        headers: { 'content-type': 'application/json', 'x-coolctl-request': '1' },
        payload: { name: bad, password: TEST_PASSWORD },
      });
      expect(signIn.statusCode).toBe(400);
      expect(where(signIn)).toMatch(/^body\/name: /);
      const param = await send(n, 'POST', `/api/v1/groups/${encodeURIComponent(bad)}/pause`, {});
      expect(param.statusCode).toBe(400);
      expect(where(param)).toMatch(/^params\/id: control characters/);
    }
    expect(n.cluster.operators.get('zone-1')?.paused ?? false).toBe(false);
    expect(n.auth.auth.listTokens().filter((t) => t.label !== 'test')).toEqual([]);
    expect(await auditCount(n)).toBe(before);
    // Text in any script, with its accents, dashes and emoji, is taken.
    const fine = await send(n, 'POST', '/api/v1/groups/zone-1/pause', {
      reason: 'Filterwechsel – Kühlung 冷却 ✓ 🌡',
    });
    expect(fine.statusCode, fine.body).toBe(200);
    expect(n.cluster.operators.get('zone-1')?.reason).toBe('Filterwechsel – Kühlung 冷却 ✓ 🌡');
  });

  it('answers unknown routes and unreadable URLs in the error contract, counted, one log line per burst', async () => {
    const n = await node();
    for (let i = 0; i < 50; i++) {
      const r = await n.app.inject({ url: '/api/v1/clusters', headers: n.as('viewer') });
      expect(r.statusCode).toBe(404);
      expect(r.json()).toEqual({
        error: 'COOLCTL_E_BAD_REQUEST',
        message: 'no route GET /api/v1/clusters',
        details: ['the API’s routes are in /openapi.json'],
      });
    }
    const post = await n.app.inject({ method: 'POST', url: '/api/v1/nowhere', payload: { x: 1 } });
    expect(post.statusCode).toBe(404);
    expect(post.json().error).toBe('COOLCTL_E_BAD_REQUEST');
    for (let i = 0; i < 20; i++) {
      const bad = await n.app.inject({ url: '/api/v1/groups/%zz', headers: n.as('viewer') });
      expect(bad.statusCode).toBe(400);
      expect(bad.json()).toMatchObject({ error: 'COOLCTL_E_BAD_REQUEST', message: 'the URL cannot be read' });
      expect(bad.headers['x-content-type-options']).toBe('nosniff');
    }
    expect(await n.count('coolctl_api_requests_refused_total', { route: 'unknown' })).toBe(71);
    // One line for the burst of each kind (404 and unreadable URL share the code), not 71.
    const refusedLines = n.lines.filter((l) => l.msg === 'request refused' && l.route === 'unknown');
    expect(refusedLines.length).toBeGreaterThanOrEqual(1);
    expect(refusedLines.length).toBeLessThanOrEqual(2);
    // The dashboard's own routes still answer.
    expect((await n.app.inject('/')).statusCode).toBe(200);
    expect((await n.app.inject('/ui/dashboard.css')).statusCode).toBe(200);
    expect((await n.app.inject('/ui/other.js')).statusCode).toBe(400);
  });

  it('marks every answer no-store (the dashboard’s assets: no-cache) and nosniff', async () => {
    const n = await node();
    const signIn = await n.app.inject({
      method: 'POST',
      url: '/api/v1/auth/sign-in',
      headers: { 'content-type': 'application/json', 'x-coolctl-request': '1' },
      payload: { name: 'viewer', password: TEST_PASSWORD, as: 'token' },
    });
    expect(signIn.json().token).toMatch(/^cct_/);
    const token = await send(n, 'POST', '/api/v1/tokens', { label: 'grafana' }, 'admin');
    expect(token.json().token).toMatch(/^cct_/);
    const answers = {
      signIn,
      token,
      cluster: await n.app.inject({ url: '/api/v1/cluster', headers: n.as('viewer') }),
      unauthenticated: await n.app.inject('/api/v1/cluster'),
      forbidden: await send(n, 'DELETE', '/api/v1/users/operator', undefined, 'viewer'),
      refused: await send(n, 'PUT', OVERRIDE, { fanPct: null }),
      unknown: await n.app.inject('/nope'),
      metrics: await n.app.inject({ url: '/metrics', headers: n.as('viewer') }),
      health: await n.app.inject('/healthz'),
      openapi: await n.app.inject({ url: '/openapi.json', headers: n.as('viewer') }),
    };
    for (const [what, r] of Object.entries(answers)) {
      expect(r.headers['cache-control'], what).toBe('no-store');
      expect(r.headers['x-content-type-options'], what).toBe('nosniff');
    }
    for (const asset of ['/', '/ui/dashboard.js']) {
      const r = await n.app.inject(asset);
      expect(r.headers['cache-control'], asset).toBe('no-cache');
      expect(r.headers['x-content-type-options'], asset).toBe('nosniff');
    }
  });

  it('describes the closed inputs in OpenAPI: a no-body route’s body is {} and nothing more', async () => {
    const n = await node();
    const spec = (await n.app.inject({ url: '/openapi.json', headers: n.as('viewer') })).json() as {
      paths: Record<
        string,
        Record<string, { requestBody?: { content: Record<string, { schema: unknown }> } }>
      >;
    };
    for (const [path, ops] of Object.entries(spec.paths))
      for (const [method, op] of Object.entries(ops)) {
        if (!['post', 'put', 'delete'].includes(method)) continue;
        const schema = op.requestBody?.content['application/json']?.schema as
          | { type?: string; additionalProperties?: boolean }
          | undefined;
        expect(schema, `${method} ${path}`).toMatchObject({ type: 'object', additionalProperties: false });
      }
    const resume = spec.paths['/api/v1/groups/{id}/resume']?.post?.requestBody?.content['application/json'];
    expect(resume?.schema).toMatchObject({ properties: {}, description: 'no body, or {}' });
  });
});
