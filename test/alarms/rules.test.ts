// The pure alarm rules (src/alarms/rules.ts): delay, hysteresis and the "hold" that keeps a new
// leader from clearing what it cannot judge; the rise rate; dew point both ways; units, sensor
// trust and the cluster's conditions; the site section's defaults and per-group limits.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import {
  clusterOwner,
  evaluateCluster,
  evaluateGroup,
  type GroupSnapshot,
  newMemory,
  type RuleMemory,
} from '../../src/alarms/rules.ts';
import {
  alarmDelays,
  alarmLimits,
  alarmSiteProblems,
  DEFAULT_ALARM_LIMITS,
} from '../../src/config/alarm-schema.ts';
import { dewPointC } from '../../src/sensors/group-view.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { reportNodes } from '../support/sensor-reports.ts';

const base = (over: Partial<GroupSnapshot> = {}): GroupSnapshot => ({
  group: 'zone-1',
  nowMs: 0,
  rackInletsC: { R1: 22 },
  rackDewPointsC: {},
  verdict: 'ok',
  configuredInletSensors: 3,
  units: [],
  drive: { driving: true, problem: null },
  limits: alarmLimits(undefined),
  delays: alarmDelays(undefined),
  ...over,
});

function verdictOf(s: GroupSnapshot, m: RuleMemory, kind: string, subject: string | null = 'R1') {
  const c = evaluateGroup(s, m).find((x) => x.kind === kind && x.subject === subject);
  if (!c) throw new Error(`no ${kind} condition for ${subject}`);
  return c;
}

describe('rack inlet limits: delay and hysteresis', () => {
  it('raises only after the delay without a break, clears only below limit − hysteresis', () => {
    const m = newMemory();
    const limits = alarmLimits({ inlet: { recommendedC: 27, hysteresisC: 1, delayS: 60 } });
    const at = (tS: number, c: number) =>
      verdictOf(base({ nowMs: tS * 1000, rackInletsC: { R1: c }, limits }), m, 'inlet-recommended').verdict;
    expect(at(0, 26)).toBe('clear');
    expect(at(10, 27.5)).toBe('hold'); // above, the delay runs
    expect(at(40, 28)).toBe('hold');
    expect(at(69, 28)).toBe('hold'); // 59 s above
    expect(at(70, 28)).toBe('active'); // 60 s above without a break
    // Back under the limit but inside the band: kept as it is (no chatter).
    expect(at(80, 26.5)).toBe('hold');
    expect(at(90, 26)).toBe('clear'); // at limit − hysteresis
  });

  it('a dip into the band starts the delay over', () => {
    const m = newMemory();
    const limits = alarmLimits({ inlet: { delayS: 60 } });
    const at = (tS: number, c: number) =>
      verdictOf(base({ nowMs: tS * 1000, rackInletsC: { R1: c }, limits }), m, 'inlet-recommended').verdict;
    expect(at(0, 28)).toBe('hold');
    expect(at(50, 26.8)).toBe('hold'); // a break
    expect(at(60, 28)).toBe('hold');
    expect(at(110, 28)).toBe('hold'); // 50 s since the break
    expect(at(120, 28)).toBe('active');
  });

  it('an unknown inlet holds (never clears what it cannot judge), and a fresh memory never clears a hot rack', () => {
    const m = newMemory();
    expect(verdictOf(base({ rackInletsC: { R1: null } }), m, 'inlet-allowable').verdict).toBe('hold');
    // A new leader (no memory) reading 33 °C: active only after its own delay, and never `clear`.
    const fresh = newMemory();
    expect(verdictOf(base({ rackInletsC: { R1: 33 } }), fresh, 'inlet-allowable').verdict).toBe('hold');
  });

  it('a group’s own limits override the site’s, field by field; defaults are ASHRAE A1', () => {
    expect(DEFAULT_ALARM_LIMITS.inlet).toMatchObject({ recommendedC: 27, allowableC: 32 });
    expect(DEFAULT_ALARM_LIMITS.dewPoint).toMatchObject({ minC: -9, maxC: 15 });
    const l = alarmLimits({ inlet: { recommendedC: 25, delayS: 0 } }, { inlet: { recommendedC: 24 } });
    expect(l.inlet).toEqual({ recommendedC: 24, allowableC: 32, hysteresisC: 1, delayS: 0 });
    const m = newMemory();
    expect(verdictOf(base({ rackInletsC: { R1: 24.5 }, limits: l }), m, 'inlet-recommended').verdict).toBe(
      'active',
    );
  });

  it('limits in the wrong order are a site problem', () => {
    const problems = alarmSiteProblems({
      alarms: { inlet: { recommendedC: 30, allowableC: 28 } },
      controlGroups: [{ id: 'g', alarms: { dewPoint: { minC: 10, maxC: 5 } } }],
    });
    expect(problems.map((p) => p.path)).toEqual([
      '/alarms/inlet/allowableC',
      '/controlGroups/0/alarms/inlet/allowableC',
      '/controlGroups/0/alarms/dewPoint/maxC',
    ]);
  });
});

