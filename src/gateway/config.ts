// The fencing gateway's config file (YAML): one TypeBox schema, every problem listed with its line
// (the parser every config file shares, config-check.ts), then the cross-reference rules below.
// Every setting needs a restart: the gateway has no reload, since a line or a unit id that moves
// under a running controller is a change the controllers' site files must follow anyway.
import { type Static, Type as T } from '@sinclair/typebox';
import { ajv, parseYamlConfig } from '../config/config-check.ts';
import { CONTROLLER_FILE_MAX_BYTES, readConfigFile } from '../config/config-files.ts';
import { GATEWAY_FENCE } from '../devices/modbus/gateway-fencing.ts';
import { BAUD_RATES } from '../devices/modbus/rtu-frame.ts';

/**
 * A controller that leads a unit's group sends at least one request per control period (at most
 * 60 s, control.periodMs); one that does not holds a silent connection and reopens it at once when it
 * is closed. Five periods at the longest: never a leader's connection, a follower's every 5 minutes.
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;

/**
 * When every slot is taken, a connection that has spoken but has had nothing in flight and sent
 * nothing for this long gives its slot to a newcomer. Above the longest control period (60 s) with
 * a margin for a late loop, so a leader's connection is never taken between its writes, whatever
 * its period; a quarter of the idle timeout, which is how long one-request-then-idle clients kept
 * every controller out before.
 */
export const DEFAULT_IDLE_DISPLACE_AFTER_MS = 65_000;

const DEFAULT_MAX_CONNECTIONS = 32;

/** One source address may hold this share of maxConnections by default (never fewer than the units). */
const DEFAULT_PER_HOST_SHARE = 0.75;

/** The per-address cap when the file sets none: most of the slots, and one per unit at least. */
export function defaultMaxConnectionsPerHost(maxConnections: number, units: number): number {
  return Math.min(maxConnections, Math.max(units, Math.floor(maxConnections * DEFAULT_PER_HOST_SHARE)));
}

const Name = T.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$',
  description: 'letters, digits, _ . -',
});
const Host = T.String({ minLength: 1, description: 'address to bind or reach' });
const Port = (description: string) => T.Integer({ minimum: 0, maximum: 65_535, description });

const SerialSchema = T.Object(
  {
    path: T.String({ minLength: 1, description: 'the serial device of the RS-485 line, e.g. /dev/ttyUSB0' }),
    // The rates RS-485 adapters and units share: a typo (19201, 96000) would open the line at a rate
    // no unit speaks, and every unit would only time out.
    baudRate: T.Optional(
      T.Unsafe<(typeof BAUD_RATES)[number]>({ type: 'integer', enum: [...BAUD_RATES], default: 19_200 }),
    ),
    // Enums, not unions of literals: a wrong value then gets one problem that lists the choices.
    parity: T.Optional(
      T.Unsafe<'none' | 'even' | 'odd'>({ type: 'string', enum: ['none', 'even', 'odd'], default: 'even' }),
    ),
    dataBits: T.Optional(T.Unsafe<7 | 8>({ type: 'integer', enum: [7, 8], default: 8 })),
    stopBits: T.Optional(T.Unsafe<1 | 2>({ type: 'integer', enum: [1, 2], default: 1 })),
  },
  { additionalProperties: false },
);

const TcpSchema = T.Object(
  {
    host: Host,
    port: T.Integer({
      minimum: 1,
      maximum: 65_535,
      description: 'the unit’s (or a TCP→RTU gateway’s) Modbus TCP port',
    }),
  },
  { additionalProperties: false },
);

const LineSchema = T.Object(
  {
    name: Name,
    serial: T.Optional(SerialSchema),
    tcp: T.Optional(TcpSchema),
    queueTimeoutMs: T.Optional(
      T.Integer({
        minimum: 10,
        maximum: 60_000,
        default: 1_000,
        description:
          'a request not sent on the line within this long of its arrival is answered 0x0B and never sent (part of the controllers’ client.maxApplyDelayMs)',
      }),
    ),
    maxQueued: T.Optional(
      T.Integer({
        minimum: 1,
        maximum: 10_000,
        default: 64,
        description: 'requests waiting for the line; more are answered 0x06 (busy)',
      }),
    ),
  },
  { additionalProperties: false },
);

const UnitSchema = T.Object(
  {
    id: T.Integer({
      minimum: 1,
      maximum: 247,
      description: 'the unit id controllers address over Modbus TCP',
    }),
    name: T.Optional(Name),
    line: Name,
    unitId: T.Optional(
      T.Integer({ minimum: 1, maximum: 247, description: 'the unit’s address on its line (default: id)' }),
    ),
    timeoutMs: T.Optional(
      T.Integer({
        minimum: 10,
        maximum: 30_000,
        default: 500,
        description: 'deadline of one request to this unit on the line',
      }),
    ),
  },
  { additionalProperties: false },
);

