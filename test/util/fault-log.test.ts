// FaultLog: a fault that recurs every period is one line a minute; a flapping one two; the recovery
// is logged only when a failure line is its news.
import { describe, expect, it } from 'vitest';
import { FaultLog } from '../../src/util/log-limit.ts';

describe('FaultLog', () => {
  it('logs the first failure, then one a minute with the count not logged, and the recovery once', () => {
    let now = 0;
    const f = new FaultLog(() => now, 60_000);
    expect(f.failure('AHU-01')).toBe(0);
    let written = 0;
    for (now = 200; now < 60_000; now += 200) if (f.failure('AHU-01') >= 0) written++;
    expect(written).toBe(0);
    now = 60_000;
    expect(f.failure('AHU-01')).toBe(299);
    // Another unit is another subject.
    expect(f.failure('AHU-02')).toBe(0);
    expect(f.recovery('AHU-01')).toBe(true);
    expect(f.recovery('AHU-01')).toBe(false);
  });

  it('a flapping fault costs at most a failure and a recovery line a minute', () => {
    let now = 0;
    const f = new FaultLog(() => now, 60_000);
    let lines = 0;
    for (; now < 120_000; now += 1000) {
      if (f.failure('etcd') >= 0) lines++;
      if (f.recovery('etcd')) lines++;
    }
    expect(lines).toBe(4);
  });

  it('a failure held back by a flap is written once the minute is over, however steady it stays', () => {
    // The caller's rule (group driver, alarm engine, leadership): ask on a new failure, and keep
    // asking while the last line written is not a failure.
    let now = 0;
    const f = new FaultLog(() => now, 60_000);
    let last: string | null = null;
    const lines: string[] = [];
    const fail = (msg: string) => {
      if (msg !== last || !f.reported('AHU-01')) {
        const n = f.failure('AHU-01');
        if (n >= 0) lines.push(`${msg} (${n} not logged)`);
      }
      last = msg;
    };
    const ok = () => {
      if (last !== null && f.recovery('AHU-01')) lines.push('works again');
      last = null;
    };
    fail('A');
    now = 1_000;
    ok();
    // Fails again within the minute, and then stays failing with one message for an hour.
    for (now = 2_000; now < 3_600_000; now += 1_000) fail('B');
    expect(lines[0]).toBe('A (0 not logged)');
    expect(lines[1]).toBe('works again');
    expect(lines[2]).toMatch(/^B \(\d+ not logged\)$/);
    expect(lines).toHaveLength(3);
  });
});
