// The fencing gateway's /metrics while its epoch state file fails, tried from outside: a real
// `coolctl gateway` with its state file on a tmpfs turned read-only. The counter of refused writes
// rises only while a leader asks for a raise; once no leader writes, only a gauge can say the file
// still fails (and that the next failover will be refused), and it clears by itself with the disk.
// A disk that fills or turns read-only while no epoch changes at all (weeks, on a quiet site) is
// found by the gateway's own check of the directory, before the failover whose raise it would refuse.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { encodeFencedWrite, writeAddress } from '../../src/devices/modbus/gateway-fencing.ts';
import { ModbusExceptionError } from '../../src/devices/modbus/modbus-tcp.ts';
import { freePort } from '../../src/util/async.ts';
import { waitFor } from '../helpers.ts';
import { controllerClient, type GatewayProcess, startGateway, stopAll, writeConfig } from './harness.ts';
import { mountTmpfs, type Tmpfs } from './tmpfs.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gw-gauge-'));
const mounts: Tmpfs[] = [];
afterEach(async () => {
  await stopAll();
  for (const m of mounts.splice(0)) m.unmount();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function metric(gw: GatewayProcess, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${gw.httpUrl}/metrics`, { signal: AbortSignal.timeout(3_000) })).text();
  const hit = text.split('\n').find((l) => l.startsWith(`${name} `));
  return hit === undefined ? undefined : Number(hit.slice(name.length + 1));
}

/** A gateway whose state file is on a tmpfs of its own (to fill or turn read-only), its one line dead. */
async function gatewayOnTmpfs(name: string): Promise<{ disk: Tmpfs; gw: GatewayProcess }> {
  const disk = mountTmpfs(join(dir, name));
  mounts.push(disk);
  const config = writeConfig(dir, name, {
    gateway: name,
    listen: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    stateFile: join(disk.dir, 'epochs.json'),
    lines: [{ name: 'gone', tcp: { host: '127.0.0.1', port: await freePort('127.0.0.1') } }],
    units: [{ id: 1, line: 'gone' }],
  });
  return { disk, gw: await startGateway(config) };
}

describe('coolctl_gateway_state_file_failing', () => {
  it('0 while the file is written, 1 while it fails with no leader writing, 0 once the disk is back', async () => {
    const { disk, gw } = await gatewayOnTmpfs('gauge');
    expect(await metric(gw, 'coolctl_gateway_state_file_failing')).toBe(0);

    disk.readOnly(true);
    // One leader asks for a raise once (refused 0x04), then no leader writes at all.
    const leader = await controllerClient(gw.modbusPort, 1);
    const code = await leader
      .writeRegisters(writeAddress(), encodeFencedWrite({ epoch: 7, fc: 6, address: 0, values: [1] }))
      .then(
        () => 0,
        (e: unknown) => (e instanceof ModbusExceptionError ? e.modbusCode : -1),
      );
    expect(code).toBe(0x04);
    expect(await metric(gw, 'coolctl_gateway_state_write_errors_total')).toBe(1);
    expect(await metric(gw, 'coolctl_gateway_state_file_failing')).toBe(1);
    disk.readOnly(false);
    await waitFor(
      'the gauge to clear',
      async () => (await metric(gw, 'coolctl_gateway_state_file_failing')) === 0,
      {
        timeoutMs: 10_000,
        intervalMs: 100,
      },
    );
  }, 60_000);

  it.each([
    ['read-only', 'EROFS'],
    ['full', 'ENOSPC'],
  ] as const)(
    '%s with no raise at all: 1 within one check, /healthz says %s, 0 again with the disk',
    async (mode, errno) => {
      const { disk, gw } = await gatewayOnTmpfs(`quiet-${mode}`);
      expect(await metric(gw, 'coolctl_gateway_state_file_failing')).toBe(0);

      if (mode === 'full') disk.fill();
      else disk.readOnly(true);
      // The check runs every 10 s: no leader writes, so nothing else can find it.
      await waitFor(
        'the gauge to say 1',
        async () => (await metric(gw, 'coolctl_gateway_state_file_failing')) === 1,
        {
          timeoutMs: 25_000,
          intervalMs: 200,
        },
      );
      const health = await fetch(`${gw.httpUrl}/healthz`, { signal: AbortSignal.timeout(3_000) });
      expect(health.status).toBe(503);
      expect(JSON.stringify(await health.json())).toContain(errno);
      expect(
        gw.logs().filter((l) => /epoch state file’s disk is read-only or full/.test(String(l.msg))),
      ).toHaveLength(1);
      // Nothing was refused: no leader asked.
      expect(await metric(gw, 'coolctl_gateway_state_write_errors_total')).toBe(0);

      if (mode === 'full') disk.free();
      else disk.readOnly(false);
      await waitFor(
        'the gauge to clear',
        async () => (await metric(gw, 'coolctl_gateway_state_file_failing')) === 0,
        {
          timeoutMs: 25_000,
          intervalMs: 200,
        },
      );
      expect((await fetch(`${gw.httpUrl}/healthz`, { signal: AbortSignal.timeout(3_000) })).status).toBe(200);
      expect(gw.logs().some((l) => /disk can take a raise again/.test(String(l.msg)))).toBe(true);
    },
    90_000,
  );
});
