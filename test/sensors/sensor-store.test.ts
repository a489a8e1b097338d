// The sensor store's rules on a fake clock: sequence handling (duplicates, late reports, wrap,
// a rebooted node), each quality flag, the group verdict and dew point, bad payloads and floods,
// and the log lines wire input can cause (rate-limited, wire text clipped).
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { dewPointC } from '../../src/sensors/group-view.ts';
import type { Report } from '../../src/sensors/report.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { captureLogs } from '../support/log-lines.ts';
import { reportNodes } from '../support/sensor-reports.ts';

const site = generateSite(demoShape);
const group = site.controlGroups[0]!;
const nodeId = group.sensorNodes[0]!;
const node = site.sensorNodes.find((n) => n.id === nodeId)!;

function setup(opts: { logger?: import('pino').Logger } = {}) {
  let now = 1_000_000;
  const store = new SensorStore(site, { now: () => now, ...opts });
  const advance = (ms: number) => {
    now += ms;
  };
  const report = (
    seq: number,
    values: Partial<Record<string, number>> = {},
    extra: Partial<Report> = {},
  ): Report => ({
    node: nodeId,
    gateway: node.gateway,
    seq,
    readings: node.sensors.map((s) => ({
      sensor: s.id,
      kind: s.kind,
      value: values[s.id] ?? (s.kind === 'humidity' ? 45 : 21 + seq * 0.013),
    })),
    ...extra,
  });
  const feed = (r: Report) => store.ingestReport(r, 'mqtt', now);
  return { store, advance, report, feed, now: () => now };
}

/** Every node of the group reports once, healthy. */
function feedGroup(t: ReturnType<typeof setup>, seq: number) {
  reportNodes(
    t.store,
    site,
    group.sensorNodes,
    (n, s) => (s.kind === 'humidity' ? 45 : 22 + ((seq * 7 + n.id.length) % 5) * 0.05),
    { seq, atMs: t.now() },
  );
}

