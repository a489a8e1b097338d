// One simulated air handler's controller board, independent of protocol: local/remote control,
// the heartbeat watchdog with comm-loss fallback, epoch fencing, and the faults a real unit has.
// Invariants: a command is applied whole or not at all; the highest accepted epoch never goes
// down; every write attempt, accepted or not, goes to the journal exactly once. Modes, command,
// status and ranges are the device contract's (src/unit-contract.ts), not this board's.
import type { AirHandler } from '../../src/config/site-schema.ts';
import {
  type AhuCommand,
  type AhuMeasurements,
  type AhuMode,
  type AhuProtocol,
  type AhuStatus,
  ALARM_BITS,
  FAN_RANGE_PCT,
  inRange,
  SUPPLY_SETPOINT_RANGE_C,
} from '../../src/unit-contract.ts';
import type { Journal } from '../journal.ts';

export type RejectReason =
  | 'stale-epoch'
  | 'out-of-range'
  | 'partial-command-block'
  | 'fault-exception'
  | 'fault-bad-status'
  | 'heartbeat-unchanged'
  | 'offline'
  | 'tripped'
  /** Held longer than the unit's apply bound (a slow unit behind a gateway's timeout, an OPC-UA timeoutHint): dropped, never applied. */
  | 'expired'
  /** A vendor-profile unit whose own BMS watchdog expired: it ignores BMS commands until the BMS refreshes it. */
  | 'bms-timeout'
  /** A vendor-profile unit that does not accept this function code (exception 01). */
  | 'unsupported-function'
  /** A vendor-profile unit still starting up: its data is not ready (exception 02). */
  | 'not-ready';

/** What one accepted BMS write of a vendor-profile unit changes (./profile-pdu.ts decides it). */
export interface BmsUpdate {
  /** true: follow BMS commands (leaving a BMS-watchdog fallback); false: hand back to local control. */
  remoteEnable?: boolean;
  /** false: the BMS stops the unit (fan off, no cooling). */
  run?: boolean;
  fanPct?: number;
  supplySetpointC?: number;
  heartbeat?: number;
}

/** The measured points a probe can break on (the `ahu-sensor-broken` fault). */
export const MEASURED_POINTS = [
  'supplyC',
  'returnC',
  'fanPct',
  'cwValvePct',
  'fanKw',
  'coolingKw',
] as const satisfies readonly (keyof AhuMeasurements)[];
export type MeasuredPoint = (typeof MEASURED_POINTS)[number];

/**
 * The point of a vendor profile (or of a unit's OPC-UA nodes) that carries a measured point: the
 * fan's feedback, not its command; every other measured point has its own name there.
 */
export function profilePointOf(point: MeasuredPoint): string {
  return point === 'fanPct' ? 'fanFeedbackPct' : point;
}

export interface WriteResult {
  accepted: boolean;
  reason?: RejectReason | undefined;
}

/** Faults injected through the sim API; protocol servers consult them on every request. */
export interface AhuFaults {
  trip: boolean;
  offline: boolean;
  slowMs: number;
  /** Modbus: answer every request with this exception code (e.g. 4 = server device failure). */
  exceptionCode: number | null;
  /** Modbus: answer with bytes that are not a valid frame. */
  garbage: boolean;
  /** Modbus: serve the request, send half the answer, then reset the connection (TCP RST). */
  reset: boolean;
  /** Modbus: take the request and never answer it (a hung peer; nothing is served or journaled). */
  silent: boolean;
  /** OPC-UA: reads and writes answer with this Bad status name (e.g. "BadDeviceFailure"). */
  badStatus: string | null;
  /**
   * `exceptionCode` / `badStatus` answer writes only; reads are served as usual (a unit or gateway
   * that refuses commands while its status reads fine).
   */
  faultWritesOnly: boolean;
  /**
   * Broken probes: the measured point, and the no-data word a native Modbus unit serves for it.
   * A profile unit serves its profile's `noData` value instead, an OPC-UA unit BadSensorFailure.
   */
  brokenSensors: Map<MeasuredPoint, number>;
}

