// A call that outlives a deadline is COOLCTL_E_DEVICE_TIMEOUT (retryable) however it is reported:
// our own deadline, node-opcua's request timer, or the unit's BadTimeout / BadRequestTimeout on a
// value, a method or a ServiceFault. The unit's answer and our deadline end at the same instant (the
// hint we send is what is left of the call), so which one wins must not change what callers see.
// A stale-epoch refusal stays its own code.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServiceFault, StatusCodes } from 'node-opcua-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OpcuaAhuServer } from '../../firmware-sim/ahu/opcua-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { statusError, thrownError } from '../../src/devices/opcua/call-status.ts';
import { OpcuaDevice, routeNodeOpcuaLogs } from '../../src/devices/opcua/opcua-device.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { quietLogger, rejectionOf, waitFor } from '../helpers.ts';

const base = generateSite(demoShape).airHandlers.find((a): a is OpcuaAirHandler => a.protocol === 'opcua')!;
const journal = new Journal(() => 0);
const configs = {
  hint: { ...base, id: 'ahu-hint' },
  status: { ...base, id: 'ahu-status' },
  stale: { ...base, id: 'ahu-stale' },
};
const units = {
  hint: new SimAirHandler(configs.hint, journal),
  status: new SimAirHandler(configs.status, journal),
  stale: new SimAirHandler(configs.stale, journal),
};
let root = '';
let server: OpcuaAhuServer;
let endpointUrl = '';
const devices: OpcuaDevice[] = [];

function device(config: OpcuaAirHandler, client: OpcuaAirHandler['client'] = {}): OpcuaDevice {
  const d = new OpcuaDevice(
    {
      ...config,
      endpoint: { url: endpointUrl, securityMode: 'None' },
      client: { timeoutMs: 1_000, ...client },
    },
    { logger: quietLogger, pkiDir: join(root, 'client-pki'), clientName: `test-${config.id}` },
  );
  devices.push(d);
  return d;
}

function rejection(p: Promise<unknown>): Promise<DeviceError> {
  return rejectionOf(p, DeviceError);
}

beforeAll(async () => {
  routeNodeOpcuaLogs(quietLogger);
  root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-timeout-'));
  server = new OpcuaAhuServer(Object.values(units), {
    host: '127.0.0.1',
    port: 0,
    resourcePath: '/coolctl-sim',
    logger: quietLogger,
    pkiDir: join(root, 'server-pki'),
  });
  ({ endpointUrl } = await server.start());
}, 60_000);

afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
  for (const u of Object.values(units))
    Object.assign(u.faults, { slowMs: 0, badStatus: null, faultWritesOnly: false });
});

