// A simulated unit serving a vendor-style device profile (config/profiles/NAME.yaml) instead of
// coolctl's native map: its registers and bits come from the shared codec (src/devices/profile/
// codec.ts: encodeImage for reads, decodeWrite for writes), so controller and simulator cannot
// disagree on addresses or scaling. It bites as real units do (REAL-PLANT-NOTES.md): exception 02
// before its data is ready, slow first answers, no-data values, only the function codes the
// profile lists, and its own BMS watchdog in the profile's style — or none at all.
// Invariants: every write that reaches a writable point is journaled once, with coolctl's point
// names; a write the unit ignores (its watchdog has expired) is answered as the unit answers it and
// journaled refused; the watchdog changes the mode once per expiry and logs one line for it.
import type { Logger } from 'pino';
import { MODBUS_EXCEPTION } from '../../src/devices/modbus/point-map.ts';
import type { CompiledProfile, ImageValues, ProfileCommand } from '../../src/devices/profile/codec.ts';
import type { Profile } from '../../src/devices/profile/schema.ts';
import { answerWithFaults, type PduCounters, type PduHandler, type PduOutcome } from './modbus-pdu.ts';
import type { BmsUpdate, RejectReason, SimAirHandler } from './unit.ts';

/** Start-up behaviour of a vendor unit; the simulator's defaults, zero in tests that do not study it. */
export interface ProfileQuirks {
  /** After power-up, reads and writes answer exception 02 this long: the unit's data is not ready. */
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

const FC = {
  coils: 1,
  discrete: 2,
  holding: 3,
  input: 4,
  coil: 5,
  register: 6,
  coils15: 15,
  registers: 16,
} as const;
const MAX_READ_REGISTERS = 125;
const MAX_READ_BITS = 2000;
const TABLE_OF_READ = { 1: 'coil', 2: 'discrete', 3: 'holding', 4: 'input' } as const;

/**
 * Which of the simulator's conditions a profile alarm name stands for: names are the profile
 * author's (alarm / alarmBits), so the words they use decide (docs/modbus-register-map.md).
 */
export const ALARM_WORDS: readonly [RegExp, 'commLoss' | 'trip' | 'highSupplyTemp'][] = [
  [/comm|bms|watchdog|heartbeat/i, 'commLoss'],
  [/high.*supply|supply.*(high|over)|over.*temp|discharge.*high/i, 'highSupplyTemp'],
  [/trip|fan|airflow|fail|common|general|unit/i, 'trip'],
];

export interface ProfilePduOptions {
  quirks?: Partial<ProfileQuirks>;
  log: Logger;
  /** Wall clock for the watchdog and the start-up windows (tests may pass their own). */
  wallNowMs?: () => number;
}

export class ProfilePdu implements PduHandler {
  readonly unit: SimAirHandler;
  readonly counters: PduCounters;
  readonly profile: CompiledProfile;
  private readonly raw: Profile;
  private readonly quirks: ProfileQuirks;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly bootMs: number;
  /** Wire addresses that belong to a point, per table: reads elsewhere are exception 02. */
  private readonly defined = new Map<string, Set<number>>();
  /** Reads may span unused addresses (the profile's maxGap): they read 0 then, as the field does. */
  private readonly gapsReadZero: boolean;
  private readonly fcs: ReadonlySet<number>;
  private readonly maxReadRegisters: number;
  private readonly noDataPoints: ReadonlySet<string>;
  private readonly seenBlocks = new Set<string>();
  /** Command points as the BMS last wrote them (what their registers read back). */
  private readonly written: ProfileCommand = {};
  private heartbeatChangedMs: number;
  private refreshedMs: number;
  private timerSetMs: number;
  private timerS: number | undefined;

