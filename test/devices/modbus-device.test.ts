// The Modbus adapter against real servers over real sockets: the simulator's Modbus TCP unit (reads,
// fenced writes, stale epoch, watchdog fallback and deliberate re-assertion, every wire fault), the
// simulator's Modbus RTU unit over a socat pty pair, and Debian's pymodbus, which nobody here wrote.
// Every failure must be a typed error with the right link state, in bounded time; vitest fails the
// file on any unhandled rejection.
import { type ChildProcess, spawn } from 'node:child_process';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ModbusRtuAhuServer } from '../../firmware-sim/ahu/modbus-rtu-server.ts';
import { ModbusAhuServer } from '../../firmware-sim/ahu/modbus-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import type { ModbusAirHandler, ModbusRtuAirHandler } from '../../src/config/site-schema.ts';
import type { LinkEvent } from '../../src/devices/device-io.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import { ModbusDevice } from '../../src/devices/modbus/modbus-device.ts';
import { encodeStatus } from '../../src/devices/modbus/point-map.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { freePort } from '../../src/util/async.ts';
import { canConnect, quietLogger, rejectionOf, waitFor } from '../helpers.ts';
import { type PtyPair, ptyPair } from '../support/pty-pair.ts';

const SYSTEM_PYTHON = '/usr/bin/python3';
// A full GC on demand, without starting the test process with --expose-gc.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
const site = generateSite(demoShape);
const baseAhu = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp');
if (!baseAhu) throw new Error('demo site has no Modbus TCP air handler');
const journal = new Journal(() => 0);
const servers: { stop(): Promise<void> }[] = [];
const devices: ModbusDevice[] = [];

interface TcpUnit {
  unit: SimAirHandler;
  server: ModbusAhuServer;
  config: ModbusAirHandler;
}

async function startUnit(
  patch: Partial<ModbusAirHandler> = {},
  client: ModbusAirHandler['client'] = { timeoutMs: 500 },
): Promise<TcpUnit> {
  const unit = new SimAirHandler({ ...baseAhu!, ...patch }, journal);
  const server = new ModbusAhuServer(unit, { host: '127.0.0.1', port: 0, unitId: 1, logger: quietLogger });
  servers.push(server);
  const { port } = await server.start();
  const config: ModbusAirHandler = {
    ...baseAhu!,
    ...patch,
    endpoint: { host: '127.0.0.1', port, unitId: 1 },
    client,
  };
  return { unit, server, config };
}

function device(config: ModbusAirHandler | ModbusRtuAirHandler, metrics?: DeviceMetrics): ModbusDevice {
  const d = new ModbusDevice(config, { logger: quietLogger, ...(metrics ? { metrics } : {}) });
  devices.push(d);
  return d;
}

/** The DeviceError a promise rejects with (fails the test if it resolves or throws something else). */
function failure(p: Promise<unknown>): Promise<DeviceError> {
  return rejectionOf(p, DeviceError);
}

const remote = (epoch: number, patch: Partial<{ fanPct: number; supplySetpointC: number }> = {}) => ({
  epoch,
  remoteEnable: true,
  fanPct: 60,
  supplySetpointC: 20,
  ...patch,
});

const entriesSince = (seq: number) => journal.since(seq).entries;

afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

