// One rule for the API's refusals, for every command (docs/cli.md, "Exit codes"): refused as bad
// input (a 4xx other than 401, 403, 408, 429) → exit 2, the server's message said once; not signed
// in or not allowed → exit 1 with the hint; an answer without a message (a proxy's plain 502) → its
// status text and what to check, exit 1. Against the real API of a fake node, and a recording
// server that answers as a proxy would.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiUsageError, refusalError } from '../../src/cli/api-client.ts';
import { CoolctlError } from '../../src/errors.ts';
import { expectUsageRefusal, type FakeApi, fakeApi, runCli, type StubApi, stubApi } from './cli-process.ts';

let api: FakeApi;
let proxy: StubApi;
/** What the "proxy" answers: the cluster (when clusterAnswers), else `next`. */
let next: { status: number; body: string | object } = { status: 502, body: '502' };
let clusterAnswers = false;

beforeAll(async () => {
  api = await fakeApi();
  proxy = await stubApi((r, self) =>
    r.url === '/api/v1/cluster' && r.method === 'GET' && clusterAnswers
      ? {
          status: 200,
          body: {
            node: 'n1',
            members: [{ node: 'n1', apiUrl: self, startedAtMs: 1 }],
            groups: [{ id: 'zone-1', leader: 'n1', epoch: 3 }],
          },
        }
      : next,
  );
});
afterAll(async () => {
  await api?.node.close();
  await proxy?.close();
});

const as = (role: 'viewer' | 'operator' | 'admin') => ({ COOLCTL_TOKEN: api.node.auth.tokens[role] });

describe('refused by the server as bad input: exit 2, as every other usage error', () => {
  it('switchover --to an unknown node (400), like an unknown group', async () => {
    const [toNobody, noGroup] = await Promise.all([
      runCli(['switchover', 'zone-1', '--to', 'nosuch', '--api', api.url], { env: as('operator') }),
      runCli(['switchover', 'zone-9', '--to', 'node-a', '--api', api.url], { env: as('operator') }),
    ]);
    expectUsageRefusal(toNobody, /^coolctl: unknown node "nosuch"/);
    expectUsageRefusal(noGroup, /^coolctl: unknown group "zone-9"; groups: zone-1, zone-2$/);
    expect(api.cluster.switched).toEqual([]);
  }, 30_000);

  it('a schema refusal is said once, not once per branch and again in its details', async () => {
    const r = await runCli(['user', 'add', 'Bad Name', '--role', 'viewer', '--api', api.url], {
      env: as('admin'),
      stdin: 'a long enough password\n',
    });
    // The server's words as it says them today ("refused by its schema: body/name: …").
    expectUsageRefusal(r, /^coolctl: .*body\/name:? must match pattern/);
    expect(r.stderr.match(/must match pattern/g)).toHaveLength(1);
    // What the server says for a role outside its schema (the CLI now refuses it itself).
    const e = refusalError(400, {
      message:
        'body/role must be equal to constant, body/role must be equal to constant, body/role must be equal to constant, body/role must match a schema in anyOf',
      details: [
        'body/role must be equal to constant, body/role must be equal to constant, body/role must be equal to constant, body/role must match a schema in anyOf',
      ],
    });
    expect(e).toBeInstanceOf(ApiUsageError);
    expect(e.message).toBe('body/role must be equal to constant, body/role must match a schema in anyOf');
  }, 30_000);
});

describe('not signed in or not allowed: exit 1, saying what to do', () => {
  it('401 without a token, 403 below the role', async () => {
    const [none, viewer] = await Promise.all([
      runCli(['override', 'zone-1', 'AHU-01', '--fan', '40', '--api', api.url]),
      runCli(['override', 'zone-1', 'AHU-01', '--fan', '40', '--api', api.url], { env: as('viewer') }),
    ]);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/set COOLCTL_TOKEN or --token-file \(coolctl login prints a token\)$/m);
    expect(viewer.status).toBe(1);
    expect(viewer.stderr).toMatch(/needs the operator role/);
  }, 30_000);
});

describe('an answer without a message: its status text and a hint, exit 1', () => {
  it('a proxy’s plain 502, 503 and 504', async () => {
    for (const [status, hint] of [
      [502, 'a proxy between here and the node, or the node behind it, is not reachable'],
      [503, 'the node is not ready'],
      [504, 'a proxy between here and the node got no answer from the node in time'],
    ] as const) {
      next = { status, body: String(status) };
      const r = await runCli(['status', '--api', proxy.url]);
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toContain(`coolctl: the API answered ${status} `);
      expect(r.stderr).toContain(hint);
      expect(r.stderr).not.toMatch(/refused \(\d+\): \d+/);
    }
  }, 30_000);

  it('switchover refused by the leader the same way: a 502 is a failure, with the hint', async () => {
    // The cluster answers; the leader's switchover is the proxy's 502 page.
    clusterAnswers = true;
    next = { status: 502, body: '<html>Bad Gateway</html>' };
    const r = await runCli(['switchover', 'zone-1', '--to', 'n2', '--api', proxy.url]);
    clusterAnswers = false;
    expect(proxy.requests.at(-1)).toMatchObject({ method: 'POST', url: '/api/v1/groups/zone-1/switchover' });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.trim()).toBe(
      'coolctl: the API answered 502 Bad Gateway — a proxy between here and the node, or the node behind it, is not reachable',
    );
  }, 30_000);

  it('the rule, status by status', () => {
    const exit = (e: Error) => (e instanceof ApiUsageError ? 2 : e instanceof CoolctlError ? 1 : -1);
    expect(exit(refusalError(400, { message: 'bad' }))).toBe(2);
    expect(exit(refusalError(404, { message: 'no such group' }))).toBe(2);
    expect(exit(refusalError(409, { message: 'cleared' }))).toBe(2);
    expect(exit(refusalError(422, {}))).toBe(2);
    for (const s of [401, 403, 408, 429, 500, 502, 503, 301])
      expect(exit(refusalError(s, {})), String(s)).toBe(1);
    expect(refusalError(500, { message: 'boom' }).message).toBe('refused (500 Internal Server Error): boom');
    // The server's words reach a terminal: escaped.
    expect(refusalError(400, { message: 'x\u001b]0;owned\u0007', details: ['\u202eevil'] }).message).toBe(
      'x\\x1b]0;owned\\x07 (\\u202eevil)',
    );
  });
});
