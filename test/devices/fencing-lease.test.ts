// Lease fencing at the device seam: a unit that checks nothing gets each write as one request, sent
// only while its worst case fits before the lease deadline; a closed window is counted and logged
// once per change. Against the simulator's Modbus TCP unit over a real socket, journal as proof.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { ModbusAhuServer } from '../../firmware-sim/ahu/modbus-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { DeviceClientSettings, FencingKind, ModbusAirHandler } from '../../src/config/site-schema.ts';
import type { AhuCommandSet } from '../../src/devices/device-io.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import { ModbusDevice } from '../../src/devices/modbus/modbus-device.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { quietLogger, rejectionOf } from '../helpers.ts';
import { modbusTestAhu } from '../support/air-handler.ts';

const journal = new Journal(() => 0);
const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

const remote = (epoch: number): AhuCommandSet => ({
  epoch,
  remoteEnable: true,
  fanPct: 60,
  supplySetpointC: 19,
});
const entries = (ahu: string, epoch: number) =>
  journal.since(0).entries.filter((e) => e.ahu === ahu && e.epoch === epoch);

function ahu(id: string, client: DeviceClientSettings, fencing?: FencingKind): ModbusAirHandler {
  return modbusTestAhu(id, 0, { client, ...(fencing ? { fencing } : {}) });
}

async function unitFor(config: ModbusAirHandler) {
  const unit = new SimAirHandler(config, journal);
  const server = new ModbusAhuServer(unit, { host: '127.0.0.1', port: 0, unitId: 1, logger: quietLogger });
  const { port } = await server.start();
  stops.push(() => server.stop());
  return { unit, config: { ...config, endpoint: { host: '127.0.0.1', port, unitId: 1 } } };
}

function failure(p: Promise<unknown>): Promise<DeviceError> {
  return rejectionOf(p, DeviceError);
}

describe('lease fencing: one request per write', () => {
  it('a write whose answer was lost is not sent again (an epoch unit retries it)', async () => {
    const client = { timeoutMs: 1_000, retries: 2 };
    const lease = await unitFor(ahu('lease-once', client, 'lease'));
    const epoch = await unitFor(ahu('epoch-retry', client));
    for (const u of [lease, epoch]) {
      const d = new ModbusDevice(u.config, { logger: quietLogger });
      stops.push(() => d.close());
      await d.open();
      // The unit applies the write, then the connection resets before the answer is whole: the
      // write landed, and the controller cannot know it.
      u.unit.faults.reset = true;
      await failure(d.writeCommand(remote(4)));
      u.unit.faults.reset = false;
      await d.close();
    }
    expect(entries('lease-once', 4)).toEqual([expect.objectContaining({ accepted: true })]);
    expect(entries('epoch-retry', 4).length).toBe(3);
  });

  it('takes its kind from the site file: epoch for a native unit, lease when asked', () => {
    for (const [config, kind] of [
      [ahu('k-native', {}), 'epoch'],
      [ahu('k-lease', {}, 'lease'), 'lease'],
    ] as const) {
      const d = new ModbusDevice(config, { logger: quietLogger });
      stops.push(() => d.close());
      expect(d.fencing).toBe(kind);
    }
  });
});

describe('lease fencing: the window', () => {
  it('holds writes whose worst case does not fit, counts them, logs once per change', async () => {
    const lines: { msg: string; level: number }[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    const { config } = await unitFor(ahu('lease-window', { timeoutMs: 500, maxApplyDelayMs: 400 }, 'lease'));
    const registry = new Registry();
    const d = new ModbusDevice(config, { logger, metrics: new DeviceMetrics(registry) });
    stops.push(() => d.close());
    await d.open();
    for (let i = 0; i < 3; i++) {
      const held = await failure(
        d.writeCommand(remote(6), { deadlineMs: () => performance.now() + 300, reassert: true }),
      );
      expect(held.code).toBe(ErrorCodes.NOT_LEADER);
    }
    expect(d.leaseWindowSkips).toBe(3);
    expect(await registry.getSingleMetricAsString('coolctl_device_errors_total')).toContain(
      'coolctl_device_errors_total{device="lease-window",protocol="modbus-tcp",kind="not_leader"} 3',
    );
    expect(entries('lease-window', 6)).toEqual([]);
    await d.writeCommand(remote(6), { deadlineMs: () => performance.now() + 2_000, reassert: true });
    expect(entries('lease-window', 6)).toEqual([expect.objectContaining({ accepted: true })]);
    const said = lines.map((l) => l.msg);
    expect(said.filter((m) => m.startsWith('writes held'))).toHaveLength(1);
    expect(said.filter((m) => m.startsWith('writes resumed'))).toHaveLength(1);
  });
});
