// An OPC-UA unit with its own node names and scaling, driven through a vendor profile's `opcua`
// section: a node-opcua server in this process (real sockets on loopback) with a namespace of the
// unit's own — tenths of °C as integers, a writable fan speed and setpoint, a mode enumeration, an
// alarm, one point found by browse path. The controller's OpcuaDevice reads the points scaled as
// the profile says and writes its command into the unit's variables; a Bad value reads as absent
// (NaN), never 0.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DataType,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAServer,
  RegisterServerMethod,
  SecurityPolicy,
  StatusCodes,
  Variant,
} from 'node-opcua';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger } from '../helpers.ts';
import { TEST_AHU_PLANT } from '../support/air-handler.ts';

const NS = 'urn:test:vendor-ahu';
const UNIT = 'AHU-X';

const PROFILE = `
profile: test-opcua-vendor
description: an OPC-UA unit with its own node names and scaling
source: test fixture (tenths of °C as integers, a writable fan and setpoint, a browse path)
protocol: opcua
fencing: [lease]
watchdog: { style: none }
opcua:
  namespaceUri: ${NS}
  points:
    supplyC: { nodeId: "s={unit}.SupplyTemp", scale: 0.1 }
    returnC: { browsePath: "/Objects/NSX:{unit}/NSX:ReturnTemp" }
    fanPct: { nodeId: "s={unit}.FanSpeedCmd", write: true }
    supplySetpointC: { nodeId: "s={unit}.SetpointTenths", scale: 0.1, write: true }
    mode: { nodeId: "s={unit}.Mode", enum: { 0: local, 1: remote } }
    alarmFilter: { nodeId: "s={unit}.FilterAlarm", alarm: filter }
`;

/** The unit's variables as the server holds them (raw, in the unit's own units). */
const values: Record<string, { dataType: DataType; value: number | boolean; good: boolean }> = {
  SupplyTemp: { dataType: DataType.Int16, value: 184, good: true },
  ReturnTemp: { dataType: DataType.Double, value: 28.5, good: true },
  FanSpeedCmd: { dataType: DataType.Double, value: 0, good: true },
  SetpointTenths: { dataType: DataType.Int16, value: 0, good: true },
  Mode: { dataType: DataType.UInt16, value: 1, good: true },
  FilterAlarm: { dataType: DataType.Boolean, value: true, good: true },
};

let server: OPCUAServer;
let root = '';
let device: DeviceIo;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-profile-'));
  const port = await freePort('127.0.0.1');
  server = new OPCUAServer({
    port,
    host: '127.0.0.1',
    hostname: '127.0.0.1',
    resourcePath: '/vendor',
    serverCertificateManager: new OPCUACertificateManager({
      rootFolder: join(root, 'server-pki'),
      automaticallyAcceptUnknownCertificate: true,
    }),
    securityPolicies: [SecurityPolicy.None],
    securityModes: [MessageSecurityMode.None],
    allowAnonymous: true,
    registerServerMethod: RegisterServerMethod.HIDDEN,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const ns = addressSpace.registerNamespace(NS);
  const object = ns.addObject({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: UNIT,
    nodeId: `s=${UNIT}`,
  });
  for (const [name, v] of Object.entries(values)) {
    ns.addVariable({
      componentOf: object,
      browseName: name,
      nodeId: `s=${UNIT}.${name}`,
      dataType: DataType[v.dataType] as keyof typeof DataType,
      value: {
        get: () =>
          v.good
            ? new Variant({ dataType: v.dataType, value: v.value })
            : new Variant({ dataType: DataType.Null }),
        set: (variant: Variant) => {
          v.value = variant.value as number;
          return StatusCodes.Good;
        },
      },
    });
  }
  await server.start();
  const profiles = join(root, 'profiles');
  await import('node:fs/promises').then((fs) => fs.mkdir(profiles));
  await writeFile(join(profiles, 'test-opcua-vendor.yaml'), PROFILE.replaceAll('NSX', String(ns.index)));
  const ahu: OpcuaAirHandler = {
    id: UNIT,
    ...TEST_AHU_PLANT,
    localFanPct: 80,
    protocol: 'opcua',
    endpoint: { url: server.getEndpointUrl(), securityMode: 'None' },
    client: { timeoutMs: 2_000, maxApplyDelayMs: 500 },
    profile: 'test-opcua-vendor',
  };
  device = await createDevice(ahu, {
    logger: quietLogger,
    pkiDir: join(root, 'client-pki'),
    trustUnknownCertificates: true,
    profilesDir: profiles,
  });
}, 90_000);

afterAll(async () => {
  await device?.close();
  await server?.shutdown(0);
  if (root) await rm(root, { recursive: true, force: true });
}, 30_000);

describe('an OPC-UA unit through its vendor profile', () => {
  it('reads its points scaled, by node id and browse path; a Bad value is absent, never 0', async () => {
    expect(device.fencing).toBe('lease');
    expect(device.unitWatchdog).toBe('none');
    await device.open();
    const r = await device.read();
    expect(r).toMatchObject({
      supplyC: 18.4,
      returnC: 28.5,
      mode: 'remote',
      alarmNames: ['filter'],
      quality: 'good',
      unitWatchdog: 'none',
    });
    values.SupplyTemp!.good = false;
    try {
      const bad = await device.read();
      expect(bad.supplyC).toBeNaN();
      expect(bad.absent).toEqual(['supplyC']);
      expect(bad.quality).toBe('uncertain');
    } finally {
      values.SupplyTemp!.good = true;
    }
  }, 60_000);

  it('writes fan speed and setpoint into the unit’s own variables, scaled and typed', async () => {
    await device.writeCommand({ epoch: 3, remoteEnable: true, fanPct: 61.5, supplySetpointC: 19.5 });
    expect(values.FanSpeedCmd!.value).toBe(61.5);
    // Tenths of °C in an Int16: 195.
    expect(values.SetpointTenths!.value).toBe(195);
    const r = await device.read();
    expect(r.fanPct).toBe(61.5);
    expect(r.supplySetpointC).toBe(19.5);
  }, 60_000);
});