export const GatewayConfigSchema = T.Object(
  {
    gateway: Name,
    listen: T.Object(
      {
        host: T.Optional(T.String({ minLength: 1, default: '127.0.0.1' })),
        port: Port('Modbus TCP port for the controllers (0: any free one)'),
      },
      { additionalProperties: false },
    ),
    http: T.Object(
      {
        host: T.Optional(T.String({ minLength: 1, default: '127.0.0.1' })),
        port: Port('/healthz and /metrics (0: any free one)'),
      },
      { additionalProperties: false },
    ),
    stateFile: T.String({
      minLength: 1,
      description: 'where the highest epoch per unit is kept across restarts',
    }),
    fenceBase: T.Optional(
      T.Integer({
        minimum: 0,
        maximum: 0x10000 - GATEWAY_FENCE.writeOffset - GATEWAY_FENCE.headerLen - GATEWAY_FENCE.maxValues,
        default: GATEWAY_FENCE.defaultBase,
        description:
          'first holding register of the epoch block and write window, in every unit id; must be unused by the units',
      }),
    ),
    maxConnections: T.Optional(
      T.Integer({
        minimum: 1,
        maximum: 1_000,
        default: DEFAULT_MAX_CONNECTIONS,
        description: 'controller connections',
      }),
    ),
    maxConnectionsPerHost: T.Optional(
      T.Integer({
        minimum: 1,
        maximum: 1_000,
        description:
          'connections from one source address (default: three quarters of maxConnections, at least one per unit); a controller opens one per unit id',
      }),
    ),
    idleTimeoutMs: T.Optional(
      T.Integer({
        minimum: 1_000,
        maximum: 3_600_000,
        default: DEFAULT_IDLE_TIMEOUT_MS,
        description:
          'a connection that sends no request for this long is closed; keep it well above the controllers’ control.periodMs',
      }),
    ),
    idleDisplaceAfterMs: T.Optional(
      T.Integer({
        minimum: 100,
        maximum: 3_600_000,
        default: DEFAULT_IDLE_DISPLACE_AFTER_MS,
        description:
          'when every slot is taken, a connection with nothing in flight that has sent nothing for this long gives its slot to a newcomer; keep it above the controllers’ control.periodMs',
      }),
    ),
    lines: T.Array(LineSchema, { minItems: 1 }),
    units: T.Array(UnitSchema, { minItems: 1 }),
  },
  { additionalProperties: false },
);

export type GatewayConfigFile = Static<typeof GatewayConfigSchema>;
export type LineConfig = Static<typeof LineSchema>;
export type UnitConfig = Static<typeof UnitSchema>;

/** The config with defaults filled in and the path it came from. */
export interface GatewayConfig {
  file: string;
  name: string;
  listen: { host: string; port: number };
  http: { host: string; port: number };
  stateFile: string;
  fenceBase: number;
  maxConnections: number;
  /** Connections one source address may hold. */
  maxConnectionsPerHost: number;
  /** A connection without a request for this long is closed. */
  idleTimeoutMs: number;
  /** At a bound, a connection idle this long (nothing in flight, nothing received) gives way. */
  idleDisplaceAfterMs: number;
  lines: (LineConfig & { queueTimeoutMs: number; maxQueued: number })[];
  units: (UnitConfig & { name: string; unitId: number; timeoutMs: number })[];
}

const validate = ajv.compile<GatewayConfigFile>(GatewayConfigSchema);