describe('sensor store', () => {
  it('applies reports in seq order only: duplicates and late reports never overwrite', () => {
    const t = setup();
    expect(t.feed(t.report(10, { 'inlet-top': 22 }))).toBeNull();
    expect(t.feed(t.report(10, { 'inlet-top': 99 }))).toBe('duplicate');
    expect(t.feed(t.report(12, { 'inlet-top': 23 }))).toBeNull();
    expect(t.feed(t.report(11, { 'inlet-top': 5 }))).toBe('out-of-order');
    expect(t.feed(t.report(11, { 'inlet-top': 5 }))).toBe('duplicate');
    expect(t.store.sensor(nodeId, 'inlet-top')!.value).toBe(23);
    const h = t.store.nodeHealth().find((n) => n.node === nodeId)!;
    expect(h).toMatchObject({ lastSeq: 12, reports: 2, duplicates: 2, outOfOrder: 1 });
    expect(t.store.counters.drops).toMatchObject({ duplicate: 2, 'out-of-order': 1 });
  });

  it('a duplicate is counted and logged at debug, never as a warning; a real drop still warns', () => {
    const logs = captureLogs();
    const t = setup({ logger: logs.logger });
    expect(t.feed(t.report(10))).toBeNull();
    for (let i = 0; i < 3; i++) expect(t.feed(t.report(10))).toBe('duplicate');
    expect(t.store.counters.drops.duplicate).toBe(3);
    const dropped = logs.parsed().filter((l) => l.msg === 'sensor report dropped');
    expect(dropped.map((l) => [l.level, l.reason])).toEqual([[20, 'duplicate']]);
    expect(t.feed(t.report(11, {}, { gateway: 'gw-elsewhere' }))).toBe('site-mismatch');
    const warned = logs.parsed().filter((l) => l.msg === 'sensor report dropped' && l.level === 40);
    expect(warned.map((l) => l.reason)).toEqual(['site-mismatch']);
  });

  it("knows a duplicate among the node's last 16 seqs; an older repeat is late, and never applied", () => {
    const t = setup();
    for (let seq = 1; seq <= 20; seq++)
      expect(t.feed(t.report(seq, { 'inlet-top': 20 + seq / 10 }))).toBeNull();
    expect(t.feed(t.report(5, { 'inlet-top': 99 }))).toBe('duplicate'); // 16th newest
    expect(t.feed(t.report(3, { 'inlet-top': 99 }))).toBe('out-of-order'); // forgotten: late
    expect(t.store.sensor(nodeId, 'inlet-top')!.value).toBe(22);
  });

  it('follows seq across the 2^32 wrap and believes a rebooted node after three reports', () => {
    const t = setup();
    t.feed(t.report(4_294_967_295));
    expect(t.feed(t.report(1))).toBeNull(); // wrapped: newer
    expect(t.feed(t.report(4_294_967_290))).toBe('out-of-order');
    const r = setup();
    r.feed(r.report(5000));
    expect(r.feed(r.report(1, { 'inlet-top': 30 }))).toBe('out-of-order');
    expect(r.feed(r.report(2, { 'inlet-top': 30 }))).toBe('out-of-order');
    expect(r.feed(r.report(3, { 'inlet-top': 30 }))).toBeNull();
    expect(r.feed(r.report(4, { 'inlet-top': 30.1 }))).toBeNull();
    expect(r.store.sensor(nodeId, 'inlet-top')!.value).toBe(30.1);
  });

  it('follows a node that reboots early in its life once its low seq counts up past any late delivery', () => {
    const t = setup();
    const top = () => t.store.sensor(nodeId, 'inlet-top')!;
    for (let seq = 1; seq <= 200; seq++) {
      t.advance(10_000);
      expect(t.feed(t.report(seq, { 'inlet-top': 22 + (seq % 7) * 0.1 }))).toBeNull();
    }
    // rebooted: counts from 1 again, every 10 s (before: 30 reports "out-of-order", the sensor stale)
    const outcomes: (string | null)[] = [];
    for (let seq = 1; seq <= 30; seq++) {
      t.advance(10_000);
      outcomes.push(t.feed(t.report(seq, { 'inlet-top': 25 + (seq % 5) * 0.1 })));
    }
    // the first two might still be late reports of the old count; by the third, none can be
    expect(outcomes.slice(0, 2)).toEqual(['out-of-order', 'out-of-order']);
    expect(outcomes.slice(2)).toEqual(Array(28).fill(null));
    expect(top()).toMatchObject({ value: 25, quality: 'good' });
    expect(t.store.nodeHealth().find((n) => n.node === nodeId)).toMatchObject({ lastSeq: 30, restarts: 1 });
    expect(t.store.counters.restarts).toBe(1);

    // so early that its new seqs are among the last 16 remembered: the same
    const e = setup();
    for (let seq = 1; seq <= 5; seq++) {
      e.advance(10_000);
      e.feed(e.report(seq));
    }
    const again = [1, 2, 3, 4].map((seq) => {
      e.advance(10_000);
      return e.feed(e.report(seq, { 'inlet-top': 30 + seq / 10 }));
    });
    expect(again).toEqual(['duplicate', 'duplicate', null, null]);
    expect(e.store.sensor(nodeId, 'inlet-top')!.value).toBe(30.4);
  });

  it('believes at once a report sampled after the newest, whatever its seq', () => {
    const t = setup();
    const at = (s: number) => new Date(Date.UTC(2026, 0, 1) + s * 10_000).toISOString();
    for (let seq = 1; seq <= 5; seq++) {
      t.advance(10_000);
      t.feed(t.report(seq, {}, { sampledAt: at(seq) }));
    }
    // reboots after 5 reports: seq 1 again, sampled later; a seq the store still remembers
    t.advance(10_000);
    expect(t.feed(t.report(1, { 'inlet-top': 31 }, { sampledAt: at(6) }))).toBeNull();
    expect(t.store.sensor(nodeId, 'inlet-top')!.value).toBe(31);
    t.advance(10_000);
    expect(t.feed(t.report(2, { 'inlet-top': 31.2 }, { sampledAt: at(7) }))).toBeNull();
    expect(t.store.nodeHealth().find((n) => n.node === nodeId)).toMatchObject({ lastSeq: 2, restarts: 1 });
  });

  it("never takes a late report or a copy for a new count, nor an old count's late report for news", () => {
    const t = setup();
    const top = () => t.store.sensor(nodeId, 'inlet-top')!.value;
    const at = (s: number) => new Date(Date.UTC(2026, 0, 1) + s * 1000).toISOString();
    for (let seq = 1; seq <= 100; seq++) {
      t.advance(1000);
      t.feed(t.report(seq, { 'inlet-top': 22 }, { sampledAt: at(seq) }));
    }
    t.advance(1000);
    t.feed(t.report(104, { 'inlet-top': 23 }, { sampledAt: at(104) }));
    // 101…103 took the long way round the mesh: they count up, from below, and are late
    for (const seq of [101, 102, 103]) {
      t.advance(2000);
      expect(t.feed(t.report(seq, { 'inlet-top': 5 }, { sampledAt: at(seq) }))).toBe('out-of-order');
    }
    // …and without their times (the rule must not need them)
    const u = setup();
    for (let seq = 1; seq <= 100; seq++) {
      u.advance(1000);
      u.feed(u.report(seq, { 'inlet-top': 22 }));
    }
    u.advance(1000);
    u.feed(u.report(104, { 'inlet-top': 23 }));
    for (const seq of [101, 102, 103]) {
      u.advance(3000);
      expect(u.feed(u.report(seq, { 'inlet-top': 5 }))).toBe('out-of-order');
    }
    expect(u.store.sensor(nodeId, 'inlet-top')!.value).toBe(23);
    // a copy of the newest, sampled when it was: a copy
    expect(t.feed(t.report(104, { 'inlet-top': 5 }, { sampledAt: at(104) }))).toBe('duplicate');
    expect(t.feed(t.report(90, { 'inlet-top': 5 }, { sampledAt: at(90) }))).toBe('duplicate');
    expect(top()).toBe(23);
    expect(t.store.counters.restarts).toBe(0);

    // A real reboot, believed at once from its time; the old count's reports still on their way
    // arrive after it and look "ahead" of the new count: they are late, not news.
    t.advance(1000);
    expect(t.feed(t.report(1, { 'inlet-top': 26 }, { sampledAt: at(200) }))).toBeNull();
    t.advance(500);
    expect(t.feed(t.report(103, { 'inlet-top': 5 }, { sampledAt: at(103) }))).toBe('out-of-order');
    expect(top()).toBe(26);
    t.advance(500);
    expect(t.feed(t.report(2, { 'inlet-top': 26.1 }, { sampledAt: at(201) }))).toBeNull();
    expect(top()).toBe(26.1);

    // Without times: a node far along reboots; it is believed at its third report (fast: 10/s),
    // and a late report of the old count right after is not taken for a jump of the new one.
    const f = setup();
    for (let seq = 4990; seq <= 5000; seq++) {
      f.advance(100);
      f.feed(f.report(seq, { 'inlet-top': 22 }));
    }
    for (const seq of [1, 2, 3]) {
      f.advance(100);
      f.feed(f.report(seq, { 'inlet-top': 27 }));
    }
    expect(f.store.nodeHealth().find((n) => n.node === nodeId)).toMatchObject({ lastSeq: 3, restarts: 1 });
    f.advance(100);
    expect(f.feed(f.report(4998, { 'inlet-top': 5 }))).toBe('out-of-order');
    f.advance(100);
    expect(f.feed(f.report(4, { 'inlet-top': 27.1 }))).toBeNull();
    expect(f.store.sensor(nodeId, 'inlet-top')!.value).toBe(27.1);
  });

  it('flags stale, stuck, out-of-range, spike and noisy; low battery and weak link only warn', () => {
    const t = setup();
    let seq = 1;
    const step = (values: Partial<Record<string, number>> = {}, extra: Partial<Report> = {}) => {
      t.advance(10_000);
      t.feed(t.report(seq++, values, extra));
    };
    step();
    expect(t.store.sensor(nodeId, 'inlet-top')!.quality).toBe('good');
    t.advance(31_000);
    expect(t.store.sensor(nodeId, 'inlet-top')!.flags).toContain('stale');
    for (let i = 0; i < 6; i++) step({ 'inlet-top': 24.5 });
    expect(t.store.sensor(nodeId, 'inlet-top')!.flags).toContain('stuck');
    step({ 'inlet-top': 24.6 });
    expect(t.store.sensor(nodeId, 'inlet-top')!.flags).not.toContain('stuck');
    step({ 'inlet-top': 150 });
    expect(t.store.sensor(nodeId, 'inlet-top')!.flags).toContain('out-of-range');
    step({ 'inlet-top': 24.6 });
    step({ 'inlet-top': 34.6 }); // +10 K in 10 s: no air moves that fast
    expect(t.store.sensor(nodeId, 'inlet-top')!.flags).toContain('spike');
    step({ 'inlet-top': 34.7 });
    expect(t.store.sensor(nodeId, 'inlet-top')!.flags).not.toContain('spike');
    for (let i = 0; i < 8; i++) step({ 'inlet-middle': 22 + (i % 2 ? 2.5 : -2.5) });
    expect(t.store.sensor(nodeId, 'inlet-middle')!.flags).toContain('noisy');
    step({}, { batteryPct: 5, rssiDbm: -95 });
    const warned = t.store.sensor(nodeId, 'inlet-bottom')!;
    expect(warned.flags).toEqual(expect.arrayContaining(['low-battery', 'weak-link']));
    expect(warned.quality).toBe('good');
  });

  it('takes a sensor back as good as soon as a glitch out of range ends (the jump is not noise)', () => {
    const t = setup();
    let seq = 1;
    const step = (values: Partial<Record<string, number>> = {}) => {
      t.advance(10_000);
      t.feed(t.report(seq++, values));
    };
    for (let i = 0; i < 3; i++) step();
    step({ 'inlet-bottom': 150 });
    expect(t.store.sensor(nodeId, 'inlet-bottom')!).toMatchObject({
      quality: 'bad',
      flags: ['out-of-range'],
    });
    step();
    expect(t.store.sensor(nodeId, 'inlet-bottom')!).toMatchObject({ quality: 'good', flags: [] });
    // A sensor that really is noisy in range is still found out.
    for (let i = 0; i < 8; i++) step({ 'inlet-bottom': 22 + (i % 2 ? 2.5 : -2.5) });
    expect(t.store.sensor(nodeId, 'inlet-bottom')!.flags).toContain('noisy');
  });

  it('gives each rack of a group its hottest good inlet for the floor map, null where it has none', () => {
    const t = setup();
    const n = site.sensorNodes.find((x) => x.id === nodeId)!;
    const racks = Object.keys(t.store.rackInletsC(group.id));
    expect(racks).toContain(n.rack);
    expect(Object.values(t.store.rackInletsC(group.id)).every((c) => c === null)).toBe(true);
    const inlets = n.sensors.filter((s) => s.kind.startsWith('inlet-'));
    const values = Object.fromEntries(inlets.map((s, i) => [s.id, 21 + i]));
    t.feed(t.report(1, values));
    const perRack = t.store.rackInletsC(group.id);
    expect(perRack[n.rack]).toBe(21 + inlets.length - 1);
    expect(Object.entries(perRack).filter(([r, c]) => r !== n.rack && c !== null)).toEqual([]);
    // An out-of-range reading is not good: the rack shows the hottest good one.
    t.feed(t.report(2, { ...values, [inlets[0]!.id]: 99 }));
    expect(t.store.rackInletsC(group.id)[n.rack]).toBe(21 + inlets.length - 1);
    expect(() => t.store.rackInletsC('no-such-group')).toThrow(/unknown control group/);
  });

  it('shares the figures the control loop took this period with the readers beside it', () => {
    const t = setup();
    feedGroup(t, 1);
    // The loop's view each period is one walk of the group's sensors; alarms, /metrics and the
    // dashboard read that walk's figures while it is recent, not a walk of their own each.
    const v = t.store.view(group.id);
    const shared = t.store.figures(group.id, 1000);
    expect(shared.view).toBe(v);
    t.advance(999);
    expect(t.store.figures(group.id, 1000)).toBe(shared);
    // The figures agree with the fresh per-rack answers.
    const byRack = Object.fromEntries(shared.inletRacks.map((r, i) => [r, shared.rackInletMaxC[i]]));
    for (const [rack, c] of Object.entries(t.store.rackInletsC(group.id))) expect(byRack[rack]).toBe(c);
    const dew = Object.fromEntries(shared.dewRacks.map((r, i) => [r, shared.rackDewPointC[i]]));
    for (const [rack, dp] of Object.entries(t.store.rackDewPointsC(group.id))) expect(dew[rack]).toBe(dp);
    // Older than the reader accepts: taken again, and kept for the next reader.
    t.advance(1001);
    const again = t.store.figures(group.id, 1000);
    expect(again).not.toBe(shared);
    expect(again.atMs).toBe(t.now());
    expect(t.store.figures(group.id, 1000)).toBe(again);
    // No age accepted: always a fresh walk.
    expect(t.store.figures(group.id, 0)).not.toBe(again);
  });

  it('gives each group a verdict from its coverage, and a dew point from temperature and humidity', () => {
    const t = setup();
    feedGroup(t, 1);
    const v = t.store.view(group.id);
    expect(v.verdict).toBe('ok');
    expect(v.coverage).toBe(1);
    expect(v.inletMaxC).toBeGreaterThanOrEqual(v.inletMeanC! - 1e-9);
    expect(v.dewPointC).toBeCloseTo(dewPointC(22.0, 45), 0);
    // Magnus: 25 °C at 50 %RH has a dew point of 13.86 °C
    expect(dewPointC(25, 50)).toBeCloseTo(13.86, 1);
    // half the group silent → degraded; all of it → blind; a gateway offline → blind at once
    t.advance(31_000);
    for (const id of group.sensorNodes.slice(0, Math.ceil(group.sensorNodes.length * 0.6))) {
      const n = site.sensorNodes.find((x) => x.id === id)!;
      t.store.ingestReport(
        {
          node: id,
          gateway: n.gateway,
          seq: 2,
          readings: n.sensors.map((s) => ({ sensor: s.id, kind: s.kind, value: 22 })),
        },
        'mqtt',
        t.now(),
      );
    }
    expect(t.store.view(group.id).verdict).toBe('degraded');
    expect(t.store.view(group.id).uncoveredRacks.length).toBeGreaterThan(0);
    t.advance(31_000);
    expect(t.store.view(group.id).verdict).toBe('blind');
    expect(t.store.view(group.id).inletMaxC).toBeNull();
    feedGroup(t, 3);
    expect(t.store.view(group.id).verdict).toBe('ok');
    t.store.setGatewayOnline(node.gateway, false, 'last will');
    expect(t.store.view(group.id).verdict).not.toBe('ok');
    expect(() => t.store.view('no-such-group')).toThrow(/unknown control group/);
  });

  it('drops bad payloads with a reason and never throws', () => {
    const t = setup();
    const cases: [string | Buffer, string][] = [
      ['{"node": "N00', 'malformed-json'],
      ['null', 'schema'],
      ['[]', 'schema'],
      [JSON.stringify({ node: nodeId, gateway: node.gateway, seq: -1, readings: [] }), 'schema'],
      [
        JSON.stringify({
          node: nodeId,
          gateway: node.gateway,
          seq: 1,
          readings: [{ sensor: 'inlet-top', kind: 'inlet-top', value: 'hot' }],
        }),
        'schema',
      ],
      [Buffer.alloc(20_000, 32), 'too-large'],
      [
        JSON.stringify({
          node: 'N9999',
          gateway: 'gw-1',
          seq: 1,
          readings: [{ sensor: 'x', kind: 'inlet-top', value: 1 }],
        }),
        'unknown-node',
      ],
    ];
    for (const [payload, reason] of cases) expect(t.store.ingestPayload(payload, 'mqtt')).toBe(reason);
    // a reading of an unknown sensor or of the wrong kind is dropped alone; the rest of the report applies
    expect(
      t.store.ingestReport(
        {
          node: nodeId,
          gateway: node.gateway,
          seq: 1,
          readings: [
            { sensor: 'bogus', kind: 'inlet-top', value: 1 },
            { sensor: 'rh', kind: 'inlet-top', value: 1 },
            { sensor: 'inlet-top', kind: 'inlet-top', value: 23 },
          ],
        },
        'mqtt',
        t.now(),
      ),
    ).toBeNull();
    expect(t.store.counters.drops).toMatchObject({ 'unknown-sensor': 1, 'kind-mismatch': 1 });
    expect(t.store.sensor(nodeId, 'inlet-top')!.value).toBe(23);
  });

  it('rate-limits a node that floods, without touching the others', () => {
    const t = setup();
    let dropped = 0;
    for (let seq = 1; seq <= 1000; seq++) if (t.feed(t.report(seq)) === 'rate-limited') dropped++;
    expect(dropped).toBeGreaterThan(800);
    const other = site.sensorNodes.find((n) => n.id !== nodeId)!;
    expect(
      t.store.ingestReport(
        {
          node: other.id,
          gateway: other.gateway,
          seq: 1,
          readings: [{ sensor: 'inlet-top', kind: 'inlet-top', value: 22 }],
        },
        'mqtt',
        t.now(),
      ),
    ).toBeNull();
    t.advance(1000); // the bucket refills at 50 reports/s
    expect(t.feed(t.report(2000))).toBeNull();
  });

  it('exports readings by source, drops by reason and sensors by quality to Prometheus', async () => {
    const registry = new Registry();
    let now = 1_000_000;
    const store = new SensorStore(site, { now: () => now, registry });
    const readings = node.sensors.map((s) => ({ sensor: s.id, kind: s.kind, value: 22 }));
    store.ingestReport({ node: nodeId, gateway: node.gateway, seq: 1, readings }, 'mqtt', now);
    store.ingestReport({ node: nodeId, gateway: node.gateway, seq: 1, readings }, 'mqtt', now);
    now += 1000;
    const metrics = await registry.metrics();
    expect(metrics).toContain(`coolctl_sensor_readings_total{source="mqtt"} ${readings.length}`);
    expect(metrics).toContain('coolctl_sensor_readings_total{source="modbus"} 0');
    expect(metrics).toContain('coolctl_sensor_reports_dropped_total{reason="duplicate"} 1');
    expect(metrics).toContain(`coolctl_sensors{quality="good"} ${readings.length}`);
    const configured = site.sensorNodes.reduce((n, x) => n + x.sensors.length, 0);
    expect(metrics).toContain(`coolctl_sensors{quality="bad"} ${configured - readings.length}`);
  });
});

