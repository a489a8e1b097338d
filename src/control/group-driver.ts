// Runs one control group while — and only while — this node leads it. Every period: re-check the
// lease (fence), decide (the control law on the group's trusted sensor view, or "hold" where a
// group has no law), write the group's process state to the state cache, then one fenced write per
// unit (epoch + fresh heartbeat + commands) and a read of what it runs now. Operators' pause and
// overrides come from etcd (leadership.operator) and hand units to local control deliberately.
// A new term resumes from the freshest process state (cache, else peers, else the units' own
// commands): its first command continues the old leader's last one.
// Invariants: every write carries the epoch it was decided under and `leadership.fence` is checked
// synchronously right before the bytes go out; every command a unit is told — the law's, a hold's,
// an operator's, a cached row's, a hand-over to local — has passed the safety layer's hard limits
// (`enforceHardLimits`: the device contract's ranges) right before it is written; one unit's refusal or failure never stops the
// group's other units; only a *proven* newer epoch (a unit's epoch read back above ours, or a newer
// row in the cache) stops us writing with ours. A step that throws is contained here — the loop
// restarts alone, with backoff, and the other groups never notice.
// Never none: a leader that cannot drive the group (no unit accepted a write within the undriven
// bound, the loop keeps crashing, or a newer epoch was proven) relinquishes it with the reason,
// at most as often as its relinquish back-off allows (docs/daemon.md, "A leader that cannot drive").
import type { Logger } from 'pino';
import type { CachedRow } from '../cache/rows.ts';
import type { ProcessStateStore } from '../cache/state-cache.ts';
import type { Leadership, RoleChange } from '../cluster/leadership.ts';
import { NO_OPERATOR_STATE } from '../cluster/operator-state.ts';
import type { ControlGroup } from '../config/site-schema.ts';
import type { AhuCommandSet, AhuReadings, DeviceIo } from '../devices/device-io.ts';
import { isUnprovenStaleEpoch } from '../devices/stale-epoch.ts';
import { DeviceError, ErrorCodes } from '../errors.ts';
import type { SensorView } from '../sensors/sensor-store.ts';
import { type VerdictHoldMemory, verdictHoldMemoryOf } from '../sensors/verdict.ts';
import { FAN_RANGE_PCT } from '../unit-contract.ts';
import { Backoff } from '../util/async.ts';
import { clip, FaultLog } from '../util/log-limit.ts';
import {
  type ControlMode,
  type GroupControlConfig,
  type GroupControlState,
  isGroupControlState,
  resumeState,
  SAFETY_LIMITED,
  stepGroup,
  type UnitInput,
} from './law/group-controller.ts';
import { answeredHelpK, callFrom, type NeighbourCall } from './law/help.ts';
import {
  type InfluenceLearner,
  type LearnedInfluenceSnapshot,
  type PlantObservation,
  stepGroupLearning,
} from './law/influence-learner.ts';
import { enforceHardLimits, fanFloorPct } from './law/safety.ts';
import type { ControlMetrics, RelinquishCause } from './metrics.ts';

export interface GroupDriverOptions {
  periodMs: number;
  logger: Logger;
  /** Where process state goes (broadcast to peers) and comes back from on a warm start. */
  store?: ProcessStateStore;
  /** How long a new leader waits for its peers' rows when its own cache has none. */
  pullTimeoutMs?: number;
  /** The closed loop: the law's config and the sensor view it runs on. Absent: hold the commands. */
  control?: {
    config: GroupControlConfig;
    sensors: SensorView;
    neighbours?: readonly string[];
    /**
     * Learns the units' influence on the racks while the group runs (docs/control.md, "Learned
     * influence"); what it learned travels in the group's row, so a new leader resumes with it.
     */
    learner?: InfluenceLearner;
  };
  metrics?: ControlMetrics;
  /**
   * Tests only (the entry point sets it from `COOLCTL_TEST_CRASH_GROUP`): called first in every
   * decision; a throw is a crashing step, contained like any other. Absent in production.
   */
  beforeStep?: (group: string) => void;
  /** The tightest heartbeat watchdog among the group's units (ms): bounds the undriven time. */
  unitWatchdogMs?: number;
  /** How long the group may go without an accepted write before this node hands it on (default: undrivenLimitMs()). */
  undrivenLimitMs?: number;
  /** Spacing of one node's relinquishes of the group (default RELINQUISH_BACKOFF). */
  relinquishBackoff?: { baseMs: number; maxMs: number };
  /**
   * The shortest time any of the group's units may take to apply a write (`client.maxApplyDelayMs`):
   * a write goes out only while it fits before the lease deadline, so with less term left than this
   * the node cannot drive the group and does not say it does. Default 0.
   */
  minApplyDelayMs?: number;
}

/** A term's first write rounds: a unit's write deadline (1 s by default) fits twice, retries included. */
const UNDRIVEN_FLOOR_MS = 2_000;
const UNDRIVEN_PERIODS = 3;
/** Crashes in a row (no clean period between them) after which the loop is judged unable to run. */
const CRASHES_TO_RELINQUISH = 3;
/**
 * A group no node can drive (every unit unreachable from everywhere, or a unit holding an epoch no
 * leader reaches) moves from node to node; each node gives it up at most once per back-off, which
 * doubles per relinquish that follows the previous one within `maxMs`: 5, 10, 20, 40, then 60 s.
 */
export const RELINQUISH_BACKOFF = { baseMs: 5_000, maxMs: 60_000 } as const;

/**
 * How long a group this node leads may go without any accepted write before it is handed on: three
 * periods (two full periods of retries after a failed write), at least UNDRIVEN_FLOOR_MS, and never
 * more than half the tightest unit watchdog, so the next leader's first write still comes before
 * the units fall back to local control (a relinquish hands on in well under a second).
 */
