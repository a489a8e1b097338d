// The gateway's HTTP side (/healthz, /metrics) against hostile clients, as a real process: a
// scanner holding many idle connections must not take the file descriptors fencing needs (the
// controllers' connections, the epoch state file), so the gateway caps and times them out; bad
// requests get a status, a counter and a log line.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFencedWrite, writeAddress } from '../../src/devices/modbus/gateway-fencing.ts';
import { ModbusExceptionError } from '../../src/devices/modbus/modbus-tcp.ts';
import { freePort } from '../../src/util/async.ts';
import { waitFor } from '../helpers.ts';
import {
  controllerClient,
  type GatewayProcess,
  metric,
  startGateway,
  stopAll,
  writeConfig,
} from './harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gw-http-'));
const stateFile = join(dir, 'epochs.json');
let gw: GatewayProcess;
let httpPort: number;
const idle: Socket[] = [];

beforeAll(async () => {
  gw = await startGateway(
    writeConfig(dir, 'gateway', {
      gateway: 'http-hostile',
      listen: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      stateFile,
      lines: [{ name: 'gone', tcp: { host: '127.0.0.1', port: await freePort('127.0.0.1') } }],
      units: [{ id: 1, line: 'gone' }],
    }),
  );
  httpPort = Number(new URL(gw.httpUrl).port);
  // A small gateway's descriptor budget, so that exhausting it takes 150 connections, not 1 000.
  const r = spawnSync('prlimit', ['--pid', String(gw.proc.pid), '--nofile=128:128']);
  expect(r.status, String(r.stderr)).toBe(0);
}, 60_000);

afterAll(async () => {
  for (const s of idle) s.destroy();
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

/** A connection that sends `bytes` (or nothing) and reports what came back and when it closed. */
function client(bytes?: string): Promise<{ socket: Socket; reply: () => string; closed: () => boolean }> {
  return new Promise((resolve) => {
    let reply = '';
    let closed = false;
    const socket = connect({ host: '127.0.0.1', port: httpPort });
    socket.on('data', (d: Buffer) => {
      reply += d.toString();
    });
    socket.on('error', () => undefined);
    socket.once('close', () => {
      closed = true;
    });
    socket.once('connect', () => {
      if (bytes) socket.write(bytes);
      resolve({ socket, reply: () => reply, closed: () => closed });
    });
    socket.once('error', () => resolve({ socket, reply: () => reply, closed: () => true }));
  });
}

describe('GatewayHttp under hostile clients', () => {
  it('150 idle connections: fencing keeps its descriptors, the extra displace the oldest and are counted, the rest time out', async () => {
    const conns = await Promise.all(Array.from({ length: 150 }, () => client()));
    for (const c of conns) idle.push(c.socket);
    // A leader's fenced write is persisted (the converter behind is down: 0x0A), not refused for
    // want of a descriptor (0x04) or cut off.
    const c = await controllerClient(gw.modbusPort, 1);
    const code = await c
      .writeRegisters(writeAddress(), encodeFencedWrite({ epoch: 10, fc: 6, address: 0, values: [1] }))
      .then(
        () => 0,
        (e: unknown) => (e instanceof ModbusExceptionError ? e.modbusCode : String(e)),
      );
    expect(code).toBe(0x0a);
    expect(JSON.parse(readFileSync(stateFile, 'utf8'))).toEqual({ version: 1, units: { 1: '10' } });
    // Prometheus is not kept out meanwhile: its scrape takes the slot of an idle connection.
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_http_refused_total', { reason: 'silent_connection_evicted' }),
    ).toBeGreaterThanOrEqual(100);
    // The silent ones are closed by the gateway, not held until the scanner lets go.
    await waitFor('every idle connection closed by the gateway', () => conns.every((x) => x.closed()), {
      timeoutMs: 15_000,
      intervalMs: 100,
    });
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_http_refused_total', { reason: 'silent_connection_evicted' }),
    ).toBeGreaterThanOrEqual(100);
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_http_refused_total', { reason: 'timeout' }),
    ).toBeGreaterThan(0);
    expect(
      gw.logs().some((l) => l.msg === 'http connection refused' && l.reason === 'silent_connection_evicted'),
    ).toBe(true);
  }, 60_000);

  it('unparsable and oversized requests: a 4xx, a counter, a log line; the next scrape is served', async () => {
    const before = await metric(gw.httpUrl, 'coolctl_gateway_http_refused_total', { reason: 'bad_request' });
    const garbage = await client('\x16\x03\x01\x02\x00GARBAGE\r\n\r\n');
    const huge = await client(`GET /metrics HTTP/1.1\r\nx-pad: ${'a'.repeat(70_000)}\r\n\r\n`);
    await waitFor('both closed', () => garbage.closed() && huge.closed());
    expect(garbage.reply()).toMatch(/^HTTP\/1.1 400/);
    expect(huge.reply()).toMatch(/^HTTP\/1.1 (400|431)/);
    expect(await metric(gw.httpUrl, 'coolctl_gateway_http_refused_total', { reason: 'bad_request' })).toBe(
      before + 2,
    );
    expect(gw.logs().some((l) => l.msg === 'http connection refused' && l.reason === 'bad_request')).toBe(
      true,
    );
    const res = await fetch(`${gw.httpUrl}/metrics`, { signal: AbortSignal.timeout(3_000) });
    expect(res.status).toBe(200);
  }, 30_000);
});
