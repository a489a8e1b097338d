// A compiled Modbus point and the 16-bit words (or bit) that carry its value: integer type ranges,
// word and byte order, float32 steps. Invariant: a command value is encoded exactly or throws
// COOLCTL_E_PROFILE_VALUE (never clamped — the safety layer limits values before they get here).
import type { PointKind, ProfileMode } from './points.ts';
import type { ByteOrder, ModbusTable, ValueType, WordOrder, WriteFunctionCode } from './schema.ts';
import { keptInRange, ProfileValueError, type Scaling, toRaw } from './values.ts';

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

const INT_RANGE: Readonly<Record<Exclude<ValueType, 'bool' | 'f32'>, readonly [number, number]>> = {
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffff_ffff],
  i32: [-0x8000_0000, 0x7fff_ffff],
  u64: [0, Number.MAX_SAFE_INTEGER],
};

export interface ModbusPointImpl extends CompiledPoint {
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

export function word(v: number | boolean | undefined, byteOrder: ByteOrder): number {
  const w = typeof v === 'boolean' ? Number(v) : (v ?? 0);
  if (!Number.isInteger(w) || w < 0 || w > 0xffff)
    throw new RangeError(`register value ${v} is not a 16-bit word`);
  return byteOrder === 'little' ? ((w & 0xff) << 8) | (w >> 8) : w;
}

/** The raw value of a point from its registers or bit: an integer, a float32, or 0/1. */
export function rawOf(p: ModbusPointImpl, vals: readonly (number | boolean)[]): number {
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

/**
 * The raw value of an engineering value. `exact` (commands): a value the point cannot carry
 * throws; `saturate` (the simulator's status image): it is held at the type's limit.
 */
export function rawFor(
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
export function encodePoint(
  p: ModbusPointImpl,
  v: unknown,
  mode: 'exact' | 'saturate',
  profile: string,
): number[] {
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

export function wordsOf(
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
