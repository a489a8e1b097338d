// Control-loop metrics: decision time (sensor view → commands), loop crashes (each restarts alone), periods that overran, and "never none": how long a group this node
// leads has gone without an accepted write, stale-epoch refusals (proven or not), relinquishes, and
// commands the safety layer limited right before a write, and learned influence a new leader
// found in the group's row and could not use.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { zeroSeries } from '../metrics/zero-series.ts';

// The mode each group runs in is a process value (coolctl_group_mode, daemon/process-values.ts):
// only the node that leads the group says it, where a gauge set here stayed behind on a node that
// had lost the group.

/** Why a leader gives a group up (the `cause` label of coolctl_control_relinquished_total). */
export type RelinquishCause = 'undriven' | 'crashing' | 'stale-epoch';

/** Every cause a group is handed on for; `satisfies` keeps it the whole of RelinquishCause. */
const RELINQUISH_CAUSES = Object.keys({
  undriven: true,
  crashing: true,
  'stale-epoch': true,
} satisfies Record<RelinquishCause, true>) as RelinquishCause[];

export class ControlMetrics {
  private readonly decisions: Histogram<'group'>;
  private readonly crashes: Counter<'group'>;
  private readonly overruns: Counter<'group'>;
  private readonly undrivenS: Gauge<'group'>;
  private readonly refusals: Counter<'group' | 'ahu' | 'proven'>;
  private readonly relinquishes: Counter<'group' | 'cause'>;
  private readonly limits: Counter<'group' | 'ahu' | 'limit'>;
  private readonly learnedRefused: Counter<'group'>;
  private readonly holdRefused: Counter<'group'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.decisions = new Histogram({
      name: 'coolctl_control_decision_seconds',
      help: 'One control decision of a group: sensor view and unit reads to commands',
      labelNames: ['group'],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
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
    this.undrivenS = new Gauge({
      name: 'coolctl_control_undriven_seconds',
      help: 'Time since any unit of a group this node leads accepted a write, from the term’s first chance to write (0 when not leading)',
      labelNames: ['group'],
      registers,
    });
    this.refusals = new Counter({
      name: 'coolctl_control_stale_epoch_refusals_total',
      help: 'Writes a unit refused as a stale epoch; proven="true" when its epoch read back above ours (a newer leader), else an ordinary refusal tried again',
      labelNames: ['group', 'ahu', 'proven'],
      registers,
    });
    this.relinquishes = new Counter({
      name: 'coolctl_control_relinquished_total',
      help: 'Groups this node handed on because it could not drive them, by cause (undriven, crashing, stale-epoch)',
      labelNames: ['group', 'cause'],
      registers,
    });
    this.limits = new Counter({
      name: 'coolctl_control_commands_limited_total',
      help: 'Commands the safety layer changed (or refused: limit="not-finite" with nothing told before) right before a write, because they lay outside the device contract’s ranges; by limit (fan-range, setpoint-range, not-finite)',
      labelNames: ['group', 'ahu', 'limit'],
      registers,
    });
    this.learnedRefused = new Counter({
      name: 'coolctl_control_learned_influence_refused_total',
      help: "Learned influence in a group's cached row that a new leader could not use (another layout, a damaged row): it learns again from the prior",
      labelNames: ['group'],
      registers,
    });
    this.holdRefused = new Counter({
      name: 'coolctl_control_verdict_hold_refused_total',
      help: "Sensor verdict-hold memories in a group's cached row that a new leader could not use (a damaged field): it goes on from its own memory of the group",
      labelNames: ['group'],
      registers,
    });
  }

  decision(group: string, seconds: number): void {
    this.decisions.observe({ group }, seconds);
  }

  crash(group: string): void {
    this.crashes.inc({ group });
  }

  overrun(group: string): void {
    this.overruns.inc({ group });
  }

  undriven(group: string, seconds: number): void {
    this.undrivenS.set({ group }, seconds);
  }

  refusal(group: string, ahu: string, proven: boolean): void {
    this.refusals.inc({ group, ahu, proven: String(proven) });
  }

  /**
   * A configured group's counters at 0 (each node says them for every group: any of them may lead
   * it); those per unit and limit, or per unit and refusal, stay lazy (a thousand units' worth).
   */
  groupAdded(group: string): void {
    for (const counter of [this.crashes, this.overruns, this.learnedRefused, this.holdRefused])
      zeroSeries(counter, { group: [group] });
    zeroSeries(this.relinquishes, { group: [group], cause: RELINQUISH_CAUSES });
  }

  /** A group left the config: the series groupAdded made go with it. */
  groupRemoved(group: string): void {
    for (const counter of [this.crashes, this.overruns, this.learnedRefused, this.holdRefused])
      counter.remove({ group });
    for (const cause of RELINQUISH_CAUSES) this.relinquishes.remove({ group, cause });
  }

  relinquished(group: string, cause: RelinquishCause): void {
    this.relinquishes.inc({ group, cause });
  }

  limited(group: string, ahu: string, limit: string): void {
    this.limits.inc({ group, ahu, limit });
  }

  learnedInfluenceRefused(group: string): void {
    this.learnedRefused.inc({ group });
  }

  verdictHoldRefused(group: string): void {
    this.holdRefused.inc({ group });
  }
}
