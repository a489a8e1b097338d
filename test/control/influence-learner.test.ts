// The influence learner (src/control/law/influence-learner.ts), on a synthetic plant whose
// influence matrix the test knows, and beside the control law: it converges to the matrix, follows
// a change of it within the stated hours, its dither stays within its bound and stops without
// margin, and what it learned survives a snapshot taken into a row and restored by a new leader.
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { mulberry32 } from '../../firmware-sim/random.ts';
import type { CachedRow } from '../../src/cache/rows.ts';
import type { ProcessStateStore } from '../../src/cache/state-cache.ts';
import { GroupDriver } from '../../src/control/group-driver.ts';
import {
  type ControlView,
  type GroupControlInputs,
  type GroupControlState,
  groupControlConfig,
  stepGroup,
  type UnitInput,
} from '../../src/control/law/group-controller.ts';
import type { InfluenceMatrix } from '../../src/control/law/influence.ts';
import {
  InfluenceLearner,
  type InfluenceLearningOptions,
  learnerFor,
  stepGroupLearning,
} from '../../src/control/law/influence-learner.ts';
import { ControlMetrics } from '../../src/control/metrics.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import type { GroupSensorView } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { FakeCluster, fakeUnit, type UnitWrite } from '../support/fake-cluster.ts';
import { captureLogs } from '../support/log-lines.ts';

const HOUR = 3600;

/** A matrix with the given rows (units × racks), racks named R0, R1, … */
function matrix(ahus: string[], rows: number[][]): InfluenceMatrix {
  const rackIndex = new Map(rows[0]!.map((_, i) => [`R${i}`, i]));
  return { rackIndex, rows: new Map(ahus.map((a, i) => [a, Float64Array.from(rows[i]!)])) };
}

/**
 * A group's plant with a known influence: supply air follows each unit's setpoint (τ 60 s), a rack
 * inlet follows 18 °C + its offset + Σ H[a][r]·(supply_a − 18) + what other groups' units do to it
 * (τ 20 s); sensors read it with σ 0.1 K every 10 s, rounded to 0.01. The group's setpoint moves
 * every unit together (natural variation, which cannot tell the units apart).
 */
class SyntheticGroup {
  readonly ahus: string[];
  readonly racks: string[];
  h: number[][];
  private readonly supplyC: number[];
  private readonly inletC: number[];
  private readonly readC: Float64Array;
  private readonly rnd: () => number;
  private groupSpC = 18;
  private otherC = 0;
  t = 0;

  constructor(ahus: string[], h: number[][], seed = 3, racks?: readonly string[]) {
    this.ahus = ahus;
    this.h = h;
    this.racks = racks ? [...racks] : h[0]!.map((_, i) => `R${i}`);
    this.supplyC = ahus.map(() => 18);
    this.inletC = this.racks.map((_, r) => 22 + r * 0.3);
    this.readC = Float64Array.from(this.inletC);
    this.rnd = mulberry32(seed);
  }

  /** One second with `ditherK` added to one unit's setpoint. */
  step(dither: { ahu: string; k: number } | null): void {
    if (this.t % 60 === 0) {
      // The reset's trim and respond: the whole group's setpoint, ±0.2 K now and then.
      const u = this.rnd();
      this.groupSpC = Math.min(20, Math.max(17, this.groupSpC + (u < 0.2 ? -0.2 : u > 0.8 ? 0.2 : 0)));
      // Other groups' units reach these racks too: a slow wander the learner must not take as its own.
      this.otherC = Math.min(0.5, Math.max(-0.5, this.otherC + (this.rnd() - 0.5) * 0.1));
    }
    const kSupply = 1 - Math.exp(-1 / 60);
    this.ahus.forEach((a, i) => {
      const sp = this.groupSpC + (dither?.ahu === a ? dither.k : 0);
      this.supplyC[i]! += (sp - this.supplyC[i]!) * kSupply;
    });
    const kRack = 1 - Math.exp(-1 / 20);
    this.racks.forEach((_, r) => {
      let target = 22 + r * 0.3 + this.otherC;
      this.ahus.forEach((_, a) => {
        target += this.h[a]![r]! * (this.supplyC[a]! - 18);
      });
      this.inletC[r]! += (target - this.inletC[r]!) * kRack;
      if ((this.t + r * 3) % 10 === 0)
        this.readC[r] = Math.round((this.inletC[r]! + gaussian(this.rnd) * 0.1) * 100) / 100;
    });
    this.t++;
  }

