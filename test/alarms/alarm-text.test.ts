// A stored alarm's text is bounded wherever it comes from: a row any holder of etcd credentials can
// write, or a message that quotes a device's long error. The API serves it, every receiver gets it
// and the log shows it, so megabytes there would be megabytes in all three.
import { describe, expect, it } from 'vitest';
import {
  ALARM_NAME_MAX,
  ALARM_TEXT_MAX,
  alarmId,
  clearedAlarm,
  conditionKey,
  parseStoredAlarm,
  raisedAlarm,
} from '../../src/alarms/alarm.ts';

const AT = Date.parse('2026-12-06T06:00:00Z');
const id = alarmId(conditionKey('group-not-driven', 'zone-1', null), AT);

describe('alarm text', () => {
  it('a row with a 1 MB message, comment and user names is read clipped, still valid', () => {
    const huge = 'x'.repeat(1_000_000);
    const row = {
      v: 1,
      id,
      kind: 'group-not-driven',
      severity: 'critical',
      group: 'zone-1',
      subject: null,
      message: huge,
      value: null,
      raisedAtMs: AT,
      raisedBy: huge,
      clearedAtMs: null,
      clearedBy: null,
      clearReason: null,
      ack: { user: huge, atMs: AT, comment: huge },
      shelf: null,
    };
    const a = parseStoredAlarm(id, JSON.stringify(row));
    expect(JSON.stringify(a).length).toBeLessThan(4 * ALARM_TEXT_MAX);
    expect(a.message.startsWith('xxx')).toBe(true);
    expect(a.message).toMatch(/… \(1000000 chars\)$/);
    expect(a.raisedBy.length).toBeLessThanOrEqual(ALARM_NAME_MAX + 20);
    expect(a.ack?.comment.length).toBeLessThanOrEqual(ALARM_TEXT_MAX + 20);
    // A row within the bounds comes back as it was.
    const short = { ...row, message: 'zone-1 has no driver', raisedBy: 'n1', ack: null };
    expect(parseStoredAlarm(id, JSON.stringify(short))).toEqual(short);
  });

  it('a raise whose message quotes a long device error, and a long clear reason, are clipped where made', () => {
    const a = raisedAlarm(
      {
        kind: 'group-not-driven',
        group: 'zone-1',
        subject: null,
        message: `no driver: ${'e'.repeat(50_000)}`,
        value: null,
      },
      'n1',
      AT,
    );
    expect(a.message.length).toBeLessThanOrEqual(ALARM_TEXT_MAX + 20);
    const c = clearedAlarm(a, { atMs: AT + 1, by: 'n1', reason: 'r'.repeat(50_000) });
    expect(c.clearReason!.length).toBeLessThanOrEqual(ALARM_TEXT_MAX + 20);
  });
});
