// `coolctl gateway` as a real process in front of the simulator's RS-485 line (a socat pty pair,
// native units at slave addresses 3 and 4, nothing at 5) and, over Modbus TCP, in front of Debian's
// pymodbus — a unit that checks nothing. Controllers are the controller's own MBAP client. What a
// user would notice: a deposed leader's writes never reach the unit (the simulator's journal shows
// what reached it), the gateway remembers the newest epoch across a restart, a dead unit costs the
// others at most its own deadline, bad frames are refused and counted without a crash, SIGTERM
// exits 0 at once, and a bad config lists every problem.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import {
  decodeEpochBlock,
  encodeFencedWrite,
  GATEWAY_FENCE,
  writeAddress,
} from '../../src/devices/modbus/gateway-fencing.ts';
import { ModbusExceptionError } from '../../src/devices/modbus/modbus-tcp.ts';
import { decodeStatus, encodeCommand } from '../../src/devices/modbus/point-map.ts';
import { ConfigError } from '../../src/errors.ts';
import { parseGatewayConfig } from '../../src/gateway/config.ts';
import { freePort } from '../../src/util/async.ts';
import { canConnect, waitFor } from '../helpers.ts';
import {
  controllerClient,
  type GatewayProcess,
  mbap,
  metric,
  pipelined,
  ptyPair,
  rawRequest,
  simLine,
  startGateway,
  stopAll,
  writeConfig,
} from './harness.ts';

const UNIT_TIMEOUT_MS = 300;
const dir = mkdtempSync(join(tmpdir(), 'coolctl-gateway-'));
const journal = new Journal(() => performance.now());
const stateFile = join(dir, 'epochs.json');
let units: Map<number, SimAirHandler>;
let configFile: string;
let gw: GatewayProcess;

/** A native command block as one fenced write: the epoch rides in the window and in the block. */
function command(epoch: number, heartbeat: number, fanPct: number): number[] {
  const values = encodeCommand({ epoch, heartbeat, remoteEnable: true, fanPct, supplySetpointC: 20 });
  return encodeFencedWrite({ epoch, fc: 16, address: 0, values });
}

async function exceptionOf(p: Promise<unknown>): Promise<number> {
  const err = await p.then(
    () => new Error('expected a Modbus exception'),
    (e: unknown) => e,
  );
  if (!(err instanceof ModbusExceptionError)) throw err;
  return err.modbusCode;
}

beforeAll(async () => {
  const { master, device } = await ptyPair(dir, 'rs485');
  ({ units } = await simLine(device, journal, [3, 4]));
  configFile = writeConfig(dir, 'gateway', {
    gateway: 'test-line',
    listen: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    stateFile,
    lines: [
      { name: 'rs485-a', serial: { path: master, baudRate: 19_200, parity: 'even' }, queueTimeoutMs: 2_000 },
    ],
    units: [
      { id: 3, name: 'AHU-3', line: 'rs485-a', timeoutMs: UNIT_TIMEOUT_MS },
      { id: 4, name: 'AHU-4', line: 'rs485-a', timeoutMs: UNIT_TIMEOUT_MS },
      { id: 5, name: 'AHU-DEAD', line: 'rs485-a', timeoutMs: UNIT_TIMEOUT_MS },
    ],
  });
  // The user's command; the restart below goes through the unit's entry.
  gw = await startGateway(configFile, 'cli');
}, 60_000);

