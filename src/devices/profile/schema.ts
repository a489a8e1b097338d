// The device profile format (config/profiles/NAME.yaml) as one JSON Schema built with TypeBox; the
// TypeScript types derive from it so the validator and the code cannot disagree. What a schema
// cannot say (Modicon prefix vs table, function codes, contiguous write groups, watchdog points)
// is checked in rules.ts. Documented field by field in docs/device-profiles.md.
import { type Static, Type as T } from '@sinclair/typebox';
import { PROFILE_MODES } from './points.ts';

/** A string enum as JSON Schema `enum`, so a wrong value is reported with the allowed list. */
function OneOf<const V extends readonly (string | number)[]>(values: V, description?: string) {
  const type = typeof values[0] === 'number' ? 'integer' : 'string';
  return T.Unsafe<V[number]>({ type, enum: [...values], ...(description ? { description } : {}) });
}

const Name = T.String({
  pattern: '^[A-Za-z][A-Za-z0-9_-]{0,63}$',
  description: 'a name: a letter, then letters, digits, _ or -',
});
const Version = T.String({
  pattern: '^[0-9]+(\\.[0-9]+){0,3}$',
  description: 'a dotted version such as 2 or 1.4.2',
});
/** Integer keys of a YAML map (`0: local`), which YAML hands over as strings. */
const IntKey = '^-?[0-9]{1,10}$';

export const MODBUS_TABLES = ['coil', 'discrete', 'input', 'holding'] as const;
export type ModbusTable = (typeof MODBUS_TABLES)[number];
export const VALUE_TYPES = ['bool', 'u16', 'i16', 'u32', 'i32', 'f32', 'u64'] as const;
export type ValueType = (typeof VALUE_TYPES)[number];
export const WATCHDOG_STYLES = ['toggle', 'timeout-register', 'countdown', 'validity', 'none'] as const;
export type WatchdogStyle = (typeof WATCHDOG_STYLES)[number];
export const WRITE_FUNCTION_CODES = [5, 6, 15, 16] as const;
export type WriteFunctionCode = (typeof WRITE_FUNCTION_CODES)[number];
export type WordOrder = 'msw-first' | 'lsw-first';
export type ByteOrder = 'big' | 'little';

const PointCommon = {
  description: T.Optional(T.String()),
  scale: T.Optional(T.Number({ description: 'engineering value = raw × scale + offset; not 0' })),
  offset: T.Optional(T.Number()),
  unit: T.Optional(OneOf(['C', 'F'], 'temperature points: the unit reports °C (default) or °F')),
  enum: T.Optional(
    T.Record(T.String({ pattern: IntKey }), OneOf(PROFILE_MODES), {
      description: 'mode point: unit code → coolctl mode',
    }),
  ),
  alarm: T.Optional(Name),
  alarmBits: T.Optional(T.Record(T.String({ pattern: '^[0-9]{1,2}$' }), Name)),
  inverted: T.Optional(T.Boolean({ description: 'boolean point: 1 means off/false' })),
  sinceFirmware: T.Optional(Version),
};

export const ModbusPointSchema = T.Object(
  {
    table: OneOf(MODBUS_TABLES),
    address: T.Union([T.Integer({ minimum: 0, maximum: 465_536 }), T.String({ pattern: '^[0-9]{5,6}$' })], {
      description:
        'a 0-based wire address (0–65535), a Modicon number (10001, 30001, 40001 …) or a quoted Modicon string ("00062")',
    }),
    type: OneOf(VALUE_TYPES),
    bit: T.Optional(
      T.Integer({ minimum: 0, maximum: 15, description: 'bool point: this bit of a register' }),
    ),
    wordOrder: T.Optional(OneOf(['msw-first', 'lsw-first'])),
    byteOrder: T.Optional(OneOf(['big', 'little'])),
    noData: T.Optional(
      T.Union([T.Number(), T.Array(T.Number(), { minItems: 1 })], {
        description: 'a raw value (or list) that means "no data"',
      }),
    ),
    command: T.Optional(
      T.Object(
        { on: T.Integer({ minimum: 0, maximum: 65_535 }), off: T.Integer({ minimum: 0, maximum: 65_535 }) },
        { additionalProperties: false },
      ),
    ),
    write: T.Optional(OneOf(WRITE_FUNCTION_CODES, 'the function code that writes this point')),
    ...PointCommon,
  },
  { additionalProperties: false },
);
export type ModbusPoint = Static<typeof ModbusPointSchema>;

