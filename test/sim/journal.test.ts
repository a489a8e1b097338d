// The write journal as a reader pages through it: a ring of `capacity` entries whose `since`
// answers are the same before, at and after the wrap (docs/sim-api.md, GET /sim/journal).
import { describe, expect, it } from 'vitest';
import { Journal, type JournalEntryInput } from '../../firmware-sim/journal.ts';

const write = (n: number): JournalEntryInput => ({
  ahu: 'AHU-01',
  protocol: 'modbus-tcp',
  client: 'test',
  epoch: 1,
  values: { fanPct: n },
  accepted: true,
  reason: null,
});

function journalWith(capacity: number, writes: number): Journal {
  let t = 0;
  const j = new Journal(() => t++, capacity);
  for (let i = 1; i <= writes; i++) j.record(write(i));
  return j;
}

const seqs = (r: { entries: { seq: number }[] }) => r.entries.map((e) => e.seq);

describe('journal', () => {
  it('answers every entry after `since`, in order, before it is full', () => {
    const j = journalWith(5, 3);
    expect(seqs(j.since(0))).toEqual([1, 2, 3]);
    expect(j.since(0)).toMatchObject({ nextSeq: 4, truncated: false });
    expect(seqs(j.since(2))).toEqual([3]);
    expect(j.since(3)).toEqual({ entries: [], nextSeq: 4, truncated: false });
    expect(j.since(99)).toEqual({ entries: [], nextSeq: 4, truncated: false });
    // each entry is the write recorded under that seq, with its values and times
    expect(j.since(1, 1).entries).toEqual([{ seq: 2, t: 1, wallMs: expect.any(Number), ...write(2) }]);
  });

  it('keeps the last `capacity` entries in order across the wrap, and says when some were lost', () => {
    for (const writes of [5, 6, 7, 9, 10, 11, 23]) {
      const j = journalWith(5, writes);
      const kept = Array.from({ length: 5 }, (_, i) => writes - 4 + i);
      expect(seqs(j.since(0)), `${writes} writes`).toEqual(kept);
      expect(
        j.since(0).entries.map((e) => e.values.fanPct),
        `${writes} writes`,
      ).toEqual(kept);
      expect(j.lastSeq).toBe(writes);
      // `since` older than the oldest kept: the kept ones, and `truncated`
      if (writes > 5) expect(j.since(writes - 6).truncated, `${writes} writes`).toBe(true);
      // `since` = just before the oldest kept: nothing was lost
      expect(j.since(writes - 5)).toMatchObject({ truncated: false });
      expect(seqs(j.since(writes - 5))).toEqual(kept);
      // `since` inside the kept window, across the slot where the ring wraps
      for (let since = writes - 5; since <= writes; since++) {
        const r = j.since(since);
        expect(seqs(r), `${writes} writes, since ${since}`).toEqual(kept.filter((s) => s > since));
        expect(r.truncated).toBe(false);
        expect(r.nextSeq).toBe(writes + 1);
      }
    }
  });

  it('pages with `limit` from the last seq read, across the wrap and while writes go on', () => {
    const j = journalWith(4, 6); // keeps 3…6, slots hold 5 6 3 4
    expect(j.since(0, 2)).toMatchObject({ truncated: true, nextSeq: 7 });
    expect(seqs(j.since(0, 2))).toEqual([3, 4]);
    expect(seqs(j.since(4, 2))).toEqual([5, 6]);
    j.record(write(7));
    j.record(write(8)); // 3 and 4 are overwritten: a reader at 4 lost nothing, one at 3 lost 4
    expect(j.since(4, 100)).toMatchObject({ truncated: false });
    expect(seqs(j.since(4, 100))).toEqual([5, 6, 7, 8]);
    expect(j.since(3, 100).truncated).toBe(true);
    expect(seqs(j.since(6, 1))).toEqual([7]);
  });

  it('keeps one entry with a capacity of 1, and refuses a capacity that keeps none', () => {
    const j = journalWith(1, 3);
    expect(seqs(j.since(0))).toEqual([3]);
    expect(j.since(1).truncated).toBe(true);
    expect(j.since(2)).toMatchObject({ truncated: false, nextSeq: 4 });
    // before: a journal of capacity 0 accepted every write and kept none, silently
    expect(() => new Journal(() => 0, 0)).toThrow(/positive integer, got 0/);
    expect(() => new Journal(() => 0, 2.5)).toThrow(RangeError);
  });
});