export function undrivenLimitMs(periodMs: number, unitWatchdogMs?: number): number {
  const wanted = Math.max(UNDRIVEN_PERIODS * periodMs, UNDRIVEN_FLOOR_MS);
  return unitWatchdogMs && unitWatchdogMs > 0 ? Math.min(wanted, unitWatchdogMs / 2) : wanted;
}

/** Whether this node drives the group it leads, and if not why; what it last gave up and why. */
export interface DriveStatus {
  /** Why this node, leading the group, does not drive it now (null: it drives it, or does not lead). */
  problem: string | null;
  /** The last time this node handed the group on because it could not drive it. */
  relinquished: { reason: string; cause: RelinquishCause; epoch: number; atMs: number } | null;
  /** While the relinquish back-off holds: when this node may hand the group on again (ms since Unix epoch). */
  relinquishHeldUntilMs: number | null;
  /** The bound on the time without an accepted write (ms). */
  undrivenLimitMs: number;
}

export interface HeldCommand {
  fanPct: number;
  supplySetpointC: number;
}

/** What a group's loop is doing: the law's mode, holding commands, or starting a term. */
export type LoopMode = ControlMode | 'hold' | 'starting';

/** The group's process state as it travels in the state cache (one row per group). */
export interface GroupProcessRow {
  v: 2;
  kind: 'control' | 'hold';
  /** The law's state (control) — what a successor resumes from. */
  control?: GroupControlState;
  /** Last command per unit (both kinds): what the units were told. */
  commands: Record<string, HeldCommand>;
  mode: LoopMode;
  /** What the influence learner learned (an added field: readers that do not know it ignore it). */
  influence?: LearnedInfluenceSnapshot;
  /**
   * The sensor verdict hold's memory (control): ages as of the row's write, so a new leader keeps a
   * flapping group held (an added field, like `influence`; a row without it leaves the new
   * leader's own memory as it is).
   */
  verdictHold?: VerdictHoldMemory;
}

/** How the current term started: from a cached row (warm) or from reading the units (cold). */
export interface StartInfo {
  epoch: number;
  source: 'cache' | 'peers' | 'cold';
  row: { epoch: number; seq: number; writer: string } | null;
}

export interface UnitDriveState {
  ahu: string;
  held: HeldCommand | null;
  lastWriteOkMs: number | null;
  lastError: string | null;
  /** Writes the unit refused with a stale-epoch claim its epoch read-back did not prove (retried). */
  refusals: number;
  /** What the unit said it runs at the last read. */
  mode: string | null;
  released: boolean;
}

export interface LoopHealth {
  ok: boolean;
  crashes: number;
  lastCrash: string | null;
  overruns: number;
}

/** Unit errors a hand-on's reason names; the rest are counted (each unit's is in the group's view). */
export const REASON_UNIT_ERRORS_MAX = 3;
/** One unit error in a reason, at most (a unit's message can quote what it answered). */
const REASON_UNIT_ERROR_CHARS = 160;

/**
 * Why a group is handed on for want of accepted writes: how long, the bound, and the first few units'
 * errors. Bounded, because the reason travels far: the cluster answer every dashboard reads each
 * refresh, the hand-on's etcd record, the log line; a group of 10 units timing out named all ten
 * (~1 KiB a group, most of a 100-group cluster answer after a slow minute).
 */
/**
 * What the mode's line compares: the reasons without their measured figures (the law prints those
 * with one decimal: an inlet's °C, a neighbour's K) and without `safety limited …`, which says that
 * this period's commands were clipped (counted in coolctl_control_commands_limited_total) and comes
 * and goes from one period to the next while a hot group's law asks for what the limits refuse.
 * So the line is one per change of what the group does, not one each time a hot rack's inlet moves
 * by 0.1 °C (at a full hall's alarm: ~3 lines a second). Integers stay: they name units or say
 * what an operator set.
 */
export function reasonsShape(reasons: readonly string[]): string {
  return reasons
    .filter((r) => !r.startsWith(SAFETY_LIMITED))
    .map((r) => r.replace(/-?\d+\.\d+/g, '#'))
    .join('\n');
}

export function undrivenReason(forMs: number, boundMs: number, unitErrors: readonly string[]): string {
  const head = `no unit accepted a write for ${(forMs / 1000).toFixed(1)} s (bound ${(boundMs / 1000).toFixed(1)} s)`;
  if (unitErrors.length === 0) return head;
  const named = unitErrors.slice(0, REASON_UNIT_ERRORS_MAX).map((e) => clip(e, REASON_UNIT_ERROR_CHARS));
  const more = unitErrors.length - named.length;
  return `${head}: ${named.join('; ')}${more > 0 ? `; and ${more} more unit${more === 1 ? '' : 's'} failing (each unit's last error: the group's view)` : ''}`;
}

/** Where in the period a group's ticks fall: a hash of its id (FNV-1a), spread over the period. */
export function phaseOfMs(groupId: string, periodMs: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < groupId.length; i++) h = Math.imul(h ^ groupId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % Math.max(1, Math.round(periodMs));
}