describe('Modbus TCP adapter against the simulated unit', () => {
  it('reads the status block in engineering units and reports the link up', async () => {
    const { unit, config } = await startUnit();
    const d = device(config);
    const links: LinkEvent[] = [];
    d.on('link', (e: LinkEvent) => links.push(e));
    expect(d.linkState).toBe('down');
    await d.open();
    const before = Date.now();
    const r = await d.read();
    expect(r).toMatchObject({
      mode: 'local',
      epoch: 0,
      quality: 'good',
      supplySetpointC: unit.config.localSetpointC,
      fanPct: unit.status().fanPct,
    });
    expect(r.returnC).toBeCloseTo(unit.status().returnC, 1);
    expect(r.sourceTimeMs).toBeGreaterThanOrEqual(before);
    expect(d.linkState).toBe('up');
    expect(links).toEqual([expect.objectContaining({ device: config.id, from: 'down', to: 'up' })]);
    expect(d.remoteControlLost).toBe(false);
  });

  it("a connection keeps nothing of the call that opened it: that caller's signal is collected", async () => {
    // At 1 000 units, every socket holding on to the call that connected it (its caller's signal,
    // its settled promise, an error and its stack) was ~1 MB of a 150 MB budget, for good.
    const { config } = await startUnit();
    const d = device(config);
    let ctl: AbortController | undefined = new AbortController();
    const signal = new WeakRef(ctl.signal);
    await d.read({ signal: ctl.signal }); // connects: no connection before this call
    ctl = undefined;
    expect((await d.read()).quality).toBe('good'); // the connection is still in use
    await waitFor("the connecting call's signal collected", async () => {
      collectGarbage();
      await new Promise((r) => setImmediate(r)); // a WeakRef holds its target until the job ends
      return signal.deref() === undefined;
    });
    expect((await d.read()).quality).toBe('good');
  });

  it('writes epoch, heartbeat and commands as one accepted, journaled block, with a fresh heartbeat each time', async () => {
    const { unit, server, config } = await startUnit();
    const d = device(config);
    const seq = journal.lastSeq;
    await d.writeCommand(remote(7, { fanPct: 55, supplySetpointC: 19.5 }));
    const first = entriesSince(seq);
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({
      ahu: config.id,
      epoch: 7,
      accepted: true,
      values: { remoteEnable: true, fanPct: 55, supplySetpointC: 19.5 },
    });
    expect(unit.mode).toBe('remote');
    expect(server.counters.writesAccepted).toBe(1);
    await d.writeCommand(remote(7, { fanPct: 56 }));
    const hb = entriesSince(seq).map((e) => e.values.heartbeat);
    expect(hb).toHaveLength(2);
    expect(hb[1]).toBe(((hb[0] as number) + 1) % 65536);
    expect((await d.read()).mode).toBe('remote');
  });

  it('surfaces a stale epoch as DEVICE_FENCED, tries once, and the unit keeps the newer leader', async () => {
    const { unit, config } = await startUnit();
    const newer = device(config);
    const older = device(config);
    await newer.writeCommand(remote(10, { fanPct: 70 }));
    const seq = journal.lastSeq;
    const err = await failure(older.writeCommand(remote(9, { fanPct: 30 })));
    expect(err.code).toBe(ErrorCodes.DEVICE_FENCED);
    expect(err.deviceCode).toBe(13);
    expect(err.retryable).toBe(false);
    expect(err.unitEpoch).toBe(10); // the proof: the unit's epoch, read back
    const attempts = entriesSince(seq);
    expect(attempts).toEqual([expect.objectContaining({ epoch: 9, accepted: false, reason: 'stale-epoch' })]);
    expect(unit.status()).toMatchObject({ epoch: 10, fanCmdPct: 70, mode: 'remote' });
    expect(older.linkState).toBe('up'); // the unit answered: the link is fine, the leader is not
  });

  it('a 0x0D the unit’s epoch does not back is an ordinary, retryable refusal, never DEVICE_FENCED', async () => {
    const { unit, config } = await startUnit();
    const d = device(config);
    await d.writeCommand(remote(30, { fanPct: 40 }));
    // Writes refused with 0x0D while the status reads fine: the epoch reads back 30, not above ours.
    unit.faults.exceptionCode = 13;
    unit.faults.faultWritesOnly = true;
    const seq = journal.lastSeq;
    let err = await failure(d.writeCommand(remote(30, { fanPct: 45 })));
    expect(err.code).toBe(ErrorCodes.DEVICE_EXCEPTION);
    expect(err.deviceCode).toBe(13);
    expect(err.retryable).toBe(true);
    expect(err.unitEpoch).toBeUndefined();
    expect(err.message).toMatch(/not proven: the unit holds epoch 30, not above ours \(30\)/);
    // Tried once (a refusal is not re-sent within the call); the proof is a read, not a write.
    expect(entriesSince(seq)).toEqual([
      expect.objectContaining({ epoch: 30, accepted: false, reason: 'fault-exception' }),
    ]);
    expect(d.linkState).toBe('up'); // the unit answered
    // Every request answered 0x0D (reads too): the epoch cannot be read back, so nothing is proven.
    unit.faults.faultWritesOnly = false;
    err = await failure(d.writeCommand(remote(30, { fanPct: 45 })));
    expect(err.code).toBe(ErrorCodes.DEVICE_EXCEPTION);
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/not proven: the unit's epoch could not be read back/);
    // Cleared: the same epoch is accepted again.
    unit.faults.exceptionCode = null;
    await d.writeCommand(remote(30, { fanPct: 45 }));
    expect(unit.status()).toMatchObject({ epoch: 30, fanCmdPct: 45, mode: 'remote' });
  });

  it('checks the lease guard right before the send: when it says no, nothing reaches the unit', async () => {
    const { unit, config } = await startUnit();
    const d = device(config);
    await d.writeCommand(remote(20, { fanPct: 55 }), { mayWrite: () => true });
    const seq = journal.lastSeq;
    let asked = 0;
    const err = await failure(
      d.writeCommand(remote(20, { fanPct: 90 }), {
        mayWrite: () => {
          asked++;
          return false;
        },
      }),
    );
    expect(err.code).toBe(ErrorCodes.NOT_LEADER);
    expect(err.retryable).toBe(false);
    expect(asked).toBe(1);
    expect(entriesSince(seq)).toEqual([]);
    expect(unit.status()).toMatchObject({ epoch: 20, fanCmdPct: 55 });
  });

  it('sees the watchdog fallback, refuses a plain write without touching the wire, re-asserts on request', async () => {
    const { unit, server, config } = await startUnit({ watchdogS: 0.2 });
    const d = device(config);
    const lostEvents: unknown[] = [];
    d.on('remote-lost', (e) => lostEvents.push(e));
    await d.writeCommand(remote(3));
    await waitFor('watchdog fallback', () => {
      unit.checkWatchdog();
      return unit.mode === 'fallback';
    });
    expect((await d.read()).mode).toBe('fallback');
    expect(d.remoteControlLost).toBe(true);
    expect(lostEvents).toHaveLength(1);

    const seq = journal.lastSeq;
    const writes = server.counters.writes;
    const refused = await failure(d.writeCommand(remote(3)));
    expect(refused.code).toBe(ErrorCodes.DEVICE_REFUSED);
    expect(refused.message).toMatch(/reassert/);
    expect(journal.lastSeq).toBe(seq);
    expect(server.counters.writes).toBe(writes);
    expect(unit.mode).toBe('fallback');

    await d.writeCommand(remote(3, { fanPct: 65 }), { reassert: true });
    expect(unit.mode).toBe('remote');
    expect(unit.status().fanCmdPct).toBe(65);
    expect(d.remoteControlLost).toBe(false);
    await d.writeCommand(remote(3, { fanPct: 66 })); // no reassert needed any more
  });

  it('goes down when the unit goes offline and up when it returns; remote control stays lost until re-asserted', async () => {
    const { unit, server, config } = await startUnit();
    const d = device(config);
    const links: string[] = [];
    d.on('link', (e: LinkEvent) => links.push(e.to));
    await d.writeCommand(remote(4));
    unit.faults.offline = true;
    await server.applyFaults();
    await waitFor('link down', () => d.linkState === 'down');
    expect(d.remoteControlLost).toBe(true);
    const offline = await failure(d.read());
    expect(offline.code).toBe(ErrorCodes.DEVICE_UNREACHABLE);

    unit.faults.offline = false;
    await server.applyFaults();
    await waitFor('link up again (background reconnect)', () => d.linkState === 'up');
    expect(links.slice(-2)).toEqual(['down', 'up']);
    expect(d.remoteControlLost).toBe(true);
    expect((await failure(d.writeCommand(remote(4)))).code).toBe(ErrorCodes.DEVICE_REFUSED);
    await d.writeCommand(remote(4), { reassert: true });
    expect(d.remoteControlLost).toBe(false);
    expect(unit.mode).toBe('remote');
  });
});

