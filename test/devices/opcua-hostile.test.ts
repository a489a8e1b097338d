// The OPC-UA adapter against a server that lies: a node-opcua server in this process (real sockets,
// 127.0.0.1 only) whose variables send whatever the test puts in them — the wrong DataType, no
// value under a Good status, arrays where a scalar belongs, NaN — and whose WriteCommand can hang.
// What a user must see: a typed error or an absent point, never a made-up 0 reaching control; every
// call ends by its deadline; a hung unit never stalls another; secrets only from well-kept files.
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DataType,
  type ISessionContext,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAServer,
  RegisterServerMethod,
  SecurityPolicy,
  StatusCodes,
  Variant,
  VariantArrayType,
} from 'node-opcua';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import {
  DEFAULT_NAMESPACE_URI,
  OPCUA_POINTS,
  type OpcuaPointName,
} from '../../src/devices/opcua/node-map.ts';
import { OpcuaDevice, routeNodeOpcuaLogs } from '../../src/devices/opcua/opcua-device.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger, rejectionOf, waitFor } from '../helpers.ts';
import { TEST_AHU_PLANT } from '../support/air-handler.ts';

const UNIT = 'ahu-hostile';
const VENDOR = 'ahu-vendor';
const VENDOR_NS = 'urn:test:hostile-vendor';
const USER = { name: 'operator', password: 'hostile-test-secret' };

/** What each native point sends: a Variant (any type, Good status), or a status alone. */
const healthy: Record<OpcuaPointName, Variant> = {
  mode: new Variant({ dataType: DataType.Int32, value: 1 }),
  fanPct: new Variant({ dataType: DataType.Double, value: 55 }),
  fanCmdPct: new Variant({ dataType: DataType.Double, value: 55 }),
  supplySetpointC: new Variant({ dataType: DataType.Double, value: 18 }),
  supplyC: new Variant({ dataType: DataType.Double, value: 18.2 }),
  returnC: new Variant({ dataType: DataType.Double, value: 29.5 }),
  cwValvePct: new Variant({ dataType: DataType.Double, value: 40 }),
  alarms: new Variant({ dataType: DataType.UInt32, value: 0 }),
  epoch: new Variant({ dataType: DataType.Double, value: 0 }),
  heartbeat: new Variant({ dataType: DataType.UInt32, value: 0 }),
  watchdogS: new Variant({ dataType: DataType.Double, value: 30 }),
  localSetpointC: new Variant({ dataType: DataType.Double, value: 18 }),
  fanKw: new Variant({ dataType: DataType.Double, value: 3.1 }),
  coolingKw: new Variant({ dataType: DataType.Double, value: 60 }),
};
const sent = new Map<OpcuaPointName, Variant>();
const vendorSent = { SupplyTemp: new Variant({ dataType: DataType.Int16, value: 184 }) };
/** The vendor unit's fan command variable: thousandths of % in a UInt16. */
const vendorFanCmd = { raw: 0, writes: 0 };
let writeCommand: 'answer' | 'hang' | 'drop' = 'answer';

const VENDOR_PROFILE = `
profile: test-hostile-vendor
description: a vendor unit whose supply temperature the test garbles
source: test fixture
protocol: opcua
fencing: [lease]
watchdog: { style: none }
opcua:
  namespaceUri: ${VENDOR_NS}
  points:
    supplyC: { nodeId: "s={unit}.SupplyTemp", type: Int16, scale: 0.1 }
    fanPct: { nodeId: "s={unit}.FanCmd", type: UInt16, scale: 0.001, write: true }
`;

/** Wrong things a unit can send for a temperature under a Good status. */
const GARBAGE: [string, Variant][] = [
  ['an empty value (DataType Null)', new Variant({ dataType: DataType.Null })],
  ['an empty string', new Variant({ dataType: DataType.String, value: '' })],
  ['a numeric string', new Variant({ dataType: DataType.String, value: '21.5' })],
  ['a Boolean', new Variant({ dataType: DataType.Boolean, value: true })],
  [
    'an empty array',
    new Variant({ dataType: DataType.Double, arrayType: VariantArrayType.Array, value: new Float64Array(0) }),
  ],
  [
    'an array of one',
    new Variant({
      dataType: DataType.Double,
      arrayType: VariantArrayType.Array,
      value: new Float64Array([21]),
    }),
  ],
  ['a DateTime', new Variant({ dataType: DataType.DateTime, value: new Date(0) })],
  ['a 200 KB string', new Variant({ dataType: DataType.String, value: '9'.repeat(200_000) })],
  ['NaN', new Variant({ dataType: DataType.Double, value: Number.NaN })],
  ['Infinity', new Variant({ dataType: DataType.Double, value: Number.POSITIVE_INFINITY })],
];

