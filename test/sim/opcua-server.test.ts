// The simulated air handlers' OPC-UA server through a real node-opcua client: the node map a
// controller browses and reads, the fenced WriteCommand (accept, stale epoch, out of range), the
// watchdog fallback seen on the wire, faults on the wire, and the security modes offered.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AttributeIds,
  BrowseDirection,
  ClientMonitoredItem,
  type ClientSession,
  ClientSubscription,
  DataType,
  type DataValue,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  type OPCUAClientOptions,
  SecurityPolicy,
  StatusCodes,
  TimestampsToReturn,
  UserTokenType,
  Variant,
} from 'node-opcua';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpcuaAhuServer } from '../../firmware-sim/ahu/opcua-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import {
  nodeIdFor,
  type OpcuaNodeMap,
  type OpcuaPointName,
  resolveNodeMap,
  WRITE_COMMAND_STATUS,
} from '../../src/devices/opcua/node-map.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const site = generateSite(demoShape);
const opcuaAhus = site.airHandlers.filter((a): a is OpcuaAirHandler => a.protocol === 'opcua');
// The second unit gets a short watchdog so the fallback test needs no long wait.
const configs = opcuaAhus.map((a, i) => (i === 1 ? { ...a, watchdogS: 0.3 } : a));
const journal = new Journal(() => 0);
const units = configs.map((c) => new SimAirHandler(c, journal));
const unitA = units[0]!;
const unitB = units[1]!;
const mapA = resolveNodeMap(configs[0]!);
const mapB = resolveNodeMap(configs[1]!);
const user = { username: 'operator', password: 'cool-secret' };

let server: OpcuaAhuServer;
let endpointUrl = '';
let nsIndex = 0;
const clients: OPCUAClient[] = [];
let session: ClientSession;
// Shared by every client of this file so the client certificate is made once, outside the user's home.
const clientCertificateManager = new OPCUACertificateManager({
  rootFolder: join(tmpdir(), 'coolctl-test-opcua-client-pki'),
  automaticallyAcceptUnknownCertificate: true,
});

async function connect(
  opts: Partial<OPCUAClientOptions> = {},
  identity?: { userName: string; password: string },
  url = endpointUrl,
) {
  const client = OPCUAClient.create({
    applicationName: 'coolctl-test',
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
    clientCertificateManager,
    ...opts,
  });
  clients.push(client);
  await client.connect(url);
  const s = identity
    ? await client.createSession({ type: UserTokenType.UserName, ...identity })
    : await client.createSession();
  return { client, session: s };
}

const id = (map: OpcuaNodeMap, point: OpcuaPointName) => nodeIdFor(nsIndex, map.nodes[point]);

function read(map: OpcuaNodeMap, point: OpcuaPointName, s: ClientSession = session): Promise<DataValue> {
  return s.read({ nodeId: id(map, point), attributeId: AttributeIds.Value });
}

interface Cmd {
  epoch: number;
  heartbeat: number;
  remoteEnable?: boolean;
  fanPct?: number;
  supplySetpointC?: number;
}

async function writeCommand(map: OpcuaNodeMap, c: Cmd, s: ClientSession = session) {
  const result = await s.call({
    objectId: nodeIdFor(nsIndex, map.objectNodeId),
    methodId: nodeIdFor(nsIndex, map.writeCommandMethod),
    inputArguments: [
      new Variant({ dataType: DataType.Double, value: c.epoch }),
      new Variant({ dataType: DataType.UInt32, value: c.heartbeat }),
      new Variant({ dataType: DataType.Boolean, value: c.remoteEnable ?? true }),
      new Variant({ dataType: DataType.Double, value: c.fanPct ?? 60 }),
      new Variant({ dataType: DataType.Double, value: c.supplySetpointC ?? 20 }),
    ],
  });
  return result.statusCode;
}

const lastEntry = () => journal.since(journal.lastSeq - 1).entries[0];

beforeAll(async () => {
  expect(opcuaAhus).toHaveLength(2);
  server = new OpcuaAhuServer(units, {
    host: '127.0.0.1',
    port: 0,
    resourcePath: '/coolctl-sim',
    logger: quietLogger,
    users: [user],
  });
  ({ endpointUrl } = await server.start());
  ({ session } = await connect());
  const namespaces = await session.readNamespaceArray();
  nsIndex = namespaces.indexOf(mapA.namespaceUri);
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.disconnect().catch(() => undefined);
  await server?.stop();
});

