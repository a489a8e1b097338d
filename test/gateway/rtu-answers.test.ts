// What comes back on the RS-485 line, from a raw responder on the far end of a socat pty pair that
// answers anything the test says: a whole frame from the wrong slave address (a unit wired at an
// address the config does not say) is counted and logged, not only a timeout; a line that babbles
// without pause still ends each request by its deadline; a good answer afterwards is served.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModbusExceptionError } from '../../src/devices/modbus/modbus-tcp.ts';
import { rtuFrame } from '../../src/devices/modbus/rtu-frame.ts';
import { waitFor } from '../helpers.ts';
import {
  controllerClient,
  type GatewayProcess,
  metric,
  ptyPair,
  startGateway,
  stopAll,
  writeConfig,
} from './harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gw-rtu-'));
let gw: GatewayProcess;
let far: SerialPort;
/** How the far end answers a read of holding registers from `unitId`. */
let answer: (unitId: number, count: number) => Buffer | 'babble' | undefined;
let babbling: NodeJS.Timeout | undefined;

function registers(count: number): Buffer {
  return Buffer.from([3, 2 * count, ...Array.from({ length: 2 * count }, (_, i) => i)]);
}

beforeAll(async () => {
  const line = await ptyPair(dir, 'rs485');
  far = new SerialPort({ path: line.device, baudRate: 19_200, parity: 'even' });
  await new Promise((r) => far.once('open', r));
  let rx = Buffer.alloc(0);
  far.on('data', (chunk: Buffer) => {
    rx = Buffer.concat([rx, chunk]);
    // Read requests only: address, 3, address (2), count (2), CRC (2).
    while (rx.length >= 8) {
      const frame = rx.subarray(0, 8);
      rx = rx.subarray(8);
      const a = answer(frame[0]!, frame.readUInt16BE(4));
      if (a === 'babble') {
        clearInterval(babbling);
        let n = 0;
        babbling = setInterval(() => {
          far.write(Buffer.from([0x55, 0xaa, 0x03, 0x10]));
          if (++n > 200) clearInterval(babbling);
        }, 5);
      } else if (a) far.write(a);
    }
  });
  gw = await startGateway(
    writeConfig(dir, 'gateway', {
      gateway: 'rtu-answers',
      listen: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      stateFile: join(dir, 'epochs.json'),
      lines: [{ name: 'rs485', serial: { path: line.master }, queueTimeoutMs: 2_000 }],
      units: [{ id: 3, name: 'AHU-3', line: 'rs485', timeoutMs: 400 }],
    }),
  );
}, 60_000);

afterAll(async () => {
  clearInterval(babbling);
  if (far?.isOpen) await new Promise((r) => far.close(r));
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

async function exceptionOf(p: Promise<unknown>): Promise<number> {
  const err = await p.then(
    () => new Error('expected a Modbus exception'),
    (e: unknown) => e,
  );
  if (!(err instanceof ModbusExceptionError)) throw err;
  return err.modbusCode;
}

describe('RTU answers the gateway did not ask for', () => {
  it('a whole frame from the wrong slave address: 0x0B, and a counter and a log line that say so', async () => {
    answer = (unitId, count) => rtuFrame(unitId + 1, registers(count));
    const c = await controllerClient(gw.modbusPort, 3);
    expect(await exceptionOf(c.readHoldingRegisters(0, 2))).toBe(0x0b);
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_line_errors_total', { unit: 'AHU-3', kind: 'wrong_address' }),
    ).toBe(1);
    await waitFor('the log line', () =>
      gw.logs().find((l) => /another slave address/.test(String(l.msg)) && l.asked === 3 && l.answered === 4),
    );
  });

  it('a line that babbles without pause: each request ends by its deadline, then a good answer is served', async () => {
    answer = () => 'babble';
    const c = await controllerClient(gw.modbusPort, 3);
    const t0 = performance.now();
    expect(await exceptionOf(c.readHoldingRegisters(0, 2))).toBe(0x0b);
    expect(performance.now() - t0).toBeLessThan(2_000);
    clearInterval(babbling);
    answer = (unitId, count) => rtuFrame(unitId, registers(count));
    await waitFor(
      'a good answer after the babbling',
      async () => (await c.readHoldingRegisters(0, 2).catch(() => undefined))?.data,
      { timeoutMs: 5_000, intervalMs: 100 },
    );
    expect((await c.readHoldingRegisters(0, 2)).data).toEqual([0x0001, 0x0203]);
  });
});