let root = '';
let server: OPCUAServer;
let endpointUrl = '';
let vendorNsIndex = 0;
const devices: DeviceIo[] = [];

function unit(extra: Partial<OpcuaAirHandler> = {}, endpoint: Partial<OpcuaAirHandler['endpoint']> = {}) {
  const ahu: OpcuaAirHandler = {
    id: UNIT,
    ...TEST_AHU_PLANT,
    localFanPct: 80,
    protocol: 'opcua',
    endpoint: { url: endpointUrl, securityMode: 'None', ...endpoint },
    client: { timeoutMs: 1_000, maxApplyDelayMs: 500 },
    ...extra,
  };
  return ahu;
}

function native(ahu = unit(), registry?: Registry): OpcuaDevice {
  const d = new OpcuaDevice(ahu, {
    logger: quietLogger,
    pkiDir: join(root, 'client-pki'),
    ...(registry ? { metrics: new DeviceMetrics(registry) } : {}),
  });
  devices.push(d);
  return d;
}

async function vendorDevice(): Promise<DeviceIo> {
  const profiles = join(root, 'profiles');
  await mkdir(profiles, { recursive: true });
  await writeFile(join(profiles, 'test-hostile-vendor.yaml'), VENDOR_PROFILE);
  const d = await createDevice(unit({ id: VENDOR, profile: 'test-hostile-vendor' }), {
    logger: quietLogger,
    pkiDir: join(root, 'client-pki'),
    profilesDir: profiles,
  });
  devices.push(d);
  return d;
}

function rejection(p: Promise<unknown>): Promise<DeviceError> {
  return rejectionOf(p, DeviceError);
}

beforeAll(async () => {
  routeNodeOpcuaLogs(quietLogger);
  root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-hostile-'));
  const port = await freePort('127.0.0.1');
  server = new OPCUAServer({
    port,
    host: '127.0.0.1',
    hostname: '127.0.0.1',
    resourcePath: '/hostile',
    serverCertificateManager: new OPCUACertificateManager({
      rootFolder: join(root, 'server-pki'),
      automaticallyAcceptUnknownCertificate: true,
    }),
    // Basic256Sha256 only so that a password can travel encrypted over the None endpoint.
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
    userManager: {
      isValidUser: (name: string, password: string) => name === USER.name && password === USER.password,
    },
    registerServerMethod: RegisterServerMethod.HIDDEN,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const ns = addressSpace.registerNamespace(DEFAULT_NAMESPACE_URI);
  const object = ns.addObject({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: UNIT,
    nodeId: `s=${UNIT}`,
  });
  for (const [point, def] of Object.entries(OPCUA_POINTS) as [
    OpcuaPointName,
    (typeof OPCUA_POINTS)[OpcuaPointName],
  ][]) {
    ns.addVariable({
      componentOf: object,
      browseName: def.browseName,
      nodeId: `s=${UNIT}.${def.browseName}`,
      // Any type: the server sends what the test says, as a broken unit would.
      dataType: 'BaseDataType',
      value: { get: () => sent.get(point) ?? healthy[point] },
    });
  }
  const method = ns.addMethod(object, {
    browseName: 'WriteCommand',
    nodeId: `s=${UNIT}.WriteCommand`,
    inputArguments: [
      { name: 'epoch', dataType: DataType.Double },
      { name: 'heartbeat', dataType: DataType.UInt32 },
      { name: 'remoteEnable', dataType: DataType.Boolean },
      { name: 'fanPct', dataType: DataType.Double },
      { name: 'supplySetpointC', dataType: DataType.Double },
    ],
    outputArguments: [],
  });
  method.bindMethod(async (args: Variant[], context: ISessionContext) => {
    // A unit that took the call and never answers.
    if (writeCommand === 'hang') return new Promise<never>(() => {});
    // A unit that drops the connection in the middle of the call.
    if (writeCommand === 'drop') {
      (
        context.session as { channel?: { abruptlyInterrupt(): void } } | undefined
      )?.channel?.abruptlyInterrupt();
      return new Promise<never>(() => {});
    }
    healthy.epoch = new Variant({ dataType: DataType.Double, value: args[0]!.value });
    healthy.heartbeat = new Variant({ dataType: DataType.UInt32, value: args[1]!.value });
    healthy.fanCmdPct = new Variant({ dataType: DataType.Double, value: args[3]!.value });
    healthy.supplySetpointC = new Variant({ dataType: DataType.Double, value: args[4]!.value });
    return { statusCode: StatusCodes.Good, outputArguments: [] };
  });

  const vns = addressSpace.registerNamespace(VENDOR_NS);
  vendorNsIndex = vns.index;
  const vobj = vns.addObject({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: VENDOR,
    nodeId: `s=${VENDOR}`,
  });
  vns.addVariable({
    componentOf: vobj,
    browseName: 'SupplyTemp',
    nodeId: `s=${VENDOR}.SupplyTemp`,
    dataType: 'BaseDataType',
    value: { get: () => vendorSent.SupplyTemp },
  });
  vns.addVariable({
    componentOf: vobj,
    browseName: 'FanCmd',
    nodeId: `s=${VENDOR}.FanCmd`,
    dataType: 'UInt16',
    value: {
      get: () => new Variant({ dataType: DataType.UInt16, value: vendorFanCmd.raw }),
      set: (v: Variant) => {
        vendorFanCmd.raw = v.value as number;
        vendorFanCmd.writes++;
        return StatusCodes.Good;
      },
    },
  });
  await server.start();
  endpointUrl = server.getEndpointUrl();
}, 90_000);

afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
  sent.clear();
  writeCommand = 'answer';
  vendorSent.SupplyTemp = new Variant({ dataType: DataType.Int16, value: 184 });
});

