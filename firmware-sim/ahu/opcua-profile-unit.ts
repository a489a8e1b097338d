// A simulated OPC-UA unit serving a vendor device profile (a profile's `opcua:` section) instead of
// coolctl's native node map: the profile's own node ids and browse paths in its own namespace,
// variables typed and scaled as the profile says (through the shared codec, so the controller and
// the simulator cannot disagree), its mode codes and alarm words, its writable variables and its
// command method — all backed by the same SimAirHandler the thermal model drives. It bites as
// real units do: Bad (BadWaitingForInitialData) while its data is not ready and while its sensors
// are not yet valid, never a plausible 0; and its own BMS watchdog in the profile's style.
// Invariants: every write or call that reaches a writable point is journaled once (coolctl's point
// names, epoch 0: the unit holds none); a getter, setter or method never throws into node-opcua.
import { join } from 'node:path';
import {
  type AddressSpace,
  type CallMethodResultOptions,
  DataType,
  DataValue,
  type ISessionContext,
  type Namespace,
  type StatusCode,
  StatusCodes,
  type UAObject,
  type UAVariable,
  Variant,
} from 'node-opcua';
import type { Logger } from 'pino';
import type { AirHandler, OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { resolveNodeMap } from '../../src/devices/opcua/node-map.ts';
import { type CompiledProfile, compileProfile } from '../../src/devices/profile/codec.ts';
import { loadProfile } from '../../src/devices/profile/load.ts';
import type { CompiledOpcua } from '../../src/devices/profile/opcua-codec.ts';
import { isPointName, POINTS } from '../../src/devices/profile/points.ts';
import type { OpcuaPoint, Profile } from '../../src/devices/profile/schema.ts';
import type { ProfileCommand } from '../../src/devices/profile/values.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { clientIdentity, faultStatus } from './opcua-status.ts';
import { ProfileBms, type ProfileQuirks } from './profile-bms.ts';
import { profilePointOf, type RejectReason, type SimAirHandler } from './unit.ts';

/** What the server lends a unit: its fault delays, whether it is stopping, a call's deadline, counters. */
export interface OpcuaUnitHost {
  wait(ms: number): Promise<void>;
  stopping(): boolean;
  /** When a method call must be done by (`performance.now()` ms), found by its first argument. */
  callExpiresAtMs(firstArg: object | undefined): number;
  counters: {
    reads: number;
    calls: number;
    getterErrors: number;
    methodErrors: number;
    expiredCalls: number;
  };
  log: Logger;
}

export interface OpcuaProfileUnitOptions {
  quirks?: Partial<ProfileQuirks>;
  /** Wall clock for the watchdog and the start-up windows (tests may pass their own). */
  wallNowMs?: () => number;
}

/** A profile and its compiled form, as the simulator loads it once per name. */
export interface LoadedProfile {
  raw: Profile;
  compiled: CompiledProfile;
}

/**
 * The profile of an OPC-UA unit, or undefined for the native node map. A profile without an
 * `opcua:` section cannot be served over OPC-UA: a start-up error naming the unit (the site
 * loader refuses such a site first, with its line).
 */
export async function loadOpcuaProfile(
  ahu: AirHandler,
  profilesDir: string,
  cache: Map<string, Promise<LoadedProfile>>,
): Promise<LoadedProfile | undefined> {
  const name = ahu.profile ?? 'coolctl-native';
  if (name === 'coolctl-native') return undefined;
  const file = join(profilesDir, `${name}.yaml`);
  let p = cache.get(file);
  if (!p) {
    p = loadProfile(file).then((raw) => ({ raw, compiled: compileProfile(raw) }));
    cache.set(file, p);
  }
  let loaded: LoadedProfile;
  try {
    loaded = await p;
  } catch (err) {
    throw new CoolctlError(
      ErrorCodes.STARTUP,
      `${ahu.id}: profile ${name} (${file}) cannot be served: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (!loaded.raw.opcua) {
    throw new CoolctlError(
      ErrorCodes.STARTUP,
      `${ahu.id}: profile ${name} has no opcua section and cannot be served over OPC-UA (use a Modbus endpoint, or a profile with protocol opcua)`,
    );
  }
  return loaded;
}

/** Variable types when the profile gives none, by what the point carries. */
function defaultType(name: string, p: OpcuaPoint): keyof typeof DataType {
  if (p.type) return p.type;
  if (p.alarmBits) return 'UInt32';
  if (p.alarm) return 'Boolean';
  if (!isPointName(name)) return 'Double';
  switch (POINTS[name].kind) {
    case 'boolean':
      return 'Boolean';
    case 'mode':
      return 'Int32';
    case 'counter':
      return name === 'epoch' || name === 'epochFeedback' ? 'Double' : 'UInt32';
    default:
      return 'Double';
  }
}

/** Sensor points: what reads Bad until the unit's sensors are valid after power-up. */
function isSensor(name: string): boolean {
  if (!isPointName(name) || POINTS[name].command) return false;
  const kind = POINTS[name].kind;
  return kind === 'temperatureC' || kind === 'percent' || kind === 'kilowatt';
}

const BOOLEAN_ARGS = new Set(['remoteEnable', 'run']);

export class OpcuaProfileUnit {
  readonly unit: SimAirHandler;
  readonly profile: CompiledProfile;
  readonly namespaceUri: string;
  private readonly opcua: CompiledOpcua;
  private readonly raw: Profile;
  private readonly prefix: string;
  private host: OpcuaUnitHost | undefined;
  /** The unit's BMS side: command points as written, its own watchdog, start-up windows. */
  readonly bms: ProfileBms;
  /** Who wrote a value: node-opcua hands a setter the DataValue only, so the session is noted on the way in. */
  private readonly writers = new WeakMap<object, ISessionContext>();

  constructor(unit: SimAirHandler, loaded: LoadedProfile, opts: OpcuaProfileUnitOptions = {}) {
    if (!loaded.compiled.opcua || !loaded.raw.opcua)
      throw new RangeError(`profile ${loaded.compiled.name} has no opcua section`);
    this.unit = unit;
    this.profile = loaded.compiled;
    this.opcua = loaded.compiled.opcua;
    this.raw = loaded.raw;
    const map = resolveNodeMap(unit.config as OpcuaAirHandler);
    this.prefix = map.prefix;
    // The controller looks for the profile's namespace, else the unit's own (OpcuaDevice does the same).
    this.namespaceUri = this.opcua.namespaceUri ?? map.namespaceUri;
    this.bms = new ProfileBms(unit, loaded.compiled, {
      ...(opts.quirks ? { quirks: opts.quirks } : {}),
      ...(opts.wallNowMs ? { wallNowMs: opts.wallNowMs } : {}),
      alarmNames: Object.values(loaded.raw.opcua.points).flatMap((p) => [
        ...(p.alarm !== undefined ? [p.alarm] : []),
        ...Object.values(p.alarmBits ?? {}),
      ]),
      hasCommand: (name) => this.hasCommand(name),
    });
  }

  /** Node ids this unit adds to its namespace (without `ns=`), for the server's clash check. */
  nodeIds(): string[] {
    const ids = [`s=${this.prefix}`];
    for (const n of this.opcua.nodes(this.prefix)) {
      ids.push(
        n.nodeId ??
          `s=${browseSegments(n.browsePath ?? '')
            .map((s) => s.name)
            .join('.')}`,
      );
    }
    const wc = this.raw.opcua?.writeCommand;
    if (wc) ids.push(sub(wc.method, this.prefix));
    return ids;
  }

  /** Adds the unit's objects, variables and method to `ns`; throws a start-up error for a map it cannot serve. */
  build(addressSpace: AddressSpace, ns: Namespace, host: OpcuaUnitHost): void {
    this.host = host;
    const fail = (why: string): never => {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `${this.unit.id}: profile ${this.profile.name} cannot be served: ${why}`,
      );
    };
    const objects = addressSpace.rootFolder.objects;
    /** Objects made so far, by parent node id and browse name, and by their own node id. */
    const children = new Map<string, UAObject>();
    const byId = new Map<string, UAObject>();
    const object = (parent: UAObject, browseName: string, nodeId: string, description?: string): UAObject => {
      const key = `${parent.nodeId.toString()}|${browseName}`;
      const found = children.get(key);
      if (found) return found;
      const o = ns.addObject({
        ...(parent === objects ? { organizedBy: parent } : { componentOf: parent }),
        browseName,
        nodeId,
        ...(description ? { description } : {}),
      });
      children.set(key, o);
      byId.set(nodeId, o);
      return o;
    };
    const root = object(
      objects,
      this.prefix,
      `s=${this.prefix}`,
      `air handler ${this.unit.id} (profile ${this.profile.name})`,
    );
    /** The object a string id belongs under: the longest made object whose id is a dotted prefix of it. */
    const parentOf = (id: string): UAObject => {
      let best = root;
      let bestLen = 0;
      for (const [oid, o] of byId) {
        if (id.startsWith(`${oid}.`) && oid.length > bestLen) {
          best = o;
          bestLen = oid.length;
        }
      }
      return best;
    };
    const checkId = (id: string, what: string): void => {
      if (id.startsWith('ns=')) {
        fail(
          `${what} node id ${id} names a namespace index; give it without ns= (the namespace is the profile's namespaceUri)`,
        );
      }
    };
    const wc = this.raw.opcua?.writeCommand;
    if (wc) {
      const objectId = sub(wc.object, this.prefix);
      checkId(objectId, 'writeCommand object');
      const owner = byId.get(objectId) ?? object(parentOf(objectId), lastName(objectId), objectId);
      const methodId = sub(wc.method, this.prefix);
      checkId(methodId, 'writeCommand method');
      const points = this.raw.opcua?.points ?? {};
      const method = ns.addMethod(owner, {
        browseName: lastName(methodId),
        nodeId: methodId,
        description: `the unit's BMS command: ${wc.arguments.join(', ')}`,
        inputArguments: wc.arguments.map((a) => ({
          name: a,
          description: { text: POINTS[a as keyof typeof POINTS]?.meaning ?? a },
          // What a controller sends: booleans as Boolean, every number as a Double (scaled as the point says).
          dataType: BOOLEAN_ARGS.has(a) && !points[a]?.type ? DataType.Boolean : DataType.Double,
        })),
        outputArguments: [],
      });
      method.bindMethod(async (args: Variant[], context: ISessionContext) =>
        this.call(wc.arguments, args, context),
      );
    }
    for (const [name, p] of Object.entries(this.raw.opcua?.points ?? {})) {
      const node = this.opcua.nodes(this.prefix).find((n) => n.name === name);
      if (!node) continue; // a sinceFirmware point this unit's firmware lacks
      let parent: UAObject;
      let browseName: string;
      let nodeId: string;
      if (node.nodeId) {
        checkId(node.nodeId, name);
        nodeId = node.nodeId;
        parent = parentOf(nodeId);
        browseName = lastName(nodeId);
      } else {
        const segs = browseSegments(node.browsePath ?? '');
        if (segs.length < 2 || node.browsePath?.split('/').filter(Boolean)[0] !== 'Objects') {
          fail(`${name}: browse path ${node.browsePath} must start at /Objects and name the variable`);
        }
        for (const s of segs) {
          if (s.ns !== ns.index) {
            fail(
              `${name}: browse path ${node.browsePath} names namespace ${s.ns}, but ${this.namespaceUri} is ${ns.index} on this server`,
            );
          }
        }
        parent = objects;
        const names: string[] = [];
        for (const s of segs.slice(0, -1)) {
          names.push(s.name);
          parent = object(parent, s.name, `s=${names.join('.')}`);
        }
        browseName = segs[segs.length - 1]?.name ?? name;
        nodeId = `s=${[...names, browseName].join('.')}`;
      }
      this.addVariable(ns, parent, name, p, browseName, nodeId);
    }
  }

  private addVariable(
    ns: Namespace,
    parent: UAObject,
    name: string,
    p: OpcuaPoint,
    browseName: string,
    nodeId: string,
  ): void {
    const type = defaultType(name, p);
    const dataType = DataType[type];
    const writable = p.write === true;
    const variable: UAVariable = ns.addVariable({
      componentOf: parent,
      browseName,
      nodeId,
      dataType: type,
      description: p.description ?? (isPointName(name) ? POINTS[name].meaning : `alarm point ${name}`),
      accessLevel: writable ? 'CurrentRead | CurrentWrite' : 'CurrentRead',
      userAccessLevel: writable ? 'CurrentRead | CurrentWrite' : 'CurrentRead',
      minimumSamplingInterval: 100,
      value: {
        // A callback getter (one parameter): reads and subscriptions go through it, so a slow
        // fault delays the answer without blocking the event loop.
        timestamped_get: (callback: (err: Error | null, dv?: DataValue) => void) =>
          this.refresh(name, dataType, callback),
        ...(writable ? { timestamped_set: (dv: DataValue): Promise<StatusCode> => this.set(name, dv) } : {}),
      },
    });
    if (writable) {
      const writeAttribute = variable.writeAttribute.bind(variable);
      variable.writeAttribute = ((context, wv, callback) => {
        const dv = (wv as { value?: unknown }).value;
        if (dv && typeof dv === 'object' && context) this.writers.set(dv, context);
        return writeAttribute(context, wv, callback as never);
      }) as typeof variable.writeAttribute;
    }
  }

  /** The unit's own BMS watchdog period now, seconds; undefined: it has none. */
  watchdogPeriodS(): number | undefined {
    return this.bms.watchdogPeriodS();
  }

  /** The unit's BMS watchdog (./profile-bms.ts); the simulation calls it every tick. */
  checkWatchdog(): void {
    this.bms.checkWatchdog(this.host?.log);
  }

  private refresh(name: string, dataType: DataType, callback: (err: Error | null, dv?: DataValue) => void) {
    const host = this.host;
    if (host) host.counters.reads++;
    const answer = () => {
      let dv: DataValue;
      try {
        dv = this.readPoint(name, dataType);
      } catch (err) {
        if (host) host.counters.getterErrors++;
        host?.log.error({ err, ahu: this.unit.id, point: name }, 'opcua profile getter failed');
        dv = new DataValue({ statusCode: StatusCodes.BadInternalError, sourceTimestamp: new Date() });
      }
      callback(null, dv);
    };
    const slowMs = this.unit.faults.slowMs;
    if (slowMs > 0 && host) void host.wait(slowMs).then(answer);
    else answer();
  }

  private readPoint(name: string, dataType: DataType): DataValue {
    const sourceTimestamp = new Date();
    const fault = faultStatus(this.unit);
    if (fault && !(this.unit.faults.faultWritesOnly && fault.reason === 'fault-bad-status'))
      return new DataValue({ statusCode: fault.status, sourceTimestamp });
    if ([...this.unit.faults.brokenSensors.keys()].some((p) => profilePointOf(p) === name))
      return new DataValue({ statusCode: StatusCodes.BadSensorFailure, sourceTimestamp });
    const unready = this.bms.notReady() || (!this.bms.sensorsValid() && isSensor(name));
    const raw = unready ? undefined : this.opcua.encodeValues(this.bms.image())[name];
    if (raw === undefined)
      return new DataValue({ statusCode: StatusCodes.BadWaitingForInitialData, sourceTimestamp });
    const value = dataType === DataType.Boolean ? raw !== 0 : raw;
    return new DataValue({
      value: new Variant({ dataType, value }),
      statusCode: StatusCodes.Good,
      sourceTimestamp,
    });
  }

  /** A write of one variable: decoded by the profile, applied to the unit, journaled once. */
  private async set(name: string, dv: DataValue): Promise<StatusCode> {
    const context = this.writers.get(dv);
    const client = clientIdentity(context);
    try {
      const slowMs = this.unit.faults.slowMs;
      if (slowMs > 0 && this.host) await this.host.wait(slowMs);
      const v = dv.value.value as unknown;
      const raw = typeof v === 'boolean' ? Number(v) : typeof v === 'number' ? v : Number.NaN;
      return this.apply(client, { [name]: raw }, undefined);
    } catch (err) {
      if (this.host) this.host.counters.methodErrors++;
      this.host?.log.error({ err, ahu: this.unit.id, point: name }, 'opcua profile setter failed');
      return StatusCodes.BadInternalError;
    }
  }

  /** The profile's command method: its arguments in the profile's order. */
  private async call(
    names: readonly string[],
    args: Variant[],
    context: ISessionContext,
  ): Promise<CallMethodResultOptions> {
    const host = this.host;
    if (host) host.counters.calls++;
    try {
      const expiresAtMs = host?.callExpiresAtMs(args[0]) ?? Number.POSITIVE_INFINITY;
      const leftMs = expiresAtMs - performance.now();
      const cutShort = this.unit.faults.slowMs >= leftMs;
      const slowMs = Math.min(this.unit.faults.slowMs, Math.max(0, leftMs));
      if (slowMs > 0 && host) await host.wait(slowMs);
      const raws: Record<string, number> = {};
      names.forEach((n, i) => {
        const v = args[i]?.value as unknown;
        raws[n] = typeof v === 'boolean' ? Number(v) : typeof v === 'number' ? v : Number.NaN;
      });
      const client = clientIdentity(context);
      if (cutShort || performance.now() >= expiresAtMs) {
        if (host) host.counters.expiredCalls++;
        this.apply(client, raws, 'expired');
        return { statusCode: StatusCodes.BadTimeout };
      }
      return { statusCode: this.apply(client, raws, undefined) };
    } catch (err) {
      if (host) host.counters.methodErrors++;
      host?.log.error({ err, ahu: this.unit.id }, 'opcua profile method failed');
      return { statusCode: StatusCodes.BadInternalError };
    }
  }

  /**
   * Raw values of command points (the unit's units) → the unit: the same rules as a Modbus
   * profile unit (./profile-pdu.ts): a unit whose own watchdog expired ignores commands until it
   * is refreshed, and says nothing of it on the wire.
   */
  private apply(client: string, raws: Record<string, number>, reject: RejectReason | undefined): StatusCode {
    const decoded = this.opcua.decode(raws) as unknown as Record<string, unknown>;
    const points = this.raw.opcua?.points ?? {};
    const cmd: ProfileCommand = {};
    for (const [k, raw] of Object.entries(raws)) {
      // A method argument without a point of its own is sent unscaled (the codec's encodeCommand).
      const v =
        k in points
          ? decoded[k]
          : BOOLEAN_ARGS.has(k)
            ? raw === 0 || raw === 1
              ? raw === 1
              : undefined
            : raw;
      if (typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)))
        (cmd as Record<string, unknown>)[k] = v;
    }
    const values: Record<string, number | boolean> = { ...cmd };
    const bad = Object.keys(raws).filter((k) => !(k in cmd));
    if (reject || bad.length > 0) {
      this.unit.applyBms(client, {}, values, reject ?? 'out-of-range');
      return reject === 'expired' ? StatusCodes.BadTimeout : StatusCodes.BadOutOfRange;
    }
    const fault = this.host?.stopping()
      ? { reason: 'offline' as const, status: StatusCodes.BadServerHalted }
      : faultStatus(this.unit);
    if (fault) {
      this.unit.applyBms(client, {}, values, fault.reason);
      return fault.status;
    }
    if (this.bms.notReady()) {
      this.unit.applyBms(client, {}, values, 'not-ready');
      return StatusCodes.BadWaitingForInitialData;
    }
    switch (this.bms.apply(client, cmd, values)) {
      case 'out-of-range':
        return StatusCodes.BadOutOfRange;
      case 'failed':
        return StatusCodes.BadDeviceFailure;
      default:
        // 'ignored' too: the unit ignores BMS commands until its watchdog is refreshed, silently.
        return StatusCodes.Good;
    }
  }

  private hasCommand(name: string): boolean {
    const o = this.raw.opcua;
    return o?.points[name]?.write === true || (o?.writeCommand?.arguments ?? []).includes(name);
  }
}

function sub(id: string, unit: string): string {
  return id.replaceAll('{unit}', unit);
}

/** The last dotted part of a string node id (`s=AHU-1.Bms.Apply` → `Apply`): its browse name. */
function lastName(id: string): string {
  const body = id.replace(/^[isgb]=/, '');
  return body.slice(body.lastIndexOf('.') + 1) || body;
}

/** `/Objects/2:AHU-1/2:SupplyTemp` → the segments after Objects with their namespace index. */
function browseSegments(path: string): { ns: number; name: string }[] {
  return path
    .split('/')
    .filter(Boolean)
    .slice(1)
    .map((seg) => {
      const m = /^(\d+):(.+)$/.exec(seg);
      return m ? { ns: Number(m[1]), name: m[2] as string } : { ns: 0, name: seg };
    });
}