export const OpcuaPointSchema = T.Object(
  {
    nodeId: T.Optional(T.String({ minLength: 1 })),
    browsePath: T.Optional(T.String({ minLength: 1 })),
    type: T.Optional(OneOf(['Double', 'Float', 'Int16', 'UInt16', 'Int32', 'UInt32', 'Boolean'])),
    write: T.Optional(T.Boolean({ description: 'a writable variable (else the method or read only)' })),
    ...PointCommon,
  },
  { additionalProperties: false },
);
export type OpcuaPoint = Static<typeof OpcuaPointSchema>;

export const WatchdogSchema = T.Object(
  {
    style: OneOf(WATCHDOG_STYLES),
    point: T.Optional(Name),
    timeoutS: T.Optional(T.Number({ exclusiveMinimum: 0, maximum: 86_400 })),
    refreshS: T.Optional(T.Number({ exclusiveMinimum: 0, maximum: 86_400 })),
  },
  { additionalProperties: false },
);
export type Watchdog = Static<typeof WatchdogSchema>;

export const ModbusSectionSchema = T.Object(
  {
    byteOrder: T.Optional(OneOf(['big', 'little'])),
    wordOrder: T.Optional(OneOf(['msw-first', 'lsw-first'])),
    numbering: T.Optional(
      OneOf(
        ['auto', 'wire'],
        'auto: integers from 10001 are Modicon numbers; wire: every integer is a wire address',
      ),
    ),
    functionCodes: T.Array(T.Integer({ minimum: 1, maximum: 127 }), { minItems: 1, uniqueItems: true }),
    maxReadRegisters: T.Optional(T.Integer({ minimum: 1, maximum: 125 })),
    maxReadBits: T.Optional(T.Integer({ minimum: 1, maximum: 2000 })),
    maxGap: T.Optional(
      T.Integer({ minimum: 0, maximum: 2000, description: 'unused registers/bits a read may span' }),
    ),
    points: T.Record(T.String(), ModbusPointSchema),
    writeTogether: T.Optional(T.Array(T.Array(T.String(), { minItems: 2, uniqueItems: true }))),
  },
  { additionalProperties: false },
);
export type ModbusSection = Static<typeof ModbusSectionSchema>;

export const OpcuaSectionSchema = T.Object(
  {
    namespaceUri: T.Optional(T.String({ minLength: 1 })),
    points: T.Record(T.String(), OpcuaPointSchema),
    writeCommand: T.Optional(
      T.Object(
        {
          object: T.String({ minLength: 1 }),
          method: T.String({ minLength: 1 }),
          arguments: T.Array(T.String(), { minItems: 1, uniqueItems: true }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type OpcuaSection = Static<typeof OpcuaSectionSchema>;

const Protocol = OneOf(['modbus', 'opcua']);

export const ProfileSchema = T.Object(
  {
    profile: Name,
    description: T.String({ minLength: 1 }),
    source: T.String({ minLength: 1, description: 'the conventions followed, or the vendor document cited' }),
    protocol: T.Union([Protocol, T.Array(Protocol, { minItems: 1, uniqueItems: true })], {
      description: 'modbus, opcua, or a list of both',
    }),
    fencing: T.Array(OneOf(['epoch', 'lease']), { minItems: 1, uniqueItems: true }),
    firmware: T.Optional(T.String()),
    watchdog: WatchdogSchema,
    modbus: T.Optional(ModbusSectionSchema),
    opcua: T.Optional(OpcuaSectionSchema),
  },
  { additionalProperties: false },
);
export type Profile = Static<typeof ProfileSchema>;
