// The liveness checker on synthetic journals and claim samples: a leader that claims a group and
// writes it every period passes; one that keeps claiming while its writes stop (the "leader that no
// longer drives" of issue 15), one whose term starts without a write, and one that leads without
// driving past the hand-on bound are caught; pauses are exempt; a stale claim after a newer term
// wrote is not a liveness matter; a trial without writes in a group is seen.
import { describe, expect, it } from 'vitest';
import {
  type ClaimSample,
  checkLiveness,
  claimSpans,
  groupsWithoutWrites,
  type JournalEntry,
} from '../support/journal-invariants.ts';

const groups = { 'zone-1': ['AHU-01', 'AHU-02'], 'zone-2': ['AHU-03'] };
const opts = { halfPeriodMs: 2500, handOnMs: 5000, maxSampleGapMs: 1000 };

/** Accepted writes of `epoch` on `ahu` every `everyMs` in [fromMs, toMs). */
function writes(ahu: string, epoch: number, fromMs: number, toMs: number, everyMs = 200): JournalEntry[] {
  const out: JournalEntry[] = [];
  for (let t = fromMs; t < toMs; t += everyMs) {
    out.push({
      seq: 0,
      t,
      wallMs: t,
      ahu,
      protocol: 'modbus-tcp',
      client: 'c',
      epoch,
      values: {},
      accepted: true,
      reason: null,
    });
  }
  return out;
}

function seq(entries: JournalEntry[]): JournalEntry[] {
  return entries.sort((a, b) => a.wallMs - b.wallMs).map((e, i) => ({ ...e, seq: i + 1 }));
}

/** One node's claim on one group, sampled every `everyMs` in [fromMs, toMs]. */
function claims(
  node: string,
  group: string,
  epoch: number,
  fromMs: number,
  toMs: number,
  { driving = true, ready = true, everyMs = 250 } = {},
): ClaimSample[] {
  const out: ClaimSample[] = [];
  for (let t = fromMs; t <= toMs; t += everyMs)
    out.push({ atMs: t, node, group, epoch, leader: true, driving, ready });
  return out;
}

describe('claimSpans', () => {
  it('joins consecutive samples and splits on a sampling gap, an epoch change or a follower sample', () => {
    const s = [
      ...claims('c1', 'zone-1', 5, 0, 1000),
      ...claims('c1', 'zone-1', 5, 3000, 4000), // sampler late by 2 s: a new span
      ...claims('c1', 'zone-1', 9, 4250, 5000),
      { atMs: 5250, node: 'c1', group: 'zone-1', epoch: 9, leader: false, driving: false, ready: true },
      ...claims('c1', 'zone-1', 9, 5500, 6000, { ready: false }), // not ready: no claim
    ];
    expect(claimSpans(s, 1000).map((x) => [x.node, x.epoch, x.kind, x.firstMs, x.lastMs])).toEqual([
      ['c1', 5, 'drives', 0, 1000],
      ['c1', 5, 'drives', 3000, 4000],
      ['c1', 9, 'drives', 4250, 5000],
    ]);
  });
});

