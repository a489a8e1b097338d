// A group's sensor verdict counts racks, not only the share of sensors: a rack whose only sensor
// node went silent leaves coverage at 0.92 of a 12-rack group, and must still make it `degraded`,
// with the rack named in the view's reasons and in the sensors-degraded alarm. On a fake clock.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { evaluateGroup, newMemory } from '../../src/alarms/rules.ts';
import { alarmDelays, alarmLimits } from '../../src/config/alarm-schema.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { judgeVerdict, nameRacks } from '../../src/sensors/verdict.ts';
import { type ReportFields, reportNodes } from '../support/sensor-reports.ts';

const site = generateSite(demoShape);
const group = site.controlGroups[0]!;
const nodeOf = (id: string) => site.sensorNodes.find((n) => n.id === id)!;
const rackOf = (id: string) => nodeOf(id).rack;

function setup() {
  let now = 1_000_000;
  const store = new SensorStore(site, { now: () => now });
  /** Every node of the group but `silent` reports, healthy; `fields` go into each report. */
  const feed = (seq: number, silent: ReadonlySet<string> = new Set(), fields: ReportFields = {}) =>
    reportNodes(
      store,
      site,
      group.sensorNodes.filter((id) => !silent.has(id)),
      (n, s) => (s.kind === 'humidity' ? 45 : 22 + ((seq * 7 + n.id.length) % 5) * 0.05),
      { seq, atMs: now, fields },
    );
  const advance = (ms: number) => {
    now += ms;
  };
  return { store, feed, advance, now: () => now };
}

