// Never none, on the group driver alone: one unit's refusal never stops the group's other units;
// only a proven newer epoch stops writing with ours, and hands the group on; a leader whose units
// accept nothing (or whose loop keeps crashing) hands the group on within the undriven bound, and
// no more often than its relinquish back-off allows. Fake units and a fake cluster: what is under
// test is the driver's judgement, with real timers and short periods.
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { ControlGroup } from '../../src/config/site-schema.ts';
import { GroupDriver, type GroupDriverOptions, undrivenLimitMs } from '../../src/control/group-driver.ts';
import type { AhuCommandSet, DeviceIo } from '../../src/devices/device-io.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { FakeCluster, type FakeLeadership } from '../support/fake-cluster.ts';

const PERIOD_MS = 20;
const UNDRIVEN_MS = 300;
const GROUP = { id: 'g1', airHandlers: ['A', 'B'] } as unknown as ControlGroup;

type Answer = 'accept' | 'refuse-unproven' | 'fenced' | 'unreachable';
interface Write {
  ahu: string;
  node: string;
  epoch: number;
  atMs: number;
}

/** A unit whose answer to writes the test sets; it records every accepted write with its epoch and node. */
class FakeUnit extends EventEmitter {
  readonly protocol = 'modbus-tcp' as const;
  readonly linkState = 'up' as const;
  readonly remoteControlLost = false;
  answer: Answer = 'accept';
  unitEpoch = 0;
  readonly id: string;
  private readonly node: string;
  private readonly log: Write[];
  constructor(id: string, node: string, log: Write[]) {
    super();
    this.id = id;
    this.node = node;
    this.log = log;
  }
  async open(): Promise<void> {}
  async read() {
    if (this.answer === 'unreachable')
      throw new DeviceError(ErrorCodes.DEVICE_UNREACHABLE, this.id, 'ECONNREFUSED', { retryable: true });
    return { mode: 'remote', fanPct: 50, supplySetpointC: 18, epoch: this.unitEpoch };
  }
  async writeCommand(cmd: AhuCommandSet): Promise<void> {
    switch (this.answer) {
      case 'accept':
        this.unitEpoch = Math.max(this.unitEpoch, cmd.epoch);
        this.log.push({ ahu: this.id, node: this.node, epoch: cmd.epoch, atMs: performance.now() });
        return;
      case 'refuse-unproven':
        throw new DeviceError(
          ErrorCodes.DEVICE_EXCEPTION,
          this.id,
          'refused with exception 0x0D, not proven',
          {
            retryable: true,
            deviceCode: 13,
          },
        );
      case 'fenced':
        throw new DeviceError(ErrorCodes.DEVICE_FENCED, this.id, 'the unit holds a newer epoch', {
          deviceCode: 13,
          unitEpoch: this.unitEpoch,
        });
      case 'unreachable':
        throw new DeviceError(ErrorCodes.DEVICE_UNREACHABLE, this.id, 'ECONNREFUSED', { retryable: true });
    }
  }
  async close(): Promise<void> {}
}

interface Node {
  name: string;
  leadership: FakeLeadership;
  units: Map<string, FakeUnit>;
  driver: GroupDriver;
}

const drivers: GroupDriver[] = [];
afterEach(() => {
  for (const d of drivers.splice(0)) d.stop();
});

function cluster(names: string[], opts: Partial<GroupDriverOptions> = {}) {
  const c = new FakeCluster({ g1: [names[0]!, 100] });
  const writes: Write[] = [];
  const nodes = names.map((name): Node => {
    const leadership = c.node(name);
    const units = new Map(GROUP.airHandlers.map((a) => [a, new FakeUnit(a, name, writes)]));
    const driver = new GroupDriver(GROUP, units as unknown as Map<string, DeviceIo>, leadership, {
      periodMs: PERIOD_MS,
      logger: quietLogger,
      undrivenLimitMs: UNDRIVEN_MS,
      relinquishBackoff: { baseMs: 1_000, maxMs: 4_000 },
      ...opts,
    });
    drivers.push(driver);
    return { name, leadership, units, driver };
  });
  for (const n of nodes) n.driver.start();
  return { c, nodes, writes };
}

