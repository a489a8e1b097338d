// `coolctl gateway` against clients that hold what they do not use — the audit's two denial-of-
// service repros and their kin: silent connections filling every slot (they give theirs up to a
// newcomer: gateway-silent-clients.test.ts has the flood), one host taking every slot,
// a frame dribbled a byte at a time, and a client that pipelines requests but never reads the
// answers. What a user would notice: the controller still gets in, the gateway's memory stays put,
// and each closed connection is counted and logged. The epoch block is answered by the gateway
// itself, so the one line (a TCP converter nobody listens for) is never used.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeEpochBlock, GATEWAY_FENCE } from '../../src/devices/modbus/gateway-fencing.ts';
import { freePort } from '../../src/util/async.ts';
import { waitFor } from '../helpers.ts';
import {
  controllerClient,
  type GatewayProcess,
  mbap,
  metric,
  type RawConnection,
  rawConnection,
  startGateway,
  stopAll,
  writeConfig,
} from './harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gateway-conns-'));
const UNIT = 1;
/** FC3 of the whole epoch block: the audit's `00 01 00 00 00 06 01 03 F0 00 00 08`. */
const EPOCH_READ = mbap(UNIT, [3, 0xf0, 0x00, 0, 8]);

afterAll(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

/** Each test's raw connections, closed after it whatever its outcome: the next starts with free slots. */
const opened: RawConnection[] = [];
afterEach(() => {
  for (const c of opened.splice(0)) c.socket.destroy();
});

async function open(port: number, localAddress?: string): Promise<RawConnection> {
  const c = await rawConnection(port, localAddress);
  opened.push(c);
  return c;
}

async function gatewayWith(name: string, settings: Record<string, number>): Promise<GatewayProcess> {
  return startGateway(
    writeConfig(dir, name, {
      gateway: name,
      listen: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      stateFile: join(dir, `${name}.json`),
      ...settings,
      lines: [{ name: 'converter', tcp: { host: '127.0.0.1', port: await freePort('127.0.0.1') } }],
      units: [{ id: UNIT, name: 'CRAH-1', line: 'converter' }],
    }),
  );
}

/** The controller's proof read on a fresh connection: the epoch block, or the error it got. */
async function epochRead(gw: GatewayProcess): Promise<bigint | Error> {
  const c = await controllerClient(gw.modbusPort, UNIT);
  try {
    return decodeEpochBlock((await c.readHoldingRegisters(GATEWAY_FENCE.defaultBase, 8)).data).epoch;
  } catch (err) {
    return err as Error;
  } finally {
    c.destroy();
  }
}

const count = (gw: GatewayProcess, reason: string) =>
  metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason });

async function noConnections(gw: GatewayProcess): Promise<void> {
  await waitFor(
    'no connection open',
    async () => (await metric(gw.httpUrl, 'coolctl_gateway_connections')) === 0,
  );
}

