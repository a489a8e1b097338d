// The CLI against a node that answers as an attacker or a broken node would, over real loopback
// sockets, the CLI as its own process: a node that goes quiet after its headers or trickles its body
// is cut off at the one request deadline (connect to last byte); an endless answer is cut off at its
// bound; a redirect is never followed with the token; a 2xx that is not JSON, not an object, an error
// body, the wrong shape, deeply nested or holding dates no clock has is one clear line, never a
// success, a stack or "undefined"; an action refused for want of an audit entry (503
// COOLCTL_E_AUDIT_UNAVAILABLE) says nothing was changed and when to try again, and is not retried.
// No output ever holds the token. (Escaping the server's strings: ./terminal-output.test.ts.)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeCa, makeLeaf } from '../../scripts/lib/throwaway-pki.ts';
import { API_DEADLINE_MS, MAX_ANSWER_BYTES } from '../../src/client/api-request.ts';
import { type CliResult, runCli } from './cli-process.ts';

const TOKEN = 'hostile-node-test-token-91c2';
const servers: Server[] = [];
const pkiDir = mkdtempSync(join(tmpdir(), 'coolctl-hostile-node-'));
afterAll(async () => {
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  rmSync(pkiDir, { recursive: true, force: true });
});

interface Node {
  url: string;
  /** Each request received: method, path and whether it carried the token. */
  requests: { method: string; url: string; token: boolean }[];
}

/** A loopback node that answers every request with `handle`, recording what reached it. */
async function node(
  handle: (req: IncomingMessage, res: ServerResponse, self: string) => void,
): Promise<Node> {
  const requests: Node['requests'] = [];
  let self = '';
  const server = createServer((req, res) => {
    requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      token: req.headers.authorization === `Bearer ${TOKEN}`,
    });
    req.resume();
    req.on('end', () => handle(req, res, self));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  self = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return { url: self, requests };
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
};

/** A cluster of one node, n1 at `self`, leading zone-1. */
const cluster = (self: string) => ({
  node: 'n1',
  members: [{ node: 'n1', apiUrl: self, startedAtMs: 1 }],
  groups: [{ id: 'zone-1', leader: 'n1', epoch: 3 }],
});

const cli = (args: string[], url: string, timeoutMs = 20_000) =>
  runCli([...args, '--api', url], { env: { COOLCTL_TOKEN: TOKEN }, timeoutMs });

/** A failure as an operator must see it: exit 1, one line on stderr, no stack, no "undefined", no token. */
function expectOneLineFailure(r: CliResult, pattern: RegExp): void {
  expect(r.status, r.stderr).toBe(1);
  expect(r.stderr.trimEnd()).toMatch(pattern);
  expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at |fatal|undefined/);
  expect(r.stdout).toBe('');
  expect(r.stdout + r.stderr).not.toContain(TOKEN);
}

describe('a node too slow or too large', () => {
  it('headers then silence, a body trickled a byte a second, or no answer: cut off at the deadline, by phase', async () => {
    const stalled = await node((_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
    });
    const trickle = await node((_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const t = setInterval(() => res.write(' '), 1000);
      res.on('close', () => clearInterval(t));
    });
    const silent = await node(() => {});
    const started = Date.now();
    const [a, b, c] = await Promise.all([
      cli(['status'], stalled.url),
      cli(['pause', 'zone-1'], trickle.url),
      cli(['history'], silent.url),
    ]);
    // One deadline each, run side by side; the CLI's start-up on a loaded machine is the slack.
    expect(Date.now() - started).toBeLessThan(API_DEADLINE_MS + 8_000);
    expectOneLineFailure(
      a,
      /^coolctl: http:\/\/127\.0\.0\.1:\d+\/api\/v1\/cluster: its answer stopped coming: its headers and 0 bytes of its body in 10 s, not all of it \(the deadline covers the whole answer\)$/,
    );
    expectOneLineFailure(b, /: its answer stopped coming: its headers and \d+ bytes of its body in 10 s/);
    expect(b.stdout).not.toContain('paused');
    expectOneLineFailure(
      c,
      /^coolctl: cannot reach http:\/\/127\.0\.0\.1:\d+\/api\/v1\/audit\?limit=50: connected, but no answer in 10000 ms$/,
    );
  }, 40_000);

  it('an endless chunked answer, and one that declares 500 MB: cut off at the bound, said so', async () => {
    const mb = Buffer.alloc(1024 * 1024, ' ');
    let sent = 0;
    const endless = await node((_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"alarms":[');
      const pump = () => {
        while (!res.destroyed && res.write(mb)) sent += mb.length;
        if (!res.destroyed) res.once('drain', pump);
      };
      res.on('close', () => res.removeAllListeners('drain'));
      pump();
    });
    const declared = await node((_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(500 * 1024 * 1024) });
      res.write('{');
    });
    const small = { env: { COOLCTL_TOKEN: TOKEN, NODE_OPTIONS: '--max-old-space-size=96' } };
    const [a, b] = await Promise.all([
      runCli(['alarms', '--api', endless.url], small),
      runCli(['token', 'list', '--api', declared.url], small),
    ]);
    const said = new RegExp(
      `: its answer is larger than ${MAX_ANSWER_BYTES / 1024 / 1024} MB, more than any coolctl answer: not read further$`,
    );
    expectOneLineFailure(a, said);
    expectOneLineFailure(b, said);
    // It stopped reading: the node could not push much past the bound before the socket closed.
    expect(sent).toBeLessThan(MAX_ANSWER_BYTES + 16 * 1024 * 1024);
  }, 40_000);
});

