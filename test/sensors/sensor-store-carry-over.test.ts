// A config reload that rebuilds the sensor store (a node added, one removed) carries over what the
// old store knew of everything still the same thing in the new site: each group sees what it saw
// (not blind until every node reports again), a stale reading stays stale by its own time, a
// flapping group's verdict hold keeps holding, a node's seq memory still tells a copy, a gateway's
// status stays; a node or sensor only in the new site starts empty.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import type { SensorNode, Site } from '../../src/config/site-schema.ts';
import { type GroupSensorView, SensorStore } from '../../src/sensors/sensor-store.ts';
import { reportNodes } from '../support/sensor-reports.ts';

const site = generateSite(demoShape);
const [g0, g1, g2, g3] = site.controlGroups as [
  Site['controlGroups'][number],
  Site['controlGroups'][number],
  Site['controlGroups'][number],
  Site['controlGroups'][number],
];
const nodeOf = new Map(site.sensorNodes.map((n) => [n.id, n]));
const inlet = (n: SensorNode) => 21 + (site.sensorNodes.indexOf(n) % 7) * 0.3;
const healthy = (n: SensorNode, s: { kind: string }) =>
  s.kind === 'humidity' ? 45 : s.kind === 'subfloor-pressure' ? 20 : inlet(n);
/** G1's coolest node: gone from the new site, its group's hottest inlet stays what it was. */
const removed = [...g1.sensorNodes].sort((a, b) => inlet(nodeOf.get(a)!) - inlet(nodeOf.get(b)!))[0]!;
/** G2's node that stops reporting: stale before the reload. */
const silent = g2.sensorNodes[1]!;
/** G3's node that drops out twice: its group flaps, and is held degraded while it recovers. */
const flapper = nodeOf.get(g3.sensorNodes[2]!)!;
/** A node of G0 whose %RH sensor is replaced by another: its inlets carry over, the new sensor does not. */
const rebuilt = g0.sensorNodes[3]!;
const added: SensorNode = { ...nodeOf.get(g0.sensorNodes[0]!)!, id: 'N-ADDED' };

/** The site after the reload: a node added to G0, one removed from G1, one node's sensors changed. */
const next: Site = {
  ...site,
  sensorNodes: [
    ...site.sensorNodes
      .filter((n) => n.id !== removed)
      .map((n) =>
        n.id === rebuilt
          ? {
              ...n,
              sensors: [...n.sensors.filter((s) => s.id !== 'rh'), { id: 'rh2', kind: 'humidity' as const }],
            }
          : n,
      ),
    added,
  ],
  controlGroups: site.controlGroups.map((g) =>
    g.id === g0.id
      ? { ...g, sensorNodes: [...g.sensorNodes, added.id] }
      : { ...g, sensorNodes: g.sensorNodes.filter((id) => id !== removed) },
  ),
};

const trusted = ({ verdict, inletMaxC, coverage, uncoveredRacks, recovery }: GroupSensorView) => ({
  verdict,
  inletMaxC,
  coverage,
  uncoveredRacks,
  recovery,
});

/** A store that saw 35 s of the hall; `clock` moves both stores' monotonic time. */
function storeThatSawTheHall(clock: { now: number }) {
  const store = new SensorStore(site, { now: () => clock.now, wallNow: () => clock.now });
  const at = (s: number) => {
    clock.now = 1_000_000 + s * 1000;
  };
  const all = site.sensorNodes.map((n) => n.id);
  const viewAll = () => {
    for (const g of site.controlGroups) store.view(g.id);
  };
  at(0);
  reportNodes(store, site, all, healthy, { seq: 1 });
  viewAll();
  // The flapper leaves its rack uncovered twice (readings out of range), coming back in between.
  for (const [s, seq, value] of [
    [1, 2, 99],
    [2, 3, undefined],
    [3, 4, 99],
    [4, 5, undefined],
  ] as const) {
    at(s);
    reportNodes(
      store,
      site,
      [flapper.id],
      (n, x) => (value !== undefined && x.kind.startsWith('inlet') ? value : healthy(n, x)),
      {
        seq,
      },
    );
    store.view(g3.id);
  }
  // Everyone but the silent node reports again; its reading (from 0 s) is stale at 35 s.
  at(35);
  reportNodes(
    store,
    site,
    all.filter((id) => id !== silent && id !== flapper.id),
    healthy,
    { seq: 2 },
  );
  reportNodes(store, site, [flapper.id], healthy, { seq: 6 });
  viewAll();
  return { store, at };
}

