// Operator actions are recorded before they run (src/api/audit/record-first.ts), on a real 3-member
// etcd: with etcd unable to take writes an action is refused (503 COOLCTL_E_AUDIT_UNAVAILABLE) and
// not carried out — the group stays unpaused, no switchover — and the refusal reaches the trail
// once etcd is back; with etcd healthy the entry is in etcd, outcome pending, before the action's
// effect is visible, and is completed in place (same seq) with its answer, a failure included; an
// entry whose outcome never came reads as such, never as a success; the limiter runs before the
// entry is written, so a flood stores nothing.
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { AuditEntry, OperatorAction } from '../../src/api/audit/audit-trail.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { EtcdPrefixKv } from '../../src/cluster/etcd/prefix-kv.ts';
import type { OperatorState } from '../../src/cluster/operator-state.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { useEtcdFixture } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';
import { type ApiNode, apiNode } from './api-node.ts';

const fx = useEtcdFixture('audit-record-first');
type Client = ReturnType<typeof createEtcdClient>;
const clients: Client[] = [];
const open: ApiNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) {
    await n.close();
    await n.audit.stop();
  }
});
afterAll(() => {
  for (const c of clients) c.close();
});

function client(callTimeoutMs: number): Client {
  const c = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs });
  clients.push(c);
  return c;
}

/** An API node whose audit trail is on the real etcd (its users and the groups' state stay in memory). */
async function node(prefix: string, opts: { actionsPerMinute?: number } = {}): Promise<ApiNode> {
  const callTimeoutMs = 800;
  const kv = new EtcdPrefixKv(client(callTimeoutMs), callTimeoutMs, {
    newClient: () => client(callTimeoutMs),
    log: pino({ level: 'silent' }),
  });
  const n = await apiNode({
    audit: { kv, prefix },
    ...(opts.actionsPerMinute ? { security: { actionsPerMinute: opts.actionsPerMinute } } : {}),
  });
  open.push(n);
  return n;
}

/** The operator entries as `GET /api/v1/audit` shows them (what the dashboard and `coolctl history` read). */
async function trail(n: ApiNode): Promise<(AuditEntry & OperatorAction)[]> {
  const r = await n.app.inject({ url: '/api/v1/audit?limit=1000', headers: n.as('viewer') });
  expect(r.statusCode, r.body).toBe(200);
  return (r.json().entries as AuditEntry[]).filter(
    (e): e is AuditEntry & OperatorAction => e.kind === 'operator',
  );
}

/** What etcd holds under the trail's prefix, read by a client of its own. */
async function stored(prefix: string): Promise<Record<string, unknown>[]> {
  const values = await client(5_000).getAll().prefix(`${prefix}/audit/`).strings();
  return Object.values(values).map((v) => JSON.parse(v) as Record<string, unknown>);
}

const metric = async (n: ApiNode, line: RegExp) => line.exec(await n.auditRegistry.metrics())?.[1];

