// The simulator's Modbus TCP listener (firmware-sim/ahu/modbus-tcp-listener.ts) against clients that
// hold a socket and do nothing with it, over real sockets: one that never sends, or sends half a
// frame and stops, is closed after the idle timeout and counted (`idleTimeouts`); a client that polls
// is never closed; the controller's own Modbus adapter keeps reading while silent clients fill every
// slot, because a newcomer at the cap takes a silent one's slot (`connectionsDisplaced`); only when
// every other slot is held by a client that has spoken and is not idle is a newcomer closed at once.
// Before, nothing closed a silent connection and the 65th of them shut every controller out.
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ModbusAhuServer, type ModbusAhuServerOptions } from '../../firmware-sim/ahu/modbus-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { ModbusAirHandler } from '../../src/config/site-schema.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import { resolvePointMap, STATUS_BLOCK_LEN } from '../../src/devices/modbus/point-map.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const IDLE_TIMEOUT_MS = 400;
const site = generateSite(demoShape);
const ahuConfig = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp')!;
const pm = resolvePointMap(undefined);
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startUnit(
  opts: Partial<ModbusAhuServerOptions>,
): Promise<{ server: ModbusAhuServer; port: number }> {
  const server = new ModbusAhuServer(new SimAirHandler(ahuConfig, new Journal(() => 0)), {
    host: '127.0.0.1',
    port: 0,
    unitId: ahuConfig.endpoint.unitId,
    logger: quietLogger,
    ...opts,
  });
  cleanups.push(() => server.stop());
  const { port } = await server.start();
  return { server, port };
}

/** A read of the status block, as the controller sends it. */
function statusRead(tid: number): Buffer {
  const b = pm.statusBlock;
  const n = STATUS_BLOCK_LEN;
  return Buffer.from([
    tid >> 8,
    tid & 255,
    0,
    0,
    0,
    6,
    ahuConfig.endpoint.unitId,
    0x03,
    b >> 8,
    b & 255,
    0,
    n,
  ]);
}

interface Held {
  socket: Socket;
  /** performance.now() when the server closed it. */
  closedAt: Promise<number>;
  readonly closed: boolean;
  /** Sends one request and resolves its answer frame. */
  ask(tid: number): Promise<Buffer>;
}

async function open(port: number): Promise<Held> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  cleanups.push(() => void socket.destroy());
  let closed = false;
  const closedAt = new Promise<number>((r) =>
    socket.once('close', () => {
      closed = true;
      r(performance.now());
    }),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('close', () => reject(new Error('closed before it connected')));
  });
  return {
    socket,
    closedAt,
    get closed() {
      return closed;
    },
    ask: (tid) =>
      new Promise<Buffer>((resolve, reject) => {
        let got = Buffer.alloc(0);
        const onClose = () => reject(new Error('connection closed before the answer'));
        const onData = (chunk: Buffer) => {
          got = Buffer.concat([got, chunk]);
          if (got.length >= 6 && got.length >= 6 + got.readUInt16BE(4)) {
            socket.off('data', onData);
            socket.off('close', onClose);
            resolve(got);
          }
        };
        socket.on('data', onData);
        socket.once('close', onClose);
        socket.write(statusRead(tid));
      }),
  };
}

describe('Modbus TCP listener: idle connections', () => {
  it('closes a client that never sends after the idle timeout, and counts it', async () => {
    const { server, port } = await startUnit({ idleTimeoutMs: IDLE_TIMEOUT_MS });
    const openedAt = performance.now();
    const silent = await open(port);
    const closedAt = await Promise.race([
      silent.closedAt,
      new Promise<number>((r) => setTimeout(() => r(-1), 10 * IDLE_TIMEOUT_MS)),
    ]);
    expect(closedAt, 'the silent connection was never closed').toBeGreaterThan(0);
    expect(closedAt - openedAt).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 20);
    expect(server.counters.idleTimeouts).toBe(1);
  });

  it('closes a client that sent half a frame and stopped, within the idle timeout', async () => {
    // A frame timeout far past the idle timeout: the idle timeout alone must close it.
    const { server, port } = await startUnit({ idleTimeoutMs: IDLE_TIMEOUT_MS, frameTimeoutMs: 60_000 });
    const half = await open(port);
    const sentAt = performance.now();
    half.socket.write(statusRead(1).subarray(0, 9));
    const closedAt = await Promise.race([
      half.closedAt,
      new Promise<number>((r) => setTimeout(() => r(-1), 10 * IDLE_TIMEOUT_MS)),
    ]);
    expect(closedAt, 'the half frame held its connection').toBeGreaterThan(0);
    expect(closedAt - sentAt).toBeLessThan(5 * IDLE_TIMEOUT_MS);
    expect(server.counters.idleTimeouts).toBe(1);
  });

  it('never closes a client that keeps polling, nor one whose answer is slow', async () => {
    const { server, port } = await startUnit({ idleTimeoutMs: IDLE_TIMEOUT_MS });
    const busy = await open(port);
    const until = performance.now() + 4 * IDLE_TIMEOUT_MS;
    let tid = 0;
    while (performance.now() < until) {
      expect((await busy.ask(++tid)).readUInt16BE(0)).toBe(tid);
      await new Promise((r) => setTimeout(r, IDLE_TIMEOUT_MS / 4));
    }
    // A request the unit takes longer than the idle timeout to answer is in flight, not idle.
    (server.unit as SimAirHandler).faults.slowMs = 2 * IDLE_TIMEOUT_MS;
    expect((await busy.ask(++tid)).readUInt16BE(0)).toBe(tid);
    expect(busy.closed).toBe(false);
    expect(server.counters.idleTimeouts).toBe(0);
  });
});

