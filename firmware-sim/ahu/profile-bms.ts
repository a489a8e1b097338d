// A vendor unit's BMS side as its profile describes it, whatever the protocol that carries it: the
// command points as the BMS last wrote them, the unit's own BMS watchdog (toggle, timeout
// register, countdown, validity, or none) and the rules a BMS command meets. The Modbus profile
// unit (./profile-pdu.ts) and the OPC-UA one (./opcua-profile-unit.ts) both keep one of these, so
// a unit behaves the same behind either protocol (REAL-PLANT-NOTES.md).
// Invariants: a command the unit ignores (its watchdog expired and the write does not refresh it)
// is journaled refused ('bms-timeout') and answered as the unit answers it (no error on the wire);
// taking remote control starts the watchdog's period afresh; the watchdog drops the BMS's
// commands once per expiry and logs one line for it.
import type { Logger } from 'pino';
import type { CompiledProfile } from '../../src/devices/profile/codec.ts';
import type { ImageValues, ProfileCommand } from '../../src/devices/profile/values.ts';
import type { BmsUpdate, SimAirHandler } from './unit.ts';

/** Start-up behaviour of a vendor unit; the simulator's defaults, zero in tests that do not study it. */
export interface ProfileQuirks {
  /** After power-up, reads and writes are refused this long: the unit's data is not ready. */
  notReadyMs: number;
  /** After that, points with a no-data value read it (e.g. −32768) this long: sensors not yet valid. */
  noDataMs: number;
  /** The first read of each block is answered this much later (a unit or gateway learning the point). */
  firstReadDelayMs: number;
}

export const DEFAULT_PROFILE_QUIRKS: Readonly<ProfileQuirks> = Object.freeze({
  notReadyMs: 2_000,
  noDataMs: 2_000,
  firstReadDelayMs: 150,
});

/**
 * Which of the simulator's conditions a profile alarm name stands for: names are the profile
 * author's (alarm / alarmBits), so the words they use decide (docs/modbus-register-map.md).
 */
export const ALARM_WORDS: readonly [RegExp, 'commLoss' | 'trip' | 'highSupplyTemp'][] = [
  [/comm|bms|watchdog|heartbeat/i, 'commLoss'],
  [/high.*supply|supply.*(high|over)|over.*temp|discharge.*high/i, 'highSupplyTemp'],
  [/trip|fan|airflow|fail|common|general|unit/i, 'trip'],
];

/** What became of a BMS command the unit was ready for. */
export type BmsApplied = 'accepted' | 'ignored' | 'out-of-range' | 'failed';

export interface ProfileBmsOptions {
  quirks?: Partial<ProfileQuirks>;
  /** Wall clock for the watchdog and the start-up windows (tests may pass their own). */
  wallNowMs?: () => number;
  /** The profile's alarm names (its `alarm` and `alarmBits`), in the protocol section's order. */
  alarmNames: readonly string[];
  /** Whether the BMS can write this command point (no remote-enable point: a command takes the unit). */
  hasCommand: (name: string) => boolean;
}

export class ProfileBms {
  readonly quirks: ProfileQuirks;
  readonly now: () => number;
  readonly bootMs: number;
  /** Command points as the BMS last wrote them (what their registers or variables read back). */
  private readonly written: ProfileCommand = {};
  private readonly alarmNames: readonly string[];
  private readonly hasCommand: (name: string) => boolean;
  private heartbeatChangedMs: number;
  private refreshedMs: number;
  private timerSetMs: number;
  private timerS: number | undefined;

  private readonly unit: SimAirHandler;
  private readonly profile: CompiledProfile;

  constructor(unit: SimAirHandler, profile: CompiledProfile, opts: ProfileBmsOptions) {
    this.unit = unit;
    this.profile = profile;
    this.quirks = { ...DEFAULT_PROFILE_QUIRKS, ...opts.quirks };
    this.now = opts.wallNowMs ?? (() => performance.now());
    this.bootMs = this.now();
    this.heartbeatChangedMs = this.bootMs;
    this.refreshedMs = this.bootMs;
    this.timerSetMs = this.bootMs;
    this.alarmNames = opts.alarmNames;
    this.hasCommand = opts.hasCommand;
  }

  /** Right after power-up: the unit refuses reads and writes. */
  notReady(): boolean {
    return this.now() - this.bootMs < this.quirks.notReadyMs;
  }

  /** Past the no-data window: the unit's sensors read real values. */
  sensorsValid(): boolean {
    return this.now() - this.bootMs >= this.quirks.notReadyMs + this.quirks.noDataMs;
  }

  /** The unit's own watchdog period now, seconds; undefined: it has none (style none, or disabled by 0). */
  watchdogPeriodS(): number | undefined {
    const w = this.profile.watchdog;
    switch (w.style) {
      case 'none':
        return undefined;
      case 'toggle':
        return w.timeoutS ?? this.unit.config.watchdogS;
      default: {
        const s = this.timerS ?? w.timeoutS ?? this.unit.config.watchdogS;
        return s > 0 ? s : undefined;
      }
    }
  }