describe('inlet rise rate', () => {
  it('raises above 20 °C/h once half the window has samples, and holds before that', () => {
    const m = newMemory();
    const limits = alarmLimits({ riseRate: { windowS: 600, delayS: 0 } });
    let v = '';
    // 0.5 °C per minute = 30 °C/h
    for (let t = 0; t <= 600; t += 30) {
      v = verdictOf(
        base({ nowMs: t * 1000, rackInletsC: { R1: 22 + (0.5 * t) / 60 }, limits }),
        m,
        'inlet-rise-rate',
      ).verdict;
      if (t < 300) expect(v).toBe('hold');
    }
    expect(v).toBe('active');
    const c = verdictOf(
      base({ nowMs: 630_000, rackInletsC: { R1: 22 + 5.25 }, limits }),
      m,
      'inlet-rise-rate',
    );
    expect(c.value).toBeCloseTo(30, 0);
  });

  it('a steady inlet clears it', () => {
    const m = newMemory();
    const limits = alarmLimits({ riseRate: { windowS: 60, delayS: 0 } });
    let v = '';
    for (let t = 0; t <= 120; t += 10)
      v = verdictOf(base({ nowMs: t * 1000, rackInletsC: { R1: 24 }, limits }), m, 'inlet-rise-rate').verdict;
    expect(v).toBe('clear');
  });
});

describe('dew point', () => {
  it('out of range on either side, back inside by the hysteresis', () => {
    const limits = alarmLimits({ dewPoint: { delayS: 0, hysteresisC: 1 } });
    const v = (dp: number | null) =>
      verdictOf(base({ rackDewPointsC: { R1: dp }, limits }), newMemory(), 'dew-point').verdict;
    expect(v(16)).toBe('active');
    expect(v(-10)).toBe('active');
    expect(v(14.5)).toBe('hold');
    expect(v(-8.5)).toBe('hold');
    expect(v(10)).toBe('clear');
    expect(v(null)).toBe('hold');
  });
});

describe('units, sensor trust, drive', () => {
  const unit = (mode: string | null, link: 'up' | 'down' = 'up') => [{ id: 'AHU-1', link, mode }];

  it('a trip is active at once; comm loss after its delay; nothing is judged while not driving', () => {
    const m = newMemory();
    expect(verdictOf(base({ units: unit('tripped') }), m, 'unit-tripped', 'AHU-1').verdict).toBe('active');
    expect(verdictOf(base({ units: unit('remote') }), m, 'unit-tripped', 'AHU-1').verdict).toBe('clear');
    const down = (tS: number) =>
      verdictOf(base({ nowMs: tS * 1000, units: unit('remote', 'down') }), m, 'unit-comm-loss', 'AHU-1');
    expect(down(0).verdict).toBe('hold');
    expect(down(10).verdict).toBe('active');
    // The link is down: what the unit last said (tripped or not) is not judged.
    expect(verdictOf(base({ units: unit('tripped', 'down') }), m, 'unit-tripped', 'AHU-1').verdict).toBe(
      'hold',
    );
    const notDriving = base({ units: unit('fallback'), drive: { driving: false, problem: null } });
    for (const kind of ['unit-fallback', 'unit-comm-loss', 'unit-tripped'])
      expect(verdictOf(notDriving, newMemory(), kind, 'AHU-1').verdict).toBe('hold');
  });

  it('sensor trust: blind and degraded are two alarms; a group without inlet sensors has neither', () => {
    const m = newMemory();
    const s = base({ verdict: 'blind', delays: { ...alarmDelays(undefined), sensorsS: 0 } });
    expect(verdictOf(s, m, 'sensors-blind', null).verdict).toBe('active');
    expect(verdictOf(s, m, 'sensors-degraded', null).verdict).toBe('clear');
    const none = evaluateGroup({ ...s, configuredInletSensors: 0 }, newMemory());
    expect(none.filter((c) => c.kind.startsWith('sensors-'))).toEqual([]);
  });

  it('a group whose leader cannot drive it', () => {
    const m = newMemory();
    const s = base({ drive: { driving: true, problem: 'no unit accepted a write for 10 s' } });
    const c = verdictOf(s, m, 'group-not-driven', null);
    expect(c.verdict).toBe('active');
    expect(c.message).toContain('no unit accepted a write');
    expect(verdictOf(base(), m, 'group-not-driven', null).verdict).toBe('clear');
    expect(
      verdictOf(base({ drive: { driving: false, problem: null } }), m, 'group-not-driven', null).verdict,
    ).toBe('hold');
  });
});

