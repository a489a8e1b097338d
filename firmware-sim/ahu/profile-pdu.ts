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
import type { CompiledProfile } from '../../src/devices/profile/codec.ts';
import type { Profile } from '../../src/devices/profile/schema.ts';
import type { ImageValues, ProfileCommand } from '../../src/devices/profile/values.ts';
import { answerWithFaults, type PduCounters, type PduHandler, type PduOutcome } from './modbus-pdu.ts';
import { ProfileBms, type ProfileQuirks } from './profile-bms.ts';
import { type MeasuredPoint, profilePointOf, type RejectReason, type SimAirHandler } from './unit.ts';

export type { ProfileQuirks } from './profile-bms.ts';

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
  private readonly log: Logger;
  /** The unit's BMS side: command points as written, its own watchdog, start-up windows. */
  readonly bms: ProfileBms;
  /** Wire addresses that belong to a point, per table: reads elsewhere are exception 02. */
  private readonly defined = new Map<string, Set<number>>();
  /** Reads may span unused addresses (the profile's maxGap): they read 0 then, as the field does. */
  private readonly gapsReadZero: boolean;
  private readonly fcs: ReadonlySet<number>;
  private readonly maxReadRegisters: number;
  private readonly noDataPoints: ReadonlySet<string>;
  private readonly seenBlocks = new Set<string>();
  constructor(
    unit: SimAirHandler,
    profile: CompiledProfile,
    raw: Profile,
    counters: PduCounters,
    opts: ProfilePduOptions,
  ) {
    this.unit = unit;
    this.profile = profile;
    this.counters = counters;
    this.log = opts.log;
    for (const p of profile.points.values()) {
      const set = this.defined.get(p.table) ?? new Set<number>();
      for (let i = 0; i < p.length; i++) set.add(p.address + i);
      this.defined.set(p.table, set);
    }
    const m = raw.modbus;
    this.bms = new ProfileBms(unit, profile, {
      ...(opts.quirks ? { quirks: opts.quirks } : {}),
      ...(opts.wallNowMs ? { wallNowMs: opts.wallNowMs } : {}),
      alarmNames: Object.values(m?.points ?? {}).flatMap((p) => [
        ...(p.alarm ? [p.alarm] : []),
        ...Object.values(p.alarmBits ?? {}),
      ]),
      hasCommand: (name) => profile.points.has(name),
    });
    this.gapsReadZero = (m?.maxGap ?? 0) > 0;
    this.fcs = new Set(m?.functionCodes ?? []);
    this.maxReadRegisters = m?.maxReadRegisters ?? MAX_READ_REGISTERS;
    this.noDataPoints = new Set(
      Object.entries(m?.points ?? {})
        .filter(([, p]) => p.noData !== undefined)
        .map(([n]) => n),
    );
  }

  watchdogPeriodS(): number | undefined {
    return this.bms.watchdogPeriodS();
  }

  /** The first read of a new block is slow: a unit (or the gateway before it) learning the point. */
  serviceDelayMs(pdu: Buffer): number {
    const fc = pdu.readUInt8(0);
    if (fc < 1 || fc > 4 || pdu.length !== 5 || this.bms.quirks.firstReadDelayMs <= 0) return 0;
    const key = pdu.toString('hex');
    if (this.seenBlocks.has(key)) return 0;
    this.seenBlocks.add(key);
    return this.bms.quirks.firstReadDelayMs;
  }

  /** The unit's own BMS watchdog (./profile-bms.ts); the simulation calls it every tick. */
  checkWatchdog(): void {
    this.bms.checkWatchdog(this.log);
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
    if (this.bms.notReady()) return this.exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
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
    const values: ImageValues & Record<string, unknown> = this.bms.image();
    // Sensors not valid yet: the points that have a no-data value read it (never a plausible 0).
    if (!this.bms.sensorsValid()) {
      for (const n of this.noDataPoints) delete values[n];
    }
    // A broken probe reads its no-data value too (the simulation refuses the fault where there is none).
    for (const p of this.unit.faults.brokenSensors.keys()) delete values[profilePointOf(p)];
    return values;
  }

  /** Whether the unit can serve `point` as no data: its profile names a no-data value for it. */
  servesNoData(point: MeasuredPoint): boolean {
    return this.noDataPoints.has(profilePointOf(point));
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
    if (this.bms.notReady()) {
      this.unit.applyBms(client, {}, values, 'not-ready');
      return this.exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
    }
    const applied = this.bms.apply(client, cmd, values);
    if (applied === 'out-of-range') return this.exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    if (applied === 'failed') return this.exception(fc, MODBUS_EXCEPTION.serverDeviceFailure);
    // 'ignored': the unit ignores BMS commands until its watchdog is refreshed; the wire says nothing of it.
    if (applied === 'accepted') this.counters.writesAccepted++;
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
