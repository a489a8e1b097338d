import { afterEach, describe, expect, it } from 'vitest';
import { Journal } from '../../firmware-sim/journal.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { AhuCommandSet } from '../../src/devices/device-io.ts';
import type { ProfileModbusDevice } from '../../src/devices/modbus/profile-device.ts';
import { quietLogger } from '../helpers.ts';
import { modbusTestAhu } from '../support/air-handler.ts';
import { startProfileUnit } from '../support/profile-unit.ts';

const journal = new Journal(() => 0);
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let count = 0;

async function rig(profileName: string) {
  const clock = { ms: 1_000_000 };
  const id = `AHU-H${++count}`;
  const config = modbusTestAhu(id, 0, {
    localFanPct: 80,
    client: { timeoutMs: 1_000, retries: 2, maxApplyDelayMs: 300 },
    profile: profileName,
  });
  const { unit, server, port, profile, pdu } = await startProfileUnit(
    { ...config, profile: profileName },
    journal,
    { wallNowMs: () => clock.ms },
  );
  cleanups.push(() => server.stop());
  const seq = journal.lastSeq;
  const device = (await createDevice(
    { ...config, endpoint: { host: '127.0.0.1', port, unitId: 1 } },
    { logger: quietLogger },
  )) as ProfileModbusDevice;
  cleanups.push(() => device.close());
  await device.open();
  /** One control period as the loop runs it; what reached the unit's server meanwhile. */
  const cycle = async (c: AhuCommandSet) => {
    const before = { ...server.counters };
    await device.read();
    await device.writeCommand(c);
    return {
      requests: server.counters.requests - before.requests,
      writes: server.counters.writes - before.writes,
    };
  };
  return {
    unit,
    pdu: () => pdu,
    clock,
    profile,
    device,
    cycle,
    accepted: () => journal.since(seq).entries.filter((e) => e.ahu === id && e.accepted),
  };
}

const cmd = (supplySetpointC: number, epoch = 3, fanPct = 55): AhuCommandSet => ({
  epoch,
  remoteEnable: true,
  fanPct,
  supplySetpointC,
});

describe('a unit without a watchdog that keeps what was written', () => {
  it('steady state: only the status read goes out; changes, other writers and new terms are written', async () => {
    const r = await rig('tenths-f-int32-msw-no-watchdog');
    const statusReads = r.profile.planReads(['supplySetpointC', 'coolingKw', 'supplyC', 'returnC']).length;
    expect(statusReads).toBe(2);
    // The first period on a connection writes the command in full (run too) and reads it back.
    expect(await r.cycle(cmd(20))).toEqual({ requests: statusReads + 4, writes: 2 });
    for (let i = 0; i < 5; i++) {
      expect(await r.cycle(cmd(20))).toEqual({ requests: statusReads, writes: 0 });
    }
    expect(r.unit.status().mode).toBe('remote');

    // A new setpoint is written (and read back) once, then held.
    expect(await r.cycle(cmd(21))).toEqual({ requests: statusReads + 2, writes: 1 });
    expect(await r.cycle(cmd(21))).toEqual({ requests: statusReads, writes: 0 });
    expect(r.unit.status().supplySetpointC).toBeCloseTo(21, 1);

    // Another writer (the unit's panel, a BMS) moves the setpoint: the next status read shows it,
    // and our command goes out again.
    const other = Buffer.from([6, 0, 3, 0, 0]);
    other.writeUInt16BE(716, 3); // 71.6 °F = 22 °C
    expect(r.pdu().handle('panel', other).kind).toBe('reply');
    expect(r.unit.status().supplySetpointC).toBeCloseTo(22, 1);
    expect(await r.cycle(cmd(21))).toEqual({ requests: statusReads + 2, writes: 1 });
    expect(r.unit.status().supplySetpointC).toBeCloseTo(21, 1);

    // A new term writes its command in full once, though the unit already holds it.
    const before = r.accepted().length;
    expect(await r.cycle(cmd(21, 4))).toEqual({ requests: statusReads + 2, writes: 1 });
    expect(await r.cycle(cmd(21, 4))).toEqual({ requests: statusReads, writes: 0 });
    expect(r.accepted().length).toBe(before + 1);
  });

  it('a reassert writes everything, held or not', async () => {
    const r = await rig('tenths-f-int32-msw-no-watchdog');
    await r.cycle(cmd(20));
    await r.device.read();
    const before = r.accepted().length;
    await r.device.writeCommand(cmd(20), { reassert: true });
    expect(r.accepted().length).toBeGreaterThan(before);
  });
});

describe('a unit with a toggle watchdog', () => {
  it('the heartbeat goes out every period; the held setpoint does not', async () => {
    const r = await rig('float32-lsw-toggle-inverted-coil');
    await r.cycle(cmd(20));
    const first = r.accepted().length;
    const periodS = r.pdu().watchdogPeriodS()!;
    for (let i = 0; i < 5; i++) {
      r.clock.ms += periodS * 600;
      // Heartbeat and fan speed (it has a feedback point, so its command register is not read).
      expect((await r.cycle(cmd(20))).writes).toBe(2);
      r.pdu().checkWatchdog();
      expect(r.unit.status().mode).toBe('remote');
    }
    const later = r.accepted().slice(first);
    expect(later.some((e) => e.values.supplySetpointC !== undefined)).toBe(false);
    expect(later.filter((e) => e.values.heartbeat !== undefined).length).toBe(5);
  });
});