describe('gateway status against fresher reports', () => {
  const gw = node.gateway;
  const gwState = (store: SensorStore) => store.gatewayStates().find((g) => g.id === gw)!.online;

  it('a retained offline status counts only until a report comes through the gateway', () => {
    const t = setup();
    t.store.statusSubscriptionStarted([gw]);
    t.store.setGatewayOnline(gw, false, 'connection-lost', { retained: true });
    expect(gwState(t.store)).toBe(false);
    expect(t.store.sensor(nodeId, 'inlet-top')!.flags).toContain('gateway-offline');
    t.feed(t.report(1));
    expect(gwState(t.store)).toBe(true);
    expect(t.store.sensor(nodeId, 'inlet-top')!.quality).toBe('good');
  });

  it('a retained offline status after a report since subscribing is older than that report', () => {
    const t = setup();
    t.store.statusSubscriptionStarted([gw]);
    t.feed(t.report(1));
    t.store.setGatewayOnline(gw, false, 'connection-lost', { retained: true });
    expect(gwState(t.store)).toBe(true);
  });

  it('a live offline status counts at once, until the next report', () => {
    const t = setup();
    t.store.statusSubscriptionStarted([gw]);
    t.feed(t.report(1));
    t.store.setGatewayOnline(gw, false, 'connection-lost');
    expect(gwState(t.store)).toBe(false);
    t.advance(1000);
    t.feed(t.report(2));
    expect(gwState(t.store)).toBe(true);
    t.store.setGatewayOnline(gw, false, 'shutdown');
    t.store.setGatewayOnline(gw, true, 'connected');
    expect(gwState(t.store)).toBe(true);
  });

  it('reports heard before a new subscription do not outweigh the retained status it brings', () => {
    const t = setup();
    t.store.statusSubscriptionStarted([gw]);
    t.feed(t.report(1));
    t.store.statusSubscriptionStarted([gw]); // reconnected
    t.store.setGatewayOnline(gw, false, 'connection-lost', { retained: true });
    expect(gwState(t.store)).toBe(false);
    // a late or replayed report still comes through the gateway's topic: proof of life
    t.feed(t.report(1));
    expect(gwState(t.store)).toBe(true);
  });
});