export class SimAirHandler {
  readonly id: string;
  readonly protocol: AhuProtocol;
  readonly config: AirHandler;
  readonly faults: AhuFaults = {
    trip: false,
    offline: false,
    slowMs: 0,
    exceptionCode: null,
    garbage: false,
    reset: false,
    silent: false,
    badStatus: null,
    faultWritesOnly: false,
    brokenSensors: new Map(),
  };

  private remoteEnabled = false;
  private commLoss = false;
  /** A vendor unit's run command is off (supervisory off): it stands still under remote control. */
  private bmsStopped = false;
  private epoch = 0;
  private heartbeat = 0;
  private lastHeartbeatChangeWallMs = 0;
  private lastWriter: string | null = null;
  private remoteFanPct: number;
  private remoteSetpointC: number;
  private meas: AhuMeasurements;
  private readonly journal: Journal;
  private readonly wallNowMs: () => number;

  constructor(config: AirHandler, journal: Journal, wallNowMs: () => number = () => performance.now()) {
    this.journal = journal;
    this.wallNowMs = wallNowMs;
    this.id = config.id;
    this.protocol = config.protocol;
    this.config = config;
    this.remoteFanPct = config.localFanPct;
    this.remoteSetpointC = config.localSetpointC;
    this.meas = {
      fanPct: config.localFanPct,
      supplyC: config.localSetpointC,
      returnC: 28,
      cwValvePct: 50,
      fanKw: 0,
      coolingKw: 0,
    };
  }

  get mode(): AhuMode {
    if (this.faults.trip) return 'tripped';
    if (!this.remoteEnabled) return 'local';
    return this.commLoss ? 'fallback' : 'remote';
  }

  /** What the unit drives its fan and coil to right now, for the thermal model. */
  effectiveCommand(): { running: boolean; fanPct: number; supplySetpointC: number } {
    switch (this.mode) {
      case 'tripped':
        return { running: false, fanPct: 0, supplySetpointC: this.config.localSetpointC };
      case 'remote':
        return {
          running: !this.bmsStopped,
          fanPct: this.bmsStopped ? 0 : this.remoteFanPct,
          supplySetpointC: this.remoteSetpointC,
        };
      default:
        return {
          running: true,
          fanPct: this.config.localFanPct,
          supplySetpointC: this.config.localSetpointC,
        };
    }
  }

  /**
   * Applies a fenced command from `client` atomically, or refuses it whole. `protocolReject` lets a
   * protocol server refuse before the unit looks (a fault, a malformed block) and still journal once.
   */
  write(client: string, cmd: AhuCommand, protocolReject?: RejectReason): WriteResult {
    const result = protocolReject ? { accepted: false, reason: protocolReject } : this.check(cmd);
    if (result.accepted) {
      this.epoch = cmd.epoch;
      if (cmd.heartbeat !== this.heartbeat || !this.remoteEnabled) {
        this.lastHeartbeatChangeWallMs = this.wallNowMs();
      }
      this.heartbeat = cmd.heartbeat;
      this.lastWriter = client;
      if (cmd.remoteEnable) {
        this.commLoss = false;
        this.remoteEnabled = true;
        this.remoteFanPct = cmd.fanPct;
        this.remoteSetpointC = cmd.supplySetpointC;
      } else {
        this.remoteEnabled = false;
        this.commLoss = false;
      }
    }
    this.journal.record({
      ahu: this.id,
      protocol: this.protocol,
      client,
      epoch: cmd.epoch,
      values: {
        heartbeat: cmd.heartbeat,
        remoteEnable: cmd.remoteEnable,
        fanPct: cmd.fanPct,
        supplySetpointC: cmd.supplySetpointC,
      },
      accepted: result.accepted,
      reason: result.reason ?? null,
    });
    return result;
  }

