// Chaos: faults of a leader, on real processes (3-member etcd, the simulator with Modbus TCP,
// Modbus RTU, OPC-UA and vendor units, 3 controllers). kill -9 → a new leader writes within about one TTL; SIGSTOP past
// the TTL → after SIGCONT the old leader writes nothing; cut from etcd → it stops before the new
// leader starts (gap > 0); SIGTERM → handover without waiting for the TTL; hot reloads during a
// failover; operators pausing, overriding and switching over while a device link is lossy. The
// SIGSTOP falls on the group with the gateway-fenced unit, the etcd cut on the one with the lease
// unit: its writes under the cut leader's term must land by its lease deadline.
// Safety and liveness invariants after every trial; writes in every group before and after it.
import { describe, expect, it } from 'vitest';
import {
  groupFenced,
  MIXED_HALL,
  trialGraceful,
  trialKill9,
  trialOperatorDuringFault,
  trialPartition,
  trialReloadDuringFault,
  trialSigstop,
} from '../support/hall.ts';
import { useChaosHall } from './chaos-hall.ts';

const chaos = useChaosHall({ ...MIXED_HALL, name: 'chaos-leader' });

describe('chaos: leader faults', () => {
  const ttlMs = 2000;

  it('kill -9 of a leader: the new leader writes within TTL + margin', async () => {
    const r = await chaos.trial('kill9-leader', trialKill9);
    expect(r.failoverMs).not.toBeNull();
    // CI bound (2 cores, three halls of processes): the bench holds the real ≤ TTL + 300 ms target.
    expect(r.failoverMs!).toBeLessThan(ttlMs + 1500);
  }, 60_000);

  it('SIGSTOP of a leader past the TTL: after SIGCONT no unit takes a write with its old epoch', async () => {
    const r = await chaos.trial('sigstop-leader', (h) =>
      trialSigstop(h, { group: groupFenced(h, 'gateway') }),
    );
    expect(r.newEpoch).toBeGreaterThan(r.oldEpoch!);
  }, 60_000);

  it('a leader cut off from etcd stops writing before the new leader’s first write', async () => {
    const r = await chaos.trial('partition-leader', (h) =>
      trialPartition(h, { group: groupFenced(h, 'lease') }),
    );
    expect(r.gapMs).not.toBeNull();
    expect(r.gapMs!).toBeGreaterThan(0);
  }, 60_000);

  it('a graceful SIGTERM hands over without waiting for the TTL', async () => {
    const r = await chaos.trial('graceful-leader', trialGraceful);
    expect(r.failoverMs!).toBeLessThan(ttlMs / 2);
  }, 60_000);

  it('hot reloads (SIGHUP, a config change) during a failover change nothing unsafe', async () => {
    const r = await chaos.trial('reload-during-fault', trialReloadDuringFault);
    expect(r.newEpoch).toBeGreaterThan(r.oldEpoch!);
  }, 60_000);

  it('pause, override and switchover during a lossy device link', async () => {
    await chaos.trial('operator-during-fault', trialOperatorDuringFault);
  }, 90_000);
});
