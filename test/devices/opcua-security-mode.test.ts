// An OPC-UA unit without message security is allowed (many units offer nothing else) but never
// silent: the device says so once at start, and whether the config asked for None or left it out.
// A secured unit says nothing. (Trust and SignAndEncrypt against the simulator: opcua-device.test.ts.)
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { OpcuaDevice } from '../../src/devices/opcua/opcua-device.ts';
import { captureLogs } from '../support/log-lines.ts';

const base = generateSite(demoShape).airHandlers.find((a): a is OpcuaAirHandler => a.protocol === 'opcua')!;

function warnings(endpoint: Partial<OpcuaAirHandler['endpoint']>): Record<string, unknown>[] {
  const logs = captureLogs();
  const { securityMode: _, ...rest } = base.endpoint;
  new OpcuaDevice({ ...base, endpoint: { ...rest, ...endpoint } }, { logger: logs.logger });
  return logs.parsed().filter((l) => String(l.msg).includes('without message security'));
}

describe('OPC-UA security mode at start', () => {
  it('warns once for None, configured or by default; not for Sign or SignAndEncrypt', () => {
    expect(warnings({ securityMode: 'None' })).toMatchObject([
      { level: 40, securityMode: 'None', configured: true },
    ]);
    expect(warnings({})).toMatchObject([{ level: 40, configured: false }]);
    expect(warnings({ securityMode: 'Sign' })).toEqual([]);
    expect(warnings({ securityMode: 'SignAndEncrypt' })).toEqual([]);
  });
});
