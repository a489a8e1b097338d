// The device-profile codec: a profile (config/profiles/*.yaml, loaded by load.ts) compiled into the
// pure functions both sides of the wire use — the controller (src/devices/modbus) and the simulator
// (firmware-sim). No I/O, no clocks. Invariants: a command is encoded exactly or throws
// COOLCTL_E_PROFILE_VALUE (never clamped — the safety layer limits values before they get here);
// a no-data value decodes as absent, never as 0; reads never cover an address the profile does not
// allow (gaps only up to `maxGap`).
//
// API (docs/device-profiles.md):
//   compileProfile(profile, { firmware? }) → CompiledProfile   (throws ConfigError PROFILE_INVALID)
//   .planReads(points?)            → ReadRequest[]   fewest requests for those points (default: status)
//   .decodeReads(results)          → DecodedStatus   scaled values, mode, alarm names, absent points
//   .encodeCommand(cmd)            → WriteRequest[]  ordered writes, writeTogether groups in one request
//   .encodeImage(values)           → RegisterImage   simulator: the registers/bits a unit shows
//   .decodeWrite(fc, addr, values) → WriteDecode     simulator: what a write request commands
//   .opcua                         → the OPC-UA node map with the same scaling (when the profile has one)
//   .opcua.encodeValues(values)    → simulator: the raw value each OPC-UA variable shows
import { ConfigError, CoolctlError, ErrorCodes } from '../../errors.ts';
import { inRange, POINT_RANGES, type PointRange } from '../unit-contract.ts';
import { resolveAddress } from './modicon.ts';
import {
  COMMAND_POINT_NAMES,
  type CommandPointName,
  isPointName,
  POINTS,
  type PointKind,
  type ProfileMode,
} from './points.ts';
import { checkProfile } from './rules.ts';
import type {
  ByteOrder,
  ModbusPoint,
  ModbusTable,
  OpcuaPoint,
  Profile,
  ValueType,
  Watchdog,
  WordOrder,
  WriteFunctionCode,
} from './schema.ts';
import { firmwareAtLeast, pointLength } from './shape.ts';

export type { CommandPointName, PointName, ProfileMode, StatusPointName } from './points.ts';
export type { ModbusTable, Profile, ValueType, WatchdogStyle, WriteFunctionCode } from './schema.ts';
export { firmwareAtLeast, pointLength } from './shape.ts';

/** One Modbus read: FC1 coils, FC2 discrete inputs, FC3 holding, FC4 input registers. */
export interface ReadRequest {
  fc: 1 | 2 | 3 | 4;
  table: ModbusTable;
  address: number;
  count: number;
}

/** What a read returned: 16-bit words for registers, bits (0/1 or booleans) for coils and inputs. */
export interface ReadResult {
  request: ReadRequest;
  values: readonly (number | boolean)[];
}

/**
 * One Modbus write. `values` are 16-bit words (FC6/FC16) or bits 0/1 (FC5/FC15; FC5 puts
 * 0xFF00/0x0000 on the wire). `points` names what it carries, in address order.
 */
export interface WriteRequest {
  fc: WriteFunctionCode;
  table: 'coil' | 'holding';
  address: number;
  values: number[];
  points: CommandPointName[];
}

/** What the controller asks for; only fields the profile has a point for may be given (`commandPoints`). */
export interface ProfileCommand {
  epoch?: number;
  heartbeat?: number;
  remoteEnable?: boolean;
  run?: boolean;
  fanPct?: number;
  supplySetpointC?: number;
  watchdogTimerS?: number;
}

/** Decoded status. A field is undefined when the profile has no such point, it was not read, or the unit said "no data". */
export interface DecodedStatus extends ProfileCommand {
  supplyC?: number;
  returnC?: number;
  supplySetpointFeedbackC?: number;
  localSetpointC?: number;
  fanFeedbackPct?: number;
  cwValvePct?: number;
  fanKw?: number;
  coolingKw?: number;
  /** 'unknown' when the unit reports a code the profile's `enum` does not map. */
  mode?: ProfileMode | 'unknown';
  modeCode?: number;
  runFeedback?: boolean;
  epochFeedback?: number;
  heartbeatFeedback?: number;
  watchdogS?: number;
  /** Names of the alarms that are on (the profile's `alarm` / `alarmBits` names). */
  alarms: string[];
  /** Points that were read but carried a no-data value (or a state the profile does not define). */
  absent: string[];
}

/** Values the simulator shows a unit to have; alarm names listed are on, every other alarm off. */
export type ImageValues = Partial<Omit<DecodedStatus, 'alarms' | 'absent' | 'modeCode'>> & {
  alarms?: readonly string[];
};

/** Registers and bits by table and wire address (bits as 0/1). */
export type RegisterImage = Map<ModbusTable, Map<number, number>>;

export type WriteDecode =
  | { ok: true; command: ProfileCommand; points: CommandPointName[] }
  | { ok: false; exception: 1 | 2 | 3; reason: string };

export interface CompiledPoint {
  name: string;
  table: ModbusTable;
  /** 0-based wire address of the first register or bit. */
  address: number;
  /** Registers (or bits, for coil and discrete) the point spans. */
  length: number;
  type: ValueType;
  kind: PointKind | 'alarm';
  write: WriteFunctionCode | undefined;
  readable: boolean;
}