describe('Modbus TCP adapter: faults on the wire, each a typed error in bounded time', () => {
  it('offline: DEVICE_UNREACHABLE at once, link down; recovers when cleared', async () => {
    const { unit, server, config } = await startUnit();
    unit.faults.offline = true;
    await server.applyFaults();
    const d = device(config);
    const err = await failure(d.open());
    expect(err.code).toBe(ErrorCodes.DEVICE_UNREACHABLE);
    expect(err.retryable).toBe(true);
    expect(d.linkState).toBe('down');
    unit.faults.offline = false;
    await server.applyFaults();
    await waitFor('link up', () => d.linkState === 'up');
    expect((await d.read()).quality).toBe('good');
  });

  it('slow beyond the deadline: DEVICE_TIMEOUT within the deadline, no hang; works again once cleared', async () => {
    const { unit, config } = await startUnit({}, { timeoutMs: 300 });
    const d = device(config);
    await d.open();
    unit.faults.slowMs = 2000;
    const started = performance.now();
    const err = await failure(d.read());
    const elapsed = performance.now() - started;
    expect(err.code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    expect(err.message).toMatch(/no answer within 300 ms/);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(300 + 300);
    expect(['degraded', 'down']).toContain(d.linkState);
    unit.faults.slowMs = 0;
    await waitFor('link up', () => d.linkState === 'up');
    expect((await d.read()).quality).toBe('good');
  });

  it('exception: DEVICE_EXCEPTION with the code, link degraded, a write journaled as the fault', async () => {
    const { unit, config } = await startUnit();
    const d = device(config);
    await d.open();
    unit.faults.exceptionCode = 4;
    const err = await failure(d.read());
    expect(err.code).toBe(ErrorCodes.DEVICE_EXCEPTION);
    expect(err.deviceCode).toBe(4);
    expect(d.linkState).toBe('degraded');
    const seq = journal.lastSeq;
    expect((await failure(d.writeCommand(remote(2)))).deviceCode).toBe(4);
    expect(entriesSince(seq)).toEqual([
      expect.objectContaining({ accepted: false, reason: 'fault-exception' }),
    ]);
  });

  it('garbage: DEVICE_GARBAGE, fast; the write still landed (hence read-back); clean again when cleared', async () => {
    const { unit, config } = await startUnit({}, { timeoutMs: 2000 });
    const d = device(config);
    await d.open();
    unit.faults.garbage = true;
    const started = performance.now();
    const err = await failure(d.read());
    expect(err.code).toBe(ErrorCodes.DEVICE_GARBAGE);
    expect(performance.now() - started).toBeLessThan(1000); // not a timeout in disguise
    expect(['degraded', 'down']).toContain(d.linkState);
    const seq = journal.lastSeq;
    expect((await failure(d.writeCommand(remote(5)))).code).toBe(ErrorCodes.DEVICE_GARBAGE);
    expect(entriesSince(seq).every((e) => e.accepted)).toBe(true);
    expect(unit.mode).toBe('remote');
    unit.faults.garbage = false;
    await waitFor('link up', () => d.linkState === 'up');
    await d.writeCommand(remote(5));
  });

  it('connection reset mid-frame: a typed error, the link goes down, and it comes back', async () => {
    const { unit, config } = await startUnit();
    const d = device(config);
    await d.open();
    unit.faults.reset = true;
    const err = await failure(d.read());
    expect([ErrorCodes.DEVICE_UNREACHABLE, ErrorCodes.DEVICE_GARBAGE]).toContain(err.code);
    expect(d.linkState).not.toBe('up');
    unit.faults.reset = false;
    await waitFor('link up', () => d.linkState === 'up');
  });

  it('a connection the far end closes while idle is no link failure; one closed under a request is', async () => {
    const { config } = await startUnit();
    const proxy = await cuttingProxy(config.endpoint.port);
    const d = device({ ...config, endpoint: { ...config.endpoint, port: proxy.port } });
    const events: LinkEvent[] = [];
    d.on('link', (e: LinkEvent) => events.push(e));
    await d.read();
    expect(d.linkState).toBe('up');
    // Nothing in flight: a fencing gateway closing a connection that sent nothing for its idle timeout.
    proxy.cutAll();
    await waitFor('reconnected by itself', () => proxy.accepted === 2);
    await waitFor('read on the new connection', () => proxy.bytesUp > 12);
    await d.read();
    expect(events.filter((e) => e.to !== 'up')).toEqual([]);
    expect(d.linkState).toBe('up');
    // Under a request: the far end took it and closed before answering.
    proxy.cutOnNextRequest = true;
    await d.read().catch(() => undefined);
    expect(events.some((e) => e.to !== 'up' && /closed by the device/.test(e.reason))).toBe(true);
    await waitFor('link up again', () => d.linkState === 'up');
  });

  it('silent peer: DEVICE_TIMEOUT at the deadline', async () => {
    const { unit, config } = await startUnit({}, { timeoutMs: 300 });
    const d = device(config);
    await d.open();
    unit.faults.silent = true;
    const started = performance.now();
    const err = await failure(d.read());
    expect(err.code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    expect(performance.now() - started).toBeLessThan(300 + 300);
    expect(d.linkState).toBe('degraded');
  });

  it('wrong unit id: DEVICE_TIMEOUT whose message points at the unit id', async () => {
    const { config } = await startUnit({}, { timeoutMs: 300 });
    const d = device({ ...config, endpoint: { ...config.endpoint, unitId: 7 } });
    const err = await failure(d.open());
    expect(err.code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    expect(err.message).toMatch(/unit id 7/);
    expect(err.message).toMatch(/endpoint\.unitId/);
  });

  it('close() settles every call in flight or queued with DEVICE_CLOSED, and is idempotent', async () => {
    const { unit, server, config } = await startUnit({}, { timeoutMs: 10_000 });
    const d = device(config);
    await d.open();
    unit.faults.silent = true;
    const calls = [d.read(), d.read(), d.writeCommand(remote(1)), d.open()].map((p) => failure(p));
    await waitFor('the first request on the wire', () => server.counters.silentDrops === 1);
    const started = performance.now();
    await Promise.all([d.close(), d.close()]);
    const errors = await Promise.all(calls);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(errors.map((e) => e.code)).toEqual(Array(4).fill(ErrorCodes.DEVICE_CLOSED));
    expect((await failure(d.read())).code).toBe(ErrorCodes.DEVICE_CLOSED);
    expect(d.linkState).toBe('down');
  });

  it('counts transactions, errors by kind, latency and link state', async () => {
    const registry = new Registry();
    const metrics = new DeviceMetrics(registry);
    const { unit, config } = await startUnit({ watchdogS: 0.2 }, { timeoutMs: 300, retries: 0 });
    const d = device(config, metrics);
    const other = device(config, metrics);
    await d.open();
    await d.writeCommand(remote(20));
    await failure(other.writeCommand(remote(19))); // fenced
    unit.faults.exceptionCode = 4;
    await failure(d.read());
    unit.faults.exceptionCode = null;
    unit.faults.garbage = true;
    await failure(d.read());
    unit.faults.garbage = false;
    unit.faults.silent = true;
    await failure(d.read());
    unit.faults.silent = false;
    await waitFor('watchdog fallback', () => {
      unit.checkWatchdog();
      return unit.mode === 'fallback';
    });
    await waitFor('fallback seen', async () => (await d.read()).mode === 'fallback');
    await failure(d.writeCommand(remote(20))); // refused: not re-asserted
    const errors = await registry.getSingleMetricAsString('coolctl_device_errors_total');
    for (const kind of ['fenced', 'exception', 'garbage', 'timeout', 'refused']) {
      expect(errors).toMatch(new RegExp(`device="${config.id}",protocol="modbus-tcp",kind="${kind}"} [1-9]`));
    }
    const tx = await registry.getSingleMetricAsString('coolctl_device_transactions_total');
    expect(tx).toMatch(/op="write",outcome="ok"} [1-9]/);
    expect(tx).toMatch(/op="verify",outcome="ok"} [1-9]/);
    expect(tx).toMatch(/op="connect",outcome="ok"} [1-9]/);
    const latency = await registry.getSingleMetricAsString('coolctl_device_request_seconds');
    expect(latency).toMatch(/coolctl_device_request_seconds_count\{[^}]*op="read"\} [1-9]/);
    const link = await registry.getSingleMetricAsString('coolctl_device_link_state');
    expect(link).toMatch(new RegExp(`state="${d.linkState}"} 1`));
  });
});

