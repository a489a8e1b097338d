// The Modbus register map of an air handler, shared by the simulator's server and the controller's
// client so both encode the same words. Plain data and pure functions, no sockets; documented in
// docs/modbus-register-map.md. Commands encode exactly or throw; status values saturate.
import type { ModbusPointMap } from '../../config/site-schema.ts';
import { AHU_MODES, type AhuCommand, type AhuMode, type AhuStatus } from '../../unit-contract.ts';
import type { ScreenedPoint } from '../plausibility.ts';

export type { ModbusPointMap };

export const COMMAND_BLOCK_LEN = 8;
export const STATUS_BLOCK_LEN = 16;

/** Modbus exception codes this map uses; `staleEpoch` is ours (vendor range), never sent for anything else. */
export const MODBUS_EXCEPTION = {
  illegalFunction: 0x01,
  illegalDataAddress: 0x02,
  illegalDataValue: 0x03,
  serverDeviceFailure: 0x04,
  gatewayTargetFailedToRespond: 0x0b,
  staleEpoch: 0x0d,
} as const;

/** The command carried an epoch below the highest one the unit has accepted: a deposed leader. */
export const STALE_EPOCH_EXCEPTION = MODBUS_EXCEPTION.staleEpoch;

/** Offsets inside the command block (holding registers, written only as one FC16 of all 8). */
export const COMMAND_OFFSET = {
  epoch: 0, // 4 words, u64 most significant word first
  heartbeat: 4,
  remoteEnable: 5,
  fanPct: 6,
  supplySetpointC: 7,
} as const;

/** Offsets inside the status block (read-only; FC3 or FC4). */
export const STATUS_OFFSET = {
  mode: 0,
  fanPct: 1,
  supplySetpointC: 2,
  supplyC: 3,
  returnC: 4,
  cwValvePct: 5,
  alarms: 6,
  epoch: 7, // 4 words, u64 most significant word first
  heartbeat: 11,
  fanKw: 12,
  coolingKw: 13,
  watchdogS: 14,
  localSetpointC: 15,
} as const;

const FAN_KW_SCALE = 100;
const COOLING_KW_SCALE = 10;

/** Mode codes are the contract's order (MODE_CODE). */
const MODE_BY_CODE: readonly AhuMode[] = AHU_MODES;

/** The status fields the register map carries; an `AhuStatus` is one. */
export type StatusFields = Pick<
  AhuStatus,
  | 'fanPct'
  | 'supplySetpointC'
  | 'supplyC'
  | 'returnC'
  | 'cwValvePct'
  | 'alarms'
  | 'epoch'
  | 'heartbeat'
  | 'fanKw'
  | 'coolingKw'
  | 'watchdogS'
  | 'localSetpointC'
>;

export interface ModbusStatus extends StatusFields {
  /** 'unknown' when the unit reports a mode code this map does not know. */
  mode: AhuMode | 'unknown';
  modeCode: number;
  /** Measurement points whose register holds a no-data word (NO_DATA_WORDS); their figures mean nothing. */
  noData: ReadonlySet<ScreenedPoint>;
}

/**
 * Words a unit puts in a measurement register whose sensor is broken or has no data, as vendors
 * publish them: the i16 extremes 0x7FFF and 0x8000 (−32768) in any measurement register, and 0xFFFF
 * (−1 written to it) in an unsigned one; in a signed one 0xFFFF is −0.1 °C, a real reading. They are
 * no data at any scale: 0x7FFF fan kW is 327.67 kW, inside the power range, and at a tempScale of
 * 1000 it would be a plausible 32.767 °C.
 */
export const NO_DATA_WORDS = Object.freeze({
  i16: Object.freeze([0x7fff, 0x8000]),
  u16: Object.freeze([0x7fff, 0x8000, 0xffff]),
} as const);

/**
 * The measurement registers of the status block, with their register type: the registers that can
 * hold a no-data word (the simulator's `ahu-sensor-broken` fault and the coolctl-native profile's
 * `noData` lists are checked against this and NO_DATA_WORDS).
 */
export const MEASUREMENT_REGISTERS: readonly (readonly [ScreenedPoint, number, 'i16' | 'u16'])[] = [
  ['fanPct', STATUS_OFFSET.fanPct, 'u16'],
  ['supplySetpointC', STATUS_OFFSET.supplySetpointC, 'i16'],
  ['supplyC', STATUS_OFFSET.supplyC, 'i16'],
  ['returnC', STATUS_OFFSET.returnC, 'i16'],
  ['cwValvePct', STATUS_OFFSET.cwValvePct, 'u16'],
  ['fanKw', STATUS_OFFSET.fanKw, 'u16'],
  ['coolingKw', STATUS_OFFSET.coolingKw, 'u16'],
];

const NO_POINTS: ReadonlySet<ScreenedPoint> = new Set();

const resolvedMaps = new WeakSet<object>();