export class GroupDriver {
  readonly group: string;
  readonly counters = {
    writes: 0,
    writeErrors: 0,
    notLeader: 0,
    fenced: 0,
    crashes: 0,
    overruns: 0,
    /** Rows whose verdict-hold memory a new term could not use (malformed): ignored. */
    verdictHoldRefused: 0,
  };
  private readonly ahus: string[];
  private readonly devices: Map<string, DeviceIo>;
  private readonly leadership: Leadership;
  private readonly opts: GroupDriverOptions;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  /** Monotonic ms of the last period (the loop's liveness, for the systemd watchdog). */
  lastTickAtMs = performance.now();
  private drivingEpoch: number | null = null;
  /** An epoch proven stale (a unit or the cache holds a newer one): we never write with it (or below) again. */
  private refusedEpoch = 0;
  /** What proved `refusedEpoch` stale, for the log and the API. */
  private refusedWhy: string | null = null;
  /** The epoch being judged and since when it had its chance to write (its term began; monotonic ms). */
  private judgedEpoch: number | null = null;
  private judgedFromMs: number | null = null;
  /** Last accepted write of any unit under `judgedEpoch` (monotonic ms; 0: none yet). */
  private lastAcceptedAtMs = 0;
  /** fence() was null at a judgement since the last one with a fence: the node could not write. */
  private fenceLapsed = false;
  private crashesInARow = 0;
  private relinquishesInARow = 0;
  private lastRelinquishAtMs = Number.NEGATIVE_INFINITY;
  private relinquishAllowedAtMs = 0;
  private problem: string | null = null;
  private relinquishedLast: DriveStatus['relinquished'] = null;
  private readonly undrivenMs: number;
  private readonly relinquishBackoff: { baseMs: number; maxMs: number };
  private resuming = false;
  private started: StartInfo | null = null;
  /**
   * Per unit, whether its drive is still in flight: a flag set and cleared in place, not a Set's
   * add and delete (whose table V8 rebuilds as entries come and go: ~100 KB/s of promoted garbage
   * at 1 000 units).
   */
  private readonly inFlight = new Map<string, { busy: boolean }>();
  private readonly unitState = new Map<string, UnitDriveState>();
  /** Write failures per unit: a unit whose every answer differs (garbage) is not a line per period. */
  private readonly writeFaults = new FaultLog();
  private readonly reads = new Map<string, { r: AhuReadings | null; ok: boolean }>();
  /** What each unit is told now (control output, or the held commands); every entry passed `gate`. */
  private readonly commands = new Map<string, HeldCommand>();
  /** Per unit, the last command the safety layer had to change (what and why): logged once. */
  private readonly limitedWhy = new Map<string, string>();
  private release = new Set<string>();
  private law: GroupControlState | null = null;
  /** The learner's last snapshot and the sample it was taken at: re-encoded once per new sample. */
  private learned: { samples: number; snap: LearnedInfluenceSnapshot } | null = null;
  private mode: LoopMode = 'hold';
  private reasons: string[] = [];
  private lastStepAtMs = 0;
  private crashedUntilMs = 0;
  private lastCrash: string | null = null;
  private readonly backoff: Backoff;

  constructor(
    group: ControlGroup,
    devices: Map<string, DeviceIo>,
    leadership: Leadership,
    opts: GroupDriverOptions,
  ) {
    this.group = group.id;
    this.ahus = group.airHandlers;
    this.devices = devices;
    this.leadership = leadership;
    this.opts = opts;
    this.log = opts.logger.child({ group: group.id });
    this.backoff = new Backoff(opts.periodMs, 30_000);
    this.undrivenMs = opts.undrivenLimitMs ?? undrivenLimitMs(opts.periodMs, opts.unitWatchdogMs);
    this.relinquishBackoff = opts.relinquishBackoff ?? RELINQUISH_BACKOFF;
    for (const ahu of this.ahus)
      this.unitState.set(ahu, {
        ahu,
        held: null,
        lastWriteOkMs: null,
        lastError: null,
        refusals: 0,
        mode: null,
        released: false,
      });
  }

  start(): void {
    if (this.timer) return;
    // Ticks fall at this group's own phase of the period (from its id, on the wall clock), so a
    // node's groups do not all read and write their units in the same instant: at 100 groups that
    // burst held 3 000 requests in flight at once, which delayed the event loop and outlived the
    // young generation (the scale bench's heap grew by ~20 MB/s of promoted request garbage).
    const period = this.opts.periodMs;
    const delayMs = (phaseOfMs(this.group, period) - (Date.now() % period) + period) % period;
    this.timer = setTimeout(() => {
      this.timer = setInterval(() => this.tick(), period);
      this.tick();
    }, delayMs);
    // A new leader writes at once, not at its next tick: handover time is etcd's, not our period's.
    this.leadership.on('role', this.onRole);
    this.tick();
  }

  stop(): void {
    // clearTimeout and clearInterval clear either kind of Node timer.
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.leadership.off('role', this.onRole);
  }

  private readonly onRole = (c: RoleChange): void => {
    if (c.group === this.group && c.to === 'leader' && this.timer) this.tick();
  };

  /**
   * Commands and link of each unit, for the API. `held` only while this node drives the group: a
   * follower's commands are its last term's, not what the units run now (the leader's view says).
   */
  units(): UnitDriveState[] {
    const driving = this.driving;
    return [...this.unitState.values()].map((s) => ({
      ...s,
      held: driving ? (this.commands.get(s.ahu) ?? null) : null,
      released: this.release.has(s.ahu),
    }));
  }

  /**
   * What `ahu` reported at this node's last read of it, while this node drives the group and that
   * read succeeded; else null (a failed read's values are not what the unit runs now).
   */
  lastReading(ahu: string): AhuReadings | null {
    const rd = this.reads.get(ahu);
    return this.driving && rd?.ok ? rd.r : null;
  }

  /** Whether the group runs its control law (else it holds its commands). */
  get closedLoop(): boolean {
    return !!this.opts.control;
  }