describe('clocks', () => {
  it('a wall-clock step back or forward changes no age, rate or staleness; it only shifts the shown times', () => {
    let mono = 50_000;
    let wall = Date.UTC(2026, 0, 1, 12);
    const store = new SensorStore(site, { now: () => mono, wallNow: () => wall });
    let seq = 0;
    const tick = (ms: number) => {
      mono += ms;
      wall += ms;
    };
    const feed = () => {
      const r = {
        node: nodeId,
        gateway: node.gateway,
        seq: ++seq,
        readings: [{ sensor: 'inlet-top', kind: 'inlet-top', value: 21 + seq * 0.01 }],
      };
      return store.ingestPayload(JSON.stringify(r), 'mqtt', node.gateway, nodeId);
    };
    // steady reports every 2 s; the wall clock steps back an hour, then forward two
    for (const step of [0, -3_600_000, 7_200_000]) {
      wall += step;
      for (let i = 0; i < 20; i++) {
        tick(2000);
        expect(feed()).toBeNull();
        const s = store.sensor(nodeId, 'inlet-top')!;
        expect(s.value).toBeCloseTo(21 + seq * 0.01, 6);
        expect(s.quality).toBe('good');
        expect(s.receivedAtMs).toBe(wall);
        expect(s.ageMs).toBe(0);
      }
    }
    expect(store.counters.drops['rate-limited']).toBe(0);
    // silence: stale after 3 intervals of monotonic time, whatever the wall clock does meanwhile
    tick(29_000);
    wall -= 3_600_000;
    expect(store.sensor(nodeId, 'inlet-top')!.flags).not.toContain('stale');
    tick(2000);
    expect(store.sensor(nodeId, 'inlet-top')!.flags).toContain('stale');
    expect(store.view(group.id).atMs).toBe(wall);
  });
});