afterAll(async () => {
  await server?.shutdown(0);
  if (root) await rm(root, { recursive: true, force: true });
}, 30_000);

describe('OPC-UA adapter against a hostile server', () => {
  it('a value of the wrong type, an array or no value under Good status is DEVICE_GARBAGE, never a number', async () => {
    const registry = new Registry();
    const d = native(unit(), registry);
    await d.open();
    expect((await d.read()).supplyC).toBe(18.2);
    for (const [what, variant] of GARBAGE) {
      sent.set('supplyC', variant);
      // The subscription delivers the new value within a publishing interval or two.
      const err = await waitFor(`${what} to be refused`, () =>
        d.read().then(
          () => null,
          (e: unknown) => e as DeviceError,
        ),
      );
      expect(err, what).toBeInstanceOf(DeviceError);
      expect(err.code, what).toBe(ErrorCodes.DEVICE_GARBAGE);
      expect(err.message, what).toContain('supplyC');
      // What the unit sent is named by its type, never copied into the error (or the log line).
      expect(err.message.length, what).toBeLessThan(300);
      sent.delete('supplyC');
      await waitFor(`good reads after ${what}`, () =>
        d.read().then(
          (r) => r.supplyC === 18.2,
          () => false,
        ),
      );
    }
    const m = await registry.getSingleMetric('coolctl_device_errors_total')?.get();
    expect(m?.values.find((v) => v.labels.kind === 'garbage')?.value ?? 0).toBeGreaterThanOrEqual(
      GARBAGE.length,
    );
  }, 60_000);

  it('an 8 MB string for a number: refused by the message-size bound, the error stays short, and reads recover', async () => {
    const d = native();
    await d.open();
    const huge = 'x'.repeat(8 * 1024 * 1024);
    sent.set('supplyC', new Variant({ dataType: DataType.String, value: huge }));
    const t0 = performance.now();
    const err = await waitFor('the huge value to be refused', () =>
      d.read().then(
        () => null,
        (e: unknown) => e as DeviceError,
      ),
    );
    // The client tells the server the most it takes (1 MB); a value over it never crosses the wire.
    expect(err.code).toBe(ErrorCodes.DEVICE_BAD_STATUS);
    expect(err.deviceCode).toBe('BadTcpMessageTooLarge');
    expect(err.message.length).toBeLessThan(500);
    expect(performance.now() - t0).toBeLessThan(5_000);
    sent.delete('supplyC');
    await waitFor('good reads again', () =>
      d.read().then(
        (r) => r.supplyC === 18.2,
        () => false,
      ),
    );
  }, 60_000);

  it('the read-back after a write refuses a wrong-type value too: no 0 taken for the epoch', async () => {
    const d = native();
    await d.open();
    await d.writeCommand({ epoch: 4, remoteEnable: true, fanPct: 50, supplySetpointC: 18 });
    // A unit that answers the read-back of its epoch with no value: an empty Variant is not epoch 0.
    sent.set('epoch', new Variant({ dataType: DataType.Null }));
    const err = await rejection(
      d.writeCommand({ epoch: 5, remoteEnable: true, fanPct: 50, supplySetpointC: 18 }),
    );
    expect(err.code).toBe(ErrorCodes.DEVICE_GARBAGE);
    expect(err.message).toContain('epoch');
  }, 30_000);

  it('a vendor unit: a value of the wrong type or shape is an absent point (NaN), never 0 or a coerced number', async () => {
    const d = await vendorDevice();
    await d.open();
    expect((await d.read()).supplyC).toBeCloseTo(18.4, 9);
    for (const [what, variant] of GARBAGE) {
      vendorSent.SupplyTemp = variant;
      const r = await d.read();
      expect(r.supplyC, what).toBeNaN();
      expect(r.absent, what).toEqual(['supplyC']);
      expect(r.quality, what).toBe('uncertain');
    }
    expect(vendorNsIndex).toBeGreaterThan(0);
  }, 60_000);

  it('a vendor command its variable cannot hold is refused before sending: BAD_REQUEST, link up, nothing written', async () => {
    const d = await vendorDevice();
    await d.open();
    await d.writeCommand({ epoch: 1, remoteEnable: true, fanPct: 50, supplySetpointC: 18 });
    expect(vendorFanCmd.raw).toBe(50_000);
    const writes = vendorFanCmd.writes;
    // 100 % is 100 000 thousandths: beyond the UInt16 the unit has, never wrapped or clipped.
    const err = await rejection(
      d.writeCommand({ epoch: 1, remoteEnable: true, fanPct: 100, supplySetpointC: 18 }),
    );
    expect(err.code).toBe(ErrorCodes.BAD_REQUEST);
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/fanPct: 100 is 100000 as the unit's UInt16, outside 0…65535/);
    expect(vendorFanCmd.writes).toBe(writes);
    expect(d.linkState).toBe('up');
    expect((await d.read()).fanPct).toBeCloseTo(50, 9);
  }, 30_000);

  it('a unit that takes WriteCommand and never answers: DEVICE_TIMEOUT by the deadline; another unit keeps working', async () => {
    const hung = native();
    const other = native(unit({ id: UNIT, client: { timeoutMs: 1_000, maxApplyDelayMs: 500 } }));
    await Promise.all([hung.open(), other.open()]);
    writeCommand = 'hang';
    const t0 = performance.now();
    const write = hung.writeCommand({ epoch: 7, remoteEnable: true, fanPct: 50, supplySetpointC: 18 });
    // Meanwhile the other device reads as usual: nothing of one unit's hang is shared.
    expect((await other.read()).quality).toBe('good');
    const err = await rejection(write);
    expect(err.code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    expect(performance.now() - t0).toBeLessThan(1_000 + 500);
    writeCommand = 'answer';
    expect((await hung.read()).quality).toBe('good');
  }, 30_000);

  it('a unit that drops the session in the middle of a write: a typed error by the deadline, then it reconnects', async () => {
    const d = native();
    await d.open();
    writeCommand = 'drop';
    const t0 = performance.now();
    const err = await rejection(
      d.writeCommand({ epoch: 8, remoteEnable: true, fanPct: 50, supplySetpointC: 18 }),
    );
    expect([ErrorCodes.DEVICE_UNREACHABLE, ErrorCodes.DEVICE_TIMEOUT]).toContain(err.code);
    expect(performance.now() - t0).toBeLessThan(1_000 + 500);
    writeCommand = 'answer';
    await waitFor('the link to come back', () => d.linkState === 'up');
    await d.writeCommand({ epoch: 8, remoteEnable: true, fanPct: 51, supplySetpointC: 18 });
    expect((await d.read()).epoch).toBe(8);
  }, 30_000);

  it('asked for a security policy the server lacks: DEVICE_REFUSED saying so, never a weaker one', async () => {
    const d = native(unit({}, { securityMode: 'SignAndEncrypt', securityPolicy: 'Aes256_Sha256_RsaPss' }));
    const err = await rejection(d.open());
    expect(err.code).toBe(ErrorCodes.DEVICE_REFUSED);
    expect(err.message).toContain('no endpoint for securityMode SignAndEncrypt');
    expect(err.retryable).toBe(false);
    expect(d.linkState).toBe('down');
  }, 30_000);

  it('the password file is a secret file: kept from other users, one line, bounded — else DEVICE_AUTH, password never shown', async () => {
    const good = join(root, 'password');
    await writeFile(good, `${USER.password}\n`, { mode: 0o600 });
    const ok = native(unit({}, { username: USER.name, passwordFile: good }));
    await ok.open();
    expect((await ok.read()).quality).toBe('good');

    const cases: [string, string, number, RegExp][] = [
      ['world-readable', `${USER.password}\n`, 0o644, /open to every user|chmod 600/],
      ['two lines', `${USER.password}\nsecond\n`, 0o600, /more than one line/],
      ['empty', '\n', 0o600, /empty/],
      ['too large', 'x'.repeat(200_000), 0o600, /more than the 64 KB/],
    ];
    for (const [what, content, mode, says] of cases) {
      const file = join(root, `password-${what.replace(/\W/g, '-')}`);
      await writeFile(file, content, { mode });
      await chmod(file, mode); // the umask may have taken bits off
      const d = native(unit({}, { username: USER.name, passwordFile: file }));
      const err = await rejection(d.open());
      expect(err.code, what).toBe(ErrorCodes.DEVICE_AUTH);
      expect(err.message, what).toMatch(says);
      expect(err.message, what).toContain(file);
      expect(err.message, what).not.toContain(USER.password);
    }
  }, 60_000);
});

describe('OPC-UA adapter and the endpoints a server advertises', () => {
  let decoy: Server;
  let decoyConnections = 0;
  let other: OPCUAServer;

  afterAll(async () => {
    await other?.shutdown(0);
    await new Promise<void>((done) => (decoy ? decoy.close(() => done()) : done()));
  }, 30_000);

  it('connects only to the configured URL, never to a host the server advertises', async () => {
    // The server advertises its endpoints on 127.0.0.2 (loopback too), where a decoy counts callers.
    const port = await freePort('127.0.0.1');
    decoy = createServer((s) => {
      decoyConnections++;
      s.destroy();
    });
    await new Promise<void>((ok) => decoy.listen(port, '127.0.0.2', ok));
    other = new OPCUAServer({
      port,
      host: '127.0.0.1',
      hostname: '127.0.0.2',
      alternateHostname: [],
      resourcePath: '/elsewhere',
      serverCertificateManager: new OPCUACertificateManager({
        rootFolder: join(root, 'other-server-pki'),
        automaticallyAcceptUnknownCertificate: true,
      }),
      securityPolicies: [SecurityPolicy.Basic256Sha256],
      securityModes: [MessageSecurityMode.SignAndEncrypt],
      allowAnonymous: true,
      registerServerMethod: RegisterServerMethod.HIDDEN,
    });
    await other.initialize();
    other.engine.addressSpace!.registerNamespace(DEFAULT_NAMESPACE_URI);
    await other.start();
    expect(other.getEndpointUrl()).toContain('127.0.0.2');
    const d = new OpcuaDevice(
      unit({}, { url: `opc.tcp://127.0.0.1:${port}/elsewhere`, securityMode: 'SignAndEncrypt' }),
      { logger: quietLogger, pkiDir: join(root, 'trusting-pki'), trustUnknownCertificates: true },
    );
    devices.push(d);
    // The session comes up over the configured address (the map's nodes are not on this server).
    await d.open();
    expect(d.linkState).not.toBe('down');
    expect(decoyConnections).toBe(0);
  }, 60_000);
});
