// A genuine heat-load step against the sensor-trust rules and the alarm rules: the simulator's
// thermal model (the physics behind its `heat-load-step` fault) heats the demo hall fast — every
// rack's load × 2.5, inlets rising ~1–2 K per 10 s report for minutes — while three sensors of the
// hottest racks are really broken (one noisy with σ 2 K, the simulator's fault; one stuck; one out of
// range). The hot racks' sensors must stay trusted, so the rack-inlet alarms rise, and the broken
// ones must be found out throughout the rise; no sensor-trust alarm, since the sensors agree. A
// bigger step still (× 4 with the units held at 70 %: top inlets jump 5–9 K in one report) is no
// spike where a rack's sensors jump together; a lone jump in the same report still is.
import { describe, expect, it } from 'vitest';
import { gaussian } from '../../firmware-sim/mesh/radio.ts';
import { mulberry32 } from '../../firmware-sim/random.ts';
import { ThermalModel } from '../../firmware-sim/thermal/model.ts';
import { type Condition, evaluateGroup, newMemory } from '../../src/alarms/rules.ts';
import { alarmDelays, alarmLimits } from '../../src/config/alarm-schema.ts';
import { loadSite } from '../../src/config/load-site.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { climateValue, reportNodes } from '../support/sensor-reports.ts';

const site = await loadSite('config/demo-site.yaml');
const group = site.controlGroups[0]!;
const REPORT_MS = 10_000;
const [noisyNode, stuckNode, rangeNode] = group.sensorNodes as [string, string, string];
const BROKEN = new Map([
  [`${noisyNode}/inlet-top`, 'noisy'],
  [`${stuckNode}/inlet-middle`, 'stuck'],
  [`${rangeNode}/inlet-bottom`, 'out-of-range'],
]);

/**
 * One report period of the hall: the model steps REPORT_MS in 1 s steps, then every sensor node
 * reports what `reading` makes of its sensor's true value.
 */
function stepAndReport(
  model: ThermalModel,
  store: SensorStore,
  at: { seq: number; atMs: number },
  reading: (truth: number, id: string) => number,
): void {
  for (let s = 0; s < REPORT_MS / 1000; s++) model.step(1);
  reportNodes(
    store,
    site,
    site.sensorNodes.map((n) => n.id),
    (n, sensor) => reading(climateValue(model.readRack(n.rack), sensor.kind), `${n.id}/${sensor.id}`),
    at,
  );
}