  /**
   * The node drives the group: its loop holds a term, and a write of that term can still land — the
   * fence holds that epoch with at least the quickest unit's apply delay left before its deadline.
   * A leader cut off from etcd stops writing that long before its deadline (writeBudgetMs), and from
   * then on says so, rather than claiming a group nobody writes.
   */
  get driving(): boolean {
    if (this.drivingEpoch === null) return false;
    const f = this.leadership.fence(this.group);
    return (
      f?.epoch === this.drivingEpoch && f.untilMs - performance.now() >= (this.opts.minApplyDelayMs ?? 0)
    );
  }

  /** How this node's current (or last) term began. */
  get startInfo(): StartInfo | null {
    return this.started;
  }

  /** The loop's mode and why it differs from plain control, for the API. */
  get decision(): { mode: LoopMode; reasons: string[] } {
    return { mode: this.mode, reasons: this.reasons };
  }

  /** Whether this node drives the group it leads, why not, and what it last handed on (API, dashboard). */
  get driveStatus(): DriveStatus {
    const heldMs = this.relinquishAllowedAtMs - performance.now();
    return {
      problem: this.problem,
      relinquished: this.relinquishedLast,
      relinquishHeldUntilMs: this.problem && heldMs > 0 ? Date.now() + Math.round(heldMs) : null,
      undrivenLimitMs: this.undrivenMs,
    };
  }

  get health(): LoopHealth {
    return {
      ok: performance.now() >= this.crashedUntilMs,
      crashes: this.counters.crashes,
      lastCrash: this.lastCrash,
      overruns: this.counters.overruns,
    };
  }

  /**
   * Hold groups only: an operator's command for one unit (or all), kept in the process state. A
   * group under the control law takes operator commands as overrides (in etcd), not this.
   */
  setCommand(cmd: Partial<HeldCommand>, ahu?: string): HeldCommand[] {
    if (this.opts.control)
      throw new DeviceError(
        ErrorCodes.BAD_REQUEST,
        this.group,
        'the group runs its control law: set an override',
      );
    if (this.drivingEpoch === null || this.resuming)
      throw new DeviceError(ErrorCodes.NOT_LEADER, this.group, 'this node is not driving the group');
    const out: HeldCommand[] = [];
    for (const a of ahu ? [ahu] : this.ahus) {
      const cur = this.commands.get(a);
      if (!cur) continue; // not read yet: its first read decides, then it can be set
      const next = this.gate(a, { ...cur, ...cmd });
      if (!next) continue;
      this.commands.set(a, next);
      out.push(next);
    }
    this.log.info({ ahu: ahu ?? 'all', cmd, units: out.length }, 'operator command held');
    this.writeRow(this.drivingEpoch);
    return out;
  }

  /**
   * Shutdown with no other node to take over: hands every unit to its local control (one fenced
   * write with remoteEnable false each), so the units do not wait for their watchdog. Bounded.
   */
  async releaseAll(timeoutMs: number): Promise<void> {
    const epoch = this.drivingEpoch;
    if (epoch === null) return;
    const deadlineMs = this.termDeadline(epoch);
    const signal = AbortSignal.timeout(timeoutMs);
    await Promise.allSettled(
      this.ahus.map(async (a) => {
        const device = this.devices.get(a);
        const held = this.commands.get(a);
        const c = held && this.gate(a, held);
        if (!device || !c || this.unitState.get(a)?.released) return;
        await device.writeCommand({ epoch, remoteEnable: false, ...c }, { deadlineMs, signal });
        this.log.info({ ahu: a }, 'unit handed to its local control: no other node will lead');
      }),
    );
  }

  /** One period, contained: a throw here restarts this loop alone, after a backoff; then the judgement. */
  tick(): void {
    this.lastTickAtMs = performance.now();
    if (this.lastTickAtMs >= this.crashedUntilMs) this.runPeriod();
    this.judge(performance.now());
  }

  private runPeriod(): void {
    try {
      this.period();
    } catch (err) {
      this.crashesInARow++;
      this.counters.crashes++;
      this.opts.metrics?.crash(this.group);
      const waitMs = this.backoff.next();
      this.crashedUntilMs = performance.now() + waitMs;
      this.lastCrash = (err as Error).message;
      this.drivingEpoch = null; // the restart begins a fresh term: warm start again
      this.log.error({ err, restartInMs: Math.round(waitMs) }, 'control loop crashed; restarting it alone');
    }
  }

  private period(): void {
    const fence = this.leadership.fence(this.group);
    if (!fence || fence.epoch <= this.refusedEpoch) {
      if (this.drivingEpoch !== null) {
        this.log.info({ epoch: this.drivingEpoch }, 'stopped driving the group: not its leader any more');
        this.drivingEpoch = null;
      }
      return;
    }
    if (this.drivingEpoch !== fence.epoch) {
      this.drivingEpoch = fence.epoch;
      this.resuming = true;
      const epoch = fence.epoch;
      this.beginTerm(epoch)
        .catch((err: unknown) => this.log.error({ err }, 'term start failed'))
        .finally(() => {
          this.resuming = false;
          // The term had its chance to write from here on; a restart after a crash keeps the first.
          if (this.judgedEpoch === epoch && this.judgedFromMs === null) this.judgedFromMs = performance.now();
          // The term's first commands go out once it has begun, not at the next period (a
          // graceful handover waited up to a whole period for them).
          if (this.drivingEpoch === epoch && this.timer) this.tick();
        });
      return;
    }
    if (this.resuming) return;
    const t0 = performance.now();
    this.decide(t0);
    const decideMs = performance.now() - t0;
    this.opts.metrics?.decision(this.group, decideMs / 1000);
    this.writeRow(fence.epoch);
    for (const ahu of this.ahus) {
      let flight = this.inFlight.get(ahu);
      if (flight?.busy) continue;
      const device = this.devices.get(ahu);
      if (!device) continue;
      if (!flight) {
        flight = { busy: false };
        this.inFlight.set(ahu, flight);
      }
      const f = flight;
      f.busy = true;
      void this.drive(ahu, device, fence.epoch).finally(() => {
        f.busy = false;
      });
    }
    if (performance.now() - t0 > this.opts.periodMs) {
      this.counters.overruns++;
      this.opts.metrics?.overrun(this.group);
      this.log.warn({ tookMs: Math.round(performance.now() - t0) }, 'control period overran');
    }
    this.backoff.reset();
    this.crashesInARow = 0;
  }

