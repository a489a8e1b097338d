// Issue 15, item 5, end to end on real processes: a write must end inside the term that sent it.
// Real etcd (3 members), the simulator, two controllers as child processes; one group of three
// units — one OPC-UA and one Modbus TCP unit answering after 5 s, one Modbus unit answering at once.
// The group's leader is SIGSTOPped past its TTL while its writes to the slow units are on the wire;
// the other node leads and writes; the slow delay passes; the old leader resumes. The journal must
// show no accepted write of the old epoch after the new epoch's first accepted write in the group
// (the group invariant, test/support/journal-invariants.ts). Before the bound, the OPC-UA unit
// applied the frozen leader's writes 5 s after they were sent, after the new leader's (this test
// failed so: epoch 3 accepted at +4.5 s after the stop, after epoch 5's first write). The slow
// Modbus unit drops every request at its 1 s bound, so the leader's status read before each write
// fails and no Modbus write of either term goes out past it; a frozen Modbus client with a write on
// the wire is proven at the device seam (test/devices/write-deadline.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';
import { awaitHandover, Hall, settle } from '../support/hall.ts';
import { checkJournal, type JournalEntry, summarize } from '../support/journal-invariants.ts';

const SLOW_MS = 5_000;
/** Trials until one froze the leader with a write to a slow unit on the wire (bounded). */
const MAX_TRIALS = 4;

let hall: Hall;

beforeAll(async () => {
  hall = await Hall.start({
    name: 'slow-unit-term',
    controllers: 2,
    groups: 1,
    airHandlers: 3,
    opcuaShare: 0.34,
    watchdogS: 10,
    liveness: false,
  });
}, 180_000);

afterAll(async () => {
  await hall?.stopAll();
}, 60_000);

/** Resolves once `ms` have passed since `fromWallMs`: how long the slow units hold a request. */
function outlive(what: string, fromWallMs: number, ms: number): Promise<unknown> {
  return waitFor(what, () => Date.now() - fromWallMs >= ms, { timeoutMs: ms + 10_000, intervalMs: 100 });
}

describe('a write that outlives the term', () => {
  it('never lands after the next leader’s first write: slow OPC-UA and Modbus units, leader SIGSTOPped', async () => {
    const [group, ahus] = Object.entries(hall.groups)[0]!;
    const opcua = ahus.find((a) => hall.protocols.get(a) === 'opcua');
    const modbus = ahus.filter((a) => hall.protocols.get(a) === 'modbus-tcp');
    expect(opcua, 'an OPC-UA unit in the group').toBeDefined();
    expect(modbus.length, 'two Modbus units in the group').toBeGreaterThanOrEqual(2);
    const slow = [opcua!, modbus[0]!];
    const ttlMs = hall.timing.leaseTtlS * 1000;
    const figures: string[] = [];
    let conclusive: JournalEntry[] = [];

    for (let trial = 1; trial <= MAX_TRIALS && conclusive.length === 0; trial++) {
      const leaders = await settle(hall);
      const leader = leaders.get(group)!;
      const mark = await hall.lastSeq();
      await hall.simFault(slow.map((ahu) => ({ fault: 'ahu-slow', ahu, ms: SLOW_MS })));
      let t0 = 0;
      try {
        // The leader keeps writing the slow OPC-UA unit: each call is on the wire until its hint
        // (≤ timeoutMs, 1 s) passes and the unit drops it (journaled 'expired' then); then the
        // adapter reads the unit (1 s, it times out too) and writes again within a period. So the
        // next write is on the wire from ~1.0-1.2 s after an 'expired' entry to ~2.0-2.2 s: stop
        // the leader in that window. Whether it worked is read from the journal below.
        const lookFromMs = Date.now();
        const dropped = await waitFor(
          `a write of epoch ${leader.epoch} to ${opcua} journaled (dropped at its hint)`,
          async () =>
            (await hall.journal(mark)).entries.findLast(
              (e) => e.ahu === opcua && e.epoch === leader.epoch && e.wallMs >= lookFromMs,
            ),
          { timeoutMs: 15_000, intervalMs: 50 },
        );
        await waitFor('the next write on the wire', () => Date.now() >= dropped.wallMs + 1_500, {
          timeoutMs: 5_000,
          intervalMs: 10,
        });
        t0 = await hall.kill(leader.node, 'SIGSTOP');
        const h = await awaitHandover(hall, group, leader.epoch, {
          sinceSeq: mark,
          faultWallMs: t0,
          timeoutMs: ttlMs + 15_000,
        });
        figures.push(
          `trial ${trial}: ${leader.node}@${leader.epoch} stopped; epoch ${h.newEpoch} wrote after ${h.sinceFaultMs} ms`,
        );
        // Whatever the frozen leader had on the wire would have landed by now.
        await outlive('the slow units’ delay', t0, SLOW_MS + 1_500);
      } finally {
        if (t0 > 0 && hall.running(leader.node)) await hall.kill(leader.node, 'SIGCONT');
        await hall.simFault(slow.map((ahu) => ({ fault: 'ahu-slow', ahu, clear: true })));
      }
      await waitFor(
        `${leader.node} to know it no longer leads with epoch ${leader.epoch}`,
        async () => {
          const v = await hall.cluster(leader.node).catch(() => null);
          return v?.groups.some((g) => g.id === group && !(g.state === 'leader' && g.epoch === leader.epoch));
        },
        { timeoutMs: 15_000, intervalMs: 100 },
      );
      const read = await hall.journal(mark);
      // Old-term writes that reached a slow unit after the stop: they were on the wire meanwhile.
      const inFlight = read.entries.filter(
        (e) => slow.includes(e.ahu) && e.epoch === leader.epoch && e.wallMs >= t0,
      );
      figures.push(
        `trial ${trial}: old-epoch writes to the slow units journaled after the stop: ` +
          (inFlight
            .map((e) => `${e.ahu} ${e.accepted ? 'accepted' : e.reason} at +${e.wallMs - t0} ms`)
            .join(', ') || 'none (the leader froze between writes; trying again)'),
      );
      conclusive = inFlight;
      const report = checkJournal(read.entries, hall.groups, { truncated: read.truncated });
      expect(report.violations, `${summarize(report)}\n${figures.join('\n')}`).toEqual([]);
      // Not one write of the old term was applied after the stop: each was dropped at the unit.
      expect(inFlight.filter((e) => e.accepted)).toEqual([]);
    }
    process.stdout.write(`${figures.join('\n')}\n`);
    expect(
      conclusive.length,
      `no trial froze the leader with a write on the wire:\n${figures.join('\n')}`,
    ).toBeGreaterThan(0);
    // The whole run holds the invariants too.
    const all = await hall.check();
    expect(all.violations, summarize(all)).toEqual([]);
  }, 240_000);
});
