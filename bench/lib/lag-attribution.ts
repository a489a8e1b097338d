// What the event loop's long turns had in them (`npm run bench -- scale --lag-attribution`): each
// turn that held the 10 ms delay timer back by more than 10 ms (bench/lib/lag-probe.mjs records
// them) is matched against the collections that overlapped it. A turn with a mark-compact in it
// counts as one; with scavenges only, as a scavenge turn; with neither, as the node's own work.
import { constants } from 'node:perf_hooks';
import { EVENT_LOOP_DELAY_RESOLUTION_MS } from '../../src/metrics/event-loop-delay.ts';
import { percentile } from './stats.ts';

export interface LagProbe {
  /** Flat [end wall ms, interval ms]. */
  longs: number[];
  /** Flat [start wall ms, duration ms, kind]. */
  gcs: number[];
}

export function attributeLongTurns(probe: LagProbe, fromMs: number, toMs: number): Record<string, number> {
  const gcs: { start: number; end: number; kind: number }[] = [];
  for (let i = 0; i + 2 < probe.gcs.length; i += 3) {
    const start = probe.gcs[i]!;
    const end = start + probe.gcs[i + 1]!;
    if (end >= fromMs && start <= toMs) gcs.push({ start, end, kind: probe.gcs[i + 2]! });
  }
  let turns = 0;
  let withMarkCompact = 0;
  let withScavenge = 0;
  let withoutGc = 0;
  for (let i = 0; i + 1 < probe.longs.length; i += 2) {
    const end = probe.longs[i]!;
    if (end < fromMs || end > toMs) continue;
    turns++;
    // The turn held the loop from one timer's due time to this callback.
    const start = end - (probe.longs[i + 1]! - EVENT_LOOP_DELAY_RESOLUTION_MS);
    let major = false;
    let minor = false;
    for (const g of gcs) {
      if (g.start >= end || g.end <= start) continue;
      if (g.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major = true;
      else if (g.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor = true;
    }
    if (major) withMarkCompact++;
    else if (minor) withScavenge++;
    else withoutGc++;
  }
  const windowS = (toMs - fromMs) / 1000;
  const ms = (kind: number) => gcs.filter((g) => g.kind === kind).map((g) => g.end - g.start);
  const majors = ms(constants.NODE_PERFORMANCE_GC_MAJOR);
  const minors = ms(constants.NODE_PERFORMANCE_GC_MINOR);
  const share = (n: number) => (turns ? (100 * n) / turns : 0);
  return {
    long_turns: turns,
    long_turns_per_min: windowS > 0 ? (turns / windowS) * 60 : 0,
    long_turns_with_mark_compact_pct: share(withMarkCompact),
    long_turns_with_scavenge_only_pct: share(withScavenge),
    long_turns_without_gc_pct: share(withoutGc),
    mark_compacts_per_min: windowS > 0 ? (majors.length / windowS) * 60 : 0,
    mark_compact_ms_p50: majors.length ? percentile(majors, 50) : 0,
    mark_compact_ms_p90: majors.length ? percentile(majors, 90) : 0,
    scavenges_per_s: windowS > 0 ? minors.length / windowS : 0,
    scavenge_ms_p99: minors.length ? percentile(minors, 99) : 0,
  };
}
