// The inlet rise-rate rule's memory stays small when the rules run every second: a node leading
// 5 000 racks kept a sample per rack per evaluation for 1.5 windows (~900 objects a rack, ~250 MB
// at the scale bench's hall after 15 minutes). The rate it judges is still the window's.
import { describe, expect, it } from 'vitest';
import { evaluateGroup, type GroupSnapshot, newMemory } from '../../src/alarms/rules.ts';
import { alarmDelays, alarmLimits } from '../../src/config/alarm-schema.ts';

const snapshot = (nowMs: number, inletC: number, windowS: number): GroupSnapshot => ({
  group: 'zone-1',
  nowMs,
  rackInletsC: { R1: inletC },
  rackDewPointsC: {},
  verdict: 'ok',
  configuredInletSensors: 3,
  units: [],
  drive: { driving: true, problem: null },
  limits: alarmLimits({ riseRate: { windowS, delayS: 0 } }),
  delays: alarmDelays(undefined),
});

describe('inlet rise-rate memory', () => {
  it('keeps a few dozen samples a rack when evaluated every second, and judges the same rate', () => {
    const m = newMemory();
    const rate = (t: number, c: number) =>
      evaluateGroup(snapshot(t * 1000, c, 600), m).find((x) => x.kind === 'inlet-rise-rate')!;
    let last = rate(0, 22);
    // 0.5 °C per minute = 30 °C/h, one evaluation a second for 15 minutes.
    for (let t = 1; t <= 900; t++) {
      last = rate(t, 22 + (0.5 * t) / 60);
      if (t < 300) expect(last.verdict).toBe('hold');
      expect(m.inlets.get('R1')!.length).toBeLessThanOrEqual(31);
    }
    expect(last.verdict).toBe('active');
    expect(last.value).toBeCloseTo(30, 1);
    // Steady from then on: the rate falls back and clears once the window holds only the plateau.
    for (let t = 901; t <= 1600; t++) last = rate(t, 29.5);
    expect(last.verdict).toBe('clear');
    expect(m.inlets.get('R1')!.length).toBeLessThanOrEqual(31);
  });
});