  constructor(
    unit: SimAirHandler,
    profile: CompiledProfile,
    raw: Profile,
    counters: PduCounters,
    opts: ProfilePduOptions,
  ) {
    this.unit = unit;
    this.profile = profile;
    this.raw = raw;
    this.counters = counters;
    this.quirks = { ...DEFAULT_PROFILE_QUIRKS, ...opts.quirks };
    this.log = opts.log;
    this.now = opts.wallNowMs ?? (() => performance.now());
    this.bootMs = this.now();
    this.heartbeatChangedMs = this.bootMs;
    this.refreshedMs = this.bootMs;
    this.timerSetMs = this.bootMs;
    for (const p of profile.points.values()) {
      const set = this.defined.get(p.table) ?? new Set<number>();
      for (let i = 0; i < p.length; i++) set.add(p.address + i);
      this.defined.set(p.table, set);
    }
    const m = raw.modbus;
    this.gapsReadZero = (m?.maxGap ?? 0) > 0;
    this.fcs = new Set(m?.functionCodes ?? []);
    this.maxReadRegisters = m?.maxReadRegisters ?? MAX_READ_REGISTERS;
    this.noDataPoints = new Set(
      Object.entries(m?.points ?? {})
        .filter(([, p]) => p.noData !== undefined)
        .map(([n]) => n),
    );
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

  /** The first read of a new block is slow: a unit (or the gateway before it) learning the point. */
  serviceDelayMs(pdu: Buffer): number {
    const fc = pdu.readUInt8(0);
    if (fc < 1 || fc > 4 || pdu.length !== 5 || this.quirks.firstReadDelayMs <= 0) return 0;
    const key = pdu.toString('hex');
    if (this.seenBlocks.has(key)) return 0;
    this.seenBlocks.add(key);
    return this.quirks.firstReadDelayMs;
  }

  /**
   * The unit's own BMS watchdog, on the wall clock; the simulation calls it every tick. On expiry
   * the unit drops the BMS's commands and runs on its local values until the BMS refreshes it.
   */
  checkWatchdog(): void {
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
      this.log.warn(
        { ahu: this.unit.id, profile: this.profile.name, style, periodS },
        'unit watchdog expired: BMS commands dropped, unit on local control',
      );
    }
  }

  handle(client: string, pdu: Buffer): PduOutcome {
    this.counters.requests++;
    const faults = this.unit.faults;
    if (faults.offline) {
      this.counters.offlineDrops++;
      return { kind: 'offline' };
    }
    if (faults.silent) {
      this.counters.silentDrops++;
      return { kind: 'silent' };
    }
    const fc = pdu.readUInt8(0);
    const isWrite = fc === 5 || fc === 6 || fc === 15 || fc === 16;
    let answer: Buffer;
    if (faults.exceptionCode !== null && (isWrite || !faults.faultWritesOnly)) {
      if (isWrite) this.journalRefused(client, pdu, 'fault-exception');
      answer = this.exception(fc, faults.exceptionCode);
    } else {
      try {
        answer = isWrite ? this.write(client, pdu) : fc === 8 ? this.diagnostics(pdu) : this.read(pdu);
      } catch (err) {
        this.counters.handlerErrors++;
        this.log.error({ err, ahu: this.unit.id, client }, 'profile unit request handler failed');
        answer = this.exception(fc, MODBUS_EXCEPTION.serverDeviceFailure);
      }
    }
    return answerWithFaults(answer, faults, this.counters);
  }

  expire(client: string, pdu: Buffer): void {
    this.counters.requests++;
    this.counters.expiredDrops++;
    this.journalRefused(client, pdu, 'expired');
  }

  exception(fc: number, code: number): Buffer {
    this.counters.exceptionsSent++;
    this.counters.exceptionsByCode[code] = (this.counters.exceptionsByCode[code] ?? 0) + 1;
    return Buffer.from([(fc | 0x80) & 0xff, code & 0xff]);
  }

  /** FC8 sub-function 0 (return query data): the echo a master uses to test the line. */
  private diagnostics(pdu: Buffer): Buffer {
    if (!this.fcs.has(8)) return this.exception(8, MODBUS_EXCEPTION.illegalFunction);
    if (pdu.length < 3 || pdu.readUInt16BE(1) !== 0)
      return this.exception(8, MODBUS_EXCEPTION.illegalFunction);
    return Buffer.from(pdu);
  }

  private notReady(): boolean {
    return this.now() - this.bootMs < this.quirks.notReadyMs;
  }

