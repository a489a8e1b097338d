// Every Modbus unit of a simulated site, wired as the site file says: alone on its own TCP port;
// several on one TCP endpoint, which is a simulated TCP→RTU gateway in front of an RS-485 line;
// or on a serial line (pty) shared by every unit that names the same `endpoint.simPath`. Each unit
// serves coolctl's native map, or the device profile its `profile:` names (./profile-pdu.ts).
// Invariants: a site whose units cannot share a line or a gateway as written is refused at start
// with what to fix; stop() stops every server once.
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { AirHandler, ModbusAirHandler, ModbusRtuAirHandler } from '../../src/config/site-schema.ts';
import { DEFAULT_DEVICE_TIMEOUT_MS, maxApplyDelayMs, NATIVE_PROFILE } from '../../src/config/site-schema.ts';
import { resolvePointMap } from '../../src/devices/modbus/point-map.ts';
import { type CompiledProfile, compileProfile } from '../../src/devices/profile/codec.ts';
import { loadProfile } from '../../src/devices/profile/load.ts';
import type { Profile } from '../../src/devices/profile/schema.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { ModbusAhuPdu, newPduCounters, type PduCounters, type PduHandler } from './modbus-pdu.ts';
import { ModbusRtuLineServer } from './modbus-rtu-server.ts';
import { ModbusAhuServer } from './modbus-server.ts';
import type { ModbusTcpBounds } from './modbus-tcp-listener.ts';
import { ProfilePdu, type ProfileQuirks } from './profile-pdu.ts';
import { InProcessLink, RtuGateway } from './rtu-gateway.ts';
import { RtuLine } from './rtu-line.ts';
import type { SimAirHandler } from './unit.ts';

/** Where `profile: NAME` is looked up: config/profiles/NAME.yaml of this repository. */
export const DEFAULT_PROFILES_DIR = resolve(fileURLToPath(import.meta.url), '../../../config/profiles');

export interface ModbusDevicesOptions {
  /** Bind every TCP listener on an OS-chosen port (tests run in parallel). */
  ephemeralPorts: boolean;
  /** Every Modbus TCP listener's connection cap and timeouts (./modbus-tcp-listener.ts defaults). */
  modbusTcp?: ModbusTcpBounds;
  profilesDir?: string;
  profileQuirks?: Partial<ProfileQuirks>;
  logger: Logger;
}

interface Stoppable {
  stop(): Promise<void>;
  applyFaults?(): Promise<void>;
}

/** What `GET /sim/state` says of a shared line or a gateway. */
export interface SharedLineState {
  kind: 'rtu-line' | 'rtu-gateway';
  id: string;
  endpoint: string;
  units: { ahu: string; unitId: number }[];
  counters: Record<string, number>;
}

export class ModbusDevices {
  private readonly units: ReadonlyMap<string, SimAirHandler>;
  private readonly opts: ModbusDevicesOptions;
  private readonly log: Logger;
  private readonly servers: Stoppable[] = [];
  /** The server a unit's faults are synced through. */
  private readonly serverOf = new Map<string, Stoppable>();
  private readonly endpoints = new Map<string, string>();
  private readonly profileUnits = new Map<string, ProfilePdu>();
  private readonly profiles = new Map<string, { raw: Profile; compiled: CompiledProfile }>();
  private readonly shared: (() => SharedLineState)[] = [];

  constructor(units: ReadonlyMap<string, SimAirHandler>, opts: ModbusDevicesOptions) {
    this.units = units;
    this.opts = opts;
    this.log = opts.logger;
  }

  /** `modbus-tcp://host:port/unitId` or `modbus-rtu://simPath/unitId`, once started. */
  endpoint(ahuId: string): string | undefined {
    return this.endpoints.get(ahuId);
  }

  /** Units that run their own BMS watchdog (a profile's style) instead of the native heartbeat one. */
  profileUnit(ahuId: string): ProfilePdu | undefined {
    return this.profileUnits.get(ahuId);
  }

  sharedLines(): SharedLineState[] {
    return this.shared.map((f) => f());
  }

  async applyFaults(ahuId: string): Promise<void> {
    await this.serverOf.get(ahuId)?.applyFaults?.();
  }