describe('a redirect', () => {
  it('to another host: not followed, nothing sent there, said with where it pointed', async () => {
    const elsewhere = await node((_q, res) => json(res, 200, { alarms: [] }));
    const moved = await node((q, res) => {
      res.writeHead(q.method === 'GET' ? 302 : 307, { location: `${elsewhere.url}${q.url}` });
      res.end();
    });
    const [list, pause] = await Promise.all([
      cli(['alarms'], moved.url),
      cli(['pause', 'zone-1'], moved.url),
    ]);
    expectOneLineFailure(
      list,
      new RegExp(
        `answered 302 Found, a redirect to ${elsewhere.url}/api/v1/alarms\\?state=active \\(to another host\\): not followed — the CLI sends its token only to the API address it was given`,
      ),
    );
    expectOneLineFailure(
      pause,
      /answered 307 Temporary Redirect, a redirect to .* \(to another host\): not followed/,
    );
    expect(elsewhere.requests).toEqual([]);
    expect(moved.requests).toHaveLength(2);
  }, 30_000);
});

describe('a 2xx that is no answer of a coolctl node', () => {
  it('an action answered 200 with a proxy’s page, a JSON list or an error body: a failure, never "paused"', async () => {
    const bodies = [
      ['<html>sign in to the portal</html>', /\(200, but not JSON\)/],
      ['[1,2]', /\(200, but a JSON list, not an object\)/],
      [
        '{"error":"COOLCTL_E_FORBIDDEN","message":"not allowed"}',
        /answered 200, but with an error, so it is not taken as done: COOLCTL_E_FORBIDDEN: not allowed$/,
      ],
    ] as const;
    let next = 0;
    const n = await node((_q, res) => json(res, 200, bodies[next++]![0]));
    for (const [, said] of bodies) {
      const r = await cli(['pause', 'zone-1'], n.url);
      expectOneLineFailure(r, said);
    }
  }, 30_000);

  it('lists that are not lists, objects that are not objects, __proto__ keys, deep nesting: one line each', async () => {
    const deep = `{"alarms":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    const answers: Record<string, string> = {
      '/api/v1/users': '{"users":{"admin":{"role":"admin"}}}',
      '/api/v1/tokens': '{"tokens":[null]}',
      '/api/v1/alarms?state=active': '{"__proto__":{"alarms":[]}}',
      '/api/v1/alarms?state=all': deep,
      '/api/v1/alarms/a1/ack': '{"alarm":5}',
      '/api/v1/auth/sign-in': '{"role":"admin","expiresAtMs":1}',
    };
    const n = await node((q, res) => json(res, 200, answers[q.url ?? ''] ?? '{}'));
    const runs: [string[], RegExp][] = [
      [['user', 'list'], /\(no users list\)/],
      [['token', 'list'], /\(tokens item 1 is not an object\)/],
      [['alarms'], /\(no alarms list\)/],
      [['alarms', '--all', '--output', 'json'], /\(JSON nested deeper than 64 levels\)/],
      [['alarms', '--ack', 'a1'], /\(no alarm object\)/],
    ];
    for (const [args, said] of runs) {
      const r = await cli(args, n.url);
      expectOneLineFailure(r, new RegExp(`answered, but not as a coolctl node does ${said.source}`));
    }
    // A sign-in without a token must not print "-" into the token file it is redirected to.
    const login = await runCli(['login', '--user', 'admin', '--api', n.url], { stdin: 'pw\n' });
    expect(login.status, login.stderr).toBe(1);
    expect(login.stdout).toBe('');
    expect(login.stderr).toMatch(/\(no token\)/);
  }, 60_000);

  it('times no clock can show (1e300, 1e999) print as numbers; a switchover without tookMs prints no "undefined"', async () => {
    const n = await node((q, res, self) => {
      if (q.url === '/api/v1/cluster') return json(res, 200, cluster(self));
      if (q.url?.startsWith('/api/v1/audit'))
        return json(
          res,
          200,
          '{"entries":[{"kind":"role","atMs":1e300,"node":"n1","group":"zone-1","epoch":1e999,"reason":"won"}]}',
        );
      if (q.url === '/api/v1/tokens')
        return json(res, 200, {
          tokens: [{ id: 't1', user: 'u', kind: 'api', label: 'l', expiresAtMs: -1e300 }],
        });
      return json(res, 200, {});
    });
    const [history, tokens, switched] = await Promise.all([
      cli(['history'], n.url),
      cli(['token', 'list'], n.url),
      cli(['switchover', 'zone-1', '--to', 'n2'], n.url),
    ]);
    expect(history.status, history.stderr).toBe(0);
    expect(history.stdout.trim()).toBe('1e+300 n1 leads zone-1 (epoch Infinity): won');
    expect(tokens.status, tokens.stderr).toBe(0);
    expect(tokens.stdout).toContain('-1e+300');
    expect(switched.status, switched.stderr).toBe(0);
    expect(switched.stdout.trim()).toBe('zone-1: n1 → n2');
  }, 30_000);
});

describe('503 COOLCTL_E_AUDIT_UNAVAILABLE: the action was not carried out', () => {
  it('every action says nothing was changed and when to try again, exits 1, and asks once', async () => {
    // The body as src/api/audit/record-first.ts answers it, but with a message that says nothing of
    // the outcome: the CLI's own words must.
    const n = await node((q, res, self) => {
      if (q.method === 'GET') return json(res, 200, cluster(self));
      json(
        res,
        503,
        { error: 'COOLCTL_E_AUDIT_UNAVAILABLE', message: 'etcd: deadline exceeded', details: ['x'] },
        { 'retry-after': '5' },
      );
    });
    const actions = [
      ['pause', 'zone-1', '--reason', 'filters'],
      ['resume', 'zone-1'],
      ['override', 'zone-1', 'AHU-01', '--fan', '40'],
      ['switchover', 'zone-1', '--to', 'n2'],
      ['alarms', '--ack', 'a1'],
      ['token', 'revoke', 't1'],
    ];
    const results = await Promise.all(actions.map((a) => cli(a, n.url)));
    results.forEach((r, i) => {
      expectOneLineFailure(
        r,
        /^coolctl: not done: nothing was changed — the node refused the action because its audit trail \(etcd\) could not record it, and no action runs unrecorded \(503 Service Unavailable COOLCTL_E_AUDIT_UNAVAILABLE: etcd: deadline exceeded\)\. Try again in 5 s or later, once etcd takes writes/,
      );
      expect(r.stderr, actions[i]!.join(' ')).not.toMatch(/paused|resumed|removed|revoked/);
    });
    // Each action asked once: no blind retry.
    expect(n.requests.filter((q) => q.method !== 'GET')).toHaveLength(actions.length);
    expect(n.requests.every((q) => q.token)).toBe(true);
  }, 60_000);
});

describe('an https:// API cannot take the token back to plain http://', () => {
  it('a member record or a redirect to http://: not dialled with the token, said so', async () => {
    const plain = await node((_q, res) => json(res, 200, { leader: 'n2', driving: true }));
    const ca = await makeCa(pkiDir);
    const leaf = await makeLeaf(ca, 'api', { usage: ['serverAuth'] });
    const tls = createHttpsServer(
      { cert: readFileSync(leaf.certFile), key: readFileSync(leaf.keyFile) },
      (q, res) => {
        if (q.url === '/api/v1/cluster')
          return json(res, 200, {
            node: 'n1',
            members: [
              { node: 'n1', apiUrl: self },
              { node: 'n2', apiUrl: plain.url },
            ],
            groups: [{ id: 'zone-1', leader: 'n2', epoch: 3 }],
          });
        if (q.url === '/api/v1/alarms?state=active') {
          res.writeHead(301, { location: `${plain.url}${q.url}` });
          return res.end();
        }
        json(res, 200, { operator: { paused: false, overrides: {} } });
      },
    );
    servers.push(tls as unknown as Server);
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    const self = `https://127.0.0.1:${(tls.address() as { port: number }).port}`;
    // The site CA as the system's (no --ca-file: that case is refused already, ./ca-file.test.ts).
    const env = { COOLCTL_TOKEN: TOKEN, NODE_EXTRA_CA_CERTS: ca.caFile };
    const [status, switchover, alarms] = await Promise.all([
      runCli(['status', '--api', self, '--output', 'json'], { env }),
      runCli(['switchover', 'zone-1', '--to', 'n1', '--api', self], { env }),
      runCli(['alarms', '--api', self], { env }),
    ]);
    expect(status.status, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout) as { groups: { driven: boolean | null; problem: string }[] };
    expect(report.groups[0]).toMatchObject({
      driven: null,
      problem: `not calling ${plain.url}/api/v1/groups/zone-1: the API was given as https://, and the token is not sent over plain HTTP`,
    });
    expectOneLineFailure(
      switchover,
      /^coolctl: not calling http:\/\/127\.0\.0\.1:\d+\/api\/v1\/groups\/zone-1\/switchover: the API was given as https:\/\//,
    );
    expectOneLineFailure(
      alarms,
      /answered 301 Moved Permanently, a redirect to http:\/\/127\.0\.0\.1:\d+\/api\/v1\/alarms\?state=active \(to plain http:\/\/: the token would cross the network unencrypted\): not followed/,
    );
    expect(plain.requests).toEqual([]);
  }, 60_000);
});