  observation(): { supplyC: Record<string, number>; racks: string[]; inletC: Float64Array } {
    return {
      supplyC: Object.fromEntries(this.ahus.map((a, i) => [a, this.supplyC[i]!])),
      racks: this.racks,
      inletC: this.readC,
    };
  }

  meanAbsError(m: InfluenceMatrix): number {
    let s = 0;
    let n = 0;
    this.ahus.forEach((a, i) => {
      this.racks.forEach((r, j) => {
        s += Math.abs(m.rows.get(a)![m.rackIndex.get(r)!]! - this.h[i]![j]!);
        n++;
      });
    });
    return s / n;
  }
}

function gaussian(rnd: () => number): number {
  const u = Math.max(1e-12, rnd());
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
}

/** Runs the learner on the plant for `seconds`, dithering all along (the gate always open). */
function learn(plant: SyntheticGroup, learner: InfluenceLearner, seconds: number): void {
  for (let i = 0; i < seconds; i++) {
    const d = learner.nextDither(true, 1);
    plant.step(d);
    learner.observe(1, true, 60, plant.observation());
  }
}

const AHUS = ['U1', 'U2', 'U3'];
const TRUE_H = [
  [0.45, 0.35, 0.2, 0.1, 0.05, 0.02],
  [0.1, 0.2, 0.3, 0.3, 0.2, 0.1],
  [0.02, 0.05, 0.1, 0.2, 0.35, 0.45],
];
/** A prior that is wrong: every unit reaches every rack alike. */
const FLAT_PRIOR = matrix(
  AHUS,
  AHUS.map(() => TRUE_H[0]!.map(() => 0.2)),
);

describe('influence learner on a plant with a known matrix', () => {
  it('converges to the matrix within 6 h of dither, and is confident in it', () => {
    const plant = new SyntheticGroup(AHUS, TRUE_H);
    const learner = new InfluenceLearner(AHUS, FLAT_PRIOR, { seed: 'g' });
    const before = plant.meanAbsError(learner.matrix());
    learn(plant, learner, 6 * HOUR);
    const after = plant.meanAbsError(learner.learnedMatrix());
    expect(before).toBeGreaterThan(0.1);
    expect(after).toBeLessThan(0.035);
    for (const c of Object.values(learner.confidences())) expect(c).toBeGreaterThan(0.4);
    // Allocation's matrix moved from the prior to what was learned.
    expect(plant.meanAbsError(learner.matrix())).toBeLessThan(before / 2);
  });

  it('a unit whose probe reads impossible air now and then (1e6 °C, −273 °C) does not spoil what is learned', () => {
    const plant = new SyntheticGroup(AHUS, TRUE_H);
    const learner = new InfluenceLearner(AHUS, FLAT_PRIOR, { seed: 'g' });
    for (let i = 0; i < 6 * HOUR; i++) {
      plant.step(learner.nextDither(true, 1));
      const seen = plant.observation();
      // Twice an hour, one second of a broken probe or a "no data" code, as a unit can send.
      const glitch = i % 1800 === 900 ? 1e6 : i % 1800 === 1700 ? -273 : undefined;
      learner.observe(
        1,
        true,
        60,
        glitch === undefined ? seen : { ...seen, supplyC: { ...seen.supplyC, U2: glitch } },
      );
    }
    expect(plant.meanAbsError(learner.learnedMatrix())).toBeLessThan(0.035);
    for (const row of learner.learnedMatrix().rows.values()) expect(row.every(Number.isFinite)).toBe(true);
  });

  it('follows a layout change within 3 h (memory 1 h); without forgetting it does not', () => {
    const run = (opts: Partial<InfluenceLearningOptions>) => {
      const plant = new SyntheticGroup(AHUS, TRUE_H, 5);
      const learner = new InfluenceLearner(AHUS, FLAT_PRIOR, { seed: 'g', ...opts });
      learn(plant, learner, 6 * HOUR);
      // U1 moved to the far end of the row: its air now reaches the other racks.
      plant.h = [[...TRUE_H[0]!].reverse(), TRUE_H[1]!, TRUE_H[2]!];
      const atChange = plant.meanAbsError(learner.learnedMatrix());
      learn(plant, learner, 3 * HOUR);
      return { atChange, after: plant.meanAbsError(learner.learnedMatrix()) };
    };
    const forgetting = run({});
    expect(forgetting.atChange).toBeGreaterThan(0.1);
    expect(forgetting.after).toBeLessThan(0.04);
    const never = run({ memoryS: 1e9 });
    expect(never.after).toBeGreaterThan(0.06);
  });

  it('survives a snapshot through JSON into another learner; refuses another layout', () => {
    const plant = new SyntheticGroup(AHUS, TRUE_H);
    const learner = new InfluenceLearner(AHUS, FLAT_PRIOR, { seed: 'g' });
    learn(plant, learner, 3 * HOUR);
    const row = JSON.parse(JSON.stringify({ influence: learner.snapshot() })) as { influence: unknown };
    const next = new InfluenceLearner(AHUS, FLAT_PRIOR, { seed: 'g' });
    expect(next.restore(row.influence)).toBeNull();
    const a = learner.learnedMatrix();
    const b = next.learnedMatrix();
    const step = learner.snapshot().scale / 127;
    for (const u of AHUS)
      for (let r = 0; r < TRUE_H[0]!.length; r++)
        expect(Math.abs(a.rows.get(u)![r]! - b.rows.get(u)![r]!)).toBeLessThanOrEqual(step / 2 + 1e-9);
    for (const u of AHUS) expect(next.confidences()[u]).toBeCloseTo(learner.confidences()[u]!, 1);
    expect(next.sampleCount).toBe(learner.sampleCount);
    // It keeps learning from there: the error stays where it was.
    learn(plant, next, HOUR);
    expect(plant.meanAbsError(next.learnedMatrix())).toBeLessThan(0.04);

    const other = new InfluenceLearner(['U1', 'U2'], matrix(['U1', 'U2'], [TRUE_H[0]!, TRUE_H[1]!]));
    expect(other.restore(row.influence)).toMatch(/another set of units or racks/);
    expect(other.sampleCount).toBe(0);
    expect(next.restore({ ...(row.influence as object), g: 'AAAA' })).toMatch(/gains do not fit/);
    expect(next.restore({ v: 2 })).toMatch(/not a learned-influence snapshot/);
  });

  it('keeps its row small: 10 units × 50 racks under 900 bytes of JSON', () => {
    const ahus = Array.from({ length: 10 }, (_, i) => `AHU-${i}`);
    const rows = ahus.map((_, a) => Array.from({ length: 50 }, (_, r) => 1 / (1 + ((r - 5 * a) / 6) ** 2)));
    const plant = new SyntheticGroup(ahus, rows);
    const learner = new InfluenceLearner(ahus, matrix(ahus, rows));
    learn(plant, learner, 600);
    expect(JSON.stringify(learner.snapshot()).length).toBeLessThan(900);
  });
});

