// The fencing gateway on a box that runs out of disk or file descriptors, tried from outside: its
// epoch state file on a tmpfs that fills up or turns read-only, and the process's own fd limit
// lowered under it. What an operator and a deposed leader must see: a raise the gateway cannot
// persist is never forwarded (0x04) while the old epoch stays fenced (0x0D); /healthz names the
// state file; one log line per streak; and the gateway recovers by itself once space or fds return.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { encodeFencedWrite, writeAddress } from '../../src/devices/modbus/gateway-fencing.ts';
import { ModbusExceptionError, type ModbusTcpClient } from '../../src/devices/modbus/modbus-tcp.ts';
import { freePort } from '../../src/util/async.ts';
import { waitFor } from '../helpers.ts';
import { controllerClient, type GatewayProcess, startGateway, stopAll, writeConfig } from './harness.ts';
import { mountTmpfs, type Tmpfs } from './tmpfs.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gw-disk-'));
const mounts: Tmpfs[] = [];
afterEach(async () => {
  await stopAll();
  for (const m of mounts.splice(0)) m.unmount();
});
afterAll(() => {
  for (const m of mounts.splice(0)) m.unmount();
  rmSync(dir, { recursive: true, force: true });
});

/** A gateway whose state file lives on `stateDir`; its one line is a converter that is down (0x0A). */
async function gatewayOn(name: string, stateDir: string): Promise<{ gw: GatewayProcess; stateFile: string }> {
  const stateFile = join(stateDir, 'epochs.json');
  const config = writeConfig(dir, name, {
    gateway: name,
    listen: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    stateFile,
    lines: [{ name: 'gone', tcp: { host: '127.0.0.1', port: await freePort('127.0.0.1') } }],
    units: [{ id: 1, line: 'gone' }],
  });
  return { gw: await startGateway(config), stateFile };
}

/** The Modbus exception a fenced write with `epoch` gets (0 when accepted; 0x0A: forwarded, line down). */
function fencedWrite(c: ModbusTcpClient, epoch: number): Promise<number> {
  return c.writeRegisters(writeAddress(), encodeFencedWrite({ epoch, fc: 6, address: 0, values: [1] })).then(
    () => 0,
    (e: unknown) => {
      if (e instanceof ModbusExceptionError) return e.modbusCode;
      throw e;
    },
  );
}

async function health(gw: GatewayProcess): Promise<{ status: number; problems: string[] }> {
  const r = await fetch(`${gw.httpUrl}/healthz`, { signal: AbortSignal.timeout(3_000) });
  return { status: r.status, problems: ((await r.json()) as { problems: string[] }).problems };
}

async function metric(gw: GatewayProcess, line: string): Promise<number | undefined> {
  const text = await (await fetch(`${gw.httpUrl}/metrics`, { signal: AbortSignal.timeout(3_000) })).text();
  const hit = text.split('\n').find((l) => l.startsWith(`${line} `));
  return hit === undefined ? undefined : Number(hit.slice(line.length + 1));
}

const STATE_PROBLEM = /epoch state file .*epochs\.json cannot be written \((ENOSPC|EROFS|EMFILE)\)/;
const countLogs = (gw: GatewayProcess, msg: RegExp) =>
  gw.logs().filter((l) => msg.test(String(l.msg))).length;
/**
 * The first line matching `msg`, once it has come through the gateway's stdout pipe (it may trail
 * the HTTP answer that showed its effect on a loaded machine).
 */
async function logged(gw: GatewayProcess, msg: RegExp): Promise<Record<string, unknown>> {
  await waitFor(`a log line ${msg}`, () => countLogs(gw, msg) > 0, { timeoutMs: 5_000, intervalMs: 50 });
  return gw.logs().find((l) => msg.test(String(l.msg)))!;
}

