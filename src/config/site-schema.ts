// The site model: one JSON Schema (built with TypeBox) describes a data hall, and the TypeScript
// types are derived from it, so the validator and the code can never disagree.
// Cross-references (rack → room, node → gateway, group → AHU) are checked in `site-rules.ts`.
import { type Static, Type as T } from '@sinclair/typebox';
import { BAUD_RATES } from '../devices/modbus/rtu-frame.ts';
import { FAN_RANGE_PCT, SUPPLY_SETPOINT_RANGE_C } from '../unit-contract.ts';
import { AlarmSettingsSchema, GroupAlarmLimitsSchema } from './alarm-schema.ts';
import { ControlTuningSchema, InfluenceSchema } from './tuning-schema.ts';

const Id = T.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$',
  description: 'identifier: letters, digits, _ . -',
});
/** A host name or address a controller dials; no `user@` (it would be logged with the host). */
const Host = T.String({ minLength: 1, pattern: '^[^@/\\s]+$', description: 'host name or IP address' });
const Metres = (description: string) => T.Number({ minimum: 0, maximum: 10_000, description });

export const RoomSchema = T.Object(
  {
    id: Id,
    name: T.Optional(T.String()),
    widthM: T.Number({ exclusiveMinimum: 0, maximum: 1000 }),
    depthM: T.Number({ exclusiveMinimum: 0, maximum: 1000 }),
    heightM: T.Optional(T.Number({ exclusiveMinimum: 0, maximum: 30, default: 3.5 })),
  },
  { additionalProperties: false },
);

export const RackSchema = T.Object(
  {
    id: Id,
    room: Id,
    row: Id,
    xM: Metres('rack centre, metres from the room origin'),
    yM: Metres('rack centre, metres from the room origin'),
    itLoadKw: T.Number({ minimum: 0, maximum: 200, description: 'IT load at 100 % of the load profile' }),
    airflowM3s: T.Optional(
      T.Number({
        exclusiveMinimum: 0,
        maximum: 20,
        description: 'server fans airflow; default 0.08 m³/s per kW',
      }),
    ),
  },
  { additionalProperties: false },
);

export const ModbusPointMapSchema = T.Object(
  {
    commandBlock: T.Integer({
      minimum: 0,
      maximum: 65_000,
      default: 0,
      description: 'first holding register of the 8-register command block',
    }),
    statusBlock: T.Integer({
      minimum: 0,
      maximum: 65_000,
      default: 100,
      description: 'first register of the 16-register status block',
    }),
    tempScale: T.Number({
      exclusiveMinimum: 0,
      default: 10,
      description: 'raw = °C × tempScale (signed 16-bit)',
    }),
    pctScale: T.Number({ exclusiveMinimum: 0, default: 10, description: 'raw = % × pctScale' }),
  },
  { additionalProperties: false },
);

export const OpcuaNodeMapSchema = T.Object(
  {
    namespaceUri: T.String({ default: 'urn:coolctl:sim:ahu', minLength: 1 }),
    nodePrefix: T.Optional(
      T.String({ minLength: 1, description: 'string node id prefix; default the AHU id' }),
    ),
  },
  { additionalProperties: false },
);

const ModbusTcpEndpoint = T.Object(
  {
    host: Host,
    port: T.Integer({ minimum: 0, maximum: 65_535, description: '0 lets the simulator pick a free port' }),
    unitId: T.Integer({ minimum: 0, maximum: 255, default: 1 }),
  },
  { additionalProperties: false },
);

const ModbusRtuEndpoint = T.Object(
  {
    path: T.String({ minLength: 1, description: 'serial device the controller opens, e.g. /dev/ttyUSB0' }),
    // An enum, not a union of literals: a wrong rate then gets one problem that lists the rates.
    baudRate: T.Optional(
      T.Unsafe<(typeof BAUD_RATES)[number]>({ type: 'integer', enum: [...BAUD_RATES], default: 19_200 }),
    ),
    parity: T.Optional(
      T.Union([T.Literal('none'), T.Literal('even'), T.Literal('odd')], { default: 'even' }),
    ),
    dataBits: T.Optional(T.Union([T.Literal(7), T.Literal(8)], { default: 8 })),
    stopBits: T.Optional(T.Union([T.Literal(1), T.Literal(2)], { default: 1 })),
    unitId: T.Integer({ minimum: 1, maximum: 247, default: 1, description: 'slave address on the line' }),
    simPath: T.Optional(
      T.String({
        minLength: 1,
        description: 'simulator only: the device end of the line (e.g. the other side of a pty pair)',
      }),
    ),
  },
  { additionalProperties: false },
);

