// `coolctl gateway` against a stale controller and an attacker, over real loopback sockets, in front
// of a unit that checks nothing (a Modbus TCP server in this process that records every request it
// is sent). What a user would notice: no write with an epoch below the newest — nor one no etcd
// leader can hold (0, or ≥ 2^63: a negative revision sent as a signed int64) — ever reaches the
// unit, however it is phrased (an older epoch, the epoch block written directly, a write split
// over two requests, FC5/6/15/22/23, broadcast or unknown unit ids, two controllers racing on one
// connection or two, a gateway restarted by kill -9); each refusal is a Modbus exception, a counter
// and a log line.
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEpochBlock, GATEWAY_FENCE, writeAddress } from '../../src/devices/modbus/gateway-fencing.ts';
import { waitFor } from '../helpers.ts';
import {
  dumbUnit,
  type GatewayProcess,
  mbap,
  metric,
  pipelined,
  rawRequest,
  startGateway,
  stopAll,
  writeConfig,
} from './harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gateway-hostile-'));
const stateFile = join(dir, 'epochs.json');
const BASE = GATEWAY_FENCE.defaultBase;
const WINDOW = writeAddress();

/** What reached the unit behind the gateway: MBAP unit id and request PDU, in arrival order. */
const reached: { unitId: number; pdu: number[] }[] = [];
let unitServer: Server;
let unitPort: number;
let configFile: string;
let gw: GatewayProcess;

/** The registers of one fenced FC6 to register 100 of the unit, with `epoch` as four raw words. */
function fencedWords(epoch: bigint, value: number): number[] {
  return [...[48n, 32n, 16n, 0n].map((s) => Number((epoch >> s) & 0xffffn)), 6, 100, 1, value];
}

/** The FC16 PDU writing `words` at `address`. */
function fc16(address: number, words: number[]): number[] {
  const pdu = [16, address >> 8, address & 0xff, 0, words.length, 2 * words.length];
  for (const w of words) pdu.push(w >> 8, w & 0xff);
  return pdu;
}

/** Sends one request on a fresh connection: the answer PDU as bytes. */
async function ask(unitId: number, pdu: number[], tid = 1): Promise<number[]> {
  const r = await rawRequest(gw.modbusPort, mbap(unitId, pdu, tid));
  if (!Buffer.isBuffer(r)) throw new Error(`no answer: ${r}`);
  return [...r];
}

/** A fenced FC6 of `value` to register 100 of `unitId`, carrying `epoch`. */
const write = (unitId: number, epoch: bigint, value: number) =>
  ask(unitId, fc16(WINDOW, fencedWords(epoch, value)));

/** The values of the FC6 writes that reached unit address `unitId`. */
const valuesReached = (unitId: number) =>
  reached.filter((r) => r.unitId === unitId && r.pdu[0] === 6).map((r) => (r.pdu[3]! << 8) | r.pdu[4]!);

async function epochOf(unitId: number): Promise<bigint> {
  const a = Buffer.from(await ask(unitId, [3, BASE >> 8, BASE & 0xff, 0, 8]));
  const words = Array.from({ length: 8 }, (_, i) => a.readUInt16BE(2 + 2 * i));
  return decodeEpochBlock(words).epoch;
}

beforeAll(async () => {
  unitServer = await dumbUnit(reached);
  const a = unitServer.address();
  unitPort = typeof a === 'object' && a ? a.port : 0;
  configFile = writeConfig(dir, 'gateway', {
    gateway: 'hostile',
    listen: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    stateFile,
    lines: [{ name: 'converter', tcp: { host: '127.0.0.1', port: unitPort } }],
    units: Array.from({ length: 9 }, (_, i) => ({ id: i + 1, name: `U${i + 1}`, line: 'converter' })),
  });
  gw = await startGateway(configFile);
}, 60_000);