  /** Starts every Modbus unit of `ahus`; on failure the caller stops what had started. */
  async start(ahus: readonly AirHandler[]): Promise<void> {
    const tcp = ahus.filter((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp');
    const rtu = ahus.filter((a): a is ModbusRtuAirHandler => a.protocol === 'modbus-rtu');
    const byEndpoint = new Map<string, ModbusAirHandler[]>();
    for (const a of tcp) {
      const key = a.endpoint.port === 0 ? `${a.id}` : `${a.endpoint.host}:${a.endpoint.port}`;
      byEndpoint.set(key, [...(byEndpoint.get(key) ?? []), a]);
    }
    for (const group of byEndpoint.values()) {
      if (group.length === 1) await this.startTcpUnit(group[0] as ModbusAirHandler);
      else await this.startGateway(group);
    }
    const byLine = new Map<string, ModbusRtuAirHandler[]>();
    for (const a of rtu) {
      const { simPath } = a.endpoint;
      if (!simPath) {
        throw new CoolctlError(
          ErrorCodes.STARTUP,
          `${a.id}: a Modbus RTU unit needs endpoint.simPath, the simulator's end of the serial line ` +
            '(e.g. the other side of a pty pair made with socat)',
        );
      }
      byLine.set(simPath, [...(byLine.get(simPath) ?? []), a]);
    }
    for (const [simPath, group] of byLine) await this.startLine(simPath, group);
  }

  async stop(): Promise<void> {
    const results = await Promise.allSettled(this.servers.map((s) => s.stop()));
    for (const r of results)
      if (r.status === 'rejected') this.log.warn({ err: r.reason }, 'error while stopping');
  }

  private async startTcpUnit(ahu: ModbusAirHandler): Promise<void> {
    const unit = this.unit(ahu.id);
    const profile = await this.profileFor(ahu);
    const server = new ModbusAhuServer(unit, {
      ...this.opts.modbusTcp,
      host: ahu.endpoint.host,
      port: this.opts.ephemeralPorts ? 0 : ahu.endpoint.port,
      unitId: ahu.endpoint.unitId,
      ...(ahu.pointMap ? { pointMap: ahu.pointMap } : {}),
      ...(profile ? { handler: (counters, log) => this.profilePdu(unit, profile, counters, log) } : {}),
      logger: this.log.child({ component: 'modbus' }),
    });
    this.servers.push(server);
    this.serverOf.set(ahu.id, server);
    const { host, port } = await server.start();
    this.endpoints.set(ahu.id, `modbus-tcp://${host}:${port}/${ahu.endpoint.unitId}`);
  }

  /** Units on one TCP endpoint: a simulated TCP→RTU gateway with those units on its line. */
  private async startGateway(group: ModbusAirHandler[]): Promise<void> {
    const first = group[0] as ModbusAirHandler;
    const id = `gw-${first.endpoint.host}:${first.endpoint.port}`;
    const log = this.log.child({ component: 'rtu-gateway' });
    const line = new RtuLine({ name: id, logger: log });
    for (const a of group) line.addUnit(a.endpoint.unitId, await this.pduFor(a, newPduCounters(), log));
    const gateway = new RtuGateway({
      ...this.opts.modbusTcp,
      id,
      host: first.endpoint.host,
      port: this.opts.ephemeralPorts ? 0 : first.endpoint.port,
      link: new InProcessLink(line),
      // The unit's apply bound is the gateway's queue and response timeout (site-schema:
      // client.maxApplyDelayMs), the response timeout at most half the controller's call deadline
      // so that its 0x0B arrives while the controller still waits.
      units: group.map((a) => ({
        unitId: a.endpoint.unitId,
        responseTimeoutMs: Math.max(
          50,
          Math.min(
            Math.floor((a.client?.timeoutMs ?? DEFAULT_DEVICE_TIMEOUT_MS) / 2),
            maxApplyDelayMs(a.client),
          ),
        ),
        queueTimeoutMs: maxApplyDelayMs(a.client),
      })),
      logger: log,
    });
    this.servers.push({
      stop: async () => {
        await gateway.stop();
        line.stop();
      },
    });
    const { host, port } = await gateway.start();
    for (const a of group) this.endpoints.set(a.id, `modbus-tcp://${host}:${port}/${a.endpoint.unitId}`);
    this.shared.push(() => ({
      kind: 'rtu-gateway',
      id,
      endpoint: `modbus-tcp://${host}:${port}`,
      units: group.map((a) => ({ ahu: a.id, unitId: a.endpoint.unitId })),
      counters: { ...gateway.counters, ...prefixed('line', line.counters) },
    }));
  }

  /** Units naming one `simPath`: one serial line, one listener, dispatch by slave address. */
  private async startLine(simPath: string, group: ModbusRtuAirHandler[]): Promise<void> {
    const first = group[0] as ModbusRtuAirHandler;
    const settings = (a: ModbusRtuAirHandler) => {
      const e = a.endpoint;
      return `${e.baudRate ?? 19_200} ${e.dataBits ?? 8}${(e.parity ?? 'even')[0]?.toUpperCase()}${e.stopBits ?? 1} path ${e.path}`;
    };
    const odd = group.find((a) => settings(a) !== settings(first));
    if (odd) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `RTU line ${simPath}: ${odd.id} has ${settings(odd)} but ${first.id} has ${settings(first)}; ` +
          'units on one line share its path and settings (airHandlers[].endpoint)',
      );
    }
    const log = this.log.child({ component: 'modbus-rtu' });
    const e = first.endpoint;
    const server = new ModbusRtuLineServer({
      path: simPath,
      ...(e.baudRate !== undefined ? { baudRate: e.baudRate } : {}),
      ...(e.parity !== undefined ? { parity: e.parity } : {}),
      ...(e.dataBits !== undefined ? { dataBits: e.dataBits } : {}),
      ...(e.stopBits !== undefined ? { stopBits: e.stopBits } : {}),
      logger: log,
    });
    for (const a of group) server.addUnit(a.endpoint.unitId, await this.pduFor(a, newPduCounters(), log));
    this.servers.push(server);
    for (const a of group) this.serverOf.set(a.id, server);
    await server.start();
    for (const a of group) this.endpoints.set(a.id, `modbus-rtu://${simPath}/${a.endpoint.unitId}`);
    if (group.length > 1) {
      this.shared.push(() => ({
        kind: 'rtu-line',
        id: simPath,
        endpoint: `modbus-rtu://${simPath}`,
        units: group.map((a) => ({ ahu: a.id, unitId: a.endpoint.unitId })),
        counters: { ...server.line.counters, ...server.portCounters },
      }));
    }
  }