describe('operator actions are recorded before they run (real 3-member etcd)', () => {
  it('refuses an action etcd cannot record, and does not carry it out; the refusal is kept', async () => {
    const prefix = '/coolctl-test/record-first-down';
    const n = await node(prefix);
    // No quorum: two of three members down. etcd takes no writes.
    await fx.etcd.kill(1);
    await fx.etcd.kill(2);
    try {
      const pause = await n.app.inject({
        method: 'POST',
        url: '/api/v1/groups/zone-1/pause',
        headers: n.as('operator'),
        payload: { reason: 'filter change' },
      });
      expect(pause.statusCode, pause.body).toBe(503);
      expect(pause.json()).toMatchObject({ error: 'COOLCTL_E_AUDIT_UNAVAILABLE' });
      expect(pause.json().message).toMatch(/not carried out/);
      expect(pause.headers['retry-after']).toBe('5');
      const switchover = await n.app.inject({
        method: 'POST',
        url: '/api/v1/groups/zone-1/switchover',
        headers: n.as('operator'),
        payload: { to: 'node-b' },
      });
      expect(switchover.statusCode, switchover.body).toBe(503);
      expect(switchover.json().error).toBe('COOLCTL_E_AUDIT_UNAVAILABLE');
      // What an operator sees: the group is not paused and still led by node-a; nothing switched.
      const group = await n.app.inject({ url: '/api/v1/groups/zone-1', headers: n.as('viewer') });
      expect(group.statusCode).toBe(200);
      expect(group.json()).toMatchObject({ leader: 'node-a' });
      expect(group.json().operator?.paused ?? false).toBe(false);
      expect(n.cluster.switched).toEqual([]);
      // Counted and logged; reads answer as ever.
      expect(
        await metric(n, /^coolctl_audit_entries_total\{kind="operator",result="refused"\} (\d+)$/m),
      ).toBe('2');
      expect(await n.count('coolctl_api_requests_refused_total', { route: '/api/v1/groups/:id/pause' })).toBe(
        1,
      );
      expect(
        n.lines.filter((l) => l.msg === 'operator action refused: its audit entry was not stored in etcd'),
      ).toHaveLength(2);
      expect((await n.app.inject({ url: '/api/v1/cluster', headers: n.as('viewer') })).statusCode).toBe(200);
    } finally {
      await Promise.all([fx.etcd.restart(1), fx.etcd.restart(2)]);
    }
    // Once etcd is back the attempts are in the trail, refused: never shown as done, nor pending.
    await waitFor(
      'the refusals stored',
      async () => (await metric(n, /^coolctl_audit_entries_pending (\d+)$/m)) === '0',
      {
        timeoutMs: 30_000,
      },
    );
    const entries = await trail(n);
    expect(entries.map((e) => [e.action, e.user, e.status, e.error?.code, e.outcome])).toEqual([
      ['pause', 'operator', 503, 'COOLCTL_E_AUDIT_UNAVAILABLE', 'answered'],
      ['switchover', 'operator', 503, 'COOLCTL_E_AUDIT_UNAVAILABLE', 'answered'],
    ]);
    expect(n.cluster.operators.get('zone-1')?.paused ?? false).toBe(false);
  }, 90_000);

  it('stores the entry, pending, before the action takes effect, then completes it in place; a failure too', async () => {
    const prefix = '/coolctl-test/record-first-healthy';
    const n = await node(prefix);
    const leadership = n.cluster.nodes.get('node-a')!;
    const update = leadership.updateOperator.bind(leadership);
    // The action waits on a gate, so what etcd holds while it runs can be read.
    let release: (fail: boolean) => void = () => {};
    leadership.updateOperator = async (group: string, change: (cur: OperatorState) => OperatorState) => {
      const fail = await new Promise<boolean>((r) => {
        release = r;
      });
      if (fail)
        throw new CoolctlError(ErrorCodes.OPERATOR_STATE_CONTENDED, 'others kept changing the state', {
          retryable: true,
        });
      return update(group, change);
    };
    const paused = () => n.cluster.operators.get('zone-1')?.paused ?? false;

    for (const [fail, status, code] of [
      [false, 200, undefined],
      [true, 503, 'COOLCTL_E_OPERATOR_STATE_CONTENDED'],
    ] as const) {
      const before = (await trail(n)).length;
      const answer = n.app.inject({
        method: 'POST',
        url: fail ? '/api/v1/groups/zone-1/resume' : '/api/v1/groups/zone-1/pause',
        headers: n.as('operator'),
        payload: fail ? {} : { reason: 'filter change' },
      });
      // In etcd before the action ran: who, what, and no outcome yet — shown as no outcome.
      const pending = await waitFor('the entry in etcd before the action', async () =>
        (await trail(n)).slice(before).find((e) => e.outcome === 'pending'),
      );
      expect(pending).toMatchObject({
        user: 'operator',
        group: 'zone-1',
        status: null,
        error: { code: 'COOLCTL_E_AUDIT_NO_OUTCOME' },
      });
      expect(paused()).toBe(fail); // not yet changed
      expect((await stored(prefix)).find((v) => v.outcome === 'pending')).toMatchObject({ status: null });
      release(fail);
      const r = await answer;
      expect(r.statusCode, r.body).toBe(status);
      expect(paused()).toBe(true); // paused by the first, the failed resume left it so
      // Completed in place with the answer: one entry, the same seq, never left pending.
      const after = (await trail(n)).slice(before);
      expect(after).toEqual([
        expect.objectContaining({
          seq: pending!.seq,
          atMs: pending!.atMs,
          action: fail ? 'resume' : 'pause',
          status,
          error: code ? expect.objectContaining({ code }) : null,
          outcome: 'answered',
        }),
      ]);
    }
    expect(await metric(n, /^coolctl_audit_entries_total\{kind="operator",result="written"\} (\d+)$/m)).toBe(
      '2',
    );
  }, 60_000);

  it('shows an entry whose outcome never came (its node died mid-action) as such, not as a success', async () => {
    const prefix = '/coolctl-test/record-first-no-outcome';
    const n = await node(prefix);
    // What a node killed between recording and answering leaves in etcd.
    await n.audit.begin({
      action: 'switchover',
      method: 'POST',
      path: '/api/v1/groups/zone-1/switchover',
      group: 'zone-1',
      target: null,
      params: { to: 'node-b' },
      user: 'operator',
      role: 'operator',
      clientIp: '127.0.0.1',
      node: 'node-c',
    });
    expect(await trail(n)).toEqual([
      expect.objectContaining({
        action: 'switchover',
        node: 'node-c',
        status: null,
        outcome: 'pending',
        error: expect.objectContaining({
          code: 'COOLCTL_E_AUDIT_NO_OUTCOME',
          message: expect.stringMatching(/may or may not/),
        }),
      }),
    ]);
  }, 30_000);

  it('runs the limiter before the entry: a flood past the limit stores nothing', async () => {
    const prefix = '/coolctl-test/record-first-flood';
    const n = await node(prefix, { actionsPerMinute: 3 });
    const answers: number[] = [];
    for (let i = 0; i < 20; i++)
      answers.push(
        (
          await n.app.inject({
            method: 'POST',
            url: '/api/v1/groups/zone-1/pause',
            headers: n.as('operator'),
            payload: {},
          })
        ).statusCode,
      );
    expect(answers.filter((s) => s === 200)).toHaveLength(3);
    expect(answers.filter((s) => s === 429)).toHaveLength(17);
    const values = await stored(prefix);
    expect(values).toHaveLength(3);
    expect(values.every((v) => v.outcome === 'answered' && v.status === 200)).toBe(true);
  }, 30_000);
});
