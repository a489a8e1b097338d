// Fencing in the site file: the default per profile, and epoch refused where the unit has no epoch
// point. Pure: the rule functions on an in-memory site.
import { describe, expect, it } from 'vitest';
import { checkSiteRules } from '../../src/config/site-rules.ts';
import { type Site, unitFencing } from '../../src/config/site-schema.ts';

function siteWith(units: { id: string; profile?: string; fencing?: string }[]): Site {
  return {
    site: { id: 's', name: 's' },
    rooms: [{ id: 'hall', widthM: 10, depthM: 10 }],
    racks: [],
    airHandlers: units.map((u, i) => ({
      ...u,
      room: 'hall',
      xM: 1,
      yM: 1,
      protocol: 'modbus-tcp',
      endpoint: { host: '127.0.0.1', port: 1502 + i, unitId: 1 },
    })),
    gateways: [],
    sensorNodes: [],
    controlGroups: [],
  } as unknown as Site;
}

describe('fencing per unit', () => {
  it('defaults to epoch for coolctl-native and lease for any other profile', () => {
    expect(unitFencing({})).toBe('epoch');
    expect(unitFencing({ profile: 'coolctl-native' })).toBe('epoch');
    expect(unitFencing({ profile: 'tenths-c-holding' })).toBe('lease');
    expect(unitFencing({ profile: 'tenths-c-holding', fencing: 'gateway' })).toBe('gateway');
  });

  it('refuses epoch for a profile without an epoch point, and says what to use', () => {
    const problems = checkSiteRules(
      siteWith([
        { id: 'A', fencing: 'epoch' },
        { id: 'B', profile: 'tenths-c-holding', fencing: 'epoch' },
        { id: 'C', profile: 'tenths-c-holding', fencing: 'lease' },
      ]),
    );
    expect(problems).toEqual([
      expect.objectContaining({
        path: '/airHandlers/1/fencing',
        message: expect.stringMatching(
          /"B" asks for epoch fencing, but profile "tenths-c-holding" has no epoch point/,
        ),
        allowed: expect.stringMatching(/fencing: lease .* or gateway/),
      }),
    ]);
  });
});