const OpcuaEndpoint = T.Object(
  {
    url: T.String({ pattern: '^opc\\.tcp://', description: 'opc.tcp://host:port/path' }),
    securityMode: T.Optional(
      T.Union([T.Literal('None'), T.Literal('Sign'), T.Literal('SignAndEncrypt')], {
        default: 'SignAndEncrypt',
        description:
          'message security (default SignAndEncrypt: the server certificate must be trusted in the PKI folder); None only where the unit offers nothing else, warned about at start',
      }),
    ),
    securityPolicy: T.Optional(
      T.Union(
        [
          T.Literal('None'),
          T.Literal('Basic256Sha256'),
          T.Literal('Aes128_Sha256_RsaOaep'),
          T.Literal('Aes256_Sha256_RsaPss'),
        ],
        { default: 'Basic256Sha256', description: 'used when securityMode is not None' },
      ),
    ),
    username: T.Optional(T.String({ minLength: 1 })),
    passwordFile: T.Optional(
      T.String({
        minLength: 1,
        description: 'file holding the password (never the password itself in the site file)',
      }),
    ),
  },
  { additionalProperties: false },
);

/** How the controller talks to one unit; every field has a safe default. */
export const DeviceClientSchema = T.Object(
  {
    timeoutMs: T.Optional(
      T.Integer({ minimum: 50, maximum: 60_000, default: 1_000, description: 'outer deadline of one call' }),
    ),
    retries: T.Optional(
      T.Integer({
        minimum: 0,
        maximum: 10,
        default: 2,
        description: 'extra tries for reads and absolute writes',
      }),
    ),
    verifyWrites: T.Optional(
      T.Boolean({ default: true, description: 'read the command back after every write' }),
    ),
    maxApplyDelayMs: T.Optional(
      T.Integer({
        minimum: 1,
        maximum: 60_000,
        description:
          'the longest the unit (or a gateway in front of it) may hold a write before it applies it or drops it for good; a write is sent only while at least this much is left of the leader’s lease (default: timeoutMs). Modbus gateways: their response or queue timeout',
      }),
    ),
  },
  { additionalProperties: false },
);

/** Default of `client.timeoutMs`, one owner for the adapters, the simulator and the timing rule. */
export const DEFAULT_DEVICE_TIMEOUT_MS = 1_000;

/**
 * The unit's stated worst case from the moment a write is on the wire until it applies or is
 * dropped: `client.maxApplyDelayMs`, else the unit's call timeout (a unit is assumed to answer, and
 * so to apply, within the time the controller waits for it).
 */
export function maxApplyDelayMs(client: DeviceClientSettings | undefined): number {
  return client?.maxApplyDelayMs ?? client?.timeoutMs ?? DEFAULT_DEVICE_TIMEOUT_MS;
}

/** What keeps a deposed leader's writes off a unit. */
export type FencingKind = 'epoch' | 'lease' | 'gateway';

/** The profile that ships today's register map, the only one with an epoch point. */
export const NATIVE_PROFILE = 'coolctl-native';

/**
 * A unit's fencing: its `fencing`, else epoch for a coolctl-native unit (no `profile`, or that
 * one) and lease for every other profile — a vendor unit has no epoch register to check.
 */
export function unitFencing(ahu: { fencing?: FencingKind; profile?: string }): FencingKind {
  return ahu.fencing ?? ((ahu.profile ?? NATIVE_PROFILE) === NATIVE_PROFILE ? 'epoch' : 'lease');
}

