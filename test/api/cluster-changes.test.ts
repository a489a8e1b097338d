// `GET /api/v1/cluster` change-only, through inject(): a reader that sends back the answer's `rev`
// gets nothing while the cluster is unchanged and, with `changes=only`, only the member or group
// that changed (a leader change, a member leaving, a hand-on); an unknown revision and a reader
// without `since` get the whole answer as before; a malformed `since` is refused, counted and logged.
import { EventEmitter } from 'node:events';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/app.ts';
import type { GroupLeadership, Leadership, Member } from '../../src/cluster/leadership.ts';
import { apiAuth, injectAs } from '../support/api-auth.ts';
import { captureLogs } from '../support/log-lines.ts';

const GROUPS = 100;

/** A leadership whose members and groups the test changes between reads. */
class MutableLeadership extends EventEmitter implements Leadership {
  readonly node = 'node-a';
  healthy = true;
  memberList: Member[] = ['node-a', 'node-b', 'node-c'].map((node, i) => ({
    node,
    apiUrl: `http://127.0.0.1:${8101 + i}`,
    startedAtMs: i + 1,
  }));
  state: GroupLeadership[] = Array.from({ length: GROUPS }, (_, i) => ({
    group: `zone-${i + 1}`,
    role: i % 3 === 0 ? 'leader' : 'follower',
    leader: `node-${'abc'[i % 3]}`,
    epoch: 100 + i,
    sinceMs: 1_700_000_000_000 + i,
    reason: 'elected',
    relinquished: null,
  }));
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  groups(): GroupLeadership[] {
    return this.state.map((g) => ({ ...g }));
  }
  members(): Member[] {
    return this.memberList.map((m) => ({ ...m }));
  }
  fence(): null {
    return null;
  }
  async switchover(): Promise<void> {}
  /** A group's state here changes (and with it, when given, its leader and epoch). */
  set(group: string, change: Partial<GroupLeadership>): void {
    const i = this.state.findIndex((g) => g.group === group);
    this.state[i] = { ...this.state[i]!, ...change };
  }
}

async function setup() {
  const leadership = new MutableLeadership();
  const registry = new Registry();
  const logs = captureLogs();
  const a = await apiAuth(registry, logs.logger);
  const app = await buildApp({
    auth: a.auth,
    audit: a.audit,
    node: 'node-a',
    version: '0.1.0',
    leadership,
    registry,
    groups: leadership.state.map((g) => g.group),
    drivers: new Map(),
    logger: logs.logger,
    startedAtMs: Date.now(),
  });
  const api = injectAs(app, a.as('viewer'));
  const read = async (query = '') => {
    const r = await api.inject(`/api/v1/cluster${query}`);
    expect(r.statusCode, r.body).toBe(200);
    return { body: r.json(), bytes: r.rawPayload.length, text: r.body };
  };
  return { api, leadership, registry, logs, read };
}

