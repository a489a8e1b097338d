// A flapping group's verdict hold (src/sensors/verdict.ts) across a change of leader: the hold's
// memory travels in the group's process state, so the new leader keeps the group degraded until
// its rack has been covered for the whole hold, as the old one would have. Two nodes, each with its
// own sensor store fed the same reports on a monotonic clock of another origin, their rows in real
// state caches over loopback; a row from an older release (no memory) and a damaged memory still
// resume the group warm.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { StateCache } from '../../src/cache/state-cache.ts';
import { GroupDriver } from '../../src/control/group-driver.ts';
import { groupControlConfig } from '../../src/control/law/group-controller.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { FakeCluster, fakeUnit, type UnitWrite } from '../support/fake-cluster.ts';
import { captureLogs } from '../support/log-lines.ts';
import { reportNodes } from '../support/sensor-reports.ts';

const site = generateSite(demoShape);
const group = site.controlGroups[0]!;
const flappy = group.sensorNodes[3]!;
const rack = site.sensorNodes.find((n) => n.id === flappy)!.rack;
const SECRET = randomBytes(32);
const stops: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

interface Row {
  commands: Record<string, { fanPct: number; supplySetpointC: number }>;
  verdictHold?: unknown;
}

/** Group zone-1 led by n1; n1 and n2 each with a sensor store, a state cache and a driver. */
async function hall() {
  let tMs = 0;
  const cfg = groupControlConfig(site, group.id);
  const cluster = new FakeCluster({ [group.id]: ['n1', 100] });
  const written: UnitWrite[] = [];
  const caches = new Map<string, StateCache>();
  for (const name of ['n1', 'n2']) {
    const cache = new StateCache({
      node: name,
      cluster: '/coolctl/test',
      secret: SECRET,
      listen: { host: '127.0.0.1', port: 0 },
      logger: quietLogger,
      pingIntervalMs: 100,
      idleTimeoutMs: 600,
    });
    await cache.start();
    stops.push(() => cache.stop());
    caches.set(name, cache);
  }
  const members = [...caches].map(([node, c]) => ({ node, peerUrl: `tcp://127.0.0.1:${c.port}` }));
  for (const c of caches.values()) c.setMembers(members);
  await waitFor('the peer links up', () => [...caches.values()].every((c) => c.peers().every((p) => p.up)));
  // Two monotonic clocks that share no origin, as two nodes' do.
  const stores = new Map([
    ['n1', new SensorStore(site, { now: () => 7_000_000 + tMs })],
    ['n2', new SensorStore(site, { now: () => 350 + tMs })],
  ]);
  const seqs = new Map<string, number>();
  const report = (id: string) => {
    const seq = (seqs.get(id) ?? 0) + 1;
    seqs.set(id, seq);
    for (const store of stores.values())
      reportNodes(store, site, [id], (_, x) => (x.kind === 'humidity' ? 45 : 22 + ((seq * 7) % 5) * 0.04), {
        seq,
      });
  };
  /** Site time runs on to `s`: every node reports each 10 s, the flappy one only at `flappyAt`. */
  const runTo = (s: number, flappyAt: readonly number[] = []) => {
    for (let t = tMs / 1000 + 1; t <= s; t++) {
      tMs = t * 1000;
      for (const id of group.sensorNodes) if (id === flappy ? flappyAt.includes(t) : t % 10 === 0) report(id);
    }
  };
  const drivers = new Map<string, GroupDriver>();
  const driverOn = (node: string, logger: Logger = quietLogger) => {
    const devices = new Map<string, DeviceIo>(cfg.ahus.map((a) => [a, fakeUnit(a, written, node)]));
    const d = new GroupDriver(group, devices, cluster.node(node), {
      periodMs: 50,
      logger,
      store: caches.get(node)!,
      control: { config: cfg, sensors: stores.get(node)! },
    });
    stops.push(() => d.stop());
    drivers.set(node, d);
    d.start();
    return d;
  };
  /** Two of the leader's periods at the site time as it stands (its rows count them). */
  const periods = async (node: string) => {
    const cache = caches.get(node)!;
    const from = cache.get(group.id);
    await waitFor(`two periods of ${node}`, () => {
      const r = cache.get(group.id);
      return r && r.writer === node && (!from || r.epoch !== from.epoch || r.seq >= from.seq + 2);
    });
  };
  const modeOf = (node: string) => drivers.get(node)!.decision.mode;
  const rowOf = (node: string) => JSON.parse(caches.get(node)!.get(group.id)!.body.toString('utf8')) as Row;

  /**
   * Under n1 the flappy node's rack goes uncovered twice (its report stale past 30 s), so its
   * return at 64 s is held; then n1 stops leading (no row after it) and n2 holds n1's last row.
   */
  const flapUnderN1 = async () => {
    for (const id of group.sensorNodes) report(id);
    driverOn('n1');
    await periods('n1');
    expect(modeOf('n1')).toBe('normal');
    for (const [to, mode, flappyAt] of [
      [31, 'degraded', []],
      [32, 'normal', [32]],
      [63, 'degraded', []],
      [64, 'degraded', [64]],
    ] as const) {
      runTo(to, flappyAt);
      await periods('n1');
      expect(modeOf('n1'), `n1 at ${to} s`).toBe(mode);
    }
    const epoch = cluster.leaders.get(group.id)!.epoch!;
    cluster.move(group.id, null, 'n1 stopped');
    const last = caches.get('n1')!.get(group.id)!;
    await waitFor('n2 holds n1’s last row', () => caches.get('n2')!.get(group.id)?.seq === last.seq);
    return { epoch, row: rowOf('n2') };
  };

  /** n2 leads the group from here; resolves once its term began and it decided twice. */
  const moveToN2 = async (logger?: Logger) => {
    const d = drivers.get('n2') ?? driverOn('n2', logger);
    cluster.move(group.id, 'n2', 'the old leader died');
    await periods('n2');
    return d;
  };

  return { caches, written, runTo, flapUnderN1, moveToN2, driverOn, periods, modeOf, rowOf, stores };
}