describe('checkLiveness', () => {
  it('passes a leader that writes its group every period, and a clean handover', () => {
    const j = seq([
      ...writes('AHU-01', 5, 100, 10_000),
      ...writes('AHU-02', 5, 150, 10_000),
      ...writes('AHU-03', 6, 120, 20_000),
      // c1 stops at 10 s (killed); c2 leads zone-1 from 12 s and writes 200 ms later
      ...writes('AHU-01', 9, 12_200, 20_000),
    ]);
    const spans = claimSpans(
      [
        ...claims('c1', 'zone-1', 5, 0, 9900),
        ...claims('c2', 'zone-2', 6, 0, 20_000),
        ...claims('c2', 'zone-1', 9, 12_000, 20_000),
      ],
      1000,
    );
    expect(checkLiveness(j, groups, spans, opts)).toEqual([]);
  });

  it('catches a leader that keeps claiming a group while its writes stop for good', () => {
    // Issue 15, item 1: a transient refusal, and the leader stops driving the whole group but
    // keeps the leadership and says it drives.
    const j = seq([...writes('AHU-01', 5, 100, 4000), ...writes('AHU-02', 5, 150, 4000)]);
    const spans = claimSpans(claims('c1', 'zone-1', 5, 0, 30_000), 1000);
    const v = checkLiveness(j, groups, spans, opts);
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ kind: 'drive-gap', group: 'zone-1', node: 'c1', epoch: 5 });
    expect(v[0]!.toMs - v[0]!.fromMs).toBeGreaterThan(25_000);
    expect(v[0]!.message).toMatch(/no accepted write for \d+ ms/);
  });

  it('catches a gap just over half the watchdog, and passes one just under', () => {
    const base = [...writes('AHU-01', 5, 0, 5000), ...writes('AHU-01', 5, 5000 + 2600, 12_000)];
    const spans = claimSpans(claims('c1', 'zone-1', 5, 0, 12_000), 1000);
    expect(checkLiveness(seq(base), groups, spans, opts).map((x) => x.kind)).toEqual(['drive-gap']);
    const ok = [...writes('AHU-01', 5, 0, 5000), ...writes('AHU-01', 5, 4800 + 2400, 12_000)];
    expect(checkLiveness(seq(ok), groups, spans, opts)).toEqual([]);
  });

  it('one unit refusing while the other is written keeps the group live', () => {
    const j = seq([
      ...writes('AHU-01', 5, 0, 3000),
      ...writes('AHU-01', 5, 6000, 12_000), // AHU-01 refuses 3–6 s (refusals are not in this list)
      ...writes('AHU-02', 5, 100, 12_000),
    ]);
    const spans = claimSpans(claims('c1', 'zone-1', 5, 0, 12_000), 1000);
    expect(checkLiveness(j, groups, spans, opts)).toEqual([]);
  });

  it('catches a term whose first write comes later than half the watchdog', () => {
    const j = seq([...writes('AHU-01', 9, 13_000, 20_000)]);
    const spans = claimSpans(claims('c2', 'zone-1', 9, 10_000, 20_000), 1000);
    const v = checkLiveness(j, groups, spans, opts);
    expect(v.map((x) => x.kind)).toEqual(['term-start-late']);
    expect(v[0]!.message).toMatch(/first accepted write came 3000 ms later/);
  });

  it('catches a ready leader that leads without driving past the hand-on bound', () => {
    const spans = claimSpans(claims('c1', 'zone-2', 6, 0, 8000, { driving: false }), 1000);
    const v = checkLiveness([], groups, spans, opts);
    expect(v.map((x) => x.kind)).toEqual(['not-handed-on']);
    expect(v[0]!.message).toMatch(/without driving it for 8000 ms, longer than the 5000 ms/);
    // handed on within the bound: fine
    const quick = claimSpans(claims('c1', 'zone-2', 6, 0, 4000, { driving: false }), 1000);
    expect(checkLiveness([], groups, quick, opts)).toEqual([]);
  });

  it('exempts a paused group explicitly, and wants writes again half a watchdog after the resume', () => {
    const j = seq([...writes('AHU-03', 6, 0, 4000), ...writes('AHU-03', 6, 15_000, 30_000)]);
    const spans = claimSpans(claims('c1', 'zone-2', 6, 0, 30_000), 1000);
    expect(checkLiveness(j, groups, spans, opts).map((x) => x.kind)).toEqual(['drive-gap']);
    const paused = { group: 'zone-2', fromMs: 4000, toMs: 13_000, why: 'operator pause' };
    expect(checkLiveness(j, groups, spans, { ...opts, exemptions: [paused] })).toEqual([]);
    // resumed at 10 s but no write until 15 s: 5 s after the resume is more than half a watchdog
    const early = { ...paused, toMs: 10_000 };
    expect(checkLiveness(j, groups, spans, { ...opts, exemptions: [early] }).map((x) => x.kind)).toEqual([
      'drive-gap',
    ]);
  });

  it('a claim that resumes under the same epoch (fenced, then etcd back) starts afresh', () => {
    // c1 leads epoch 51, loses etcd at 3 s (fenced: claims nothing), is back at 9 s with the same
    // epoch and writes 100 ms later: the 6 s without a claim are not a gap of the claim.
    const j = seq([...writes('AHU-01', 51, 0, 3000), ...writes('AHU-01', 51, 9100, 14_000)]);
    const samples = [
      ...claims('c1', 'zone-1', 51, 0, 2900),
      ...claims('c1', 'zone-1', 51, 3000, 8900).map((x) => ({ ...x, leader: false, driving: false })),
      ...claims('c1', 'zone-1', 51, 9000, 14_000),
    ];
    expect(checkLiveness(j, groups, claimSpans(samples, 1000), opts)).toEqual([]);
    // Back at 9 s but no write until 12 s: more than half a watchdog after it claimed again.
    const late = seq([...writes('AHU-01', 51, 0, 3000), ...writes('AHU-01', 51, 12_000, 14_000)]);
    expect(checkLiveness(late, groups, claimSpans(samples, 1000), opts).map((x) => x.kind)).toEqual([
      'drive-gap',
    ]);
  });

  it('a stopped leader’s stale claim after a newer term wrote the group is not a liveness matter', () => {
    const j = seq([...writes('AHU-01', 5, 0, 3000), ...writes('AHU-01', 9, 5200, 12_000)]);
    const spans = claimSpans(
      [
        ...claims('c1', 'zone-1', 5, 0, 2900),
        ...claims('c1', 'zone-1', 5, 8000, 8500), // after SIGCONT, for a moment
        ...claims('c2', 'zone-1', 9, 5000, 12_000),
      ],
      1000,
    );
    expect(checkLiveness(j, groups, spans, opts)).toEqual([]);
  });
});

describe('groupsWithoutWrites', () => {
  it('names the groups with no accepted write in the window', () => {
    const j = seq([
      ...writes('AHU-01', 5, 0, 1000),
      { ...writes('AHU-03', 6, 500, 501)[0]!, accepted: false, reason: 'stale-epoch' },
    ]);
    expect(groupsWithoutWrites(j, groups, 0, 2000)).toEqual(['zone-2']);
    expect(groupsWithoutWrites(j, groups, 1500, 2000)).toEqual(['zone-1', 'zone-2']);
  });
});
