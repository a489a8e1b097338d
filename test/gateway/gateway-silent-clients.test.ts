// `coolctl gateway` with its default slots (32 connections, 24 per host, 5 min idle timeout) against
// two hosts that open more connections than that and never send a byte (a scanner, a misconfigured
// HMI), or send one request each and then sit idle (a tool that asked once). What a user would
// notice: a new leader's fenced write is answered at once, not after the idle timeout; each
// connection that gives way is counted and logged; and a controller that has spoken keeps its
// connection however many silent ones arrive after it.
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeFencedWrite, writeAddress } from '../../src/devices/modbus/gateway-fencing.ts';
import { waitFor } from '../helpers.ts';
import {
  controllerClient,
  dumbUnit,
  type GatewayProcess,
  mbap,
  metric,
  type RawConnection,
  rawConnection,
  startGateway,
  stopAll,
  writeConfig,
} from './harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gateway-silent-'));
const UNIT = 1;
/** The defaults' slots (docs/fencing-gateway.md): what a scanner has to beat. */
const MAX_CONNECTIONS = 32;
/** Each silent host tries for more than its share (24) and, with the other, for every slot. */
const SILENT_PER_HOST = 40;
const SILENT_HOSTS = ['127.0.0.2', '127.0.0.3'];
/** A controller is answered this soon, silent connections or not (PRODUCT.md: a few seconds undriven at most). */
const PROMPT_MS = 2_000;
/** Stands in for idleDisplaceAfterMs' 65 s default (above any control period), so no test waits a minute. */
const IDLE_DISPLACE_MS = 200;
let unitServer: Server;
let gw: GatewayProcess;

const evictions = () =>
  metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: 'silent_connection_evicted' });
const idleEvictions = () =>
  metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: 'idle_connection_evicted' });
const openOnGateway = () => metric(gw.httpUrl, 'coolctl_gateway_connections');
/** Connections the gateway closed for want of a slot: displaced, or turned away at accept. */
async function turnedOut(): Promise<number> {
  let n = 0;
  for (const reason of ['silent_connection_evicted', 'too_many_connections', 'too_many_from_host'])
    n += await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason });
  return n;
}

/** A fenced FC16 of one register to the unit, as a leader of `epoch` sends it. */
const fenced = (epoch: number, value: number) =>
  encodeFencedWrite({ epoch, fc: 16, address: 0, values: [value] });

/** Each test's connections, closed after it whatever its outcome: the next starts with free slots. */
const silent: RawConnection[] = [];
const controllers: { destroy(): void }[] = [];
afterEach(async () => {
  for (const c of silent.splice(0)) c.socket.destroy();
  for (const c of controllers.splice(0)) c.destroy();
  await waitFor('the silent connections’ slots given back', async () => (await openOnGateway()) === 0);
});

/** SILENT_PER_HOST connections from each silent host, interleaved; none sends anything. */
async function flood(): Promise<RawConnection[]> {
  const conns: RawConnection[] = [];
  for (let i = 0; i < SILENT_PER_HOST; i++)
    for (const host of SILENT_HOSTS) conns.push(await rawConnection(gw.modbusPort, host));
  silent.push(...conns);
  return conns;
}

beforeAll(async () => {
  unitServer = await dumbUnit();
  const a = unitServer.address();
  gw = await startGateway(
    writeConfig(dir, 'gateway', {
      gateway: 'silent-clients',
      listen: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      stateFile: join(dir, 'epochs.json'),
      idleDisplaceAfterMs: IDLE_DISPLACE_MS,
      lines: [
        { name: 'converter', tcp: { host: '127.0.0.1', port: typeof a === 'object' && a ? a.port : 0 } },
      ],
      units: [{ id: UNIT, name: 'CRAH-1', line: 'converter' }],
    }),
  );
}, 60_000);

