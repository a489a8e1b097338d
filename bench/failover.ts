// `npm run bench -- failover [--trials N]`: failover of real controller processes (3-member etcd,
// the simulator, 3 controllers), measured from the simulator's write journal, ≥ 20 trials each at
// one lease TTL — kill -9 of a leader, graceful SIGTERM, and a leader cut off from etcd — and, side
// by side on the same etcd cluster, the same kill -9 with two `etcdctl elect` processes.
// The journal invariants are checked over the whole run; any violation fails the bench.
import { parseArgs } from 'node:util';
import {
  CHAOS_TIMING,
  Hall,
  TrialLog,
  trialGraceful,
  trialKill9,
  trialPartition,
} from '../test/support/hall.ts';
import { summarize } from '../test/support/journal-invariants.ts';
import { baselineTrial, startBaseline } from './lib/failover-etcdctl.ts';
import { describe } from './lib/failover-stats.ts';

export async function run(args: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({
    args,
    options: { trials: { type: 'string', default: '20' } },
    strict: true,
  });
  const trials = Number(values.trials);
  if (!Number.isInteger(trials) || trials < 1 || trials > 1000)
    throw new Error(`--trials must be 1…1000, got ${values.trials}`);
  const ttlS = CHAOS_TIMING.leaseTtlS;
  const say = (s: string) => process.stderr.write(`${s}\n`);

  const hall = await Hall.start({ name: 'bench-failover', timing: { leaseTtlS: ttlS } });
  const log = new TrialLog();
  const crash: number[] = [];
  const graceful: number[] = [];
  const gaps: number[] = [];
  const baseline: number[] = [];
  let baselineTtlS = Number.NaN;
  try {
    for (let i = 0; i < trials; i++) {
      const r = log.add(await trialKill9(hall));
      if (r.failoverMs !== null) crash.push(r.failoverMs);
      say(
        `crash ${i + 1}/${trials}: ${r.group} ${r.node}@${r.oldEpoch} → ${r.newEpoch} in ${r.failoverMs} ms`,
      );
    }
    for (let i = 0; i < trials; i++) {
      const r = log.add(await trialGraceful(hall));
      if (r.failoverMs !== null) graceful.push(r.failoverMs);
      say(
        `graceful ${i + 1}/${trials}: ${r.group} ${r.node}@${r.oldEpoch} → ${r.newEpoch} in ${r.failoverMs} ms`,
      );
    }
    for (let i = 0; i < trials; i++) {
      const r = log.add(await trialPartition(hall));
      if (r.gapMs !== null) gaps.push(r.gapMs);
      say(
        `partition ${i + 1}/${trials}: ${r.group} ${r.node}@${r.oldEpoch} → ${r.newEpoch}, gap ${r.gapMs} ms, failover ${r.failoverMs} ms`,
      );
    }
    const b = await startBaseline(hall.etcd.clientUrls[0]!, ttlS);
    try {
      for (let i = 0; i < trials; i++) {
        const t = await baselineTrial(
          b,
          hall.etcd.endpoints,
          `/bench-etcdctl-elect/${process.pid}-${i}`,
          ttlS,
        );
        if (t.grantedTtlS !== ttlS)
          throw new Error(
            `the etcdctl baseline's lease was granted ${t.grantedTtlS} s, not ${ttlS} s: the figures would not compare`,
          );
        baselineTtlS = t.grantedTtlS;
        baseline.push(t.failoverMs);
        say(`etcdctl elect ${i + 1}/${trials}: ${t.failoverMs} ms (lease TTL ${t.grantedTtlS} s)`);
      }
    } finally {
      await b.close();
    }
    const report = await hall.check();
    say(summarize(report));
    say(log.summary(report));
    const problems = log.results.flatMap((r) => r.problems);
    for (const p of problems) say(`problem: ${p}`);
    for (const v of report.violations) say(`VIOLATION: ${v.message}`);
    const c = describe(crash);
    const g = describe(graceful);
    const p = describe(gaps);
    const e = describe(baseline);
    const figures = {
      lease_ttl_ms: ttlS * 1000,
      trials_per_kind: trials,
      crash_failover_p50_ms: c.p50,
      crash_failover_p99_ms: c.p99,
      crash_failover_max_ms: c.max,
      graceful_handover_p50_ms: g.p50,
      graceful_handover_p99_ms: g.p99,
      partition_gap_min_ms: p.min,
      partition_gap_p50_ms: p.p50,
      baseline_etcdctl_elect_failover_p50_ms: e.p50,
      baseline_etcdctl_elect_failover_p99_ms: e.p99,
      baseline_etcdctl_elect_lease_ttl_ms: baselineTtlS * 1000,
      trial_problems: problems.length,
      invariant_violations: report.violations.length,
    };
    say(
      `targets: crash p99 ${c.p99} ≤ ${ttlS * 1000 + 300} ${c.p99 <= ttlS * 1000 + 300 ? 'OK' : 'MISSED'}; ` +
        `graceful p99 ${g.p99} ≤ 200 ${g.p99 <= 200 ? 'OK' : 'MISSED'}; partition gap min ${p.min} > 0 ${p.min > 0 ? 'OK' : 'MISSED'}; ` +
        `crash p50 ${c.p50} ≤ etcdctl p50 ${e.p50} ${c.p50 <= e.p50 ? 'OK' : 'MISSED'}`,
    );
    if (report.violations.length > 0) {
      process.stderr.write(await hall.logTails());
      throw new Error(
        `${report.violations.length} journal invariant violations: two leaders drove one group`,
      );
    }
    return figures;
  } finally {
    await hall.stopAll();
  }
}
