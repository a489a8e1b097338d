// An OPC-UA unit with a vendor profile (the profile's `opcua` section): which nodes carry its
// points — node ids, or browse paths translated once per session — how their values decode
// (scaling in the shared codec), and how a command becomes a method call and variable writes.
// OpcuaDevice keeps the session, deadlines and link state; coolctl-native units keep the native
// node map (./node-map.ts) and never come here. No-data (a Bad value, null, NaN) is absent, never 0.
import {
  AttributeIds,
  type ClientSession,
  DataType,
  makeBrowsePath,
  type NodeIdLike,
  resolveNodeId,
  Variant,
} from 'node-opcua-client';
import { DeviceError, ErrorCodes } from '../../errors.ts';
import type { AhuCommandSet, AhuReadings } from '../device-io.ts';
import { profileReadings } from '../modbus/profile-device.ts';
import type { CompiledProfile } from '../profile/codec.ts';
import { type CompiledOpcua, type OpcuaMethodCall, opcuaIntegerIn } from '../profile/opcua-codec.ts';
import type { ProfileCommand } from '../profile/values.ts';
import { nodeIdFor } from './node-map.ts';
import { supportedFields } from './profile-command.ts';

/** A profile point as this session addresses it. */
export interface ResolvedNode {
  name: string;
  nodeId: NodeIdLike;
  /** The browse path it was found by (`{unit}` replaced), for a point given by one. */
  browsePath?: string | undefined;
  write: boolean;
  /** Writable variables: their DataType, read once per session (a write must carry it). */
  dataType: DataType | undefined;
}

/** One node read once for commissioning (`coolctl profile read`): where it is and what it said. */
export interface RawNodeRead {
  name: string;
  nodeId: string;
  browsePath: string | undefined;
  /** The status name: Good, or why there is no value (BadWaitingForInitialData …). */
  status: string;
  /** The value as the server sent it (the unit's units), or null without one. */
  value: unknown;
  /** Its OPC-UA data type name (Int16, Double …), when there is a value. */
  dataType: string | undefined;
}

/** Every node read once, in one Read request, with its status and type: nothing decoded, nothing written. */
export async function readRawNodes(
  session: ClientSession,
  nodes: readonly ResolvedNode[],
): Promise<RawNodeRead[]> {
  const dvs = await session.read(nodes.map((n) => ({ nodeId: n.nodeId, attributeId: AttributeIds.Value })));
  return nodes.map((n, i) => {
    const dv = dvs[i];
    const good = dv?.statusCode.isGood() ?? false;
    const value = good ? (dv?.value.value ?? null) : null;
    return {
      name: n.name,
      nodeId: resolveNodeId(n.nodeId).toString(),
      browsePath: n.browsePath,
      status: dv?.statusCode.name ?? 'BadNoAnswer',
      value,
      dataType: value === null ? undefined : DataType[dv?.value.dataType ?? DataType.Null],
    };
  });
}

const INTEGER_TYPES: ReadonlySet<DataType> = new Set([
  DataType.SByte,
  DataType.Byte,
  DataType.Int16,
  DataType.UInt16,
  DataType.Int32,
  DataType.UInt32,
  DataType.Int64,
  DataType.UInt64,
]);

export class OpcuaProfileNodes {
  readonly profile: CompiledProfile;
  private readonly opcua: CompiledOpcua;
  private readonly prefix: string;
  /** Command fields the profile has a writable node or a method argument for. */
  private readonly fields: ReadonlySet<keyof ProfileCommand>;
  private readonly alarmOrder: string[];

  constructor(profile: CompiledProfile, unitPrefix: string) {
    if (!profile.opcua) throw new RangeError(`profile ${profile.name} has no opcua section`);
    this.profile = profile;
    this.opcua = profile.opcua;
    this.prefix = unitPrefix;
    this.fields = supportedFields(profile.opcua, unitPrefix);
    const alarms = new Set<string>();
    const names = profile.opcua.nodes(unitPrefix).map((n) => n.name);
    // A flag point is on at true (or false, inverted); an alarm word at every bit set.
    for (const v of [true, false, Number.MAX_SAFE_INTEGER]) {
      for (const a of profile.opcua.decode(Object.fromEntries(names.map((n) => [n, v]))).alarms)
        alarms.add(a);
    }
    this.alarmOrder = [...alarms].sort();
  }

  get namespaceUri(): string | undefined {
    return this.opcua.namespaceUri;
  }