  /**
   * Never none: while this node leads, is the group driven? If not — a newer epoch proven, the loop
   * crashing again and again, or no unit accepting a write within the undriven bound since the term
   * had its chance — hand it on with the reason, unless this node's relinquish back-off holds.
   */
  private judge(nowMs: number): void {
    const fence = this.leadership.fence(this.group);
    if (!fence) {
      this.problem = null;
      this.fenceLapsed = true;
      this.opts.metrics?.undriven(this.group, 0);
      return;
    }
    if (this.judgedEpoch !== fence.epoch) {
      this.judgedEpoch = fence.epoch;
      this.judgedFromMs = null;
      this.lastAcceptedAtMs = 0;
      this.crashesInARow = 0; // a new term's loop is judged on its own crashes
    }
    // Units all handed to local control on purpose (pause, to-local): nothing to judge, and taking
    // them back (resume) gives the term a fresh chance to write, not the time spent paused. The same
    // for time this node was not allowed to write (its lease deadline passed, until failsafe or a
    // keepalive gave it back): that is not the group failing to take writes.
    // And while etcd is out of reach, handing on could only leave the group with nobody (no other
    // node can be elected without etcd; failsafe keeps only the leaders there are): keep driving.
    if (this.judgedFromMs !== null && (!this.meansToDrive() || this.fenceLapsed || !this.leadership.healthy))
      this.judgedFromMs = nowMs;
    this.fenceLapsed = false;
    const sinceMs = this.judgedFromMs === null ? null : Math.max(this.judgedFromMs, this.lastAcceptedAtMs);
    this.opts.metrics?.undriven(this.group, sinceMs === null ? 0 : (nowMs - sinceMs) / 1000);
    let cause: RelinquishCause | null = null;
    let reason = '';
    if (fence.epoch <= this.refusedEpoch) {
      cause = 'stale-epoch';
      reason = this.refusedWhy ?? `epoch ${fence.epoch} was proven stale`;
    } else if (this.crashesInARow >= CRASHES_TO_RELINQUISH) {
      cause = 'crashing';
      reason = `the control loop crashed ${this.crashesInARow} times in a row (last: ${this.lastCrash})`;
    } else if (sinceMs !== null && nowMs - sinceMs >= this.undrivenMs && this.meansToDrive()) {
      cause = 'undriven';
      reason = undrivenReason(
        nowMs - sinceMs,
        this.undrivenMs,
        [...this.unitState.values()].flatMap((u) => (u.lastError ? [u.lastError] : [])),
      );
    }
    if (cause === null) {
      this.problem = null;
      return;
    }
    const first = this.problem === null;
    this.problem = reason;
    const relinquish = this.leadership.relinquish?.bind(this.leadership);
    if (!relinquish || nowMs < this.relinquishAllowedAtMs) {
      if (first)
        this.log.warn(
          {
            epoch: fence.epoch,
            cause,
            reason,
            ...(relinquish ? { heldBackMs: Math.round(this.relinquishAllowedAtMs - nowMs) } : {}),
          },
          relinquish
            ? 'this node cannot drive the group; its relinquish back-off holds it a while longer'
            : 'this node cannot drive the group and its leadership cannot hand it on',
        );
      return;
    }
    if (nowMs - this.lastRelinquishAtMs > this.relinquishBackoff.maxMs) this.relinquishesInARow = 0;
    this.relinquishesInARow++;
    this.lastRelinquishAtMs = nowMs;
    const backoffMs = Math.min(
      this.relinquishBackoff.maxMs,
      this.relinquishBackoff.baseMs * 2 ** (this.relinquishesInARow - 1),
    );
    this.relinquishAllowedAtMs = nowMs + backoffMs;
    this.relinquishedLast = { reason, cause, epoch: fence.epoch, atMs: Date.now() };
    this.crashesInARow = 0;
    this.opts.metrics?.relinquished(this.group, cause);
    this.log.warn(
      { epoch: fence.epoch, cause, reason, nextRelinquishInMs: backoffMs },
      'relinquishing the group: this node cannot drive it',
    );
    try {
      relinquish(this.group, reason);
    } catch (err) {
      this.log.error({ err }, 'relinquish failed');
    }
    if (!this.leadership.fence(this.group)) {
      // Given up: no longer ours to judge, nor to drive (the next period would say so a period late).
      this.problem = null;
      this.drivingEpoch = null;
    }
  }

  /** A unit accepted a write of `epoch`: the group is driven. */
  private accepted(epoch: number): void {
    if (this.judgedEpoch === epoch) this.lastAcceptedAtMs = performance.now();
  }

  /** Whether any unit is meant to be under remote control now (not all handed to local on purpose). */
  private meansToDrive(): boolean {
    return this.ahus.some((a) => !this.release.has(a));
  }

  /** A newer epoch was proven (a unit's read-back, the cache): stop writing with ours, hand on. */
  private refuseEpoch(epoch: number, why: string): void {
    if (epoch <= this.refusedEpoch) return;
    this.refusedEpoch = epoch;
    this.refusedWhy = why;
    this.log.warn({ epoch, reason: why }, 'a newer epoch is proven: stopped writing with ours');
  }