  /**
   * The unit's own BMS watchdog, on the wall clock; the simulation calls it every tick. On expiry
   * the unit drops the BMS's commands and runs on its local values until the BMS refreshes it.
   */
  checkWatchdog(log: Logger | undefined): void {
    if (this.unit.mode !== 'remote') return;
    const periodS = this.watchdogPeriodS();
    if (periodS === undefined) return;
    const style = this.profile.watchdog.style;
    const since =
      style === 'toggle'
        ? this.heartbeatChangedMs
        : style === 'countdown'
          ? this.timerSetMs
          : this.refreshedMs;
    if (this.now() - since <= periodS * 1000) return;
    if (this.unit.dropBms()) {
      log?.warn(
        { ahu: this.unit.id, profile: this.profile.name, style, periodS },
        'unit watchdog expired: BMS commands dropped, unit on local control',
      );
    }
  }

  /** What the unit shows now: measurements, the mode, alarms, and the command points as last written. */
  image(): ImageValues {
    const st = this.unit.status();
    const eff = this.unit.effectiveCommand();
    const cfg = this.unit.config;
    const conditions = {
      commLoss: st.mode === 'fallback',
      trip: st.mode === 'tripped',
      highSupplyTemp: (st.alarms & 4) !== 0,
    };
    const alarms: string[] = [];
    for (const name of this.alarmNames) {
      const kind = ALARM_WORDS.find(([re]) => re.test(name))?.[1];
      if (kind && conditions[kind]) alarms.push(name);
    }
    const periodS = this.watchdogPeriodS();
    return {
      supplyC: st.supplyC,
      returnC: st.returnC,
      supplySetpointFeedbackC: st.supplySetpointC,
      localSetpointC: st.localSetpointC,
      fanFeedbackPct: st.fanPct,
      cwValvePct: st.cwValvePct,
      fanKw: st.fanKw,
      coolingKw: st.coolingKw,
      mode: st.mode,
      runFeedback: eff.running,
      heartbeatFeedback: st.heartbeat,
      watchdogS: periodS ?? 0,
      supplySetpointC: this.written.supplySetpointC ?? cfg.localSetpointC,
      fanPct: this.written.fanPct ?? cfg.localFanPct,
      remoteEnable: this.written.remoteEnable ?? false,
      run: this.written.run ?? true,
      heartbeat: this.written.heartbeat ?? 0,
      watchdogTimerS:
        this.profile.watchdog.style === 'countdown'
          ? Math.max(0, Math.ceil((this.timerS ?? periodS ?? 0) - (this.now() - this.timerSetMs) / 1000))
          : (this.timerS ?? this.profile.watchdog.timeoutS ?? 0),
      alarms,
    };
  }

  /**
   * A decoded BMS command reaching a ready unit, journaled once (`values` as the journal shows it).
   * A unit whose own watchdog expired ignores commands until a write refreshes it.
   */
  apply(client: string, cmd: ProfileCommand, values: Record<string, number | boolean>): BmsApplied {
    const now = this.now();
    const style = this.profile.watchdog.style;
    const heartbeatChanged = cmd.heartbeat !== undefined && cmd.heartbeat !== (this.written.heartbeat ?? 0);
    const timerWritten = cmd.watchdogTimerS !== undefined;
    const refreshes =
      style === 'toggle'
        ? heartbeatChanged
        : style === 'countdown'
          ? timerWritten && (cmd.watchdogTimerS ?? 0) > 0
          : style !== 'none';
    const inFallback = this.unit.mode === 'fallback';
    const commands = cmd.fanPct !== undefined || cmd.supplySetpointC !== undefined || cmd.run !== undefined;
    if (inFallback && !refreshes && (commands || cmd.remoteEnable === true)) {
      this.unit.applyBms(client, {}, values, 'bms-timeout');
      return 'ignored';
    }
    const update: BmsUpdate = {};
    if (cmd.fanPct !== undefined) update.fanPct = cmd.fanPct;
    if (cmd.supplySetpointC !== undefined) update.supplySetpointC = cmd.supplySetpointC;
    if (cmd.run !== undefined) update.run = cmd.run;
    if (cmd.heartbeat !== undefined) update.heartbeat = cmd.heartbeat;
    if (cmd.remoteEnable !== undefined) update.remoteEnable = cmd.remoteEnable;
    else if (commands && !this.hasCommand('remoteEnable')) update.remoteEnable = true;
    else if (inFallback && refreshes) update.remoteEnable = true;
    const wasRemote = this.unit.mode === 'remote';
    const result = this.unit.applyBms(client, update, values);
    if (!result.accepted) return result.reason === 'out-of-range' ? 'out-of-range' : 'failed';
    Object.assign(this.written, cmd);
    if (heartbeatChanged) this.heartbeatChangedMs = now;
    if (timerWritten) {
      this.timerS = cmd.watchdogTimerS;
      this.timerSetMs = now;
    }
    if (refreshes) this.refreshedMs = now;
    // Taking remote control (from local, or back from fallback) starts the watchdog's period afresh.
    if (!wasRemote && this.unit.status().mode === 'remote') {
      this.heartbeatChangedMs = now;
      this.refreshedMs = now;
      if (!timerWritten) this.timerSetMs = now;
    }
    return 'accepted';
  }
}
