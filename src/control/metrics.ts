// Control-loop metrics: decision time (sensor view → commands), the mode each group runs in, loop
// crashes (each restarts alone) and periods that overran.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const MODES = ['normal', 'degraded', 'blind', 'paused', 'hold'] as const;

export class ControlMetrics {
  private readonly decisions: Histogram<'group'>;
  private readonly modes: Gauge<'group' | 'mode'>;
  private readonly crashes: Counter<'group'>;
  private readonly overruns: Counter<'group'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.decisions = new Histogram({
      name: 'coolctl_control_decision_seconds',
      help: 'One control decision of a group: sensor view and unit reads to commands',
      labelNames: ['group'],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers,
    });
    this.modes = new Gauge({
      name: 'coolctl_control_mode',
      help: '1 for the mode the group’s loop runs in on this node (normal, degraded, blind, paused, hold)',
      labelNames: ['group', 'mode'],
      registers,
    });
    this.crashes = new Counter({
      name: 'coolctl_control_loop_crashes_total',
      help: 'Control loop crashes (the loop restarts alone, with backoff)',
      labelNames: ['group'],
      registers,
    });
    this.overruns = new Counter({
      name: 'coolctl_control_period_overruns_total',
      help: 'Control periods whose work took longer than the period',
      labelNames: ['group'],
      registers,
    });
  }

  decision(group: string, seconds: number, mode: string): void {
    this.decisions.observe({ group }, seconds);
    for (const m of MODES) this.modes.set({ group, mode: m }, m === mode ? 1 : 0);
  }

  crash(group: string): void {
    this.crashes.inc({ group });
  }

  overrun(group: string): void {
    this.overruns.inc({ group });
  }
}
