// The demo site's vendor units in a whole simulation (in-process servers, real sockets, the units'
// default start-up quirks: exception 02 while not ready, no-data values, slow first reads), driven
// by the controller's devices built as the daemon builds them — two of them behind the simulated
// TCP→RTU gateway on one endpoint. Each device rides out the start-up (not ready: retryable, link
// up; no data: NaN, never 0), then its command takes the unit to remote control.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Simulation } from '../../firmware-sim/simulation.ts';
import { loadSite } from '../../src/config/load-site.ts';
import type { ModbusAirHandler, Site } from '../../src/config/site-schema.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { AhuReadings, DeviceIo } from '../../src/devices/device-io.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { quietLogger, waitFor } from '../helpers.ts';

let sim: Simulation;
let site: Site;
const devices = new Map<string, DeviceIo>();
/** What each device saw before the unit had data: error codes and NaN readings. */
const early = new Map<string, { notReady: number; noData: number }>();

const vendor = (s: Site) =>
  s.airHandlers.filter(
    (a): a is ModbusAirHandler => a.protocol === 'modbus-tcp' && 'profile' in a && !!a.profile,
  );

beforeAll(async () => {
  const demo = await loadSite('config/demo-site.yaml');
  // The OPC-UA units are not needed here (and loading node-opcua costs ~30 MB).
  site = { ...demo, airHandlers: demo.airHandlers.filter((a) => a.protocol !== 'opcua'), controlGroups: [] };
  sim = new Simulation({ site, seed: 5, ephemeralPorts: true, logger: quietLogger });
  await sim.start();
  for (const a of vendor(site)) {
    const ep = /^modbus-tcp:\/\/([^:]+):(\d+)\/(\d+)$/.exec(
      sim.ahuStates().find((s) => s.id === a.id)?.endpoint ?? '',
    );
    if (!ep) throw new Error(`no Modbus TCP endpoint for ${a.id}`);
    const d = await createDevice(
      { ...a, endpoint: { host: ep[1]!, port: Number(ep[2]), unitId: Number(ep[3]) } },
      { logger: quietLogger },
    );
    devices.set(a.id, d);
    early.set(a.id, { notReady: 0, noData: 0 });
  }
}, 60_000);

afterAll(async () => {
  for (const d of devices.values()) await d.close();
  await sim?.stop();
});

function complete(r: AhuReadings): boolean {
  return (r.absent ?? []).length === 0 && Number.isFinite(r.supplyC);
}

describe('the demo site’s vendor units, from power-up', () => {
  it('every vendor unit: not ready, then no data, then values; a command takes it to remote', async () => {
    const units = vendor(site);
    expect(units.map((a) => a.profile).sort()).toEqual([
      'coils-fc16-only-validity-timer',
      'float32-lsw-toggle-inverted-coil',
      'holding-tenths-c-timeout-register',
      'tenths-c-countdown-command-bits',
    ]);
    await Promise.all(
      units.map(async (a) => {
        const d = devices.get(a.id)!;
        const seen = early.get(a.id)!;
        await waitFor(
          `${a.id} reads complete`,
          async () => {
            try {
              const r = await d.read();
              if (!complete(r)) {
                seen.noData++;
                // No data is absent and NaN, never a 0 the control law would believe.
                for (const p of r.absent ?? []) {
                  const v = (r as unknown as Record<string, unknown>)[
                    p === 'supplySetpointFeedbackC'
                      ? 'supplySetpointC'
                      : p === 'fanFeedbackPct'
                        ? 'fanPct'
                        : p
                  ];
                  if (typeof v === 'number') expect(v).toBeNaN();
                }
              }
              return complete(r);
            } catch (err) {
              if (
                err instanceof DeviceError &&
                err.code === ErrorCodes.DEVICE_EXCEPTION &&
                err.deviceCode === 2
              ) {
                expect(err.retryable).toBe(true);
                expect(d.linkState).not.toBe('down');
                seen.notReady++;
                return false;
              }
              throw err;
            }
          },
          { timeoutMs: 20_000, intervalMs: 200 },
        );
        // As the control loop does: a failed write is not re-sent within its call on a lease unit
        // (it may have landed); the next period writes afresh. Behind the shared gateway a write can
        // meet 0x0B while the line serves the other unit's slow first reads.
        await waitFor(
          `${a.id} command written`,
          () =>
            d
              .writeCommand(
                { epoch: 4, remoteEnable: true, fanPct: 60, supplySetpointC: 19 },
                { reassert: true },
              )
              .then(
                () => true,
                (err: unknown) => {
                  if (err instanceof DeviceError && err.retryable) return false;
                  throw err;
                },
              ),
          { timeoutMs: 10_000, intervalMs: 200 },
        );
        await waitFor(`${a.id} on remote control`, () => sim.units.get(a.id)?.mode === 'remote', {
          timeoutMs: 5_000,
        });
      }),
    );
    // How much of the start-up each device met depends on how fast this machine started them (the
    // units' 2 s windows run from power-up); every not-ready and no-data answer seen was checked above.
    process.stdout.write(`start-up seen per unit: ${JSON.stringify(Object.fromEntries(early))}\n`);
    const accepted = sim.journal.since(0).entries.filter((e) => devices.has(e.ahu) && e.accepted);
    expect(new Set(accepted.map((e) => e.ahu))).toEqual(new Set(devices.keys()));
  }, 60_000);
});
