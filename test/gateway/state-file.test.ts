// The epoch state file and the line as resources one gateway owns, tried from outside with real
// processes: a second gateway on the same state file or the same RS-485 line is refused at start
// and names the holder (two would overwrite each other's epochs, or fence alone); the claim dies
// with its holder, kill -9 included; and state files a gateway cannot trust stop the start with
// a message, never a guess that reopens the fence.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeFencedWrite, writeAddress } from '../../src/devices/modbus/gateway-fencing.ts';
import { ModbusExceptionError } from '../../src/devices/modbus/modbus-tcp.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { EpochStore } from '../../src/gateway/epoch-store.ts';
import { freePort } from '../../src/util/async.ts';
import { controllerClient, ptyPair, startGateway, stopAll, writeConfig } from './harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gw-state-'));
afterAll(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

/** A gateway whose one line is a converter that is down: fenced writes are persisted, then 0x0A. */
async function config(name: string, stateFile: string, unitId: number, serial?: string): Promise<string> {
  return writeConfig(dir, name, {
    gateway: name,
    listen: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    stateFile,
    lines: [
      serial
        ? { name: 'rs485', serial: { path: serial } }
        : { name: 'gone', tcp: { host: '127.0.0.1', port: await freePort('127.0.0.1') } },
    ],
    units: [{ id: unitId, line: serial ? 'rs485' : 'gone' }],
  });
}

/** Runs a gateway expected to refuse to start: its exit code and stderr, bounded. */
function startRefused(configFile: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['src/gateway/main.ts', '--config', configFile], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** The Modbus exception a fenced write with `epoch` to `unit` gets (0 when accepted). */
async function fencedWrite(port: number, unit: number, epoch: number): Promise<number> {
  const c = await controllerClient(port, unit);
  return c.writeRegisters(writeAddress(), encodeFencedWrite({ epoch, fc: 6, address: 0, values: [1] })).then(
    () => 0,
    (e: unknown) => {
      if (e instanceof ModbusExceptionError) return e.modbusCode;
      throw e;
    },
  );
}

describe('one gateway per state file and per line', () => {
  it('a second gateway on the same state file is refused and names the first; the first keeps every epoch', async () => {
    const stateFile = join(dir, 'shared.json');
    const a = await startGateway(await config('hall-a', stateFile, 1));
    // The converter is down (0x0A), but the epoch was persisted before the write went to the line.
    expect(await fencedWrite(a.modbusPort, 1, 10)).toBe(0x0a);
    const b = await startRefused(await config('hall-b', stateFile, 2));
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(new RegExp(`${stateFile} is in use by gateway hall-a \\(pid ${a.proc.pid}\\)`));
    expect(JSON.parse(readFileSync(stateFile, 'utf8'))).toEqual({ version: 1, units: { 1: '10' } });

    // kill -9 frees the claim at once; the gateway after it still refuses the deposed leader.
    a.proc.kill('SIGKILL');
    await new Promise((r) => a.proc.once('exit', r));
    const again = await startGateway(await config('hall-a', stateFile, 1));
    expect(await fencedWrite(again.modbusPort, 1, 9)).toBe(0x0d);
    expect((await again.stop()).code).toBe(0);
    // A clean stop frees it too.
    const next = await startGateway(await config('hall-a', stateFile, 1));
    expect(await fencedWrite(next.modbusPort, 1, 9)).toBe(0x0d);
  }, 60_000);

  it('a second gateway on the same serial line is refused at start, root or not', async () => {
    const pair = await ptyPair(dir, 'line');
    await startGateway(await config('line-a', join(dir, 'line-a.json'), 3, pair.master));
    const b = await startRefused(await config('line-b', join(dir, 'line-b.json'), 4, pair.master));
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/serial line .* \(line rs485\) is driven by gateway line-a/);
  }, 60_000);
});

describe('a state file the gateway cannot trust stops the start', () => {
  const cases: [string, string | 'dir', RegExp][] = [
    ['empty', '', /the file is empty/],
    ['newer version', '{"version":2,"units":{"3":"7"}}', /format version 2 was written by a newer coolctl/],
    ['units as a list', '{"version":1,"units":[]}', /expected \{"version":1/],
    // "3" and "03" are one unit: the later, lower epoch would win and reopen the fence.
    ['aliased unit id', '{"version":1,"units":{"3":"100","03":"5"}}', /unit "03"/],
    ['epoch beyond u64', '{"version":1,"units":{"3":"99999999999999999999"}}', /u64 epoch/],
    ['a directory', 'dir', /cannot read the epoch state file/],
  ];
  it.each(cases)(
    '%s: exit 1 with what to fix',
    async (name, text, message) => {
      const file = join(dir, `${name.replaceAll(' ', '-')}.json`);
      if (text === 'dir') mkdirSync(file);
      else writeFileSync(file, text);
      const r = await startRefused(await config(`bad-${name.replaceAll(' ', '-')}`, file, 3));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
      // And the store itself says so with COOLCTL_E_STARTUP.
      const err = await EpochStore.open(file).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CoolctlError);
      expect((err as CoolctlError).code).toBe(ErrorCodes.STARTUP);
    },
    30_000,
  );

  it('the largest u64 epoch is kept and read back exactly', async () => {
    const file = join(dir, 'u64.json');
    const { store } = await EpochStore.open(file);
    await store.ensure(3, (1n << 64n) - 1n);
    expect((await EpochStore.open(file)).store.highest(3)).toBe((1n << 64n) - 1n);
  });
});