const AhuCommon = {
  id: Id,
  room: Id,
  xM: Metres('unit position'),
  yM: Metres('unit position'),
  capacityKw: T.Number({ exclusiveMinimum: 0, maximum: 2000, description: 'sensible cooling capacity' }),
  maxAirflowM3s: T.Number({ exclusiveMinimum: 0, maximum: 100 }),
  fanMaxKw: T.Number({
    exclusiveMinimum: 0,
    maximum: 200,
    description: 'fan electrical power at 100 % speed',
  }),
  localSetpointC: T.Number({
    minimum: SUPPLY_SETPOINT_RANGE_C.min,
    maximum: SUPPLY_SETPOINT_RANGE_C.max,
    default: 18,
    description: 'supply setpoint on local control (the device contract’s range, docs/device-io.md)',
  }),
  localFanPct: T.Number({
    minimum: FAN_RANGE_PCT.min,
    maximum: FAN_RANGE_PCT.max,
    default: 100,
    description: 'fan speed on local control',
  }),
  watchdogS: T.Number({ exclusiveMinimum: 0, maximum: 3600, default: 30, description: 'heartbeat watchdog' }),
  supplyTauS: T.Number({
    exclusiveMinimum: 0,
    maximum: 3600,
    default: 60,
    description: 'supply-air time constant',
  }),
  client: T.Optional(DeviceClientSchema),
  profile: T.Optional(
    T.String({
      pattern: '^[A-Za-z][A-Za-z0-9_-]{0,63}$',
      description:
        'device profile (config/profiles/NAME.yaml) mapping coolctl points to the unit’s own registers or nodes; default coolctl-native, the native map (docs/device-profiles.md). The simulator serves the same profile for the unit',
    }),
  ),
  fenceBase: T.Optional(
    T.Integer({
      minimum: 0,
      maximum: 65_536 - 131,
      description:
        'fencing: gateway only — the gateway’s fenceBase (its epoch block and write window in the unit id’s holding registers; default 61440 = 0xF000, as the gateway’s own default)',
    }),
  ),
  fencing: T.Optional(
    T.Union([T.Literal('epoch'), T.Literal('lease'), T.Literal('gateway')], {
      description:
        'what keeps a deposed leader off the unit (docs/leadership.md, "Fencing per unit"): epoch — the unit refuses stale epochs (coolctl-native only); lease — the unit checks nothing, each write is one request sent only while it can land inside the lease; gateway — a coolctl fencing gateway in front of it checks the epoch. Default: epoch for coolctl-native units, lease for any other profile',
    }),
  ),
};

export const ModbusAhuSchema = T.Object(
  {
    ...AhuCommon,
    protocol: T.Literal('modbus-tcp'),
    endpoint: ModbusTcpEndpoint,
    pointMap: T.Optional(ModbusPointMapSchema),
  },
  { additionalProperties: false },
);

export const ModbusRtuAhuSchema = T.Object(
  {
    ...AhuCommon,
    protocol: T.Literal('modbus-rtu'),
    endpoint: ModbusRtuEndpoint,
    pointMap: T.Optional(ModbusPointMapSchema),
  },
  { additionalProperties: false },
);

export const OpcuaAhuSchema = T.Object(
  {
    ...AhuCommon,
    protocol: T.Literal('opcua'),
    endpoint: OpcuaEndpoint,
    pointMap: T.Optional(OpcuaNodeMapSchema),
  },
  { additionalProperties: false },
);

// A discriminated union: the validator picks the branch by `protocol`, so errors (and defaults)
// come from the branch the author meant, not from every branch.
export const AirHandlerSchema = T.Unsafe<
  Static<typeof ModbusAhuSchema> | Static<typeof ModbusRtuAhuSchema> | Static<typeof OpcuaAhuSchema>
>({
  type: 'object',
  required: ['protocol'],
  discriminator: { propertyName: 'protocol' },
  oneOf: [ModbusAhuSchema, ModbusRtuAhuSchema, OpcuaAhuSchema],
});

export const SensorKind = T.Union([
  T.Literal('inlet-top'),
  T.Literal('inlet-middle'),
  T.Literal('inlet-bottom'),
  T.Literal('humidity'),
  T.Literal('subfloor-pressure'),
]);

export const SensorNodeSchema = T.Object(
  {
    id: Id,
    rack: Id,
    gateway: Id,
    hops: T.Integer({ minimum: 1, maximum: 16, default: 1, description: 'mesh hops to the gateway' }),
    reportIntervalS: T.Number({ minimum: 0.1, maximum: 3600, default: 10 }),
    batteryPct: T.Optional(T.Number({ minimum: 0, maximum: 100, default: 100 })),
    unitId: T.Optional(
      T.Integer({
        minimum: 1,
        maximum: 247,
        description:
          'Modbus slave id of the node on a modbus-tcp gateway; default its position among the gateway nodes (1…)',
      }),
    ),
    sensors: T.Array(T.Object({ id: Id, kind: SensorKind }, { additionalProperties: false }), {
      minItems: 1,
      maxItems: 16,
    }),
  },
  { additionalProperties: false },
);