describe('wire input: counted, and logged in bounded lines', () => {
  it('drops a report that reads a sensor twice, or a value that is not finite, whole, as schema', () => {
    const t = setup();
    const top = node.sensors.find((s) => s.id === 'inlet-top')!;
    const payload = (readings: unknown[], seq = 1) =>
      JSON.stringify({ node: nodeId, gateway: node.gateway, seq, readings });
    const copy = { sensor: top.id, kind: top.kind, value: 22 };
    // six copies used to make the sensor "stuck" at once and count six readings
    expect(t.store.ingestPayload(payload(Array(6).fill(copy)), 'mqtt')).toBe('schema');
    const alternating = Array.from({ length: 9 }, (_, i) => ({ ...copy, value: i % 2 ? 20 : 24 }));
    expect(t.store.ingestPayload(payload(alternating), 'mqtt')).toBe('schema');
    // 1e999 is Infinity to JSON.parse: it used to be applied, flagged out-of-range and shown as null
    expect(t.store.ingestPayload(payload([copy]).replace('"value":22', '"value":1e999'), 'mqtt')).toBe(
      'schema',
    );
    expect(t.store.counters.drops.schema).toBe(3);
    expect(t.store.counters.readings.mqtt).toBe(0);
    expect(t.store.sensor(nodeId, top.id)).toMatchObject({ value: null, flags: ['stale'] });
    // nothing of them counted against the node's seq either
    expect(t.store.ingestPayload(payload([copy]), 'mqtt')).toBeNull();
    expect(t.store.sensor(nodeId, top.id)!.value).toBe(22);
  });

  it('clips wire text in its lines, and a flapping gateway or a restarting node cannot flood them', () => {
    const logs = captureLogs({ node: 'ctl-1' });
    const t = setup({ logger: logs.logger.child({ component: 'sensors' }) });
    const longest = () => Math.max(...logs.lines.map((l) => l.length));
    // a 60 KB status reason, and a 60 KB node name in a report's topic
    t.store.setGatewayOnline(node.gateway, false, 'r'.repeat(60_000));
    t.store.ingestPayload('not json', 'mqtt', node.gateway, 'N'.repeat(60_000));
    t.store.setGatewayOnline('gw-'.repeat(20_000), false, 'x');
    expect(logs.lines).toHaveLength(3);
    expect(longest()).toBeLessThan(1000);
    const offline = logs.parsed().find((l) => l.msg === 'sensor gateway offline')!;
    expect(offline.reason).toMatch(/^r{120}… \(60000 chars\)$/);

    // a status flapping at wire speed: at most 10 lines a minute, the next one says how many were not
    t.advance(60_000);
    logs.lines.length = 0;
    for (let i = 0; i < 500; i++) t.store.setGatewayOnline(node.gateway, i % 2 === 0, 'flap');
    expect(logs.lines).toHaveLength(10);
    t.advance(60_000);
    t.store.setGatewayOnline(node.gateway, true, 'connected');
    expect(logs.parsed().at(-1)).toMatchObject({ msg: 'sensor gateway online', notLogged: 490 });
    expect(t.store.gatewayStates().find((g) => g.id === node.gateway)!.online).toBe(true);

    // a node made to "restart" with every report: counted each time, one line per 10 s
    logs.lines.length = 0;
    const at = (s: number) => new Date(Date.UTC(2026, 0, 1) + s * 1000).toISOString();
    for (let i = 0; i < 40; i++) {
      t.advance(100);
      t.feed(t.report(1, {}, { sampledAt: at(i) }));
    }
    expect(t.store.counters.restarts).toBe(39);
    const restarts = logs.parsed().filter((l) => l.msg === 'sensor node restarted its sequence numbers');
    expect(restarts).toHaveLength(1);
    expect(restarts[0]).toMatchObject({ sensorNode: nodeId, seq: 1, lastSeq: 1, evidence: 'report-time' });
  });

  it('exports node restarts to Prometheus', async () => {
    const registry = new Registry();
    let now = 1_000_000;
    const store = new SensorStore(site, { now: () => now, registry });
    const readings = [{ sensor: 'inlet-top', kind: 'inlet-top', value: 22 }];
    for (const seq of [5000, 1, 2, 3]) {
      now += 1000;
      store.ingestReport({ node: nodeId, gateway: node.gateway, seq, readings }, 'mqtt', now);
    }
    expect(await registry.getSingleMetricAsString('coolctl_sensor_node_restarts_total')).toMatch(
      /^coolctl_sensor_node_restarts_total 1$/m,
    );
  });
});
