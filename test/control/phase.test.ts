// Groups tick at their own phase of the period, so one node's groups do not read and write all
// their units in the same instant (docs/daemon.md).
import { describe, expect, it } from 'vitest';
import { phaseOfMs } from '../../src/control/group-driver.ts';

describe('group phases', () => {
  it('spread 100 groups over the period: no tenth of it holds more than a fifth of them', () => {
    for (const name of ['zone-', 'group-', 'hall-a/row-']) {
      const ids = Array.from({ length: 100 }, (_, i) => `${name}${i + 1}`);
      const slots = new Array<number>(10).fill(0);
      for (const id of ids) {
        const p = phaseOfMs(id, 1000);
        expect(p).toBeGreaterThanOrEqual(0);
        expect(p).toBeLessThan(1000);
        slots[Math.floor(p / 100)]!++;
      }
      expect(Math.max(...slots)).toBeLessThanOrEqual(20);
      expect(Math.min(...slots)).toBeGreaterThan(0);
    }
  });

  it('is the same on every node and every start, and within any period length', () => {
    expect(phaseOfMs('zone-7', 1000)).toBe(phaseOfMs('zone-7', 1000));
    for (const period of [1, 50, 200, 999.5, 60_000]) {
      const p = phaseOfMs('zone-7', period);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThan(Math.max(1, Math.round(period)));
    }
  });
});