export const GatewaySchema = T.Object(
  {
    id: Id,
    transport: T.Optional(
      T.Union([T.Literal('mqtt'), T.Literal('modbus-tcp')], {
        default: 'mqtt',
        description:
          'mqtt: the gateway publishes node reports; modbus-tcp: it is polled, one slave id per node',
      }),
    ),
    topicPrefix: T.String({ default: 'coolctl/sim', minLength: 1, pattern: '^[^#+]+$' }),
    endpoint: T.Optional(
      T.Object(
        {
          host: Host,
          port: T.Integer({
            minimum: 0,
            maximum: 65_535,
            description: '0 lets the simulator pick a free port',
          }),
        },
        { additionalProperties: false },
      ),
    ),
    pollIntervalS: T.Optional(
      T.Number({
        minimum: 0.1,
        maximum: 3600,
        default: 5,
        description: 'modbus-tcp: how often each node is polled',
      }),
    ),
  },
  { additionalProperties: false },
);

/**
 * How long a better verdict must hold before a flapping group takes it, s
 * (`sensing.verdictRecoveryS`): twice the stale window of a node at the default 10 s interval
 * (`staleIntervals` 3: 30 s). A node on a marginal link that lets one or a few reports through is
 * good for a stale window each time, so a shorter hold would let its rack flip the group's mode —
 * and fan floor — with every report.
 */
export const VERDICT_RECOVERY_S = 60;

/** Every sensing setting's default: the one owner, read by the schema below and by sensingSettings(). */
export const SENSING_DEFAULTS = Object.freeze({
  staleIntervals: 3,
  stuckReports: 6,
  spikeCPerS: 0.5,
  noisySigmaC: 0.6,
  inletRangeC: Object.freeze([-10, 60] as const),
  lowBatteryPct: 10,
  weakRssiDbm: -90,
  lossyPct: 30,
  okCoverage: 0.8,
  blindCoverage: 0.3,
  verdictRecoveryS: VERDICT_RECOVERY_S,
  maxReportsPerNodePerS: 50,
});

/** What a control group may trust of its sensors: the thresholds of every quality flag and verdict. */
export const SensingSchema = T.Object(
  {
    staleIntervals: T.Optional(
      T.Number({
        minimum: 1,
        maximum: 100,
        default: SENSING_DEFAULTS.staleIntervals,
        description: 'stale after this many report intervals without a reading',
      }),
    ),
    stuckReports: T.Optional(
      T.Integer({
        minimum: 3,
        maximum: 1000,
        default: SENSING_DEFAULTS.stuckReports,
        description: 'stuck after this many identical values in a row',
      }),
    ),
    spikeCPerS: T.Optional(
      T.Number({
        exclusiveMinimum: 0,
        default: SENSING_DEFAULTS.spikeCPerS,
        description: 'inlet change faster than air can do, K/s',
      }),
    ),
    noisySigmaC: T.Optional(
      T.Number({
        exclusiveMinimum: 0,
        default: SENSING_DEFAULTS.noisySigmaC,
        description: 'inlet noise (σ of successive differences / √2) above which a sensor is noisy, K',
      }),
    ),
    inletRangeC: T.Optional(
      T.Tuple([T.Number(), T.Number()], {
        default: [...SENSING_DEFAULTS.inletRangeC],
        description: 'physical range of an inlet sensor',
      }),
    ),
    lowBatteryPct: T.Optional(
      T.Number({ minimum: 0, maximum: 100, default: SENSING_DEFAULTS.lowBatteryPct }),
    ),
    weakRssiDbm: T.Optional(T.Number({ minimum: -150, maximum: 0, default: SENSING_DEFAULTS.weakRssiDbm })),
    lossyPct: T.Optional(
      T.Number({
        minimum: 0,
        maximum: 100,
        default: SENSING_DEFAULTS.lossyPct,
        description: 'node report loss above which its link is lossy',
      }),
    ),
    okCoverage: T.Optional(
      T.Number({
        minimum: 0,
        maximum: 1,
        default: SENSING_DEFAULTS.okCoverage,
        description: 'verdict ok at or above this share of good inlet sensors',
      }),
    ),
    blindCoverage: T.Optional(
      T.Number({
        minimum: 0,
        maximum: 1,
        default: SENSING_DEFAULTS.blindCoverage,
        description: 'verdict blind below this share',
      }),
    ),
    verdictRecoveryS: T.Optional(
      T.Number({
        minimum: 0,
        maximum: 3600,
        default: SENSING_DEFAULTS.verdictRecoveryS,
        description:
          'a flapping group (one that left ok twice within 10 times this) returns to ok only once its sensors said ok this long without a break, degraded meanwhile, s (any other change is taken at once)',
      }),
    ),
    maxReportsPerNodePerS: T.Optional(
      T.Number({
        exclusiveMinimum: 0,
        default: SENSING_DEFAULTS.maxReportsPerNodePerS,
        description: 'flood guard: reports a node may send per second',
      }),
    ),
  },
  { additionalProperties: false },
);

