// `npm run chaos -- --trials N`: the soak mode of the chaos suite, for nightly runs. One hall of
// real processes (3-member etcd, the simulator, 3 controllers under libfaketime); N faults drawn
// at random from the list, the journal invariants checked over the whole journal after every
// trial. Bounded in trials and minutes; exits 1 on any violation or broken expectation (the hall's
// tmp dir with every log is kept), 2 on bad usage, 0 otherwise. Ends with a one-line summary.
import { parseArgs } from 'node:util';
import { mulberry32 } from '../src/config/generate-site.ts';
import {
  type FaultName,
  Hall,
  TRIALS,
  TrialLog,
  type TrialResult,
  trialRestartLoop,
} from '../test/support/hall.ts';
import { summarize } from '../test/support/journal-invariants.ts';

const ALL: FaultName[] = [...(Object.keys(TRIALS) as FaultName[]), 'restart-loop'];
const USAGE = `usage: npm run chaos -- [--trials 20] [--faults ${ALL.join(',')}] [--seed N] [--max-minutes M] [--keep]`;

function parse() {
  const { values } = parseArgs({
    options: {
      trials: { type: 'string', default: '20' },
      faults: { type: 'string', default: ALL.join(',') },
      seed: { type: 'string', default: String(Date.now() % 1_000_000) },
      'max-minutes': { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const trials = Number(values.trials);
  if (!Number.isInteger(trials) || trials < 1 || trials > 100_000)
    throw new Error(`--trials must be 1…100000, got "${values.trials}"`);
  const faults = values.faults.split(',').map((f) => f.trim()) as FaultName[];
  const unknown = faults.filter((f) => !ALL.includes(f));
  if (unknown.length) throw new Error(`unknown fault(s) ${unknown.join(', ')}; known: ${ALL.join(', ')}`);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0)
    throw new Error(`--seed must be a whole number, got "${values.seed}"`);
  // A trial takes 5–30 s; the default bound leaves a minute per trial.
  const maxMinutes = values['max-minutes'] === undefined ? trials + 5 : Number(values['max-minutes']);
  if (!Number.isFinite(maxMinutes) || maxMinutes <= 0)
    throw new Error(`--max-minutes must be > 0, got "${values['max-minutes']}"`);
  return { trials, faults, seed, maxMinutes, keep: values.keep };
}

async function main(): Promise<number> {
  let o: ReturnType<typeof parse>;
  try {
    o = parse();
  } catch (err) {
    process.stderr.write(`chaos: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const rnd = mulberry32(o.seed);
  const deadline = Date.now() + o.maxMinutes * 60_000;
  const say = (s: string) => process.stdout.write(`${s}\n`);
  say(`chaos: ${o.trials} trials of ${o.faults.join(', ')} (seed ${o.seed}, at most ${o.maxMinutes} min)`);
  const hall = await Hall.start({ name: 'chaos-soak', faketime: true });
  say(`chaos: hall ${hall.dir}, lease TTL ${hall.timing.leaseTtlS} s`);
  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
    say('chaos: interrupted; finishing the current trial');
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const log = new TrialLog();
  let failed = false;
  let lastReport: Awaited<ReturnType<Hall['check']>> | undefined;
  try {
    for (let i = 0; i < o.trials && !interrupted; i++) {
      if (Date.now() > deadline) {
        say(`chaos: stopping after ${i} trials: the ${o.maxMinutes} min bound passed`);
        break;
      }
      const fault = o.faults[Math.floor(rnd() * o.faults.length)]!;
      const started = Date.now();
      let r: TrialResult;
      try {
        r = fault === 'restart-loop' ? await trialRestartLoop(hall, { count: 3 }) : await TRIALS[fault](hall);
      } catch (err) {
        r = {
          fault,
          node: '?',
          group: '?',
          oldEpoch: null,
          newEpoch: null,
          faultWallMs: started,
          failoverMs: null,
          gapMs: null,
          notes: [],
          problems: [`the trial failed: ${(err as Error).message}`],
        };
      }
      log.add(r);
      lastReport = await hall.check();
      const took = ((Date.now() - started) / 1000).toFixed(1);
      say(
        `trial ${i + 1}/${o.trials} ${fault} ${r.group}@${r.node}: failover ${r.failoverMs ?? '-'} ms, gap ${r.gapMs ?? '-'} ms` +
          `${r.notes.length ? `, ${r.notes.join('; ')}` : ''} (${took} s) — ${summarize(lastReport)}`,
      );
      for (const p of r.problems) say(`  problem: ${p}`);
      for (const v of lastReport.violations) say(`  VIOLATION: ${v.message}`);
      if (r.problems.length || !lastReport.ok) {
        failed = true;
        process.stderr.write(await hall.logTails());
        break;
      }
    }
  } finally {
    say(log.summary(lastReport));
    await hall.stopAll({ keepDir: failed || o.keep });
    if (failed || o.keep) say(`chaos: logs kept in ${hall.dir}`);
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    setTimeout(() => process.exit(code), 3000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`chaos: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 3000).unref();
  },
);
