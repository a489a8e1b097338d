// The simulator's side of a Modbus profile: the registers and bits a unit shows for its values
// (encodeImage), and what a write request commands as a unit serving the profile would judge it
// (decodeWrite, with the unit's exception codes). Pure: no I/O, no clocks.
import type { CommandPointName, ProfileMode } from './points.ts';
import { type ModbusPointImpl, rawFor, rawOf, word, wordsOf } from './register-words.ts';
import type { ModbusTable } from './schema.ts';
import { type ImageValues, type ProfileCommand, toEngineering } from './values.ts';

/** Registers and bits by table and wire address (bits as 0/1). */
export type RegisterImage = Map<ModbusTable, Map<number, number>>;

export type WriteDecode =
  | { ok: true; command: ProfileCommand; points: CommandPointName[] }
  | { ok: false; exception: 1 | 2 | 3; reason: string };

export function encodeImage(
  points: ReadonlyMap<string, ModbusPointImpl>,
  values: ImageValues,
): RegisterImage {
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
export function decodeWrite(
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
