// A hand-on's reason stays short whatever the group's size: it is read by every dashboard refresh
// (the cluster answer), kept in etcd and logged. The first units' errors are named, the rest counted.
import { describe, expect, it } from 'vitest';
import { REASON_UNIT_ERRORS_MAX, undrivenReason } from '../../src/control/group-driver.ts';

const timedOut = (i: number) =>
  `AHU-${String(i).padStart(3, '0')}: write timed out after 1000 ms (DEVICE_TIMEOUT) at modbus://127.0.0.1:${15000 + i}`;

describe('the reason a group is handed on for want of accepted writes', () => {
  it('names how long, the bound and every error of a small group', () => {
    expect(undrivenReason(2_050, 2_000, ['A: ECONNREFUSED 127.0.0.1:1502'])).toBe(
      'no unit accepted a write for 2.0 s (bound 2.0 s): A: ECONNREFUSED 127.0.0.1:1502',
    );
    expect(undrivenReason(2_050, 2_000, [])).toBe('no unit accepted a write for 2.0 s (bound 2.0 s)');
  });

  it('names the first units of a large group and counts the rest: 40 failing units, one short line', () => {
    const reason = undrivenReason(
      3_000,
      2_000,
      Array.from({ length: 40 }, (_, i) => timedOut(i)),
    );
    for (let i = 0; i < REASON_UNIT_ERRORS_MAX; i++) expect(reason).toContain(timedOut(i));
    expect(reason).not.toContain('AHU-003');
    expect(reason).toMatch(/; and 37 more units failing/);
    expect(reason.length).toBeLessThan(800);
  });

  it('clips a unit error that quotes a long answer', () => {
    const reason = undrivenReason(3_000, 2_000, [`B: garbage answer ${'x'.repeat(5_000)}`]);
    expect(reason.length).toBeLessThan(400);
    expect(reason).toMatch(/B: garbage answer x+… \(5018 chars\)/);
  });
});
