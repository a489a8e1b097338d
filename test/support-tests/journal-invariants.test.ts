// The invariant checker on synthetic journals: a clean handover passes; an A, B, A interleave
// across a group's units fails; an epoch going down on one unit fails; gaps are measured from the
// simulator's wall clock; paging reads the whole journal from a real HTTP server.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import {
  attemptsWithEpoch,
  checkJournal,
  findHandover,
  type JournalEntry,
  readJournal,
  summarize,
} from '../support/journal-invariants.ts';

const groups = { 'zone-1': ['AHU-01', 'AHU-02'], 'zone-2': ['AHU-03'] };

function journal(
  rows: [ahu: string, epoch: number, wallMs: number, accepted?: boolean, reason?: string][],
): JournalEntry[] {
  return rows.map(([ahu, epoch, wallMs, accepted = true, reason], i) => ({
    seq: i + 1,
    t: wallMs,
    wallMs,
    ahu,
    protocol: 'modbus-tcp',
    client: 'modbus:127.0.0.1:40000',
    epoch,
    values: { heartbeat: i + 1 },
    accepted,
    reason: accepted ? null : (reason ?? 'stale-epoch'),
  }));
}

describe('checkJournal', () => {
  it('passes a clean handover, counting terms and refused writes', () => {
    const j = journal([
      ['AHU-01', 5, 1000],
      ['AHU-02', 5, 1001],
      ['AHU-03', 6, 1002],
      ['AHU-01', 5, 1200],
      ['AHU-02', 5, 1201],
      // the old leader's late attempt, refused by the unit: fencing working, not a violation
      ['AHU-01', 9, 3000],
      ['AHU-02', 5, 3001, false, 'stale-epoch'],
      ['AHU-02', 9, 3002],
    ]);
    const r = checkJournal(j, groups);
    expect(r.ok).toBe(true);
    expect(r.violations).toEqual([]);
    expect(r.accepted).toBe(7);
    expect(r.refusedByReason).toEqual({ 'stale-epoch': 1 });
    expect(r.terms['zone-1']!.map((t) => t.epoch)).toEqual([5, 9]);
    expect(summarize(r)).toMatch(
      /8 writes, 7 accepted, 1 refused \(stale-epoch=1\), 3 leadership terms, 0 violations/,
    );
  });

  it('fails an A, B, A interleave across the units of one group', () => {
    // Each unit alone looks fine (AHU-01 sees 5, 9; AHU-02 sees 5, 5) but the group saw 5 after 9.
    const j = journal([
      ['AHU-01', 5, 1000],
      ['AHU-01', 9, 1100],
      ['AHU-02', 5, 1150],
    ]);
    const r = checkJournal(j, groups);
    expect(r.ok).toBe(false);
    expect(r.violations).toHaveLength(1);
    const v = r.violations[0]!;
    expect(v.kind).toBe('group-interleave');
    expect(v.group).toBe('zone-1');
    expect(v.entry?.seq).toBe(3);
    expect(v.previous?.seq).toBe(2);
    expect(v.message).toMatch(/two leaders drove the group/);
  });

  it('fails an epoch going down on one unit, keeping both entries', () => {
    const j = journal([
      ['AHU-03', 7, 1000],
      ['AHU-03', 4, 1100],
    ]);
    const r = checkJournal(j, groups);
    expect(r.violations.map((v) => v.kind)).toEqual(['ahu-epoch-decrease', 'group-interleave']);
    expect(r.violations[0]!.previous?.epoch).toBe(7);
    expect(r.violations[0]!.entry?.epoch).toBe(4);
  });

  it('does not mix groups: different groups may run different epochs in any order', () => {
    const j = journal([
      ['AHU-03', 20, 1000],
      ['AHU-01', 5, 1001],
      ['AHU-03', 20, 1002],
      ['AHU-02', 5, 1003],
    ]);
    expect(checkJournal(j, groups).ok).toBe(true);
  });

  it('reports a truncated journal as a violation (an incomplete check is not a pass)', () => {
    const r = checkJournal(journal([['AHU-01', 1, 1]]), groups, { truncated: true });
    expect(r.ok).toBe(false);
    expect(r.violations[0]!.kind).toBe('journal-truncated');
  });
});

describe('findHandover', () => {
  const j = journal([
    ['AHU-01', 5, 1000],
    ['AHU-02', 5, 1010],
    ['AHU-01', 5, 1200],
    ['AHU-02', 5, 1210], // the old term's last write
    ['AHU-03', 6, 1500],
    ['AHU-02', 9, 3400], // the new term's first write
    ['AHU-01', 9, 3401],
  ]);

  it('measures the gap from the old term’s last write to the new term’s first', () => {
    const h = findHandover(j, groups['zone-1'], { group: 'zone-1', oldEpoch: 5, faultWallMs: 1300 })!;
    expect(h.oldEpoch).toBe(5);
    expect(h.newEpoch).toBe(9);
    expect(h.lastOld?.seq).toBe(4);
    expect(h.firstNew.seq).toBe(6);
    expect(h.gapMs).toBe(2190);
    expect(h.sinceFaultMs).toBe(2100);
  });

  it('finds the old epoch from the fault time when it is not given', () => {
    const h = findHandover(j, groups['zone-1'], { faultWallMs: 1300 })!;
    expect(h.oldEpoch).toBe(5);
    expect(h.newEpoch).toBe(9);
  });

  it('is null while no newer epoch has written', () => {
    expect(findHandover(j, groups['zone-1'], { oldEpoch: 9 })).toBeNull();
  });

  it('gives a negative gap when the terms overlapped', () => {
    const overlap = journal([
      ['AHU-01', 5, 1000],
      ['AHU-01', 9, 1100],
      ['AHU-02', 5, 1150],
    ]);
    expect(findHandover(overlap, groups['zone-1'], { oldEpoch: 5 })!.gapMs).toBe(-50);
  });

  it('lists the attempts an old epoch made after a given seq', () => {
    const late = journal([
      ['AHU-01', 5, 1000],
      ['AHU-01', 9, 1100],
      ['AHU-02', 5, 1150, false],
    ]);
    expect(attemptsWithEpoch(late, groups['zone-1'], 5, 2).map((e) => e.seq)).toEqual([3]);
  });
});

describe('readJournal', () => {
  let server: Server;
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('pages through the whole journal with since and limit', async () => {
    const all = journal(
      Array.from({ length: 25 }, (_, i) => ['AHU-01', 1, 1000 + i] as [string, number, number]),
    );
    const asked: string[] = [];
    server = createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      asked.push(u.search);
      const since = Number(u.searchParams.get('since'));
      const limit = Number(u.searchParams.get('limit'));
      const entries = all.filter((e) => e.seq > since).slice(0, limit);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ entries, nextSeq: all.length + 1, truncated: false }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const r = await readJournal(url, { pageSize: 10 });
    expect(r.entries.map((e) => e.seq)).toEqual(all.map((e) => e.seq));
    expect(r.lastSeq).toBe(25);
    expect(r.truncated).toBe(false);
    expect(asked).toEqual(['?since=0&limit=10', '?since=10&limit=10', '?since=20&limit=10']);
  });
});
