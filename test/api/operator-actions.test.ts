// The operator actions that steer cooling, as an operator meets them through the API: an override
// on a hold group is what the unit runs; an override left in etcd for a unit a reload took out of
// the group can still be removed; a switchover that is refused (leadership moved, one already in
// progress) answers 409 with the reason, not a server error; a viewer steers nothing; and
// /openapi.json states every answer these routes really give, bodies included.
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterError, ClusterErrorCodes } from '../../src/cluster/errors.ts';
import { waitFor } from '../helpers.ts';
import { AHU, type ApiNode, apiNode } from './api-node.ts';

let n: ApiNode;
beforeAll(async () => {
  n = await apiNode();
});
afterAll(async () => {
  await n.close();
});

type Role = 'viewer' | 'operator' | 'admin';
async function call(
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  url: string,
  body?: unknown,
  role: Role = 'operator',
) {
  const headers: Record<string, string> = n.as(role);
  if (body === undefined) delete headers['content-type'];
  return n.app.inject({
    method,
    url,
    headers,
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
}
const OVERRIDE = `/api/v1/groups/zone-1/overrides/${AHU}`;
const lastWrite = (ahu: string) => n.written.filter((w) => w.ahu === ahu).at(-1)?.cmd;

describe('overrides on a hold group', () => {
  it('the unit runs the override, the group says why; deleted, the unit stays where it is', async () => {
    await waitFor('zone-1 driven', () => lastWrite(AHU), { timeoutMs: 5_000 });
    const put = await call('PUT', OVERRIDE, { fanPct: 55, supplySetpointC: 19.5 });
    expect(put.statusCode).toBe(200);
    await waitFor(
      'the override on the wire',
      () => {
        const w = lastWrite(AHU);
        return w?.fanPct === 55 && w.supplySetpointC === 19.5 ? w : undefined;
      },
      { timeoutMs: 5_000 },
    );
    const view = (await call('GET', '/api/v1/groups/zone-1')).json();
    expect(view.reasons).toContain(`${AHU} held at the operator's override`);
    expect(view.units.find((u: { ahu: string }) => u.ahu === AHU).held).toEqual({
      fanPct: 55,
      supplySetpointC: 19.5,
    });
    expect((await call('DELETE', OVERRIDE)).statusCode).toBe(200);
    const mark = n.written.length;
    await waitFor(
      'two more writes',
      () => n.written.slice(mark).filter((w) => w.ahu === AHU).length >= 2 || undefined,
      { timeoutMs: 5_000 },
    );
    expect(lastWrite(AHU)).toMatchObject({ fanPct: 55, supplySetpointC: 19.5 });
    expect((await call('GET', '/api/v1/groups/zone-1')).json().reasons).toEqual([]);
  });

  it('to local: the unit is handed to its local control once, and the group says so', async () => {
    expect((await call('PUT', OVERRIDE, { toLocal: true })).statusCode).toBe(200);
    await waitFor('handed to local', () => n.written.find((w) => w.ahu === AHU && !w.cmd.remoteEnable), {
      timeoutMs: 5_000,
    });
    expect((await call('GET', '/api/v1/groups/zone-1')).json().reasons).toContain(
      `${AHU} on local control by operator`,
    );
    expect((await call('DELETE', OVERRIDE)).statusCode).toBe(200);
  });
});

describe('an override left for a unit no longer in the group', () => {
  it('can be removed (it would come back in force with the unit), never set', async () => {
    const cur = n.cluster.operators.get('zone-1');
    n.cluster.operators.set('zone-1', {
      paused: false,
      overrides: { ...(cur?.overrides ?? {}), 'AHU-99': { fanPct: 30 } },
      by: 'someone',
      atMs: 1,
      reason: null,
    });
    const set = await call('PUT', '/api/v1/groups/zone-1/overrides/AHU-99', { fanPct: 40 });
    expect(set.statusCode).toBe(404);
    const del = await call('DELETE', '/api/v1/groups/zone-1/overrides/AHU-99');
    expect(del.statusCode).toBe(200);
    expect(del.json().operator.overrides).not.toHaveProperty('AHU-99');
    expect(n.cluster.operators.get('zone-1')?.overrides).not.toHaveProperty('AHU-99');
    // One that was never there (an inherited name included): still refused as not a unit of the group.
    for (const name of ['AHU-98', '__proto__', 'constructor'])
      expect((await call('DELETE', `/api/v1/groups/zone-1/overrides/${name}`)).statusCode, name).toBe(404);
  });
});

describe('a refused switchover', () => {
  it('answers 409 with its code and reason, is in the audit trail, and logs no server error', async () => {
    const leadership = n.cluster.nodes.get('node-a')!;
    const real = leadership.switchover.bind(leadership);
    const refusals = [
      new ClusterError(ClusterErrorCodes.SWITCHOVER_FAILED, 'switchover zone-1: one is already in progress', {
        retryable: true,
      }),
      new ClusterError(ClusterErrorCodes.SWITCHOVER_FAILED, 'switchover zone-1: node-b left'),
      new ClusterError(
        ClusterErrorCodes.NOT_LEADER,
        'switchover zone-1: node-a does not lead it; the leader is node-b',
      ),
    ];
    try {
      for (const err of refusals) {
        leadership.switchover = async () => {
          throw err;
        };
        const r = await call('POST', '/api/v1/groups/zone-1/switchover', { to: 'node-b' });
        expect(r.statusCode).toBe(409);
        expect(r.json()).toMatchObject({ error: err.code, message: err.message });
      }
      // etcd out of reach stays a 503 (retry), not a refusal.
      leadership.switchover = async () => {
        throw new ClusterError(ClusterErrorCodes.ETCD_TIMEOUT, 'etcd switchover: no answer within 500 ms', {
          retryable: true,
        });
      };
      expect((await call('POST', '/api/v1/groups/zone-1/switchover', { to: 'node-b' })).statusCode).toBe(503);
    } finally {
      leadership.switchover = real;
    }
    expect(
      n.lines.filter((l) => l.msg === 'request failed' && /switchover zone-1/.test(JSON.stringify(l.err))),
    ).toEqual([]);
    const audit = (await call('GET', '/api/v1/audit?limit=3', undefined, 'admin')).json();
    expect(
      audit.entries.some(
        (e: { action: string; status: number }) => e.action === 'switchover' && e.status === 409,
      ),
    ).toBe(true);
  });
});

describe('roles', () => {
  it('a viewer steers nothing: every operator action is 403 and nothing is stored', async () => {
    const before = JSON.stringify(n.cluster.operators.get('zone-1') ?? null);
    for (const [method, url, body] of [
      ['PUT', OVERRIDE, { fanPct: 50 }],
      ['DELETE', OVERRIDE, undefined],
      ['POST', '/api/v1/groups/zone-1/pause', { reason: 'x' }],
      ['POST', '/api/v1/groups/zone-1/resume', undefined],
      ['POST', '/api/v1/groups/zone-1/commands', { fanPct: 50 }],
      ['POST', '/api/v1/groups/zone-1/switchover', { to: 'node-b' }],
    ] as const) {
      const r = await call(method, url, body, 'viewer');
      expect(r.statusCode, `${method} ${url}`).toBe(403);
    }
    expect(JSON.stringify(n.cluster.operators.get('zone-1') ?? null)).toBe(before);
  });
});

describe('/openapi.json', () => {
  it('states every answer the operator routes give, and each 200 body fits its schema', async () => {
    const doc = (await call('GET', '/openapi.json', undefined, 'viewer')).json();
    const ajv = new Ajv({ strict: false });
    const check = async (
      method: 'POST' | 'PUT' | 'DELETE',
      path: string,
      url: string,
      body: unknown,
      role: Role = 'operator',
      headers: Record<string, string> = {},
    ) => {
      const r =
        headers.authorization === ''
          ? await n.app.inject({
              method,
              url,
              headers: { 'content-type': 'application/json' },
              payload: JSON.stringify(body ?? {}),
            })
          : await call(method, url, body, role);
      const op = doc.paths[path]?.[method.toLowerCase()];
      expect(op, `${method} ${path} documented`).toBeDefined();
      const answer = op.responses[String(r.statusCode)];
      expect(answer, `${method} ${path} answered ${r.statusCode}, undocumented: ${r.body}`).toBeDefined();
      const schema = answer.content?.['application/json']?.schema;
      expect(schema, `${method} ${path} ${r.statusCode} has a schema`).toBeDefined();
      expect(ajv.validate(schema, r.json()), `${r.body} ${ajv.errorsText()}`).toBe(true);
      return r;
    };
    const O = '/api/v1/groups/{id}/overrides/{ahu}';
    const put = await check('PUT', O, OVERRIDE, { fanPct: 42, supplySetpointC: 20 });
    // The whole body comes out: a 200 schema must not strip what the route answers.
    expect(put.json()).toMatchObject({
      group: 'zone-1',
      operator: { paused: false, overrides: { [AHU]: { fanPct: 42, supplySetpointC: 20 } }, by: 'operator' },
    });
    expect(typeof put.json().operator.atMs).toBe('number');
    await check('PUT', O, OVERRIDE, { fanPct: 101 });
    await check('PUT', O, OVERRIDE, { fanPct: 42 }, 'viewer');
    await check('PUT', O, OVERRIDE, { fanPct: 42 }, 'operator', { authorization: '' });
    await check('PUT', O, '/api/v1/groups/zone-1/overrides/AHU-77', { fanPct: 42 });
    await check('DELETE', O, OVERRIDE, undefined);
    const P = '/api/v1/groups/{id}/pause';
    const paused = await check('POST', P, '/api/v1/groups/zone-2/pause', { reason: 'filter change' });
    expect(paused.json().operator).toMatchObject({ paused: true, reason: 'filter change' });
    await check('POST', P, '/api/v1/groups/nowhere/pause', {});
    const resumed = await check(
      'POST',
      '/api/v1/groups/{id}/resume',
      '/api/v1/groups/zone-2/resume',
      undefined,
    );
    expect(resumed.json().operator).toMatchObject({ paused: false, reason: null });
    const C = '/api/v1/groups/{id}/commands';
    const held = await check('POST', C, '/api/v1/groups/zone-1/commands', { fanPct: 61 });
    expect(held.json().held.length).toBeGreaterThan(0);
    await check('POST', C, '/api/v1/groups/zone-2/commands', { fanPct: 61 });
    await check('POST', C, '/api/v1/groups/zone-1/commands', { ahu: 'AHU-77', fanPct: 61 });
    const S = '/api/v1/groups/{id}/switchover';
    await check('POST', S, '/api/v1/groups/zone-2/switchover', { to: 'node-a' });
    await check('POST', S, '/api/v1/groups/zone-1/switchover', { to: 'node-z' });
    const moved = await check('POST', S, '/api/v1/groups/zone-1/switchover', { to: 'node-b' });
    expect(moved.json()).toMatchObject({ group: 'zone-1', leader: 'node-b' });
    expect(typeof moved.json().tookMs).toBe('number');
  });
});