describe('the dither beside the law', () => {
  const site = generateSite(demoShape);
  const cfg = groupControlConfig(site, 'zone-1');
  const units: UnitInput[] = cfg.ahus.map((id) => ({
    id,
    status: 'available',
    read: { fanPct: 60, supplySetpointC: 18 },
  }));
  const view = (inletMaxC: number): ControlView => ({
    verdict: 'ok',
    inletMaxC,
    hottestRack: 'RA-04',
    dewPointC: 8,
  });
  const plant = { supplyC: Object.fromEntries(cfg.ahus.map((a) => [a, 19])), racks: [], inletC: [] };

  it('moves one unit at a time by at most ±1 K of setpoint, only with 1.5 K of margin, at the safety rate', () => {
    const learner = learnerFor(site, cfg);
    let plain: GroupControlState | null = null;
    let learning: GroupControlState | null = null;
    let dithered = 0;
    let paused = 0;
    let lastSp: Record<string, number> | null = null;
    // 24.9 °C (2.1 K of margin) for 20 min, then 25.7 °C (1.3 K: none), then back.
    for (let t = 0; t < 3600; t++) {
      const inlet = t < 1200 || t >= 2400 ? 24.9 : 25.7;
      const inp: GroupControlInputs = { view: view(inlet), units, dtS: 1 };
      const a = stepGroup(cfg, inp, plain);
      const b = stepGroupLearning(cfg, learner, inp, learning, plant);
      plain = a.state;
      learning = b.state;
      for (const u of cfg.ahus) {
        const d = b.commands[u]!.supplySetpointC - a.commands[u]!.supplySetpointC;
        expect(Math.abs(d)).toBeLessThanOrEqual(1 + 1e-9);
        // Fans are the law's: the dither is on setpoints only.
        expect(b.commands[u]!.fanPct).toBeCloseTo(a.commands[u]!.fanPct, 6);
        if (lastSp)
          expect(Math.abs(b.commands[u]!.supplySetpointC - lastSp[u]!)).toBeLessThanOrEqual(0.1 + 1e-9);
      }
      lastSp = Object.fromEntries(cfg.ahus.map((u) => [u, b.commands[u]!.supplySetpointC]));
      if (inlet > 27 - 1.5) {
        expect(b.dither).toBeNull();
        // Without margin the setpoints are back to the law's own within the setpoint rate (1 K at 0.1 K/s).
        if (t >= 1200 + 10)
          for (const u of cfg.ahus)
            expect(b.commands[u]!.supplySetpointC).toBeCloseTo(a.commands[u]!.supplySetpointC, 6);
        paused++;
      } else if (b.dither) {
        expect(Math.abs(b.dither.k)).toBe(1);
        dithered++;
      }
    }
    expect(paused).toBe(1200);
    // Half the holds rest.
    expect(dithered).toBeGreaterThan(800);
    expect(dithered).toBeLessThan(1700);
  });

  it('does not dither a group with a unit down, overridden or degraded', () => {
    const learner = learnerFor(site, cfg);
    const [A] = cfg.ahus as [string];
    const cases: Omit<GroupControlInputs, 'dtS'>[] = [
      { view: view(24), units: units.map((u) => (u.id === A ? { ...u, status: 'tripped' as const } : u)) },
      { view: view(24), units, overrides: { [A]: { fanPct: 70 } } },
      { view: { ...view(24), verdict: 'degraded' }, units },
      { view: view(24), units, paused: true },
    ];
    for (const c of cases) {
      let s: GroupControlState | null = null;
      for (let t = 0; t < 300; t++) {
        const out = stepGroupLearning(cfg, learner, { ...c, dtS: 1 }, s, plant);
        expect(out.dither).toBeNull();
        s = out.state;
      }
    }
  });
  it("never dithers with the tuning's learning.dither off, and takes the law's commands as they are", () => {
    const off = groupControlConfig(site, 'zone-1', { tuning: { learning: { dither: false } } });
    const learner = learnerFor(site, off);
    let plain: GroupControlState | null = null;
    let learning: GroupControlState | null = null;
    for (let t = 0; t < 1200; t++) {
      const inp: GroupControlInputs = { view: view(24.9), units, dtS: 1 };
      const a = stepGroup(off, inp, plain);
      const b = stepGroupLearning(off, learner, inp, learning, plant);
      expect(b.dither).toBeNull();
      for (const u of off.ahus)
        expect(b.commands[u]!.supplySetpointC).toBeCloseTo(a.commands[u]!.supplySetpointC, 9);
      plain = a.state;
      learning = b.state;
    }
  });
});

