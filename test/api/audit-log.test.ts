// The audit log stays within its capacity (oldest first out, the drop counted), pages by seq, and
// keeps no request body too big to be an operator action.
import { describe, expect, it } from 'vitest';
import { AuditLog, MAX_PARAMS_CHARS, type OperatorAction } from '../../src/api/audit-log.ts';

const action = (n: number, params: unknown = { fanPct: n }): OperatorAction => ({
  kind: 'operator',
  action: 'commands',
  method: 'POST',
  path: '/api/v1/groups/zone-1/commands',
  group: 'zone-1',
  params,
  clientIp: '127.0.0.1',
  operator: null,
  status: 200,
  error: null,
});

describe('AuditLog', () => {
  it('keeps the newest `capacity` entries, oldest first, and counts what it dropped', () => {
    let now = 1000;
    const log = new AuditLog(3, { now: () => now++ });
    expect(log.list()).toEqual([]);
    for (let i = 1; i <= 7; i++) log.record(action(i));
    const all = log.list();
    expect(all.map((e) => e.seq)).toEqual([5, 6, 7]);
    expect(all.map((e) => (e.kind === 'operator' ? (e.params as { fanPct: number }).fanPct : null))).toEqual([
      5, 6, 7,
    ]);
    expect(all[0]!.atMs).toBe(1004);
    expect(log.lastSeq).toBe(7);
    expect(log.dropped).toBe(4);
  });

  it('pages by seq and limit', () => {
    const log = new AuditLog(10);
    for (let i = 1; i <= 8; i++)
      log.record(
        i % 2
          ? action(i)
          : { kind: 'role', group: 'zone-1', from: 'follower', to: 'leader', epoch: i, reason: 'won' },
      );
    expect(log.list({ since: 5 }).map((e) => e.seq)).toEqual([6, 7, 8]);
    expect(log.list({ limit: 2 }).map((e) => e.seq)).toEqual([7, 8]);
    expect(log.list({ since: 2, limit: 3 }).map((e) => e.seq)).toEqual([6, 7, 8]);
    expect(log.list({ since: 8 })).toEqual([]);
    expect(log.list({ since: 99 })).toEqual([]);
    expect(log.list({ since: 5 })[0]).toMatchObject({ kind: 'role', epoch: 6 });
  });

  it('keeps a request body only when it is small enough, and a copy of it', () => {
    const log = new AuditLog(4);
    const params = { fanPct: 60 };
    const kept = log.record(action(1, params));
    params.fanPct = 99;
    expect(kept).toMatchObject({ params: { fanPct: 60 } });
    expect(log.record(action(2, { blob: 'x'.repeat(MAX_PARAMS_CHARS) })).params).toBeNull();
    expect(log.record(action(3, null)).params).toBeNull();
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new AuditLog(0)).toThrow(RangeError);
    expect(() => new AuditLog(2.5)).toThrow(RangeError);
  });
});