afterAll(async () => {
  await stopAll();
  await new Promise((r) => unitServer.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe('a stale controller never reaches the unit', () => {
  it('an older epoch after a newer one: 0x0D, counted, logged, never sent', async () => {
    expect(await write(1, 10n, 1)).toEqual([16, WINDOW >> 8, WINDOW & 0xff, 0, 8]);
    expect(await write(1, 11n, 2)).toEqual([16, WINDOW >> 8, WINDOW & 0xff, 0, 8]);
    expect(await write(1, 10n, 3)).toEqual([0x90, 0x0d]);
    expect(await write(1, 11n, 4)).toEqual([16, WINDOW >> 8, WINDOW & 0xff, 0, 8]);
    expect(valuesReached(1)).toEqual([1, 2, 4]);
    expect(await metric(gw.httpUrl, 'coolctl_gateway_refused_stale_total', { unit: 'U1' })).toBe(1);
    await waitFor('the refusal logged', () =>
      gw.logs().find((l) => l.msg === 'fenced write refused: stale epoch (0x0D)' && l.unit === 'U1'),
    );
  });

  it('the epoch block cannot be written: not by FC16 at its start or across it, nor FC6 into it', async () => {
    const before = reached.length;
    // Backwards, straight into the block, and a window write that starts one register early.
    expect(await ask(1, fc16(BASE, [0, 0, 0, 1]))).toEqual([0x90, 0x01]);
    expect(await ask(1, fc16(BASE + 4, [1, 116, 0, 0, ...fencedWords(1n, 9)]))).toEqual([0x90, 0x01]);
    expect(await ask(1, fc16(WINDOW - 1, [0, ...fencedWords(1n, 9)]))).toEqual([0x90, 0x01]);
    expect(await ask(1, [6, BASE >> 8, (BASE & 0xff) + 3, 0, 1])).toEqual([0x86, 0x01]);
    expect(reached.length).toBe(before);
    expect(await epochOf(1)).toBe(11n);
  });

  it('a write split over two requests: the epoch alone is refused 0x03, the value alone 0x01', async () => {
    const before = reached.length;
    expect(await ask(1, fc16(WINDOW, [0, 0, 0, 12]))).toEqual([0x90, 0x03]);
    expect(await ask(1, fc16(WINDOW, [0, 0, 0, 12, 6, 100, 1]))).toEqual([0x90, 0x03]);
    expect(await ask(1, fc16(100, [5]))).toEqual([0x90, 0x01]);
    expect(await ask(1, [6, 0, 100, 0, 5])).toEqual([0x86, 0x01]);
    // The header's count must match what it carries: one more value than it says is refused.
    expect(await ask(1, fc16(WINDOW, [...fencedWords(12n, 5), 6]))).toEqual([0x90, 0x03]);
    expect(reached.length).toBe(before);
    expect(await epochOf(1)).toBe(11n);
  });

  it('every other write function is refused 0x01, FC23 (read/write multiple) into the window too', async () => {
    const before = reached.length;
    const w = fencedWords(99n, 7);
    const fc23 = [23, 0, 100, 0, 1, WINDOW >> 8, WINDOW & 0xff, 0, w.length, 2 * w.length];
    for (const x of w) fc23.push(x >> 8, x & 0xff);
    expect(await ask(1, fc23)).toEqual([0x97, 0x01]);
    expect(await ask(1, [22, 0, 100, 0, 0, 0xff, 0xff])).toEqual([0x96, 0x01]);
    expect(await ask(1, [5, 0, 1, 0xff, 0])).toEqual([0x85, 0x01]);
    expect(await ask(1, [15, 0, 1, 0, 1, 1, 1])).toEqual([0x8f, 0x01]);
    expect(reached.length).toBe(before);
    expect(await epochOf(1)).toBe(11n);
  });

  it('broadcast (unit id 0) and ids the gateway does not front: 0x0A, nothing sent, no epoch moved', async () => {
    const before = reached.length;
    for (const id of [0, 10, 247, 248, 255]) {
      expect(await write(id, 1_000n, 1)).toEqual([0x90, 0x0a]);
      expect(await ask(id, [3, 0, 100, 0, 1])).toEqual([0x83, 0x0a]);
    }
    expect(reached.length).toBe(before);
    expect(await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: 'unknown_unit' })).toBe(
      10,
    );
    for (const id of [1, 2]) expect(await epochOf(id)).toBeLessThan(1_000n);
  });
});

describe('epochs at the edges are compared as u64 and bounded as etcd revisions', () => {
  it('across the 2^32 and 2^53 word boundaries the order is exact', async () => {
    const two32 = 1n << 32n;
    const two53 = 1n << 53n;
    expect((await write(2, two32 - 1n, 1))[0]).toBe(16);
    expect((await write(2, two32, 2))[0]).toBe(16);
    expect(await write(2, two32 - 1n, 3)).toEqual([0x90, 0x0d]);
    expect((await write(2, two53, 4))[0]).toBe(16);
    // 2^53 + 1 and 2^53 are one double: a comparison in floating point would let 2^53 back in.
    expect((await write(2, two53 + 1n, 5))[0]).toBe(16);
    expect(await write(2, two53, 6)).toEqual([0x90, 0x0d]);
    expect(valuesReached(2)).toEqual([1, 2, 4, 5]);
    expect(await epochOf(2)).toBe(two53 + 1n);
  });

  it('epoch 0 is no leader’s: refused 0x03 even on a unit that never saw an epoch', async () => {
    expect(await write(3, 0n, 1)).toEqual([0x90, 0x03]);
    expect(valuesReached(3)).toEqual([]);
    expect(await epochOf(3)).toBe(0n);
  });

  it('a negative epoch sent as a signed int64 (≥ 2^63) is refused 0x03 and does not lock the unit out', async () => {
    expect((await write(4, 5n, 1))[0]).toBe(16);
    const before = await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: 'bad_window' });
    for (const e of [(1n << 64n) - 1n, (1n << 64n) - 5n, 1n << 63n])
      expect(await write(4, e, 2)).toEqual([0x90, 0x03]);
    expect(await epochOf(4)).toBe(5n);
    // The real leader still drives the unit.
    expect((await write(4, 6n, 3))[0]).toBe(16);
    expect(valuesReached(4)).toEqual([1, 3]);
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: 'bad_window' }),
    ).toBeGreaterThanOrEqual(before + 3);
    // `request refused` is logged at most once a second per reason: refused again until one is.
    await waitFor(
      'the refusal logged',
      async () =>
        gw
          .logs()
          .find(
            (l) => l.msg === 'request refused' && /epoch 18446744073709551615 is not/.test(String(l.detail)),
          ) ?? void (await write(4, (1n << 64n) - 1n, 2)),
      { intervalMs: 250 },
    );
    // The largest revision etcd can hand out is still an epoch.
    expect(valuesReached(4)).toEqual([1, 3]);
    expect((await write(4, (1n << 63n) - 1n, 4))[0]).toBe(16);
    expect(await write(4, 6n, 5)).toEqual([0x90, 0x0d]);
  });
});

