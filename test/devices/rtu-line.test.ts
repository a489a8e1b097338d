// The controller's shared RS-485 line (src/devices/modbus/rtu-line.ts) against the simulator's RTU
// unit over a socat pty pair, with slave ids nobody answers beside it: one request at a time; a
// dead unit costs the others at most its own deadline per request, counted against it; a caller
// that gives up frees itself at once, and the line stays reserved for a request already sent; and
// ModbusDevices naming one path share one line. Several live units on one line:
// rtu-line-multidrop.test.ts.
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ModbusRtuAhuServer } from '../../firmware-sim/ahu/modbus-rtu-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import { parseSite } from '../../src/config/load-site.ts';
import { checkSiteRules } from '../../src/config/site-rules.ts';
import type { ModbusAirHandler, ModbusRtuAirHandler } from '../../src/config/site-schema.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import { ModbusDevice } from '../../src/devices/modbus/modbus-device.ts';
import { resolvePointMap, STATUS_BLOCK_LEN } from '../../src/devices/modbus/point-map.ts';
import type { BAUD_RATES } from '../../src/devices/modbus/rtu-frame.ts';
import {
  type OpenRtuPort,
  openRtuUnit,
  RtuLine,
  type RtuPortEvents,
  RtuTimeoutError,
  rtuLineOn,
} from '../../src/devices/modbus/rtu-line.ts';
import { type DeviceError, ErrorCodes } from '../../src/errors.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { type PtyPair, ptyPair } from '../support/pty-pair.ts';

const site = generateSite(demoShape);
const baseAhu = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp')!;
const pm = resolvePointMap(undefined);
const journal = new Journal(() => 0);

const pairs: PtyPair[] = [];
const servers: ModbusRtuAhuServer[] = [];
const closers: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  for (const s of servers.splice(0)) await s.stop();
  for (const pair of pairs.splice(0)) await pair.close();
});

/** A pty pair with the simulator's RTU unit at slave id 3 on the device end. */
async function simUnit() {
  const pair = await ptyPair();
  pairs.push(pair);
  const { master: controllerEnd, device: deviceEnd } = pair;
  const unit = new SimAirHandler(
    { ...baseAhu, id: 'AHU-RTU-3', client: { timeoutMs: 2_000 } } as ModbusAirHandler,
    journal,
  );
  const server = new ModbusRtuAhuServer(unit, {
    path: deviceEnd,
    unitId: 3,
    parity: 'even',
    logger: quietLogger,
  });
  servers.push(server);
  await server.start();
  return { controllerEnd, deviceEnd, server, unit };
}

const FC3_STATUS = Buffer.from([0x03, pm.statusBlock >> 8, pm.statusBlock & 0xff, 0, STATUS_BLOCK_LEN]);

/** Settles with when it settled and how. */
function timed(p: Promise<unknown>, t0: number) {
  return p.then(
    (v) => ({ ok: true as const, atMs: performance.now() - t0, value: v, err: undefined }),
    (err: unknown) => ({ ok: false as const, atMs: performance.now() - t0, value: undefined, err }),
  );
}

