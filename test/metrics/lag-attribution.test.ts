// The scale bench's attribution of long event-loop turns (bench/lib/lag-attribution.ts): each turn
// that held the 10 ms delay timer back by more than 10 ms is put down to a mark-compact, to
// scavenges only, or to no collection, by the collections that overlapped it.
import { constants } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { attributeLongTurns } from '../../bench/lib/lag-attribution.ts';

const MAJOR = constants.NODE_PERFORMANCE_GC_MAJOR;
const MINOR = constants.NODE_PERFORMANCE_GC_MINOR;

describe('attributeLongTurns', () => {
  it('puts each long turn of the span down to what overlapped it, a mark-compact first', () => {
    const probe = {
      // [end wall ms, interval ms]: the turn held the loop over [end − (interval − 10), end].
      longs: [
        1_100,
        25, // [1 085, 1 100]: a mark-compact and a scavenge in it
        2_100,
        22, // [2 088, 2 100]: a scavenge only
        3_100,
        30, // [3 080, 3 100]: nothing
        4_100,
        21, // [4 089, 4 100]: the collection ended before it began
        9_100,
        40, // outside the span
      ],
      // [start wall ms, duration ms, kind]
      gcs: [1_090, 8, MAJOR, 1_099, 1, MINOR, 2_095, 2, MINOR, 4_080, 5, MINOR, 9_080, 12, MAJOR],
    };
    const f = attributeLongTurns(probe, 1_000, 5_000);
    expect(f['long_turns']).toBe(4);
    expect(f['long_turns_with_mark_compact_pct']).toBe(25);
    expect(f['long_turns_with_scavenge_only_pct']).toBe(25);
    expect(f['long_turns_without_gc_pct']).toBe(50);
    expect(f['mark_compacts_per_min']).toBeCloseTo(15, 6); // one in 4 s
    expect(f['mark_compact_ms_p50']).toBe(8);
    expect(f['scavenges_per_s']).toBe(0.75);
  });

  it('reports zeros, not NaN, for a quiet span', () => {
    const f = attributeLongTurns({ longs: [], gcs: [] }, 0, 60_000);
    for (const v of Object.values(f)) expect(v).toBe(0);
  });
});