describe('the epoch state file on a disk that fills up or turns read-only', () => {
  it.each([
    ['full', 'ENOSPC'],
    ['read-only', 'EROFS'],
  ] as const)(
    '%s: the raise is refused unforwarded, the old epoch stays fenced, /healthz says why, recovery needs no write',
    async (mode, errno) => {
      const disk = mountTmpfs(join(dir, `state-${mode}`));
      mounts.push(disk);
      const { gw, stateFile } = await gatewayOn(`disk-${mode}`, disk.dir);
      const oldLeader = await controllerClient(gw.modbusPort, 1);
      const newLeader = await controllerClient(gw.modbusPort, 1);
      expect(await fencedWrite(oldLeader, 10)).toBe(0x0a);
      expect(await metric(gw, 'coolctl_gateway_unit_epoch{unit="1"}')).toBe(10);

      if (mode === 'full') disk.fill();
      else disk.readOnly(true);
      for (let i = 0; i < 3; i++) expect(await fencedWrite(newLeader, 11)).toBe(0x04);
      // The deposed leader is still fenced, though epoch 11 never reached the file.
      expect(await fencedWrite(oldLeader, 10)).toBe(0x0d);
      expect(await metric(gw, 'coolctl_gateway_forwarded_total{unit="1",kind="write"}')).toBe(1);
      expect(await metric(gw, 'coolctl_gateway_state_write_errors_total')).toBe(3);
      // What the file holds is what the operator is shown.
      expect(await metric(gw, 'coolctl_gateway_unit_epoch{unit="1"}')).toBe(10);
      const sick = await health(gw);
      expect(sick.status).toBe(503);
      expect(sick.problems.join('\n')).toMatch(STATE_PROBLEM);
      expect(sick.problems.join('\n')).toContain(errno);
      await logged(gw, /cannot persist the new epoch/);
      expect(countLogs(gw, /cannot persist the new epoch/)).toBe(1);
      expect(JSON.parse(readFileSync(stateFile, 'utf8'))).toEqual({ version: 1, units: { 1: '10' } });
      expect(readdirSync(disk.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);

      // Space returns: the gateway writes the file on its own, with no leader writing.
      if (mode === 'full') disk.free();
      else disk.readOnly(false);
      await waitFor(
        'the state file problem to clear from /healthz',
        async () => !(await health(gw)).problems.some((p) => STATE_PROBLEM.test(p)),
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      await logged(gw, /epoch state file written again/);
      expect(countLogs(gw, /epoch state file written again/)).toBe(1);
      expect(JSON.parse(readFileSync(stateFile, 'utf8'))).toEqual({ version: 1, units: { 1: '11' } });
      expect(await fencedWrite(newLeader, 11)).toBe(0x0a);
      expect(await metric(gw, 'coolctl_gateway_unit_epoch{unit="1"}')).toBe(11);
      await waitFor(
        'the epoch raised line',
        () => gw.logs().some((l) => l.msg === 'epoch raised' && l.to === '11'),
        {
          timeoutMs: 5_000,
          intervalMs: 50,
        },
      );
      expect(gw.logs().find((l) => l.msg === 'epoch raised' && l.to === '11')).toMatchObject({ from: '10' });
      expect((await gw.stop()).code).toBe(0);

      // A restart remembers 11: the deposed leader stays out.
      const { gw: again } = await gatewayOn(`disk-${mode}-again`, disk.dir);
      expect(await fencedWrite(await controllerClient(again.modbusPort, 1), 10)).toBe(0x0d);
    },
    60_000,
  );
});

describe('the gateway out of file descriptors', () => {
  it('a raise needing a file is refused 0x04 (EMFILE, logged); no crash, no busy loop; fds back, it recovers', async () => {
    const { gw, stateFile } = await gatewayOn('fds', mkdtempSync(join(dir, 'fds-')));
    const leader = await controllerClient(gw.modbusPort, 1);
    expect(await fencedWrite(leader, 5)).toBe(0x0a);
    const pid = gw.proc.pid!;
    const openFds = () => readdirSync(`/proc/${pid}/fd`).length;
    // A few left for the HTTP side's check to be accepted once the fillers are gone.
    const limit = openFds() + 4;
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${limit}:${limit}`]);
    const fillers = [];
    for (let i = 0; i < 12; i++) fillers.push(await controllerClient(gw.modbusPort, 1));
    await waitFor('every fd of the gateway in use', () => openFds() >= limit, { timeoutMs: 5_000 });

    const cpuTicks = () => {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return Number(f[11]) + Number(f[12]);
    };
    const ticks0 = cpuTicks();
    const t0 = performance.now();
    expect(await fencedWrite(leader, 6)).toBe(0x04);
    expect(await fencedWrite(leader, 6)).toBe(0x04);
    // More connections while none can be accepted: refused at once by the kernel side, not spun on.
    const extra = await Promise.allSettled(
      Array.from({ length: 8 }, () => controllerClient(gw.modbusPort, 1)),
    );
    await new Promise((r) => setTimeout(r, 1_000));
    // Clock ticks are 10 ms: ticks per elapsed 10 ms is the share of one core.
    const cpuPct = ((cpuTicks() - ticks0) / ((performance.now() - t0) / 10)) * 100;
    expect(cpuPct).toBeLessThan(50);
    expect(gw.proc.exitCode).toBe(null);
    expect(JSON.parse(readFileSync(stateFile, 'utf8'))).toEqual({ version: 1, units: { 1: '5' } });

    for (const c of [...fillers, ...extra.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))])
      c.destroy();
    await waitFor(
      'the gateway to write epoch 6 once fds return',
      () => readFileSync(stateFile, 'utf8').includes('"6"'),
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    expect((await health(gw)).problems.some((p) => STATE_PROBLEM.test(p))).toBe(false);
    expect(await logged(gw, /cannot persist the new epoch/)).toMatchObject({
      err: { code: 'EMFILE' },
    });
    expect(await fencedWrite(leader, 6)).toBe(0x0a);
    expect((await gw.stop()).code).toBe(0);
  }, 60_000);
});