describe('a genuine heat-load step with broken sensors among the hot racks', () => {
  it('keeps the hot racks trusted and raises their inlet alarms; the broken sensors stay found out', () => {
    const model = new ThermalModel(site, { seed: 7, profile: 'constant' });
    for (let s = 0; s < 1800; s++) model.step(1); // the simulator's own settling
    let nowMs = 0;
    const store = new SensorStore(site, { now: () => nowMs });
    const rnd = mulberry32(11);
    let stuckAt: number | undefined;
    let seq = 0;
    const report = () => {
      nowMs += REPORT_MS;
      seq++;
      stepAndReport(model, store, { seq, atMs: nowMs }, (truth, id) => {
        const broken = BROKEN.get(id);
        if (broken === 'stuck') {
          stuckAt ??= Math.round(truth * 100) / 100;
          return stuckAt;
        }
        if (broken === 'out-of-range') return 150;
        const sigma = broken === 'noisy' ? 2 : 0.1; // a healthy sensor's σ, as the simulator's
        return Math.round((truth + gaussian(rnd) * sigma) * 100) / 100;
      });
    };
    const limits = alarmLimits(undefined);
    const delays = alarmDelays(undefined);
    const memory = newMemory();
    const judge = (): Condition[] => {
      const view = store.view(group.id);
      return evaluateGroup(
        {
          group: group.id,
          nowMs,
          rackInletsC: store.rackInletsC(group.id),
          rackDewPointsC: {},
          verdict: view.verdict,
          configuredInletSensors: view.configuredInletSensors,
          units: [],
          drive: { driving: true, problem: null },
          limits,
          delays,
        },
        memory,
      );
    };
    const flagsOf = (key: string) => {
      const [node, sensor] = key.split('/') as [string, string];
      return store.sensor(node, sensor)!.flags;
    };

    for (let i = 0; i < 12; i++) {
      report();
      expect(judge().filter((c) => c.verdict === 'active')).toEqual([]);
    }
    for (const [key, flag] of BROKEN) expect(flagsOf(key), key).toContain(flag);

    model.setLoadStep('*', 2.5);
    let hottestC = 0;
    for (let i = 0; i < 30; i++) {
      report();
      const conditions = judge();
      // Every group trusts its sensors: the broken three are 3 of 36 inlets.
      for (const g of site.controlGroups)
        expect(store.view(g.id).verdict, `${g.id} after ${i + 1} reports`).toBe('ok');
      for (const c of conditions.filter((x) => x.kind.startsWith('sensors-')))
        expect(c.verdict, `${c.kind} after ${i + 1} reports`).toBe('clear');
      // The broken sensors are found out all through the rise; no healthy one is.
      for (const s of store.sensors()) {
        const want = BROKEN.get(`${s.node}/${s.sensor}`);
        const at = `${s.node}/${s.sensor} after ${i + 1} reports`;
        if (want) expect(s.flags, at).toContain(want);
        else expect(s.flags, at).toEqual([]);
      }
      // Each rack's inlet is its hottest healthy sensor, and that follows the air.
      const racks = store.rackInletsC(group.id);
      for (const id of group.sensorNodes) {
        const n = site.sensorNodes.find((x) => x.id === id)!;
        if (id === noisyNode) continue; // its top sensor is out: the rack shows its middle
        expect(racks[n.rack], `${n.rack} after ${i + 1} reports`).toBeCloseTo(
          model.readRack(n.rack).inletTopC,
          0,
        );
      }
      hottestC = Math.max(hottestC, ...Object.values(racks).map((c) => c ?? 0));
    }
    expect(hottestC).toBeGreaterThan(40);
    const active = judge().filter((c) => c.verdict === 'active');
    const racks = Object.keys(store.rackInletsC(group.id));
    // Every rack of the group is above both limits and rising faster than 20 °C/h, for minutes.
    for (const kind of ['inlet-recommended', 'inlet-allowable', 'inlet-rise-rate'])
      expect(
        active
          .filter((c) => c.kind === kind)
          .map((c) => c.subject)
          .sort(),
        kind,
      ).toEqual(racks.sort());
    expect(active.find((c) => c.kind === 'inlet-rise-rate')!.message).toMatch(/faster than 20 °C\/h/);
    expect(active.filter((c) => c.kind.startsWith('sensors-'))).toEqual([]);
  });

  it('a jump its node’s other inlets make with it is the air, not a spike; a lone jump still is', () => {
    const model = new ThermalModel(site, { seed: 7, profile: 'constant' });
    for (const a of site.airHandlers)
      model.setAhuCommand(a.id, { running: true, fanPct: 70, supplySetpointC: 18 });
    for (let s = 0; s < 1800; s++) model.step(1);
    let nowMs = 0;
    const store = new SensorStore(site, { now: () => nowMs });
    const rnd = mulberry32(5);
    const glitch = `${stuckNode}/inlet-middle`;
    let glitchOn = false;
    const before = new Map<string, number>();
    const report = (seq: number) => {
      nowMs += REPORT_MS;
      stepAndReport(model, store, { seq, atMs: nowMs }, (truth, id) => {
        const glitched = glitchOn && id === glitch ? 30 : 0;
        return Math.round((truth + glitched + gaussian(rnd) * 0.1) * 100) / 100;
      });
    };
    for (let seq = 1; seq <= 12; seq++) report(seq);
    for (const s of store.sensors()) before.set(`${s.node}/${s.sensor}`, s.value ?? 0);
    model.setLoadStep('*', 4);
    glitchOn = true;
    report(13);
    // The step is as fast as the spike rule's limit and more, on many racks at once.
    const jumps = store
      .sensors()
      .filter((s) => s.kind === 'inlet-top')
      .map((s) => (s.value ?? 0) - before.get(`${s.node}/${s.sensor}`)!);
    expect(Math.max(...jumps)).toBeGreaterThan(5);
    for (const s of store.sensors()) {
      const at = `${s.node}/${s.sensor}`;
      if (at === glitch) expect(s.flags, at).toEqual(['spike']);
      else expect(s.flags, at).toEqual([]);
    }
    for (const g of site.controlGroups) expect(store.view(g.id).verdict, g.id).toBe('ok');
  });
});
