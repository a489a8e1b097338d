// Chaos: churn and clocks, on real processes. Controllers restarted in a loop (kill -9 and
// SIGTERM) leave an even, stable placement; a leader's wall clock jumping an hour forward or back
// (libfaketime; monotonic time untouched) changes nothing unsafe. Invariants after every trial.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  Hall,
  stablePlacement,
  TrialLog,
  type TrialResult,
  trialClockJump,
  trialRestartLoop,
} from '../support/hall.ts';

let hall: Hall;
const log = new TrialLog();
let failed = false;

beforeAll(async () => {
  hall = await Hall.start({ name: 'chaos-churn', faketime: true });
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

describe('chaos: churn and clocks', () => {
  it('placement is even and stable', async () => {
    const p = await stablePlacement(hall);
    expect(p.moves).toEqual([]);
    expect(p.even).toBe(true);
    const counts = Object.values(p.counts);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
  }, 60_000);

  it('restarting controllers in a loop keeps the invariants and ends even and stable', async () => {
    await expectClean(await trialRestartLoop(hall, { count: 4 }));
  }, 120_000);

  it('a leader’s wall clock jumping +1 h and −1 h changes nothing unsafe', async () => {
    await expectClean(await trialClockJump(hall, { offsetS: 3600 }));
    await expectClean(await trialClockJump(hall, { offsetS: -3600 }));
  }, 60_000);
});