/** Fills the defaults of the site schema, and refuses blocks that overlap or run past 65535. */
export function resolvePointMap(pm?: Partial<ModbusPointMap>): ModbusPointMap {
  // Encoders and decoders take either; a map that came from here is not checked again per request.
  if (pm && resolvedMaps.has(pm)) return pm as ModbusPointMap;
  const r: ModbusPointMap = {
    commandBlock: pm?.commandBlock ?? 0,
    statusBlock: pm?.statusBlock ?? 100,
    tempScale: pm?.tempScale ?? 10,
    pctScale: pm?.pctScale ?? 10,
  };
  for (const [name, start, len] of [
    ['commandBlock', r.commandBlock, COMMAND_BLOCK_LEN],
    ['statusBlock', r.statusBlock, STATUS_BLOCK_LEN],
  ] as const) {
    if (!Number.isInteger(start) || start < 0 || start + len > 0x10000) {
      throw new RangeError(
        `Modbus point map: ${name} ${start} must be an integer with ${len} registers below 65536`,
      );
    }
  }
  if (
    r.commandBlock < r.statusBlock + STATUS_BLOCK_LEN &&
    r.statusBlock < r.commandBlock + COMMAND_BLOCK_LEN
  ) {
    throw new RangeError(
      `Modbus point map: command block ${r.commandBlock}..${r.commandBlock + COMMAND_BLOCK_LEN - 1} overlaps ` +
        `status block ${r.statusBlock}..${r.statusBlock + STATUS_BLOCK_LEN - 1}`,
    );
  }
  if (!(r.tempScale > 0) || !(r.pctScale > 0)) {
    throw new RangeError('Modbus point map: tempScale and pctScale must be > 0');
  }
  resolvedMaps.add(r);
  return r;
}

/**
 * The 8 command registers. Throws RangeError for a value the registers cannot carry exactly
 * (a command is never silently changed); the heartbeat is a counter and wraps modulo 65536.
 */
export function encodeCommand(cmd: AhuCommand, pm?: Partial<ModbusPointMap>): number[] {
  const m = resolvePointMap(pm);
  if (!Number.isSafeInteger(cmd.epoch) || cmd.epoch < 0) {
    throw new RangeError(`epoch ${cmd.epoch} must be a non-negative integer ≤ 2^53-1`);
  }
  if (!Number.isInteger(cmd.heartbeat)) throw new RangeError(`heartbeat ${cmd.heartbeat} must be an integer`);
  return [
    ...u64Words(cmd.epoch),
    ((cmd.heartbeat % 0x10000) + 0x10000) % 0x10000,
    cmd.remoteEnable ? 1 : 0,
    exactU16(cmd.fanPct * m.pctScale, 'fanPct'),
    exactI16(cmd.supplySetpointC * m.tempScale, 'supplySetpointC'),
  ];
}

/**
 * Decodes the 8 command registers. An epoch at or above 2^53 decodes to a number that is not a
 * safe integer (the unit refuses it as out of range); remoteEnable is any non-zero value, see
 * `commandRegistersValid` for the strict check.
 */
export function decodeCommand(regs: readonly number[], pm?: Partial<ModbusPointMap>): AhuCommand {
  const m = resolvePointMap(pm);
  if (regs.length !== COMMAND_BLOCK_LEN) {
    throw new RangeError(`command block is ${COMMAND_BLOCK_LEN} registers, got ${regs.length}`);
  }
  return {
    epoch: fromU64Words(regs, COMMAND_OFFSET.epoch),
    heartbeat: reg(regs, COMMAND_OFFSET.heartbeat),
    remoteEnable: reg(regs, COMMAND_OFFSET.remoteEnable) !== 0,
    fanPct: reg(regs, COMMAND_OFFSET.fanPct) / m.pctScale,
    supplySetpointC: toI16(reg(regs, COMMAND_OFFSET.supplySetpointC)) / m.tempScale,
  };
}

/** False when a register holds a value the map does not define (remote enable other than 0/1). */
export function commandRegistersValid(regs: readonly number[]): boolean {
  const enable = regs[COMMAND_OFFSET.remoteEnable];
  return regs.length === COMMAND_BLOCK_LEN && (enable === 0 || enable === 1);
}

/** The 16 status registers; values outside a register's range saturate at its limit. */
export function encodeStatus(
  status: StatusFields & { mode: AhuMode },
  pm?: Partial<ModbusPointMap>,
): number[] {
  const m = resolvePointMap(pm);
  const t = (c: number) => satI16(c * m.tempScale);
  const p = (pct: number) => satU16(pct * m.pctScale);
  const modeCode = MODE_BY_CODE.indexOf(status.mode);
  return [
    modeCode,
    p(status.fanPct),
    t(status.supplySetpointC),
    t(status.supplyC),
    t(status.returnC),
    p(status.cwValvePct),
    satU16(status.alarms),
    ...u64Words(Math.max(0, Math.trunc(status.epoch))),
    satU16(status.heartbeat),
    satU16(status.fanKw * FAN_KW_SCALE),
    satU16(status.coolingKw * COOLING_KW_SCALE),
    // Whole seconds, rounded up: a sub-second watchdog must not read as 0 ("none").
    satU16(Math.ceil(status.watchdogS)),
    t(status.localSetpointC),
  ];
}