  /** A new term: the freshest process state (cache, else peers), then one read of every unit. */
  private async beginTerm(epoch: number): Promise<void> {
    this.commands.clear();
    this.release = new Set();
    this.law = null;
    this.mode = 'starting';
    this.reasons = [];
    const store = this.opts.store;
    let source: StartInfo['source'] = 'cold';
    let row = store?.get(this.group);
    if (store && row) source = 'cache';
    else if (store) {
      await store.pull([this.group], this.opts.pullTimeoutMs ?? 500).catch(() => {});
      row = store.get(this.group);
      if (row) source = 'peers';
    }
    let saved: GroupProcessRow | null = null;
    // Our own epoch's row too: a loop restarted after a crash resumes from its own last state.
    if (row && row.epoch <= epoch) saved = parseRow(row.body);
    if (!saved) source = 'cold';
    // Re-read every unit (link, what it runs), whatever the row says.
    await Promise.all(this.ahus.map((a) => this.readUnit(a)));
    if (this.drivingEpoch !== epoch) return;
    // A unit already on local control (a pause, an operator's to-local) is not released again.
    for (const [a, st] of this.unitState) st.released = this.reads.get(a)?.r?.mode === 'local';
    if (saved) {
      for (const [a, c] of Object.entries(saved.commands)) if (this.ahus.includes(a)) this.commands.set(a, c);
      if (this.opts.control)
        this.law =
          saved.control && isGroupControlState(saved.control) ? saved.control : resumeState(saved.commands);
      const learner = this.opts.control?.learner;
      if (learner && saved.influence !== undefined) {
        const problem = learner.restore(saved.influence);
        if (problem) {
          this.opts.metrics?.learnedInfluenceRefused(this.group);
          this.log.warn({ problem }, 'learned influence in the row not used: learning from the prior');
        } else this.log.info({ samples: learner.sampleCount }, 'learned influence resumed from the row');
        this.learned = null;
      }
      if (row && saved.verdictHold !== undefined) this.resumeVerdictHold(saved.verdictHold, row);
    }
    this.lastStepAtMs = performance.now();
    this.started = {
      epoch,
      source,
      row: row && saved ? { epoch: row.epoch, seq: row.seq, writer: row.writer } : null,
    };
    this.log.info(
      { ...this.started, units: this.ahus.length, kind: this.opts.control ? 'control' : 'hold' },
      source === 'cold'
        ? 'driving the group: cold start (no process state)'
        : 'driving the group: warm start',
    );
  }

  /**
   * The sensor verdict hold goes on from the row's memory (the store keeps its own when fresher).
   * The row's age counts from when it reached this node's cache; a store that does not know it gives
   * the ages as of now.
   */
  private resumeVerdictHold(field: unknown, row: CachedRow): void {
    const sensors = this.opts.control?.sensors;
    if (!sensors?.resumeVerdictHold) return;
    const memory = verdictHoldMemoryOf(field);
    if (typeof memory === 'string') {
      this.counters.verdictHoldRefused++;
      this.opts.metrics?.verdictHoldRefused(this.group);
      this.log.warn(
        { problem: memory },
        'verdict hold in the row not used: the group goes on from this node’s memory',
      );
      return;
    }
    const ageMs = row.localAtMs === undefined ? 0 : Math.max(0, performance.now() - row.localAtMs);
    const taken = sensors.resumeVerdictHold(this.group, memory, ageMs);
    this.log.info(
      {
        held: memory.held,
        leftOkAgoMs: memory.leftOkAgoMs,
        okForMs: memory.okForMs,
        rowAgeMs: Math.round(ageMs),
      },
      taken === 'resumed'
        ? 'verdict hold resumed from the row'
        : 'verdict hold: this node’s own memory of the group is fresher than the row, kept',
    );
  }

