// Chaos: faults of etcd, on real processes. Losing one member changes nothing (same leaders,
// writes go on); losing quorum makes every leader stop writing by its lease deadline, and leaders
// come back when quorum does. The journal invariants are checked after every trial.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  Hall,
  TrialLog,
  type TrialResult,
  trialEtcdMemberLoss,
  trialEtcdQuorumLoss,
} from '../support/hall.ts';

let hall: Hall;
const log = new TrialLog();
let failed = false;

beforeAll(async () => {
  hall = await Hall.start({ name: 'chaos-etcd' });
}, 90_000);

afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail') {
    failed = true;
    process.stderr.write(await hall.logTails());
  }
});

afterAll(async () => {
  if (!hall) return;
  const report = await hall.check().catch(() => undefined);
  process.stdout.write(`${log.summary(report)}\n`);
  await hall.stopAll({ keepDir: failed });
}, 30_000);

async function expectClean(r: TrialResult): Promise<void> {
  log.add(r);
  process.stdout.write(`${r.fault} ${r.node}: ${r.notes.join('; ')}\n`);
  expect(r.problems).toEqual([]);
  const report = await hall.check();
  expect(report.violations).toEqual([]);
}

describe('chaos: etcd faults', () => {
  it('losing one etcd member keeps every leader and every group written', async () => {
    await expectClean(await trialEtcdMemberLoss(hall));
  }, 60_000);

  it('losing etcd quorum stops every leader by its lease deadline; leaders return with quorum', async () => {
    await expectClean(await trialEtcdQuorumLoss(hall));
    const leaders = await hall.waitForLeaders();
    expect(leaders.size).toBe(Object.keys(hall.groups).length);
  }, 90_000);
});
