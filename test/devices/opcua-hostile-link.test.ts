// The OPC-UA adapter against a unit whose answers are well formed but misleading about the link:
// a point-level Bad status (a failed probe), a clock that steps back, a method that says Good and
// does nothing, a TCP listener that never says Hello. A node-opcua server in this process (real
// sockets, 127.0.0.1 only) whose variables answer the DataValue the test puts in them.

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StatusCodes } from 'node-opcua';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import type { RemoteLostEvent } from '../../src/devices/device-io.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import { OpcuaDevice, routeNodeOpcuaLogs } from '../../src/devices/opcua/opcua-device.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger, rejectionOf, waitFor } from '../helpers.ts';
import { startUnitServer, type UnitServer, type UnitState } from './opcua-unit-server.ts';

const UNIT = 'ahu-link';

let root = '';
let unitServer: UnitServer;
/** What the unit answers: its values, statuses, clock and WriteCommand (opcua-unit-server.ts). */
let unitState: UnitState;
const devices: OpcuaDevice[] = [];

function unit(extra: Partial<OpcuaAirHandler> = {}): OpcuaAirHandler {
  return { ...unitServer.ahu(UNIT), ...extra };
}

function device(ahu = unit(), registry?: Registry): OpcuaDevice {
  const d = new OpcuaDevice(ahu, {
    logger: quietLogger,
    pkiDir: join(root, 'client-pki'),
    ...(registry ? { metrics: new DeviceMetrics(registry) } : {}),
  });
  devices.push(d);
  return d;
}

function rejection(p: Promise<unknown>): Promise<DeviceError> {
  return rejectionOf(p, DeviceError);
}

const remote = (epoch: number, fanPct = 50) => ({ epoch, remoteEnable: true, fanPct, supplySetpointC: 18 });

beforeAll(async () => {
  routeNodeOpcuaLogs(quietLogger);
  root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-link-'));
  unitServer = await startUnitServer(root, [UNIT]);
  unitState = unitServer.units.get(UNIT)!;
}, 90_000);

afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
  unitServer.reset(UNIT);
});

afterAll(async () => {
  await unitServer?.server.shutdown(0);
  if (root) await rm(root, { recursive: true, force: true });
}, 30_000);

