// `coolctl gateway` against hostile Modbus TCP clients, over real loopback sockets: MBAP headers
// whose length lies, a protocol id that is not Modbus, a thousand connections at once, many
// slowloris connections, and reads and writes of 0 or too many registers. What a user would notice:
// the gateway never crashes, its memory stays put, each bad input is an exception or a closed
// connection with a counter, and the controller on its own connection is answered throughout.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GATEWAY_FENCE, writeAddress } from '../../src/devices/modbus/gateway-fencing.ts';
import { waitFor } from '../helpers.ts';
import {
  dumbUnit,
  type GatewayProcess,
  mbap,
  metric,
  type RawConnection,
  rawConnection,
  rawRequest,
  startGateway,
  stopAll,
  writeConfig,
} from './harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gateway-hclients-'));
const WINDOW = writeAddress();
const READ = mbap(1, [3, 0, 100, 0, 2]);
let unitServer: Server;
let gw: GatewayProcess;
/** The controller's source address; the hostile clients come from 127.0.0.1. */
const CONTROLLER_HOST = '127.0.0.9';

const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gw.proc.pid}/status`, 'utf8'))![1]);

/** The controller's read, on a fresh connection from its own address: the answer PDU. */
async function controllerRead(): Promise<number[]> {
  const c = await rawConnection(gw.modbusPort, CONTROLLER_HOST);
  return new Promise((resolve, reject) => {
    let rx = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error('the controller was not answered in 3 s')), 3_000);
    c.socket.on('data', (d: Buffer) => {
      rx = Buffer.concat([rx, d]);
      if (rx.length >= 7 && rx.length >= 6 + rx.readUInt16BE(4)) {
        clearTimeout(timer);
        c.socket.destroy();
        resolve([...rx.subarray(7, 6 + rx.readUInt16BE(4))]);
      }
    });
    c.socket.write(READ);
  });
}

beforeAll(async () => {
  unitServer = await dumbUnit();
  const a = unitServer.address();
  gw = await startGateway(
    writeConfig(dir, 'gateway', {
      gateway: 'hostile-clients',
      listen: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      stateFile: join(dir, 'epochs.json'),
      maxConnections: 64,
      lines: [
        { name: 'converter', tcp: { host: '127.0.0.1', port: typeof a === 'object' && a ? a.port : 0 } },
      ],
      units: [{ id: 1, name: 'U1', line: 'converter' }],
    }),
  );
}, 60_000);

afterAll(async () => {
  await stopAll();
  await new Promise((r) => unitServer.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe('hostile Modbus TCP clients', () => {
  it('MBAP lengths that lie: too short closes the connection, too long times the frame out', async () => {
    const before = await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', {
      reason: 'frame_timeout',
    });
    const t0 = performance.now();
    expect(await rawRequest(gw.modbusPort, Buffer.from([0, 1, 0, 0, 0, 40, 1, 3, 0, 100, 0, 1]), 6_000)).toBe(
      'closed',
    );
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: 'frame_timeout' })).toBe(
      before + 1,
    );
    // Length 1 (no PDU) and 0: not MBAP.
    for (const len of [0, 1]) {
      const f = Buffer.from([0, 1, 0, 0, 0, len, 1, 3]);
      expect(await rawRequest(gw.modbusPort, f)).toBe('closed');
    }
    // A length of 2 carries a function code alone: an exception, not a crash.
    expect([...((await rawRequest(gw.modbusPort, mbap(1, [3]))) as Buffer)]).toEqual([0x83, 3]);
    expect([...((await rawRequest(gw.modbusPort, mbap(1, [16]))) as Buffer)]).toEqual([0x90, 1]);
    // Says 6 and carries 14: the bytes after the request are no MBAP header, so the connection is
    // dropped at once, the answer of the request before them with it.
    const malformed = await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', {
      reason: 'malformed_frame',
    });
    const lie = await rawConnection(gw.modbusPort);
    lie.socket.write(Buffer.concat([mbap(1, [3, 0, 100, 0, 1]), Buffer.from([0, 9, 0, 9, 0, 9, 1, 3])]));
    await waitFor('the lying connection closed', () => lie.closed());
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: 'malformed_frame' }),
    ).toBe(malformed + 1);
    expect(await controllerRead()).toEqual([3, 4, 0, 0, 0, 0]);
  });

  it('protocol ids other than 0 close the connection, counted; the controller is still answered', async () => {
    const before = await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', {
      reason: 'malformed_frame',
    });
    for (const protocol of [1, 0x00ff, 0xffff]) {
      const f = mbap(1, [3, 0, 100, 0, 1]);
      f.writeUInt16BE(protocol, 2);
      expect(await rawRequest(gw.modbusPort, f)).toBe('closed');
    }
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: 'malformed_frame' }),
    ).toBe(before + 3);
    expect(await controllerRead()).toEqual([3, 4, 0, 0, 0, 0]);
  });

  it('0 or 126+ registers, 0 or 2001+ coils, FC16 of 0 or 124: 0x03, nothing forwarded', async () => {
    const cases: [number[], number[]][] = [
      [
        [3, 0, 100, 0, 0],
        [0x83, 3],
      ],
      [
        [3, 0, 100, 0, 126],
        [0x83, 3],
      ],
      [
        [3, 0, 100, 0xff, 0xff],
        [0x83, 3],
      ],
      [
        [4, 0, 100, 0, 0],
        [0x84, 3],
      ],
      [
        [4, 0, 100, 0, 126],
        [0x84, 3],
      ],
      [
        [1, 0, 0, 0, 0],
        [0x81, 3],
      ],
      [
        [1, 0, 0, 0x07, 0xd1],
        [0x81, 3],
      ],
      [
        [2, 0, 0, 0x07, 0xd1],
        [0x82, 3],
      ],
      // FC16 to the window whose quantity is 0, or 124 (past the 123 of one FC16).
      [
        [16, WINDOW >> 8, WINDOW & 0xff, 0, 0, 0],
        [0x90, 3],
      ],
      [[16, WINDOW >> 8, WINDOW & 0xff, 0, 124, 248, ...new Array(248).fill(0)].slice(0, 253), [0x90, 3]],
      // A read running past 65535.
      [
        [3, 0xff, 0xff, 0, 2],
        [0x83, 2],
      ],
    ];
    for (const [pdu, answer] of cases)
      expect(
        [...((await rawRequest(gw.modbusPort, mbap(1, pdu))) as Buffer)],
        String(pdu.slice(0, 5)),
      ).toEqual(answer);
    // The epoch block's own length, answered here: past it runs into the window.
    const base = GATEWAY_FENCE.defaultBase;
    expect([
      ...((await rawRequest(gw.modbusPort, mbap(1, [3, base >> 8, base & 0xff, 0, 9]))) as Buffer),
    ]).toEqual([0x83, 2]);
  });

  it('1000 connections at once: bounded by the caps, memory put, the controller from its host gets in', async () => {
    const rss0 = rssKb();
    const conns: RawConnection[] = [];
    const opening: Promise<void>[] = [];
    for (let i = 0; i < 1_000; i++)
      opening.push(
        rawConnection(gw.modbusPort).then(
          (c) => void conns.push(c),
          () => undefined,
        ),
      );
    await Promise.all(opening);
    // 48 of 64 from one host (¾): each newcomer past them displaced the host's oldest silent one.
    await waitFor('the extra connections closed', () => conns.filter((c) => !c.closed()).length <= 48);
    expect(await metric(gw.httpUrl, 'coolctl_gateway_connections')).toBeLessThanOrEqual(48);
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: 'silent_connection_evicted' }),
    ).toBeGreaterThanOrEqual(900);
    expect(await controllerRead()).toEqual([3, 4, 0, 0, 0, 0]);
    expect(gw.proc.exitCode).toBeNull();
    expect(rssKb() - rss0).toBeLessThan(30_000);
    for (const c of conns) c.socket.destroy();
    await waitFor(
      'the slots given back',
      async () => (await metric(gw.httpUrl, 'coolctl_gateway_connections')) === 0,
    );
  });

  it('40 slowloris connections (one byte a second) are closed 2 s after their first byte; the controller is answered meanwhile', async () => {
    const conns: RawConnection[] = [];
    for (let i = 0; i < 40; i++) conns.push(await rawConnection(gw.modbusPort));
    const frame = mbap(1, [3, 0, 100, 0, 1]);
    let sent = 0;
    const t0 = performance.now();
    const drip = setInterval(() => {
      for (const c of conns) if (!c.closed()) c.socket.write(frame.subarray(sent, sent + 1));
      sent++;
    }, 1_000);
    try {
      expect(await controllerRead()).toEqual([3, 4, 0, 0, 0, 0]);
      await waitFor('every slowloris connection closed', () => conns.every((c) => c.closed()), {
        timeoutMs: 8_000,
      });
      expect(performance.now() - t0).toBeLessThan(6_000);
    } finally {
      clearInterval(drip);
    }
  }, 20_000);
});