describe('cluster conditions', () => {
  it('node down and a group without a leader, after their delays; the owner is the first name', () => {
    const m = newMemory();
    const snap = (tS: number, members: string[], leader: string | null) =>
      evaluateCluster(
        {
          nowMs: tS * 1000,
          configuredNodes: ['n1', 'n2', 'n3'],
          members,
          groups: [{ id: 'zone-1', leader }],
          delays: alarmDelays(undefined),
        },
        m,
      );
    const find = (cs: ReturnType<typeof snap>, kind: string, subject: string | null) =>
      cs.find((c) => c.kind === kind && c.subject === subject && (c.group === null || c.group === 'zone-1'))!;
    let cs = snap(0, ['n1', 'n2'], null);
    expect(find(cs, 'node-down', 'n3').verdict).toBe('hold');
    expect(find(cs, 'node-down', 'n1').verdict).toBe('clear');
    expect(cs.find((c) => c.kind === 'group-leaderless')!.verdict).toBe('hold');
    cs = snap(15, ['n1', 'n2'], null);
    expect(find(cs, 'node-down', 'n3').verdict).toBe('active');
    expect(cs.find((c) => c.kind === 'group-leaderless')!.verdict).toBe('active');
    cs = snap(16, ['n1', 'n2', 'n3'], 'n2');
    expect(find(cs, 'node-down', 'n3').verdict).toBe('clear');
    expect(cs.find((c) => c.kind === 'group-leaderless')!.verdict).toBe('clear');
    expect(clusterOwner(['n3', 'n1', 'n2'])).toBe('n1');
    expect(clusterOwner([])).toBeNull();
  });
});

describe('dew point per rack from what the sensors report', () => {
  it('the highest of the rack’s nodes with a good inlet and %RH; racks without %RH have none', () => {
    const site = generateSite(demoShape);
    const group = site.controlGroups[0]!;
    const nodes = group.sensorNodes.map((id) => site.sensorNodes.find((n) => n.id === id)!);
    const now = 1_000_000;
    const store = new SensorStore(site, { now: () => now });
    reportNodes(store, site, group.sensorNodes, (_n, s, i) => (s.kind === 'humidity' ? 40 + i : 24), {
      atMs: now,
    });
    const dp = store.rackDewPointsC(group.id);
    for (const [i, n] of nodes.entries()) {
      if (!n.sensors.some((s) => s.kind === 'humidity')) continue;
      const sameRack = nodes.filter((m) => m.rack === n.rack && m.sensors.some((s) => s.kind === 'humidity'));
      const want = Math.max(...sameRack.map((m) => dewPointC(24, 40 + nodes.indexOf(m))));
      expect(dp[n.rack], `rack ${n.rack} (node ${i})`).toBeCloseTo(want, 6);
    }
    const withRh = new Set(
      nodes.filter((n) => n.sensors.some((s) => s.kind === 'humidity')).map((n) => n.rack),
    );
    expect(Object.keys(dp).sort()).toEqual([...withRh].sort());
    expect(withRh.size).toBeGreaterThan(0);
  });
});