export interface CompiledOpcuaPoint {
  name: string;
  nodeId: string | undefined;
  browsePath: string | undefined;
  write: boolean;
}

export interface OpcuaMethodCall {
  objectId: string;
  methodId: string;
  /** Arguments in the method's order, already scaled to the unit's units. */
  inputArguments: { point: CommandPointName; value: number | boolean }[];
}

export interface CompiledOpcua {
  namespaceUri: string | undefined;
  /** Every point with its node id or browse path, `{unit}` replaced by the unit's node prefix. */
  nodes(unit: string): CompiledOpcuaPoint[];
  /** Values read by point name (the unit's units) → engineering units. */
  decode(values: Readonly<Record<string, unknown>>): DecodedStatus;
  /** The command fields the profile can write: a method argument or a writable variable. */
  commandFields: ReadonlySet<string>;
  /** The write method's arguments, in order (none without a method). */
  methodArguments: readonly string[];
  /**
   * Simulator: the raw value (the unit's units) of every point `values` has, as its variable shows
   * it — scaled, inverted, mode codes, alarm words; integers rounded and held to their `type`'s
   * range, booleans as 0/1. Points without a value (no data) are left out.
   */
  encodeValues(values: ImageValues): Record<string, number>;
  /** The method call (writeCommand) and variable writes for a command, in that order. */
  encodeCommand(
    cmd: ProfileCommand,
    unit: string,
  ): {
    call: OpcuaMethodCall | undefined;
    writes: { point: CommandPointName; nodeId: string; value: number | boolean }[];
  };
}

export interface CompiledProfile {
  name: string;
  fencing: readonly ('epoch' | 'lease')[];
  watchdog: Readonly<Watchdog>;
  /** Modbus points by name, sinceFirmware points the unit lacks left out. */
  points: ReadonlyMap<string, CompiledPoint>;
  /** Command fields encodeCommand accepts (Modbus). */
  commandPoints: ReadonlySet<CommandPointName>;
  planReads(points?: readonly string[]): ReadRequest[];
  decodeReads(results: readonly ReadResult[]): DecodedStatus;
  encodeCommand(cmd: ProfileCommand): WriteRequest[];
  encodeImage(values: ImageValues): RegisterImage;
  decodeWrite(fc: number, address: number, values: readonly (number | boolean)[]): WriteDecode;
  opcua: CompiledOpcua | undefined;
}

/** A command value a point cannot carry, or a field the profile has no point for. */
export class ProfileValueError extends CoolctlError {
  readonly point: string;
  constructor(profile: string, point: string, message: string) {
    super(ErrorCodes.PROFILE_VALUE, `profile ${profile}: ${point}: ${message}`);
    this.point = point;
  }
}

const READ_FC: Readonly<Record<ModbusTable, ReadRequest['fc']>> = {
  coil: 1,
  discrete: 2,
  holding: 3,
  input: 4,
};
const INT_RANGE: Readonly<Record<Exclude<ValueType, 'bool' | 'f32'>, readonly [number, number]>> = {
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffff_ffff],
  i32: [-0x8000_0000, 0x7fff_ffff],
  u64: [0, Number.MAX_SAFE_INTEGER],
};

/** How an engineering value maps to a raw one; shared by Modbus and OPC-UA points. */
interface Scaling {
  kind: PointKind | 'alarm';
  /** raw × scale + offset; `inverse` set when 1/scale is an integer, so 21.5 °C × 10 is exactly 215. */
  scale: number;
  inverse: number | undefined;
  offset: number;
  fahrenheit: boolean;
  inverted: boolean;
  modes: Map<number, ProfileMode>;
  codeOfMode: Map<ProfileMode, number>;
  alarm: string | undefined;
  alarmBits: [number, string][];
}

function scalingOf(name: string, p: ModbusPoint | OpcuaPoint): Scaling {
  const scale = p.scale ?? 1;
  const inv = 1 / scale;
  const modes = new Map<number, ProfileMode>();
  const codeOfMode = new Map<ProfileMode, number>();
  for (const [code, mode] of Object.entries(p.enum ?? {})) {
    modes.set(Number(code), mode);
    if (!codeOfMode.has(mode)) codeOfMode.set(mode, Number(code));
  }
  return {
    kind: isPointName(name) ? POINTS[name].kind : 'alarm',
    scale,
    inverse: Math.abs(inv - Math.round(inv)) < 1e-9 ? Math.round(inv) : undefined,
    offset: p.offset ?? 0,
    fahrenheit: p.unit === 'F',
    inverted: p.inverted === true,
    modes,
    codeOfMode,
    alarm: p.alarm,
    alarmBits: Object.entries(p.alarmBits ?? {}).map(([bit, n]) => [Number(bit), n]),
  };
}

/** Raw → engineering units (°C, %, kW, s). */
function toEngineering(s: Scaling, raw: number): number {
  const v = (s.inverse !== undefined ? raw / s.inverse : raw * s.scale) + s.offset;
  return s.fahrenheit ? ((v - 32) * 5) / 9 : v;
}

/** Engineering units → raw, before rounding. */
function toRaw(s: Scaling, value: number): number {
  const v = (s.fahrenheit ? (value * 9) / 5 + 32 : value) - s.offset;
  return s.inverse !== undefined ? v * s.inverse : v / s.scale;
}

