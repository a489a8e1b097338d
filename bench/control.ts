// The control law on the demo hall, in accelerated time (test/support/control-hall.ts: the
// simulator's thermal model, sensor reports through the real SensorStore, every group stepped at
// 1 Hz). Side by side in the same run: 24 h of the daily load profile under the law and with every
// unit on local control (the baseline: local fan % and setpoint, as the units fall back to), then
// the fault scenarios under the law (+30 % IT load, the AHU by the hottest row tripped, a stuck
// top sensor on the hottest rack followed by +30 % load). Decision time is sensor view → commands
// for one group step, over every step of every run. Args: [--hours 24]
import { parseArgs } from 'node:util';
import { ControlHall } from '../test/support/control-hall.ts';
import { percentile } from './lib/stats.ts';

const HOUR = 3600;

export async function run(argv: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({ args: argv, options: { hours: { type: 'string' } } });
  const hours = Number(values.hours ?? 24);
  const decisions: number[] = [];

  const law = new ControlHall({ control: 'law', profile: 'daily' });
  const local = new ControlHall({ control: 'local', profile: 'daily' });
  law.run(hours * HOUR);
  local.run(hours * HOUR);
  for (const d of law.decisionsMs) decisions.push(d);
  const fanKwh = law.model.totals().fanKwh;
  const baseKwh = local.model.totals().fanKwh;

  const scenario = (setup: (h: ControlHall) => void): ControlHall => {
    const h = new ControlHall({ control: 'law' });
    h.run(HOUR);
    h.resetInletStats();
    setup(h);
    for (const d of h.decisionsMs) decisions.push(d);
    return h;
  };
  const step = scenario((h) => {
    h.model.setLoadStep('*', 1.3);
    h.run(2 * HOUR);
  });
  const trip = scenario((h) => {
    h.trip('AHU-01', true);
    h.run(HOUR);
  });
  const stuck = scenario((h) => {
    const hot = h.last.get('zone-1')!.view.hottestRack!;
    const node = h.site.sensorNodes.find((n) => n.rack === hot)!;
    h.sensorFault(node.id, 'inlet-top', { kind: 'stuck' });
    h.run(120);
    h.model.setLoadStep('*', 1.3);
    h.run(HOUR);
  });
  const runs = [law, step, trip, stuck];

  return {
    fan_energy_saving_pct: 100 * (1 - fanKwh / baseKwh),
    fan_kwh: fanKwh,
    baseline_fan_kwh: baseKwh,
    hours,
    max_inlet_c: Math.max(...runs.map((h) => h.maxInletC)),
    seconds_above_27c: runs.reduce((s, h) => s + h.secondsAbove27, 0),
    daily_max_inlet_c: law.maxInletC,
    baseline_max_inlet_c: local.maxInletC,
    baseline_seconds_above_27c: local.secondsAbove27,
    load_step_max_inlet_c: step.maxInletC,
    trip_max_inlet_c: trip.maxInletC,
    stuck_sensor_max_inlet_c: stuck.maxInletC,
    decision_p50_ms: percentile(decisions, 50),
    decision_p99_ms: percentile(decisions, 99),
    decision_max_ms: percentile(decisions, 100),
    decisions: decisions.length,
  };
}
