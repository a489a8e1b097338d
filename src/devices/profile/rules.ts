// What the profile schema cannot say: Modicon numbers against tables, types against tables and
// meanings, function codes the unit lacks, write groups that cannot go in one request, watchdog
// and fencing claims the points do not back. Every problem is returned (never just the first),
// each with its JSON-pointer path so the loader can give its line. Tolerant of a document that
// failed the schema in places: the loader drops the parts that did and the rest is still checked.

import { resolveAddress } from './modicon.ts';
import { isPointName, POINT_NAMES, POINTS } from './points.ts';
import type { ModbusPoint, OpcuaPoint, Profile } from './schema.ts';
import { pointLength } from './shape.ts';

export interface RuleProblem {
  path: string;
  message: string;
  allowed: string;
}

const READ_FC = { coil: 1, discrete: 2, input: 4, holding: 3 } as const;
const TYPE_RANGE: Record<string, [number, number]> = {
  bool: [0, 1],
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffff_ffff],
  i32: [-0x8000_0000, 0x7fff_ffff],
  u64: [0, Number.MAX_SAFE_INTEGER],
};
const esc = (k: string): string => k.replace(/~/g, '~0').replace(/\//g, '~1');

export interface CheckOptions {
  /** The file's base name, which must be the profile's name. */
  fileBase?: string | undefined;
  /**
   * Point names (and `/modbus`, `/opcua`, `/watchdog`) the loader left out because they failed the
   * schema: references to them are not judged again, and nothing is said about what is missing.
   */
  dropped?: ReadonlySet<string>;
}

/** Every rule problem of a profile (one that passed its schema, or the parts of one that did). */
export function checkProfile(profile: Profile, opts: CheckOptions = {}): RuleProblem[] {
  const { fileBase } = opts;
  const dropped = opts.dropped ?? new Set<string>();
  const out: RuleProblem[] = [];
  const add = (path: string, message: string, allowed: string): void => {
    out.push({ path, message, allowed });
  };
  if (fileBase !== undefined && typeof profile.profile === 'string' && profile.profile !== fileBase) {
    add(
      '/profile',
      `profile "${profile.profile}" is in a file named ${fileBase}.yaml`,
      `profile: ${fileBase}`,
    );
  }
  const protocols = new Set(Array.isArray(profile.protocol) ? profile.protocol : [profile.protocol]);
  for (const proto of ['modbus', 'opcua'] as const) {
    if (protocols.has(proto) && profile[proto] === undefined) {
      add(`/${proto}`, `protocol lists ${proto} but there is no ${proto} section`, `a ${proto}: section`);
    }
    if (!protocols.has(proto) && profile[proto] !== undefined) {
      add(
        '/protocol',
        `there is a ${proto} section but protocol does not list ${proto}`,
        `protocol: [${[...protocols, proto].join(', ')}]`,
      );
    }
  }
  const writable = new Set<string>();
  const readable = new Set<string>();
  if (profile.modbus) checkModbus(profile, out, writable, readable, dropped);
  if (profile.opcua) checkOpcua(profile, out, writable, readable);
  checkWatchdog(profile, out, writable, readable, dropped);
  if (!dropped.has('epoch') && !dropped.has('/modbus') && !dropped.has('/opcua')) checkFencing(profile, out);
  // What is missing cannot be told while part of the document is left out.
  if (dropped.size > 0) return out;
  if (!writable.has('fanPct') && !writable.has('supplySetpointC')) {
    add(
      '/',
      'no writable fanPct or supplySetpointC point: coolctl would have nothing to drive',
      'a fanPct or supplySetpointC point with write',
    );
  }
  if (!readable.has('supplyC'))
    add('/', 'no supplyC point: coolctl cannot see the supply air', 'a supplyC point');
  return out;
}

function checkPointMeaning(
  base: string,
  name: string,
  p: ModbusPoint | OpcuaPoint,
  numeric: boolean,
  add: (path: string, message: string, allowed: string) => void,
): void {
  const known = isPointName(name);
  const isAlarm = p.alarm !== undefined || p.alarmBits !== undefined;
  if (!known && !isAlarm) {
    add(
      base,
      `unknown point "${name}"`,
      `one of ${POINT_NAMES.join(', ')}, or an alarm point (with alarm: or alarmBits:)`,
    );
    return;
  }
  if (known && isAlarm)
    add(`${base}/alarm`, `${name} is a coolctl point, not an alarm`, 'give the alarm its own name');
  if (p.alarm !== undefined && p.alarmBits !== undefined) {
    add(
      `${base}/alarmBits`,
      'alarm and alarmBits on one point',
      'alarm (one bit) or alarmBits (a register of bits)',
    );
  }
  const kind = known ? POINTS[name].kind : 'alarm';
  if (p.enum !== undefined && kind !== 'mode')
    add(`${base}/enum`, 'enum on a point that is not mode', 'enum only on mode');
  if (kind === 'mode' && p.enum === undefined)
    add(base, 'mode without enum', 'enum: { <code>: local|remote|fallback|tripped }');
  if (p.inverted !== undefined && kind !== 'boolean' && !(kind === 'alarm' && p.alarm !== undefined)) {
    add(
      `${base}/inverted`,
      'inverted on a point that is not a boolean',
      'inverted only on run, remoteEnable, runFeedback and alarm points',
    );
  }
  if (p.unit !== undefined && kind !== 'temperatureC') {
    add(`${base}/unit`, `unit ${p.unit} on a point that is not a temperature`, 'unit only on …C points');
  }
  if ((p.scale !== undefined || p.offset !== undefined) && !numeric) {
    add(
      `${base}/scale`,
      'scale or offset on a point that carries no quantity',
      'scale/offset only on numeric points',
    );
  }
  if (p.scale !== undefined && (p.scale === 0 || !Number.isFinite(p.scale))) {
    add(`${base}/scale`, `scale ${p.scale} cannot be inverted`, 'a finite number above 0');
  } else if (p.scale !== undefined && p.scale < 0) {
    // A negative scale turns a command's sign (a setpoint of 20 °C written as −200) and reads a
    // unit's wrong-signed register as a plausible figure: no vendor map needs it, a typo gives it.
    add(`${base}/scale`, `scale ${p.scale} is negative`, 'a finite number above 0');
  }
  if (p.offset !== undefined && !Number.isFinite(p.offset)) {
    add(`${base}/offset`, `offset ${p.offset} is not a finite number`, 'a finite number');
  }
  if (
    (name === 'epoch' || name === 'heartbeat' || name === 'epochFeedback' || name === 'heartbeatFeedback') &&
    (p.scale !== undefined || p.offset !== undefined)
  ) {
    add(`${base}/scale`, `${name} is a counter and is never scaled`, 'no scale or offset');
  }
}

function checkModbus(
  profile: Profile,
  out: RuleProblem[],
  writable: Set<string>,
  readable: Set<string>,
  dropped: ReadonlySet<string>,
): void {
  const m = profile.modbus;
  if (!m) return;
  const add = (path: string, message: string, allowed: string): void => {
    out.push({ path, message, allowed });
  };
  const fcs = Array.isArray(m.functionCodes) ? new Set(m.functionCodes) : undefined;
  const maxRegs = m.maxReadRegisters ?? 125;
  const spans: { name: string; table: string; start: number; end: number; bit: boolean }[] = [];
  const resolved = new Map<string, { table: string; start: number; end: number; p: ModbusPoint }>();
  for (const [name, p] of Object.entries(m.points ?? {})) {
    if (!p || typeof p !== 'object') continue;
    const base = `/modbus/points/${esc(name)}`;
    const kind = isPointName(name) ? POINTS[name].kind : 'alarm';
    const isBitLike = p.table === 'coil' || p.table === 'discrete' || p.type === 'bool';
    checkPointMeaning(
      base,
      name,
      p,
      !isBitLike && kind !== 'mode' && kind !== 'boolean' && kind !== 'alarm',
      add,
    );

    const r = resolveAddress(p.table, p.address, m.numbering ?? 'auto');
    if (!('wire' in r)) add(`${base}/address`, r.problem, r.allowed);

    // Types against tables.
    const bitTable = p.table === 'coil' || p.table === 'discrete';
    if (bitTable && p.type !== 'bool') {
      add(
        `${base}/type`,
        `a ${p.table} is one bit; type ${p.type} needs registers`,
        'type: bool, or table input/holding',
      );
    }
    if (!bitTable && p.type === 'bool' && p.bit === undefined) {
      add(
        `${base}/bit`,
        `a bool in a ${p.table} register needs the bit it is`,
        'bit: 0–15, or type u16 with 0/1',
      );
    }
    if (p.bit !== undefined && (bitTable || p.type !== 'bool')) {
      add(
        `${base}/bit`,
        'bit on a point that is not a bool in a register',
        'bit only with type: bool on input/holding',
      );
    }
    if (p.type === 'u64' && name !== 'epoch' && name !== 'epochFeedback') {
      add(`${base}/type`, 'u64 is only for the fencing epoch', 'bool, u16, i16, u32, i32 or f32');
    }
    // The epoch is an etcd revision: it only grows, past 65535 within days on a busy cluster. A
    // narrower register would refuse every write from then on (an epoch is never wrapped).
    if ((name === 'epoch' || name === 'epochFeedback') && p.type !== 'u64' && p.type !== 'u32') {
      add(
        `${base}/type`,
        `the fencing epoch outgrows type ${p.type}`,
        'u64 (or u32, which holds 2^32 revisions)',
      );
    }
    if (p.byteOrder !== undefined && bitTable)
      add(`${base}/byteOrder`, 'byte order on a bit', 'byteOrder only on registers');
    if (p.wordOrder !== undefined && !['u32', 'i32', 'f32', 'u64'].includes(p.type)) {
      add(
        `${base}/wordOrder`,
        `word order on a one-register ${p.type}`,
        'wordOrder only on u32, i32, f32, u64',
      );
    }
    // Meanings against types.
    if ((kind === 'boolean' || p.alarm !== undefined) && !['bool', 'u16', 'i16'].includes(p.type)) {
      add(
        `${base}/type`,
        `${name} is a boolean; ${p.type} is not`,
        'bool (coil, discrete, or a register bit), or u16 holding 0/1',
      );
    }
    if (p.alarmBits !== undefined) {
      if (!['u16', 'u32'].includes(p.type))
        add(`${base}/type`, 'alarmBits need an unsigned register', 'u16 or u32');
      const bits = p.type === 'u32' ? 32 : 16;
      for (const bit of Object.keys(p.alarmBits)) {
        if (Number(bit) >= bits)
          add(`${base}/alarmBits/${bit}`, `bit ${bit} is past a ${p.type}`, `0–${bits - 1}`);
      }
    }
    if (kind === 'mode' && !['u16', 'i16', 'u32', 'i32'].includes(p.type)) {
      add(`${base}/type`, `mode codes are integers; ${p.type} is not`, 'u16, i16, u32 or i32');
    }
    if (
      ['temperatureC', 'percent', 'kilowatt', 'seconds', 'counter'].includes(kind) &&
      p.type === 'bool' &&
      name !== 'heartbeat'
    ) {
      add(`${base}/type`, `${name} is a quantity; a bool cannot carry it`, 'u16, i16, u32, i32 or f32');
    }
    if (p.enum !== undefined && TYPE_RANGE[p.type]) {
      const [lo, hi] = TYPE_RANGE[p.type] as [number, number];
      for (const code of Object.keys(p.enum)) {
        if (Number(code) < lo || Number(code) > hi)
          add(`${base}/enum/${code}`, `code ${code} does not fit a ${p.type}`, `${lo}–${hi}`);
      }
    }
    // No data.
    if (p.noData !== undefined) {
      const vals = Array.isArray(p.noData) ? p.noData : [p.noData];
      if (p.type === 'bool') add(`${base}/noData`, 'a bit has no no-data value', 'noData only on registers');
      else if (TYPE_RANGE[p.type]) {
        const [lo, hi] = TYPE_RANGE[p.type] as [number, number];
        for (const v of vals) {
          if (!Number.isInteger(v) || v < lo || v > hi) {
            add(
              `${base}/noData`,
              `no-data value ${v} is not a raw ${p.type}`,
              `an integer ${lo}–${hi} (as the register reads, before scale)`,
            );
          }
        }
      }
    }
    // Command bits: a write that is not a state.
    if (p.command !== undefined) {
      if (name !== 'run' && name !== 'remoteEnable') {
        add(`${base}/command`, `command bits on ${name}`, 'command only on run or remoteEnable');
      }
      if (p.type !== 'u16' || bitTable)
        add(`${base}/type`, 'command bits are a whole register', 'type: u16 on a holding register');
      if (p.command.on === p.command.off)
        add(`${base}/command`, 'on and off are the same code', 'two different codes');
      if (p.inverted !== undefined)
        add(`${base}/inverted`, 'inverted with command bits', 'the codes say what on and off are');
      if (p.write === undefined) add(base, 'command bits are written, never read', 'write: 6 or 16');
    }
    // Writes.
    const isCommand = isPointName(name) && POINTS[name].command;
    if (p.write !== undefined) {
      if (!isCommand) {
        add(
          `${base}/write`,
          `${name} is not a point coolctl writes`,
          `write only on ${Object.keys(POINTS)
            .filter((n) => POINTS[n as keyof typeof POINTS].command)
            .join(', ')}`,
        );
      }
      const tableOk = p.table === 'coil' ? [5, 15] : p.table === 'holding' ? [6, 16] : [];
      if (!tableOk.includes(p.write)) {
        add(
          `${base}/write`,
          `FC${p.write} cannot write a ${p.table === 'discrete' || p.table === 'input' ? `${p.table} (read only)` : p.table}`,
          tableOk.length ? `write: ${tableOk.join(' or ')}` : 'table: holding or coil',
        );
      }
      if (p.write === 6 && pointLength(p.table, p.type) > 1) {
        add(
          `${base}/write`,
          `FC6 writes one register; a ${p.type} is ${pointLength(p.table, p.type)}`,
          'write: 16',
        );
      }
      if (p.bit !== undefined)
        add(
          `${base}/write`,
          'one bit of a register cannot be written alone',
          'a whole register (u16 0/1) or a coil',
        );
      if (fcs && !fcs.has(p.write)) {
        const alt =
          p.write === 6 && fcs.has(16)
            ? 'write: 16 (this unit writes single registers by FC16)'
            : p.write === 15 && fcs.has(5)
              ? 'write: 5 (coils one by one)'
              : p.write === 5 && fcs.has(15)
                ? 'write: 15'
                : `a function code in functionCodes [${[...fcs].join(', ')}]`;
        add(`${base}/write`, `FC${p.write} is not in the unit's functionCodes`, alt);
      }
      writable.add(name);
    } else if (isCommand) {
      add(
        base,
        `${name} is a command and has no write function code`,
        p.table === 'coil' ? 'write: 5 or 15' : 'write: 6 or 16',
      );
    }
    if (p.command === undefined) readable.add(name);
    // Read function code.
    if (fcs && !fcs.has(READ_FC[p.table])) {
      add(
        `${base}/table`,
        `reading a ${p.table} takes FC${READ_FC[p.table]}, not in functionCodes`,
        `add ${READ_FC[p.table]} to functionCodes`,
      );
    }
    if (p.sinceFirmware !== undefined && profile.firmware === undefined) {
      add(
        `${base}/sinceFirmware`,
        'sinceFirmware without a firmware note at the top',
        'firmware: "…" saying which versions the profile covers',
      );
    }
    if ('wire' in r) {
      const len = pointLength(p.table, p.type);
      if (r.wire + len > 0x10000)
        add(
          `${base}/address`,
          `a ${p.type} at ${r.wire} runs past 65535`,
          'an address that leaves room for the whole value',
        );
      if (!bitTable && len > maxRegs)
        add(
          `${base}/type`,
          `a ${p.type} is ${len} registers, more than maxReadRegisters ${maxRegs}`,
          `maxReadRegisters ≥ ${len}`,
        );
      spans.push({ name, table: p.table, start: r.wire, end: r.wire + len, bit: p.bit !== undefined });
      resolved.set(name, { table: p.table, start: r.wire, end: r.wire + len, p });
    }
  }
  // Overlaps: bits of one register may share it; anything else is a typo.
  spans.sort((a, b) => a.start - b.start);
  for (let i = 0; i < spans.length; i++) {
    for (let j = i + 1; j < spans.length; j++) {
      const a = spans[i] as (typeof spans)[number];
      const b = spans[j] as (typeof spans)[number];
      if (b.start >= a.end) break;
      if (a.table !== b.table) continue;
      const sameRegister = a.start === b.start && a.end === b.end && (a.bit || b.bit);
      const aBits = resolved.get(a.name)?.p.alarmBits !== undefined;
      const bBits = resolved.get(b.name)?.p.alarmBits !== undefined;
      if (sameRegister || (a.start === b.start && a.end === b.end && (aBits || bBits) && (a.bit || b.bit)))
        continue;
      add(
        `/modbus/points/${esc(b.name)}/address`,
        `${b.name} overlaps ${a.name} in the ${a.table} table`,
        'its own address (bits of one register: type bool with bit)',
      );
    }
  }
  // Written together: one request, so one table, contiguous, and the multi-write function code.
  const inGroup = new Map<string, number>();
  (m.writeTogether ?? []).forEach((group, gi) => {
    const gpath = `/modbus/writeTogether/${gi}`;
    if (!Array.isArray(group)) return;
    const members: { name: string; table: string; start: number; end: number; p: ModbusPoint }[] = [];
    group.forEach((n, k) => {
      const r = resolved.get(n);
      if (!r) {
        if (dropped.has(n)) return;
        add(`${gpath}/${k}`, `"${n}" is not a point of this profile`, 'a point name under modbus.points');
        return;
      }
      if (r.p.write === undefined) add(`${gpath}/${k}`, `${n} is not writable`, 'writable points only');
      if (inGroup.has(n))
        add(
          `${gpath}/${k}`,
          `${n} is already in writeTogether ${inGroup.get(n)}`,
          'each point in at most one group',
        );
      inGroup.set(n, gi);
      members.push({ name: n, ...r });
    });
    if (members.length < 2) return;
    const tables = new Set(members.map((x) => x.table));
    if (tables.size > 1) {
      add(
        gpath,
        `mixes tables ${[...tables].join(' and ')}: one request writes one table`,
        'points of one table',
      );
      return;
    }
    const table = members[0]?.table;
    const fc = table === 'coil' ? 15 : 16;
    members.sort((a, b) => a.start - b.start);
    for (let k = 1; k < members.length; k++) {
      const prev = members[k - 1] as (typeof members)[number];
      const cur = members[k] as (typeof members)[number];
      if (cur.start !== prev.end) {
        add(
          gpath,
          cur.start > prev.end
            ? `${prev.name} and ${cur.name} are not contiguous (${cur.start - prev.end} unused between them): one request cannot write both`
            : `${prev.name} and ${cur.name} overlap`,
          'points at consecutive addresses',
        );
      }
    }
    const first = members[0] as (typeof members)[number];
    const last = members[members.length - 1] as (typeof members)[number];
    const limit = table === 'coil' ? 1968 : 123;
    if (last.end - first.start > limit)
      add(gpath, `spans ${last.end - first.start}, more than one FC${fc} carries`, `at most ${limit}`);
    if (fcs && !fcs.has(fc)) {
      add(
        gpath,
        `needs FC${fc} to go in one request, and the unit has no FC${fc}`,
        `FC${fc} in functionCodes, or write the points apart`,
      );
    }
    for (const x of members) {
      if (x.p.write !== undefined && x.p.write !== fc) {
        add(
          `/modbus/points/${esc(x.name)}/write`,
          `${x.name} is written together by FC${fc}, not FC${x.p.write}`,
          `write: ${fc}`,
        );
      }
    }
  });
}

function checkOpcua(
  profile: Profile,
  out: RuleProblem[],
  writable: Set<string>,
  readable: Set<string>,
): void {
  const o = profile.opcua;
  if (!o) return;
  const add = (path: string, message: string, allowed: string): void => {
    out.push({ path, message, allowed });
  };
  // One variable, one point: two names on it read one value as two meanings, and a command written
  // to one (a fan speed) overwrites the other (an alarm word, a feedback) — as an overlap in Modbus.
  const onNode = new Map<string, string>();
  for (const [name, p] of Object.entries(o.points ?? {})) {
    if (!p || typeof p !== 'object') continue;
    const base = `/opcua/points/${esc(name)}`;
    for (const field of ['nodeId', 'browsePath'] as const) {
      const id = p[field];
      if (typeof id !== 'string') continue;
      const first = onNode.get(`${field} ${id.trim()}`);
      if (first === undefined) onNode.set(`${field} ${id.trim()}`, name);
      else
        add(
          `${base}/${field}`,
          `${name} is on the same node as ${first} (${id})`,
          'its own node: one variable per point',
        );
    }
    const kind = isPointName(name) ? POINTS[name].kind : 'alarm';
    checkPointMeaning(base, name, p, kind !== 'mode' && kind !== 'boolean' && kind !== 'alarm', add);
    if ((p.nodeId === undefined) === (p.browsePath === undefined)) {
      add(
        base,
        'a point needs exactly one of nodeId and browsePath',
        'nodeId: "s={unit}.SupplyTemp" or browsePath: "/Objects/{unit}/SupplyTemp"',
      );
    }
    const isCommand = isPointName(name) && POINTS[name].command;
    if (p.write === true) {
      if (!isCommand)
        add(`${base}/write`, `${name} is not a point coolctl writes`, 'write only on command points');
      writable.add(name);
    }
    readable.add(name);
    if (p.sinceFirmware !== undefined && profile.firmware === undefined) {
      add(`${base}/sinceFirmware`, 'sinceFirmware without a firmware note at the top', 'firmware: "…"');
    }
  }
  const wc = o.writeCommand;
  if (wc) {
    (wc.arguments ?? []).forEach((a, k) => {
      if (!isPointName(a) || !POINTS[a].command) {
        add(
          `/opcua/writeCommand/arguments/${k}`,
          `"${a}" is not a command point`,
          `one of ${Object.keys(POINTS)
            .filter((n) => POINTS[n as keyof typeof POINTS].command)
            .join(', ')}`,
        );
      } else writable.add(a);
    });
  }
}

function checkWatchdog(
  profile: Profile,
  out: RuleProblem[],
  writable: Set<string>,
  readable: Set<string>,
  dropped: ReadonlySet<string>,
): void {
  const w = profile.watchdog;
  if (!w || typeof w !== 'object') return;
  const add = (path: string, message: string, allowed: string): void => {
    out.push({ path, message, allowed });
  };
  if (w.style === 'none') {
    if (w.point !== undefined)
      add('/watchdog/point', 'watchdog style none has no point', 'remove point, or choose a style');
    if (w.timeoutS !== undefined)
      add('/watchdog/timeoutS', 'watchdog style none has no timeout', 'remove timeoutS');
    return;
  }
  const want = w.style === 'toggle' ? 'heartbeat' : 'watchdogTimerS';
  if (w.point === undefined) add('/watchdog', `style ${w.style} needs its point`, `point: ${want}`);
  else if (w.point !== want)
    add('/watchdog/point', `style ${w.style} works through ${want}, not ${w.point}`, `point: ${want}`);
  else if (!writable.has(want) && !dropped.has(want) && !dropped.has('/modbus') && !dropped.has('/opcua')) {
    add('/watchdog/point', `${want} is not a writable point of this profile`, `a ${want} point with write`);
  }
  if (
    w.timeoutS === undefined &&
    !(w.style === 'toggle' && (readable.has('watchdogS') || dropped.has('watchdogS')))
  ) {
    add(
      '/watchdog',
      `style ${w.style} needs timeoutS`,
      'timeoutS: seconds (for toggle, or a watchdogS point the unit reports)',
    );
  }
  if (w.timeoutS !== undefined && w.refreshS !== undefined && w.refreshS > w.timeoutS / 2) {
    add(
      '/watchdog/refreshS',
      `refresh every ${w.refreshS} s leaves no room for one missed refresh in ${w.timeoutS} s`,
      `refreshS ≤ ${w.timeoutS / 2}`,
    );
  }
  // The timer value must be what the unit's register can hold exactly (a minutes register takes whole minutes).
  const p = profile.modbus?.points?.watchdogTimerS;
  if (w.style !== 'toggle' && w.timeoutS !== undefined && p && typeof p === 'object') {
    const raw = (w.timeoutS - (p.offset ?? 0)) / (p.scale ?? 1);
    if (Math.abs(raw - Math.round(raw)) > 1e-9) {
      add(
        '/watchdog/timeoutS',
        `${w.timeoutS} s is not a whole number of the register's unit (${p.scale ?? 1} s)`,
        `a multiple of ${p.scale ?? 1} s`,
      );
    }
  }
}

function checkFencing(profile: Profile, out: RuleProblem[]): void {
  if (!Array.isArray(profile.fencing) || !profile.fencing.includes('epoch')) return;
  const m = profile.modbus;
  if (m) {
    const e = m.points?.epoch;
    if (!e || e.write === undefined) {
      out.push({
        path: '/fencing',
        message: 'fencing epoch but no writable epoch point',
        allowed: 'fencing: [lease], or an epoch point written with the commands',
      });
    } else {
      const group = (m.writeTogether ?? []).find((g) => Array.isArray(g) && g.includes('epoch')) ?? [];
      const commands = Object.keys(m.points ?? {}).filter(
        (n) => isPointName(n) && POINTS[n].command && n !== 'epoch' && m.points[n]?.write !== undefined,
      );
      const apart = commands.filter((n) => !group.includes(n));
      if (apart.length > 0) {
        out.push({
          path: '/modbus/writeTogether',
          message: `fencing epoch: ${apart.join(', ')} would be written without the epoch`,
          allowed: 'one writeTogether group with epoch and every command point',
        });
      }
    }
  }
  const o = profile.opcua;
  if (o && !(o.writeCommand?.arguments ?? []).includes('epoch')) {
    out.push({
      path: '/fencing',
      message: 'fencing epoch but the OPC-UA write method takes no epoch',
      allowed: 'writeCommand with an epoch argument',
    });
  }
}
