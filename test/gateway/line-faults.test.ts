// The gateway's line when it goes wrong, as a real process on a socat pty pair: a request that
// waited past the line's queueTimeoutMs is answered 0x0B and never sent (the journal shows nothing
// reached the unit), and a line that goes away (the adapter unplugged: the pty pair killed) makes
// /healthz 503 with a reason and requests 0x0A — and comes back by itself when the line does.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Journal } from '../../firmware-sim/journal.ts';
import {
  decodeEpochBlock,
  encodeFencedWrite,
  GATEWAY_FENCE,
  writeAddress,
} from '../../src/devices/modbus/gateway-fencing.ts';
import { ModbusExceptionError } from '../../src/devices/modbus/modbus-tcp.ts';
import { encodeCommand } from '../../src/devices/modbus/point-map.ts';
import { waitFor } from '../helpers.ts';
import {
  controllerClient,
  type GatewayProcess,
  metric,
  ptyPair,
  simLine,
  startGateway,
  stopAll,
  writeConfig,
} from './harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gateway-line-'));
const journal = new Journal(() => performance.now());
let gw: GatewayProcess;
let line: Awaited<ReturnType<typeof ptyPair>>;

async function exceptionOf(p: Promise<unknown>): Promise<number> {
  const err = await p.then(
    () => new Error('expected a Modbus exception'),
    (e: unknown) => e,
  );
  if (!(err instanceof ModbusExceptionError)) throw err;
  return err.modbusCode;
}

beforeAll(async () => {
  line = await ptyPair(dir, 'rs485');
  await simLine(line.device, journal, [3]);
  gw = await startGateway(
    writeConfig(dir, 'gateway', {
      gateway: 'faults',
      listen: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      stateFile: join(dir, 'epochs.json'),
      // A request may wait one dead unit's deadline for the line, not two. A second is long
      // enough that the test's polling (HTTP scrapes on a loaded machine) fits inside one.
      lines: [{ name: 'rs485', serial: { path: line.master }, queueTimeoutMs: 1_000 }],
      units: [
        { id: 3, name: 'AHU-3', line: 'rs485', timeoutMs: 300 },
        { id: 5, name: 'AHU-DEAD', line: 'rs485', timeoutMs: 1_000 },
      ],
    }),
  );
}, 60_000);

afterAll(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('the gateway’s line under faults', () => {
  it('a write that waited past queueTimeoutMs is answered 0x0B and never reaches the unit', async () => {
    const deadA = await controllerClient(gw.modbusPort, 5);
    const deadB = await controllerClient(gw.modbusPort, 5);
    const writer = await controllerClient(gw.modbusPort, 3);
    const reads = () =>
      metric(gw.httpUrl, 'coolctl_gateway_requests_total', { unit: 'AHU-DEAD', kind: 'read' });
    const seq = journal.lastSeq;
    // Two dead requests ahead of the write: it would wait what is left of one deadline and a whole one.
    const a = exceptionOf(deadA.readHoldingRegisters(100, 16));
    await waitFor('the first dead read on the line', async () => (await reads()) >= 1);
    const b = exceptionOf(deadB.readHoldingRegisters(100, 16));
    await waitFor('the second dead read queued', async () => (await reads()) >= 2);
    const values = encodeCommand({
      epoch: 9,
      heartbeat: 1,
      remoteEnable: true,
      fanPct: 50,
      supplySetpointC: 20,
    });
    const code = await exceptionOf(
      writer.writeRegisters(writeAddress(), encodeFencedWrite({ epoch: 9, fc: 16, address: 0, values })),
    );
    expect([await a, await b, code]).toEqual([0x0b, 0x0b, 0x0b]);
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_line_errors_total', { unit: 'AHU-3', kind: 'expired' }),
    ).toBe(1);
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_forwarded_total', { unit: 'AHU-3', kind: 'write' }),
    ).toBe(0);
    expect(journal.since(seq).entries).toEqual([]);
    // Never sent, so it raised nothing either.
    expect(
      decodeEpochBlock((await writer.readHoldingRegisters(GATEWAY_FENCE.defaultBase, 8)).data).epoch,
    ).toBe(0n);
  });

  it('a line that goes away: 0x0A, /healthz 503 with the reason; back by itself when the line is', async () => {
    const c = await controllerClient(gw.modbusPort, 3);
    await c.readHoldingRegisters(100, 16);
    // The adapter unplugged: the pty pair disappears under the gateway.
    await line.kill();
    await waitFor('the line reported unusable', async () => {
      const code = await exceptionOf(c.readHoldingRegisters(100, 16));
      return code === 0x0a;
    });
    const health = await fetch(`${gw.httpUrl}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({
      status: 'degraded',
      problems: [expect.stringMatching(/line rs485/)],
    });
    await waitFor('the outage logged', () => gw.logs().some((l) => l.msg === 'line not usable'));
    // Plugged back in: the same paths, a unit on the line again.
    line = await ptyPair(dir, 'rs485');
    await simLine(line.device, journal, [3]);
    await waitFor(
      'reads answered again',
      async () => (await c.readHoldingRegisters(100, 16)).data.length === 16,
      {
        timeoutMs: 10_000,
        intervalMs: 200,
      },
    );
    expect((await fetch(`${gw.httpUrl}/healthz`)).status).toBe(200);
    await waitFor('the return logged', () => gw.logs().some((l) => l.msg === 'line usable again'));
    expect(gw.proc.exitCode).toBeNull();
  });
});
