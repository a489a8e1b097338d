// `npm run chaos -- --trials N`: the soak mode of the chaos suite, for nightly runs. A hall of
// real processes (3-member etcd behind peer proxies, the simulator with Modbus TCP units behind
// link proxies, OPC-UA units, Modbus RTU units on serial lines behind TCP→RTU gateways, and two
// vendor-profile units that check no epoch — one fenced by lease timing, one behind a `coolctl
// gateway` process —, 3 controllers under libfaketime); N faults drawn at random from
// the list; the failsafe faults run afterwards on a second hall with failsafe on. The safety and
// liveness invariants are checked over the whole journal after every trial, and every trial must
// show writes in every group before and after its fault. Bounded in trials, minutes and time per
// trial; exits 1 on any violation or broken expectation (the hall's tmp dir with every log is
// kept), 2 on bad usage, 0 otherwise. Ends with a one-line summary per hall, and one line of what
// each fencing kind's witness showed (epoch units' verdicts, lease writes by writer, the gateway's
// raises and refusals). `--secure` runs both halls with every link secured (etcd on TLS with
// client certificates and a prefix user, the broker on TLS with a user, OPC-UA on SignAndEncrypt
// with explicit trust; docs/chaos.md "The secure hall").
import { parseArgs } from 'node:util';
import { mulberry32 } from '../firmware-sim/random.ts';
import {
  FAILSAFE_FAULTS,
  FAILSAFE_HALL,
  type FaultName,
  Hall,
  type HallOptions,
  MIXED_HALL,
  runTrial,
  TRIALS,
  TrialLog,
  type TrialResult,
} from '../test/support/hall.ts';
import { summarize } from '../test/support/journal-invariants.ts';

const ALL: FaultName[] = [...(Object.keys(TRIALS) as FaultName[]), 'restart-loop'];
const USAGE = `usage: npm run chaos -- [--trials 20] [--faults ${ALL.join(',')}] [--seed N] [--max-minutes M] [--keep] [--secure]`;

function parse() {
  const { values } = parseArgs({
    options: {
      trials: { type: 'string', default: '20' },
      faults: { type: 'string' },
      seed: { type: 'string', default: String(Date.now() % 1_000_000) },
      'max-minutes': { type: 'string' },
      keep: { type: 'boolean', default: false },
      secure: { type: 'boolean', default: false },
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
  const faults = (values.faults ?? ALL.join(',')).split(',').map((f) => f.trim()) as FaultName[];
  const unknown = faults.filter((f) => !ALL.includes(f));
  if (unknown.length) throw new Error(`unknown fault(s) ${unknown.join(', ')}; known: ${ALL.join(', ')}`);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0)
    throw new Error(`--seed must be a whole number, got "${values.seed}"`);
  // A trial takes 5–40 s; the default bound leaves a minute per trial.
  const maxMinutes = values['max-minutes'] === undefined ? trials + 5 : Number(values['max-minutes']);
  if (!Number.isFinite(maxMinutes) || maxMinutes <= 0)
    throw new Error(`--max-minutes must be > 0, got "${values['max-minutes']}"`);
  return { trials, faults, seed, maxMinutes, keep: values.keep, secure: values.secure };
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
  say(
    `chaos: ${o.trials} trials of ${o.faults.join(', ')} (seed ${o.seed}, at most ${o.maxMinutes} min` +
      `${o.secure ? ', every link secured' : ''})`,
  );
  const suffix = o.secure ? '-secure' : '';
  // The sequence is drawn whole from the seed, then split by the hall each fault needs.
  const drawn = Array.from({ length: o.trials }, () => o.faults[Math.floor(rnd() * o.faults.length)]!);
  const phases: { name: string; opts: HallOptions; faults: FaultName[] }[] = [
    {
      name: `chaos-soak${suffix}`,
      opts: { ...MIXED_HALL, faketime: true, secure: o.secure },
      faults: drawn.filter((f) => !FAILSAFE_FAULTS.has(f)),
    },
    {
      name: `chaos-soak-failsafe${suffix}`,
      opts: { ...FAILSAFE_HALL, secure: o.secure },
      faults: drawn.filter((f) => FAILSAFE_FAULTS.has(f)),
    },
  ];
  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
    say('chaos: interrupted; finishing the current trial');
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let failed = false;
  let done = 0;
  for (const phase of phases) {
    if (phase.faults.length === 0 || failed || interrupted) continue;
    if (Date.now() > deadline) break;
    const hall = await Hall.start({ ...phase.opts, name: phase.name });
    say(
      `chaos: hall ${hall.dir} (${phase.name}), lease TTL ${hall.timing.leaseTtlS} s, ${phase.faults.length} trials`,
    );
    const log = new TrialLog();
    let lastReport: Awaited<ReturnType<Hall['check']>> | undefined;
    try {
      for (const fault of phase.faults) {
        if (interrupted) break;
        if (Date.now() > deadline) {
          say(`chaos: stopping after ${done} trials: the ${o.maxMinutes} min bound passed`);
          break;
        }
        const started = Date.now();
        const r = await withinMs(runTrial(hall, fault), TRIAL_BOUND_MS, fault, started);
        done++;
        log.add(r);
        lastReport = await hall.check();
        const took = ((Date.now() - started) / 1000).toFixed(1);
        say(
          `trial ${done}/${o.trials} ${fault} ${r.group}@${r.node}: failover ${r.failoverMs ?? '-'} ms, gap ${r.gapMs ?? '-'} ms` +
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
      say(log.summary(lastReport, hall));
      await hall.stopAll({ keepDir: failed || o.keep });
      if (failed || o.keep) say(`chaos: logs kept in ${hall.dir}`);
    }
  }
  return failed ? 1 : 0;
}

/** No trial runs longer than this: a hung trial is a failed one, and the run stops. */
const TRIAL_BOUND_MS = 180_000;

function withinMs(
  p: Promise<TrialResult>,
  ms: number,
  fault: FaultName,
  started: number,
): Promise<TrialResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<TrialResult>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({
          fault,
          node: '?',
          group: '?',
          oldEpoch: null,
          newEpoch: null,
          faultWallMs: started,
          failoverMs: null,
          gapMs: null,
          notes: [],
          problems: [`the trial did not end within ${ms} ms`],
        }),
      ms,
    );
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
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