const writesOf = (ws: Write[], ahu: string, fromMs: number) =>
  ws.filter((w) => w.ahu === ahu && w.atMs >= fromMs);

describe('a unit refusing with our stale-epoch code, unproven', () => {
  it('keeps the group’s other unit written every period, counts and shows the refusal, and writes it again once it clears', async () => {
    const { c, nodes, writes } = cluster(['n1', 'n2']);
    const n1 = nodes[0]!;
    await waitFor(
      'both units written',
      () => writesOf(writes, 'B', 0).length > 0 && writesOf(writes, 'A', 0).length > 0,
    );
    n1.units.get('A')!.answer = 'refuse-unproven';
    const t0 = performance.now();
    await waitFor(
      'a refusal counted',
      () => (n1.driver.units().find((u) => u.ahu === 'A')?.refusals ?? 0) >= 3,
    );
    // Longer than the undriven bound: B is written all along, so the group stays driven and led.
    await waitFor('past the undriven bound', () => performance.now() - t0 > UNDRIVEN_MS * 2);
    const b = writesOf(writes, 'B', t0);
    expect(b.length).toBeGreaterThan((UNDRIVEN_MS * 2) / PERIOD_MS / 2);
    expect(b.every((w) => w.node === 'n1' && w.epoch === 100)).toBe(true);
    expect(writesOf(writes, 'A', t0 + PERIOD_MS)).toEqual([]);
    const a = n1.driver.units().find((u) => u.ahu === 'A')!;
    expect(a.lastError).toMatch(/0x0D, not proven/);
    expect(n1.driver.driveStatus).toMatchObject({ problem: null, relinquished: null });
    expect(c.relinquished).toEqual([]);
    expect(n1.driver.driving).toBe(true);
    // Cleared: the same leader writes it again, with the same epoch.
    n1.units.get('A')!.answer = 'accept';
    const t1 = performance.now();
    await waitFor('A written again', () => writesOf(writes, 'A', t1).length > 0);
    expect(writesOf(writes, 'A', t1)[0]).toMatchObject({ node: 'n1', epoch: 100 });
    expect(n1.driver.units().find((u) => u.ahu === 'A')!.lastError).toBeNull();
  });
});

describe('a proven newer epoch', () => {
  it('stops writing with ours and hands the group on, with the unit’s epoch in the reason', async () => {
    const { c, nodes, writes } = cluster(['n1', 'n2']);
    const [n1, n2] = nodes as [Node, Node];
    await waitFor('n1 drives', () => writesOf(writes, 'B', 0).length > 0);
    const a = n1.units.get('A')!;
    a.unitEpoch = 105;
    a.answer = 'fenced';
    await waitFor('handed on', () => c.relinquished.length === 1);
    expect(c.relinquished[0]).toMatchObject({ group: 'g1', from: 'n1', to: 'n2' });
    expect(c.relinquished[0]!.reason).toMatch(/A holds epoch 105, above ours \(100\)/);
    expect(n1.driver.driveStatus.relinquished).toMatchObject({ cause: 'stale-epoch', epoch: 100 });
    expect(n1.leadership.groups()[0]!.relinquished?.reason).toMatch(/epoch 105/);
    const handedAt = performance.now();
    expect(writes.filter((w) => w.node === 'n1' && w.atMs > handedAt)).toEqual([]);
    // The next leader drives both of its units with its newer epoch.
    await waitFor('n2 drives', () => writes.some((w) => w.node === 'n2' && w.ahu === 'A'));
    expect(writes.filter((w) => w.node === 'n2').every((w) => w.epoch === 110)).toBe(true);
    expect(n2.driver.driving).toBe(true);
  });
});