describe('learned influence across a handover', () => {
  const site = generateSite(demoShape);
  const group = site.controlGroups.find((g) => g.id === 'zone-1')!;
  const stops: (() => void)[] = [];
  afterEach(() => {
    for (const stop of stops.splice(0)) stop();
  });

  /** A state cache every node shares (the real one broadcasts each row to every peer). */
  function sharedStore(): ProcessStateStore & { rows: Map<string, CachedRow> } {
    const rows = new Map<string, CachedRow>();
    return {
      rows,
      get: (g) => rows.get(g),
      pull: async () => {},
      write: (g, epoch, state) => {
        const cur = rows.get(g);
        if (cur && cur.epoch > epoch) return null;
        const row = {
          group: g,
          epoch,
          seq: cur?.epoch === epoch ? cur.seq + 1 : 1,
          writer: 'n',
          atMs: Date.now(),
          body: Buffer.from(JSON.stringify(state)),
        };
        rows.set(g, row);
        return row;
      },
    };
  }

  /** Group zone-1 led by n1 on a fake cluster, its rows in one shared cache; drivers learn. */
  function handoverHall() {
    const cfg = groupControlConfig(site, group.id);
    const view: GroupSensorView = {
      group: group.id,
      verdict: 'ok',
      inletMaxC: 24,
      inletMeanC: 23,
      hottestRack: learnerFor(site, cfg).racks[0]!,
      humidityPct: 45,
      dewPointC: 8,
      coverage: 1,
      goodInletSensors: 36,
      configuredInletSensors: 36,
      uncoveredRacks: [],
      atMs: Date.now(),
    };
    const cluster = new FakeCluster({ [group.id]: ['n1', 100] });
    const store = sharedStore();
    const written: UnitWrite[] = [];
    const driverOn = (
      node: string,
      learner: InfluenceLearner,
      extra: { metrics?: ControlMetrics; logger?: Logger } = {},
    ) => {
      const leadership = cluster.node(node);
      const devices = new Map<string, DeviceIo>(cfg.ahus.map((a) => [a, fakeUnit(a, written, node)]));
      const d = new GroupDriver(group, devices, leadership, {
        periodMs: 50,
        logger: extra.logger ?? quietLogger,
        store,
        metrics: extra.metrics,
        control: { config: cfg, sensors: { view: () => view }, learner },
      });
      stops.push(() => d.stop());
      d.start();
      return d;
    };
    return { cfg, cluster, store, driverOn };
  }

  it("a new leader resumes with what the old one learned, through the group's cached row", async () => {
    const { cfg, cluster, store, driverOn } = handoverHall();
    const old = learnerFor(site, cfg);
    // What the old leader learned: a known matrix, far from the geometry prior.
    const h = cfg.ahus.map((_, a) => old.racks.map((_, r) => (a === 0 ? 0.5 - r * 0.03 : 0.1 + r * 0.02)));
    learn(new SyntheticGroup([...cfg.ahus], h, 7, old.racks), old, 2 * HOUR);
    driverOn('n1', old);
    const oldRow = await waitFor('the old leader writes its row with what it learned', () => {
      const row = store.get(group.id);
      const body = row && (JSON.parse(row.body.toString('utf8')) as { influence?: { n: number } });
      return body?.influence?.n === old.sampleCount ? body : null;
    });
    expect(JSON.stringify(oldRow.influence).length).toBeLessThan(300);

    const next = learnerFor(site, cfg);
    const before = meanAbsDiff(next.learnedMatrix(), old.learnedMatrix());
    driverOn('n2', next);
    cluster.move(group.id, 'n2', 'the old leader died');
    await waitFor('the new leader resumes the learned matrix from the row', () =>
      next.sampleCount === old.sampleCount ? true : null,
    );
    expect(before).toBeGreaterThan(0.1);
    expect(meanAbsDiff(next.learnedMatrix(), old.learnedMatrix())).toBeLessThan(0.005);
    // And allocation uses it: the blend is the learned matrix in proportion to confidence, not the prior.
    expect(meanAbsDiff(next.matrix(), old.matrix())).toBeLessThan(0.01);
  });

  it("a new leader that cannot use the row's learned influence says so, counts it and learns from the prior", async () => {
    const { cfg, cluster, store, driverOn } = handoverHall();
    const old = learnerFor(site, cfg);
    learn(
      new SyntheticGroup(
        [...cfg.ahus],
        cfg.ahus.map(() => old.racks.map(() => 0.3)),
        7,
        old.racks,
      ),
      old,
      HOUR,
    );
    driverOn('n1', old);
    await waitFor('the old leader writes its row with what it learned', () => {
      const row = store.get(group.id);
      return row && (JSON.parse(row.body.toString('utf8')) as { influence?: unknown }).influence ? row : null;
    });
    // The row as a damaged (or another layout's) writer left it: the learned gains do not fit.
    const row = store.rows.get(group.id)!;
    const body = JSON.parse(row.body.toString('utf8')) as { influence: Record<string, unknown> };
    store.rows.set(group.id, {
      ...row,
      epoch: row.epoch + 1,
      body: Buffer.from(JSON.stringify({ ...body, influence: { ...body.influence, g: 'AAAA' } })),
    });

    const registry = new Registry();
    const logs = captureLogs();
    const next = learnerFor(site, cfg);
    driverOn('n2', next, { metrics: new ControlMetrics(registry), logger: logs.logger });
    cluster.move(group.id, 'n2', 'the old leader died');
    const line = await waitFor('the new leader logs the unusable learned influence', () =>
      logs.parsed().find((l) => l.msg === 'learned influence in the row not used: learning from the prior'),
    );
    expect(line.level).toBe(40);
    expect(String(line.problem)).toMatch(/gains do not fit/);
    const refused = await registry.getSingleMetric('coolctl_control_learned_influence_refused_total')!.get();
    expect(refused.values).toEqual([expect.objectContaining({ labels: { group: group.id }, value: 1 })]);
    // It drives on, from the prior: nothing half-read from the damaged row.
    expect(next.sampleCount).toBe(0);
  });
});

function meanAbsDiff(a: InfluenceMatrix, b: InfluenceMatrix): number {
  let s = 0;
  let n = 0;
  for (const [u, row] of a.rows)
    row.forEach((x, r) => {
      s += Math.abs(x - (b.rows.get(u)?.[r] ?? 0));
      n++;
    });
  return s / n;
}
