// Every JSON value coolctl keeps in etcd carries its writer's wire version (`wv`, docs/upgrade.md),
// on a real etcd: members, handover markers, operator state, alarms, users, tokens and audit
// entries. A value with no `wv` (a release from before values carried one) and one from a newer
// release with a field this one does not know are both read by the real readers; this release's
// writers stamp what they write; and a release whose oldest wire version is above a value's
// refuses it with the reason, a counter and a warn log line — the other values still read.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { raisedAlarm, type StoredAlarm } from '../../src/alarms/alarm.ts';
import { AlarmStore } from '../../src/alarms/alarm-store.ts';
import { AuditTrail } from '../../src/api/audit/audit-trail.ts';
import { AuthStore } from '../../src/api/auth/auth-store.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { EtcdPrefixKv } from '../../src/cluster/etcd/prefix-kv.ts';
import { SnapshotReader } from '../../src/cluster/etcd/snapshot.ts';
import { WIRE } from '../../src/version.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { makeNode, useEtcdFixture } from './harness.ts';

const fx = useEtcdFixture('value-version');
const PREFIX = '/coolctl-test/value-version';
type Client = ReturnType<typeof createEtcdClient>;
let client: Client;

beforeAll(() => {
  client = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 2000 });
});
afterAll(() => client?.close());

/** A logger whose warn-and-above lines the test reads. */
function capturingLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

function alarm(group: string, atMs: number): StoredAlarm {
  return raisedAlarm(
    { kind: 'inlet-recommended', group, subject: null, message: `${group} warm`, value: 28.1 },
    'n1',
    atMs,
  );
}

/**
 * One value of each kind under `prefix`, as JSON `stamp(body)` writes it (`name` keeps the keys of
 * two writers apart). Returns what the readers should find.
 */
async function putValues(prefix: string, name: string, stamp: (body: object) => string) {
  const a = alarm(name, 1_700_000_000_000);
  const puts: [string, string][] = [
    [`${prefix}/members/${name}`, stamp({ node: name, apiUrl: `http://${name}.test:1`, startedAtMs: 1 })],
    [`${prefix}/handover/${name}`, stamp({ from: `${name}-a`, to: `${name}-b`, epoch: 7, atMs: 1 })],
    [
      `${prefix}/operator/${name}`,
      stamp({ paused: true, overrides: { 'ahu-1': { fanPct: 40 } }, by: 'ops', atMs: 1, reason: name }),
    ],
    [`${prefix}/alarms/${a.id}`, stamp(a)],
    [`${prefix}/auth/users/${name}`, stamp({ name, role: 'viewer', passwordHash: 'x', createdAtMs: 1 })],
    [
      `${prefix}/auth/tokens/${name}`,
      stamp({ id: name, user: name, kind: 'token', label: '', hash: 'h', createdAtMs: 1, expiresAtMs: 4e12 }),
    ],
    [
      `${prefix}/audit/00000000000001-${name}-a`, // made of its atMs and node, as a node writes it
      stamp({
        kind: 'role',
        node: name,
        group: 'g',
        from: 'follower',
        to: 'leader',
        epoch: 7,
        reason: name,
        atMs: 1,
      }),
    ],
  ];
  // A member record counts only on its own lease (snapshot.ts parseMember), as a node registers it.
  const lease = client.lease(60, { autoKeepAlive: false });
  for (const [k, v] of puts)
    await (k.includes('/members/') ? lease.put(k).value(v).exec() : client.put(k).value(v).exec());
  return { alarmId: a.id };
}

function prefixKv(): EtcdPrefixKv {
  return new EtcdPrefixKv(client, 2000, {
    newClient: () => createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 2000 }),
  });
}

const oldStamp = (body: object) => JSON.stringify(body);
const newerStamp = (body: object) =>
  JSON.stringify({ ...body, wv: WIRE.version + 1, addedByNewerRelease: { anything: [1, 2] } });