describe('a shared RTU line: a live unit and slave ids nobody answers', () => {
  it('a dead slave id costs the others at most its own deadline per request, counted against it', async () => {
    const { controllerEnd, server } = await simUnit();
    const line = new RtuLine(
      { path: controllerEnd, baudRate: 19_200, parity: 'even' },
      { logger: quietLogger },
    );
    closers.push(() => line.close());
    await line.open();
    // One status read alone: what a live request costs on this line.
    const s0 = performance.now();
    await line.request(3, FC3_STATUS, 1_000);
    const liveMs = performance.now() - s0;

    const DEAD_DEADLINE_MS = 150;
    const order = [9, 3, 9, 3, 9, 3, 3];
    const t0 = performance.now();
    const results = await Promise.all(
      order.map((id) => timed(line.request(id, FC3_STATUS, id === 9 ? DEAD_DEADLINE_MS : 2_000), t0)),
    );
    for (const [i, r] of results.entries()) {
      if (order[i] === 3) expect(r.ok).toBe(true);
      else expect(r.err).toBeInstanceOf(RtuTimeoutError);
    }
    // One at a time, in order: each result settles after the one before it.
    for (let i = 1; i < results.length; i++)
      expect(results[i]!.atMs).toBeGreaterThanOrEqual(results[i - 1]!.atMs);
    // Each dead request held the line for its deadline, no less, and the next went at once after it.
    for (let i = 0; i < order.length; i++) {
      if (order[i] !== 9) continue;
      const heldMs = results[i]!.atMs - (i > 0 ? results[i - 1]!.atMs : 0);
      expect(heldMs).toBeGreaterThanOrEqual(DEAD_DEADLINE_MS - 1);
      expect(heldMs).toBeLessThan(DEAD_DEADLINE_MS + liveMs + 100);
      const nextMs = results[i + 1]!.atMs - results[i]!.atMs;
      expect(nextMs).toBeLessThan(3 * liveMs + 100);
    }
    expect(line.unitCounters(9)).toMatchObject({ requests: 3, timeouts: 3, answers: 0 });
    expect(line.unitCounters(3)).toMatchObject({ requests: 5, timeouts: 0, answers: 5 });
    // The simulated unit saw each request once, one at a time (none queued beside another).
    expect(server.counters).toMatchObject({ reads: 5, wrongUnitId: 3, queueOverflows: 0 });
  });

  it('a caller that gives up is freed at once; a queued request never reaches the wire', async () => {
    const { controllerEnd, server } = await simUnit();
    const line = new RtuLine(
      { path: controllerEnd, baudRate: 19_200, parity: 'even' },
      { logger: quietLogger },
    );
    closers.push(() => line.close());
    await line.open();
    const t0 = performance.now();
    const dead = timed(line.request(9, FC3_STATUS, 300), t0);
    const ctl = new AbortController();
    const queued = timed(line.request(3, FC3_STATUS, 1_000, ctl.signal), t0);
    const sent = new AbortController();
    const onWire = timed(line.request(9, FC3_STATUS, 1_000, sent.signal), t0);
    ctl.abort(new Error('caller gave up'));
    const q = await queued;
    expect(q.atMs).toBeLessThan(100);
    expect((q.err as DeviceError).code).toBe(ErrorCodes.DEVICE_ABORTED);
    expect((await dead).err).toBeInstanceOf(RtuTimeoutError);
    // The second dead request is on the wire now; its caller leaves, the line stays reserved.
    await waitFor('on the wire', () => server.counters.wrongUnitId === 2, { intervalMs: 2 });
    const abortedAt = performance.now() - t0;
    sent.abort(new Error('caller gave up'));
    const w = await onWire;
    expect(w.atMs - abortedAt).toBeLessThan(100);
    expect(line.pending).toBe(1);
    const after = timed(line.request(3, FC3_STATUS, 1_000), t0);
    expect((await after).ok).toBe(true);
    // The live request waited for the abandoned one's deadline: a late answer could still have come.
    expect((await after).atMs).toBeGreaterThan(abortedAt + 500);
    expect(server.counters).toMatchObject({ reads: 1, wrongUnitId: 2 });
    expect(line.unitCounters(3)).toMatchObject({ requests: 2, abandoned: 1, answers: 1 });
    expect(line.unitCounters(9)).toMatchObject({ requests: 2, abandoned: 1, timeouts: 2 });
  });
});

describe('a shared RTU line whose port goes away', () => {
  // A USB adapter pulled out: a pty cannot show it (its slave end never errors), so the port here
  // is scripted, the one stand-in in this file.
  it('fails what is pending at once, tells its units, releases the port, and is replaced on the next open', async () => {
    const path = '/dev/ttyUSB-bench-unplugged';
    let events: RtuPortEvents | undefined;
    let portClosed = 0;
    const openPort: OpenRtuPort = async (_settings, ev) => {
      events = ev;
      return {
        write: () => undefined, // nobody answers
        close: async () => {
          portClosed++;
        },
      };
    };
    const unit = await openRtuUnit({ path, baudRate: 19_200, parity: 'even' }, 3, {
      logger: quietLogger,
      openPort,
    });
    closers.push(() => unit.close());
    const heard = new Promise<string>((resolve) => unit.once('close', resolve));
    unit.setTimeout(5_000);
    const t0 = performance.now();
    const pending = timed(unit.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN), t0);
    const queued = timed(unit.line.request(4, FC3_STATUS, 5_000), t0);
    events!.closed('port error: device disconnected');
    for (const r of [await pending, await queued]) {
      expect((r.err as Error).name).toBe('PortNotOpenError');
      expect(r.atMs).toBeLessThan(1_000);
    }
    expect(await heard).toMatch(/disconnected/);
    expect(portClosed).toBe(1);
    expect(rtuLineOn(path)).toBeUndefined();
    // The next unit on the path opens a fresh line, counts kept per path.
    const again = await openRtuUnit({ path, baudRate: 19_200, parity: 'even' }, 3, {
      logger: quietLogger,
      openPort,
    });
    closers.push(() => again.close());
    expect(again.line).not.toBe(unit.line);
    expect(again.line.unitCounters(3).requests).toBe(1);
  });
});