afterAll(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('coolctl gateway on an RS-485 line of native units', () => {
  it('forwards only the newest epoch: the deposed leader is refused 0x0D and never reaches the unit', async () => {
    const older = await controllerClient(gw.modbusPort, 3);
    const newer = await controllerClient(gw.modbusPort, 3);
    await older.writeRegisters(writeAddress(), command(10, 1, 40));
    expect(units.get(3)!.status()).toMatchObject({ epoch: 10, fanCmdPct: 40, mode: 'remote' });
    const seq = journal.lastSeq;
    await newer.writeRegisters(writeAddress(), command(11, 2, 60));
    expect(await exceptionOf(older.writeRegisters(writeAddress(), command(10, 3, 45)))).toBe(0x0d);
    // The proof a controller reads back: the gateway's epoch block holds the newer epoch.
    const block = decodeEpochBlock((await older.readHoldingRegisters(GATEWAY_FENCE.defaultBase, 8)).data);
    expect(block.epoch).toBe(11n);
    // Reads pass through to the unit: its own status block, driven by the newer leader.
    const status = decodeStatus((await older.readHoldingRegisters(100, 16)).data);
    expect(status).toMatchObject({ epoch: 11, mode: 'remote' });
    expect(units.get(3)!.status()).toMatchObject({ epoch: 11, fanCmdPct: 60 });
    const reached = journal.since(seq).entries.filter((e) => e.ahu === 'AHU-RTU-3');
    expect(reached.map((e) => [e.epoch, e.accepted])).toEqual([[11, true]]);
    expect(await metric(gw.httpUrl, 'coolctl_gateway_refused_stale_total', { unit: 'AHU-3' })).toBe(1);
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_forwarded_total', { unit: 'AHU-3', kind: 'write' }),
    ).toBe(2);
    expect(await metric(gw.httpUrl, 'coolctl_gateway_unit_epoch', { unit: 'AHU-3' })).toBe(11);
    // Logs come through a pipe: wait for the line, do not assume it is there already.
    const refusal = await waitFor('the refusal logged', () =>
      gw.logs().find((l) => l.msg === 'fenced write refused: stale epoch (0x0D)'),
    );
    expect(refusal).toMatchObject({ unit: 'AHU-3', epoch: '10', newest: '11' });
  });

  it('racing leaders: once a newer epoch reached the unit, no older write reaches it', async () => {
    const older = await controllerClient(gw.modbusPort, 4);
    const newer = await controllerClient(gw.modbusPort, 4);
    const seq = journal.lastSeq;
    const outcomes = { older: 0, newer: 0, olderRefused: 0 };
    const run = async (c: typeof older, epoch: number, key: 'older' | 'newer') => {
      for (let i = 0; i < 15; i++) {
        const code = await exceptionOf(
          c.writeRegisters(writeAddress(), command(epoch, 100 * epoch + i, 30 + i)),
        ).catch(() => -1);
        if (code === -1) outcomes[key]++;
        else if (code === 0x0d && key === 'older') outcomes.olderRefused++;
        else throw new Error(`${key} write answered exception ${code}`);
      }
    };
    await Promise.all([run(older, 20, 'older'), run(newer, 21, 'newer')]);
    const reached = journal.since(seq).entries.filter((e) => e.ahu === 'AHU-RTU-4');
    const firstNewer = reached.findIndex((e) => e.epoch === 21);
    expect(firstNewer).toBeGreaterThanOrEqual(0);
    expect(reached.slice(firstNewer).every((e) => e.epoch === 21 && e.accepted)).toBe(true);
    expect(outcomes.newer).toBe(15);
    expect(outcomes.older + outcomes.olderRefused).toBe(15);
    expect(outcomes.olderRefused).toBeGreaterThan(0);
  });

  it('an older write queued behind a newer one is refused when its turn comes, not when it arrived', async () => {
    const dead = await controllerClient(gw.modbusPort, 5);
    const newer = await controllerClient(gw.modbusPort, 4);
    const older = await controllerClient(gw.modbusPort, 4);
    const count = (unit: string, kind: string) =>
      metric(gw.httpUrl, 'coolctl_gateway_requests_total', { unit, kind });
    const [deadReads, writes] = [await count('AHU-DEAD', 'read'), await count('AHU-4', 'fenced_write')];
    const seq = journal.lastSeq;
    // The dead unit holds the line for its deadline; both writes queue behind it, the newer first.
    const holding = exceptionOf(dead.readHoldingRegisters(100, 16));
    await waitFor(
      'the dead unit holding the line',
      async () => (await count('AHU-DEAD', 'read')) > deadReads,
    );
    const newerDone = newer.writeRegisters(writeAddress(), command(31, 3100, 50));
    await waitFor('the newer write queued', async () => (await count('AHU-4', 'fenced_write')) > writes);
    // Arriving now, the older write's epoch (30) is above the newest seen so far (21).
    const olderCode = exceptionOf(older.writeRegisters(writeAddress(), command(30, 3000, 40)));
    expect(await holding).toBe(0x0b);
    await newerDone;
    expect(await olderCode).toBe(0x0d);
    const reached = journal.since(seq).entries.filter((e) => e.ahu === 'AHU-RTU-4');
    expect(reached.map((e) => e.epoch)).toEqual([31]);
  });

  it('a dead unit id answers 0x0B; a live unit on the same line keeps answering within its deadline', async () => {
    const dead = await controllerClient(gw.modbusPort, 5);
    const live = await controllerClient(gw.modbusPort, 4);
    const deadCodes: number[] = [];
    const liveMs: number[] = [];
    let deadDone = false;
    const deadLoop = (async () => {
      for (let i = 0; i < 4; i++) deadCodes.push(await exceptionOf(dead.readHoldingRegisters(100, 16)));
      deadDone = true;
    })();
    for (let i = 0; i < 40 && !deadDone; i++) {
      const t0 = performance.now();
      await live.readHoldingRegisters(100, 16);
      liveMs.push(performance.now() - t0);
    }
    await deadLoop;
    expect(deadCodes).toEqual([0x0b, 0x0b, 0x0b, 0x0b]);
    expect(liveMs.length).toBeGreaterThan(3);
    // Behind one dead request at most: its deadline, then the live unit's own answer (within its
    // own deadline, or it would have been 0x0B), plus scheduling on a loaded 2-core machine.
    expect(Math.max(...liveMs)).toBeLessThan(2 * UNIT_TIMEOUT_MS + 150);
    expect(await metric(gw.httpUrl, 'coolctl_gateway_line_timeouts_total', { unit: 'AHU-DEAD' })).toBe(5);
    expect(await metric(gw.httpUrl, 'coolctl_gateway_line_timeouts_total', { unit: 'AHU-4' })).toBe(0);
    // One log line per state change, not one per timeout.
    const notAnswering = () =>
      gw.logs().filter((l) => l.msg === 'unit not answering' && l.unit === 'AHU-DEAD');
    await waitFor('the dead unit logged', () => notAnswering().length > 0);
    expect(notAnswering()).toHaveLength(1);
  });

  it('a dead unit with many requests waiting costs another unit one deadline, not one per request', async () => {
    const reads = () =>
      metric(gw.httpUrl, 'coolctl_gateway_requests_total', { unit: 'AHU-DEAD', kind: 'read' });
    const before = await reads();
    const flood = pipelined(
      gw.modbusPort,
      Array.from({ length: 6 }, (_, i) => mbap(5, [3, 0, 100, 0, 16], i + 1)),
    );
    await waitFor('six dead reads queued', async () => (await reads()) >= before + 6);
    const live = await controllerClient(gw.modbusPort, 4);
    const t0 = performance.now();
    await live.readHoldingRegisters(100, 16);
    // First come, first served would wait for all six (1.8 s); the units take turns on the line.
    expect(performance.now() - t0).toBeLessThan(2 * UNIT_TIMEOUT_MS + 150);
    expect([...(await flood).values()].every((a) => a[0] === 0x83 && a[1] === 0x0b)).toBe(true);
  });

  it('a unit answering garbage (bad CRC) gets 0x0B and a counter; it answers again once the line is clean', async () => {
    const c = await controllerClient(gw.modbusPort, 4);
    const unit = units.get(4)!;
    unit.faults.garbage = true;
    try {
      expect(await exceptionOf(c.readHoldingRegisters(100, 16))).toBe(0x0b);
    } finally {
      unit.faults.garbage = false;
    }
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_line_errors_total', { unit: 'AHU-4', kind: 'garbage' }),
    ).toBe(1);
    expect(decodeStatus((await c.readHoldingRegisters(100, 16)).data).epoch).toBe(31);
    const said = () =>
      gw
        .logs()
        .filter((l) => l.unit === 'AHU-4')
        .map((l) => l.msg);
    await waitFor('both state changes logged', () => said().includes('unit answering again'));
    expect(said()).toContain('unit not answering');
  });

  it('bad frames and requests get an exception or a closed connection, a counter and a log line — never a crash', async () => {
    const port = gw.modbusPort;
    const window = writeAddress();
    const fenced = encodeFencedWrite({ epoch: 11, fc: 6, address: 0, values: [1] });
    const fc16 = (unitId: number, address: number, words: number[], byteCount = 2 * words.length) =>
      mbap(unitId, [
        16,
        address >> 8,
        address & 0xff,
        0,
        words.length,
        byteCount,
        ...words.flatMap((w) => [w >> 8, w & 0xff]),
      ]);
    const cases: { what: string; bytes: Buffer; expect: 'closed' | number[]; reason: string }[] = [
      {
        what: 'protocol id 7',
        bytes: Buffer.from([0, 1, 0, 7, 0, 6, 3, 3, 0, 100, 0, 1]),
        expect: 'closed',
        reason: 'malformed_frame',
      },
      {
        what: 'MBAP length 300',
        bytes: Buffer.concat([Buffer.from([0, 1, 0, 0, 0x01, 0x2c, 3]), Buffer.alloc(299)]),
        expect: 'closed',
        reason: 'oversized_frame',
      },
      {
        what: 'read of 200 registers',
        bytes: mbap(3, [3, 0, 100, 0, 200]),
        expect: [0x83, 3],
        reason: 'oversized_request',
      },
      { what: 'read PDU cut short', bytes: mbap(3, [3, 0, 100]), expect: [0x83, 3], reason: 'bad_pdu' },
      {
        what: 'FC16 byte count ≠ quantity',
        bytes: fc16(3, window, fenced, 4),
        expect: [0x90, 3],
        reason: 'bad_pdu',
      },
      {
        what: 'window write with target function 7',
        bytes: fc16(3, window, [0, 0, 0, 11, 7, 0, 1, 1]),
        expect: [0x90, 3],
        reason: 'bad_window',
      },
      {
        what: 'plain FC16 (no epoch)',
        bytes: fc16(3, 0, [1, 2]),
        expect: [0x90, 1],
        reason: 'unfenced_write',
      },
      {
        what: 'plain FC6 (no epoch)',
        bytes: mbap(3, [6, 0, 0, 0, 1]),
        expect: [0x86, 1],
        reason: 'unfenced_write',
      },
      {
        what: 'read straddling the window',
        bytes: mbap(3, [3, window >> 8, (window - 2) & 0xff, 0, 4]),
        expect: [0x83, 2],
        reason: 'bad_window',
      },
      {
        what: 'function 0x2B',
        bytes: mbap(3, [0x2b, 14, 1, 0]),
        expect: [0xab, 1],
        reason: 'unsupported_function',
      },
      {
        what: 'unit id nobody has',
        bytes: mbap(99, [3, 0, 100, 0, 1]),
        expect: [0x83, 0x0a],
        reason: 'unknown_unit',
      },
    ];
    for (const c of cases) {
      const before = await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: c.reason });
      const got = await rawRequest(port, c.bytes);
      expect(got === 'closed' ? 'closed' : [...(got as Buffer)], c.what).toEqual(c.expect);
      expect(
        await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: c.reason }),
        c.what,
      ).toBe(before + 1);
    }
    // An incomplete frame is closed after the frame timeout.
    const t0 = performance.now();
    expect(await rawRequest(port, Buffer.from([0, 1, 0, 0, 0, 6, 3]), 5_000)).toBe('closed');
    expect(performance.now() - t0).toBeLessThan(4_000);
    expect(await metric(gw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: 'frame_timeout' })).toBe(
      1,
    );
    // Still serving, same process.
    expect(gw.proc.exitCode).toBeNull();
    const c = await controllerClient(port, 3);
    expect(decodeStatus((await c.readHoldingRegisters(100, 16)).data).epoch).toBe(11);
    await waitFor('a refusal logged', () =>
      gw.logs().some((l) => l.msg === 'request refused' && l.reason === 'malformed_frame'),
    );
    const health = await fetch(`${gw.httpUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', gateway: 'test-line' });
  });

  it('SIGTERM exits 0 at once; the restarted gateway still refuses the deposed leader', async () => {
    const seq = journal.lastSeq;
    const stopped = await gw.stop();
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(3_000);
    expect(JSON.parse(readFileSync(stateFile, 'utf8'))).toEqual({ version: 1, units: { 3: '11', 4: '31' } });
    gw = await startGateway(configFile);
    expect(
      await waitFor('the state loaded', () => gw.logs().find((l) => l.msg === 'epoch state loaded')),
    ).toMatchObject({
      epochs: { 3: '11', 4: '31' },
    });
    const deposed = await controllerClient(gw.modbusPort, 3);
    expect(await exceptionOf(deposed.writeRegisters(writeAddress(), command(10, 7, 45)))).toBe(0x0d);
    expect(
      decodeEpochBlock((await deposed.readHoldingRegisters(GATEWAY_FENCE.defaultBase, 8)).data).epoch,
    ).toBe(11n);
    expect(journal.since(seq).entries.filter((e) => e.epoch === 10)).toEqual([]);
    // The current leader goes on as before.
    const leader = await controllerClient(gw.modbusPort, 3);
    await leader.writeRegisters(writeAddress(), command(11, 8, 55));
    expect(units.get(3)!.status()).toMatchObject({ epoch: 11, fanCmdPct: 55 });
  });
});

describe('coolctl gateway with an unreadable epoch state file', () => {
  it('refuses to start (exit 1) and says which file and what to do, rather than guess the epochs', () => {
    const file = writeConfig(dir, 'corrupt', {
      gateway: 'corrupt',
      listen: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      stateFile: join(dir, 'corrupt.json'),
      lines: [{ name: 'tcp', tcp: { host: '127.0.0.1', port: 1 } }],
      units: [{ id: 1, line: 'tcp' }],
    });
    writeFileSync(join(dir, 'corrupt.json'), '{"version":1,"units":{"1":"12');
    const res = spawnSync(process.execPath, ['src/cli.ts', 'gateway', '--config', file], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/corrupt\.json is not valid/);
    expect(res.stderr).toMatch(/Restore it/);
  });
});

describe('coolctl gateway over Modbus TCP in front of a unit that checks nothing (Debian pymodbus)', () => {
  // A plain register store: coils and holding registers 0..199, any unit id.
  const script = `
import sys
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusSlaveContext, ModbusServerContext
from pymodbus.server import StartTcpServer
store = ModbusSlaveContext(co=ModbusSequentialDataBlock(0, [0] * 200), hr=ModbusSequentialDataBlock(0, [0] * 200), zero_mode=True)
StartTcpServer(context=ModbusServerContext(slaves=store, single=True), address=("127.0.0.1", int(sys.argv[1])))
`;
  let py: ChildProcess | undefined;
  let tcpGw: GatewayProcess;

  beforeAll(async () => {
    const port = await freePort('127.0.0.1');
    py = spawn('/usr/bin/python3', ['-c', script, String(port)], { stdio: 'ignore' });
    py.on('error', () => undefined);
    await waitFor('pymodbus listening', () => canConnect(port), { timeoutMs: 20_000, intervalMs: 100 });
    const file = writeConfig(dir, 'tcp-gateway', {
      gateway: 'tcp-front',
      listen: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      stateFile: join(dir, 'tcp-epochs.json'),
      lines: [
        { name: 'pymodbus', tcp: { host: '127.0.0.1', port } },
        // A converter that is down: nothing listens there.
        { name: 'gone', tcp: { host: '127.0.0.1', port: await freePort('127.0.0.1') } },
      ],
      units: [
        { id: 7, name: 'PLAIN-7', line: 'pymodbus', unitId: 1, timeoutMs: 1_000 },
        { id: 8, name: 'GONE-8', line: 'gone', unitId: 1, timeoutMs: 1_000 },
      ],
    });
    tcpGw = await startGateway(file);
  }, 60_000);

  afterAll(() => {
    if (py?.exitCode === null) py.kill('SIGTERM');
  });

  it('what the controller encodes is what lands: FC5, FC15, FC6, FC16, read back through the gateway', async () => {
    const c = await controllerClient(tcpGw.modbusPort, 7);
    const w = (fc: 5 | 6 | 15 | 16, address: number, values: number[]) =>
      c.writeRegisters(writeAddress(), encodeFencedWrite({ epoch: 40, fc, address, values }));
    await w(5, 3, [1]);
    await w(15, 10, [1, 0, 1, 1, 0, 0, 0, 1, 1]);
    await w(6, 50, [0xbeef]);
    await w(16, 60, [1, 2, 3, 0xffff]);
    expect((await c.readCoils(0, 20)).data.map(Number)).toEqual([
      0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0,
    ]);
    expect((await c.readHoldingRegisters(50, 1)).data).toEqual([0xbeef]);
    expect((await c.readHoldingRegisters(60, 4)).data).toEqual([1, 2, 3, 0xffff]);
  });

  it('a converter that is down: 0x0A at once, a counter, /healthz 503 naming it; the other line unaffected', async () => {
    const gone = await controllerClient(tcpGw.modbusPort, 8);
    const t0 = performance.now();
    expect(await exceptionOf(gone.readHoldingRegisters(0, 1))).toBe(0x0a);
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(
      await metric(tcpGw.httpUrl, 'coolctl_gateway_line_errors_total', {
        unit: 'GONE-8',
        kind: 'unavailable',
      }),
    ).toBe(1);
    const health = await fetch(`${tcpGw.httpUrl}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ problems: [expect.stringMatching(/line gone/)] });
    const plain = await controllerClient(tcpGw.modbusPort, 7);
    expect((await plain.readHoldingRegisters(50, 1)).data).toEqual([0xbeef]);
  });

  it('more than 16 unanswered requests on one connection: the rest get 0x06 (busy) at once', async () => {
    const answers = await pipelined(
      tcpGw.modbusPort,
      Array.from({ length: 20 }, (_, i) => mbap(7, [3, 0, 50, 0, 1], i + 1)),
    );
    const busy = [...answers.values()].filter((a) => a[0] === 0x83 && a[1] === 0x06).length;
    const served = [...answers.values()].filter((a) => a[0] === 3).length;
    expect([served, busy]).toEqual([16, 4]);
    expect(await metric(tcpGw.httpUrl, 'coolctl_gateway_bad_requests_total', { reason: 'busy' })).toBe(4);
  });

  it('a unit that checks nothing still never sees the deposed leader: its register keeps the newer value', async () => {
    const older = await controllerClient(tcpGw.modbusPort, 7);
    const newer = await controllerClient(tcpGw.modbusPort, 7);
    await newer.writeRegisters(
      writeAddress(),
      encodeFencedWrite({ epoch: 41, fc: 6, address: 80, values: [41] }),
    );
    const code = await exceptionOf(
      older.writeRegisters(
        writeAddress(),
        encodeFencedWrite({ epoch: 40, fc: 6, address: 80, values: [40] }),
      ),
    );
    expect(code).toBe(0x0d);
    expect((await older.readHoldingRegisters(80, 1)).data).toEqual([41]);
    expect(
      decodeEpochBlock((await older.readHoldingRegisters(GATEWAY_FENCE.defaultBase, 8)).data).epoch,
    ).toBe(41n);
  });
});