  private check(cmd: AhuCommand): WriteResult {
    if (!Number.isSafeInteger(cmd.epoch) || cmd.epoch < 0) return { accepted: false, reason: 'out-of-range' };
    if (cmd.epoch < this.epoch) return { accepted: false, reason: 'stale-epoch' };
    // Leaving comm-loss fallback needs a heartbeat that has changed since the loss: a stray
    // repeat of the last frame must not take the unit back under remote control.
    if (this.commLoss && cmd.remoteEnable && cmd.heartbeat === this.heartbeat) {
      return { accepted: false, reason: 'heartbeat-unchanged' };
    }
    if (!inRange(cmd.fanPct, FAN_RANGE_PCT) || !inRange(cmd.supplySetpointC, SUPPLY_SETPOINT_RANGE_C)) {
      return { accepted: false, reason: 'out-of-range' };
    }
    return { accepted: true };
  }

  /**
   * A write of a vendor-profile unit, which has no epoch and no command block: only the points it
   * carries change, after the same range check as a fenced command. Journaled once, with the
   * points as they reached the unit (`values`, coolctl names) and epoch 0 (the unit has none).
   */
  applyBms(
    client: string,
    update: BmsUpdate,
    values: Record<string, number | boolean>,
    reject?: RejectReason,
  ): WriteResult {
    let result: WriteResult = reject ? { accepted: false, reason: reject } : { accepted: true };
    if (
      result.accepted &&
      ((update.fanPct !== undefined && !inRange(update.fanPct, FAN_RANGE_PCT)) ||
        (update.supplySetpointC !== undefined && !inRange(update.supplySetpointC, SUPPLY_SETPOINT_RANGE_C)))
    ) {
      result = { accepted: false, reason: 'out-of-range' };
    }
    if (result.accepted) {
      this.lastWriter = client;
      if (update.heartbeat !== undefined) this.heartbeat = update.heartbeat;
      if (update.fanPct !== undefined) this.remoteFanPct = update.fanPct;
      if (update.supplySetpointC !== undefined) this.remoteSetpointC = update.supplySetpointC;
      if (update.run !== undefined) this.bmsStopped = !update.run;
      if (update.remoteEnable !== undefined) {
        this.remoteEnabled = update.remoteEnable;
        this.commLoss = false;
      }
    }
    this.journal.record({
      ahu: this.id,
      protocol: this.protocol,
      client,
      epoch: this.epoch,
      values,
      accepted: result.accepted,
      reason: result.reason ?? null,
    });
    return result;
  }

  /**
   * A vendor unit's own BMS watchdog expired: it drops the BMS commands it held and runs on its
   * local values (fallback) until the BMS refreshes it. Returns true when this changed the mode.
   */
  dropBms(): boolean {
    if (!this.remoteEnabled || this.commLoss) return false;
    this.commLoss = true;
    this.bmsStopped = false;
    this.remoteFanPct = this.config.localFanPct;
    this.remoteSetpointC = this.config.localSetpointC;
    return true;
  }

  /** Heartbeat watchdog, on the wall clock: communication timing is real even when physics runs fast. */
  checkWatchdog(): void {
    if (!this.remoteEnabled || this.commLoss) return;
    if (this.wallNowMs() - this.lastHeartbeatChangeWallMs > this.config.watchdogS * 1000) {
      this.commLoss = true;
    }
  }

  updateMeasurements(m: AhuMeasurements): void {
    this.meas = m;
  }

  status(): AhuStatus {
    const eff = this.effectiveCommand();
    let alarms = 0;
    if (this.commLoss) alarms |= ALARM_BITS.commLoss;
    if (this.faults.trip) alarms |= ALARM_BITS.trip;
    if (this.meas.supplyC > eff.supplySetpointC + 3) alarms |= ALARM_BITS.highSupplyTemp;
    return {
      id: this.id,
      protocol: this.protocol,
      mode: this.mode,
      supplySetpointC: eff.supplySetpointC,
      fanCmdPct: eff.fanPct,
      ...this.meas,
      epoch: this.epoch,
      heartbeat: this.heartbeat,
      lastWriter: this.lastWriter,
      alarms,
      watchdogS: this.config.watchdogS,
      localSetpointC: this.config.localSetpointC,
    };
  }
}
