// A node-opcua server in the test process (127.0.0.1 only) holding native-map air handlers whose
// variables answer what the test puts in `values`. For tests that bend the server itself: freeze
// its publishing, or secure its endpoints.
import { join } from 'node:path';
import {
  DataType,
  DataValue,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAServer,
  RegisterServerMethod,
  SecurityPolicy,
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

const INITIAL: Record<OpcuaPointName, [DataType, number]> = {
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

export interface UnitServer {
  server: OPCUAServer;
  endpointUrl: string;
  /** Per unit id, what each point holds now. */
  values: Map<string, Map<OpcuaPointName, number>>;
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
  const values = new Map<string, Map<OpcuaPointName, number>>();
  for (const id of unitIds) {
    const held = new Map(Object.entries(INITIAL).map(([p, [, v]]) => [p as OpcuaPointName, v]));
    values.set(id, held);
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
          timestamped_get: () =>
            new DataValue({
              value: new Variant({ dataType: INITIAL[point][0], value: held.get(point) }),
              statusCode: StatusCodes.Good,
              sourceTimestamp: new Date(),
              serverTimestamp: new Date(),
            }),
        },
      });
    }
  }
  await server.start();
  const endpointUrl = server.getEndpointUrl();
  return {
    server,
    endpointUrl,
    values,
    ahu: (id, endpoint = {}) => ({
      id,
      ...TEST_AHU_PLANT,
      protocol: 'opcua',
      endpoint: { url: endpointUrl, securityMode: 'None', ...endpoint },
      client: { timeoutMs: 1_000, maxApplyDelayMs: 500 },
    }),
  };
}
