// What each device says of its unit's protection — its fencing kind and the unit's own watchdog —
// which the API's live view passes on (/api/v1/site/live `units`), so an operator sees which units
// only this controller guards (`unitWatchdog: none`). Devices built by createDevice, as the daemon
// builds them, from the demo site's unit with a native and two vendor profiles.
import { afterAll, describe, expect, it } from 'vitest';
import { loadSite } from '../../src/config/load-site.ts';
import type { ModbusAirHandler } from '../../src/config/site-schema.ts';
import { createDevice } from '../../src/devices/create-device.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { quietLogger } from '../helpers.ts';

const devices: DeviceIo[] = [];
afterAll(async () => {
  for (const d of devices) await d.close();
});

describe('each device says how far its unit is protected', () => {
  it('fencing per unit, and the units whose only guard is the controller', async () => {
    const demo = await loadSite('config/demo-site.yaml');
    const base = demo.airHandlers.find(
      (a): a is ModbusAirHandler => a.protocol === 'modbus-tcp' && !('profile' in a && a.profile),
    )!;
    const device = async (extra: object) => {
      const { profile: _native, ...rest } = base as ModbusAirHandler & { profile?: string };
      const d = await createDevice(
        { ...rest, endpoint: { host: '127.0.0.1', port: 1, unitId: 1 }, ...extra } as ModbusAirHandler,
        { logger: quietLogger },
      );
      devices.push(d);
      return { fencing: d.fencing, unitWatchdog: d.unitWatchdog };
    };
    expect(await device({})).toEqual({ fencing: 'epoch', unitWatchdog: undefined });
    expect(await device({ profile: 'tenths-f-int32-msw-no-watchdog' })).toEqual({
      fencing: 'lease',
      unitWatchdog: 'none',
    });
    expect(await device({ profile: 'float32-lsw-toggle-inverted-coil', fencing: 'gateway' })).toEqual({
      fencing: 'gateway',
      unitWatchdog: 'toggle',
    });
  });
});