/** The rules the schema cannot say: names that refer, ids that must be unique, one transport per line. */
function rules(c: GatewayConfigFile): { path: string; message: string; allowed: string }[] {
  const out: { path: string; message: string; allowed: string }[] = [];
  const lineNames = new Set<string>();
  c.lines.forEach((l, i) => {
    if (lineNames.has(l.name))
      out.push({
        path: `/lines/${i}/name`,
        message: `line ${l.name} is defined twice`,
        allowed: 'unique line names',
      });
    lineNames.add(l.name);
    if (!!l.serial === !!l.tcp) {
      out.push({
        path: `/lines/${i}`,
        message: `line ${l.name} needs exactly one of serial or tcp`,
        allowed: 'serial: {path…} or tcp: {host, port}',
      });
    }
  });
  const serialPaths = new Map<string, string>();
  for (const [i, l] of c.lines.entries()) {
    if (!l.serial) continue;
    const other = serialPaths.get(l.serial.path);
    if (other)
      out.push({
        path: `/lines/${i}/serial/path`,
        message: `${l.serial.path} is also line ${other}`,
        allowed: 'one line per serial device',
      });
    serialPaths.set(l.serial.path, l.name);
  }
  // Two lines to one TCP endpoint (a TCP→RTU converter) would be two queues to one bus: requests no
  // longer one at a time, and a unit address on both would keep two epochs, one per line. Only the
  // exact same host and port is seen; an IP and a name for one converter are not.
  const tcpEndpoints = new Map<string, string>();
  for (const [i, l] of c.lines.entries()) {
    if (!l.tcp) continue;
    const key = `${l.tcp.host.toLowerCase().replace(/\.$/, '')}:${l.tcp.port}`;
    const other = tcpEndpoints.get(key);
    if (other)
      out.push({
        path: `/lines/${i}/tcp`,
        message: `${l.tcp.host}:${l.tcp.port} is also line ${other}`,
        allowed: 'one line per TCP endpoint (put both lines’ units on one line)',
      });
    else tcpEndpoints.set(key, l.name);
  }
  const maxConnections = c.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (c.maxConnectionsPerHost !== undefined) {
    if (c.maxConnectionsPerHost > maxConnections)
      out.push({
        path: '/maxConnectionsPerHost',
        message: `${c.maxConnectionsPerHost} connections per host is more than maxConnections (${maxConnections})`,
        allowed: `≤ ${maxConnections}`,
      });
    if (c.maxConnectionsPerHost < c.units.length)
      out.push({
        path: '/maxConnectionsPerHost',
        message: `${c.maxConnectionsPerHost} connections per host is fewer than the ${c.units.length} units: a controller opens one connection per unit id, so one would be refused some of its units`,
        allowed: `≥ ${c.units.length}`,
      });
  }
  const ids = new Set<number>();
  const names = new Set<string>();
  const onLine = new Set<string>();
  c.units.forEach((u, i) => {
    if (ids.has(u.id))
      out.push({
        path: `/units/${i}/id`,
        message: `unit id ${u.id} is used twice`,
        allowed: 'one unit per id (1..247)',
      });
    ids.add(u.id);
    const name = u.name ?? String(u.id);
    // A defaulted name repeats only with its id, which is reported above.
    if (u.name !== undefined && names.has(name))
      out.push({
        path: `/units/${i}/name`,
        message: `unit name ${name} is used twice`,
        allowed: 'unique names',
      });
    names.add(name);
    if (!lineNames.has(u.line)) {
      out.push({
        path: `/units/${i}/line`,
        message: `line ${u.line} is not defined`,
        allowed: [...lineNames].join(', ') || 'a line from lines[]',
      });
    }
    const key = `${u.line}/${u.unitId ?? u.id}`;
    if (onLine.has(key)) {
      out.push({
        path: `/units/${i}/unitId`,
        message: `line ${u.line} already has a unit at address ${u.unitId ?? u.id}`,
        allowed: 'one unit per address per line',
      });
    }
    onLine.add(key);
    const line = c.lines.find((l) => l.name === u.line);
    if (line && (u.timeoutMs ?? 500) > (line.queueTimeoutMs ?? 1_000)) {
      out.push({
        path: `/units/${i}/timeoutMs`,
        message: `timeout ${u.timeoutMs} ms is longer than line ${u.line}'s queueTimeoutMs (${line.queueTimeoutMs ?? 1_000} ms): one slow answer would expire every request queued behind it`,
        allowed: `≤ ${line.queueTimeoutMs ?? 1_000}`,
      });
    }
  });
  return out;
}

/** Parses and checks gateway YAML; throws ConfigError listing every problem. */
export function parseGatewayConfig(text: string, file = '<inline>'): GatewayConfig {
  // A problem the schema finds points at this file's docs, not the site file's.
  const c = parseYamlConfig(text, file, validate, rules, { docs: 'docs/fencing-gateway.md' });
  const maxConnections = c.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  return {
    file,
    name: c.gateway,
    listen: { host: c.listen.host ?? '127.0.0.1', port: c.listen.port },
    http: { host: c.http.host ?? '127.0.0.1', port: c.http.port },
    stateFile: c.stateFile,
    fenceBase: c.fenceBase ?? GATEWAY_FENCE.defaultBase,
    maxConnections,
    maxConnectionsPerHost:
      c.maxConnectionsPerHost ?? defaultMaxConnectionsPerHost(maxConnections, c.units.length),
    idleTimeoutMs: c.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    idleDisplaceAfterMs: c.idleDisplaceAfterMs ?? DEFAULT_IDLE_DISPLACE_AFTER_MS,
    lines: c.lines.map((l) => ({
      ...l,
      queueTimeoutMs: l.queueTimeoutMs ?? 1_000,
      maxQueued: l.maxQueued ?? 64,
    })),
    units: c.units.map((u) => ({
      ...u,
      name: u.name ?? String(u.id),
      unitId: u.unitId ?? u.id,
      timeoutMs: u.timeoutMs ?? 500,
    })),
  };
}

export async function loadGatewayConfig(file: string): Promise<GatewayConfig> {
  // Sized before it is read and checked for UTF-8, like the controller's own config.
  const text = await readConfigFile(file, CONTROLLER_FILE_MAX_BYTES, 'gateway config file');
  return parseGatewayConfig(text, file);
}
