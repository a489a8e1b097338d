// The lifecycle every chaos file shares: one hall of real processes per file, the process logs'
// tails printed when a test fails (and its tmp dir kept), a trial summary with the invariant
// report at the end, and `expectClean` — a trial had no problems and the journal no violation.
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { Hall, type HallOptions, TrialLog, type TrialResult } from '../support/hall.ts';

export function useChaosHall(opts: HallOptions): {
  hall: () => Hall;
  expectClean: (r: TrialResult, describe?: (r: TrialResult) => string) => Promise<void>;
} {
  let hall: Hall | undefined;
  const log = new TrialLog();
  let failed = false;

  beforeAll(async () => {
    hall = await Hall.start(opts);
  }, 90_000);

  afterEach(async (ctx) => {
    if (hall && ctx.task.result?.state === 'fail') {
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

  return {
    hall: () => {
      if (!hall) throw new Error('the chaos hall did not start');
      return hall;
    },
    async expectClean(r, describe = (x) => `${x.fault} ${x.node}: ${x.notes.join('; ')}`) {
      log.add(r);
      process.stdout.write(`${describe(r)}\n`);
      expect(r.problems).toEqual([]);
      const report = await hall!.check();
      expect(report.violations).toEqual([]);
    },
  };
}