describe('OPC-UA air handler server', () => {
  it('starts on a port the OS picked and publishes the namespace', () => {
    expect(endpointUrl).toMatch(/^opc\.tcp:\/\/127\.0\.0\.1:\d+\/coolctl-sim$/);
    expect(endpointUrl).not.toMatch(/:0\//);
    expect(nsIndex).toBeGreaterThan(0);
  });

  it('shows every AHU as an object under Objects, with its variables and WriteCommand', async () => {
    const objects = await session.browse({
      nodeId: 'ns=0;i=85',
      browseDirection: BrowseDirection.Forward,
      resultMask: 63,
    });
    const names = objects.references?.map((r) => r.browseName.name) ?? [];
    expect(names).toEqual(expect.arrayContaining([mapA.prefix, mapB.prefix]));
    const children = await session.browse(nodeIdFor(nsIndex, mapA.objectNodeId));
    const childNames = children.references?.map((r) => r.browseName.name) ?? [];
    expect(childNames).toEqual(expect.arrayContaining(['Mode', 'SupplySetpointC', 'Epoch', 'WriteCommand']));
  });

  it('reads the live state of a unit on local control, with source timestamps', async () => {
    const mode = await read(mapA, 'mode');
    expect(mode.statusCode).toBe(StatusCodes.Good);
    expect(mode.value.value).toBe(0);
    expect(mode.sourceTimestamp).toBeInstanceOf(Date);
    expect((await read(mapA, 'supplySetpointC')).value.value).toBe(configs[0]!.localSetpointC);
    expect((await read(mapA, 'watchdogS')).value.value).toBe(configs[0]!.watchdogS);
    expect((await read(mapA, 'epoch')).value.value).toBe(0);
    unitA.updateMeasurements({
      fanPct: 55,
      supplyC: 17.5,
      returnC: 29,
      cwValvePct: 40,
      fanKw: 3.2,
      coolingKw: 80,
    });
    expect((await read(mapA, 'supplyC')).value.value).toBe(17.5);
    expect((await read(mapA, 'coolingKw')).value.value).toBe(80);
  });

  it('accepts a fenced write: Good, unit remote, journaled, and a subscriber sees the new setpoint', async () => {
    const sub = ClientSubscription.create(session, {
      requestedPublishingInterval: 100,
      requestedLifetimeCount: 100,
      requestedMaxKeepAliveCount: 10,
      publishingEnabled: true,
    });
    const seen: unknown[] = [];
    const item = ClientMonitoredItem.create(
      sub,
      { nodeId: id(mapA, 'supplySetpointC'), attributeId: AttributeIds.Value },
      { samplingInterval: 100, queueSize: 10, discardOldest: true },
      TimestampsToReturn.Both,
    );
    item.on('changed', (dv: DataValue) => seen.push(dv.value.value));
    await waitFor('initial notification', () => seen.length > 0);

    expect(await writeCommand(mapA, { epoch: 5, heartbeat: 1, fanPct: 60, supplySetpointC: 21.5 })).toBe(
      StatusCodes.Good,
    );
    expect(unitA.mode).toBe('remote');
    const entry = lastEntry();
    expect(entry).toMatchObject({ ahu: unitA.id, protocol: 'opcua', epoch: 5, accepted: true, reason: null });
    expect(entry?.client).toMatch(/^opcua:.+@/);
    await waitFor('subscriber to see 21.5', () => seen.includes(21.5));
    expect((await read(mapA, 'mode')).value.value).toBe(1);
    expect((await read(mapA, 'epoch')).value.value).toBe(5);
    await sub.terminate();
  });

  it('refuses a stale epoch with BadInvalidState and keeps the newer command', async () => {
    const status = await writeCommand(mapA, { epoch: 4, heartbeat: 2, supplySetpointC: 25 });
    expect(status).toBe(StatusCodes.BadInvalidState);
    expect(status.name).toBe(WRITE_COMMAND_STATUS.staleEpoch);
    expect(lastEntry()).toMatchObject({ ahu: unitA.id, epoch: 4, accepted: false, reason: 'stale-epoch' });
    expect((await read(mapA, 'supplySetpointC')).value.value).toBe(21.5);
    expect((await read(mapA, 'epoch')).value.value).toBe(5);
  });

  it('refuses an out-of-range command with BadOutOfRange', async () => {
    expect(await writeCommand(mapA, { epoch: 5, heartbeat: 3, fanPct: 150 })).toBe(StatusCodes.BadOutOfRange);
    expect(lastEntry()).toMatchObject({ accepted: false, reason: 'out-of-range' });
    expect(await writeCommand(mapA, { epoch: 5, heartbeat: 3, supplySetpointC: 5 })).toBe(
      StatusCodes.BadOutOfRange,
    );
    expect((await read(mapA, 'supplySetpointC')).value.value).toBe(21.5);
  });

  it('falls back to local control when the heartbeat stops, and shows it on the wire', async () => {
    expect(await writeCommand(mapB, { epoch: 1, heartbeat: 7 })).toBe(StatusCodes.Good);
    expect((await read(mapB, 'mode')).value.value).toBe(1);
    await waitFor('watchdog fallback', () => {
      unitB.checkWatchdog();
      return unitB.mode === 'fallback';
    });
    expect((await read(mapB, 'mode')).value.value).toBe(2);
    expect(((await read(mapB, 'alarms')).value.value as number) & 1).toBe(1);
    expect((await read(mapB, 'supplySetpointC')).value.value).toBe(configs[1]!.localSetpointC);
    // A repeat of the last frame must not take the unit back; a fresh heartbeat does.
    expect(await writeCommand(mapB, { epoch: 1, heartbeat: 7 })).toBe(StatusCodes.BadSequenceNumberInvalid);
    expect(lastEntry()).toMatchObject({ ahu: unitB.id, accepted: false, reason: 'heartbeat-unchanged' });
    expect(await writeCommand(mapB, { epoch: 1, heartbeat: 8 })).toBe(StatusCodes.Good);
    expect((await read(mapB, 'mode')).value.value).toBe(1);
  });

  it('answers reads and writes with the injected Bad status, and recovers when cleared', async () => {
    unitA.faults.badStatus = 'BadDeviceFailure';
    await server.applyFaults();
    expect((await read(mapA, 'supplyC')).statusCode).toBe(StatusCodes.BadDeviceFailure);
    expect(await writeCommand(mapA, { epoch: 6, heartbeat: 10 })).toBe(StatusCodes.BadDeviceFailure);
    expect(lastEntry()).toMatchObject({ ahu: unitA.id, accepted: false, reason: 'fault-bad-status' });
    // The other unit on the same server is not affected.
    expect((await read(mapB, 'supplyC')).statusCode).toBe(StatusCodes.Good);
    unitA.faults.badStatus = null;
    await server.applyFaults();
    expect((await read(mapA, 'supplyC')).statusCode).toBe(StatusCodes.Good);
    expect(await writeCommand(mapA, { epoch: 6, heartbeat: 11 })).toBe(StatusCodes.Good);
  });

  it('answers BadCommunicationError for an offline unit', async () => {
    unitA.faults.offline = true;
    await server.applyFaults();
    expect((await read(mapA, 'mode')).statusCode).toBe(StatusCodes.BadCommunicationError);
    expect(await writeCommand(mapA, { epoch: 6, heartbeat: 12 })).toBe(StatusCodes.BadCommunicationError);
    expect(lastEntry()).toMatchObject({ ahu: unitA.id, accepted: false, reason: 'offline' });
    unitA.faults.offline = false;
    await server.applyFaults();
    expect((await read(mapA, 'mode')).statusCode).toBe(StatusCodes.Good);
  });

  it('delays reads and writes of a slow unit', async () => {
    unitA.faults.slowMs = 600;
    await server.applyFaults();
    let t0 = performance.now();
    expect((await read(mapA, 'fanPct')).statusCode).toBe(StatusCodes.Good);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(550);
    t0 = performance.now();
    expect(await writeCommand(mapA, { epoch: 6, heartbeat: 13 })).toBe(StatusCodes.Good);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(550);
    unitA.faults.slowMs = 0;
    await server.applyFaults();
    t0 = performance.now();
    await read(mapA, 'fanPct');
    expect(performance.now() - t0).toBeLessThan(550);
  });

  it('survives a failing getter and malformed WriteCommand arguments', async () => {
    const status = unitB.status.bind(unitB);
    unitB.status = () => {
      throw new Error('board fault');
    };
    try {
      expect((await read(mapB, 'supplyC')).statusCode).toBe(StatusCodes.BadInternalError);
    } finally {
      unitB.status = status;
    }
    expect((await read(mapB, 'supplyC')).statusCode).toBe(StatusCodes.Good);
    const before = journal.lastSeq;
    const result = await session.call({
      objectId: nodeIdFor(nsIndex, mapB.objectNodeId),
      methodId: nodeIdFor(nsIndex, mapB.writeCommandMethod),
      inputArguments: [new Variant({ dataType: DataType.String, value: 'nine' })],
    });
    expect(result.statusCode).toBe(StatusCodes.BadArgumentsMissing);
    // Refused by node-opcua's argument check before the unit sees it: nothing reached the device.
    expect(journal.lastSeq).toBe(before);
  });

  it('offers Basic256Sha256 SignAndEncrypt and a user/password identity', { timeout: 30_000 }, async () => {
    const secure = await connect(
      { securityMode: MessageSecurityMode.SignAndEncrypt, securityPolicy: SecurityPolicy.Basic256Sha256 },
      { userName: user.username, password: user.password },
    );
    expect((await read(mapA, 'mode', secure.session)).statusCode).toBe(StatusCodes.Good);
    expect(await writeCommand(mapA, { epoch: 7, heartbeat: 14 }, secure.session)).toBe(StatusCodes.Good);
    await secure.session.close();
    await expect(connect({}, { userName: user.username, password: 'wrong' })).rejects.toThrow();
  });

  it('stops promptly with a client still connected, and stopping twice is harmless', async () => {
    const extra = new OpcuaAhuServer([unitB], {
      host: '127.0.0.1',
      port: 0,
      resourcePath: '/extra',
      logger: quietLogger,
    });
    const { endpointUrl: url } = await extra.start();
    const { client, session: s } = await connect({}, undefined, url);
    expect((await read(mapB, 'mode', s)).statusCode).toBe(StatusCodes.Good);
    await Promise.all([extra.stop(), extra.stop()]);
    await expect(read(mapB, 'mode', s)).rejects.toThrow();
    await client.disconnect();
  });
});
