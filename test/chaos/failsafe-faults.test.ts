// Chaos: failsafe mode on (issue 15, item 9). etcd unreachable for every controller while the
// state-cache peer links are cut too — all of them (nobody can be backed: every leader stops by
// its lease deadline) or only those into one leader (it may be backed; its peers cannot). Never two
// leaders; leaders return with etcd. Safety and liveness invariants after every trial. And the
// checks' own wiring on real processes: an undeclared pause is caught, and so is a trial in which
// no write reached a Modbus RTU unit while its group stayed driven through its other unit.
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';
import { FAILSAFE_HALL, runTrial, trialPeerPartitionFailsafe } from '../support/hall.ts';
import { useChaosHall } from './chaos-hall.ts';

const chaos = useChaosHall({ ...FAILSAFE_HALL, name: 'chaos-failsafe' });

describe('chaos: failsafe', () => {
  it('etcd down for everyone and every peer link cut: every leader stops by its lease deadline', async () => {
    await chaos.trial('peer-partition-failsafe', (h) => trialPeerPartitionFailsafe(h, { scope: 'all' }));
  }, 90_000);

  it('etcd down for everyone and one leader’s incoming peer links cut: never two leaders', async () => {
    await chaos.trial('peer-partition-failsafe', (h) => trialPeerPartitionFailsafe(h, { scope: 'one' }));
  }, 90_000);
});

describe('chaos: the liveness invariant on the real hall', () => {
  it('sees a paused group as undriven unless the pause is exempt', async () => {
    // The check's wiring (claim monitor → spans → journal) on real processes: a pause stops the
    // writes while the leader keeps the group, which is a violation unless declared.
    const hall = chaos.hall();
    const group = Object.keys(hall.groups)[0]!;
    const node = hall.live()[0]!;
    const fromMs = Date.now();
    await hall.operator(node, 'POST', `/api/v1/groups/${group}/pause`, { reason: 'liveness self-test' });
    try {
      await waitFor(
        'the undeclared pause to show as a liveness violation',
        async () =>
          (await hall.check()).violations.find((v) => v.group === group && v.kind !== 'group-interleave'),
        { timeoutMs: hall.handOnMs * 2 + 5000, intervalMs: 500 },
      );
    } finally {
      await hall.operator(node, 'POST', `/api/v1/groups/${group}/resume`);
      // Declared after the fact, so the file's final check holds everything else to the rule.
      hall.exemptions.push({ group, fromMs, toMs: Date.now(), why: 'liveness self-test pause' });
    }
    const settled = await waitFor(
      `${group} driven again after its resume`,
      async () =>
        (await hall.groupsWithoutWrites(Date.now() - 500, Date.now())).includes(group) ? null : true,
      { timeoutMs: hall.halfPeriodMs + 2000, intervalMs: 100 },
    );
    expect(settled).toBe(true);
    expect((await hall.check()).violations).toEqual([]);
  }, 60_000);

  it('sees a trial in which no write reached an RTU unit as vacuous, though its group stayed driven', async () => {
    // Liveness is judged per group, so only the per-unit rule of runTrial catches a unit that no
    // write reached: here its serial line is broken from 2 s before the "fault" until it ends.
    const hall = chaos.hall();
    const link = [...hall.rtuLinks.values()][0]!;
    const r = await runTrial(hall, 'lossy-line', async () => {
      link.line.break();
      try {
        await waitFor(
          `${link.ahu} unwritten for 2 s`,
          async () => (await hall.unitsWithoutWrites(Date.now() - 2000, Date.now())).includes(link.ahu),
          { timeoutMs: 10_000, intervalMs: 100 },
        );
      } finally {
        link.line.mend();
      }
      return {
        fault: 'lossy-line',
        node: '*',
        group: '*',
        oldEpoch: null,
        newEpoch: null,
        faultWallMs: Date.now(),
        failoverMs: null,
        gapMs: null,
        notes: [],
        problems: [],
      };
    });
    // On a loaded machine another unit can miss its writes in the same window too; runTrial is right
    // to name it, so the claim is that the broken unit is named and that nothing but vacuity is.
    const said = JSON.stringify(r.problems);
    expect(r.problems, said).toContain(
      `vacuous: no accepted write in ${link.ahu} in the 2000 ms before the fault`,
    );
    for (const problem of r.problems) {
      expect(problem, said).toMatch(/^vacuous: no accepted write in \S+ in the 2000 ms before the fault$/);
    }
    expect((await hall.check()).violations).toEqual([]);
  }, 60_000);
});
