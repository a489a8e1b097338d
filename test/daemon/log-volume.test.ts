// Log volume under faults that persist: gateways keep coolctl's stdout in journald on SD cards, so a
// fault that lasts for hours must cost a few lines a minute, never a line per control period. Real
// processes (the chaos hall: 3-member etcd, the simulator, 2 controllers at a 200 ms period), the
// worst faults measured held together: a Modbus unit answering garbage (each answer a new error
// text) and one etcd member SIGSTOPped (before hedged reads it made states flap; now it is reported
// once per node). Counters still count every failure; the recovery is logged once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';
import { Hall, type HallLogLine } from '../support/hall.ts';

/** How long the faults are held: the measurement itself (lines per this window), not a wait for state. */
const HOLD_MS = 40_000;
/**
 * Lines of one message on one node while the faults are held: a line a minute per subject, plus room
 * for real state changes (a mode, a leadership) — against the ~200 a 200 ms period writes, which
 * the old code did (201 of one).
 */
const MAX_LINES_PER_MESSAGE = 12;

let hall: Hall;

/** The controllers' log lines since `sinceMs`. */
const lines = (sinceMs: number): Promise<HallLogLine[]> => hall.logLines(sinceMs);

function perMessage(ls: readonly HallLogLine[]): [string, number][] {
  const counts = new Map<string, number>();
  for (const l of ls) counts.set(`${l.node} ${l.msg}`, (counts.get(`${l.node} ${l.msg}`) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]);
}

/** coolctl_device_errors_total of `ahu` on `node`, every kind. */
async function deviceErrors(node: string, ahu: string): Promise<number> {
  const res = await fetch(`${hall.apiUrl(node)}/metrics`, {
    headers: hall.apiHeaders,
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  let sum = 0;
  for (const m of text.matchAll(/^coolctl_device_errors_total\{([^}]*)\} (\S+)$/gm))
    if (m[1]!.includes(`device="${ahu}"`)) sum += Number(m[2]);
  return sum;
}

beforeAll(async () => {
  hall = await Hall.start({
    name: 'log-volume',
    controllers: 2,
    groups: 2,
    airHandlers: 4,
    liveness: false,
    secure: false,
  });
}, 120_000);

afterAll(async () => {
  await hall?.stopAll();
}, 30_000);

describe('log volume under persistent faults', () => {
  it('garbage answers and a stopped etcd member cost a few lines a minute, counted in full', async () => {
    const ahu = 'AHU-01';
    const group = Object.entries(hall.groups).find(([, units]) => units.includes(ahu))![0];
    const leaders = await hall.waitForLeaders();
    const leader = leaders.get(group)!.node;
    const errorsBefore = await deviceErrors(leader, ahu);

    const fromMs = Date.now();
    let clearedMs = Number.POSITIVE_INFINITY;
    await hall.simFault({ fault: 'ahu-garbage', ahu });
    await hall.etcdSignal(2, 'SIGSTOP');
    try {
      // The first failure is logged at once.
      await waitFor(
        `a "unit write failed" line for ${ahu}`,
        async () => (await lines(fromMs)).some((l) => l.msg === 'unit write failed' && l.ahu === ahu),
        { timeoutMs: 15_000, intervalMs: 200 },
      );
      await new Promise((r) => setTimeout(r, HOLD_MS));
    } finally {
      // Before the clear: the recovery can be logged before this test has read the window's lines.
      clearedMs = Date.now();
      await hall.etcdSignal(2, 'SIGCONT');
      await hall.simFault({ fault: 'clear-all' });
    }
    const held = await lines(fromMs);
    const table = perMessage(held);
    const report = table.map(([k, n]) => `${n}\t${k}`).join('\n');
    expect(table[0]![1], `lines per node and message while held:\n${report}`).toBeLessThanOrEqual(
      MAX_LINES_PER_MESSAGE,
    );

    // Every failure is still counted: far more of them than lines about them.
    const failures = (await deviceErrors(leader, ahu)) - errorsBefore;
    expect(failures).toBeGreaterThan(20);

    // The recovery is one line, once.
    await waitFor(
      `"unit writes succeed again" for ${ahu}`,
      async () =>
        (await lines(clearedMs)).some((l) => l.msg === 'unit writes succeed again' && l.ahu === ahu),
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    const recoveries = (await lines(fromMs)).filter(
      (l) => l.msg === 'unit writes succeed again' && l.ahu === ahu,
    );
    expect(recoveries).toHaveLength(1);
  }, 90_000);
});