afterAll(async () => {
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('OPC-UA calls past a deadline', () => {
  it('a slow unit drops a write when its hint passes, before our deadline: DEVICE_TIMEOUT, not applied', async () => {
    // The lease leaves 300 ms, the call 1 000 ms: the hint is 300 ms. Two timers end at that
    // instant, node-opcua's request timer (the hint) and the unit's (BadTimeout): whichever wins,
    // the caller hears DEVICE_TIMEOUT ~700 ms before our own deadline, and nothing was applied.
    const d = device(configs.hint, { timeoutMs: 1_000, maxApplyDelayMs: 50, retries: 0 });
    await d.open();
    await d.read();
    units.hint.faults.slowMs = 5_000;
    const before = journal.lastSeq;
    const leaseEndMs = performance.now() + 300;
    const t0 = performance.now();
    const err = await rejection(
      d.writeCommand(
        { epoch: 1, remoteEnable: true, fanPct: 40, supplySetpointC: 20 },
        { deadlineMs: () => leaseEndMs },
      ),
    );
    const elapsedMs = performance.now() - t0;
    expect(err).toMatchObject({ code: ErrorCodes.DEVICE_TIMEOUT, retryable: true });
    expect(elapsedMs).toBeLessThan(900); // the hint, not our deadline, ended it
    // The unit journals the call when it drops it, which may be just after the client gave up.
    const entries = await waitFor('the unit to drop the call', () => {
      const e = journal.since(before).entries.filter((x) => x.ahu === 'ahu-hint');
      return e.length > 0 ? e : null;
    });
    expect(entries.map((e) => [e.accepted, e.reason])).toEqual([[false, 'expired']]);
    expect(units.hint.status().epoch).toBe(0);
  });

  it.each(['BadTimeout', 'BadRequestTimeout'])(
    'WriteCommand answered %s (the slow-unit race, decided): DEVICE_TIMEOUT with the status, retryable',
    async (status) => {
      const d = device(configs.status);
      await d.open();
      // What the simulator answers a call whose hint passed, here on every call, so the answer
      // never has to beat our deadline by luck; reads stay Good.
      Object.assign(units.status.faults, { badStatus: status, faultWritesOnly: true });
      const err = await rejection(
        d.writeCommand({ epoch: 1, remoteEnable: true, fanPct: 40, supplySetpointC: 20 }),
      );
      expect(err).toMatchObject({ code: ErrorCodes.DEVICE_TIMEOUT, retryable: true, deviceCode: status });
      Object.assign(units.status.faults, { badStatus: null, faultWritesOnly: false });
      await d.writeCommand({ epoch: 1, remoteEnable: true, fanPct: 41, supplySetpointC: 20 });
      expect(units.status.status().fanCmdPct).toBe(41);
    },
  );

  it.each(['BadTimeout', 'BadRequestTimeout'])(
    'a unit whose values read %s: read() is DEVICE_TIMEOUT with the status, retryable',
    async (status) => {
      const d = device(configs.status);
      await d.open();
      await d.read();
      units.status.faults.badStatus = status;
      // The subscription's last Good samples answer read() until they are overdue.
      const err = await waitFor('read() to fail', () =>
        d.read().then(
          () => null,
          (e: unknown) => e as DeviceError,
        ),
      );
      expect(err).toMatchObject({ code: ErrorCodes.DEVICE_TIMEOUT, retryable: true, deviceCode: status });
      units.status.faults.badStatus = null;
      await waitFor('reads to work again', () => d.read().then(() => true));
    },
  );

  it('a real stale epoch is still DEVICE_FENCED, not a timeout', async () => {
    const d = device(configs.stale);
    await d.open();
    await d.writeCommand({ epoch: 5, remoteEnable: true, fanPct: 40, supplySetpointC: 20 });
    const err = await rejection(
      d.writeCommand({ epoch: 4, remoteEnable: true, fanPct: 41, supplySetpointC: 20 }),
    );
    expect(err).toMatchObject({
      code: ErrorCodes.DEVICE_FENCED,
      retryable: false,
      deviceCode: 'BadInvalidState',
      unitEpoch: 5,
    });
  });
});

describe('OPC-UA failure classification', () => {
  /** As node-opcua rejects a request the server answered with a ServiceFault. */
  const serviceFault = (status: (typeof StatusCodes)['BadTimeout']) =>
    Object.assign(new Error(` serviceResult = ${status.toString()}`), {
      response: new ServiceFault({ responseHeader: { serviceResult: status } }),
    });

  it('timeouts from the server, the client and the unit are DEVICE_TIMEOUT, retryable', () => {
    for (const err of [
      serviceFault(StatusCodes.BadTimeout),
      serviceFault(StatusCodes.BadRequestTimeout),
      new Error('Transaction has timed out ( timeout = 400 ms , request = CallRequest)'),
    ]) {
      expect(thrownError('ahu-x', 'write', err)).toMatchObject({
        code: ErrorCodes.DEVICE_TIMEOUT,
        retryable: true,
      });
    }
    for (const name of ['BadTimeout', 'BadRequestTimeout']) {
      expect(statusError('ahu-x', 'WriteCommand', name, { retryable: false })).toMatchObject({
        code: ErrorCodes.DEVICE_TIMEOUT,
        retryable: true,
        deviceCode: name,
      });
    }
  });

  it('other statuses keep their meaning', () => {
    expect(statusError('ahu-x', 'WriteCommand', 'BadInvalidState', { retryable: false })).toMatchObject({
      code: ErrorCodes.DEVICE_BAD_STATUS,
      retryable: false,
      deviceCode: 'BadInvalidState',
    });
    expect(statusError('ahu-x', 'read of mode', 'BadCommunicationError')).toMatchObject({
      code: ErrorCodes.DEVICE_BAD_STATUS,
      retryable: true,
    });
    expect(thrownError('ahu-x', 'read', serviceFault(StatusCodes.BadNodeIdUnknown))).toMatchObject({
      code: ErrorCodes.DEVICE_BAD_STATUS,
      deviceCode: 'BadNodeIdUnknown',
    });
    expect(thrownError('ahu-x', 'read', serviceFault(StatusCodes.BadTooManyOperations))).toMatchObject({
      code: ErrorCodes.DEVICE_UNREACHABLE,
      retryable: true,
    });
    expect(thrownError('ahu-x', 'read', serviceFault(StatusCodes.BadSessionClosed))).toMatchObject({
      code: ErrorCodes.DEVICE_UNREACHABLE,
      retryable: true,
    });
  });
});