  private read(pdu: Buffer): Buffer {
    const fc = pdu.readUInt8(0);
    if (fc < 1 || fc > 4 || !this.fcs.has(fc)) return this.exception(fc, MODBUS_EXCEPTION.illegalFunction);
    this.counters.reads++;
    if (pdu.length !== 5) return this.exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    const start = pdu.readUInt16BE(1);
    const count = pdu.readUInt16BE(3);
    const bits = fc <= 2;
    const max = bits ? MAX_READ_BITS : Math.min(MAX_READ_REGISTERS, this.maxReadRegisters);
    if (count < 1 || count > max) return this.exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    const table = TABLE_OF_READ[fc as 1 | 2 | 3 | 4];
    const defined = this.defined.get(table);
    if (start + count > 0x10000 || !defined?.has(start)) {
      return this.exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
    }
    if (!this.gapsReadZero) {
      for (let a = start; a < start + count; a++) {
        if (!defined.has(a)) return this.exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
      }
    }
    if (this.notReady()) return this.exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
    const image = this.profile.encodeImage(this.imageValues()).get(table);
    const value = (a: number): number => image?.get(a) ?? 0;
    if (bits) {
      const bytes = Math.ceil(count / 8);
      const body = Buffer.alloc(2 + bytes);
      body.writeUInt8(fc, 0);
      body.writeUInt8(bytes, 1);
      for (let i = 0; i < count; i++) {
        if (value(start + i)) body[2 + (i >> 3)] = (body[2 + (i >> 3)] ?? 0) | (1 << (i & 7));
      }
      return body;
    }
    const body = Buffer.alloc(2 + 2 * count);
    body.writeUInt8(fc, 0);
    body.writeUInt8(2 * count, 1);
    for (let i = 0; i < count; i++) body.writeUInt16BE(value(start + i) & 0xffff, 2 + 2 * i);
    return body;
  }

  /** What the unit shows now: measurements, the mode, and the command registers as last written. */
  private imageValues(): ImageValues & Record<string, unknown> {
    const st = this.unit.status();
    const eff = this.unit.effectiveCommand();
    const cfg = this.unit.config;
    const alarms: string[] = [];
    const conditions = {
      commLoss: st.mode === 'fallback',
      trip: st.mode === 'tripped',
      highSupplyTemp: (st.alarms & 4) !== 0,
    };
    for (const name of this.alarmNames()) {
      const kind = ALARM_WORDS.find(([re]) => re.test(name))?.[1];
      if (kind && conditions[kind]) alarms.push(name);
    }
    const periodS = this.watchdogPeriodS();
    const style = this.profile.watchdog.style;
    const timerReadback =
      style === 'countdown'
        ? Math.max(0, Math.ceil((this.timerS ?? periodS ?? 0) - (this.now() - this.timerSetMs) / 1000))
        : (this.timerS ?? this.profile.watchdog.timeoutS ?? 0);
    const values: ImageValues & Record<string, unknown> = {
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
      watchdogTimerS: timerReadback,
      alarms,
    };
    // Sensors not valid yet: the points that have a no-data value read it (never a plausible 0).
    if (this.now() - this.bootMs < this.quirks.notReadyMs + this.quirks.noDataMs) {
      for (const n of this.noDataPoints) delete values[n];
    }
    return values;
  }

  private alarmNames(): string[] {
    const out: string[] = [];
    for (const p of Object.values(this.raw.modbus?.points ?? {})) {
      if (p.alarm) out.push(p.alarm);
      for (const n of Object.values(p.alarmBits ?? {})) out.push(n);
    }
    return out;
  }

