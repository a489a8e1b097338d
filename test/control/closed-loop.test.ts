// The control law closing the loop on the simulator's thermal model in accelerated time (hours in
// seconds, no sockets): sensor nodes report through the real SensorStore, every group steps at 1 Hz.
// What is asserted is what an operator watches: the hottest inlet (truth, top of rack), the time
// above 27 °C, fans that settle instead of hunting, and fan energy against local control.
import { describe, expect, it } from 'vitest';
import { ControlHall, reversals } from '../support/control-hall.ts';

const HOUR = 3600;

function report(label: string, h: ControlHall): void {
  process.stdout.write(
    `${label}: hottest inlet ${h.maxInletC.toFixed(2)} °C, ${h.secondsAbove27} s above 27 °C, fans ${h.model.totals().fanKw.toFixed(1)} kW\n`,
  );
}

/** Reversals of ≥ 2 % swing per AHU over the last `seconds` of the run. */
function huntingOver(h: ControlHall, seconds: number): { worstReversals: number; worstSpanPct: number } {
  let worstReversals = 0;
  let worstSpanPct = 0;
  for (const log of h.fanLog.values()) {
    const tail = log.slice(-seconds);
    worstReversals = Math.max(worstReversals, reversals(tail, 2));
    worstSpanPct = Math.max(worstSpanPct, Math.max(...tail) - Math.min(...tail));
  }
  return { worstReversals, worstSpanPct };
}