  /** The nodes of this unit on this session: node ids as given (or in `nsIndex`), browse paths translated. */
  async resolve(session: ClientSession, nsIndex: number): Promise<ResolvedNode[]> {
    const points = this.opcua.nodes(this.prefix);
    const out: ResolvedNode[] = [];
    const paths = points.filter((p) => !p.nodeId && p.browsePath);
    const translated =
      paths.length > 0
        ? await session.translateBrowsePath(paths.map((p) => makeBrowsePath('RootFolder', p.browsePath!)))
        : [];
    for (const p of points) {
      let nodeId: NodeIdLike;
      if (p.nodeId) {
        nodeId = p.nodeId.startsWith('ns=') ? resolveNodeId(p.nodeId) : nodeIdFor(nsIndex, p.nodeId);
      } else {
        const r = translated[paths.indexOf(p)];
        const target = r?.statusCode.isGood() ? r.targets?.[0]?.targetId : undefined;
        if (!target) {
          throw new DeviceError(
            ErrorCodes.DEVICE_BAD_STATUS,
            '',
            `profile ${this.profile.name}: browse path ${p.browsePath} of ${p.name} is not on the server (${r?.statusCode.name ?? 'no answer'})`,
            { deviceCode: r?.statusCode.name ?? 'BadNoMatch' },
          );
        }
        nodeId = resolveNodeId(target.toString());
      }
      out.push({
        name: p.name,
        nodeId,
        browsePath: p.nodeId ? undefined : p.browsePath,
        write: p.write,
        dataType: undefined,
      });
    }
    const writable = out.filter((n) => n.write);
    if (writable.length > 0) {
      const dvs = await session.read(
        writable.map((n) => ({ nodeId: n.nodeId, attributeId: AttributeIds.DataType })),
      );
      writable.forEach((n, i) => {
        const id = dvs[i]?.value.value as { namespace?: number; value?: unknown } | undefined;
        // Built-in types are ns=0;i=<DataType>; anything else is written as a Double.
        n.dataType =
          id?.namespace === 0 && typeof id.value === 'number' ? (id.value as DataType) : DataType.Double;
      });
    }
    return out;
  }

  /** Values read (Good only; anything else is absent) → readings. */
  readings(values: Record<string, unknown>, heartbeat: number): AhuReadings {
    return profileReadings(
      this.opcua.decode(values),
      this.alarmOrder,
      this.profile.watchdog.style,
      heartbeat,
    );
  }

  /**
   * The method call and variable writes of `cmd`, with what the profile has: fan speed, setpoint,
   * epoch, heartbeat (unless the unit has no watchdog), remote enable, run (always on: handing a
   * unit back never stops it) and the watchdog timer.
   */
  encode(
    cmd: AhuCommandSet,
    heartbeat: number,
    nodes: readonly ResolvedNode[],
  ): { call: OpcuaMethodCall | undefined; writes: { nodeId: NodeIdLike; value: Variant; point: string }[] } {
    const wd = this.profile.watchdog;
    const pc: ProfileCommand = {};
    const want: ProfileCommand = {
      epoch: cmd.epoch,
      heartbeat: wd.style === 'none' ? undefined : heartbeat,
      remoteEnable: cmd.remoteEnable,
      run: true,
      fanPct: cmd.fanPct,
      supplySetpointC: cmd.supplySetpointC,
      watchdogTimerS: wd.timeoutS,
    };
    for (const [k, v] of Object.entries(want) as [keyof ProfileCommand, never][]) {
      if (v !== undefined && this.fields.has(k)) pc[k] = v;
    }
    const { call, writes } = this.opcua.encodeCommand(pc, this.prefix);
    const byName = new Map(nodes.map((n) => [n.name, n]));
    return {
      call,
      writes: writes.map((w) => {
        const n = byName.get(w.point);
        const dataType = n?.dataType ?? DataType.Double;
        // The variable's own type, as the server reported it, bounds what it can take.
        const value =
          typeof w.value === 'boolean'
            ? w.value
            : INTEGER_TYPES.has(dataType)
              ? opcuaIntegerIn(this.profile.name, w.point, DataType[dataType], w.value, Math.round(w.value))
              : w.value;
        return {
          nodeId: n?.nodeId ?? w.nodeId,
          point: w.point,
          value: new Variant({ dataType: typeof value === 'boolean' ? DataType.Boolean : dataType, value }),
        };
      }),
    };
  }
}