describe('wire versions of etcd values', () => {
  it('reads values with no version (an old release) and from a newer one with unknown fields', async () => {
    const prefix = `${PREFIX}/read`;
    const old = await putValues(prefix, 'old', oldStamp);
    const newer = await putValues(prefix, 'newer', newerStamp);
    const ignored: string[] = [];
    const { logger, lines } = capturingLogger();

    const snap = await new SnapshotReader({
      client,
      prefix,
      callTimeoutMs: 2000,
      now: () => performance.now(),
      logger,
      onIgnored: (kind) => ignored.push(kind),
    }).read(['old', 'newer']);
    for (const name of ['old', 'newer']) {
      expect(snap.members.get(name)).toMatchObject({ node: name, apiUrl: `http://${name}.test:1` });
      expect(snap.markers.get(name)).toMatchObject({ from: `${name}-a`, to: `${name}-b`, epoch: 7 });
      expect(snap.operators.get(name)).toEqual({
        paused: true,
        overrides: { 'ahu-1': { fanPct: 40 } },
        by: 'ops',
        atMs: 1,
        reason: name,
      });
    }
    expect(snap.operatorsInvalid.size).toBe(0);

    const registry = new Registry();
    const alarms = new AlarmStore({ client, prefix, callTimeoutMs: 2000, logger, registry });
    expect((await alarms.get(old.alarmId))?.message).toBe('old warm');
    expect((await alarms.get(newer.alarmId))?.message).toBe('newer warm');

    const auth = new AuthStore({ kv: prefixKv(), prefix, logger, registry, now: () => 1_000 });
    await auth.start();
    try {
      expect(auth.listUsers().map((u) => u.name)).toEqual(['newer', 'old']);
      expect(
        auth
          .listTokens()
          .map((t) => t.id)
          .sort(),
      ).toEqual(['newer', 'old']);
      // The stamp is the store's, not a field of the record.
      expect(auth.listUsers()[0]).toEqual({ name: 'newer', role: 'viewer', createdAtMs: 1 });
    } finally {
      await auth.stop();
    }

    const audit = new AuditTrail({ kv: prefixKv(), prefix, logger, registry });
    const { entries } = await audit.list();
    expect(entries.map((e) => (e as { reason: string }).reason)).toEqual(['old', 'newer']);
    expect(entries[1]).not.toHaveProperty('wv');

    // The fixture's markers are put without a lease, so each is also a ghost (no leader's handover:
    // hostile-markers.test.ts); it is still read, which is what this test is about.
    expect(ignored.filter((k) => k !== 'ghost')).toEqual([]);
    expect(lines.filter((l) => l.kind !== 'ghost')).toEqual([]);
    expect(await registry.metrics()).not.toMatch(/_(invalid|unreadable)_total(\{[^}]*\})? [1-9]/);
  });

  it("stamps what this release's writers put with its wire version", async () => {
    const prefix = `${PREFIX}/write`;
    const registry = new Registry();
    const stampOf = async (key: string) =>
      (JSON.parse((await client.get(key).string()) ?? 'null') as { wv?: unknown } | null)?.wv;

    let n1: EtcdLeadership | undefined;
    try {
      n1 = makeNode('n1', { etcd: fx.etcd.clientOptions(), prefix, groups: ['g1'], dataRoot: fx.root.dir });
      await n1.start();
      await waitFor('n1 is a member', () => n1!.members().some((m) => m.node === 'n1'));
      await n1.updateOperator('g1', (cur) => ({ ...cur, paused: true, by: 'ops', reason: 'stamp' }));
      expect(await stampOf(`${prefix}/members/n1`)).toBe(WIRE.version);
      expect(await stampOf(`${prefix}/operator/g1`)).toBe(WIRE.version);
    } finally {
      await n1?.stop();
    }

    const alarms = new AlarmStore({ client, prefix, callTimeoutMs: 2000, logger: quietLogger, registry });
    const a = alarm('g1', Date.now());
    expect(await alarms.raise(a, 'inlet-recommended~g1~-')).toBe(true);
    expect(await stampOf(`${prefix}/alarms/${a.id}`)).toBe(WIRE.version);
    expect(await alarms.get(a.id)).toEqual(a);

    const auth = new AuthStore({ kv: prefixKv(), prefix, logger: quietLogger, registry });
    await auth.addUser('alice', 'operator', 'correct horse battery');
    const { record } = await auth.issue('alice', 'token', 60_000, 'grafana');
    expect(await stampOf(`${prefix}/auth/users/alice`)).toBe(WIRE.version);
    expect(await stampOf(`${prefix}/auth/tokens/${record.id}`)).toBe(WIRE.version);

    const audit = new AuditTrail({ kv: prefixKv(), prefix, logger: quietLogger, registry });
    await audit.record({
      kind: 'role',
      node: 'n1',
      group: 'g1',
      from: 'candidate',
      to: 'leader',
      epoch: 3,
      reason: 'stamp',
    });
    const [entry] = (await audit.list()).entries;
    expect(entry).toMatchObject({ kind: 'role', reason: 'stamp' });
    expect(entry).not.toHaveProperty('wv');
    const raw = await client.getAll().prefix(`${prefix}/audit/`).strings();
    expect(Object.values(raw).map((v) => (JSON.parse(v) as { wv: number }).wv)).toEqual([WIRE.version]);
  });

  it('refuses, counts and logs values below the wire versions a release still reads', async () => {
    // A later release: speaks 2..3, so values stamped 1 — or not at all — mean what it no longer reads.
    const later = Object.freeze({ version: 3, oldest: 2 });
    vi.resetModules();
    vi.doMock('../../src/version.ts', async (importOriginal) => {
      const actual = await importOriginal<typeof import('../../src/version.ts')>();
      return {
        ...actual,
        WIRE: later,
        parseWireJson: (text: string, range = later) => actual.parseWireJson(text, range),
      };
    });
    try {
      const [
        { SnapshotReader: Reader },
        { OperatorStore },
        { AlarmStore: Alarms },
        { AuthStore: Auth },
        { AuditTrail: Audit },
      ] = await Promise.all([
        import('../../src/cluster/etcd/snapshot.ts'),
        import('../../src/cluster/etcd/operator-store.ts'),
        import('../../src/alarms/alarm-store.ts'),
        import('../../src/api/auth/auth-store.ts'),
        import('../../src/api/audit/audit-trail.ts'),
      ]);
      const prefix = `${PREFIX}/refuse`;
      const none = await putValues(prefix, 'none', oldStamp);
      const v1 = await putValues(prefix, 'v1', (b) => JSON.stringify({ ...b, wv: 1 }));
      const v2 = await putValues(prefix, 'v2', (b) => JSON.stringify({ ...b, wv: 2 }));
      const { logger, lines } = capturingLogger();
      const registry = new Registry();
      const groups = ['none', 'v1', 'v2'];

      const ignored: string[] = [];
      const reader = new Reader({
        client,
        prefix,
        callTimeoutMs: 2000,
        now: () => performance.now(),
        logger,
        onIgnored: (kind) => ignored.push(kind),
      });
      const snap = await reader.read(groups);
      expect([...snap.members.keys()]).toEqual(['v2']);
      expect([...snap.markers.keys()]).toEqual(['v2']);
      // Members and markers: two of each refused, once per value however often they are read.
      await reader.read(groups);
      expect(ignored.filter((k) => k !== 'ghost')).toEqual(['wire', 'wire', 'wire', 'wire']);
      const operatorInvalid: string[] = [];
      const operators = new OperatorStore({
        client,
        prefix,
        callTimeoutMs: 2000,
        logger,
        onInvalid: (g) => operatorInvalid.push(g),
      });
      operators.apply(snap, groups);
      expect(operatorInvalid).toEqual(['none', 'v1']);
      // Never "not paused" from a value it cannot read: with no valid one known, the group pauses.
      expect(operators.state('v1')).toMatchObject({ paused: true, by: null });
      expect(operators.problem('v1')?.problem).toMatch(
        /written at wire version 1; release .* reads wire versions 2\.\.3/,
      );
      expect(operators.state('v2')).toMatchObject({ paused: true, reason: 'v2' });

      const alarms = new Alarms({ client, prefix, callTimeoutMs: 2000, logger, registry });
      expect(await alarms.get(none.alarmId)).toBeNull();
      expect(await alarms.get(v1.alarmId)).toBeNull();
      expect((await alarms.get(v2.alarmId))?.message).toBe('v2 warm');
      expect((await alarms.list()).map((a) => a.group)).toEqual(['v2']);

      const auth = new Auth({ kv: prefixKv(), prefix, logger, registry, now: () => 1_000 });
      await auth.start();
      try {
        expect(auth.listUsers().map((u) => u.name)).toEqual(['v2']);
        expect(auth.listTokens().map((t) => t.id)).toEqual(['v2']);
      } finally {
        await auth.stop();
      }

      const audit = new Audit({ kv: prefixKv(), prefix, logger, registry });
      expect((await audit.list()).entries.map((e) => (e as { reason: string }).reason)).toEqual(['v2']);
      await audit.list();

      const metrics = await registry.metrics();
      expect(metrics).toMatch(/^coolctl_alarm_values_invalid_total 2$/m);
      expect(metrics).toMatch(/^coolctl_auth_records_invalid_total\{kind="user"\} 2$/m);
      expect(metrics).toMatch(/^coolctl_auth_records_invalid_total\{kind="token"\} 2$/m);
      expect(metrics).toMatch(/^coolctl_audit_entries_unreadable_total 2$/m);

      // One warn (or error) line per refused value, each saying which version wrote it and why.
      const refusals = lines.filter((l) =>
        /wire version 1.* reads wire versions 2\.\.3/.test(String(l.why ?? l.problem ?? '')),
      );
      expect(lines.every((l) => (l.level as number) >= 40)).toBe(true);
      expect(refusals).toHaveLength(2 * 7);
      expect(refusals.filter((l) => /no "wv"/.test(String(l.why ?? l.problem)))).toHaveLength(7);
    } finally {
      vi.doUnmock('../../src/version.ts');
      vi.resetModules();
    }
  });
});