describe('a sensor store rebuilt by a reload, carried over', () => {
  it('gives every group the view it had, keeps stale readings stale and a flapping group held', () => {
    const clock = { now: 0 };
    const { store: prev, at } = storeThatSawTheHall(clock);
    const before = new Map(site.controlGroups.map((g) => [g.id, prev.view(g.id)]));
    const staleBefore = prev.sensor(silent, 'inlet-top')!;
    expect(staleBefore.flags).toContain('stale');
    expect(before.get(g2.id)!.verdict).toBe('degraded');
    expect(before.get(g3.id)).toMatchObject({ verdict: 'degraded', recovery: { to: 'ok', heldS: 31 } });
    for (const g of [g0, g1]) expect(before.get(g.id)!.verdict).toBe('ok');

    const store = new SensorStore(next, { now: () => clock.now, wallNow: () => clock.now });
    store.carryOver(prev);

    // Groups the change did not touch: exactly what they were.
    for (const g of [g2, g3]) expect(trusted(store.view(g.id)), g.id).toEqual(trusted(before.get(g.id)!));
    // G0 gained a node that has not reported yet: its other sensors still count.
    const v0 = store.view(g0.id);
    const b0 = before.get(g0.id)!;
    expect(v0).toMatchObject({
      verdict: 'ok',
      inletMaxC: b0.inletMaxC,
      goodInletSensors: b0.goodInletSensors,
    });
    expect(v0.configuredInletSensors).toBe(b0.configuredInletSensors + 3);
    expect(v0.coverage).toBeCloseTo(b0.goodInletSensors / (b0.configuredInletSensors + 3), 9);
    // G1 lost its coolest node: the rest is as it was.
    const v1 = store.view(g1.id);
    const b1 = before.get(g1.id)!;
    expect(v1).toMatchObject({ verdict: 'ok', inletMaxC: b1.inletMaxC, coverage: 1 });
    expect(v1.goodInletSensors).toBe(b1.goodInletSensors - 3);

    // The stale reading: the same value and time, still stale; the new node and sensor: nothing yet.
    expect(store.sensor(silent, 'inlet-top')).toEqual(staleBefore);
    expect(store.sensor(added.id, 'inlet-top')).toMatchObject({ value: null, receivedAtMs: null });
    expect(store.sensor(rebuilt, 'rh2')).toMatchObject({ value: null });
    expect(store.sensor(rebuilt, 'inlet-middle')).toEqual(prev.sensor(rebuilt, 'inlet-middle'));
    expect(store.sensor(removed, 'inlet-top')).toBeUndefined();

    // A copy of a report the old store applied (a broker redelivering after the reconnect) is one.
    const dup = nodeOf.get(g0.sensorNodes[0]!)!;
    expect(
      store.ingestReport(
        {
          node: dup.id,
          gateway: dup.gateway,
          seq: 2,
          readings: [{ sensor: 'inlet-top', kind: 'inlet-top', value: 40 }],
        },
        'mqtt',
        clock.now,
      ),
    ).toBe('duplicate');

    // The flap is still held: ok only once the sensors said so for the whole hold (from 4 s).
    at(50);
    reportNodes(store, next, [flapper.id], healthy, { seq: 7 });
    expect(store.view(g3.id)).toMatchObject({ verdict: 'degraded', recovery: { heldS: 46 } });
    at(64);
    reportNodes(store, next, [flapper.id], healthy, { seq: 8 });
    expect(store.view(g3.id).verdict).toBe('ok');
  });

  it('keeps a gateway’s offline status, and starts a new site’s things empty', () => {
    const clock = { now: 1_000_000 };
    const prev = new SensorStore(site, { now: () => clock.now, wallNow: () => clock.now });
    reportNodes(
      prev,
      site,
      site.sensorNodes.map((n) => n.id),
      healthy,
    );
    prev.setGatewayOnline('gw-1', false, 'last will');
    const store = new SensorStore(next, { now: () => clock.now, wallNow: () => clock.now });
    store.carryOver(prev);
    expect(store.gatewayStates()).toEqual(prev.gatewayStates());
    const onGw1 = site.sensorNodes.find((n) => n.gateway === 'gw-1' && n.id !== removed)!;
    expect(store.sensor(onGw1.id, 'inlet-top')!.flags).toContain('gateway-offline');
    // Nothing known: a store carried over from one that saw nothing is as new.
    const empty = new SensorStore(next, { now: () => clock.now, wallNow: () => clock.now });
    empty.carryOver(new SensorStore(site, { now: () => clock.now, wallNow: () => clock.now }));
    for (const g of next.controlGroups) expect(empty.view(g.id).verdict).toBe('blind');
  });
});