describe('Modbus TCP listener: the connection cap', () => {
  it('keeps the controller’s own adapter reading while silent clients come and go past the cap', async () => {
    const MAX = 4;
    const { server, port } = await startUnit({ idleTimeoutMs: IDLE_TIMEOUT_MS, maxConnections: MAX });
    const device = await createDevice(
      { ...ahuConfig, endpoint: { ...ahuConfig.endpoint, host: '127.0.0.1', port } },
      { logger: quietLogger },
    );
    cleanups.push(() => device.close());
    await device.open();
    const silent: Held[] = [];
    let reads = 0;
    let failures = 0;
    const until = performance.now() + 3 * IDLE_TIMEOUT_MS;
    while (performance.now() < until) {
      // Three times the cap in silent clients over the run, each held until the server drops it.
      for (let i = 0; i < 2; i++) silent.push(await open(port));
      try {
        const r = await device.read();
        if (r.quality === 'good') reads++;
        else failures++;
      } catch {
        failures++;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(failures).toBe(0);
    expect(reads).toBeGreaterThan(10);
    // Its one connection was never dropped: every other connection accepted was a silent one.
    expect(server.counters.connectionsAccepted).toBe(1 + silent.length);
    expect(server.counters.connectionsRejected).toBe(0);
    // Its own close now, so that the idle timeout closes only silent clients from here on.
    await device.close();
    await waitFor('every silent client closed', () => (silent.every((s) => s.closed) ? true : undefined));
    expect(server.counters.connectionsDisplaced + server.counters.idleTimeouts).toBe(silent.length);
    expect(server.counters.connectionsDisplaced).toBeGreaterThan(0);
  });

  it('lets a newcomer in over silent clients, and closes it at once only when every slot is in use', async () => {
    const MAX = 3;
    const { server, port } = await startUnit({ maxConnections: MAX, idleDisplaceAfterMs: 60_000 });
    const silent = [await open(port), await open(port), await open(port)];
    const newcomer = await open(port);
    expect((await newcomer.ask(1)).readUInt16BE(0)).toBe(1);
    // The oldest silent one gave its slot.
    await silent[0]!.closedAt;
    expect(server.counters.connectionsDisplaced).toBe(1);
    // The other slots go to clients that have spoken and are not idle long: a newcomer is refused.
    await silent[1]!.ask(2);
    await silent[2]!.ask(3);
    const late = await open(port);
    await late.closedAt;
    expect(server.counters.connectionsRejected).toBe(1);
    for (const [i, c] of [newcomer, silent[1]!, silent[2]!].entries())
      expect((await c.ask(10 + i)).readUInt16BE(0)).toBe(10 + i);
  });

  it('gives a slot held by a client idle past idleDisplaceAfterMs to a newcomer', async () => {
    const { server, port } = await startUnit({ maxConnections: 2, idleDisplaceAfterMs: 200 });
    const first = await open(port);
    const second = await open(port);
    await first.ask(1);
    await second.ask(2);
    await new Promise((r) => setTimeout(r, 250)); // both idle past the bound; first the longest
    await second.ask(3);
    const newcomer = await open(port);
    expect((await newcomer.ask(4)).readUInt16BE(0)).toBe(4);
    await first.closedAt;
    expect(second.closed).toBe(false);
    expect(server.counters.connectionsDisplaced).toBe(1);
  });
});
