// The OPC-UA node map of an air handler, shared by the simulator's server and the controller's
// client so both name the same nodes: string node ids `s=<prefix>.<Point>` in the AHU's namespace
// URI (its index is looked up in the server's NamespaceArray at connect time, never assumed).
// No node-opcua import here: the map is plain data, documented in docs/opcua-node-map.md.
import type { OpcuaAirHandler } from '../../config/site-schema.ts';
import { AHU_MODES, FAN_RANGE_PCT, rangeText, SUPPLY_SETPOINT_RANGE_C } from '../../unit-contract.ts';

export const DEFAULT_NAMESPACE_URI = 'urn:coolctl:sim:ahu';

/** OPC-UA built-in data type names, as node-opcua's `DataType` keys. */
export type OpcuaDataTypeName = 'Double' | 'UInt32' | 'Int32';

export interface OpcuaPointDef {
  /** Browse name, and the last part of the string node id. */
  browseName: string;
  dataType: OpcuaDataTypeName;
  unit: string;
  description: string;
}

/** Every variable of an AHU object; all are read-only (writes go through WriteCommand only). */
export const OPCUA_POINTS = {
  mode: {
    browseName: 'Mode',
    dataType: 'Int32',
    unit: '',
    description: '0 local, 1 remote, 2 fallback (watchdog), 3 tripped',
  },
  fanPct: { browseName: 'FanPct', dataType: 'Double', unit: '%', description: 'fan speed now' },
  fanCmdPct: {
    browseName: 'FanCmdPct',
    dataType: 'Double',
    unit: '%',
    description: 'fan speed the unit is asked for now (remote command or local speed)',
  },
  supplySetpointC: {
    browseName: 'SupplySetpointC',
    dataType: 'Double',
    unit: '°C',
    description: 'supply-air setpoint in force (remote command or local setpoint)',
  },
  supplyC: { browseName: 'SupplyC', dataType: 'Double', unit: '°C', description: 'supply-air temperature' },
  returnC: { browseName: 'ReturnC', dataType: 'Double', unit: '°C', description: 'return-air temperature' },
  cwValvePct: {
    browseName: 'CwValvePct',
    dataType: 'Double',
    unit: '%',
    description: 'chilled-water valve position',
  },
  alarms: {
    browseName: 'Alarms',
    dataType: 'UInt32',
    unit: '',
    description: 'bit 0 comm loss, bit 1 trip, bit 2 high supply temperature',
  },
  epoch: {
    browseName: 'Epoch',
    dataType: 'Double',
    unit: '',
    description: 'highest accepted fencing epoch (an integer, exact below 2^53)',
  },
  heartbeat: {
    browseName: 'Heartbeat',
    dataType: 'UInt32',
    unit: '',
    description: 'last accepted heartbeat',
  },
  watchdogS: { browseName: 'WatchdogS', dataType: 'Double', unit: 's', description: 'heartbeat watchdog' },
  localSetpointC: {
    browseName: 'LocalSetpointC',
    dataType: 'Double',
    unit: '°C',
    description: 'supply setpoint on local control and fallback',
  },
  fanKw: { browseName: 'FanKw', dataType: 'Double', unit: 'kW', description: 'fan electrical power' },
  coolingKw: {
    browseName: 'CoolingKw',
    dataType: 'Double',
    unit: 'kW',
    description: 'sensible cooling delivered',
  },
} as const satisfies Record<string, OpcuaPointDef>;

export type OpcuaPointName = keyof typeof OPCUA_POINTS;
export const OPCUA_POINT_NAMES = Object.keys(OPCUA_POINTS) as OpcuaPointName[];

/** Mode variable values, by code; the same codes as the Modbus status register. */
export const OPCUA_MODE_NAMES = AHU_MODES;

export const WRITE_COMMAND_BROWSE_NAME = 'WriteCommand';

/** WriteCommand input arguments, in order. Epoch is a Double so any client writes it as a plain number. */
export const WRITE_COMMAND_ARGS = [
  { name: 'epoch', dataType: 'Double', description: 'fencing epoch; an integer ≥ 0' },
  { name: 'heartbeat', dataType: 'UInt32', description: 'changes on every write from a live controller' },
  { name: 'remoteEnable', dataType: 'Boolean', description: 'true: remote control; false: back to local' },
  { name: 'fanPct', dataType: 'Double', description: `fan speed command, ${rangeText(FAN_RANGE_PCT)} %` },
  {
    name: 'supplySetpointC',
    dataType: 'Double',
    description: `supply setpoint, ${rangeText(SUPPLY_SETPOINT_RANGE_C)} °C`,
  },
] as const;

/**
 * The status a WriteCommand call answers, by outcome (OPC-UA status code names). The stale-epoch
 * status is THE signal a controller reads as "fenced: a newer leader exists, stop driving".
 */
export const WRITE_COMMAND_STATUS = {
  accepted: 'Good',
  staleEpoch: 'BadInvalidState',
  outOfRange: 'BadOutOfRange',
  heartbeatUnchanged: 'BadSequenceNumberInvalid',
  tripped: 'BadDeviceFailure',
  offline: 'BadCommunicationError',
  /** a `badStatus` fault answers with its own status name; this is the default one */
  faultBadStatus: 'BadDeviceFailure',
} as const;

export interface OpcuaNodeMap {
  namespaceUri: string;
  prefix: string;
  /** String node ids without namespace (`s=<prefix>.<Point>`); combine with `nodeIdFor`. */
  nodes: Record<OpcuaPointName, string>;
  writeCommandMethod: string;
  objectNodeId: string;
}

export function resolveNodeMap(ahu: Pick<OpcuaAirHandler, 'id' | 'pointMap'>): OpcuaNodeMap {
  const prefix = ahu.pointMap?.nodePrefix ?? ahu.id;
  const nodes = {} as Record<OpcuaPointName, string>;
  for (const name of OPCUA_POINT_NAMES) nodes[name] = `s=${prefix}.${OPCUA_POINTS[name].browseName}`;
  return {
    namespaceUri: ahu.pointMap?.namespaceUri ?? DEFAULT_NAMESPACE_URI,
    prefix,
    nodes,
    writeCommandMethod: `s=${prefix}.${WRITE_COMMAND_BROWSE_NAME}`,
    objectNodeId: `s=${prefix}`,
  };
}

/** `ns=<i>;s=...` from a namespace index and a string id of the map (`s=...`). */
export function nodeIdFor(nsIndex: number, stringId: string): string {
  return `ns=${nsIndex};${stringId}`;
}