describe('two controllers racing', () => {
  it('interleaved on one connection: each older write after a newer one is refused, in arrival order', async () => {
    const epochs = [20n, 21n, 20n, 21n, 22n, 20n, 21n, 22n];
    const frames = epochs.map((e, i) => mbap(5, fc16(WINDOW, fencedWords(e, 100 + i)), i + 1));
    const answers = await pipelined(gw.modbusPort, frames);
    const codes = epochs.map((_, i) => answers.get(i + 1)![0] === 16);
    expect(codes).toEqual([true, true, false, true, true, false, false, true]);
    expect(valuesReached(5)).toEqual([100, 101, 103, 104, 107]);
  });

  it('on two connections: once a newer epoch reached the unit, no older one does', async () => {
    const run = async (epoch: bigint, offset: number) => {
      for (let i = 0; i < 20; i++) await write(6, epoch, offset + i);
    };
    await Promise.all([run(30n, 1000), run(31n, 2000)]);
    const got = valuesReached(6);
    const firstNewer = got.findIndex((v) => v >= 2000);
    expect(firstNewer).toBeGreaterThanOrEqual(0);
    expect(got.slice(firstNewer).every((v) => v >= 2000)).toBe(true);
    expect(got.filter((v) => v >= 2000)).toHaveLength(20);
  });
});

describe('a restart does not let an old epoch in', () => {
  it('kill -9 right after a raise, restart: the older epoch is refused, the block says the newer', async () => {
    expect((await write(7, 40n, 1))[0]).toBe(16);
    expect((await write(7, 41n, 2))[0]).toBe(16);
    gw.proc.kill('SIGKILL');
    await waitFor('the gateway gone', () => gw.proc.exitCode !== null || gw.proc.signalCode !== null);
    gw = await startGateway(configFile);
    expect(await epochOf(7)).toBe(41n);
    expect(await write(7, 40n, 3)).toEqual([0x90, 0x0d]);
    expect(await epochOf(2)).toBe((1n << 53n) + 1n);
    expect(await write(2, 1n << 53n, 3)).toEqual([0x90, 0x0d]);
    expect(valuesReached(7)).toEqual([1, 2]);
  }, 30_000);
});