describe('the gateway’s connection slots', () => {
  let gw: GatewayProcess;

  beforeAll(async () => {
    // The audit's setup: four slots. One host may take them all here, so idleness alone must free them.
    gw = await gatewayWith('idle', { maxConnections: 4, maxConnectionsPerHost: 4, idleTimeoutMs: 1_000 });
  }, 60_000);

  it('connections that send nothing fill every slot: the controller takes the oldest one’s slot at once, the rest idle out', async () => {
    const silent = await Promise.all([1, 2, 3, 4].map(() => open(gw.modbusPort)));
    await waitFor('four open', async () => (await metric(gw.httpUrl, 'coolctl_gateway_connections')) === 4);
    // Before, the controller was closed at accept until the silent ones idled out; now it displaces one.
    expect(await epochRead(gw)).toBe(0n);
    expect(await count(gw, 'silent_connection_evicted')).toBe(1);
    expect(await count(gw, 'too_many_connections')).toBe(0);
    await waitFor('one silent connection displaced', () => silent.filter((s) => s.closed()).length === 1);
    // The others keep their slots until nobody needs them for a second.
    await waitFor('every silent connection closed', () => silent.every((s) => s.closed()));
    expect(await metric(gw.httpUrl, 'coolctl_gateway_idle_connections_closed_total')).toBe(3);
    const logged = await waitFor('the idle close logged', () =>
      gw.logs().find((l) => l.msg === 'idle connection closed'),
    );
    expect(logged).toMatchObject({ level: 30, detail: 'no request for 1000 ms' });
  });

  it('a controller that reads more often than the idle timeout keeps its one connection', async () => {
    await noConnections(gw);
    const before = await metric(gw.httpUrl, 'coolctl_gateway_idle_connections_closed_total');
    const c = await controllerClient(gw.modbusPort, UNIT);
    // Three idle timeouts' worth of a control loop reading every 300 ms, on the same connection.
    for (let i = 0; i < 10; i++) {
      expect((await c.readHoldingRegisters(GATEWAY_FENCE.defaultBase, 8)).data).toHaveLength(8);
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(await metric(gw.httpUrl, 'coolctl_gateway_idle_connections_closed_total')).toBe(before);
    c.destroy();
  });
});

describe('the gateway against one host and against clients that do not read', () => {
  let gw: GatewayProcess;

  beforeAll(async () => {
    gw = await gatewayWith('hosts', { maxConnections: 4, maxConnectionsPerHost: 2, idleTimeoutMs: 3_000 });
  }, 60_000);

  it('one host holds at most maxConnectionsPerHost: its newcomers displace its own silent connections, and are closed once all have spoken; another host still gets in', async () => {
    // 127.0.0.2 is another host as far as the gateway can tell; it tries for every slot.
    const tries: RawConnection[] = [];
    for (let i = 0; i < 4; i++) tries.push(await open(gw.modbusPort, '127.0.0.2'));
    await waitFor('two of them closed', () => tries.filter((t) => t.closed()).length === 2, {
      timeoutMs: 2_000,
    });
    // The oldest silent ones gave way, each to a newcomer from the same host.
    expect(tries.map((t) => t.closed())).toEqual([true, true, false, false]);
    expect(await count(gw, 'silent_connection_evicted')).toBe(2);
    expect(await count(gw, 'too_many_from_host')).toBe(0);
    // The two left speak Modbus: the host's next connection finds nothing it may displace.
    const spoken = tries.slice(2);
    const answered = spoken.map(() => false);
    spoken.forEach((t, i) => {
      t.socket.on('data', () => {
        answered[i] = true;
      });
      t.socket.write(EPOCH_READ);
    });
    await waitFor('both answered', () => answered.every(Boolean));
    const late = await open(gw.modbusPort, '127.0.0.2');
    await waitFor('the newcomer closed', () => late.closed(), { timeoutMs: 2_000 });
    expect(spoken.every((t) => !t.closed())).toBe(true);
    expect(await count(gw, 'too_many_from_host')).toBe(1);
    expect(await epochRead(gw)).toBe(0n);
    const logged = await waitFor('the refusal logged', () =>
      gw.logs().find((l) => l.msg === 'request refused' && l.reason === 'too_many_from_host'),
    );
    expect(logged.detail).toBe(
      '2 open from 127.0.0.2, each has sent a request and none has been idle for idleDisplaceAfterMs 65000 (maxConnectionsPerHost 2)',
    );
  });

  it('a frame dribbled a byte at a time is closed at the frame timeout from its first byte', async () => {
    await noConnections(gw);
    const before = await count(gw, 'frame_timeout');
    const c = await open(gw.modbusPort);
    let answered = false;
    c.socket.on('data', () => {
      answered = true;
    });
    // Before the fix every byte restarted the 2 s frame timer: a byte each 1.9 s held a slot for good.
    // One byte every 400 ms: the whole 12-byte frame would take 4.4 s.
    let sent = 0;
    while (sent < EPOCH_READ.length && !c.closed() && !answered) {
      c.socket.write(EPOCH_READ.subarray(sent, ++sent));
      await new Promise((r) => setTimeout(r, 400));
    }
    await waitFor('the dribbling connection closed', () => c.closed() || answered);
    expect(answered).toBe(false);
    expect(sent).toBeLessThan(EPOCH_READ.length);
    expect(await count(gw, 'frame_timeout')).toBe(before + 1);
  });

  it('a client that pipelines reads and never reads the answers: the gateway stops reading it, stays small, and closes it', async () => {
    await noConnections(gw);
    const rss = () => metric(gw.httpUrl, 'process_resident_memory_bytes');
    const rssBefore = await rss();
    const c = await open(gw.modbusPort);
    c.socket.pause();
    // The audit's flood: 32 MB of epoch-block reads (2.8 million), all at once.
    const flood = Buffer.alloc(EPOCH_READ.length * 2_800_000).fill(EPOCH_READ);
    c.socket.write(flood);
    // Before the fix the gateway took all of it (and ~700 MB of answers); now it stops reading
    // once its answers back up and closes the connection when they make no progress.
    await waitFor(
      'the gateway to close the connection or take the whole flood',
      () => c.closed() || c.socket.writableLength === 0,
      { timeoutMs: 40_000, intervalMs: 100 },
    );
    expect(c.closed()).toBe(true);
    expect(await count(gw, 'slow_reader')).toBe(1);
    const grewMb = ((await rss()) - rssBefore) / 2 ** 20;
    expect(grewMb).toBeLessThan(100);
    const logged = await waitFor('the close logged', () =>
      gw.logs().find((l) => l.msg === 'request refused' && l.reason === 'slow_reader'),
    );
    expect(logged.detail).toMatch(/bytes of answers unread for 3000 ms/);
    expect(await epochRead(gw)).toBe(0n);
    expect(gw.proc.exitCode).toBeNull();
  }, 60_000);
});