describe('coolctl gateway --config with problems', () => {
  it('lists every schema problem with its line and exits 2 before opening anything', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'gateway: bad',
        'listen: { port: 70000 }',
        'http: { port: 0 }',
        `stateFile: ${join(dir, 'never.json')}`,
        'lines:',
        '  - name: a',
        '    serial: { path: /dev/ttyS9, parity: mark }',
        'units:',
        '  - { id: 3, line: a }',
        '  - { id: 4, line: a, timeoutMs: 5 }',
      ].join('\n'),
    );
    const res = spawnSync(process.execPath, ['src/cli.ts', 'gateway', '--config', file], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/3 problem\(s\)/);
    expect(res.stderr).toMatch(/bad\.yaml:2 \/listen\/port/);
    expect(res.stderr).toMatch(/bad\.yaml:7 \/lines\/0\/serial\/parity/);
    expect(res.stderr).toMatch(/bad\.yaml:10 \/units\/1\/timeoutMs/);
    expect(existsSync(join(dir, 'never.json'))).toBe(false);
  });

  it('the shipped example is valid', () => {
    const file = 'config/examples/gateway.yaml';
    const cfg = parseGatewayConfig(readFileSync(file, 'utf8'), file);
    expect(cfg).toMatchObject({ name: 'hall-a-line-1', listen: { host: '127.0.0.1' }, fenceBase: 0xf000 });
    expect(cfg.units.map((u) => u.id)).toEqual([11, 12, 13, 21, 22]);
  });

  it('connection limits: defaults, and a per-host cap that would refuse a controller some units or mean nothing', () => {
    const three = [
      'gateway: conns',
      'listen: { port: 0 }',
      'http: { port: 0 }',
      'stateFile: /tmp/x.json',
      'lines: [{ name: a, tcp: { host: 127.0.0.1, port: 502 } }]',
      'units: [{ id: 1, line: a }, { id: 2, line: a }, { id: 3, line: a }]',
    ];
    const parse = (...extra: string[]) => parseGatewayConfig([...three, ...extra].join('\n'), 'conns.yaml');
    // A quarter of the slots stays out of any one address's reach; a controller's one per unit fits.
    // An idle connection gives way after 65 s: longer than any control period (60 s at most).
    expect(parse()).toMatchObject({
      maxConnections: 32,
      maxConnectionsPerHost: 24,
      idleTimeoutMs: 300_000,
      idleDisplaceAfterMs: 65_000,
    });
    expect(parse('maxConnections: 4').maxConnectionsPerHost).toBe(3);
    expect(parse('maxConnections: 3').maxConnectionsPerHost).toBe(3);
    const problems = (...extra: string[]) => {
      try {
        parse(...extra);
      } catch (err) {
        if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
        throw err;
      }
      return [];
    };
    expect(problems('idleTimeoutMs: 500')).toEqual([expect.stringMatching(/^\/idleTimeoutMs: /)]);
    expect(problems('idleDisplaceAfterMs: 50')).toEqual([expect.stringMatching(/^\/idleDisplaceAfterMs: /)]);
    expect(problems('maxConnections: 8', 'maxConnectionsPerHost: 2')).toEqual([
      '/maxConnectionsPerHost: 2 connections per host is fewer than the 3 units: a controller opens one connection per unit id, so one would be refused some of its units',
    ]);
    expect(problems('maxConnections: 8', 'maxConnectionsPerHost: 9')).toEqual([
      '/maxConnectionsPerHost: 9 connections per host is more than maxConnections (8)',
    ]);
  });

  it('lists every cross-reference problem: two transports, a unit id twice, a line nobody defined', () => {
    const text = [
      'gateway: bad',
      'listen: { port: 0 }',
      'http: { port: 0 }',
      'stateFile: /tmp/x.json',
      'lines:',
      '  - { name: a, serial: { path: /dev/ttyS9 }, tcp: { host: 127.0.0.1, port: 502 } }',
      'units:',
      '  - { id: 3, line: a }',
      '  - { id: 3, line: b }',
    ].join('\n');
    let err: unknown;
    try {
      parseGatewayConfig(text, 'bad.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.map((p) => `${p.line} ${p.path}`);
    expect(problems).toEqual(['6 /lines/0', '9 /units/1/id', '9 /units/1/line']);
  });
});
