// An OPC-UA unit without message security is allowed (many units offer nothing else) but only
// where the config names None, and never silently: the device says so once at start. Left out,
// the mode is SignAndEncrypt. A secured unit says nothing. (Trust and SignAndEncrypt against the simulator: opcua-device.test.ts.)
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { OpcuaDevice } from '../../src/devices/opcua/opcua-device.ts';
import { securityModeOf } from '../../src/devices/opcua/opcua-link.ts';
import { captureLogs } from '../support/log-lines.ts';

const base = generateSite(demoShape).airHandlers.find((a): a is OpcuaAirHandler => a.protocol === 'opcua')!;

function warnings(endpoint: Partial<OpcuaAirHandler['endpoint']>): Record<string, unknown>[] {
  const logs = captureLogs();
  const { securityMode: _, ...rest } = base.endpoint;
  new OpcuaDevice({ ...base, endpoint: { ...rest, ...endpoint } }, { logger: logs.logger });
  return logs.parsed().filter((l) => String(l.msg).includes('without message security'));
}

describe('OPC-UA security mode at start', () => {
  it('is SignAndEncrypt unless the site names None, which is warned about once', () => {
    expect(securityModeOf({ url: base.endpoint.url })).toBe('SignAndEncrypt');
    expect(warnings({ securityMode: 'None' })).toMatchObject([{ level: 40, securityMode: 'None' }]);
    expect(warnings({})).toEqual([]);
    expect(warnings({ securityMode: 'Sign' })).toEqual([]);
    expect(warnings({ securityMode: 'SignAndEncrypt' })).toEqual([]);
  });
});