describe('a leader that cannot drive', () => {
  it('hands the group on after the undriven bound, not before the term had its chance; the back-off spaces its relinquishes', async () => {
    const { c, nodes, writes } = cluster(['n1', 'n2']);
    const [n1, n2] = nodes as [Node, Node];
    await waitFor('n1 drives', () => writesOf(writes, 'A', 0).length > 0);
    // Every unit unreachable from both nodes.
    for (const n of nodes) for (const u of n.units.values()) u.answer = 'unreachable';
    const t0 = performance.now();
    await waitFor('n1 hands on', () => c.relinquished.length >= 1, { timeoutMs: 5_000, intervalMs: 5 });
    // Judged from n1's last accepted write (one may have landed just before the units went away).
    const lastOkMs = Math.max(...writes.filter((w) => w.node === 'n1').map((w) => w.atMs));
    expect(performance.now() - lastOkMs).toBeGreaterThanOrEqual(UNDRIVEN_MS);
    expect(performance.now() - t0).toBeLessThan(UNDRIVEN_MS + 15 * PERIOD_MS);
    expect(c.relinquished[0]!.reason).toMatch(
      /no unit accepted a write for \d+\.\d s \(bound 0\.3 s\): .*ECONNREFUSED/,
    );
    // n2's term starts without a single accepted write: judged only after it had its chance.
    const n2Led = performance.now();
    await waitFor('n2 hands on', () => c.relinquished.length >= 2, { timeoutMs: 5_000 });
    expect(performance.now() - n2Led).toBeGreaterThanOrEqual(UNDRIVEN_MS);
    expect(c.relinquished[1]).toMatchObject({ from: 'n2', to: 'n1' });
    // n1 leads again within its back-off (1 s): it keeps the group, says why, and tries its units.
    await waitFor('n1 holds back', () => n1.driver.driveStatus.relinquishHeldUntilMs !== null, {
      timeoutMs: 2_000,
    });
    expect(n1.driver.driveStatus.problem).toMatch(/no unit accepted a write/);
    expect(c.relinquished).toHaveLength(2);
    // Units back: n1 drives again without handing on; the problem clears.
    for (const u of n1.units.values()) u.answer = 'accept';
    await waitFor('n1 drives again', () => writes.some((w) => w.node === 'n1' && w.epoch === 120));
    await waitFor('no problem', () => n1.driver.driveStatus.problem === null);
    expect(c.relinquished).toHaveLength(2);
    expect(n2.driver.driving).toBe(false);
  });

  it('with no other node, gives the group up at most once per back-off, doubling', async () => {
    const { c, nodes } = cluster(['solo'], { relinquishBackoff: { baseMs: 400, maxMs: 5_000 } });
    const solo = nodes[0]!;
    await waitFor('driving', () => solo.driver.driving);
    for (const u of solo.units.values()) u.answer = 'unreachable';
    const t0 = performance.now();
    const at: number[] = [];
    await waitFor(
      'three relinquishes',
      () => {
        while (at.length < c.relinquished.length) at.push(performance.now() - t0);
        return c.relinquished.length >= 3;
      },
      { timeoutMs: 8_000, intervalMs: 5 },
    );
    // 0.3 s undriven, then spaced by ≥ 0.4 s, then ≥ 0.8 s (each also waits for its own 0.3 s).
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(400 - PERIOD_MS);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(800 - PERIOD_MS);
  });

  it('a loop that keeps crashing hands the group on', async () => {
    let crash = false;
    const { c, nodes, writes } = cluster(['n1', 'n2'], {
      beforeStep: () => {
        if (crash) throw new Error('injected');
      },
    });
    await waitFor('n1 drives', () => writesOf(writes, 'A', 0).length > 0);
    crash = true;
    await waitFor('handed on', () => c.relinquished.length === 1, { timeoutMs: 5_000 });
    // Three crashes come within ~7 periods of backoff, well before the undriven bound.
    expect(c.relinquished[0]!.reason).toBe('the control loop crashed 3 times in a row (last: injected)');
    expect(nodes[0]!.driver.driveStatus.relinquished?.cause).toBe('crashing');
  });

  it('a group whose units are all handed to local control on purpose is never judged', async () => {
    const { c, nodes, writes } = cluster(['n1', 'n2']);
    const n1 = nodes[0]!;
    let paused = true;
    Object.assign(n1.leadership, {
      operator: () => ({ paused, reason: 'maintenance', overrides: {}, by: 't', atMs: 0 }),
    });
    await waitFor('driving', () => n1.driver.driving);
    for (const u of n1.units.values()) u.answer = 'unreachable';
    const t0 = performance.now();
    await waitFor('well past the bound', () => performance.now() - t0 > UNDRIVEN_MS * 3);
    expect(c.relinquished).toEqual([]);
    expect(n1.driver.driveStatus.problem).toBeNull();
    // Resumed with the units back: the term gets a fresh chance, not judged on the paused time.
    for (const u of n1.units.values()) u.answer = 'accept';
    const resumedAt = performance.now();
    paused = false;
    await waitFor('written again', () => writes.some((w) => w.node === 'n1' && w.atMs > resumedAt));
    expect(c.relinquished).toEqual([]);
  });
});

