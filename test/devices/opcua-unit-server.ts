// A node-opcua server in the test process (127.0.0.1 only) holding native-map air handlers whose
// variables answer what the test puts in `values` (with the status in `status`, on a clock
// `clockOffsetMs` off), and whose WriteCommand applies, ignores or refuses as `writeCommand` says.
// For tests that bend the unit's answers or the server itself: freeze its publishing, or secure it.
import { join } from 'node:path';
import {
  DataType,
  DataValue,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAServer,
  RegisterServerMethod,
  SecurityPolicy,
  type StatusCode,
  StatusCodes,
  Variant,
} from 'node-opcua';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import {
  DEFAULT_NAMESPACE_URI,
  OPCUA_POINTS,
  type OpcuaPointName,
} from '../../src/devices/opcua/node-map.ts';
import { freePort } from '../../src/util/async.ts';
import { TEST_AHU_PLANT } from '../support/air-handler.ts';

export const INITIAL: Record<OpcuaPointName, [DataType, number]> = {
  mode: [DataType.Int32, 0],
  fanPct: [DataType.Double, 55],
  fanCmdPct: [DataType.Double, 55],
  supplySetpointC: [DataType.Double, 18],
  supplyC: [DataType.Double, 18.2],
  returnC: [DataType.Double, 29.5],
  cwValvePct: [DataType.Double, 40],
  alarms: [DataType.UInt32, 0],
  epoch: [DataType.Double, 0],
  heartbeat: [DataType.UInt32, 0],
  watchdogS: [DataType.Double, 30],
  localSetpointC: [DataType.Double, 18],
  fanKw: [DataType.Double, 3.1],
  coolingKw: [DataType.Double, 60],
};

/** What one unit answers: its points' values and statuses, its clock, its WriteCommand. */
export interface UnitState {
  values: Map<OpcuaPointName, number>;
  /** A point's status (Good unless set). */
  status: Map<OpcuaPointName, StatusCode>;
  clockOffsetMs: number;
  /** 'apply': a normal unit; 'ignore': answers Good and changes nothing; a status: refuses with it. */
  writeCommand: 'apply' | 'ignore' | StatusCode;
  /** WriteCommand calls so far. */
  calls: number;
}

export interface UnitServer {
  server: OPCUAServer;
  endpointUrl: string;
  /** Per unit id, what each point holds now. */
  values: Map<string, Map<OpcuaPointName, number>>;
  /** Per unit id, everything it answers; `reset` puts a unit back as it started. */
  units: Map<string, UnitState>;
  reset(id: string): void;
  ahu(id: string, endpoint?: Partial<OpcuaAirHandler['endpoint']>): OpcuaAirHandler;
}

export async function startUnitServer(
  root: string,
  unitIds: readonly string[],
  opts: { secure?: boolean } = {},
): Promise<UnitServer> {
  const port = await freePort('127.0.0.1');
  const server = new OPCUAServer({
    port,
    host: '127.0.0.1',
    hostname: '127.0.0.1',
    resourcePath: '/units',
    serverCertificateManager: new OPCUACertificateManager({
      rootFolder: join(root, 'server-pki'),
      automaticallyAcceptUnknownCertificate: true,
    }),
    securityPolicies: opts.secure ? [SecurityPolicy.Basic256Sha256] : [SecurityPolicy.None],
    securityModes: opts.secure
      ? [MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt]
      : [MessageSecurityMode.None],
    allowAnonymous: true,
    registerServerMethod: RegisterServerMethod.HIDDEN,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const ns = addressSpace.registerNamespace(DEFAULT_NAMESPACE_URI);
  const units = new Map<string, UnitState>();
  const reset = (id: string): void => {
    const u = units.get(id)!;
    // In place: a test may hold the values map.
    u.values.clear();
    for (const [p, [, v]] of Object.entries(INITIAL)) u.values.set(p as OpcuaPointName, v);
    u.status.clear();
    u.clockOffsetMs = 0;
    u.writeCommand = 'apply';
    u.calls = 0;
  };
  for (const id of unitIds) {
    const u: UnitState = {
      values: new Map(),
      status: new Map(),
      clockOffsetMs: 0,
      writeCommand: 'apply',
      calls: 0,
    };
    units.set(id, u);
    reset(id);
    const object = ns.addObject({
      organizedBy: addressSpace.rootFolder.objects,
      browseName: id,
      nodeId: `s=${id}`,
    });
    for (const [point, def] of Object.entries(OPCUA_POINTS) as [
      OpcuaPointName,
      (typeof OPCUA_POINTS)[OpcuaPointName],
    ][]) {
      ns.addVariable({
        componentOf: object,
        browseName: def.browseName,
        nodeId: `s=${id}.${def.browseName}`,
        dataType: 'BaseDataType',
        value: {
          timestamped_get: () => {
            const now = new Date(Date.now() + u.clockOffsetMs);
            return new DataValue({
              value: new Variant({ dataType: INITIAL[point][0], value: u.values.get(point) }),
              statusCode: u.status.get(point) ?? StatusCodes.Good,
              sourceTimestamp: now,
              serverTimestamp: now,
            });
          },
        },
      });
    }
    const method = ns.addMethod(object, {
      browseName: 'WriteCommand',
      nodeId: `s=${id}.WriteCommand`,
      inputArguments: [
        { name: 'epoch', dataType: DataType.Double },
        { name: 'heartbeat', dataType: DataType.UInt32 },
        { name: 'remoteEnable', dataType: DataType.Boolean },
        { name: 'fanPct', dataType: DataType.Double },
        { name: 'supplySetpointC', dataType: DataType.Double },
      ],
      outputArguments: [],
    });
    method.bindMethod(async (args: Variant[], _context: unknown) => {
      u.calls++;
      const how = u.writeCommand;
      if (how !== 'apply' && how !== 'ignore') return { statusCode: how, outputArguments: [] };
      if (how === 'apply') {
        u.values.set('epoch', args[0]!.value as number);
        u.values.set('heartbeat', args[1]!.value as number);
        u.values.set('mode', args[2]!.value ? 1 : 0);
        u.values.set('fanCmdPct', args[3]!.value as number);
        u.values.set('supplySetpointC', args[4]!.value as number);
      }
      return { statusCode: StatusCodes.Good, outputArguments: [] };
    });
  }
  await server.start();
  const endpointUrl = server.getEndpointUrl();
  return {
    server,
    endpointUrl,
    values: new Map([...units].map(([id, u]) => [id, u.values])),
    units,
    reset,
    ahu: (id, endpoint = {}) => ({
      id,
      ...TEST_AHU_PLANT,
      protocol: 'opcua',
      endpoint: { url: endpointUrl, securityMode: 'None', ...endpoint },
      client: { timeoutMs: 1_000, maxApplyDelayMs: 500 },
    }),
  };
}
