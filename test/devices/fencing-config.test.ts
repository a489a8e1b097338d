// Fencing in the site file: the default per profile, epoch refused where the unit has no epoch
// point, and the lease timing rule (a command of n requests must fit the lease window). The rule
// functions on in-memory sites, with the shipped profiles of config/profiles.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deviceTimingRules } from '../../src/config/controller-config.ts';
import { loadSite } from '../../src/config/load-site.ts';
import { checkSiteRules } from '../../src/config/site-rules.ts';
import { type Site, unitFencing } from '../../src/config/site-schema.ts';
import { leaseCommandRequests } from '../../src/devices/create-device.ts';

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

describe('gateway fencing', () => {
  it('is refused for an OPC-UA unit: the gateway speaks Modbus only', () => {
    const site = siteWith([{ id: 'UA', fencing: 'gateway' }]);
    (site.airHandlers[0] as { protocol: string }).protocol = 'opcua';
    expect(checkSiteRules(site)).toEqual([
      expect.objectContaining({
        path: '/airHandlers/0/fencing',
        message: expect.stringMatching(
          /"UA" is an OPC-UA unit: the coolctl fencing gateway speaks Modbus only/,
        ),
      }),
    ]);
  });
});

describe('OPC-UA message security', () => {
  it('a signed mode with securityPolicy None is refused at its path; None with None, or a policy, is not', () => {
    const site = (endpoint: Record<string, string | undefined>) => {
      const s = siteWith([{ id: 'UA' }]);
      Object.assign(s.airHandlers[0]!, {
        protocol: 'opcua',
        endpoint: { url: 'opc.tcp://127.0.0.1:4840/ua', ...endpoint },
      });
      return s;
    };
    for (const mode of [{}, { securityMode: 'Sign' }, { securityMode: 'SignAndEncrypt' }])
      expect(checkSiteRules(site({ ...mode, securityPolicy: 'None' }))).toEqual([
        expect.objectContaining({
          path: '/airHandlers/0/endpoint/securityPolicy',
          message: expect.stringMatching(
            /"UA" asks for securityMode .* with securityPolicy None: a signed link needs a policy/,
          ),
        }),
      ]);
    expect(checkSiteRules(site({ securityMode: 'None', securityPolicy: 'None' }))).toEqual([]);
    expect(checkSiteRules(site({ securityMode: 'Sign', securityPolicy: 'Basic256Sha256' }))).toEqual([]);
  });
});

describe('fenceBase', () => {
  it('is refused on a unit that is not fenced by a gateway', () => {
    const site = siteWith([
      { id: 'A', profile: 'tenths-c-holding', fencing: 'gateway' },
      { id: 'B', profile: 'tenths-c-holding' },
    ]);
    (site.airHandlers[0] as { fenceBase?: number }).fenceBase = 50_000;
    (site.airHandlers[1] as { fenceBase?: number }).fenceBase = 50_000;
    expect(checkSiteRules(site)).toEqual([
      expect.objectContaining({
        path: '/airHandlers/1/fenceBase',
        allowed: 'fenceBase only with fencing: gateway',
      }),
    ]);
  });
});

describe('the lease timing rule', () => {
  const testTiming = { leaseTtlS: 2, safetyMarginMs: 400, keepaliveIntervalMs: 300 };

  it('refuses a lease unit whose command of n requests cannot fit, and says both ways out', async () => {
    const site = siteWith([{ id: 'V', profile: 'float32-lsw-toggle-inverted-coil' }]);
    (site.airHandlers[0] as { client?: object }).client = { maxApplyDelayMs: 500 };
    const lease = await leaseCommandRequests(site.airHandlers);
    expect(lease.problems).toEqual([]);
    // heartbeat, setpoint, fan each period (FC5/FC6: one request each); run too on a new connection.
    expect(lease.counts.get('V')).toEqual({ perPeriod: 3, first: 4 });
    const problems = deviceTimingRules(site, testTiming, 'site.yaml', lease.counts);
    expect(problems).toEqual([
      expect.objectContaining({
        path: '/airHandlers/0/client/maxApplyDelayMs',
        message: expect.stringMatching(
          /V is lease-fenced .* 3 requests: 3 × 500 ms worst case = 1500 ms, more than the 1300 ms/,
        ),
        allowed: expect.stringMatching(/maxApplyDelayMs ≤ 433 .* fencing: gateway, or leaseTtlS ≥ 3/),
      }),
    ]);
    // The same unit behind a gateway, or with a tight bound, fits.
    (site.airHandlers[0] as { client?: object }).client = { maxApplyDelayMs: 300 };
    expect(deviceTimingRules(site, testTiming, 'site.yaml', lease.counts)).toEqual([]);
    const gw = siteWith([{ id: 'G', profile: 'float32-lsw-toggle-inverted-coil', fencing: 'gateway' }]);
    expect((await leaseCommandRequests(gw.airHandlers)).counts.size).toBe(0);
  });

  it('the demo site passes it with the tests’ timing (TTL 2 s, margin 400 ms, keepalive 300 ms)', async () => {
    const site = await loadSite('config/demo-site.yaml');
    const lease = await leaseCommandRequests(site.airHandlers);
    expect(lease.problems).toEqual([]);
    expect(lease.counts.size).toBeGreaterThan(0);
    expect(deviceTimingRules(site, testTiming, 'config/demo-site.yaml', lease.counts)).toEqual([]);
  });

  it('counts an OPC-UA vendor unit’s command: one Write of its variables', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-fence-ua-'));
    try {
      await writeFile(
        join(dir, 'ua-vendor.yaml'),
        [
          'profile: ua-vendor',
          'description: an OPC-UA unit with writable variables',
          'source: test',
          'protocol: opcua',
          'fencing: [lease]',
          'watchdog: { style: none }',
          'opcua:',
          '  namespaceUri: urn:test:ua',
          '  points:',
          '    supplyC: { nodeId: "s={unit}.Supply" }',
          '    fanPct: { nodeId: "s={unit}.Fan", write: true }',
          '    supplySetpointC: { nodeId: "s={unit}.Sp", write: true }',
        ].join('\n'),
      );
      const site = siteWith([{ id: 'UA', profile: 'ua-vendor' }]);
      (site.airHandlers[0] as { protocol: string }).protocol = 'opcua';
      const lease = await leaseCommandRequests(site.airHandlers, dir);
      expect(lease.problems).toEqual([]);
      expect(lease.counts.get('UA')).toEqual({ perPeriod: 1, first: 1 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a profile that does not load is a problem of the unit’s profile entry', async () => {
    const site = siteWith([{ id: 'X', profile: 'no-such-profile' }]);
    const lease = await leaseCommandRequests(site.airHandlers);
    expect(lease.problems).toEqual([{ index: 0, message: expect.stringMatching(/no-such-profile/) }]);
  });
});