describe('OPC-UA adapter: what the unit says about a point is not what it says about the link', () => {
  it('a failed probe (BadSensorFailure on a measurement): that point absent, the rest read, the link up and remote control kept', async () => {
    const registry = new Registry();
    const d = device(unit(), registry);
    const lost: RemoteLostEvent[] = [];
    d.on('remote-lost', (e: RemoteLostEvent) => lost.push(e));
    await d.open();
    await d.writeCommand(remote(3));
    unitState.status.set('supplyC', StatusCodes.BadSensorFailure);
    const r = await waitFor('the broken probe to show', () =>
      d.read().then(
        (x) => (x.absent?.includes('supplyC') ? x : null),
        () => null,
      ),
    );
    expect(r.supplyC).toBeNaN();
    expect(r.absent).toEqual(['supplyC']);
    expect(r.quality).toBe('uncertain');
    // The unit's other figures are still what it says.
    expect(r.returnC).toBe(unitState.values.get('returnC'));
    expect(r.mode).toBe('remote');
    // The unit answers every request: more reads than the link rule's "down after 3" change nothing.
    for (let i = 0; i < 5; i++) expect((await d.read()).absent).toEqual(['supplyC']);
    expect(d.linkState).toBe('up');
    expect(lost).toEqual([]);
    expect(d.remoteControlLost).toBe(false);
    // Writes still reach the unit without a reassert.
    await d.writeCommand(remote(3, 60));
    expect(unitState.values.get('fanCmdPct')).toBe(60);
    const m = await registry.getSingleMetric('coolctl_device_absent_readings_total')?.get();
    expect(m?.values.find((v) => v.labels.point === 'supplyC')?.value ?? 0).toBeGreaterThanOrEqual(6);
    unitState.status.delete('supplyC');
    await waitFor('good reads again', () =>
      d.read().then(
        (x) => x.quality === 'good' && Number.isFinite(x.supplyC),
        () => false,
      ),
    );
  }, 30_000);

  it('a Bad status on a point with no stand-in (the epoch): reads fail typed, yet the link stays up', async () => {
    const registry = new Registry();
    const d = device(unit(), registry);
    const lost: RemoteLostEvent[] = [];
    d.on('remote-lost', (e: RemoteLostEvent) => lost.push(e));
    await d.open();
    await d.writeCommand(remote(3));
    unitState.status.set('epoch', StatusCodes.BadSensorFailure);
    const err = await waitFor('the failed point to show', () =>
      d.read().then(
        () => null,
        (e: unknown) => e as DeviceError,
      ),
    );
    expect(err.code).toBe(ErrorCodes.DEVICE_BAD_STATUS);
    expect(err.deviceCode).toBe('BadSensorFailure');
    expect(err.message).toContain('epoch');
    for (let i = 0; i < 5; i++) await rejection(d.read());
    expect(d.linkState).toBe('up');
    expect(lost).toEqual([]);
    const m = await registry.getSingleMetric('coolctl_device_errors_total')?.get();
    expect(m?.values.find((v) => v.labels.kind === 'bad_status')?.value ?? 0).toBeGreaterThanOrEqual(6);
    unitState.status.delete('epoch');
    await waitFor('good reads again', () =>
      d.read().then(
        (x) => x.quality === 'good',
        () => false,
      ),
    );
  }, 30_000);

  it('an Uncertain status reads as uncertain quality, never good', async () => {
    const d = device();
    await d.open();
    unitState.status.set('returnC', StatusCodes.UncertainLastUsableValue);
    await waitFor('uncertain quality', () =>
      d.read().then(
        (r) => r.quality === 'uncertain',
        () => false,
      ),
    );
  }, 30_000);

  it('a value outside what the point can be (3276.7 °C, 1e300 kW, −5 %): absent (NaN), uncertain, never good', async () => {
    const d = device();
    await d.open();
    unitState.values.set('supplyC', 3276.7);
    unitState.values.set('fanKw', 1e300);
    unitState.values.set('cwValvePct', -5);
    const r = await waitFor('the implausible values to show', () =>
      d.read().then(
        (x) => (x.absent?.length === 3 ? x : null),
        () => null,
      ),
    );
    expect(r.quality).toBe('uncertain');
    expect(r.supplyC).toBeNaN();
    expect(r.fanKw).toBeNaN();
    expect(r.cwValvePct).toBeNaN();
    expect(r.absent).toEqual(['supplyC', 'cwValvePct', 'fanKw']);
    expect(r.returnC).toBe(29.5);
    expect(d.linkState).toBe('up');
    unitState.values.set('supplyC', 18.2);
    unitState.values.set('fanKw', 3.1);
    unitState.values.set('cwValvePct', 40);
    await waitFor('good reads again', () =>
      d.read().then(
        (x) => x.quality === 'good' && x.absent === undefined && x.supplyC === 18.2,
        () => false,
      ),
    );
  }, 30_000);

  it('a unit whose clock steps back: later samples still count, and its fallback is seen', async () => {
    const d = device();
    const lost: RemoteLostEvent[] = [];
    d.on('remote-lost', (e: RemoteLostEvent) => lost.push(e));
    // The unit's clock runs an hour ahead, then NTP sets it right while we drive it.
    unitState.clockOffsetMs = 3_600_000;
    await d.open();
    await d.writeCommand(remote(4));
    expect((await d.read()).mode).toBe('remote');
    unitState.clockOffsetMs = 0;
    unitState.values.set('mode', 2); // its watchdog fell back to local control
    await waitFor('remote-lost after the fallback', () => lost.length > 0, { timeoutMs: 5_000 });
    expect(d.remoteControlLost).toBe(true);
    expect((await d.read()).mode).toBe('fallback');
  }, 30_000);

  it('WriteCommand answered Good but not applied: DEVICE_VERIFY_MISMATCH, sent once, link up', async () => {
    const d = device();
    await d.open();
    await d.writeCommand(remote(5));
    unitState.writeCommand = 'ignore';
    const calls = unitState.calls;
    const err = await rejection(d.writeCommand(remote(5, 70)));
    expect(err.code).toBe(ErrorCodes.DEVICE_VERIFY_MISMATCH);
    expect(err.message).toMatch(/heartbeat .* ≠|fan command 50 ≠ 70/);
    expect(unitState.calls).toBe(calls + 1);
    expect(d.linkState).toBe('up');
  }, 30_000);

  it('WriteCommand refused (unknown node, type mismatch, access denied): typed, not retried, link up', async () => {
    const registry = new Registry();
    const d = device(unit(), registry);
    await d.open();
    for (const status of [
      StatusCodes.BadNodeIdUnknown,
      StatusCodes.BadTypeMismatch,
      StatusCodes.BadUserAccessDenied,
    ]) {
      unitState.writeCommand = status;
      const calls = unitState.calls;
      const err = await rejection(d.writeCommand(remote(6)));
      expect(err.code, status.name).toBe(ErrorCodes.DEVICE_BAD_STATUS);
      expect(err.deviceCode, status.name).toBe(status.name);
      expect(err.retryable, status.name).toBe(false);
      expect(unitState.calls, status.name).toBe(calls + 1);
      expect(d.linkState, status.name).toBe('up');
    }
    const m = await registry.getSingleMetric('coolctl_device_errors_total')?.get();
    expect(m?.values.find((v) => v.labels.kind === 'bad_status')?.value).toBe(3);
  }, 30_000);
});

describe('OPC-UA adapter: a listener that takes the connection and never says Hello', () => {
  let mute: Server;
  const sockets = new Set<Socket>();
  let accepted = 0;

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((done) => (mute ? mute.close(() => done()) : done()));
  });

  it('open() fails by its deadline, reconnects are spaced out, and close() leaves no socket open', async () => {
    const port = await freePort('127.0.0.1');
    mute = createServer((s) => {
      accepted++;
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
      s.resume(); // reads what the client sends, answers nothing
    });
    await new Promise<void>((ok) => mute.listen(port, '127.0.0.1', ok));
    const d = device(unit({ endpoint: { url: `opc.tcp://127.0.0.1:${port}/mute`, securityMode: 'None' } }));
    const t0 = performance.now();
    const err = await rejection(d.open());
    const tookMs = performance.now() - t0;
    expect([ErrorCodes.DEVICE_UNREACHABLE, ErrorCodes.DEVICE_TIMEOUT]).toContain(err.code);
    // The connect deadline is 5 s (5 × timeoutMs, at least 5 s), plus one housekeeping tick.
    expect(tookMs).toBeLessThan(5_000 + 1_000);
    expect(d.linkState).toBe('down');
    // Each attempt holds at most one socket, and the abandoned one is closed.
    await waitFor('abandoned sockets closed', () => sockets.size <= 1, { timeoutMs: 5_000 });
    expect(accepted).toBeLessThanOrEqual(3);
    await d.close();
    devices.splice(devices.indexOf(d), 1);
    await waitFor('no socket left after close()', () => sockets.size === 0, { timeoutMs: 5_000 });
  }, 30_000);
});
