// Chaos: faults of etcd, on real processes. Losing one member changes nothing (same leaders,
// writes go on); losing quorum makes every leader stop writing by its lease deadline, and leaders
// come back when quorum does. The journal invariants are checked after every trial.
import { describe, expect, it } from 'vitest';
import { type TrialResult, trialEtcdMemberLoss, trialEtcdQuorumLoss } from '../support/hall.ts';
import { useChaosHall } from './chaos-hall.ts';

const chaos = useChaosHall({ name: 'chaos-etcd' });
const hall = chaos.hall;
const expectClean = (r: TrialResult) => chaos.expectClean(r);

describe('chaos: etcd faults', () => {
  it('losing one etcd member keeps every leader and every group written', async () => {
    await expectClean(await trialEtcdMemberLoss(hall()));
  }, 60_000);

  it('losing etcd quorum stops every leader by its lease deadline; leaders return with quorum', async () => {
    await expectClean(await trialEtcdQuorumLoss(hall()));
    const leaders = await hall().waitForLeaders();
    expect(leaders.size).toBe(Object.keys(hall().groups).length);
  }, 90_000);
});