describe('GET /api/v1/cluster, change-only', () => {
  it('answers a reader without since exactly as before: node, members, groups and nothing more', async () => {
    const { read, leadership } = await setup();
    const plain = await read();
    expect(Object.keys(plain.body)).toEqual(['node', 'members', 'groups']);
    expect(plain.body.groups).toHaveLength(GROUPS);
    expect(plain.body.groups[0]).toEqual({
      id: 'zone-1',
      leader: 'node-a',
      epoch: 100,
      state: 'leader',
      sinceMs: 1_700_000_000_000,
      driving: false,
      reason: 'elected',
      problem: null,
      relinquished: null,
    });
    // The same bytes read after read (a take per read counts nothing a plain reader sees).
    expect((await read()).text).toBe(plain.text);
    leadership.set('zone-2', { leader: 'node-c', epoch: 900 });
    expect((await read()).body.groups[1]).toMatchObject({ leader: 'node-c', epoch: 900 });
  });

  it('sends nothing while unchanged, then only the group or member that changed', async () => {
    const { read, leadership } = await setup();
    const whole = await read('?changes=only');
    expect(whole.body).toMatchObject({ node: 'node-a', since: null });
    expect(whole.body.groups).toHaveLength(GROUPS);
    expect(whole.body.members).toHaveLength(3);
    expect(whole.body.rev).toMatch(/^[0-9a-f]{8}\.\d+$/);
    // The whole answer with a rev holds what a plain reader's does.
    const plain = (await read()).body;
    expect(whole.body.groups).toEqual(plain.groups);
    expect(whole.body.members).toEqual(plain.members);

    // Unchanged: a few dozen bytes instead of the whole answer.
    const same = await read(`?since=${whole.body.rev}&changes=only`);
    expect(same.body).toEqual({ node: 'node-a', rev: same.body.rev, since: whole.body.rev });
    expect(same.bytes).toBeLessThan(whole.bytes / 50);

    // A leader change: only that group.
    leadership.set('zone-7', { leader: 'node-c', epoch: 555, role: 'follower', reason: 'switchover' });
    const moved = await read(`?since=${same.body.rev}&changes=only`);
    expect(moved.body.since).toBe(same.body.rev);
    expect(moved.body.members).toEqual([]);
    expect(moved.body.groups).toEqual([
      expect.objectContaining({ id: 'zone-7', leader: 'node-c', epoch: 555 }),
    ]);
    expect(moved.body.removed).toEqual({ members: [], groups: [] });

    // A hand-on (this node gave a group up, and says why): only that group.
    const relinquished = { reason: 'no unit accepted a write for 2.0 s', atMs: 1_700_000_100_000 };
    leadership.set('zone-1', { role: 'follower', leader: 'node-b', epoch: 700, relinquished });
    const handedOn = await read(`?since=${moved.body.rev}&changes=only`);
    expect(handedOn.body.groups).toEqual([expect.objectContaining({ id: 'zone-1', relinquished })]);

    // A group's state here changes (candidate), nothing else: only that group.
    leadership.set('zone-50', { role: 'candidate' });
    const state = await read(`?since=${handedOn.body.rev}&changes=only`);
    expect(state.body.groups.map((g: { id: string }) => g.id)).toEqual(['zone-50']);

    // A member leaves: no group, and its name under removed.
    leadership.memberList = leadership.memberList.filter((m) => m.node !== 'node-b');
    const left = await read(`?since=${state.body.rev}&changes=only`);
    expect(left.body).toMatchObject({
      members: [],
      groups: [],
      removed: { members: ['node-b'], groups: [] },
    });
    // A member joins: only that member.
    leadership.memberList.push({ node: 'node-d', apiUrl: 'http://127.0.0.1:8104', startedAtMs: 9 });
    const joined = await read(`?since=${left.body.rev}&changes=only`);
    expect(joined.body.members).toEqual([expect.objectContaining({ node: 'node-d' })]);
    expect(joined.body.groups).toEqual([]);

    // An older revision gets everything after it, not only the latest change.
    const sinceFirst = await read(`?since=${whole.body.rev}&changes=only`);
    expect(sinceFirst.body.groups.map((g: { id: string }) => g.id)).toEqual(['zone-1', 'zone-7', 'zone-50']);
    expect(sinceFirst.body.removed.members).toEqual(['node-b']);
  });

  it('answers the whole list to a reader without changes=only when something changed', async () => {
    const { read, leadership } = await setup();
    const whole = await read('?changes=only');
    expect((await read(`?since=${whole.body.rev}`)).body).toEqual({
      node: 'node-a',
      rev: expect.any(String),
      since: whole.body.rev,
    });
    leadership.set('zone-3', { leader: 'node-b', epoch: 4000 });
    const after = await read(`?since=${whole.body.rev}`);
    expect(after.body.since).toBeNull();
    expect(after.body.groups).toHaveLength(GROUPS);
  });

  it('answers an unknown revision whole', async () => {
    const { read } = await setup();
    for (const q of ['?since=0badc0de.1&changes=only', '?since=0badc0de.1']) {
      const r = await read(q);
      expect(r.body.since, q).toBeNull();
      expect(r.body.groups, q).toHaveLength(GROUPS);
      expect(r.body.members, q).toHaveLength(3);
    }
    // A revision of this node newer than any it gave is unknown too.
    const whole = await read('?changes=only');
    const ahead = whole.body.rev.replace(/\.\d+$/, '.999999');
    expect((await read(`?since=${ahead}&changes=only`)).body.groups).toHaveLength(GROUPS);
  });

  it('refuses a malformed since or changes with the error body, a count and a log line', async () => {
    const { api, registry, logs } = await setup();
    const refusedCount = async () =>
      (await registry.getSingleMetricAsString('coolctl_api_requests_refused_total'))
        .split('\n')
        .filter((l) => l.startsWith('coolctl_api_requests_refused_total{') && l.includes('/api/v1/cluster'))
        .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
    for (const q of ['?since=x', '?since=1', '?since=0badc0de.1e3', '?since=0badc0de.1&changes=all']) {
      const r = await api.inject(`/api/v1/cluster${q}`);
      expect(r.statusCode, q).toBe(400);
      expect(r.json(), q).toMatchObject({ error: 'COOLCTL_E_BAD_REQUEST', details: [expect.any(String)] });
    }
    expect(await refusedCount()).toBe(4);
    expect(logs.parsed().some((l) => l.msg === 'request refused' && l.route === '/api/v1/cluster')).toBe(
      true,
    );
  });
});
