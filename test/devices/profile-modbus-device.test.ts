// The controller's profile device against the simulator's vendor units (ProfilePdu, real Modbus TCP
// sockets), one per shipped vendor profile: commands land as the unit reads them, readings match
// the unit, and the unit's own BMS watchdog is kept in its style — the unit stays on remote control
// across several of its watchdog periods of the simulator's wall clock, where it would drop the
// BMS after one without the controller's refresh. The timeout register goes out again after a
// reconnect.
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Journal } from '../../firmware-sim/journal.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { AhuCommandSet } from '../../src/devices/device-io.ts';
import { ProfileModbusDevice } from '../../src/devices/modbus/profile-device.ts';
import { type DeviceError, ErrorCodes } from '../../src/errors.ts';
import { quietLogger } from '../helpers.ts';
import { modbusTestAhu } from '../support/air-handler.ts';
import { startProfileUnit } from '../support/profile-unit.ts';

const journal = new Journal(() => 0);
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The simulator's wall clock for the unit's watchdog, moved by the test. */
class Clock {
  ms = 1_000_000;
  readonly now = (): number => this.ms;
}

let count = 0;

async function rig(profileName: string) {
  const clock = new Clock();
  const id = `AHU-P${++count}`;
  const config = modbusTestAhu(id, 0, {
    localFanPct: 80,
    client: { timeoutMs: 1_000, retries: 2, maxApplyDelayMs: 300 },
    profile: profileName,
  });
  const { unit, server, port, profile, pdu } = await startProfileUnit(
    { ...config, profile: profileName },
    journal,
    { wallNowMs: clock.now },
  );
  cleanups.push(() => server.stop());
  const seq = journal.lastSeq;
  const device = await createDevice(
    { ...config, endpoint: { host: '127.0.0.1', port, unitId: 1 } },
    { logger: quietLogger },
  );
  cleanups.push(() => device.close());
  expect(device).toBeInstanceOf(ProfileModbusDevice);
  return {
    unit,
    pdu,
    clock,
    profile,
    device: device as ProfileModbusDevice,
    entries: () => journal.since(seq).entries.filter((e) => e.ahu === id),
  };
}

const cmd = (fanPct: number, supplySetpointC: number): AhuCommandSet => ({
  epoch: 3,
  remoteEnable: true,
  fanPct,
  supplySetpointC,
});

const VENDOR_PROFILES = [
  'float32-lsw-toggle-inverted-coil',
  'holding-tenths-c-timeout-register',
  'tenths-c-countdown-command-bits',
  'coils-fc16-only-validity-timer',
  'tenths-f-int32-msw-no-watchdog',
] as const;