afterAll(async () => {
  for (const c of silent.splice(0)) c.socket.destroy();
  await stopAll();
  await new Promise((r) => unitServer.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe('silent connections against the default slots', () => {
  it('two hosts hold more silent connections than every bound: a new leader’s fenced write is answered at once', async () => {
    const before = await evictions();
    const beforeOut = await turnedOut();
    const conns = await flood();
    const overflow = conns.length - MAX_CONNECTIONS;
    await waitFor(
      'the gateway took every silent connection',
      async () => (await turnedOut()) === beforeOut + overflow,
    );
    expect(await openOnGateway()).toBe(MAX_CONNECTIONS);

    // Before the change the leader was closed at accept until the silent ones idled out (5 min).
    const t0 = performance.now();
    const leader = await controllerClient(gw.modbusPort, UNIT);
    controllers.push(leader);
    await leader.writeRegisters(writeAddress(), fenced(7, 1));
    expect(performance.now() - t0).toBeLessThan(PROMPT_MS);
    leader.destroy();
    controllers.pop();

    // 80 tried for 32 slots, then the leader: each past them took the slot of the oldest silent one.
    expect(await evictions()).toBe(before + overflow + 1);
    await waitFor(
      'the displaced connections closed',
      () => conns.filter((c) => c.closed()).length === overflow + 1,
    );
    // The oldest gave way: one host's first ones, never a connection opened after them.
    expect(conns.slice(-(MAX_CONNECTIONS - 1)).every((c) => !c.closed())).toBe(true);
    const logged = await waitFor('the eviction logged', () =>
      gw.logs().find((l) => l.msg === 'request refused' && l.reason === 'silent_connection_evicted'),
    );
    expect(logged.detail).toMatch(/^sent no whole MBAP frame; its slot went to 127\.0\.0\.\d+:\d+, at max/);
    expect(gw.proc.exitCode).toBeNull();
  });

  it('controllers that have spoken keep their connections through the flood, idle or not', async () => {
    const leader = await controllerClient(gw.modbusPort, UNIT);
    controllers.push(leader);
    await leader.writeRegisters(writeAddress(), fenced(8, 2));
    // A poller on one of the flooding hosts: proven by its read, so only that host's silent ones give way.
    const poller = await rawConnection(gw.modbusPort, SILENT_HOSTS[0]);
    silent.push(poller);
    const answers: Buffer[] = [];
    poller.socket.on('data', (d: Buffer) => answers.push(d));
    poller.socket.write(mbap(UNIT, [3, 0, 100, 0, 1], 1));
    await waitFor('the poller answered', () => answers.length > 0);

    const before = await evictions();
    const beforeOut = await turnedOut();
    const conns = await flood();
    // Two slots are proven: 30 left for the 80 silent ones, and only silent ones gave way.
    const overflow = conns.length - (MAX_CONNECTIONS - 2);
    await waitFor('the flood settled', async () => (await turnedOut()) === beforeOut + overflow);
    expect(await evictions()).toBe(before + overflow);
    expect(poller.closed()).toBe(false);
    // Both idle since, well within the idle timeout, and still served on the same connections.
    const t0 = performance.now();
    await leader.writeRegisters(writeAddress(), fenced(8, 3));
    expect(performance.now() - t0).toBeLessThan(PROMPT_MS);
    poller.socket.write(mbap(UNIT, [3, 0, 100, 0, 1], 2));
    await waitFor(
      'the poller answered again',
      () => answers.length > 1 || Buffer.concat(answers).length >= 22,
    );
    expect(poller.closed()).toBe(false);
  });

  it('two hosts hold every slot with connections that each asked once and went quiet: a new leader’s fenced write is answered at once', async () => {
    // 40 from each host, interleaved: one read each, its answer taken, then nothing.
    const asked: { conn: RawConnection; answered: () => boolean }[] = [];
    for (let i = 0; i < SILENT_PER_HOST; i++)
      for (const host of SILENT_HOSTS) {
        const conn = await rawConnection(gw.modbusPort, host);
        silent.push(conn);
        let answered = false;
        conn.socket.on('data', () => {
          answered = true;
        });
        conn.socket.write(mbap(UNIT, [3, 0, 100, 0, 1], i + 1));
        asked.push({ conn, answered: () => answered });
      }
    // Each was answered, or closed for want of a slot (turned away, or displaced once idle).
    await waitFor('every request answered or its connection closed', () =>
      asked.every((a) => a.answered() || a.conn.closed()),
    );
    expect(await openOnGateway()).toBe(MAX_CONNECTIONS);
    const quietSince = performance.now();
    await waitFor(
      'the held connections idle past idleDisplaceAfterMs',
      () => performance.now() - quietSince > IDLE_DISPLACE_MS,
    );
    const held = asked.filter((a) => !a.conn.closed());

    // Before, the leader was closed at accept until they idled out, 5 minutes later.
    const evictedBefore = await idleEvictions();
    const t0 = performance.now();
    const leader = await controllerClient(gw.modbusPort, UNIT);
    controllers.push(leader);
    await leader.writeRegisters(writeAddress(), fenced(9, 4));
    expect(performance.now() - t0).toBeLessThan(PROMPT_MS);
    // One idle connection gave way for it: counted, closed, logged.
    expect(await idleEvictions()).toBe(evictedBefore + 1);
    await waitFor('one held connection closed', () => held.filter((a) => a.conn.closed()).length === 1);
    const logged = await waitFor('the idle eviction logged', () =>
      gw.logs().find((l) => l.msg === 'request refused' && l.reason === 'idle_connection_evicted'),
    );
    expect(logged.detail).toMatch(
      /^nothing in flight and no byte received for \d+ ms \(idleDisplaceAfterMs 200\); its slot went to 127\.0\.0\.\d+:\d+, at max/,
    );
    expect(gw.proc.exitCode).toBeNull();
  });
});