describe('the verdict hold across a change of leader', () => {
  it('a group that flapped under n1 returns to ok under n2 only after the hold, counted from n1', async () => {
    const h = await hall();
    const { row } = await h.flapUnderN1();
    const n2 = await h.moveToN2();
    expect(n2.startInfo?.source).toBe('cache');
    // Its sensors say ok, but the flap n1 saw holds the group degraded: no jump of the fan floor.
    expect(h.modeOf('n2')).toBe('degraded');
    expect(h.stores.get('n2')!.view(group.id).reasons).toEqual([
      `recovering: ${rack} covered again for 0 s of 60 s`,
    ]);
    // From n1's row: held degraded, departures 33 s and 1 s before it, the rack covered again.
    expect(row.verdictHold).toEqual({
      held: 'degraded',
      leftOkAgoMs: [33_000, 1_000],
      okForMs: 0,
      racks: [rack],
    });
    expect(JSON.stringify(row.verdictHold).length).toBeLessThan(90);
    const steady = [74, 84, 94, 104, 114, 124];
    h.runTo(123, steady);
    await h.periods('n2');
    expect(h.modeOf('n2')).toBe('degraded');
    h.runTo(124, steady);
    await h.periods('n2');
    expect(h.modeOf('n2')).toBe('normal');
    // n2's own rows carry the memory on for whoever comes next: the departures at 31 and 63 s (the
    // row's age on its way to n2, a few ms, counted too).
    const carried = h.rowOf('n2').verdictHold as { held: string; leftOkAgoMs: [number, number] };
    expect(carried.held).toBe('ok');
    expect(carried.leftOkAgoMs[0] - 93_000).toBeGreaterThanOrEqual(0);
    expect(carried.leftOkAgoMs[0] - 93_000).toBeLessThan(1_000);
    expect(Math.abs(carried.leftOkAgoMs[0] - carried.leftOkAgoMs[1] - 32_000)).toBeLessThanOrEqual(1);
  });

  it('a row without the memory (an older release’s) still resumes the group warm, and the new leader’s rows carry it', async () => {
    const h = await hall();
    const { epoch, row } = await h.flapUnderN1();
    const { verdictHold: _, ...old } = row;
    h.caches.get('n2')!.write(group.id, epoch, old);
    const n2 = await h.moveToN2();
    expect(n2.startInfo).toMatchObject({ source: 'cache', row: { epoch, writer: 'n2' } });
    // Bumpless: its first command per unit is within 1 % of the row's (the ramps go on from the
    // unrounded command, so one period's step can cross a 0.1 rounding boundary).
    for (const [ahu, c] of Object.entries(row.commands)) {
      const first = h.written.find((w) => w.node === 'n2' && w.ahu === ahu)!;
      expect(Math.abs(first.cmd.fanPct - c.fanPct)).toBeLessThanOrEqual(c.fanPct * 0.01);
      expect(Math.abs(first.cmd.supplySetpointC - c.supplySetpointC)).toBeLessThanOrEqual(
        c.supplySetpointC * 0.01,
      );
    }
    // Nothing on record here: the sensors' ok is taken at once, as before the memory travelled.
    expect(h.modeOf('n2')).toBe('normal');
    expect(h.rowOf('n2').verdictHold).toMatchObject({ held: 'ok', leftOkAgoMs: [null, null] });
  });

  it('a damaged memory is not used: counted and logged, the group still resumes warm', async () => {
    const h = await hall();
    const { epoch, row } = await h.flapUnderN1();
    h.caches.get('n2')!.write(group.id, epoch, {
      ...row,
      verdictHold: { held: 'sideways', leftOkAgoMs: [33_000, 1_000], okForMs: 0 },
    });
    const logs = captureLogs();
    const n2 = await h.moveToN2(logs.logger);
    expect(n2.startInfo?.source).toBe('cache');
    expect(n2.counters.verdictHoldRefused).toBe(1);
    const line = logs
      .parsed()
      .find((l) => l.msg === 'verdict hold in the row not used: the group goes on from this node’s memory');
    expect(line).toMatchObject({ level: 40, problem: 'held is not a verdict', group: group.id });
    expect(h.modeOf('n2')).toBe('normal');
  });
});