describe('profile device against the simulator’s vendor units', () => {
  it.each(VENDOR_PROFILES)(
    '%s: commands land, readings match the unit, its watchdog is kept',
    async (name) => {
      const r = await rig(name);
      expect(r.device.fencing).toBe('lease');
      await r.device.open();
      await r.device.writeCommand(cmd(55, 20));
      const landed = r.entries().filter((e) => e.accepted);
      const near = (v: unknown, want: number) => typeof v === 'number' && Math.abs(v - want) < 1e-6;
      // A unit without a fan-speed point (the InRow-style map) is driven by its setpoint alone.
      if (r.profile.commandPoints.has('fanPct'))
        expect(landed.some((e) => near(e.values.fanPct, 55))).toBe(true);
      // 20 °C as the unit takes it: tenths, a float32, or tenths of °F (680 = 68.0 °F).
      expect(landed.some((e) => near(e.values.supplySetpointC, 20))).toBe(true);
      expect(r.entries().filter((e) => !e.accepted)).toEqual([]);
      expect(r.unit.status().mode).toBe('remote');

      const got = await r.device.read();
      const s = r.unit.status();
      // Tenths of °C, or tenths of °F (0.1 °F = 0.056 °C), or a float32: within the coarsest step.
      expect(got.supplyC).toBeCloseTo(s.supplyC, 0);
      if (r.profile.points.has('returnC')) expect(got.returnC).toBeCloseTo(s.returnC, 0);
      expect(got.unitWatchdog).toBe(r.profile.watchdog.style);

      // Several of the unit's watchdog periods pass on its clock, with a command each 0.6 period.
      const periodS = r.pdu.watchdogPeriodS();
      if (periodS === undefined) {
        expect(name).toBe('tenths-f-int32-msw-no-watchdog');
        return;
      }
      for (let i = 0; i < 5; i++) {
        r.clock.ms += periodS * 600;
        await r.device.writeCommand(cmd(50 + i, 20));
        r.pdu.checkWatchdog();
        expect(r.unit.status().mode).toBe('remote');
      }
      // Silence for longer than a period: the unit drops the BMS — the refreshes above were needed.
      r.clock.ms += periodS * 1000 + 1000;
      r.pdu.checkWatchdog();
      expect(r.unit.status().mode).not.toBe('remote');
    },
  );

  it('the timeout-period register goes out with the first command on each connection only', async () => {
    const r = await rig('holding-tenths-c-timeout-register');
    const timerWrites = () => r.entries().filter((e) => e.values.watchdogTimerS !== undefined);
    await r.device.writeCommand(cmd(55, 20));
    await r.device.writeCommand(cmd(56, 20));
    expect(timerWrites()).toEqual([
      expect.objectContaining({ accepted: true, values: { watchdogTimerS: 300 } }),
    ]);
    // The unit resets the connection (after serving the request): the next command reconnects.
    r.unit.faults.reset = true;
    await r.device.writeCommand(cmd(57, 20)).catch(() => undefined);
    r.unit.faults.reset = false;
    // The link went down while we drove the unit: taking it back is deliberate (reassert).
    await r.device.writeCommand(cmd(58, 20), { reassert: true }).catch(() => undefined);
    await r.device.writeCommand(cmd(59, 20), { reassert: true });
    expect(timerWrites().length).toBe(2);
  });
});

describe('a unit that cannot answer a large block in time', () => {
  it('reads the block in halves from then on, and the next read succeeds', async () => {
    // Answers reads of up to 2 registers (zeros) at once; a larger block never (as a unit or
    // gateway that takes seconds over one does, from the controller's deadline's point of view).
    const asked: number[] = [];
    const server = createServer((socket) => {
      socket.on('data', (buf) => {
        for (let at = 0; at + 12 <= buf.length; at += 12) {
          const frame = buf.subarray(at, at + 12);
          const fc = frame[7]!;
          const count = frame.readUInt16BE(10);
          asked.push(count);
          if ((fc !== 3 && fc !== 4) || count > 2) continue;
          const reply = Buffer.alloc(9 + 2 * count);
          frame.copy(reply, 0, 0, 4);
          reply.writeUInt16BE(3 + 2 * count, 4);
          reply[6] = frame[6]!;
          reply[7] = fc;
          reply[8] = 2 * count;
          socket.write(reply);
        }
      });
      socket.on('error', () => undefined);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const lines: { msg: string }[] = [];
    const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    const device = await createDevice(
      modbusTestAhu('AHU-slow-block', (server.address() as AddressInfo).port, {
        localFanPct: 80,
        client: { timeoutMs: 300, retries: 0 },
        profile: 'tenths-c-countdown-command-bits',
      }),
      { logger },
    );
    cleanups.push(() => device.close());
    // The profile's plan: input 200+5 (supply, return, setpoint and fan feedback) and 209+2.
    const first = await device.read().then(
      () => undefined,
      (e: unknown) => e as DeviceError,
    );
    expect(first?.code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    expect(asked).toEqual([5]);
    const r = await device.read();
    expect(r.supplyC).toBe(0);
    expect(r.mode).toBe('local');
    expect(asked.slice(1)).toEqual([2, 2, 2]);
    expect(lines.filter((l) => l.msg.startsWith('read block timed out'))).toHaveLength(1);
  });
});