describe('the site file and shared serial lines', () => {
  it('refuses a baud rate no unit speaks (19 201), listing the standard rates', () => {
    const unit = (baudRate: number) => ({
      ...site,
      airHandlers: site.airHandlers.map((a, i) =>
        i === 0
          ? { ...a, protocol: 'modbus-rtu', endpoint: { path: '/dev/ttyUSB0', unitId: 1, baudRate } }
          : a,
      ),
    });
    expect(() => parseSite(stringify(unit(19_201)))).toThrow(
      /baudRate: must be equal to one of the allowed values \(allowed: 1200, 2400, [0-9, ]*19200, [0-9, ]* or 921600\)/,
    );
    expect(parseSite(stringify(unit(38_400))).airHandlers[0]).toMatchObject({
      endpoint: { baudRate: 38_400 },
    });
  });

  it('refuses two units at one slave id on a path, and units that disagree on its settings', () => {
    const rtu = (id: string, unitId: number, baudRate: (typeof BAUD_RATES)[number]): ModbusRtuAirHandler => ({
      ...baseAhu,
      id,
      protocol: 'modbus-rtu',
      endpoint: { path: '/dev/ttyUSB0', unitId, baudRate, parity: 'even' },
    });
    const ok = { ...site, airHandlers: [rtu('AHU-01', 1, 19_200), rtu('AHU-02', 2, 19_200)] };
    const rtuProblems = (s: typeof site) =>
      checkSiteRules(s).filter((p) => p.message.includes('serial line'));
    expect(rtuProblems(ok)).toEqual([]);
    const bad = {
      ...site,
      airHandlers: [rtu('AHU-01', 1, 19_200), rtu('AHU-02', 1, 19_200), rtu('AHU-03', 3, 9_600)],
    };
    expect(rtuProblems(bad)).toEqual([
      expect.objectContaining({
        path: '/airHandlers/1/endpoint/unitId',
        message: expect.stringMatching(/unit id 1 is already used by airHandlers\/0/),
      }),
      expect.objectContaining({
        path: '/airHandlers/2/endpoint',
        message: expect.stringMatching(/19200 baud.*airHandlers\/0, 9600 baud/),
      }),
    ]);
  });
});

describe('ModbusDevices on one serial path', () => {
  it('share one line: a dead unit times out, the live one beside it keeps working', async () => {
    const { controllerEnd, deviceEnd, unit } = await simUnit();
    const rtu = (id: string, unitId: number, timeoutMs: number): ModbusRtuAirHandler => ({
      ...baseAhu,
      id,
      protocol: 'modbus-rtu',
      endpoint: { path: controllerEnd, simPath: deviceEnd, unitId, baudRate: 19_200, parity: 'even' },
      client: { timeoutMs },
    });
    const registry = new Registry();
    const deps = { logger: quietLogger, metrics: new DeviceMetrics(registry) };
    const live = new ModbusDevice(rtu('AHU-LIVE', 3, 1_500), deps);
    const dead = new ModbusDevice(rtu('AHU-DEAD', 9, 300), deps);
    closers.push(
      () => live.close(),
      () => dead.close(),
    );
    await live.open();
    const deadRead = dead.read().then(
      () => undefined,
      (e: unknown) => e as DeviceError,
    );
    for (let i = 0; i < 5; i++) expect((await live.read()).quality).toBe('good');
    const err = await deadRead;
    expect(err?.code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    const line = rtuLineOn(controllerEnd);
    expect(line).toBeDefined();
    expect(line!.unitCounters(9).timeouts).toBeGreaterThanOrEqual(1);
    expect(line!.unitCounters(3).timeouts).toBe(0);
    // Each expiry on the line is counted against the unit that held it, on /metrics.
    const text = await registry.getSingleMetricAsString('coolctl_rtu_line_requests_total');
    const count = (unit: number, outcome: string) =>
      Number(
        new RegExp(`\\{line="${controllerEnd}",unit="${unit}",outcome="${outcome}"\\} (\\d+)`).exec(
          text,
        )?.[1],
      );
    expect(count(9, 'timeout')).toBeGreaterThanOrEqual(1);
    expect(count(3, 'timeout')).toBe(0);
    expect(count(3, 'answered')).toBeGreaterThanOrEqual(6);
    await live.writeCommand({ epoch: 4, remoteEnable: true, fanPct: 55, supplySetpointC: 20 });
    expect(unit.status()).toMatchObject({ mode: 'remote', fanCmdPct: 55, epoch: 4 });
  });
});
