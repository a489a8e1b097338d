// Failsafe timing and promises, with a fake clock and a transport that answers as told: the hold
// is SEND time + window − margin and only grows when every member backs us; a member that reaches
// etcd, leads a group itself, or promised it elsewhere says no; a promise keeps a node out of the
// group in decideGroup until it ends.
import { afterEach, describe, expect, it } from 'vitest';
import { decideGroup } from '../../src/cluster/decide.ts';
import {
  Failsafe,
  type FailsafeAnswer,
  type FailsafeGroup,
  type FailsafeTransport,
} from '../../src/cluster/failsafe.ts';
import { quietLogger, waitFor } from '../helpers.ts';

class FakeTransport implements FailsafeTransport {
  answers = new Map<string, FailsafeAnswer>();
  sent = 0;
  responder: ((from: string, groups: FailsafeGroup[], windowMs: number) => FailsafeAnswer) | undefined;
  async failsafePing(nodes: string[]): Promise<Map<string, FailsafeAnswer>> {
    this.sent++;
    return new Map(nodes.map((n) => [n, this.answers.get(n) ?? { ok: false, reason: 'silent' }]));
  }
  setFailsafeResponder(
    fn: (from: string, groups: FailsafeGroup[], windowMs: number) => FailsafeAnswer,
  ): void {
    this.responder = fn;
  }
}

let clock = 0;
const live: Failsafe[] = [];
function failsafe(t: FakeTransport, facts: { lastEtcdOkMs?: number; leads?: string[] } = {}): Failsafe {
  const f = new Failsafe(
    {
      transport: t,
      windowMs: 2000,
      marginMs: 400,
      intervalMs: 20,
      reachableWithinMs: 600,
      now: () => clock,
      logger: quietLogger,
    },
    {
      lastEtcdOkMs: () => facts.lastEtcdOkMs ?? Number.NEGATIVE_INFINITY,
      leads: (g) => facts.leads?.includes(g) ?? false,
    },
  );
  live.push(f);
  return f;
}

afterEach(() => {
  for (const f of live.splice(0)) f.stop();
  clock = 0;
});

describe('failsafe', () => {
  it('holds for window − margin from the round’s send time, only while every member backs us', async () => {
    const t = new FakeTransport();
    t.answers.set('b', { ok: true, reason: 'ok' });
    t.answers.set('c', { ok: true, reason: 'ok' });
    const f = failsafe(t);
    clock = 1000;
    f.engage([{ group: 'g1', epoch: 5 }], ['b', 'c']);
    await waitFor('a round backs us', () => f.holds());
    expect(f.remainingMs()).toBe(1600);
    // c goes silent: rounds keep going but no longer extend the hold, which then ends.
    t.answers.delete('c');
    const sent = t.sent;
    await waitFor('more rounds', () => t.sent > sent + 2);
    clock = 2599;
    expect(f.holds()).toBe(true);
    clock = 2600;
    expect(f.holds()).toBe(false);
  });

  it('a member says no while it reaches etcd, while it leads the group, or when it promised the group to another', () => {
    const t = new FakeTransport();
    clock = 10_000;
    failsafe(t, { lastEtcdOkMs: 9_700, leads: ['g2'] });
    const ask = t.responder!;
    expect(ask('a', [{ group: 'g1', epoch: 5 }], 2000)).toMatchObject({
      ok: false,
      reason: /reached etcd 300 ms ago/,
    });

    const t2 = new FakeTransport();
    const member = failsafe(t2, { lastEtcdOkMs: 5_000, leads: ['g2'] });
    expect(t2.responder!('a', [{ group: 'g2', epoch: 5 }], 2000)).toMatchObject({
      ok: false,
      reason: 'I lead g2',
    });
    expect(t2.responder!('a', [{ group: 'g1', epoch: 5 }], 2000).ok).toBe(true);
    expect(member.promisedTo('g1')).toBe('a');
    expect(t2.responder!('b', [{ group: 'g1', epoch: 6 }], 2000)).toMatchObject({
      ok: false,
      reason: /promised g1/,
    });
    clock = 12_000;
    expect(member.promisedTo('g1')).toBeNull();
  });

  it('a restarted node leads nothing for one window: its earlier run’s promises may still run', () => {
    const t = new FakeTransport();
    clock = 50_000; // the new run starts; the old one promised at most one window before
    const f = failsafe(t);
    const facts = {
      me: 'b',
      leaseHex: 'b1',
      registered: true,
      role: 'candidate' as const,
      queue: [{ node: 'b', leaseHex: 'b1', createRevision: 42, key: 'k' }],
      marker: undefined,
      members: new Set(['a', 'b']),
      mayAct: true,
      fresh: true,
    };
    expect(f.quarantined()).toBe(true);
    expect(decideGroup({ ...facts, quarantined: f.quarantined() })).toMatchObject({
      role: 'candidate',
      reason: /earlier run/,
    });
    clock = 51_999;
    expect(f.quarantined()).toBe(true);
    clock = 52_000;
    expect(f.quarantined()).toBe(false);
    expect(decideGroup({ ...facts, quarantined: f.quarantined() })).toMatchObject({ role: 'leader' });
  });

  it('promises no window longer than its own (so one window of quarantine covers every promise)', () => {
    const t = new FakeTransport();
    clock = 10_000;
    const member = failsafe(t, { lastEtcdOkMs: 0 });
    expect(t.responder!('a', [{ group: 'g1', epoch: 5 }], 2001)).toMatchObject({
      ok: false,
      reason: /longer/,
    });
    expect(member.promisedTo('g1')).toBeNull();
    expect(t.responder!('a', [{ group: 'g1', epoch: 5 }], 2000).ok).toBe(true);
    clock = 11_999;
    expect(member.promisedTo('g1')).toBe('a');
    clock = 12_000;
    expect(member.promisedTo('g1')).toBeNull();
  });

  it('a promise keeps a node first in line from leading until it ends', () => {
    const facts = {
      me: 'b',
      leaseHex: 'b1',
      registered: true,
      role: 'candidate' as const,
      queue: [{ node: 'b', leaseHex: 'b1', createRevision: 42, key: 'k' }],
      marker: undefined,
      members: new Set(['a', 'b']),
      mayAct: true,
      fresh: true,
    };
    expect(decideGroup({ ...facts, promisedTo: 'a' })).toMatchObject({
      role: 'candidate',
      reason: /promised a/,
    });
    expect(decideGroup({ ...facts, promisedTo: null })).toMatchObject({ role: 'leader', epoch: 42 });
  });
});