export const ControlGroupSchema = T.Object(
  {
    id: Id,
    airHandlers: T.Array(Id, { minItems: 1, uniqueItems: true }),
    sensorNodes: T.Array(Id, { minItems: 0, uniqueItems: true }),
    tuning: T.Optional(ControlTuningSchema),
    influence: T.Optional(InfluenceSchema),
    alarms: T.Optional(GroupAlarmLimitsSchema),
  },
  { additionalProperties: false },
);

export const MeshSchema = T.Object(
  {
    perHopLossPct: T.Number({ minimum: 0, maximum: 100, default: 2 }),
    perHopLatencyMs: T.Number({ minimum: 0, maximum: 10_000, default: 20 }),
    maxRetries: T.Integer({ minimum: 0, maximum: 10, default: 3 }),
    batteryDrainPctPerReport: T.Number({ minimum: 0, maximum: 10, default: 0.0005 }),
  },
  { additionalProperties: false },
);

export const SiteSchema = T.Object(
  {
    site: T.Object(
      {
        id: Id,
        name: T.String({ minLength: 1 }),
        supplyAirDewPointC: T.Optional(T.Number({ minimum: -30, maximum: 30, default: 8 })),
        subfloorPressurePaPerM3s: T.Optional(T.Number({ minimum: 0, maximum: 100, default: 12 })),
      },
      { additionalProperties: false },
    ),
    rooms: T.Array(RoomSchema, { minItems: 1 }),
    racks: T.Array(RackSchema, { minItems: 1 }),
    airHandlers: T.Array(AirHandlerSchema, { minItems: 1 }),
    gateways: T.Array(GatewaySchema, { minItems: 1 }),
    sensorNodes: T.Array(SensorNodeSchema),
    controlGroups: T.Array(ControlGroupSchema),
    mesh: T.Optional(MeshSchema),
    sensing: T.Optional(SensingSchema),
    alarms: T.Optional(AlarmSettingsSchema),
  },
  { additionalProperties: false },
);

export type Site = Static<typeof SiteSchema>;
export type Room = Static<typeof RoomSchema>;
export type Rack = Static<typeof RackSchema>;
export type AirHandler = Static<typeof AirHandlerSchema>;
export type ModbusAirHandler = Static<typeof ModbusAhuSchema>;
export type ModbusRtuAirHandler = Static<typeof ModbusRtuAhuSchema>;
export type OpcuaAirHandler = Static<typeof OpcuaAhuSchema>;
export type DeviceClientSettings = Static<typeof DeviceClientSchema>;
export type ModbusPointMap = Static<typeof ModbusPointMapSchema>;
export type OpcuaNodeMap = Static<typeof OpcuaNodeMapSchema>;
export type SensorNode = Static<typeof SensorNodeSchema>;
export type SensorKindName = Static<typeof SensorKind>;
export type Gateway = Static<typeof GatewaySchema>;
export type ControlGroup = Static<typeof ControlGroupSchema>;
export type MeshSettings = Static<typeof MeshSchema>;
export type SensingSettings = Static<typeof SensingSchema>;

/** A site's sensing settings with every omitted one at its default (SENSING_DEFAULTS). */
export function sensingSettings(c: SensingSettings = {}): Required<SensingSettings> {
  const d = SENSING_DEFAULTS;
  return {
    staleIntervals: c.staleIntervals ?? d.staleIntervals,
    stuckReports: c.stuckReports ?? d.stuckReports,
    spikeCPerS: c.spikeCPerS ?? d.spikeCPerS,
    noisySigmaC: c.noisySigmaC ?? d.noisySigmaC,
    inletRangeC: c.inletRangeC ?? [d.inletRangeC[0], d.inletRangeC[1]],
    lowBatteryPct: c.lowBatteryPct ?? d.lowBatteryPct,
    weakRssiDbm: c.weakRssiDbm ?? d.weakRssiDbm,
    lossyPct: c.lossyPct ?? d.lossyPct,
    okCoverage: c.okCoverage ?? d.okCoverage,
    blindCoverage: c.blindCoverage ?? d.blindCoverage,
    verdictRecoveryS: c.verdictRecoveryS ?? d.verdictRecoveryS,
    maxReportsPerNodePerS: c.maxReportsPerNodePerS ?? d.maxReportsPerNodePerS,
  };
}
