// A unit that comes back is driven again within the liveness bound (issue 15: a leader that claims a
// group must have an accepted write within half a watchdog period). While a unit's endpoint is
// unreachable, a leader keeps writing at its control period; every adapter must keep trying the
// endpoint at least once a second, however long it has been away, so that its return is noticed
// within about a second — not after a backoff that grew to several seconds. Measured on the wire: a
// TCP listener on the unit's port that counts connection attempts and closes each one at once.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModbusAhuServer } from '../../firmware-sim/ahu/modbus-server.ts';
import { OpcuaAhuServer } from '../../firmware-sim/ahu/opcua-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { ModbusAirHandler, OpcuaAirHandler } from '../../src/config/site-schema.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { ModbusDevice } from '../../src/devices/modbus/modbus-device.ts';
import { OpcuaDevice, routeNodeOpcuaLogs } from '../../src/devices/opcua/opcua-device.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const site = generateSite(demoShape);
const opcuaBase = site.airHandlers.find((a): a is OpcuaAirHandler => a.protocol === 'opcua')!;
const modbusBase = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp')!;
const journal = new Journal(() => 0);
/** The leader's control period in the chaos hall. */
const WRITE_PERIOD_MS = 200;
/** How long the endpoint stays away: long enough for any backoff to reach its ceiling. */
const AWAY_MS = 9_000;
/** The most time allowed between two tries of an endpoint that is away. */
const MAX_GAP_MS = 1_400;

let root = '';

beforeAll(async () => {
  routeNodeOpcuaLogs(quietLogger);
  root = await mkdtemp(join(tmpdir(), 'coolctl-reconnect-'));
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/** A listener that takes every connection and closes it at once, noting when each came. */
async function refusingEndpoint(port: number): Promise<{ attempts: number[]; close: () => Promise<void> }> {
  const attempts: number[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    attempts.push(performance.now());
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    attempts,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Writes like a leader every WRITE_PERIOD_MS until `stop` aborts; returns when the first write is accepted. */
async function writeLikeALeader(d: DeviceIo, stop: AbortSignal): Promise<number | null> {
  const deadline = performance.now() + AWAY_MS * 3;
  while (!stop.aborted && performance.now() < deadline) {
    const started = performance.now();
    try {
      await d.writeCommand(
        { epoch: 7, remoteEnable: true, fanPct: 55, supplySetpointC: 20 },
        { reassert: true, signal: AbortSignal.any([stop, AbortSignal.timeout(2_000)]) },
      );
      return performance.now();
    } catch {
      // away: the next period tries again
    }
    const rest = WRITE_PERIOD_MS - (performance.now() - started);
    if (rest > 0) await new Promise((r) => setTimeout(r, rest));
  }
  return null;
}

function largestGap(times: number[]): number {
  let gap = 0;
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
  return gap;
}

interface Case {
  name: string;
  device: (port: number) => DeviceIo;
  serve: (port: number) => Promise<{ stop: () => Promise<void> }>;
}

const cases: Case[] = [
  {
    name: 'OPC-UA',
    device: (port) =>
      new OpcuaDevice(
        {
          ...opcuaBase,
          id: 'ahu-away',
          endpoint: { ...opcuaBase.endpoint, url: `opc.tcp://127.0.0.1:${port}/coolctl-sim` },
          client: { timeoutMs: 1_000 },
        },
        { logger: quietLogger, pkiDir: join(root, 'client-pki'), clientName: 'test-reconnect' },
      ),
    serve: async (port) => {
      const unit = new SimAirHandler({ ...opcuaBase, id: 'ahu-away' }, journal);
      const s = new OpcuaAhuServer([unit], {
        host: '127.0.0.1',
        port,
        resourcePath: '/coolctl-sim',
        logger: quietLogger,
        pkiDir: join(root, 'server-pki'),
      });
      await s.start();
      return { stop: () => s.stop() };
    },
  },
  {
    name: 'Modbus TCP',
    device: (port) =>
      new ModbusDevice(
        {
          ...modbusBase,
          id: 'ahu-away-mb',
          endpoint: { host: '127.0.0.1', port, unitId: 1 },
          client: { timeoutMs: 500 },
        },
        { logger: quietLogger },
      ),
    serve: async (port) => {
      const unit = new SimAirHandler({ ...modbusBase, id: 'ahu-away-mb' }, journal);
      const s = new ModbusAhuServer(unit, { host: '127.0.0.1', port, unitId: 1, logger: quietLogger });
      await s.start();
      return { stop: () => s.stop() };
    },
  },
];

describe('a unit that was away is tried at least once a second, and driven again soon after it returns', () => {
  for (const c of cases) {
    it(`${c.name}: tries ${AWAY_MS / 1000} s of absence at most ${MAX_GAP_MS} ms apart, then writes`, async () => {
      const port = await freePort('127.0.0.1');
      const away = await refusingEndpoint(port);
      const d = c.device(port);
      const stop = new AbortController();
      let served: { stop: () => Promise<void> } | undefined;
      try {
        await d.open().catch(() => {}); // away from the start: open fails, the adapter keeps trying
        const firstWrite = writeLikeALeader(d, stop.signal);
        await waitFor(
          'the endpoint away long enough',
          () => (performance.now() - away.attempts[0]! > AWAY_MS ? true : null),
          {
            timeoutMs: AWAY_MS * 2,
          },
        );
        const attempts = [...away.attempts];
        await away.close();
        expect(attempts.length).toBeGreaterThan(3);
        expect(largestGap(attempts)).toBeLessThanOrEqual(MAX_GAP_MS);
        served = await c.serve(port);
        const back = performance.now();
        const wroteAt = await firstWrite;
        expect(wroteAt).not.toBeNull();
        // Back within a try's spacing plus one connect and one write.
        expect(wroteAt! - back).toBeLessThan(MAX_GAP_MS + 2_000);
      } finally {
        stop.abort();
        await d.close();
        await served?.stop();
        await away.close().catch(() => {});
      }
    }, 60_000);
  }
});
