// The OPC-UA side of a device profile: its node map with the same scaling as the Modbus points,
// decoded status (a no-data value is absent, never 0), and commands as a method call and variable
// writes — encoded exactly or refused with COOLCTL_E_PROFILE_VALUE, never clipped. Pure: no I/O.
//   compileProfile(…).opcua        → the OPC-UA node map (when the profile has one)
//   .opcua.encodeValues(values)    → simulator: the raw value each OPC-UA variable shows
import type { CommandPointName, ProfileMode } from './points.ts';
import type { Profile } from './schema.ts';
import {
  type DecodedStatus,
  decodeValue,
  type ImageValues,
  keptInRange,
  type ProfileCommand,
  ProfileValueError,
  scalingOf,
  toRaw,
} from './values.ts';

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

export function compileOpcua(
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
