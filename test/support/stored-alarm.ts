// A stored alarm for the alarm tests: a unit trip of zone-1, open, unacknowledged, unshelved;
// `over` changes what a test is about.
import type { StoredAlarm } from '../../src/alarms/alarm.ts';

export const storedAlarm = (over: Partial<StoredAlarm> = {}): StoredAlarm => ({
  v: 1,
  id: 'unit-tripped~zone-1~AHU-01~m1abc',
  kind: 'unit-tripped',
  severity: 'major',
  group: 'zone-1',
  subject: 'AHU-01',
  message: 'unit AHU-01 tripped',
  value: null,
  raisedAtMs: Date.parse('2026-12-04T10:00:00Z'),
  raisedBy: 'n1',
  clearedAtMs: null,
  clearedBy: null,
  clearReason: null,
  ack: null,
  shelf: null,
  ...over,
});