describe('closed loop on the thermal model', () => {
  it('from a hot start (units at 40 %, 21 °C, inlets ≈ 40 °C) every inlet settles into 18–27 °C and stays', () => {
    const h = new ControlHall({ control: 'law', settleWith: { fanPct: 40, supplySetpointC: 21 } });
    expect(h.inletRange().maxC).toBeGreaterThan(35);
    let settledAt: number | null = null;
    while (h.t < HOUR && settledAt === null) {
      h.run(10);
      const r = h.inletRange();
      if (r.maxC <= 27 && r.minC >= 18) settledAt = h.t;
    }
    expect(settledAt, 'inlets never settled within an hour').not.toBeNull();
    h.resetInletStats();
    h.run(2 * HOUR);
    report(`hot start (settled after ${settledAt} s)`, h);
    expect(h.maxInletC).toBeLessThanOrEqual(27);
    const r = h.inletRange();
    expect(r.minC).toBeGreaterThanOrEqual(18);
    // No sustained oscillation: over the last hour no unit swings back and forth by 2 % or more
    // more than twice.
    expect(huntingOver(h, HOUR).worstReversals).toBeLessThanOrEqual(2);
  });

  it('a +30 % IT load step: the hottest inlet stays ≤ 27 °C and the fans settle at a higher speed', () => {
    const h = new ControlHall({ control: 'law' });
    h.run(HOUR);
    const fanBefore = h.model.totals().fanKw;
    h.resetInletStats();
    h.model.setLoadStep('*', 1.3);
    h.run(2 * HOUR);
    report('+30 % load step', h);
    expect(h.maxInletC).toBeLessThanOrEqual(27);
    expect(h.secondsAbove27).toBe(0);
    expect(h.model.totals().fanKw).toBeGreaterThan(fanBefore);
    expect(huntingOver(h, HOUR).worstReversals).toBeLessThanOrEqual(2);
  });

  it('an AHU trips (the one by the hall’s hottest row): the others compensate, the hottest inlet stays ≤ 27 °C', () => {
    const h = new ControlHall({ control: 'law' });
    h.run(HOUR);
    h.resetInletStats();
    h.trip('AHU-01', true);
    h.run(HOUR);
    report('AHU-01 tripped', h);
    expect(h.maxInletC).toBeLessThanOrEqual(27);
    expect(h.last.get('zone-1')!.out.reasons.join(' ')).toMatch(/AHU-01 tripped/);
    expect(h.command('AHU-05').fanPct).toBeGreaterThan(95);
    // Back in service: it gets commands again and the group comes back down.
    h.trip('AHU-01', false);
    h.run(HOUR);
    expect(h.model.totals().fanKw).toBeLessThan(30);
    expect(h.maxInletC).toBeLessThanOrEqual(27);
  });

  it('a stuck sensor on the hottest rack, then +30 % IT load: the store drops the stuck reading, inlets stay ≤ 27 °C', () => {
    const h = new ControlHall({ control: 'law' });
    h.run(HOUR);
    const hot = h.last.get('zone-1')!.view.hottestRack!;
    const node = h.site.sensorNodes.find((n) => n.rack === hot)!;
    h.resetInletStats();
    h.sensorFault(node.id, 'inlet-top', { kind: 'stuck' });
    h.run(120);
    h.model.setLoadStep('*', 1.3);
    h.run(HOUR);
    report(`stuck top sensor on ${hot}, then +30 % load`, h);
    expect(h.store.sensor(node.id, 'inlet-top')!.flags).toContain('stuck');
    expect(h.maxInletC).toBeLessThanOrEqual(27);
  });

  it('a sensor biased 3 K low on the hottest rack: its other sensors still see it, inlets stay ≤ 27 °C', () => {
    const h = new ControlHall({ control: 'law' });
    h.run(HOUR);
    const hot = h.last.get('zone-1')!.view.hottestRack!;
    const node = h.site.sensorNodes.find((n) => n.rack === hot)!;
    h.resetInletStats();
    h.sensorFault(node.id, 'inlet-top', { kind: 'bias', k: -3 });
    h.run(HOUR);
    report(`top sensor on ${hot} biased −3 K`, h);
    expect(h.maxInletC).toBeLessThanOrEqual(27.5);
  });

  it('sensors lost: degraded → conservative fans, blind → safe fans and local setpoints; recovery without a bump', () => {
    const h = new ControlHall({ control: 'law' });
    h.run(HOUR);
    const group = h.site.controlGroups.find((g) => g.id === 'zone-2')!;
    const cfg = h.configs.get('zone-2')!;
    // 4 of 12 nodes dead → coverage 0.67: degraded
    for (const n of group.sensorNodes.slice(0, 4)) h.sensorFault(n, '*', { kind: 'dead' });
    h.run(600);
    expect(h.last.get('zone-2')!.out.mode).toBe('degraded');
    for (const a of group.airHandlers)
      expect(h.command(a).fanPct).toBeGreaterThanOrEqual(cfg.tuning.degraded.minFanPct);
    // every node dead → blind
    for (const n of group.sensorNodes) h.sensorFault(n, '*', { kind: 'dead' });
    h.run(600);
    expect(h.last.get('zone-2')!.out.mode).toBe('blind');
    for (const a of group.airHandlers) {
      expect(h.command(a).fanPct).toBe(cfg.tuning.blindFanPct);
      expect(h.command(a).supplySetpointC).toBe(cfg.local[a]!.supplySetpointC);
    }
    const before = group.airHandlers.map((a) => h.command(a).fanPct);
    for (const n of group.sensorNodes) h.sensorFault(n, '*', null);
    h.run(30); // three reports' worth: the view is ok again
    expect(h.last.get('zone-2')!.out.mode).toBe('normal');
    group.airHandlers.forEach((a, i) => {
      expect(Math.abs(h.command(a).fanPct - before[i]!)).toBeLessThanOrEqual(
        cfg.tuning.fan.rampDownPctPerS * 30,
      );
    });
    h.run(HOUR);
    expect(h.maxInletC).toBeLessThanOrEqual(27);
  });

  it('a new leader resuming from the saved state continues the last commands within 1 %, units having fallen back to local meanwhile', () => {
    const h = new ControlHall({ control: 'law' });
    h.run(HOUR);
    const saved = JSON.parse(JSON.stringify(h.states.get('zone-3')));
    const last = { ...h.last.get('zone-3')!.out.commands };
    // The old leader dies; 20 s later the new one resumes (units went to local: 100 %, 18 °C).
    for (const a of Object.keys(last)) h.lost.add(a);
    h.states.set('zone-3', null);
    h.run(20);
    for (const a of Object.keys(last)) h.lost.delete(a);
    h.states.set('zone-3', saved);
    h.run(1);
    for (const [a, c] of Object.entries(last)) {
      expect(Math.abs(h.command(a).fanPct - c.fanPct)).toBeLessThanOrEqual(0.01 * c.fanPct);
      expect(Math.abs(h.command(a).supplySetpointC - c.supplySetpointC)).toBeLessThanOrEqual(
        0.01 * c.supplySetpointC,
      );
    }
  });

  it('over a 24 h daily load profile: ≥ 25 % less fan energy than every unit on local control, inlets in range in both', () => {
    const law = new ControlHall({ control: 'law', profile: 'daily' });
    const local = new ControlHall({ control: 'local', profile: 'daily' });
    law.run(24 * HOUR);
    local.run(24 * HOUR);
    const ours = law.model.totals().fanKwh;
    const base = local.model.totals().fanKwh;
    const saving = 100 * (1 - ours / base);
    process.stdout.write(
      `24 h: fans ${ours.toFixed(1)} kWh vs ${base.toFixed(1)} kWh on local control (${saving.toFixed(1)} % less); hottest inlet ${law.maxInletC.toFixed(2)} vs ${local.maxInletC.toFixed(2)} °C\n`,
    );
    expect(saving).toBeGreaterThanOrEqual(25);
    expect(law.maxInletC).toBeLessThanOrEqual(27);
    expect(local.maxInletC).toBeLessThanOrEqual(27);
    expect(law.secondsAbove27).toBe(0);
    expect(law.inletRange().minC).toBeGreaterThanOrEqual(18);
  });
});