  private write(client: string, pdu: Buffer): Buffer {
    const fc = pdu.readUInt8(0);
    this.counters.writes++;
    const parsed = parseWrite(pdu);
    if (!parsed) return this.exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    const decoded = this.profile.decodeWrite(fc, parsed.address, parsed.values);
    if (!decoded.ok) {
      if (decoded.exception === 1) this.journalRefused(client, pdu, 'unsupported-function');
      else if (decoded.exception === 3) this.journalRefused(client, pdu, 'out-of-range');
      else if (this.touchesWritable(fc, parsed.address, parsed.values.length)) {
        this.journalRefused(client, pdu, 'partial-command-block');
      }
      this.log.debug({ ahu: this.unit.id, client, reason: decoded.reason }, 'profile unit write refused');
      return this.exception(fc, decoded.exception);
    }
    const cmd = decoded.command;
    const values = journalValues(cmd);
    if (this.notReady()) {
      this.unit.applyBms(client, {}, values, 'not-ready');
      return this.exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
    }
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
    const update: BmsUpdate = {};
    const commands = cmd.fanPct !== undefined || cmd.supplySetpointC !== undefined || cmd.run !== undefined;
    if (inFallback && !refreshes && (commands || cmd.remoteEnable === true)) {
      // The unit ignores BMS commands until its watchdog is refreshed; the wire says nothing of it.
      this.unit.applyBms(client, {}, values, 'bms-timeout');
      return echo(pdu);
    }
    if (cmd.fanPct !== undefined) update.fanPct = cmd.fanPct;
    if (cmd.supplySetpointC !== undefined) update.supplySetpointC = cmd.supplySetpointC;
    if (cmd.run !== undefined) update.run = cmd.run;
    if (cmd.heartbeat !== undefined) update.heartbeat = cmd.heartbeat;
    if (cmd.remoteEnable !== undefined) update.remoteEnable = cmd.remoteEnable;
    else if (commands && !this.profile.points.has('remoteEnable')) update.remoteEnable = true;
    else if (inFallback && refreshes) update.remoteEnable = true;
    const wasRemote = this.unit.mode === 'remote';
    const result = this.unit.applyBms(client, update, values);
    if (!result.accepted) {
      return this.exception(
        fc,
        result.reason === 'out-of-range'
          ? MODBUS_EXCEPTION.illegalDataValue
          : MODBUS_EXCEPTION.serverDeviceFailure,
      );
    }
    this.counters.writesAccepted++;
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
    return echo(pdu);
  }

  /** A refused write, journaled with what could be read of it (function code and addresses). */
  private journalRefused(client: string, pdu: Buffer, reason: RejectReason): void {
    const parsed = parseWrite(pdu);
    if (!parsed) return;
    const fc = pdu.readUInt8(0);
    const decoded = this.profile.decodeWrite(fc, parsed.address, parsed.values);
    const values = decoded.ok
      ? journalValues(decoded.command)
      : { fc, address: parsed.address, count: parsed.values.length };
    if (!decoded.ok && !this.touchesWritable(fc, parsed.address, parsed.values.length)) return;
    this.unit.applyBms(client, {}, values, reason);
  }

  private touchesWritable(fc: number, address: number, count: number): boolean {
    const table = fc === 5 || fc === 15 ? 'coil' : 'holding';
    for (const p of this.profile.points.values()) {
      if (
        p.table === table &&
        p.write !== undefined &&
        p.address < address + count &&
        p.address + p.length > address
      ) {
        return true;
      }
    }
    return false;
  }
}

/** Address and values of FC5/6/15/16 (bits as 0/1), or null when malformed (exception 03). */
export function parseWrite(pdu: Buffer): { address: number; values: number[] } | null {
  const fc = pdu.readUInt8(0);
  if (pdu.length < 5) return null;
  const address = pdu.readUInt16BE(1);
  switch (fc) {
    case FC.coil: {
      if (pdu.length !== 5) return null;
      const v = pdu.readUInt16BE(3);
      if (v !== 0xff00 && v !== 0x0000) return null;
      return { address, values: [v === 0xff00 ? 1 : 0] };
    }
    case FC.register:
      return pdu.length === 5 ? { address, values: [pdu.readUInt16BE(3)] } : null;
    case FC.coils15:
    case FC.registers: {
      if (pdu.length < 6) return null;
      const quantity = pdu.readUInt16BE(3);
      const byteCount = pdu.readUInt8(5);
      const bits = fc === FC.coils15;
      const max = bits ? 1968 : 123;
      const want = bits ? Math.ceil(quantity / 8) : 2 * quantity;
      if (quantity < 1 || quantity > max || byteCount !== want || pdu.length !== 6 + byteCount) return null;
      const values: number[] = [];
      for (let i = 0; i < quantity; i++) {
        values.push(bits ? ((pdu[6 + (i >> 3)] ?? 0) >> (i & 7)) & 1 : pdu.readUInt16BE(6 + 2 * i));
      }
      return { address, values };
    }
    default:
      return null;
  }
}

/** The normal answer to a write: FC5/FC6 echo the request, FC15/FC16 echo address and quantity. */
function echo(pdu: Buffer): Buffer {
  return Buffer.from(pdu.subarray(0, 5));
}

function journalValues(cmd: ProfileCommand): Record<string, number | boolean> {
  const out: Record<string, number | boolean> = {};
  for (const [k, v] of Object.entries(cmd)) if (v !== undefined) out[k] = v as number | boolean;
  return out;
}
