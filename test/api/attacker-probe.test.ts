// The API and dashboard probed from outside, as an attacker on the hall's network and as a careless
// user would, one `describe` per class of failure: the dashboard's paths (traversal, encodings, a
// listing), the headers on every answer (errors and raw answers to unreadable requests included),
// cross-site writes with the session cookie, secrets (a token pasted into a URL, an internal error's
// message), JSON bodies (prototype keys, charsets, bytes that are not UTF-8, duplicate keys) and
// query strings, and roles. Each asserts what the client sees and what the node did or logged.
import { connect } from 'node:net';
import type { LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import { AHU, ALARM, type ApiNode, apiNode } from './api-node.ts';
import { type Method, operatorState, pausedNow, send, session } from './probe-requests.ts';

const open: ApiNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
});
async function node(opts?: Parameters<typeof apiNode>[0]) {
  const n = await apiNode(opts);
  open.push(n);
  return n;
}

/** What a raw socket got back for `text` (the server closes, or we stop reading after a while). */
function raw(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      got += d;
      // One whole answer is all we ask for.
      if (/\r\n\r\n/.test(got) && /content-length: (\d+)/i.test(got)) {
        const len = Number(/content-length: (\d+)/i.exec(got)![1]);
        if (Buffer.byteLength(got.slice(got.indexOf('\r\n\r\n') + 4)) >= len) s.end();
      }
    });
    s.on('error', () => {});
    s.on('close', () => resolve(got));
    s.write(text);
  });
}

/** The headers of a raw answer, names in lower case. */
function rawHeaders(answer: string): Record<string, string> {
  const head = answer.slice(0, answer.indexOf('\r\n\r\n')).split('\r\n').slice(1);
  return Object.fromEntries(
    head.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
  );
}

/** What every answer must carry; `page`: the dashboard's page and assets (their own CSP and cache rule). */
function expectHardened(h: Record<string, unknown>, what: string, page = false): void {
  expect(h['x-content-type-options'], what).toBe('nosniff');
  expect(h['cache-control'], what).toBe(page ? 'no-cache' : 'no-store');
  expect(String(h['content-security-policy']), what).toMatch(/^default-src 'none';.*frame-ancestors 'none'/);
  expect(h['x-frame-options'], what).toBe('DENY');
  expect(h['referrer-policy'], what).toBe('no-referrer');
  expect(h.server, what).toBeUndefined();
  expect(h['x-powered-by'], what).toBeUndefined();
}

describe('dashboard paths', () => {
  it('serves the page’s files and nothing else: no traversal, encoding trick or listing reaches a file', async () => {
    const n = await node();
    const probes = [
      '/ui/../app.ts',
      '/ui/%2e%2e%2fapp.ts',
      '/ui/%252e%252e%252fapp.ts',
      '/ui/..%5capp.ts',
      '/ui/..\\..\\app.ts',
      '/ui/dashboard.js%00.html',
      '/ui/%c0%ae%c0%ae/app.ts',
      '/ui/',
      '/ui',
      '/ui/.',
      '/ui/DASHBOARD.JS',
      '/ui/dashboard.js/',
      '/ui//dashboard.js',
      '/ui/dashboard.js;.html',
      '/%2e%2e/%2e%2e/etc/passwd',
      '/..%2f..%2fpackage.json',
      '/index.html',
      `/ui/${'a'.repeat(5000)}`,
      `/${'a'.repeat(60_000)}`,
    ];
    for (const url of probes) {
      const r = await send(n, 'GET', url);
      expect([400, 404, 414], url.slice(0, 40)).toContain(r.statusCode);
      expect(r.json().error, url.slice(0, 40)).toBe('COOLCTL_E_BAD_REQUEST');
      expect(r.body, url.slice(0, 40)).not.toMatch(/import |root:|"dependencies"/);
    }
    for (const [file, type] of [
      ['dashboard.js', 'text/javascript'],
      ['dashboard.css', 'text/css'],
      ['index.html', 'text/html'],
    ] as const) {
      const r = await send(n, 'GET', `/ui/${file}`);
      expect(r.statusCode).toBe(200);
      expect(r.headers['content-type']).toBe(`${type}; charset=utf-8`);
      expectHardened(r.headers, file, true);
    }
  });
});