export function decodeStatus(regs: readonly number[], pm?: Partial<ModbusPointMap>): ModbusStatus {
  const m = resolvePointMap(pm);
  if (regs.length !== STATUS_BLOCK_LEN) {
    throw new RangeError(`status block is ${STATUS_BLOCK_LEN} registers, got ${regs.length}`);
  }
  const t = (off: number) => toI16(reg(regs, off)) / m.tempScale;
  const p = (off: number) => reg(regs, off) / m.pctScale;
  const modeCode = reg(regs, STATUS_OFFSET.mode);
  let noData: Set<ScreenedPoint> | undefined;
  for (const [point, off, type] of MEASUREMENT_REGISTERS) {
    if (!(NO_DATA_WORDS[type] as readonly number[]).includes(reg(regs, off))) continue;
    noData ??= new Set();
    noData.add(point);
  }
  return {
    mode: MODE_BY_CODE[modeCode] ?? 'unknown',
    modeCode,
    noData: noData ?? NO_POINTS,
    fanPct: p(STATUS_OFFSET.fanPct),
    supplySetpointC: t(STATUS_OFFSET.supplySetpointC),
    supplyC: t(STATUS_OFFSET.supplyC),
    returnC: t(STATUS_OFFSET.returnC),
    cwValvePct: p(STATUS_OFFSET.cwValvePct),
    alarms: reg(regs, STATUS_OFFSET.alarms),
    epoch: fromU64Words(regs, STATUS_OFFSET.epoch),
    heartbeat: reg(regs, STATUS_OFFSET.heartbeat),
    fanKw: reg(regs, STATUS_OFFSET.fanKw) / FAN_KW_SCALE,
    coolingKw: reg(regs, STATUS_OFFSET.coolingKw) / COOLING_KW_SCALE,
    watchdogS: reg(regs, STATUS_OFFSET.watchdogS),
    localSetpointC: t(STATUS_OFFSET.localSetpointC),
  };
}

function reg(regs: readonly number[], off: number): number {
  const v = regs[off];
  if (v === undefined || !Number.isInteger(v) || v < 0 || v > 0xffff) {
    throw new RangeError(`register +${off} is ${v}, not a 16-bit word`);
  }
  return v;
}

/**
 * The four 16-bit words of a non-negative integer, most significant first, modulo 2^64. Plain
 * arithmetic, not BigInt (a heap object per step, ~30 per read and write at 1 000 units a second):
 * dividing an integral double by a power of two, flooring it and taking its remainder are exact.
 */
function u64Words(n: number): number[] {
  if (!(Number.isInteger(n) && n >= 0)) throw new RangeError(`${n} is not a non-negative integer`);
  const hi = Math.floor(n / 2 ** 32) % 2 ** 32;
  const lo = n % 2 ** 32;
  return [Math.floor(hi / 0x10000), hi % 0x10000, Math.floor(lo / 0x10000), lo % 0x10000];
}

/**
 * The integer four words hold, most significant first, as the nearest double (as Number(BigInt)
 * gives it): each half is exact, the high half times 2^32 too, and the one addition rounds once.
 */
function fromU64Words(regs: readonly number[], off: number): number {
  const hi = reg(regs, off) * 0x10000 + reg(regs, off + 1);
  const lo = reg(regs, off + 2) * 0x10000 + reg(regs, off + 3);
  return hi * 2 ** 32 + lo;
}

function toI16(word: number): number {
  return word >= 0x8000 ? word - 0x10000 : word;
}

function exactU16(x: number, what: string): number {
  const v = Math.round(x);
  if (!Number.isFinite(x) || v < 0 || v > 0xffff)
    throw new RangeError(`${what} ${x} does not fit an unsigned register`);
  return v;
}

function exactI16(x: number, what: string): number {
  const v = Math.round(x);
  if (!Number.isFinite(x) || v < -0x8000 || v > 0x7fff)
    throw new RangeError(`${what} ${x} does not fit a signed register`);
  return v & 0xffff;
}

function satU16(x: number): number {
  if (!Number.isFinite(x)) return x > 0 ? 0xffff : 0;
  return Math.min(0xffff, Math.max(0, Math.round(x)));
}

function satI16(x: number): number {
  const v = Number.isFinite(x)
    ? Math.min(0x7fff, Math.max(-0x8000, Math.round(x)))
    : x > 0
      ? 0x7fff
      : -0x8000;
  return v & 0xffff;
}