describe('Modbus RTU adapter over a pty pair against the simulated RTU unit', () => {
  const pairs: PtyPair[] = [];

  afterEach(async () => {
    for (const pair of pairs.splice(0)) await pair.close();
  });

  /** A fresh serial line per test: socat ends the pair when either side closes its end. */
  async function startRtu(adapterUnitId = 3) {
    const pair = await ptyPair();
    pairs.push(pair);
    const { master: controllerEnd, device: deviceEnd } = pair;
    const config: ModbusRtuAirHandler = {
      ...baseAhu!,
      protocol: 'modbus-rtu',
      endpoint: { path: controllerEnd, simPath: deviceEnd, unitId: 3, baudRate: 19_200, parity: 'even' },
      client: { timeoutMs: 500 },
    };
    const unit = new SimAirHandler(config, journal);
    const server = new ModbusRtuAhuServer(unit, {
      path: deviceEnd,
      unitId: 3,
      parity: 'even',
      logger: quietLogger,
    });
    servers.push(server);
    await server.start();
    return { unit, server, config: { ...config, endpoint: { ...config.endpoint, unitId: adapterUnitId } } };
  }

  it('reads, writes a fenced command, and gets DEVICE_FENCED for a stale epoch', async () => {
    const { unit, config } = await startRtu();
    const d = device(config);
    await d.open();
    expect(d.protocol).toBe('modbus-rtu');
    expect(await d.read()).toMatchObject({ mode: 'local', epoch: 0, quality: 'good' });
    const seq = journal.lastSeq;
    await d.writeCommand(remote(12, { fanPct: 45, supplySetpointC: 21 }));
    expect(entriesSince(seq)).toEqual([
      expect.objectContaining({ protocol: 'modbus-rtu', epoch: 12, accepted: true }),
    ]);
    expect(unit.status()).toMatchObject({ mode: 'remote', fanCmdPct: 45, supplySetpointC: 21 });
    const fenced = await failure(d.writeCommand(remote(11)));
    expect(fenced.code).toBe(ErrorCodes.DEVICE_FENCED);
    expect(fenced.deviceCode).toBe(13);
    expect(unit.status().epoch).toBe(12);
  });

  it('a corrupted frame is DEVICE_GARBAGE (CRC), and the line works again when it clears', async () => {
    const { unit, config } = await startRtu();
    const d = device(config);
    await d.open();
    unit.faults.garbage = true;
    expect((await failure(d.read())).code).toBe(ErrorCodes.DEVICE_GARBAGE);
    unit.faults.garbage = false;
    await waitFor('link up', () => d.linkState === 'up');
    expect((await d.read()).quality).toBe('good');
  });

  it('another slave address gets no answer: DEVICE_TIMEOUT naming the unit id', async () => {
    const { config } = await startRtu(9);
    const d = device(config);
    const err = await failure(d.read());
    expect(err.code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    expect(err.message).toMatch(/unit id 9/);
  });
});

describe('Modbus TCP adapter against an independent server (Debian pymodbus 3.0)', () => {
  // A plain register store: 16 status registers at 100, 8 command registers at 0, any unit id.
  const script = `
import json, sys
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusSlaveContext, ModbusServerContext
from pymodbus.server import StartTcpServer
port, status = int(sys.argv[1]), json.loads(sys.argv[2])
block = ModbusSequentialDataBlock(0, [0] * 200)
block.setValues(100, status)
store = ModbusSlaveContext(hr=block, ir=block, zero_mode=True)
StartTcpServer(context=ModbusServerContext(slaves=store, single=True), address=("127.0.0.1", port))
`;
  let py: ChildProcess | undefined;
  let port = 0;
  const status = encodeStatus({
    mode: 'remote',
    fanPct: 62.5,
    supplySetpointC: 19,
    supplyC: 19.4,
    returnC: 29.1,
    cwValvePct: 41,
    alarms: 0,
    epoch: 33,
    heartbeat: 17,
    fanKw: 3.21,
    coolingKw: 85.3,
    watchdogS: 30,
    localSetpointC: 18,
  });

  beforeAll(async () => {
    port = await freePort('127.0.0.1');
    py = spawn(SYSTEM_PYTHON, ['-c', script, String(port), JSON.stringify(status)], { stdio: 'ignore' });
    py.on('error', () => undefined);
    await waitFor('pymodbus listening', () => canConnect(port), { timeoutMs: 20_000, intervalMs: 100 });
  });

  afterAll(() => {
    if (py && py.exitCode === null) py.kill('SIGTERM');
  });

  it('reads the status block and writes the command block, verified by read-back', async () => {
    const d = device({
      ...baseAhu!,
      endpoint: { host: '127.0.0.1', port, unitId: 1 },
      client: { timeoutMs: 2000, verifyWrites: true },
    });
    await d.open();
    expect(await d.read()).toMatchObject({
      mode: 'remote',
      fanPct: 62.5,
      supplySetpointC: 19,
      supplyC: 19.4,
      returnC: 29.1,
      epoch: 33,
      heartbeat: 17,
      fanKw: 3.21,
      coolingKw: 85.3,
      quality: 'good',
    });
    await d.writeCommand(remote(34, { fanPct: 48, supplySetpointC: 20.5 }));
    await d.writeCommand(remote(34, { fanPct: 49 }));
    expect(d.linkState).toBe('up');
  });
});

describe('the simulated hall serves a Modbus RTU unit', () => {
  it('on endpoint.simPath, reports it as modbus-rtu://…, and takes ahu-silent and ahu-reset faults', async () => {
    const pair = await ptyPair();
    const { master: controllerEnd, device: deviceEnd } = pair;
    const modbusUnits = site.airHandlers.filter((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp');
    const tcp = modbusUnits[0]!;
    const rtu: ModbusRtuAirHandler = {
      ...modbusUnits[1]!,
      protocol: 'modbus-rtu',
      endpoint: { path: controllerEnd, simPath: deviceEnd, unitId: 5 },
      client: { timeoutMs: 400 },
    };
    const sim = new Simulation({
      site: { ...site, airHandlers: [tcp, rtu] },
      ephemeralPorts: true,
      logger: quietLogger,
    });
    try {
      await sim.start();
      const state = sim.ahuStates().find((a) => a.id === rtu.id);
      expect(state?.endpoint).toBe(`modbus-rtu://${deviceEnd}/5`);
      const d = device(rtu);
      await d.writeCommand(remote(8, { fanPct: 52 }));
      expect(sim.units.get(rtu.id)?.status()).toMatchObject({ mode: 'remote', fanCmdPct: 52 });
      await sim.applyFaults([{ fault: 'ahu-silent', ahu: rtu.id }]);
      expect((await failure(d.read())).code).toBe(ErrorCodes.DEVICE_TIMEOUT);
      await sim.applyFaults([{ fault: 'ahu-silent', ahu: rtu.id, clear: true }]);
      await waitFor('link up', () => d.linkState === 'up');
      await expect(sim.applyFaults([{ fault: 'ahu-reset', ahu: tcp.id }])).resolves.toBeUndefined();
      expect(sim.units.get(tcp.id)?.faults.reset).toBe(true);
      await d.close();
    } finally {
      await sim.stop();
      await pair.close();
    }
  });

  it('refuses the Modbus-only faults for an OPC-UA unit', async () => {
    const opcua = site.airHandlers.find((a) => a.protocol === 'opcua');
    if (!opcua) throw new Error('demo site has no OPC-UA air handler');
    const sim = new Simulation({ site, logger: quietLogger });
    for (const fault of ['ahu-reset', 'ahu-silent'] as const) {
      await expect(sim.applyFaults([{ fault, ahu: opcua.id }])).rejects.toThrow(
        /applies to Modbus air handlers/,
      );
    }
  });
});

/**
 * A TCP relay in front of a unit that can cut its clients' connections: all at once (nothing in
 * flight), or the next one that sends a request, before the request reaches the unit.
 */
async function cuttingProxy(targetPort: number) {
  const clients = new Set<Socket>();
  const state = { port: 0, accepted: 0, bytesUp: 0, cutOnNextRequest: false, cutAll: () => {} };
  const server = createServer((c) => {
    state.accepted++;
    clients.add(c);
    const up = connect(targetPort, '127.0.0.1');
    c.on('data', (chunk: Buffer) => {
      if (state.cutOnNextRequest) {
        state.cutOnNextRequest = false;
        c.destroy();
        return;
      }
      state.bytesUp += chunk.length;
      up.write(chunk);
    });
    up.on('data', (chunk: Buffer) => c.write(chunk));
    const end = () => {
      clients.delete(c);
      c.destroy();
      up.destroy();
    };
    c.on('close', end).on('error', end);
    up.on('close', end).on('error', end);
  });
  state.cutAll = () => {
    for (const c of clients) c.destroy();
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  servers.push({
    stop: () =>
      new Promise<void>((resolve) => {
        state.cutAll();
        server.close(() => resolve());
      }),
  });
  return state;
}