describe('headers on every answer', () => {
  it('CSP with frame-ancestors, X-Frame-Options, Referrer-Policy, nosniff and no-store on data and on every refusal', async () => {
    const n = await node({ security: { actionsPerMinute: 1 } });
    const op = n.as('operator');
    const answers: [string, number, LightMyRequestResponse][] = [
      ['data', 200, await send(n, 'GET', '/api/v1/cluster', n.as('viewer'))],
      ['metrics', 200, await send(n, 'GET', '/metrics', n.as('viewer'))],
      ['healthz', 200, await send(n, 'GET', '/healthz')],
      ['no identity', 401, await send(n, 'GET', '/api/v1/cluster')],
      ['role too low', 403, await send(n, 'GET', '/api/v1/users', n.as('viewer'))],
      ['no route', 404, await send(n, 'GET', '/nowhere')],
      ['unreadable URL', 400, await send(n, 'GET', '/api/v1/groups/%zz', n.as('viewer'))],
      ['bad body', 400, await send(n, 'POST', '/api/v1/groups/zone-1/pause', op, '{"fanPct":1}')],
      [
        'too big',
        413,
        await send(
          n,
          'POST',
          '/api/v1/groups/zone-1/pause',
          op,
          JSON.stringify({ reason: 'x'.repeat(70_000) }),
        ),
      ],
      [
        'not JSON',
        415,
        await send(n, 'POST', '/api/v1/groups/zone-1/pause', { ...op, 'content-type': 'text/plain' }, 'x'),
      ],
      ['first action', 200, await send(n, 'POST', '/api/v1/groups/zone-1/resume', op, '{}')],
      ['limited', 429, await send(n, 'POST', '/api/v1/groups/zone-1/resume', op, '{}')],
    ];
    n.cluster.alarms.acknowledge = async () => {
      throw new Error('boom');
    };
    answers.push([
      'internal',
      500,
      await send(n, 'POST', `/api/v1/alarms/${ALARM}/ack`, n.as('admin'), '{}'),
    ]);
    for (const [what, status, r] of answers) {
      expect(r.statusCode, what).toBe(status);
      expectHardened(r.headers, what);
    }
    const page = await send(n, 'GET', '/');
    expectHardened(page.headers, 'page', true);
    // The page's own policy, not the data one: it runs its script.
    expect(page.headers['content-security-policy']).toMatch(/script-src 'self'/);
  });

  it('the same on the raw answers to requests node cannot read, over a socket', async () => {
    const n = await node();
    await n.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (n.app.server.address() as { port: number }).port;
    const garbage = await raw(port, 'GARBAGE\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1.1 400 /);
    expectHardened(rawHeaders(garbage), 'malformed request line');
    const flood = await raw(port, `GET / HTTP/1.1\r\nHost: x\r\n${'X-A: b\r\n'.repeat(3000)}\r\n`);
    expect(flood).toMatch(/^HTTP\/1.1 431 /);
    expectHardened(rawHeaders(flood), 'header flood');
    const smuggle = await raw(
      port,
      'POST /api/v1/groups/zone-1/resume HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    );
    expect(smuggle).toMatch(/^HTTP\/1.1 400 /);
    // HTTP/1.0 and two pipelined requests get whole, hardened answers.
    const old = await raw(port, 'GET /api/v1/cluster HTTP/1.0\r\n\r\n');
    expect(old).toMatch(/^HTTP\/1.1 401 /);
    expectHardened(rawHeaders(old), 'HTTP/1.0');
    const two = await raw(
      port,
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(two.match(/HTTP\/1.1 200 OK/g)).toHaveLength(2);
  });
});

describe('cross-site writes with the session cookie', () => {
  it('refuses every request a form or a simple fetch from another site can send, and nothing is paused', async () => {
    const n = await node();
    const cookie = await session(n);
    const crossSite = { cookie, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' };
    for (const type of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'text/plain; application/json',
    ]) {
      const r = await send(
        n,
        'POST',
        '/api/v1/groups/zone-1/pause',
        { ...crossSite, 'content-type': type },
        '{"reason":"x"}',
      );
      expect(r.statusCode, type).toBe(415);
      expect(r.json().error).toBe('COOLCTL_E_CROSS_SITE');
    }
    // JSON a page can send only after a preflight this node refuses; a body-less form post.
    const json = await send(
      n,
      'POST',
      '/api/v1/groups/zone-1/pause',
      { ...crossSite, 'content-type': 'application/json' },
      '{}',
    );
    expect(json.statusCode).toBe(403);
    expect((await send(n, 'POST', '/api/v1/groups/zone-1/switchover', crossSite)).statusCode).toBe(403);
    const preflight = await send(n, 'OPTIONS', '/api/v1/groups/zone-1/pause', {
      origin: 'https://evil.example',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type, x-coolctl-request',
    });
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    // Method override and the methods a steering route does not have: no route, nothing done.
    for (const [method, headers, url] of [
      ['GET', { 'x-http-method-override': 'POST' }, '/api/v1/groups/zone-1/pause'],
      ['GET', { 'x-method-override': 'POST' }, '/api/v1/groups/zone-1/pause'],
      ['GET', {}, '/api/v1/groups/zone-1/pause?_method=POST'],
      ['HEAD', {}, '/api/v1/groups/zone-1/pause'],
      ['TRACE', {}, '/api/v1/groups/zone-1/pause'],
      [
        'PUT',
        { 'x-coolctl-request': '1', 'content-type': 'application/json' },
        '/api/v1/groups/zone-1/pause',
      ],
    ] as const) {
      const r = await send(n, method, url, { cookie, ...headers }, method === 'PUT' ? '{}' : undefined);
      expect(r.statusCode, `${method} ${JSON.stringify(headers)}`).toBe(404);
    }
    expect(await pausedNow(n)).toBe(false);
    expect(
      (await n.audit.list({ limit: 100 })).entries.filter(
        (e) => e.kind === 'operator' && e.action === 'pause',
      ),
    ).toEqual([]);
  });
});

describe('secrets', () => {
  it('a token pasted into a URL is neither echoed nor logged, whatever refuses it', async () => {
    const n = await node();
    const token = n.auth.tokens.admin;
    const secret = token.slice(-43);
    const answers = [
      await send(n, 'GET', `/api/v1/cluster?token=${token}`),
      await send(n, 'GET', `/api/v1/cluster?access_token=${token}`, n.as('viewer')),
      // A URL the router cannot read: its message quoted the whole URL, query string included.
      await send(n, 'GET', `/api/v1/groups/%zz?token=${token}`, n.as('viewer')),
      await send(n, 'GET', `/api/v1/groups/${token}%zz`, n.as('viewer')),
      await send(n, 'GET', `/api/v1/no/${token}`, n.as('viewer')),
      await send(n, 'DELETE', `/api/v1/tokens/${token}`, n.as('admin')),
    ];
    for (const r of answers) {
      expect(r.statusCode).toBeGreaterThanOrEqual(400);
      expect(r.body).not.toContain(secret);
    }
    expect(JSON.stringify(n.lines)).not.toContain(secret);
    // The id is kept: it is what `coolctl token revoke` takes.
    expect(answers[3]!.json().details.join()).toContain(token.slice(0, 21));
  });

  it('an internal error answers its request id, never its message; the log line has both', async () => {
    const n = await node();
    n.cluster.alarms.acknowledge = async () => {
      throw new Error("ENOENT: no such file or directory, open '/var/lib/coolctl/etcd-client.key'");
    };
    const r = await send(n, 'POST', `/api/v1/alarms/${ALARM}/ack`, n.as('operator'), '{}');
    expect(r.statusCode).toBe(500);
    const body = r.json() as { error: string; message: string };
    expect(body.error).toBe('COOLCTL_E_INTERNAL');
    expect(r.body).not.toMatch(/ENOENT|\/var\/|\/work\/|\.ts:\d+|at [A-Z]/);
    const reqId = /reqId (\S+)/.exec(body.message)?.[1];
    expect(reqId).toBeDefined();
    const line = n.lines.find((l) => l.reqId === reqId && l.msg === 'request failed');
    expect(JSON.stringify(line?.err)).toContain('ENOENT');
  });
});

describe('JSON bodies', () => {
  const PAUSE = '/api/v1/groups/zone-1/pause';

  it('refuses prototype keys by name, pollutes nothing, and steers nothing', async () => {
    const n = await node();
    const op = n.as('operator');
    for (const body of [
      '{"__proto__":{"polluted":1},"reason":"a"}',
      '{"constructor":{"prototype":{"polluted":1}}}',
      '{"reason":"a","x":{"__proto__":{"polluted":1}}}',
    ]) {
      const r = await send(n, 'POST', PAUSE, op, body);
      expect(r.statusCode, body).toBe(400);
      expect(r.json().details, body).toEqual([
        'body: the keys "__proto__" and "constructor.prototype" are refused',
      ]);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(await pausedNow(n)).toBe(false);
  });

  it('takes UTF-8 only: another charset is refused (415), bytes that are not UTF-8 too (400), nothing stored changed', async () => {
    const n = await node();
    const op = n.as('operator');
    const latin1 = await send(
      n,
      'POST',
      PAUSE,
      { ...op, 'content-type': 'application/json; charset=iso-8859-1' },
      Buffer.from('{"reason":"café"}', 'latin1'),
    );
    expect(latin1.statusCode).toBe(415);
    expect(latin1.json().message).toMatch(/UTF-8.*iso-8859-1/);
    const broken = Buffer.concat([Buffer.from('{"reason":"caf'), Buffer.from([0xe9]), Buffer.from('"}')]);
    const bytes = await send(n, 'POST', PAUSE, op, broken);
    expect(bytes.statusCode).toBe(400);
    expect(bytes.json().message).toBe('the body is not UTF-8');
    expect(await pausedNow(n)).toBe(false);
    // What is UTF-8 is taken as sent, a BOM before it, and charset spelled any way.
    const ok = await send(
      n,
      'POST',
      PAUSE,
      { ...op, 'content-type': 'application/json; charset="UTF-8"' },
      Buffer.from('\ufeff{"reason":"café ❄ <b>x</b>"}'),
    );
    expect(ok.statusCode).toBe(200);
    expect(ok.json().operator.reason).toBe('café ❄ <b>x</b>');
  });

  it('shapes a careless client sends: each a clear 400, the text rules held, duplicate keys stored as audited', async () => {
    const n = await node();
    const op = n.as('operator');
    const OVERRIDE = `/api/v1/groups/zone-1/overrides/${AHU}`;
    const refused: [string, 'POST' | 'PUT', string, string, RegExp][] = [
      ['empty', 'POST', PAUSE, '', /empty/],
      ['truncated', 'POST', PAUSE, '{"reason":"a"', /not valid JSON/],
      ['array', 'POST', PAUSE, '[]', /must be object/],
      ['null', 'POST', PAUSE, 'null', /must be object/],
      ['deep', 'POST', PAUSE, `${'['.repeat(20_000)}${']'.repeat(20_000)}`, /must be object/],
      ['NaN as text', 'PUT', OVERRIDE, '{"fanPct":"NaN"}', /must be number/],
      ['past a double', 'PUT', OVERRIDE, '{"fanPct":1e400}', /must be number|finite|must be <=/],
      ['RTL override', 'POST', PAUSE, JSON.stringify({ reason: 'ok\u202Egnp.exe' }), /control characters/],
      ['terminal escape', 'POST', PAUSE, JSON.stringify({ reason: 'a\u001b[2Jb' }), /control characters/],
      ['10 000 chars', 'POST', PAUSE, JSON.stringify({ reason: 'x'.repeat(10_000) }), /more than 200/],
    ];
    for (const [what, method, url, body, problem] of refused) {
      const r = await send(n, method, url, op, body);
      expect(r.statusCode, what).toBe(400);
      expect(r.json().error, what).toBe('COOLCTL_E_BAD_REQUEST');
      expect(r.json().details.join(), what).toMatch(problem);
    }
    expect(await operatorState(n)).toEqual({ paused: false, overridden: [] });
    // Junk, every one: counted and logged, never in the audit trail.
    expect((await n.audit.list({ limit: 100 })).entries.filter((e) => e.kind === 'operator')).toEqual([]);
    const dup = await send(n, 'POST', PAUSE, op, '{"reason":"first","reason":"second"}');
    expect(dup.statusCode).toBe(200);
    expect(dup.json().operator.reason).toBe('second');
    const entry = (await n.audit.list({ limit: 5 })).entries.find(
      (e) => e.kind === 'operator' && e.action === 'pause',
    );
    expect(JSON.stringify(entry)).toContain('second');
    expect(JSON.stringify(entry)).not.toContain('first');
  });
});

describe('query strings', () => {
  it('repeated, bracketed, negative, huge, non-numeric and very long parameters are refused by name', async () => {
    const n = await node();
    for (const q of [
      'limit=1&limit=2',
      'limit[]=1',
      'limit=-1',
      'limit=0',
      'limit=1e9',
      'limit=99999999999999999999',
      'limit=abc',
      'since=-5',
      'since=1e400',
      'limit=5%00',
      `x=${'a'.repeat(60_000)}`,
      '__proto__[polluted]=1',
      'constructor[prototype][polluted]=1',
    ]) {
      const r = await send(n, 'GET', `/api/v1/audit?${q}`, n.as('viewer'));
      expect(r.statusCode, q.slice(0, 40)).toBe(400);
      expect(r.json().details[0], q.slice(0, 40)).toMatch(/^querystring/);
      expect(r.body.length, q.slice(0, 40)).toBeLessThan(1000);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('roles', () => {
  it('a viewer, a revoked token and another cluster’s token steer nothing; a body cannot name a role', async () => {
    const n = await node();
    const steering: [Method, string, string][] = [
      ['POST', '/api/v1/groups/zone-1/pause', '{}'],
      ['POST', '/api/v1/groups/zone-1/resume', '{}'],
      ['POST', '/api/v1/groups/zone-1/switchover', '{}'],
      ['PUT', `/api/v1/groups/zone-1/overrides/${AHU}`, '{"fanPct":50}'],
      ['POST', `/api/v1/alarms/${ALARM}/ack`, '{}'],
      ['POST', `/api/v1/alarms/${ALARM}/shelve`, '{"durationS":600}'],
    ];
    const revoked = n.auth.tokens.operator;
    await n.auth.auth.revoke(revoked.split('_')[1]!);
    const identities: [string, Record<string, string>, number][] = [
      ['viewer', n.as('viewer'), 403],
      ['revoked', { authorization: `Bearer ${revoked}`, 'content-type': 'application/json' }, 401],
      [
        'another cluster',
        {
          authorization: `Bearer cct_0123456789abcdef_${'A'.repeat(43)}`,
          'content-type': 'application/json',
        },
        401,
      ],
    ];
    for (const [who, headers, status] of identities)
      for (const [method, url, body] of steering) {
        const r = await send(n, method, url, headers, body);
        expect(r.statusCode, `${who} ${method} ${url}`).toBe(status);
      }
    expect(await operatorState(n)).toEqual({ paused: false, overridden: [] });
    expect((await n.cluster.alarms.list('all')).every((a) => a.ack === null && a.shelvedUntil === null)).toBe(
      true,
    );
    // Fields that would raise a role are no field of any body.
    const viaSignIn = await send(
      n,
      'POST',
      '/api/v1/auth/sign-in',
      { 'content-type': 'application/json', 'x-coolctl-request': '1' },
      JSON.stringify({ name: 'viewer', password: TEST_PASSWORD, role: 'admin' }),
    );
    expect(viaSignIn.statusCode).toBe(400);
    expect(viaSignIn.json().details).toEqual(['body: unknown field "role"']);
    const viaAction = await send(
      n,
      'POST',
      '/api/v1/groups/zone-1/pause',
      n.as('viewer'),
      '{"role":"operator"}',
    );
    expect(viaAction.statusCode).toBe(403);
  });
});