describe('group verdict by rack', () => {
  it('one rack of twelve without a good inlet makes the group degraded, and names it', () => {
    const t = setup();
    t.feed(1);
    expect(t.store.view(group.id)).toMatchObject({ verdict: 'ok', uncoveredRacks: [] });
    const dead = group.sensorNodes[2]!;
    // its node goes silent: stale after 3 report intervals, while the others keep reporting
    t.advance(31_000);
    t.feed(2, new Set([dead]));
    const v = t.store.view(group.id);
    expect(v.coverage).toBeGreaterThanOrEqual(0.8); // the share alone would say ok
    expect(v.uncoveredRacks).toEqual([rackOf(dead)]);
    expect(v.verdict).toBe('degraded');
    expect(v.reasons).toEqual([`1 rack without a good inlet sensor: ${rackOf(dead)}`]);
    // the figures beside control (alarms, /metrics, dashboard) carry the same verdict
    expect(t.store.figures(group.id, 1000).view.verdict).toBe('degraded');
    // the node reports again: ok again
    t.feed(3);
    expect(t.store.view(group.id)).toMatchObject({ verdict: 'ok', uncoveredRacks: [], reasons: [] });
  });

  it('a rack that keeps one good inlet is covered; a warning flag does not uncover it', () => {
    const t = setup();
    t.feed(1);
    const node = nodeOf(group.sensorNodes[0]!);
    // two of the rack's three inlets out of range: the rack is still watched by the third
    t.store.ingestReport(
      {
        node: node.id,
        gateway: node.gateway,
        seq: 2,
        readings: node.sensors.map((s) => ({
          sensor: s.id,
          kind: s.kind,
          value: s.kind === 'inlet-middle' ? 22 : s.kind === 'humidity' ? 45 : 150,
        })),
      },
      'mqtt',
      t.now(),
    );
    let v = t.store.view(group.id);
    expect(v.goodInletSensors).toBe(v.configuredInletSensors - 2);
    expect(v.uncoveredRacks).toEqual([]);
    expect(v.verdict).toBe('ok');
    // low battery and a weak link only warn: the readings stay good, so does the verdict
    t.feed(3, new Set(), { batteryPct: 5, rssiDbm: -95 });
    expect(t.store.sensor(node.id, 'inlet-top')!.flags).toEqual(
      expect.arrayContaining(['low-battery', 'weak-link']),
    );
    v = t.store.view(group.id);
    expect(v.verdict).toBe('ok');
  });

  it('names at most five racks, then counts the rest; blind stays blind', () => {
    const t = setup();
    t.feed(1);
    t.advance(31_000);
    // 7 of 12 racks silent: coverage 15/36, under okCoverage but over blindCoverage
    const silent = new Set(group.sensorNodes.slice(0, 7));
    t.feed(2, silent);
    const v = t.store.view(group.id);
    expect(v.verdict).toBe('degraded');
    expect(v.uncoveredRacks).toHaveLength(7);
    const named = v.uncoveredRacks.slice(0, 5).join(', ');
    expect(v.reasons).toEqual([
      'coverage 41.6 % under okCoverage 80 %',
      `7 racks without a good inlet sensor: ${named} +2 more`,
    ]);
    // 10 of 12 silent: under blindCoverage, blind as before, racks still named
    t.advance(31_000);
    t.feed(3, new Set(group.sensorNodes.slice(0, 10)));
    const b = t.store.view(group.id);
    expect(b.verdict).toBe('blind');
    expect(b.reasons![0]).toBe('coverage 16.6 % under blindCoverage 30 %');
    expect(b.reasons![1]).toMatch(/^10 racks without a good inlet sensor: .* \+5 more$/);
    // nothing at all: blind, and no list of every rack
    t.advance(31_000);
    expect(t.store.view(group.id)).toMatchObject({ verdict: 'blind', reasons: ['no good inlet sensor'] });
  });

  it('judges from racks as well as the share, whatever the thresholds', () => {
    const th = { okCoverage: 0.8, blindCoverage: 0.3 };
    const at = (good: number, configured: number, uncoveredRacks: string[]) =>
      judgeVerdict({ goodInletSensors: good, configuredInletSensors: configured, uncoveredRacks }, th);
    expect(at(36, 36, []).verdict).toBe('ok');
    expect(at(35, 36, ['R1']).verdict).toBe('degraded');
    expect(at(20, 36, []).verdict).toBe('degraded');
    expect(at(10, 36, ['R1']).verdict).toBe('blind');
    expect(at(0, 36, ['R1']).verdict).toBe('blind');
    expect(at(0, 0, []).verdict).toBe('blind');
    expect(nameRacks(['a', 'b'])).toBe('a, b');
    expect(nameRacks(['a', 'b', 'c', 'd', 'e', 'f'])).toBe('a, b, c, d, e +1 more');
  });

  it('the sensors-degraded alarm names the uncovered rack', () => {
    const t = setup();
    const delays = alarmDelays(undefined);
    const limits = alarmLimits(undefined);
    const memory = newMemory();
    const dead = group.sensorNodes[4]!;
    const judge = () => {
      const f = t.store.figures(group.id, 0);
      return evaluateGroup(
        {
          group: group.id,
          nowMs: t.now(),
          rackInletsC: { racks: f.inletRacks, c: f.rackInletMaxC },
          rackDewPointsC: { racks: f.dewRacks, c: f.rackDewPointC },
          verdict: f.view.verdict,
          configuredInletSensors: f.view.configuredInletSensors,
          units: [],
          drive: { driving: true, problem: null },
          limits,
          delays,
        },
        memory,
      ).find((c) => c.kind === 'sensors-degraded')!;
    };
    t.feed(1);
    expect(judge().verdict).toBe('clear');
    let seq = 2;
    // the node stays silent; the others report every 10 s until the alarm's delay has passed
    for (let ms = 0; ms <= 51_000 + delays.sensorsS * 1000; ms += 10_000) {
      t.advance(10_000);
      t.feed(seq++, new Set([dead]));
      judge();
    }
    const c = judge();
    expect(c.verdict).toBe('active');
    expect(c.message).toBe(
      `group ${group.id}: sensor trust degraded — 1 rack without a good inlet sensor: ${rackOf(dead)}`,
    );
  });
});
