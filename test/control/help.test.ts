// Help between groups, priced: a group answers a neighbour's call for air only while its own fans
// run well under the caller's (fan power ∝ speed³), and answers a unit down next door always. The
// pure rule, what it reads of a neighbour's row (any shape), and the hall it makes: at full load the
// priced split runs the hall on less fan power than answering every call, inlets held alike.
import { describe, expect, it } from 'vitest';
import { resolveTuning } from '../../src/config/tuning-schema.ts';
import { answeredHelpK, callFrom } from '../../src/control/law/help.ts';
import { ControlHall } from '../support/control-hall.ts';

const help = { priceGapPct: 5, priceBandPct: 5 };

describe('answeredHelpK', () => {
  it('answers a call in full well under the caller, fading to nothing at the gap', () => {
    const call = { helpK: 2, demandPct: 90, helpDownK: 0 };
    expect(answeredHelpK(70, [call], help)).toBe(2);
    expect(answeredHelpK(80, [call], help)).toBe(2);
    expect(answeredHelpK(82.5, [call], help)).toBeCloseTo(1, 9);
    expect(answeredHelpK(85, [call], help)).toBe(0);
    expect(answeredHelpK(95, [call], help)).toBe(0);
  });

  it('answers a unit down next door whatever its own demand, and the rest of the call by price', () => {
    const call = { helpK: 3, demandPct: 100, helpDownK: 2 };
    expect(answeredHelpK(100, [call], help)).toBe(2);
    expect(answeredHelpK(92.5, [call], help)).toBeCloseTo(2, 9);
    expect(answeredHelpK(90, [call], help)).toBe(3);
  });

  it('answers in full what it cannot price: a row without demand or down part, or no demand of its own yet', () => {
    expect(answeredHelpK(99, [{ helpK: 1.5 }], help)).toBe(1.5);
    expect(answeredHelpK(99, [{ helpK: 1.5, demandPct: 50 }], help)).toBe(1.5);
    expect(answeredHelpK(undefined, [{ helpK: 1.5, demandPct: 50, helpDownK: 0 }], help)).toBe(1.5);
  });

  it('takes the largest answered call; no call, no help', () => {
    const calls = [
      { helpK: 4, demandPct: 60, helpDownK: 0 },
      { helpK: 1, demandPct: 100, helpDownK: 0 },
    ];
    expect(answeredHelpK(70, calls, help)).toBe(1);
    expect(answeredHelpK(70, [], help)).toBe(0);
    expect(answeredHelpK(70, [{ helpK: 0, demandPct: 100, helpDownK: 0 }], help)).toBe(0);
  });

  it('a gap of −100 answers every call (the rule before pricing)', () => {
    expect(
      answeredHelpK(100, [{ helpK: 2, demandPct: 0, helpDownK: 0 }], { ...help, priceGapPct: -100 }),
    ).toBe(2);
  });

  it('is on by default', () => {
    const t = resolveTuning().help;
    expect(answeredHelpK(100, [{ helpK: 2, demandPct: 80, helpDownK: 0 }], t)).toBe(0);
  });
});

describe('callFrom: a neighbour’s row, whatever its shape', () => {
  it('reads a call and keeps only finite fields', () => {
    expect(callFrom({ helpK: 2, demandPct: 90, helpDownK: 1 })).toEqual({
      helpK: 2,
      demandPct: 90,
      helpDownK: 1,
    });
    expect(callFrom({ helpK: 2, demandPct: Number.NaN })).toEqual({ helpK: 2 });
    const odd = { helpK: 2, demandPct: '90', helpDownK: null } as unknown as Parameters<typeof callFrom>[0];
    expect(callFrom(odd)).toEqual({ helpK: 2 });
  });

  it('no call: absent, zero, negative, not finite or not a number', () => {
    for (const st of [null, undefined, {}, { helpK: 0 }, { helpK: -1 }, { helpK: Number.POSITIVE_INFINITY }])
      expect(callFrom(st)).toBeNull();
    expect(callFrom({ helpK: '3' } as unknown as Parameters<typeof callFrom>[0])).toBeNull();
    expect(callFrom('garbage' as unknown as Parameters<typeof callFrom>[0])).toBeNull();
  });
});

describe('the priced split in the demo hall', () => {
  /** Fan kW over the second hour at steady full load, and the hottest inlet (truth) over it. */
  function steadyFullLoad(priceGapPct: number): { fanKw: number; maxInletC: number } {
    const h = new ControlHall({
      control: 'law',
      tuning: {
        inletTargetC: 26.6,
        fan: { kpPctPerK: 8, kiPctPerKS: 0.16 },
        help: { startPct: 75, priceGapPct },
        allocation: { gain: 0.05 },
      },
    });
    h.run(3600);
    const kwh0 = h.model.totals().fanKwh;
    h.resetInletStats();
    h.run(3600);
    return { fanKw: h.model.totals().fanKwh - kwh0, maxInletC: h.maxInletC };
  }

  it('holds the same inlets on less fan power than answering every call', () => {
    const priced = steadyFullLoad(5);
    const every = steadyFullLoad(-100);
    console.log(
      `steady full load: priced ${priced.fanKw.toFixed(2)} kW (hottest ${priced.maxInletC.toFixed(2)} °C), every call ${every.fanKw.toFixed(2)} kW (${every.maxInletC.toFixed(2)} °C)`,
    );
    expect(priced.maxInletC).toBeLessThanOrEqual(27);
    expect(every.maxInletC).toBeLessThanOrEqual(27);
    expect(priced.fanKw).toBeLessThan(0.92 * every.fanKw);
  });
});
