// Chaos: failsafe mode on (issue 15, item 9). etcd unreachable for every controller while the
// state-cache peer links are cut too — all of them (nobody can be backed: every leader stops by
// its lease deadline) or only those into one leader (it may be backed; its peers cannot). Never two
// leaders; leaders return with etcd. Safety and liveness invariants after every trial.
import { describe, it } from 'vitest';
import { FAILSAFE_HALL, trialPeerPartitionFailsafe } from '../support/hall.ts';
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
