// The device-profile codec: a profile (config/profiles/*.yaml, loaded by load.ts) compiled into the
// pure functions both the controller (src/devices/modbus) and the simulator (firmware-sim) use. No I/O,
// no clocks. Reads never cover an address the profile does not allow (gaps only up to `maxGap`); a
// no-data value decodes as absent, never as 0; a command is encoded exactly or throws (register-words.ts).
//
// API (docs/device-profiles.md):
//   compileProfile(profile, { firmware? }) → CompiledProfile   (throws ConfigError PROFILE_INVALID)
//   .planReads(points?)            → ReadRequest[]   fewest requests for those points (default: status)
//   .decodeReads(results)          → DecodedStatus   scaled values, mode, alarm names, absent points
//   .encodeCommand(cmd)            → WriteRequest[]  ordered writes, writeTogether groups in one request
//   .encodeImage, .decodeWrite     → the simulator's side (register-image.ts)
//   .opcua                         → the OPC-UA side (opcua-codec.ts)
import { ConfigError, ErrorCodes } from '../../errors.ts';
import { resolveAddress } from './modicon.ts';
import { type CompiledOpcua, compileOpcua } from './opcua-codec.ts';
import { COMMAND_POINT_NAMES, type CommandPointName, isPointName, POINTS } from './points.ts';
import { decodeWrite, encodeImage, type RegisterImage, type WriteDecode } from './register-image.ts';
import { type CompiledPoint, encodePoint, type ModbusPointImpl, rawOf } from './register-words.ts';
import { checkProfile } from './rules.ts';
import type { ModbusTable, Profile, Watchdog, WriteFunctionCode } from './schema.ts';
import { firmwareAtLeast, pointLength } from './shape.ts';
import {
  type DecodedStatus,
  decodeValue,
  type ImageValues,
  type ProfileCommand,
  ProfileValueError,
  scalingOf,
} from './values.ts';

// The profile format's names, and two of CompiledProfile's face owned next to their code: the type of
// its `points` and the error (COOLCTL_E_PROFILE_VALUE) its methods throw.
export type { CommandPointName, PointName, ProfileMode, StatusPointName } from './points.ts';
export type { CompiledPoint } from './register-words.ts';
export type { ModbusTable, Profile, ValueType, WatchdogStyle, WriteFunctionCode } from './schema.ts';
export { firmwareAtLeast, pointLength } from './shape.ts';
export { ProfileValueError } from './values.ts';

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

const READ_FC: Readonly<Record<ModbusTable, ReadRequest['fc']>> = {
  coil: 1,
  discrete: 2,
  holding: 3,
  input: 4,
};

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