  /** One decision from what is known now: the sensor view, the units' last reads, the operators. */
  private decide(nowMs: number): void {
    this.opts.beforeStep?.(this.group);
    const op = this.leadership.operator?.(this.group) ?? NO_OPERATOR_STATE;
    const dtS = Math.max(0.001, (nowMs - this.lastStepAtMs) / 1000);
    this.lastStepAtMs = nowMs;
    const ctl = this.opts.control;
    if (!ctl) {
      // Hold: each unit keeps what it was told (first: what it ran), operators' overrides on top.
      const release = new Set<string>();
      for (const a of this.ahus) {
        const ov = op.overrides[a];
        if (op.paused || ov?.toLocal) {
          release.add(a);
          continue;
        }
        // What it was told (a cached row, an operator), else what it runs, with the operator's
        // override on top: through the hard limits either way — a unit may run, and a row may
        // carry, what no command may ask for. The override becomes what it was told, so removing
        // it leaves the unit where it is.
        const r = this.reads.get(a)?.r;
        const told = this.commands.get(a);
        const base = told ?? (r ? { fanPct: r.fanPct, supplySetpointC: r.supplySetpointC } : undefined);
        const fanPct = ov?.fanPct ?? base?.fanPct;
        const supplySetpointC = ov?.supplySetpointC ?? base?.supplySetpointC;
        const wanted =
          fanPct !== undefined && supplySetpointC !== undefined ? { fanPct, supplySetpointC } : undefined;
        const c = wanted && this.gate(a, wanted);
        if (!c) continue;
        this.commands.set(a, c);
      }
      this.release = release;
      this.mode = 'hold';
      this.reasons = op.paused
        ? ['group paused']
        : this.ahus.flatMap((a) => {
            const ov = op.overrides[a];
            if (ov?.toLocal) return [`${a} on local control by operator`];
            return ov && (ov.fanPct !== undefined || ov.supplySetpointC !== undefined)
              ? [`${a} held at the operator's override`]
              : [];
          });
      return;
    }
    const units: UnitInput[] = this.ahus.map((a) => {
      const rd = this.reads.get(a);
      const link = this.devices.get(a)?.linkState ?? 'down';
      const status =
        !rd?.ok || !rd.r || link === 'down' ? 'lost' : rd.r.mode === 'tripped' ? 'tripped' : 'available';
      return {
        id: a,
        status,
        read: rd?.r
          ? {
              fanPct: clamp(rd.r.fanPct, FAN_RANGE_PCT.min, FAN_RANGE_PCT.max),
              supplySetpointC: rd.r.supplySetpointC,
            }
          : null,
        // Air read with doubt (OPC-UA uncertain/bad) does not count as load.
        air: rd?.r?.quality === 'good' ? { returnC: rd.r.returnC, supplyC: rd.r.supplyC } : null,
      };
    });
    // The figures carry the view and, per rack, the inlets the learner needs: one walk of the sensors.
    const fig = ctl.learner ? ctl.sensors.figures?.(this.group, 0) : undefined;
    const inputs = {
      view: fig?.view ?? ctl.sensors.view(this.group),
      units,
      dtS,
      overrides: op.overrides,
      paused: op.paused,
      neighbourHelpK: this.neighbourHelpK(),
    };
    const out = ctl.learner
      ? stepGroupLearning(ctl.config, ctl.learner, inputs, this.law, fig ? this.plant(fig) : null)
      : stepGroup(ctl.config, inputs, this.law);
    this.law = out.state;
    if (out.mode !== this.mode || reasonsShape(out.reasons) !== reasonsShape(this.reasons))
      this.log.info({ mode: out.mode, reasons: out.reasons }, 'control mode');
    this.mode = out.mode;
    this.reasons = out.reasons;
    this.release = new Set(out.release);
    for (const [a, c] of Object.entries(out.commands)) {
      const safe = this.gate(a, c);
      if (safe) this.commands.set(a, safe);
      else this.commands.delete(a);
    }
  }

  /**
   * The safety layer's hard limits on one unit's command (the device contract's ranges, and the
   * law's fan floor for a group under the law): what may be told to the unit, or null when nothing
   * safe can be (a value that is not a number, and nothing told before). Counts every change, logs
   * each distinct one once.
   */
  private gate(ahu: string, wanted: HeldCommand): HeldCommand | null {
    const tuning = this.opts.control?.config.tuning;
    const fanMinPct = tuning ? fanFloorPct(tuning, ahu) : FAN_RANGE_PCT.min;
    const res = enforceHardLimits(wanted, this.commands.get(ahu) ?? null, fanMinPct);
    if (res.clipped.length === 0) return res.command;
    for (const clip of res.clipped) this.opts.metrics?.limited(this.group, ahu, clip);
    // One line per distinct bad command, not one per period of the same one (a unit reporting no data).
    const key = `${res.clipped.join(',')} ${wanted.fanPct} ${wanted.supplySetpointC}`;
    if (this.limitedWhy.get(ahu) !== key) {
      this.limitedWhy.set(ahu, key);
      this.log.warn(
        { ahu, wanted, sent: res.command, limits: res.clipped },
        res.command
          ? 'safety layer: command outside the device contract, limited'
          : 'safety layer: no safe command for the unit (not a number, nothing told before)',
      );
    }
    return res.command;
  }

  /** What the learner reads besides the law's inputs: each unit's supply air and each rack's inlet. */
  private plant(fig: { inletRacks: readonly string[]; rackInletMaxC: Float64Array }): PlantObservation {
    const supplyC: Record<string, number> = {};
    for (const a of this.ahus) {
      const rd = this.reads.get(a);
      supplyC[a] = rd?.ok && rd.r ? rd.r.supplyC : Number.NaN;
    }
    return { supplyC, racks: fig.inletRacks, inletC: fig.rackInletMaxC };
  }

  /** The learner's snapshot for the row: taken again only when it learned something new. */
  private learnedSnapshot(): LearnedInfluenceSnapshot | undefined {
    const learner = this.opts.control?.learner;
    if (!learner || learner.sampleCount === 0) return undefined;
    if (this.learned?.samples !== learner.sampleCount)
      this.learned = { samples: learner.sampleCount, snap: learner.snapshot() };
    return this.learned.snap;
  }

  /** The largest call for help among neighbouring groups, from their broadcast process state. */
  private neighbourHelpK(): number {
    const ctl = this.opts.control;
    const calls: NeighbourCall[] = [];
    for (const g of ctl?.neighbours ?? []) {
      const row = this.opts.store?.get(g);
      const call = row ? callOf(row.body) : null;
      if (call) calls.push(call);
    }
    return ctl ? answeredHelpK(this.law?.demandPct, calls, ctl.config.tuning.help) : 0;
  }

  /** Writes the group's process state (broadcast to every peer); a newer row means we are stale. */
  private writeRow(epoch: number): void {
    const store = this.opts.store;
    if (!store || this.commands.size === 0) return;
    const row: GroupProcessRow = {
      v: 2,
      kind: this.opts.control ? 'control' : 'hold',
      commands: Object.fromEntries(this.commands),
      mode: this.mode,
      ...(this.law ? { control: this.law } : {}),
    };
    const learned = this.learnedSnapshot();
    if (learned) row.influence = learned;
    const hold = this.opts.control?.sensors.verdictHold?.(this.group);
    if (hold) row.verdictHold = hold;
    if (store.write(this.group, epoch, row) === null) {
      const held = store.get(this.group);
      this.refuseEpoch(
        epoch,
        `the state cache holds epoch ${held?.epoch ?? '?'}${held ? ` (written by ${held.writer})` : ''}, above ours (${epoch}): a newer leader drives the group`,
      );
    }
  }