describe('time the group could not be driven by anyone', () => {
  it('a lapse of the fence (lease deadline passed, then failsafe or a keepalive gave it back) is not counted as undriven', async () => {
    const { c, nodes, writes } = cluster(['n1', 'n2']);
    const n1 = nodes[0]!;
    await waitFor('driving', () => n1.driver.driving && writes.some((w) => w.node === 'n1'));
    // The node may not write for longer than the undriven bound (its lease deadline passed) ...
    let lapsed = true;
    const fence = n1.leadership.fence.bind(n1.leadership);
    Object.assign(n1.leadership, { fence: (g: string) => (lapsed ? null : fence(g)) });
    const t0 = performance.now();
    await waitFor('the fence lapsed well past the bound', () => performance.now() - t0 > UNDRIVEN_MS * 2);
    // ... then may again, with the same epoch: the term gets a fresh chance, it is not handed on.
    const backAt = performance.now();
    lapsed = false;
    await waitFor('written again', () => writes.some((w) => w.node === 'n1' && w.atMs > backAt));
    expect(c.relinquished).toEqual([]);
  });

  it('while etcd is out of reach a leader whose units take nothing keeps the group: nobody else could lead it', async () => {
    const { c, nodes } = cluster(['n1', 'n2']);
    const n1 = nodes[0]!;
    await waitFor('driving', () => n1.driver.driving);
    n1.leadership.healthy = false;
    for (const u of n1.units.values()) u.answer = 'unreachable';
    const t0 = performance.now();
    await waitFor('well past the bound', () => performance.now() - t0 > UNDRIVEN_MS * 3);
    expect(c.relinquished).toEqual([]);
    // etcd back: the bound applies again from then on.
    n1.leadership.healthy = true;
    await waitFor('handed on once etcd is back', () => c.relinquished.length === 1, { timeoutMs: 5_000 });
  });
});

describe('what the node says about driving', () => {
  it('says it drives only while a write of its term can still land: less term left than the quickest unit applies in is not driving', async () => {
    const APPLY_MS = 1_000;
    const { nodes } = cluster(['n1', 'n2'], { minApplyDelayMs: APPLY_MS });
    const n1 = nodes[0]!;
    await waitFor('driving', () => n1.driver.driving);
    // The lease deadline comes nearer, as on a leader cut off from etcd: its keepalives stop moving it.
    let leftMs = APPLY_MS + 500;
    const fence = n1.leadership.fence.bind(n1.leadership);
    Object.assign(n1.leadership, {
      fence: (g: string) => {
        const f = fence(g);
        return f && { ...f, untilMs: performance.now() + leftMs };
      },
    });
    expect(n1.driver.driving).toBe(true);
    leftMs = APPLY_MS - 1;
    expect(n1.driver.driving).toBe(false);
    // A keepalive answered: the deadline moves out again, the same term drives on.
    leftMs = APPLY_MS + 500;
    expect(n1.driver.driving).toBe(true);
  });
});

describe('the undriven bound', () => {
  it('is three periods, at least 2 s, and at most half the tightest unit watchdog', () => {
    expect(undrivenLimitMs(1_000)).toBe(3_000);
    expect(undrivenLimitMs(200)).toBe(2_000);
    expect(undrivenLimitMs(200, 5_000)).toBe(2_000);
    expect(undrivenLimitMs(1_000, 5_000)).toBe(2_500);
    expect(undrivenLimitMs(1_000, 30_000)).toBe(3_000);
  });
});
