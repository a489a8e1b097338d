// `npm run bench -- soak [--seconds 480]`: leaks that only show over time. A hall of real processes
// (3-member etcd, the simulator with Modbus TCP and OPC-UA units, 3 controllers) runs for a bounded
// time: a quiet first minute (the baseline), then one churn event every ~20 s — a switchover, a unit
// trip acknowledged and cleared, a dead sensor node cleared, a SIGTERM + restart of one controller
// (the peer the others' caches reconnect to). Every 5 s each controller's RSS, fds, threads and
// /metrics are sampled, and etcd's keys, leases, watchers and db size. The drift is the least-squares
// slope per hour over the second half of the run; each figure stands beside its first-minute value.
// The restarted controller's figures cover its last run only. It stops by itself at --seconds.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { Hall } from '../test/support/hall.ts';
import { summarize } from '../test/support/journal-invariants.ts';
import { Churn } from './lib/soak-churn.ts';
import {
  type EtcdSample,
  familyChanges,
  mean,
  type ProcessSample,
  pidOf,
  sampleEtcd,
  sampleProcess,
  slopePerHour,
} from './lib/soak-probe.ts';
import { delay } from './lib/stats.ts';

const SAMPLE_MS = 5000;
const CHURN_MS = 20_000;
const BASELINE_MS = 60_000;
/** An event that has not ended by then is a failed one (the hall is settled again by the next). */
const EVENT_BOUND_MS = 45_000;
/** The hall's etcd prefix (test/support/hall.ts). */
const PREFIX = '/coolctl-chaos';
const RESTARTED = 'c3';
const MIN_SLOPE_SAMPLES = 12;

type ProcessMetric = Exclude<keyof ProcessSample, 'atMs' | 'pid' | 'families'>;
const PROCESS_METRICS: [ProcessMetric, string][] = [
  ['rssMb', 'rss_mb'],
  ['fds', 'fds'],
  ['threads', 'threads'],
  ['series', 'series'],
  ['heapUsedMb', 'heap_used_mb'],
  ['activeHandles', 'active_handles'],
  ['activeResources', 'active_resources'],
];