  private async readUnit(ahu: string): Promise<void> {
    const device = this.devices.get(ahu);
    if (!device) return;
    try {
      const r = await device.read();
      this.reads.set(ahu, { r, ok: true });
      this.unitState.get(ahu)!.mode = r.mode;
    } catch {
      this.reads.set(ahu, { r: this.reads.get(ahu)?.r ?? null, ok: false });
    }
  }

  /**
   * Until when a write of `epoch`'s term may land: the lease guard's deadline while this node still
   * leads with that epoch, else null. The adapter reads it at each send and sends only what the
   * unit will have applied (or dropped) by then (docs/leadership.md, "Writes end inside the term").
   */
  private termDeadline(epoch: number): () => number | null {
    return () => {
      const f = this.leadership.fence(this.group);
      return f?.epoch === epoch ? f.untilMs : null;
    };
  }

  /** One unit, one period: the fenced write (or the hand-over to local control), then a read. */
  private async drive(ahu: string, device: DeviceIo, epoch: number): Promise<void> {
    const st = this.unitState.get(ahu)!;
    const deadlineMs = this.termDeadline(epoch);
    try {
      const held = this.commands.get(ahu);
      const c = held && this.gate(ahu, held);
      if (this.release.has(ahu)) {
        // Deliberately handed to local control (pause, operator): one write saying so, then none.
        if (!st.released && c) {
          await device.writeCommand({ epoch, remoteEnable: false, ...c }, { deadlineMs });
          st.released = true;
          this.accepted(epoch);
          this.log.info({ ahu }, 'unit handed to its local control');
        }
      } else if (c) {
        const cmd: AhuCommandSet = {
          epoch,
          remoteEnable: true,
          fanPct: c.fanPct,
          supplySetpointC: c.supplySetpointC,
        };
        // reassert: this node has just proven it leads (the fence is checked at the send), so taking
        // a unit back from fallback or local is the deliberate act of the group's leader.
        await device.writeCommand(cmd, { reassert: true, deadlineMs });
        if (st.released) this.log.info({ ahu }, 'unit taken back under remote control');
        st.released = false;
        this.counters.writes++;
        this.accepted(epoch);
        st.lastWriteOkMs = Date.now();
        if (st.lastError && this.writeFaults.recovery(ahu))
          this.log.info({ ahu }, 'unit writes succeed again');
        st.lastError = null;
      }
    } catch (err) {
      const e = err instanceof DeviceError ? err : undefined;
      if (e?.code === ErrorCodes.NOT_LEADER) {
        this.counters.notLeader++;
        return;
      }
      if (e?.code === ErrorCodes.DEVICE_FENCED) {
        // Proven by the adapter (the unit's epoch read back above ours): a newer leader exists.
        this.counters.fenced++;
        this.opts.metrics?.refusal(this.group, ahu, true);
        st.lastError = e.message;
        this.refuseEpoch(
          epoch,
          `${ahu} holds epoch ${e.unitEpoch ?? '(above ours)'}, above ours (${epoch}): a newer leader wrote it`,
        );
        this.judge(performance.now());
        return;
      }
      this.counters.writeErrors++;
      if (e && isUnprovenStaleEpoch(e)) {
        // Refused with our stale-epoch code, but the unit's epoch did not back it: an ordinary
        // refusal of this unit; the group's other units go on, and this one is tried next period.
        st.refusals++;
        this.opts.metrics?.refusal(this.group, ahu, false);
      }
      const msg = (err as Error).message;
      if (st.lastError !== msg || !this.writeFaults.reported(ahu)) {
        const notLogged = this.writeFaults.failure(ahu);
        if (notLogged >= 0) this.log.warn({ ahu, err: msg, notLogged }, 'unit write failed');
      }
      st.lastError = msg;
    }
    await this.readUnit(ahu);
  }
}

/**
 * Each group reads its neighbours' rows every period, and a row is read by all of its group's
 * neighbours: its call for air is parsed once per row (a new row is a new body); null: none.
 */
const callByRow = new WeakMap<Buffer, NeighbourCall | null>();
function callOf(body: Buffer): NeighbourCall | null {
  let c = callByRow.get(body);
  if (c === undefined) {
    c = callFrom(parseRow(body)?.control);
    callByRow.set(body, c);
  }
  return c;
}

function parseRow(body: Buffer): GroupProcessRow | null {
  try {
    const v = JSON.parse(body.toString('utf8')) as Partial<GroupProcessRow> & { v?: number };
    if (!v || typeof v !== 'object' || !v.commands || typeof v.commands !== 'object') return null;
    const commands: Record<string, HeldCommand> = {};
    for (const [a, c] of Object.entries(v.commands)) if (isHeldCommand(c)) commands[a] = c;
    return {
      v: 2,
      kind: v.kind === 'control' ? 'control' : 'hold',
      commands,
      mode: v.mode ?? 'hold',
      ...(v.control ? { control: v.control } : {}),
      ...(v.influence !== undefined ? { influence: v.influence } : {}),
      // Checked where it is used (verdictHoldMemoryOf at a new term), as `influence` is.
      ...(v.verdictHold !== undefined ? { verdictHold: v.verdictHold } : {}),
    };
  } catch {
    return null;
  }
}

/** A command's shape; its ranges are the safety layer's business (`gate`), applied before any write. */
function isHeldCommand(x: unknown): x is HeldCommand {
  const c = x as HeldCommand;
  return (
    !!c &&
    typeof c.fanPct === 'number' &&
    Number.isFinite(c.fanPct) &&
    typeof c.supplySetpointC === 'number' &&
    Number.isFinite(c.supplySetpointC)
  );
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
