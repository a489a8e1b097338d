// Chaos: faults of etcd, on real processes. Losing one member changes nothing (same leaders,
// writes go on); losing quorum makes every leader stop writing by its lease deadline, and leaders
// come back when quorum does; the raft leader isolated from its followers, and a member stalled by
// SIGSTOP, keep every group driven by one leader. Safety and liveness invariants after every trial.
import { describe, expect, it } from 'vitest';
import {
  MIXED_HALL,
  trialEtcdLeaderIsolated,
  trialEtcdMemberLoss,
  trialEtcdMemberSigstop,
  trialEtcdQuorumLoss,
} from '../support/hall.ts';
import { useChaosHall } from './chaos-hall.ts';

const chaos = useChaosHall({ ...MIXED_HALL, name: 'chaos-etcd' });

describe('chaos: etcd faults', () => {
  it('losing one etcd member keeps every leader and every group written', async () => {
    await chaos.trial('etcd-member-loss', trialEtcdMemberLoss);
  }, 60_000);

  it('losing etcd quorum stops every leader by its lease deadline; leaders return with quorum', async () => {
    await chaos.trial('etcd-quorum-loss', trialEtcdQuorumLoss);
    const leaders = await chaos.hall().waitForLeaders();
    expect(leaders.size).toBe(Object.keys(chaos.hall().groups).length);
  }, 90_000);

  it('the etcd raft leader cut off from its followers', async () => {
    await chaos.trial('etcd-leader-isolated', trialEtcdLeaderIsolated);
  }, 60_000);

  it('an etcd member stalled by SIGSTOP (the raft leader: it is the one that matters)', async () => {
    const leader = await chaos.hall().etcdLeader();
    await chaos.trial('etcd-member-sigstop', (h) => trialEtcdMemberSigstop(h, { member: leader ?? 0 }));
  }, 60_000);
});
