// A failover in the closed loop, as the control bench runs it: every group's leader dies at once,
// the units run their local fallback for a lease, and each new leader starts from the cached row of
// last commands only (no integrators, no history). What an operator watches: no bump at take-over,
// and no inlet above 27 °C through the take-over and a +30 % load step after it.
import { describe, expect, it } from 'vitest';
import { resumeState } from '../../src/control/law/group-controller.ts';
import { ControlHall } from '../support/control-hall.ts';

const HOUR = 3600;

describe('failover in the closed loop', () => {
  it('all groups resume from cached commands after 10 s on local fallback: first commands within 1 %, 0 s above 27 °C through a +30 % step', () => {
    const h = new ControlHall({ control: 'law' });
    h.run(HOUR);
    h.resetInletStats();
    const rows = new Map([...h.last].map(([g, s]) => [g, { ...s.out.commands }]));
    for (const a of h.site.airHandlers) h.lost.add(a.id);
    for (const g of rows.keys()) h.states.set(g, null);
    h.run(10);
    h.lost.clear();
    for (const [g, commands] of rows) h.states.set(g, resumeState(commands));
    h.run(1);
    for (const commands of rows.values())
      for (const [a, c] of Object.entries(commands))
        expect(Math.abs(h.command(a).fanPct - c.fanPct)).toBeLessThanOrEqual(0.01 * c.fanPct);
    h.run(HOUR);
    h.model.setLoadStep('*', 1.3);
    h.run(HOUR);
    process.stdout.write(
      `failover then +30 %: hottest ${h.maxInletC.toFixed(2)} °C, ${h.secondsAbove27} s above 27 °C\n`,
    );
    expect(h.secondsAbove27).toBe(0);
    expect(h.maxInletC).toBeLessThanOrEqual(27);
    expect(h.maxInletRate15MinC).toBeLessThanOrEqual(5);
  });
});
