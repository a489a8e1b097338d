// A quiet hall's evaluation makes no condition objects: evaluateGroup given the open conditions
// returns only what can change etcd (active, or open), with the same verdicts, texts and memory
// as the full evaluation; the sensor store's per-rack figures are read as they are, in rack order.
import { describe, expect, it } from 'vitest';
import { type Condition, evaluateGroup, type GroupSnapshot, newMemory } from '../../src/alarms/rules.ts';
import { alarmDelays, alarmLimits } from '../../src/config/alarm-schema.ts';

const RACKS = ['R3', 'R1', 'R10', 'R2'];

function snapshot(nowMs: number, inlets: number[], mode: string, link: 'up' | 'down'): GroupSnapshot {
  return {
    group: 'zone-1',
    nowMs,
    rackInletsC: { racks: RACKS, c: Float64Array.from(inlets) },
    rackDewPointsC: { racks: RACKS, c: Float64Array.from(inlets, (c) => (Number.isNaN(c) ? c : c - 12)) },
    verdict: 'ok',
    configuredInletSensors: 8,
    units: [
      { id: 'ahu-1', link, mode },
      { id: 'ahu-2', link: 'up', mode: 'remote' },
    ],
    drive: { driving: true, problem: null },
    limits: alarmLimits({ inlet: { recommendedC: 27, allowableC: 32, hysteresisC: 1, delayS: 5 } }),
    delays: alarmDelays({ delays: { unitCommLossS: 3 } }),
  };
}

const view = (c: Condition) => ({
  key: c.key,
  verdict: c.verdict,
  value: c.value,
  message: c.message,
  reason: c.reason,
});

describe('alarm evaluation of a quiet hall', () => {
  it('returns no condition when nothing is active or open', () => {
    const m = newMemory();
    const open = new Map<string, string>();
    for (let t = 0; t < 20; t++) {
      const out = evaluateGroup(snapshot(t * 1000, [22, 23, 24, 22.5], 'remote', 'up'), m, open);
      expect(out).toEqual([]);
    }
    // The same hall judged in full: every rack, unit and group condition, none active.
    const all = evaluateGroup(snapshot(20_000, [22, 23, 24, 22.5], 'remote', 'up'), m);
    expect(all.length).toBe(4 * 4 + 2 + 2 * 3 + 1);
    expect(all.filter((c) => c.verdict === 'active')).toEqual([]);
  });

  it('judges as the full evaluation does: the same verdicts, texts and memory, through raise and clear', () => {
    const full = newMemory();
    const lean = newMemory();
    const open = new Map<string, string>();
    // A rack heats past both limits and back, one rack loses its sensors, a unit trips and loses its link.
    const script: [number[], string, 'up' | 'down'][] = [];
    for (let t = 0; t < 60; t++) {
      const hot = t >= 10 && t < 35 ? 33 : t >= 35 && t < 40 ? 26.5 : 22;
      const lost = t >= 20 && t < 30 ? Number.NaN : 23;
      script.push([
        [hot, lost, 24, 22 + t * 0.2],
        t >= 15 && t < 25 ? 'tripped' : 'remote',
        t >= 40 && t < 50 ? 'down' : 'up',
      ]);
    }
    let raised = 0;
    let cleared = 0;
    for (const [t, [inlets, mode, link]] of script.entries()) {
      const s = snapshot(t * 1000, inlets, mode, link);
      const expected = evaluateGroup(s, full)
        .filter((c) => c.verdict === 'active' || open.has(c.key))
        .map(view);
      const got = evaluateGroup(s, lean, open).map(view);
      expect(got).toEqual(expected);
      expect([...lean.since]).toEqual([...full.since]);
      // The engine's reconcile, as far as the open index goes.
      for (const c of got) {
        if (c.verdict === 'active' && !open.has(c.key)) {
          open.set(c.key, `id-${t}`);
          raised++;
        } else if (c.verdict === 'clear' && open.has(c.key)) {
          open.delete(c.key);
          cleared++;
        }
      }
    }
    expect(raised).toBeGreaterThan(4);
    expect(cleared).toBeGreaterThan(2);
  });

  it('reads the store figures in rack-name order, NaN as unknown, as the old per-rack object did', () => {
    const inlets = [22, Number.NaN, 24, 25];
    const typed = evaluateGroup(snapshot(0, inlets, 'remote', 'up'), newMemory()).map(view);
    const asRecord = evaluateGroup(
      {
        ...snapshot(0, inlets, 'remote', 'up'),
        rackInletsC: { R3: 22, R1: null, R10: 24, R2: 25 },
        rackDewPointsC: { R3: 10, R1: null, R10: 12, R2: 13 },
      },
      newMemory(),
    ).map(view);
    expect(typed).toEqual(asRecord);
    expect(typed.filter((c) => c.key.startsWith('inlet-allowable')).map((c) => c.key.split('~')[2])).toEqual([
      'R1',
      'R10',
      'R2',
      'R3',
    ]);
  });
});