export async function run(args: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({
    args,
    options: { seconds: { type: 'string', default: '480' } },
    strict: true,
  });
  const seconds = Number(values.seconds);
  if (!Number.isInteger(seconds) || seconds < 120 || seconds > 86_400)
    throw new Error(`--seconds must be 120…86400, got ${values.seconds}`);
  const say = (s: string) => process.stderr.write(`${s}\n`);

  const hall = await Hall.start({ name: 'bench-soak', opcuaShare: 1 / 3, liveness: false });
  try {
    const site = parseYaml(await readFile(join(hall.dir, 'site.yaml'), 'utf8')) as {
      sensorNodes: { id: string }[];
    };
    const churn = new Churn(
      hall,
      RESTARTED,
      site.sensorNodes.map((n) => n.id),
      say,
    );
    const samples = new Map<string, ProcessSample[]>(hall.nodes.map((n) => [n, []]));
    const etcdSamples: EtcdSample[] = [];
    const sampleErrors: string[] = [];
    const t0 = Date.now();
    const endMs = t0 + seconds * 1000;
    say(`soak: ${hall.dir}, ${seconds} s, sample every ${SAMPLE_MS} ms, churn every ${CHURN_MS} ms`);

    const pids = new Map<string, number>();
    const sampler = (async () => {
      for (let i = 0; Date.now() < endMs && i < seconds * 2; i++) {
        const at = Date.now();
        await Promise.all(
          hall.live().map(async (node) => {
            try {
              let pid = pids.get(node);
              const cmd = pid ? await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '') : '';
              if (!pid || !cmd.includes(join(hall.dir, `${node}.yaml`))) {
                pid = (await pidOf(join(hall.dir, `${node}.yaml`))) ?? undefined;
                if (!pid) return;
                pids.set(node, pid);
              }
              samples.get(node)!.push(await sampleProcess(pid, hall.apiUrl(node), hall.apiHeaders));
            } catch (err) {
              sampleErrors.push(`${node}: ${(err as Error).message}`);
            }
          }),
        );
        try {
          etcdSamples.push(await sampleEtcd(hall.etcd.clientUrls, (a) => hall.etcdctl(a, 10_000), PREFIX));
        } catch (err) {
          sampleErrors.push(`etcd: ${(err as Error).message}`);
        }
        if ((i + 1) % 12 === 0) say(progress(Date.now() - t0, samples, etcdSamples));
        await delay(Math.min(at + SAMPLE_MS, endMs) - Date.now());
      }
    })();

    // The first minute is quiet: the baseline is the hall at rest after its start.
    await delay(Math.min(BASELINE_MS, (seconds * 1000) / 4));
    for (let i = 0; i < seconds; i++) {
      const at = Date.now();
      if (at + EVENT_BOUND_MS > endMs) break;
      await churn.next(EVENT_BOUND_MS);
      await delay(Math.min(at + CHURN_MS, endMs) - Date.now());
    }
    await sampler;

    const report = await hall.check();
    say(summarize(report));
    for (const e of sampleErrors.slice(0, 10)) say(`sample error: ${e}`);
    for (const f of churn.failures) say(`churn failure: ${f}`);

    const events = [...churn.done.values()].reduce((a, b) => a + b, 0);
    const figures: Record<string, number> = {
      seconds,
      churn_events: events,
      churn_failures: churn.failures.length,
      ...Object.fromEntries([...churn.done].map(([k, v]) => [`churn_${k.replaceAll('-', '_')}`, v])),
      sample_errors: sampleErrors.length,
      invariant_violations: report.violations.length,
    };
    const halfMs = t0 + (seconds * 1000) / 2;
    for (const [node, all] of samples) {
      // The restarted node: its last run only (its first minute and the second half within it).
      const lastPid = all.at(-1)?.pid;
      const life = all.filter((s) => s.pid === lastPid);
      const start = life[0]?.atMs ?? t0;
      const baseline = life.filter((s) => s.atMs < start + BASELINE_MS);
      const tail = life.filter((s) => s.atMs >= Math.max(halfMs, start + BASELINE_MS));
      const first = life[0];
      const last = life.at(-1);
      if (first && last)
        say(
          `${node} series by name, first → last sample of its last run: ${familyChanges(first.families, last.families).join(', ') || 'no change'}`,
        );
      if (node === RESTARTED)
        figures[`${node}_last_run_s`] = Math.round(((life.at(-1)?.atMs ?? start) - start) / 1000);
      for (const [key, name] of PROCESS_METRICS) {
        const pts = (xs: ProcessSample[]) => xs.map((s) => ({ tMs: s.atMs, y: s[key] }));
        figures[`${node}_${name}_first_min`] = round(mean(pts(baseline)));
        figures[`${node}_${name}_last`] = round(life.at(-1)?.[key] ?? Number.NaN);
        // A slope over less than a minute of samples says nothing about an hour.
        if (tail.length >= MIN_SLOPE_SAMPLES)
          figures[`${node}_${name}_per_h`] = round(slopePerHour(pts(tail)));
      }
    }
    const eBase = etcdSamples.filter((s) => s.atMs < t0 + BASELINE_MS);
    const eTail = etcdSamples.filter((s) => s.atMs >= halfMs);
    const etcdMetric = (name: string, y: (s: EtcdSample) => number) => {
      figures[`etcd_${name}_first_min`] = round(mean(eBase.map((s) => ({ y: y(s) }))));
      figures[`etcd_${name}_last`] = round(etcdSamples.length ? y(etcdSamples.at(-1)!) : Number.NaN);
      figures[`etcd_${name}_per_h`] = round(slopePerHour(eTail.map((s) => ({ tMs: s.atMs, y: y(s) }))));
    };
    etcdMetric('keys', (s) => s.keys);
    const segments = new Set(etcdSamples.flatMap((s) => Object.keys(s.keysBy)));
    for (const seg of [...segments].sort())
      etcdMetric(`keys_${seg.replace(/\W+/g, '_')}`, (s) => s.keysBy[seg] ?? 0);
    etcdMetric('leases', (s) => s.leases);
    etcdMetric('watchers', (s) => s.watchers);
    etcdMetric('watch_streams', (s) => s.watchStreams);
    etcdMetric('db_mb', (s) => s.dbMb);
    // JSON has no NaN: a figure that could not be measured (too few samples) is left out.
    for (const [k, v] of Object.entries(figures)) if (!Number.isFinite(v)) delete figures[k];
    if (report.violations.length > 0) {
      process.stderr.write(await hall.logTails());
      throw new Error(`${report.violations.length} journal invariant violations during the soak`);
    }
    return figures;
  } finally {
    await hall.stopAll();
  }
}

function round(v: number): number {
  return Number.isFinite(v) ? Math.round(v * 1000) / 1000 : v;
}

function progress(elapsedMs: number, samples: Map<string, ProcessSample[]>, etcd: EtcdSample[]): string {
  const parts = [...samples].map(([n, xs]) => {
    const s = xs.at(-1);
    return s
      ? `${n} rss ${s.rssMb.toFixed(1)} MiB fds ${s.fds} thr ${s.threads} series ${s.series} handles ${s.activeHandles}`
      : `${n} -`;
  });
  const e = etcd.at(-1);
  if (e)
    parts.push(`etcd keys ${e.keys} leases ${e.leases} watchers ${e.watchers} db ${e.dbMb.toFixed(2)} MiB`);
  return `soak +${Math.round(elapsedMs / 1000)} s: ${parts.join('; ')}`;
}