  private async pduFor(
    ahu: ModbusAirHandler | ModbusRtuAirHandler,
    counters: PduCounters,
    log: Logger,
  ): Promise<PduHandler> {
    const unit = this.unit(ahu.id);
    const profile = await this.profileFor(ahu);
    if (profile) return this.profilePdu(unit, profile, counters, log);
    try {
      return new ModbusAhuPdu(unit, resolvePointMap(ahu.pointMap), counters, log);
    } catch (err) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `${ahu.id}: ${(err as Error).message} (fix airHandlers[].pointMap)`,
        {
          cause: err,
        },
      );
    }
  }

  private profilePdu(
    unit: SimAirHandler,
    profile: { raw: Profile; compiled: CompiledProfile },
    counters: PduCounters,
    log: Logger,
  ): ProfilePdu {
    const pdu = new ProfilePdu(unit, profile.compiled, profile.raw, counters, {
      log,
      ...(this.opts.profileQuirks ? { quirks: this.opts.profileQuirks } : {}),
    });
    this.profileUnits.set(unit.id, pdu);
    return pdu;
  }

  /** The unit's profile, loaded and compiled once per name; undefined for the native map. */
  private async profileFor(
    ahu: AirHandler,
  ): Promise<{ raw: Profile; compiled: CompiledProfile } | undefined> {
    const name = ahu.profile ?? NATIVE_PROFILE;
    if (name === NATIVE_PROFILE) return undefined;
    const cached = this.profiles.get(name);
    if (cached) return cached;
    const file = join(this.opts.profilesDir ?? DEFAULT_PROFILES_DIR, `${name}.yaml`);
    try {
      const raw = await loadProfile(file);
      if (!raw.modbus) throw new Error(`profile ${name} has no modbus section`);
      const entry = { raw, compiled: compileProfile(raw) };
      this.profiles.set(name, entry);
      return entry;
    } catch (err) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `${ahu.id}: profile ${name} (${file}) cannot be served: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  private unit(id: string): SimAirHandler {
    const u = this.units.get(id);
    if (!u) throw new Error(`unreachable: no simulated unit ${id}`);
    return u;
  }
}

function prefixed(prefix: string, o: object): Record<string, number> {
  return Object.fromEntries(
    Object.entries(o).map(([k, v]) => [`${prefix}${k[0]?.toUpperCase()}${k.slice(1)}`, v]),
  );
}
