// The lifecycle every chaos file shares: one hall of real processes per file, the process logs'
// tails printed when a test fails (and its tmp dir kept), a trial summary with the invariant
// report at the end, and `trial` — runs one fault under the no-vacuous-pass rule (writes in every
// group before and after it), then expects no problem and no safety or liveness violation.
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import {
  type FaultName,
  Hall,
  type HallOptions,
  runTrial,
  TrialLog,
  type TrialResult,
} from '../support/hall.ts';

export function useChaosHall(opts: HallOptions): {
  hall: () => Hall;
  trial: (
    fault: FaultName,
    run?: (hall: Hall) => Promise<TrialResult>,
    describe?: (r: TrialResult) => string,
  ) => Promise<TrialResult>;
} {
  let hall: Hall | undefined;
  const log = new TrialLog();
  let failed = false;

  beforeAll(async () => {
    hall = await Hall.start(opts);
  }, 120_000);

  afterEach(async (ctx) => {
    if (hall && ctx.task.result?.state === 'fail') {
      failed = true;
      process.stderr.write(await hall.logTails());
    }
  });

  afterAll(async () => {
    if (!hall) return;
    const report = await hall.check().catch(() => undefined);
    process.stdout.write(`${log.summary(report, hall)}\n`);
    await hall.stopAll({ keepDir: failed });
  }, 30_000);

  const hallOf = () => {
    if (!hall) throw new Error('the chaos hall did not start');
    return hall;
  };
  return {
    hall: hallOf,
    async trial(
      fault,
      run,
      describe = (x) =>
        `${x.fault} ${x.group} ${x.node}@${x.oldEpoch} → ${x.newEpoch}: failover ${x.failoverMs} ms, gap ${x.gapMs} ms; ${x.notes.join('; ')}`,
    ) {
      const r = await runTrial(hallOf(), fault, run);
      log.add(r);
      process.stdout.write(`${describe(r)}\n`);
      expect(r.problems).toEqual([]);
      const report = await hallOf().check();
      expect(report.violations.map((v) => v.message)).toEqual([]);
      return r;
    },
  };
}