interface ModbusPointImpl extends CompiledPoint {
  s: Scaling;
  bit: number | undefined;
  wordOrder: WordOrder;
  byteOrder: ByteOrder;
  noData: Set<number>;
  command: { on: number; off: number } | undefined;
  /** Index in the profile's point order: writes go in this order. */
  order: number;
  group: number | undefined;
}

/**
 * Compiles a profile that passed the loader (or one built in code: it is checked here again).
 * `firmware`: the unit's controller firmware; points with a `sinceFirmware` above it (or any
 * `sinceFirmware` when it is not known) are left out, since reading a missing point fails the block.
 */
export function compileProfile(profile: Profile, opts: { firmware?: string } = {}): CompiledProfile {
  const problems = checkProfile(profile);
  if (problems.length > 0) {
    const file = `profile ${profile.profile}`;
    throw new ConfigError(
      file,
      problems.map((p) => ({ ...p, file })),
      { code: ErrorCodes.PROFILE_INVALID },
    );
  }
  const present = (p: { sinceFirmware?: string | undefined }): boolean =>
    p.sinceFirmware === undefined ||
    (opts.firmware !== undefined && firmwareAtLeast(opts.firmware, p.sinceFirmware));
  const m = profile.modbus;
  const points = new Map<string, ModbusPointImpl>();
  const groups = (m?.writeTogether ?? []).map((g) => g.filter((n) => n in (m?.points ?? {})));
  let order = 0;
  for (const [name, p] of Object.entries(m?.points ?? {})) {
    order++;
    if (!present(p)) continue;
    const r = resolveAddress(p.table, p.address, m?.numbering ?? 'auto');
    if (!('wire' in r)) throw new Error(`unreachable: ${r.problem}`); // checkProfile refused it
    const gi = groups.findIndex((g) => g.includes(name));
    points.set(name, {
      name,
      table: p.table,
      address: r.wire,
      length: pointLength(p.table, p.type),
      type: p.type,
      kind: isPointName(name) ? POINTS[name].kind : 'alarm',
      write: p.write,
      readable: p.command === undefined,
      s: scalingOf(name, p),
      bit: p.bit,
      wordOrder: p.wordOrder ?? m?.wordOrder ?? 'msw-first',
      byteOrder: p.byteOrder ?? m?.byteOrder ?? 'big',
      // A float register holds float32s: -999.9 is -999.9000244… there, and only that matches.
      noData: new Set(
        (p.noData === undefined ? [] : Array.isArray(p.noData) ? p.noData : [p.noData]).map((v) =>
          p.type === 'f32' ? Math.fround(v) : v,
        ),
      ),
      command: p.command,
      order,
      group: gi >= 0 ? gi : undefined,
    });
  }
  const name = profile.profile;
  const commandPoints = new Set(
    COMMAND_POINT_NAMES.filter((n) => points.get(n)?.write !== undefined),
  ) as ReadonlySet<CommandPointName>;
  const maxRead = { registers: m?.maxReadRegisters ?? 125, bits: m?.maxReadBits ?? 2000 };
  const maxGap = m?.maxGap ?? 0;
  const fcs = new Set(m?.functionCodes ?? []);
  const statusPoints = [...points.values()]
    .filter((p) => p.readable && p.write === undefined)
    .map((p) => p.name);

  return {
    name,
    fencing: profile.fencing,
    watchdog: profile.watchdog,
    points,
    commandPoints,
    planReads: (names = statusPoints) => planReads(name, points, names, maxRead, maxGap),
    decodeReads: (results) => decodeReads(points, results),
    encodeCommand: (cmd) => encodeCommand(name, points, groups, cmd),
    encodeImage: (values) => encodeImage(points, values),
    decodeWrite: (fc, address, values) => decodeWrite(points, groups, fcs, fc, address, values),
    opcua: profile.opcua ? compileOpcua(name, profile.opcua, present) : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Reads

function planReads(
  profile: string,
  points: ReadonlyMap<string, ModbusPointImpl>,
  names: readonly string[],
  maxRead: { registers: number; bits: number },
  maxGap: number,
): ReadRequest[] {
  const byTable = new Map<ModbusTable, { start: number; end: number }[]>();
  for (const n of names) {
    const p = points.get(n);
    if (!p) throw new ProfileValueError(profile, n, 'no such point to read (or not in this firmware)');
    if (!p.readable) throw new ProfileValueError(profile, n, 'a command-bits point cannot be read back');
    const spans = byTable.get(p.table) ?? [];
    spans.push({ start: p.address, end: p.address + p.length });
    byTable.set(p.table, spans);
  }
  const out: ReadRequest[] = [];
  for (const table of ['coil', 'discrete', 'input', 'holding'] as const) {
    const spans = byTable.get(table);
    if (!spans) continue;
    const max = table === 'coil' || table === 'discrete' ? maxRead.bits : maxRead.registers;
    spans.sort((a, b) => a.start - b.start || a.end - b.end);
    // Greedy: extend the current block while the next point fits within `max` and the unread run
    // before it is at most `maxGap`. Points are sorted by start, so each block is a run of them and
    // extending as far as allowed leaves the fewest blocks.
    let cur: { start: number; end: number } | undefined;
    for (const sp of spans) {
      if (cur && sp.start - cur.end <= maxGap && Math.max(cur.end, sp.end) - cur.start <= max) {
        cur.end = Math.max(cur.end, sp.end);
        continue;
      }
      if (cur) out.push({ fc: READ_FC[table], table, address: cur.start, count: cur.end - cur.start });
      cur = { ...sp };
    }
    if (cur) out.push({ fc: READ_FC[table], table, address: cur.start, count: cur.end - cur.start });
  }
  return out;
}

function decodeReads(
  points: ReadonlyMap<string, ModbusPointImpl>,
  results: readonly ReadResult[],
): DecodedStatus {
  const out: DecodedStatus = { alarms: [], absent: [] };
  for (const p of points.values()) {
    if (!p.readable) continue;
    const r = results.find(
      (x) =>
        x.request.table === p.table &&
        p.address >= x.request.address &&
        p.address + p.length <= x.request.address + Math.min(x.request.count, x.values.length),
    );
    if (!r) continue;
    const at = p.address - r.request.address;
    decodePoint(p, r.values.slice(at, at + p.length), out);
  }
  return out;
}

function word(v: number | boolean | undefined, byteOrder: ByteOrder): number {
  const w = typeof v === 'boolean' ? Number(v) : (v ?? 0);
  if (!Number.isInteger(w) || w < 0 || w > 0xffff)
    throw new RangeError(`register value ${v} is not a 16-bit word`);
  return byteOrder === 'little' ? ((w & 0xff) << 8) | (w >> 8) : w;
}

/** The raw value of a point from its registers or bit: an integer, a float32, or 0/1. */
function rawOf(p: ModbusPointImpl, vals: readonly (number | boolean)[]): number {
  if (p.table === 'coil' || p.table === 'discrete') return vals[0] ? 1 : 0;
  const ws = vals.map((v) => word(v, p.byteOrder));
  if (p.wordOrder === 'lsw-first') ws.reverse();
  const w0 = ws[0] ?? 0;
  switch (p.type) {
    case 'bool':
      return (w0 >> (p.bit ?? 0)) & 1;
    case 'u16':
      return w0;
    case 'i16':
      return w0 >= 0x8000 ? w0 - 0x10000 : w0;
    case 'u32':
      return w0 * 0x10000 + (ws[1] ?? 0);
    case 'i32': {
      const u = w0 * 0x10000 + (ws[1] ?? 0);
      return u >= 0x8000_0000 ? u - 0x1_0000_0000 : u;
    }
    case 'f32': {
      const dv = new DataView(new ArrayBuffer(4));
      dv.setUint16(0, w0);
      dv.setUint16(2, ws[1] ?? 0);
      return dv.getFloat32(0);
    }
    case 'u64': {
      let b = 0n;
      for (const w of ws) b = (b << 16n) | BigInt(w);
      return Number(b);
    }
  }
}

type Out = Record<string, unknown> & { alarms: string[]; absent: string[] };

/** The smallest normal float32, 2^-126. */
const F32_MIN_NORMAL = 2 ** -126;

function decodePoint(p: ModbusPointImpl, vals: readonly (number | boolean)[], status: DecodedStatus): void {
  const raw = rawOf(p, vals);
  // Infinity is a float register's overflow or "no sensor" code; a subnormal float (exponent bits
  // all 0, mantissa not) is what a real reading looks like with its words swapped (21.5 as
  // 0x0000_41AC reads 2.4e-41, i.e. 0 °C): neither is a measurement.
  if (
    p.noData.has(raw) ||
    !Number.isFinite(raw) ||
    (p.type === 'f32' && raw !== 0 && Math.abs(raw) < F32_MIN_NORMAL)
  ) {
    status.absent.push(p.name);
    return;
  }
  decodeValue(p.name, p.s, raw, status);
}

/** One raw value into `status`, under the point's name (mode, booleans and alarms by their meaning). */
function decodeValue(name: string, s: Scaling, raw: number, status: DecodedStatus): void {
  const out = status as unknown as Out;
  if (s.kind === 'alarm') {
    if (s.alarm !== undefined) {
      if ((raw !== 0) !== s.inverted) out.alarms.push(s.alarm);
    }
    for (const [bit, alarm] of s.alarmBits) {
      if (Math.floor(raw / 2 ** bit) % 2 === 1) out.alarms.push(alarm);
    }
    return;
  }
  switch (s.kind) {
    case 'mode':
      status.mode = s.modes.get(raw) ?? 'unknown';
      status.modeCode = raw;
      return;
    case 'boolean':
      if (raw !== 0 && raw !== 1) {
        out.absent.push(name);
        return;
      }
      out[name] = (raw === 1) !== s.inverted;
      return;
    default:
      out[name] = toEngineering(s, raw);
  }
}

// ---------------------------------------------------------------------------------------------
// Writes

function encodeCommand(
  profile: string,
  points: ReadonlyMap<string, ModbusPointImpl>,
  groups: readonly string[][],
  cmd: ProfileCommand,
): WriteRequest[] {
  const given: ModbusPointImpl[] = [];
  for (const [field, value] of Object.entries(cmd)) {
    if (value === undefined) continue;
    const p = points.get(field);
    if (!p || p.write === undefined) {
      throw new ProfileValueError(profile, field, 'the profile has no writable point for it');
    }
    given.push(p);
  }
  const requests: { order: number; req: WriteRequest }[] = [];
  const done = new Set<number>();
  for (const p of given) {
    if (p.group === undefined) {
      requests.push({ order: p.order, req: request(p.write as WriteFunctionCode, [p], cmd, profile) });
      continue;
    }
    if (done.has(p.group)) continue;
    done.add(p.group);
    const members = (groups[p.group] ?? []).map((n) => points.get(n) as ModbusPointImpl);
    const missing = members.filter((q) => (cmd as Record<string, unknown>)[q.name] === undefined);
    if (missing.length > 0) {
      throw new ProfileValueError(
        profile,
        p.name,
        `is written together with ${missing.map((q) => q.name).join(', ')}: give them too`,
      );
    }
    members.sort((a, b) => a.address - b.address);
    const fc: WriteFunctionCode = p.table === 'coil' ? 15 : 16;
    requests.push({
      order: Math.min(...members.map((q) => q.order)),
      req: request(fc, members, cmd, profile),
    });
  }
  return requests.sort((a, b) => a.order - b.order).map((r) => r.req);
}

function request(
  fc: WriteFunctionCode,
  members: ModbusPointImpl[],
  cmd: ProfileCommand,
  profile: string,
): WriteRequest {
  const first = members[0] as ModbusPointImpl;
  const values: number[] = [];
  for (const p of members) {
    values.push(...encodePoint(p, (cmd as Record<string, unknown>)[p.name], 'exact', profile));
  }
  return {
    fc,
    table: first.table as 'coil' | 'holding',
    address: first.address,
    values,
    points: members.map((p) => p.name as CommandPointName),
  };
}

/**
 * The raw value of an engineering value. `exact` (commands): a value the point cannot carry
 * throws; `saturate` (the simulator's status image): it is held at the type's limit.
 */
function rawFor(
  name: string,
  s: Scaling,
  type: ValueType | undefined,
  v: unknown,
  mode: 'exact' | 'saturate',
  profile: string,
): number {
  const fail = (why: string): never => {
    throw new ProfileValueError(profile, name, why);
  };
  switch (s.kind) {
    case 'boolean':
    case 'alarm':
      if (typeof v !== 'boolean') fail(`${String(v)} is not true or false`);
      return Number((v as boolean) !== s.inverted);
    case 'mode': {
      const code = s.codeOfMode.get(v as ProfileMode);
      if (code === undefined) fail(`mode ${String(v)} has no code in the profile's enum`);
      return code as number;
    }
    default:
      break;
  }
  if (typeof v !== 'number' || Number.isNaN(v)) return fail(`${String(v)} is not a number`);
  const num = v as number;
  if (name === 'heartbeat') {
    // A counter the unit watches for change: it wraps, a bool toggles.
    if (!Number.isInteger(num)) fail(`${num} must be an integer`);
    const mod = type === 'bool' ? 2 : type === 'u32' || type === 'i32' ? 2 ** 32 : 0x10000;
    const r = ((num % mod) + mod) % mod;
    return type === 'i16' && r >= 0x8000 ? r - 0x10000 : r;
  }
  if (name === 'epoch' || name === 'epochFeedback') {
    if (!Number.isSafeInteger(num) || num < 0) {
      if (mode === 'saturate') return Math.max(0, Math.trunc(Number.isFinite(num) ? num : 0));
      fail(`${num} must be a non-negative integer ≤ 2^53-1`);
    }
  }
  let raw = toRaw(s, num);
  if (type === 'f32') {
    const f = Math.fround(raw);
    if (!Number.isFinite(f)) {
      if (mode === 'exact') fail(`${num} does not fit a float32`);
      return raw > 0 ? 3.4028234663852886e38 : -3.4028234663852886e38;
    }
    return mode === 'exact' ? keptInRange(name, s, num, f, nextFloat32, fail) : f;
  }
  // Seconds round up: a watchdog of 0.5 s must not read (or be written) as 0 = "none".
  raw = s.kind === 'seconds' ? Math.ceil(raw - 1e-9) : Math.round(raw);
  const [lo, hi] = INT_RANGE[(type ?? 'i32') as keyof typeof INT_RANGE] ?? [-0x8000_0000, 0x7fff_ffff];
  if (!Number.isFinite(raw) || raw < lo || raw > hi) {
    if (mode === 'exact') fail(`${num} is raw ${raw}, outside ${type} ${lo}…${hi}`);
    return raw > hi || raw === Number.POSITIVE_INFINITY ? hi : lo;
  }
  if (mode === 'exact') {
    raw = keptInRange(name, s, num, raw, (r, dir) => r + dir, fail);
    if (raw < lo || raw > hi) fail(`${num} is raw ${raw}, outside ${type} ${lo}…${hi}`);
  }
  return raw;
}

/**
 * A ranged command (fan speed, supply setpoint) inside the device contract's range must reach the
 * unit inside it too: 27 °C is 80.6 °F, and a unit in whole °F would get 81 °F = 27.2 °C — a
 * setpoint the unit (and the simulator) refuses, on every write at the top of the range. Rounding
 * goes one raw step toward the range instead; a value outside the range is the safety layer's to
 * refuse and is left as it is, and a point with no step inside the range is refused.
 */
function keptInRange(
  name: string,
  s: Scaling,
  value: number,
  raw: number,
  step: (raw: number, dir: 1 | -1) => number,
  fail: (why: string) => never,
): number {
  const range: PointRange | undefined = (POINT_RANGES as Record<string, PointRange>)[name];
  if (!range || !inRange(value, range)) return raw;
  const back = toEngineering(s, raw);
  if (inRange(back, range)) return raw;
  // Scales are positive (rules.ts), so the engineering value grows with the raw one.
  const inward = step(raw, back > range.max ? -1 : 1);
  if (!inRange(toEngineering(s, inward), range)) {
    fail(`${value} has no raw value that reads back inside ${range.min}…${range.max} (nearest: ${back})`);
  }
  return inward;
}

/** The float32 next to `x` (a float32) in direction `dir`. */
function nextFloat32(x: number, dir: 1 | -1): number {
  if (x === 0) return dir * 2 ** -149;
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, x);
  const bits = dv.getUint32(0);
  // Away from zero is one more in the bit pattern's magnitude, toward zero one less.
  dv.setUint32(0, x > 0 === dir > 0 ? bits + 1 : bits - 1);
  return dv.getFloat32(0);
}

/** Words (or one bit) for a value of a point. */
function encodePoint(p: ModbusPointImpl, v: unknown, mode: 'exact' | 'saturate', profile: string): number[] {
  if (p.command) {
    if (typeof v !== 'boolean')
      throw new ProfileValueError(profile, p.name, `${String(v)} is not true or false`);
    return [v ? p.command.on : p.command.off];
  }
  const raw = rawFor(p.name, p.s, p.type, v, mode, profile);
  if (mode === 'exact' && p.noData.has(raw)) {
    throw new ProfileValueError(profile, p.name, `${String(v)} encodes as ${raw}, the unit's no-data value`);
  }
  return wordsOf(p, raw);
}

function wordsOf(
  p: Pick<ModbusPointImpl, 'table' | 'type' | 'bit' | 'wordOrder' | 'byteOrder'>,
  raw: number,
): number[] {
  if (p.table === 'coil' || p.table === 'discrete') return [raw ? 1 : 0];
  let ws: number[];
  switch (p.type) {
    case 'bool':
      ws = [raw ? 1 << (p.bit ?? 0) : 0];
      break;
    case 'u16':
    case 'i16':
      ws = [raw & 0xffff];
      break;
    case 'u32':
    case 'i32': {
      const u = raw < 0 ? raw + 0x1_0000_0000 : raw;
      ws = [Math.floor(u / 0x10000) & 0xffff, u & 0xffff];
      break;
    }
    case 'f32': {
      const dv = new DataView(new ArrayBuffer(4));
      dv.setFloat32(0, raw);
      ws = [dv.getUint16(0), dv.getUint16(2)];
      break;
    }
    case 'u64': {
      const b = BigInt(raw);
      ws = [48n, 32n, 16n, 0n].map((sh) => Number((b >> sh) & 0xffffn));
      break;
    }
  }
  if (p.wordOrder === 'lsw-first') ws.reverse();
  return p.byteOrder === 'little' ? ws.map((w) => ((w & 0xff) << 8) | (w >> 8)) : ws;
}

// ---------------------------------------------------------------------------------------------
// The simulator's side

function encodeImage(points: ReadonlyMap<string, ModbusPointImpl>, values: ImageValues): RegisterImage {
  const image: RegisterImage = new Map();
  const put = (table: ModbusTable, address: number, v: number, mask?: number): void => {
    let t = image.get(table);
    if (!t) {
      t = new Map();
      image.set(table, t);
    }
    if (mask === undefined) t.set(address, v);
    else t.set(address, ((t.get(address) ?? 0) & ~mask) | (v & mask));
  };
  const alarmsOn = new Set(values.alarms ?? []);
  const vals = values as Record<string, unknown>;
  for (const p of points.values()) {
    if (!p.readable) continue;
    let raw: number | undefined;
    if (p.kind === 'alarm') {
      if (p.s.alarm !== undefined) raw = Number(alarmsOn.has(p.s.alarm) !== p.s.inverted);
      else raw = p.s.alarmBits.reduce((acc, [bit, n]) => acc + (alarmsOn.has(n) ? 2 ** bit : 0), 0);
    } else {
      const v = vals[p.name];
      if (v === undefined || (typeof v === 'number' && Number.isNaN(v))) {
        const nd = p.noData.values().next();
        if (nd.done) continue;
        raw = nd.value;
      } else if (p.kind === 'mode' && !p.s.codeOfMode.has(v as ProfileMode)) {
        continue;
      } else {
        raw = rawFor(p.name, p.s, p.type, v, 'saturate', '');
      }
    }
    const ws = wordsOf(p, raw);
    // Bits and alarm words share registers with other points: each sets only its own bits.
    const mask =
      p.type === 'bool' && p.bit !== undefined
        ? 1 << p.bit
        : p.s.alarmBits.length > 0 && p.length === 1
          ? p.s.alarmBits.reduce((acc, [bit]) => acc | (1 << bit), 0)
          : undefined;
    ws.forEach((w, i) => {
      put(
        p.table,
        p.address + i,
        w,
        mask === undefined ? undefined : p.byteOrder === 'little' ? swap(mask) : mask,
      );
    });
  }
  return image;
}

function swap(w: number): number {
  return ((w & 0xff) << 8) | (w >> 8);
}

/**
 * What a write request commands, as a unit serving this profile would judge it: the function
 * code must be one the unit accepts (else exception 01), every address covered must be a
 * writable point covered whole, and a writeTogether group whole (else 02), and a state point must
 * get one of its states (else 03).
 */
function decodeWrite(
  points: ReadonlyMap<string, ModbusPointImpl>,
  groups: readonly string[][],
  fcs: ReadonlySet<number>,
  fc: number,
  address: number,
  values: readonly (number | boolean)[],
): WriteDecode {
  if (![5, 6, 15, 16].includes(fc) || !fcs.has(fc)) {
    return { ok: false, exception: 1, reason: `function code ${fc} is not accepted` };
  }
  const table: ModbusTable = fc === 5 || fc === 15 ? 'coil' : 'holding';
  const end = address + values.length;
  const covered = [...points.values()]
    .filter(
      (p) => p.table === table && p.write !== undefined && p.address < end && p.address + p.length > address,
    )
    .sort((a, b) => a.address - b.address);
  let next = address;
  for (const p of covered) {
    if (p.address !== next || p.address + p.length > end) break;
    next = p.address + p.length;
  }
  if (next !== end) {
    return {
      ok: false,
      exception: 2,
      reason: `addresses ${address}…${end - 1} are not whole writable points`,
    };
  }
  if ((fc === 5 || fc === 6) && covered.length !== 1) {
    return { ok: false, exception: 2, reason: `FC${fc} writes exactly one point` };
  }
  for (const p of covered) {
    if (p.group === undefined) continue;
    const g = groups[p.group] ?? [];
    if (!g.every((n) => covered.some((q) => q.name === n))) {
      return { ok: false, exception: 2, reason: `${p.name} must be written together with ${g.join(', ')}` };
    }
  }
  const command: Record<string, unknown> = {};
  for (const p of covered) {
    const at = p.address - address;
    const slice = values.slice(at, at + p.length);
    if (p.command) {
      const w = word(slice[0], 'big');
      if (w !== p.command.on && w !== p.command.off) {
        return {
          ok: false,
          exception: 3,
          reason: `${p.name}: ${w} is neither command ${p.command.on} nor ${p.command.off}`,
        };
      }
      command[p.name] = w === p.command.on;
      continue;
    }
    const raw = rawOf(p, slice);
    if (p.kind === 'boolean') {
      if (raw !== 0 && raw !== 1)
        return { ok: false, exception: 3, reason: `${p.name}: ${raw} is not 0 or 1` };
      command[p.name] = (raw === 1) !== p.s.inverted;
    } else if (p.name === 'heartbeat' || p.name === 'epoch') {
      command[p.name] = raw;
    } else {
      command[p.name] = toEngineering(p.s, raw);
    }
  }
  return {
    ok: true,
    command: command as ProfileCommand,
    points: covered.map((p) => p.name as CommandPointName),
  };
}

// ---------------------------------------------------------------------------------------------
// OPC-UA

/** Integer OPC-UA types a point may declare, by their range; Double and Float carry any value. */
const OPCUA_INT_RANGE: Readonly<Record<string, readonly [number, number] | undefined>> = {
  SByte: [-0x80, 0x7f],
  Byte: [0, 0xff],
  Int16: [-0x8000, 0x7fff],
  UInt16: [0, 0xffff],
  Int32: [-0x8000_0000, 0x7fff_ffff],
  UInt32: [0, 0xffff_ffff],
  Boolean: [0, 1],
};

/** The range of an integer OPC-UA type by its name (Int16 …); undefined for Double, Float and the rest. */
export function opcuaIntRange(type: string): readonly [number, number] | undefined {
  return type === 'Boolean' ? undefined : OPCUA_INT_RANGE[type];
}

/** `raw` (before rounding) as an integer `type` holds it; a value the type cannot hold is refused, never clipped. */
export function opcuaIntegerIn(
  profile: string,
  point: string,
  type: string,
  value: number,
  raw: number,
): number {
  const range = opcuaIntRange(type);
  if (!range) return raw;
  const r = Math.round(raw);
  if (r < range[0] || r > range[1])
    throw new ProfileValueError(
      profile,
      point,
      `${value} is ${r} as the unit's ${type}, outside ${range[0]}…${range[1]}`,
    );
  return r;
}

function compileOpcua(
  profile: string,
  section: NonNullable<Profile['opcua']>,
  present: (p: { sinceFirmware?: string | undefined }) => boolean,
): CompiledOpcua {
  const pts = Object.entries(section.points)
    .filter(([, p]) => present(p))
    .map(([name, p]) => ({ name, p, s: scalingOf(name, p) }));
  const byName = new Map(pts.map((x) => [x.name, x]));
  const sub = (id: string | undefined, unit: string) => id?.replaceAll('{unit}', unit);
  const methodArguments = section.writeCommand?.arguments ?? [];
  return {
    namespaceUri: section.namespaceUri,
    commandFields: new Set([
      ...methodArguments,
      ...pts.filter(({ p }) => p.write === true).map((x) => x.name),
    ]),
    methodArguments,
    nodes: (unit) =>
      pts.map(({ name, p }) => ({
        name,
        nodeId: sub(p.nodeId, unit),
        browsePath: sub(p.browsePath, unit),
        write: p.write === true,
      })),
    decode: (values) => {
      const out: DecodedStatus = { alarms: [], absent: [] };
      for (const { name, s } of pts) {
        if (!(name in values)) continue;
        const v = values[name];
        // Only a number is a value, or a Boolean on a point that is a flag: Number() would make ""
        // or [] a 0, "21.5" or [21] a reading and `true` 0.1 °C — a broken unit's data as a figure.
        const raw =
          typeof v === 'number'
            ? v
            : typeof v === 'boolean' && (s.kind === 'boolean' || s.kind === 'alarm')
              ? Number(v)
              : Number.NaN;
        if (!Number.isFinite(raw)) {
          out.absent.push(name);
          continue;
        }
        decodeValue(name, s, raw, out);
      }
      return out;
    },
    encodeValues: (values) => {
      const out: Record<string, number> = {};
      const alarmsOn = new Set(values.alarms ?? []);
      const vals = values as Record<string, unknown>;
      for (const { name, p, s } of pts) {
        if (s.kind === 'alarm') {
          out[name] =
            s.alarm !== undefined
              ? Number(alarmsOn.has(s.alarm) !== s.inverted)
              : s.alarmBits.reduce((acc, [bit, n]) => acc + (alarmsOn.has(n) ? 2 ** bit : 0), 0);
          continue;
        }
        const v = vals[name];
        if (v === undefined || v === null || (typeof v === 'number' && Number.isNaN(v))) continue;
        if (s.kind === 'mode') {
          const code = s.codeOfMode.get(v as ProfileMode);
          if (code !== undefined) out[name] = code;
          continue;
        }
        if (typeof v === 'boolean') {
          out[name] = Number(v !== s.inverted);
          continue;
        }
        if (typeof v !== 'number') continue;
        const raw = toRaw(s, v);
        const range = OPCUA_INT_RANGE[p.type ?? 'Double'];
        out[name] = range ? Math.min(range[1], Math.max(range[0], Math.round(raw))) : raw;
      }
      return out;
    },
    encodeCommand: (cmd, unit) => {
      const c = cmd as Record<string, unknown>;
      // A method argument goes as a Double whatever the variable it sets; a variable write is the
      // variable's `type`, so an integer one takes the rounded value, or refuses one it cannot hold.
      const argValue = (name: string, variable = false): number | boolean => {
        const x = byName.get(name);
        const v = c[name];
        if (typeof v === 'boolean') return x?.s.inverted ? !v : v;
        if (!x || name === 'epoch' || name === 'heartbeat') {
          if (typeof v !== 'number' || !Number.isFinite(v))
            throw new ProfileValueError(profile, name, `${String(v)} is not a number`);
          if (name === 'epoch' && (!Number.isSafeInteger(v) || v < 0)) {
            throw new ProfileValueError(profile, name, `${v} must be a non-negative integer ≤ 2^53-1`);
          }
          if (name === 'heartbeat' && !Number.isInteger(v))
            throw new ProfileValueError(profile, name, `${v} must be an integer`);
          return name === 'heartbeat' ? ((v % 2 ** 32) + 2 ** 32) % 2 ** 32 : v;
        }
        if (typeof v !== 'number' || !Number.isFinite(v))
          throw new ProfileValueError(profile, name, `${String(v)} is not a number`);
        const raw = toRaw(x.s, v);
        if (!x.p.type || !opcuaIntRange(x.p.type)) return raw;
        // The point's integer type bounds what it takes, as a variable or as the method argument
        // that sets it: a method handed 50 000 for an Int16 would wrap it in the unit.
        const r = opcuaIntegerIn(profile, name, x.p.type, v, raw);
        if (!variable) return raw;
        const fail = (why: string): never => {
          throw new ProfileValueError(profile, name, why);
        };
        return opcuaIntegerIn(
          profile,
          name,
          x.p.type,
          v,
          keptInRange(name, x.s, v, r, (q, d) => q + d, fail),
        );
      };
      const wc = section.writeCommand;
      const inMethod = new Set(wc?.arguments ?? []);
      for (const [k, v] of Object.entries(c)) {
        if (v === undefined) continue;
        if (!inMethod.has(k) && byName.get(k)?.p.write !== true) {
          throw new ProfileValueError(
            profile,
            k,
            'the profile has no writable node or method argument for it',
          );
        }
      }
      let call: OpcuaMethodCall | undefined;
      if (wc?.arguments.some((a) => c[a] !== undefined)) {
        const missing = wc.arguments.filter((a) => c[a] === undefined);
        if (missing.length > 0) {
          throw new ProfileValueError(
            profile,
            missing.join(', '),
            'the write method takes every argument: give them',
          );
        }
        call = {
          objectId: sub(wc.object, unit) as string,
          methodId: sub(wc.method, unit) as string,
          inputArguments: wc.arguments.map((a) => ({ point: a as CommandPointName, value: argValue(a) })),
        };
      }
      const writes = pts
        .filter(({ name, p }) => p.write === true && !inMethod.has(name) && c[name] !== undefined)
        .map(({ name, p }) => ({
          point: name as CommandPointName,
          nodeId: sub(p.nodeId ?? p.browsePath, unit) as string,
          value: argValue(name, true),
        }));
      return { call, writes };
    },
  };
}
