// The API probed from outside, second round (the style of ./attacker-probe.test.ts): a page of
// another origin that has the dashboard's session cookie and somehow the X-Coolctl-Request header
// too (a browser bug, a lax proxy adding it) still steers nothing, while the cluster's own pages,
// bearer tokens and tools that send no browser headers keep working; and a number in a query string
// or a path is read only when written in plain decimal, never as hex, with spaces or an exponent.
import { afterEach, describe, expect, it } from 'vitest';
import { buildValidator } from '../../src/api/request-schema.ts';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import { type ApiNode, apiNode } from './api-node.ts';
import { operatorState, pausedNow, send, session } from './probe-requests.ts';

const open: ApiNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
});
async function node() {
  const n = await apiNode();
  open.push(n);
  return n;
}

const PAUSE = '/api/v1/groups/zone-1/pause';
const RESUME = '/api/v1/groups/zone-1/resume';
/** The pause route's pattern: what refusals are counted, logged and named by. */
const PAUSE_ROUTE = '/api/v1/groups/:id/pause';
const JSON_WRITE = { 'content-type': 'application/json', 'x-coolctl-request': '1' };

describe('cookie writes from another origin, custom header and all', () => {
  it('are refused 403 by name, counted and logged, and nothing is paused or audited', async () => {
    const n = await node();
    const cookie = await session(n);
    const refusedBefore = await n.count('coolctl_api_requests_refused_total', { route: PAUSE_ROUTE });
    const crossBefore = await n.count('coolctl_api_auth_failures_total', { reason: 'cross_site' });
    const probes: [string, Record<string, string>][] = [
      ['another site', { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' }],
      ['another site, no fetch metadata', { origin: 'https://evil.example' }],
      ['a member host on another port', { origin: 'http://127.0.0.1:8103', 'sec-fetch-site': 'same-site' }],
      ['a member with another scheme', { origin: 'https://127.0.0.1:8101' }],
      [
        'another site, to a node reached by name',
        { host: 'cooling-gw1.hall-3.example:8101', origin: 'http://evil.example:8101' },
      ],
      ['an opaque origin (sandboxed frame, file:)', { origin: 'null', 'sec-fetch-site': 'cross-site' }],
      ['no Origin, the browser says cross-site', { 'sec-fetch-site': 'cross-site' }],
      ['no Origin, the browser says same-site', { 'sec-fetch-site': 'same-site' }],
    ];
    for (const [what, from] of probes) {
      const r = await send(n, 'POST', PAUSE, { cookie, ...JSON_WRITE, ...from }, '{"reason":"x"}');
      expect(r.statusCode, what).toBe(403);
      expect(r.json().error, what).toBe('COOLCTL_E_CROSS_SITE');
      expect(r.json().message, what).toBe(`POST ${PAUSE_ROUTE}: refused as a possible cross-site request`);
      expect(r.json().details.join(' '), what).toMatch(/another origin|not a dashboard of this cluster/);
    }
    // Every method that changes state, not only POST.
    for (const method of ['PUT', 'DELETE'] as const) {
      const r = await send(
        n,
        method,
        '/api/v1/groups/zone-1/overrides/AHU-01',
        { cookie, ...JSON_WRITE, origin: 'https://evil.example' },
        method === 'PUT' ? '{"fanPct":100}' : undefined,
      );
      expect(r.statusCode, method).toBe(403);
      expect(r.json().error, method).toBe('COOLCTL_E_CROSS_SITE');
    }
    const evil = await send(
      n,
      'POST',
      PAUSE,
      { cookie, ...JSON_WRITE, origin: 'https://evil.example' },
      '{}',
    );
    expect(evil.json().details).toEqual([
      'the page that sent it is at "https://evil.example", not a dashboard of this cluster: open the dashboard at a member\'s API address (GET /api/v1/cluster) or over HTTPS',
    ]);
    expect(await operatorState(n)).toEqual({ paused: false, overridden: [] });
    expect(
      (await n.audit.list({ limit: 100 })).entries.filter(
        (e) => e.kind === 'operator' && String(e.path).startsWith('/api/v1/groups/'),
      ),
    ).toEqual([]);
    expect(await n.count('coolctl_api_requests_refused_total', { route: PAUSE_ROUTE })).toBe(
      refusedBefore + probes.length + 1,
    );
    expect(await n.count('coolctl_api_auth_failures_total', { reason: 'cross_site' })).toBe(
      crossBefore + probes.length + 3,
    );
    expect(
      n.lines.some(
        (l) =>
          l.msg === 'request refused' &&
          l.route === PAUSE_ROUTE &&
          l.code === 'COOLCTL_E_CROSS_SITE' &&
          String(l.details).includes('evil.example'),
      ),
    ).toBe(true);
  });

  it('refuses a sign-in posted from another origin', async () => {
    const n = await node();
    const r = await send(
      n,
      'POST',
      '/api/v1/auth/sign-in',
      { ...JSON_WRITE, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
      JSON.stringify({ name: 'operator', password: TEST_PASSWORD }),
    );
    expect(r.statusCode).toBe(403);
    expect(r.json().error).toBe('COOLCTL_E_CROSS_SITE');
    expect(r.headers['set-cookie']).toBeUndefined();
  });

  it('lets through the cluster’s own pages, bearer tokens and tools without browser headers', async () => {
    const n = await node();
    const cookie = await session(n);
    const pause = async (what: string, headers: Record<string, string>) => {
      const r = await send(n, 'POST', PAUSE, headers, '{"reason":"ok"}');
      expect(r.statusCode, `${what}: ${r.body}`).toBe(200);
      expect(await pausedNow(n), what).toBe(true);
      const back = await send(n, 'POST', RESUME, n.as('operator'), '{}');
      expect(back.statusCode, back.body).toBe(200);
    };
    // This node's dashboard, also at an address or behind a proxy the node cannot know of.
    await pause('this node, as its member origin', {
      cookie,
      ...JSON_WRITE,
      origin: 'http://127.0.0.1:8101',
    });
    await pause('another member’s dashboard', {
      cookie,
      ...JSON_WRITE,
      origin: 'http://127.0.0.1:8102',
      'sec-fetch-site': 'same-site',
    });
    await pause('this node’s page behind a proxy', {
      cookie,
      ...JSON_WRITE,
      origin: 'https://cooling.hall-3.example',
      'sec-fetch-site': 'same-origin',
    });
    // Over plain HTTP at a name no member advertises, browsers send no Sec-Fetch-Site: the Origin
    // names the host the request went to.
    await pause('this node’s page over plain HTTP at a DNS name', {
      cookie,
      ...JSON_WRITE,
      host: 'cooling-gw1.hall-3.example:8101',
      origin: 'http://cooling-gw1.hall-3.example:8101',
    });
    await pause('curl with the cookie', { cookie, ...JSON_WRITE });
    // A token is no browser's ambient credential: its Origin does not matter.
    await pause('a bearer token', {
      ...n.as('operator'),
      origin: 'https://evil.example',
      'sec-fetch-site': 'cross-site',
    });
    // Reads are not touched.
    const read = await send(n, 'GET', '/api/v1/groups/zone-1', {
      cookie,
      origin: 'https://evil.example',
      'sec-fetch-site': 'cross-site',
    });
    expect(read.statusCode).toBe(200);
  });
});

describe('numbers in query strings and paths', () => {
  it('are read only in plain decimal; every other spelling is refused by name', async () => {
    const n = await node();
    const get = (url: string) => send(n, 'GET', url, n.as('viewer'));
    for (const q of [
      'limit=0x10',
      'limit=%205',
      'limit=5%20',
      'limit=%0A5',
      'limit=1e2',
      'limit=+5',
      'limit=0b11',
      'limit=0o7',
      'limit=5.',
      'limit=5.0',
      'limit=%20',
      'since=',
      'since=Infinity',
      'since=1_000',
      'since=1e3',
      'limit=5&limit=0x10',
    ]) {
      const r = await get(`/api/v1/audit?${q}`);
      expect(r.statusCode, q).toBe(400);
      expect(r.json().error, q).toBe('COOLCTL_E_BAD_REQUEST');
      const name = q.split('=')[0];
      expect(r.json().details[0], q).toMatch(
        new RegExp(`^querystring/${name}: must be an integer written as -\\?digits \\(plain decimal\\)`),
      );
    }
    expect((await get('/api/v1/audit?limit=0x10')).json().details).toEqual([
      'querystring/limit: must be an integer written as -?digits (plain decimal), got "0x10"',
    ]);
    for (const q of ['sinceMs=0x10', 'sinceMs=1e3', 'sinceMs=.5', 'sinceMs=%201000', 'sinceMs=']) {
      const r = await get(`/api/v1/trends?${q}`);
      expect(r.statusCode, q).toBe(400);
      expect(r.json().details[0], q).toMatch(
        /^querystring\/sinceMs: must be a number written as -\?digits\[\.digits\]/,
      );
    }
    // Plain decimal is read as before.
    expect((await get('/api/v1/audit?since=0&limit=16')).statusCode).toBe(200);
    expect((await get('/api/v1/audit?limit=007')).statusCode).toBe(200);
    expect((await get('/api/v1/trends?sinceMs=1000.5')).statusCode).toBe(200);
    expect((await get('/api/v1/trends?sinceMs=1000')).statusCode).toBe(200);
    // Text where a number is no choice is the schema's to refuse, as before.
    expect((await get('/api/v1/alarms?state=all')).statusCode).toBe(200);
  });
});

describe('numbers in path parameters', () => {
  // No route takes a number in its path yet; the rule is the app's validator's for every text part.
  const compile = buildValidator({});
  const params = compile({
    httpPart: 'params',
    schema: {
      type: 'object',
      properties: {
        seq: { type: 'integer', minimum: 0 },
        at: { anyOf: [{ type: 'number' }, { type: 'string', const: 'latest' }] },
      },
    },
  });

  it('takes plain decimal, refuses every other spelling by name, and leaves text alternatives to the schema', () => {
    expect(params({ seq: '12', at: '1.5' })).toBe(true);
    expect(params({ seq: '12', at: 'latest' })).toBe(true);
    for (const [raw, where] of [
      [{ seq: '0x0c' }, '/seq'],
      [{ seq: ' 12' }, '/seq'],
      [{ seq: '1.2e1' }, '/seq'],
      [{ seq: '' }, '/seq'],
      [{ seq: '1', at: '0x10' }, '/at'],
      [{ seq: '1', at: '1e3' }, '/at'],
    ] as const) {
      expect(params({ ...raw }), JSON.stringify(raw)).toBe(false);
      expect(params.errors?.[0]?.instancePath, JSON.stringify(raw)).toBe(where);
      expect(params.errors?.[0]?.message, JSON.stringify(raw)).toMatch(/plain decimal/);
    }
    // Text no number reads as is the union's string branch to judge: refused by it, not by this rule.
    expect(params({ seq: '1', at: 'soon' })).toBe(false);
    expect(params.errors?.[0]?.message).not.toMatch(/plain decimal/);
  });
});
